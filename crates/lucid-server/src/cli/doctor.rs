//! `lucid doctor`: what is wrong with this setup and how to fix it. In Supabase mode it checks
//! the project instead of the embedded store (reachability, keys, applied migrations).

use lucid_engine::config::SandboxMode;
use lucid_engine::store::{SqliteStore, Store};
use lucid_engine::supabase_setup::Level;
use lucid_engine::Config;

struct Report {
    problems: usize,
}

impl Report {
    fn ok(&self, what: &str) {
        println!("  ok    {what}");
    }
    fn warn(&self, what: &str, fix: &str) {
        println!("  warn  {what}\n        fix: {fix}");
    }
    fn fail(&mut self, what: &str, fix: &str) {
        self.problems += 1;
        println!("  FAIL  {what}\n        fix: {fix}");
    }
}

pub async fn doctor() -> anyhow::Result<i32> {
    let mut r = Report { problems: 0 };
    println!("Lucid doctor");

    println!("configuration");
    let config = match Config::from_env() {
        Ok(c) => {
            r.ok(&format!(
                "{} mode",
                if c.is_local_mode() {
                    "local (embedded store, no account)"
                } else {
                    "Supabase"
                }
            ));
            c
        }
        Err(e) => {
            r.fail(
                &e.to_string(),
                "correct the environment / .env and run again",
            );
            return Ok(1);
        }
    };
    if config.encryption_key.is_none() && config.is_local_mode() {
        r.ok(&format!(
            "saved GitHub/GitLab tokens are encrypted with a generated key ({}; set \
             ENCRYPTION_KEY to use your own)",
            config
                .data_dir
                .join(lucid_engine::engine::ENCRYPTION_KEY_FILE)
                .display()
        ));
    } else if config.encryption_key.is_none() {
        r.warn(
            "ENCRYPTION_KEY is not set: GitHub/GitLab tokens cannot be saved",
            "set ENCRYPTION_KEY to a long random string (keep it: it decrypts saved tokens)",
        );
    }

    println!("data directory");
    let probe = config.data_dir.join(".doctor-probe");
    match std::fs::create_dir_all(&config.data_dir).and_then(|_| std::fs::write(&probe, b"ok")) {
        Ok(()) => {
            let _ = std::fs::remove_file(&probe);
            r.ok(&format!("{} is writable", config.data_dir.display()));
        }
        Err(e) => r.fail(
            &format!("{} is not writable: {e}", config.data_dir.display()),
            "set LUCID_DATA_DIR to a writable directory",
        ),
    }
    if let Some(supabase) = &config.supabase {
        println!("Supabase project");
        for finding in lucid_engine::supabase_setup::check_project(supabase).await {
            match finding.level {
                Level::Ok => r.ok(&finding.what),
                Level::Warn => r.warn(&finding.what, &finding.fix),
                Level::Fail => r.fail(&finding.what, &finding.fix),
            }
        }
        check_outbox(&mut r, &config.data_dir);
    } else {
        check_local_database(&mut r, &config).await;
    }

    println!("sandbox");
    match config.sandbox.mode {
        SandboxMode::Local => r.warn(
            "SANDBOX_MODE=local: commands run on this machine without isolation",
            "unset SANDBOX_MODE to use Docker sandboxes",
        ),
        SandboxMode::Docker => match lucid_engine::sessions::backend::probe_docker(&config.sandbox).await {
            Ok(probe) => {
                r.ok(&format!("Docker {} reachable", probe.server_version));
                if probe.image_present {
                    r.ok(&format!("sandbox image {} present", config.sandbox.image));
                } else {
                    r.warn(
                        &format!("sandbox image {} is not present", config.sandbox.image),
                        "it is pulled on first use; or `docker pull` it now, or set SANDBOX_IMAGE",
                    );
                }
                use lucid_engine::sandbox::docker::NetworkCheck;
                match probe.network {
                    NetworkCheck::Ready(name) => r.ok(&format!("sandbox network {name} ready")),
                    NetworkCheck::CreatedOnFirstUse(name) => r.ok(&format!(
                        "sandbox network {name} is created on first use (a bridge network without traffic between sandboxes)"
                    )),
                    NetworkCheck::HostNetwork => r.warn(
                        "DOCKER_NETWORK=host: sandboxes share this machine's network, including services on 127.0.0.1",
                        "unset DOCKER_NETWORK to give sandboxes Lucid's own network, or use `none` for no network",
                    ),
                    NetworkCheck::Unusable(reason) => r.fail(
                        &format!("sandbox network: {reason}"),
                        "fix the network as said, or choose another with DOCKER_NETWORK",
                    ),
                }
            }
            Err(e) => r.fail(
                &format!("Docker is not reachable: {e}"),
                "start Docker (e.g. `sudo systemctl start docker`), check DOCKER_HOST, or set SANDBOX_MODE=local",
            ),
        },
    }

    println!("LLM providers");
    let mut any = false;
    for name in ["anthropic", "google", "openai"] {
        match lucid_engine::llm::provider::configured_model(&config, name) {
            Ok(model) => {
                any = true;
                r.ok(&format!("{name} configured (model {model})"));
            }
            Err(e) => println!("  -     {name}: {e}"),
        }
    }
    if !any {
        r.fail(
            "no LLM provider is configured",
            "set ANTHROPIC_API_KEY or GOOGLE_API_KEY, or LLM_BASE_URL (+ LLM_API_KEY) for an OpenAI-compatible endpoint",
        );
    } else {
        r.ok(&format!("default provider: {}", config.default_provider));
    }

    if r.problems == 0 {
        println!("\nAll good.");
        Ok(0)
    } else {
        println!("\n{} problem(s) found.", r.problems);
        Ok(1)
    }
}

/// Supabase mode: event batches still waiting on this machine to reach the project, and
/// batches the database refused for good.
fn check_outbox(r: &mut Report, data_dir: &std::path::Path) {
    use lucid_engine::store::supabase::SupabaseStore;
    let dir = SupabaseStore::outbox_dir(data_dir);
    match SupabaseStore::outbox_on_disk(data_dir) {
        Ok(found) => {
            if found.waiting == 0 {
                r.ok("no session events are waiting to be sent to Supabase");
            } else {
                r.warn(
                    &format!(
                        "{} batch(es) of session events are waiting in {} to be sent to Supabase",
                        found.waiting,
                        dir.display()
                    ),
                    "they are sent (nothing is lost) once `lucid serve` or the app runs and \
                     the project is reachable; keep this directory until then",
                )
            }
            if found.set_aside > 0 {
                r.warn(
                    &format!(
                        "{} batch(es) the database refused are kept in {}",
                        found.set_aside,
                        dir.join("failed").display()
                    ),
                    "look at the server's log for why (e.g. a migration missing), fix it, then \
                     move the files back into the outbox directory to send them again",
                )
            }
        }
        Err(e) => r.fail(
            &format!("the outbox {} cannot be read: {e}", dir.display()),
            "make the data directory readable by this user (LUCID_DATA_DIR)",
        ),
    }
}

/// Local mode: the embedded SQLite store opens and answers.
async fn check_local_database(r: &mut Report, config: &Config) {
    match SqliteStore::open(&config.database_path()) {
        Ok(store) => match store.ping().await {
            Ok(()) => r.ok(&format!("database {}", config.database_path().display())),
            Err(e) => r.fail(
                &format!("database: {e}"),
                "check the file's permissions and free disk space",
            ),
        },
        Err(e) => r.fail(
            &format!("database: {e}"),
            "check the file's permissions and free disk space",
        ),
    }
}
