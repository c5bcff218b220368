//! Throwaway PostgreSQL clusters for schema tests, and a Supabase-style `auth` schema.
//!
//! [`PgCluster::start`] runs Debian's PostgreSQL 15 server binaries (`initdb`, `postgres`
//! from `/usr/lib/postgresql/15/bin`, or `LUCID_PG_BIN_DIR`) on a fresh data directory in a
//! temporary directory. The server listens only on a Unix socket inside that directory (no
//! TCP port, so parallel clusters never collide) and trusts local connections as the
//! superuser `postgres`. Durability is switched off (`fsync`, `synchronous_commit`,
//! `full_page_writes`): a cluster lives for one test run.
//!
//! PostgreSQL refuses to run as root. When the tests run as root (CI on a fresh machine), the
//! cluster's directory is handed to the unprivileged user `nobody` and the server runs as
//! that user; otherwise it runs as the current user.
//!
//! The server is started under a tiny `sh` watchdog that waits on a pipe from this process:
//! when the [`PgCluster`] is dropped — or the test process dies, even by `SIGKILL` — the pipe
//! closes, the watchdog stops the server (fast shutdown) and removes the directory. So a
//! process-wide cluster ([`PgCluster::shared`]) never outlives its test binary.
//!
//! Missing binaries are an error naming the Debian package, never a silent skip.
//!
//! [`SUPABASE_AUTH_STUB_SQL`] is the part of Supabase's database that Lucid's migrations and
//! row-level security rely on: the roles `anon`, `authenticated`, `service_role`
//! (`BYPASSRLS`) and `authenticator`, `auth.users`, `auth.uid()`, `auth.role()`,
//! `auth.jwt()` reading `request.jwt.claims` like PostgREST sets it, and Supabase's default
//! grants on schema `public`. [`PgCluster::supabase_database`] gives a fresh database with it.

use std::fs::File;
use std::os::unix::fs::{chown, MetadataExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

pub use tokio_postgres;
use tokio_postgres::{Client, NoTls};

/// Where Debian's `postgresql-15` package installs the server binaries.
pub const DEFAULT_PG_BIN_DIR: &str = "/usr/lib/postgresql/15/bin";
/// Overrides [`DEFAULT_PG_BIN_DIR`].
pub const PG_BIN_DIR_ENV: &str = "LUCID_PG_BIN_DIR";
/// The superuser of every test cluster.
pub const SUPERUSER: &str = "postgres";
/// The Supabase-compatible `auth` schema, roles and default grants (see the module docs).
pub const SUPABASE_AUTH_STUB_SQL: &str = include_str!("../sql/supabase_auth_stub.sql");

/// The port number only names the socket file (`.s.PGSQL.<port>`); TCP is off.
const SOCKET_PORT: u16 = 5432;
const START_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// Starts `postgres` in the background, waits for a line (or EOF) on stdin, then stops the
/// server with a fast shutdown and removes the cluster directory.
/// Arguments: `$1` = postgres binary, `$2` = cluster directory, `$3` = data directory,
/// `$4` = socket directory, `$5` = port.
const WATCHDOG: &str = r#"
"$1" -D "$3" -k "$4" -p "$5" -c listen_addresses= \
    -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
    -c max_connections=100 -c shared_buffers=32MB -c max_wal_size=256MB \
    -c logging_collector=off -c log_min_messages=warning &
pid=$!
read -r _ignored || true
kill -INT "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
rm -rf "$2"
"#;

/// A running throwaway PostgreSQL cluster; stopped and deleted on drop.
pub struct PgCluster {
    dir: PathBuf,
    socket_dir: PathBuf,
    data_dir: PathBuf,
    log_path: PathBuf,
    /// Closing this pipe tells the watchdog to stop the server.
    stop_pipe: Mutex<Option<ChildStdin>>,
    watchdog: Mutex<Option<Child>>,
    next_db: AtomicU32,
}

impl std::fmt::Debug for PgCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgCluster")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// The server binaries' directory, or an error saying how to install them.
pub fn pg_bin_dir() -> Result<PathBuf, String> {
    let dir = std::env::var_os(PG_BIN_DIR_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_PG_BIN_DIR));
    for tool in ["initdb", "postgres"] {
        if !dir.join(tool).is_file() {
            return Err(format!(
                "PostgreSQL 15 server binary `{}` not found: these tests need a real \
                 PostgreSQL 15. Install Debian's package `postgresql-15` \
                 (`apt-get install -y postgresql-15`, or run scripts/setup-host.sh), or point \
                 {PG_BIN_DIR_ENV} at a directory holding initdb and postgres",
                dir.join(tool).display()
            ));
        }
    }
    Ok(dir)
}

/// The uid/gid the server runs as: the current user, or `nobody` when that is root.
fn server_identity() -> Result<Option<(u32, u32)>, String> {
    let me = std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .map_err(|e| format!("cannot read /proc/self: {e}"))?;
    if me != 0 {
        return Ok(None);
    }
    let passwd = std::fs::read_to_string("/etc/passwd")
        .map_err(|e| format!("cannot read /etc/passwd: {e}"))?;
    for line in passwd.lines() {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.len() >= 4 && fields[0] == "nobody" {
            let uid = fields[2]
                .parse()
                .map_err(|_| "bad uid of nobody".to_string())?;
            let gid = fields[3]
                .parse()
                .map_err(|_| "bad gid of nobody".to_string())?;
            return Ok(Some((uid, gid)));
        }
    }
    Err(
        "running as root and there is no user `nobody` to run PostgreSQL as (initdb and \
         postgres refuse root)"
            .to_string(),
    )
}

fn as_identity(cmd: &mut Command, identity: Option<(u32, u32)>) -> &mut Command {
    if let Some((uid, gid)) = identity {
        // std drops the supplementary groups too when root switches uid.
        cmd.uid(uid).gid(gid);
    }
    cmd
}

impl PgCluster {
    /// Creates a new cluster, starts it and waits until it accepts connections (about a
    /// second). Fails, never skips, when the binaries are missing.
    pub fn start() -> Result<PgCluster, String> {
        let bin = pg_bin_dir()?;
        let identity = server_identity()?;
        let dir = tempfile::Builder::new()
            .prefix("lucid-pg-")
            .tempdir()
            .map_err(|e| format!("cannot create a temporary directory: {e}"))?
            .keep();
        Self::launch(&bin, identity, dir.clone()).inspect_err(|_| {
            let _ = std::fs::remove_dir_all(&dir);
        })
    }

    /// One cluster for the whole test process, started on first use. It is stopped and
    /// deleted by its watchdog when the process exits. Panics with the reason when it cannot
    /// start.
    pub fn shared() -> &'static PgCluster {
        static SHARED: OnceLock<PgCluster> = OnceLock::new();
        SHARED.get_or_init(|| {
            PgCluster::start()
                .unwrap_or_else(|e| panic!("cannot start a PostgreSQL test cluster: {e}"))
        })
    }

    fn launch(bin: &Path, identity: Option<(u32, u32)>, dir: PathBuf) -> Result<PgCluster, String> {
        if let Some((uid, gid)) = identity {
            chown(&dir, Some(uid), Some(gid))
                .map_err(|e| format!("cannot hand {} to uid {uid}: {e}", dir.display()))?;
        }
        let data = dir.join("data");
        let initdb = as_identity(&mut Command::new(bin.join("initdb")), identity)
            .arg("-D")
            .arg(&data)
            .args([
                "--username",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
                "--no-instructions",
            ])
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run initdb: {e}"))?;
        if !initdb.status.success() {
            return Err(format!(
                "initdb failed ({}) in {} (the server user must be able to reach this \
                 directory; set TMPDIR to a world-traversable directory such as /tmp): {}{}",
                initdb.status,
                dir.display(),
                String::from_utf8_lossy(&initdb.stdout),
                String::from_utf8_lossy(&initdb.stderr)
            ));
        }
        let log_path = dir.join("postgres.log");
        let log = File::create(&log_path)
            .map_err(|e| format!("cannot create {}: {e}", log_path.display()))?;
        let log_err = log
            .try_clone()
            .map_err(|e| format!("cannot duplicate the log handle: {e}"))?;
        let mut watchdog = as_identity(&mut Command::new("sh"), identity)
            .arg("-c")
            .arg(WATCHDOG)
            .arg("lucid-pg-watchdog")
            .arg(bin.join("postgres"))
            .arg(&dir)
            .arg(&data)
            .arg(&dir)
            .arg(SOCKET_PORT.to_string())
            .stdin(Stdio::piped())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|e| format!("cannot start postgres: {e}"))?;
        let stop_pipe = watchdog.stdin.take();
        let cluster = PgCluster {
            socket_dir: dir.clone(),
            data_dir: data,
            log_path,
            dir,
            stop_pipe: Mutex::new(stop_pipe),
            watchdog: Mutex::new(Some(watchdog)),
            next_db: AtomicU32::new(1),
        };
        cluster.wait_ready()?;
        Ok(cluster)
    }

    /// Waits until `postmaster.pid` says the server accepts connections (what `pg_ctl -w`
    /// checks).
    fn wait_ready(&self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        let pid_file = self.data_dir.join("postmaster.pid");
        let socket = self.socket_dir.join(format!(".s.PGSQL.{SOCKET_PORT}"));
        loop {
            let ready = std::fs::read_to_string(&pid_file)
                .map(|text| text.lines().nth(7).map(str::trim) == Some("ready"))
                .unwrap_or(false);
            if ready && socket.exists() {
                return Ok(());
            }
            let exited = lock(&self.watchdog)
                .as_mut()
                .map(|child| matches!(child.try_wait(), Ok(Some(_)) | Err(_)))
                .unwrap_or(true);
            if exited {
                return Err(format!("postgres exited during start-up: {}", self.log()));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "postgres did not become ready within {START_TIMEOUT:?}: {}",
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server's log so far (for error messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Directory of the server's Unix socket (the `host` to connect to).
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// The port number in the socket's name (`.s.PGSQL.<port>`).
    pub fn port(&self) -> u16 {
        SOCKET_PORT
    }

    /// Connects as the superuser to `dbname`; the connection is driven on the current Tokio
    /// runtime.
    pub async fn connect(&self, dbname: &str) -> Result<Client, String> {
        self.connect_as(dbname, SUPERUSER).await
    }

    /// Connects as `user` (e.g. `authenticator`, the role PostgREST logs in as) to `dbname`.
    pub async fn connect_as(&self, dbname: &str, user: &str) -> Result<Client, String> {
        let (client, connection) = tokio_postgres::Config::new()
            .host_path(&self.socket_dir)
            .port(SOCKET_PORT)
            .user(user)
            .dbname(dbname)
            .application_name("lucid-tests")
            .connect(NoTls)
            .await
            .map_err(|e| format!("cannot connect to database {dbname}: {}", describe(&e)))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    /// Creates a new, empty database and returns its name.
    pub async fn create_database(&self) -> Result<String, String> {
        let name = format!(
            "lucid_test_{}_{}",
            std::process::id(),
            self.next_db.fetch_add(1, Ordering::Relaxed)
        );
        let admin = self.connect("postgres").await?;
        admin
            .batch_execute(&format!("create database {name}"))
            .await
            .map_err(|e| format!("cannot create database {name}: {}", describe(&e)))?;
        Ok(name)
    }

    /// A new database with Supabase's `auth` schema, roles and default grants
    /// ([`SUPABASE_AUTH_STUB_SQL`]), and a superuser connection to it.
    pub async fn supabase_database(&self) -> Result<(String, Client), String> {
        // Roles are shared by the whole cluster: set them up one database at a time.
        static STUB_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
        let name = self.create_database().await?;
        let client = self.connect(&name).await?;
        let _guard = STUB_LOCK.lock().await;
        client
            .batch_execute(SUPABASE_AUTH_STUB_SQL)
            .await
            .map_err(|e| format!("the Supabase auth stub failed: {}", describe(&e)))?;
        Ok((name, client))
    }

    /// Stops the server and deletes the cluster (also done on drop).
    pub fn stop(&self) {
        drop(lock(&self.stop_pipe).take());
        if let Some(mut child) = lock(&self.watchdog).take() {
            let deadline = Instant::now() + STOP_TIMEOUT;
            loop {
                match child.try_wait() {
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(10))
                    }
                    Ok(Some(_)) => break,
                    _ => {
                        self.kill_server();
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    fn kill_server(&self) {
        let pid = std::fs::read_to_string(self.data_dir.join("postmaster.pid"))
            .ok()
            .and_then(|text| text.lines().next().map(|l| l.trim().to_string()));
        if let Some(pid) = pid.filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())) {
            let _ = Command::new("kill").arg("-KILL").arg(pid).status();
        }
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        self.stop();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// A database error with its SQLSTATE, message, detail and hint (the `Display` of
/// `tokio_postgres::Error` says only "db error").
pub fn describe(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => {
            let mut text = format!("{} ({}): {}", db.severity(), db.code().code(), db.message());
            if let Some(detail) = db.detail() {
                text.push_str(&format!("; detail: {detail}"));
            }
            if let Some(hint) = db.hint() {
                text.push_str(&format!("; hint: {hint}"));
            }
            if let Some(context) = db.where_() {
                text.push_str(&format!("; where: {context}"));
            }
            text
        }
        None => error.to_string(),
    }
}

/// The SQLSTATE of a database error, if it is one.
pub fn sqlstate(error: &tokio_postgres::Error) -> Option<&str> {
    error.code().map(|c| c.code())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_cluster_runs_the_auth_stub_and_is_gone_after_drop() {
        let cluster = PgCluster::start().unwrap_or_else(|e| panic!("{e}"));
        let dir = cluster.dir.clone();
        let pid: String = std::fs::read_to_string(cluster.data_dir.join("postmaster.pid"))
            .expect("postmaster.pid")
            .lines()
            .next()
            .expect("pid line")
            .trim()
            .to_string();
        let (_name, db) = cluster.supabase_database().await.expect("database");
        let version: String = db
            .query_one("show server_version", &[])
            .await
            .expect("version")
            .get(0);
        assert!(version.starts_with("15."), "{version}");
        // The stub is re-runnable, and auth.uid() reads the request's claims.
        db.batch_execute(SUPABASE_AUTH_STUB_SQL)
            .await
            .unwrap_or_else(|e| panic!("{}", describe(&e)));
        db.execute(
            "select set_config('request.jwt.claims', $1, false)",
            &[&r#"{"sub":"00000000-0000-0000-0000-00000000000a","role":"authenticated"}"#],
        )
        .await
        .expect("claims");
        let row = db
            .query_one(
                "select auth.uid()::text, auth.role(), auth.jwt() ->> 'role'",
                &[],
            )
            .await
            .expect("auth functions");
        assert_eq!(
            row.get::<_, String>(0),
            "00000000-0000-0000-0000-00000000000a"
        );
        assert_eq!(row.get::<_, String>(1), "authenticated");
        assert_eq!(row.get::<_, String>(2), "authenticated");
        drop(db);
        drop(cluster);
        assert!(!dir.exists(), "the cluster directory is left behind");
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "postgres (pid {pid}) still runs"
        );
    }
}
