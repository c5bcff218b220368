//! Is the configured Supabase project ready for Lucid? (`lucid doctor` in Supabase mode.)
//!
//! [`check_project`] answers, in order: does `SUPABASE_URL` answer; are the anon and service
//! keys what they claim (offline: legacy keys are HS256 JWTs signed with
//! `SUPABASE_JWT_SECRET` naming the right role and project; online: the REST API accepts
//! them); and is every file of `supabase/migrations/` applied — each table and column a file
//! creates is read (zero rows) through the REST API with the service key, and a file whose
//! tables or columns are missing is named. Nothing is written.

pub mod api_keys;
pub mod manifest;
pub mod rest_probe;

use crate::config::SupabaseConfig;
use api_keys::{check_key, KeyKind, KeyShape};
use manifest::Migration;
use rest_probe::{Answer, RestProbe};

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Ok,
    Warn,
    Fail,
}

/// One line of the verdict, with the fix when something is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub level: Level,
    pub what: String,
    pub fix: String,
}

impl Finding {
    fn ok(what: impl Into<String>) -> Finding {
        Finding {
            level: Level::Ok,
            what: what.into(),
            fix: String::new(),
        }
    }
    fn warn(what: impl Into<String>, fix: impl Into<String>) -> Finding {
        Finding {
            level: Level::Warn,
            what: what.into(),
            fix: fix.into(),
        }
    }
    fn fail(what: impl Into<String>, fix: impl Into<String>) -> Finding {
        Finding {
            level: Level::Fail,
            what: what.into(),
            fix: fix.into(),
        }
    }
}

const KEYS_FIX: &str = "copy SUPABASE_URL, the keys and the JWT secret from the same project \
                        (Dashboard → Project Settings → API / JWT Keys)";

/// Checks the project; see the module documentation.
pub async fn check_project(supabase: &SupabaseConfig) -> Vec<Finding> {
    let mut findings = Vec::new();
    let probe = match RestProbe::new(&supabase.url) {
        Ok(probe) => probe,
        Err(e) => {
            findings.push(Finding::fail(e, "report this as a bug"));
            return findings;
        }
    };

    match probe.reach(&supabase.anon_key).await {
        Ok(status) => findings.push(Finding::ok(format!(
            "SUPABASE_URL {} answers (HTTP {status})",
            supabase.url
        ))),
        Err(e) => {
            findings.push(Finding::fail(
                format!("SUPABASE_URL {} is not reachable: {e}", supabase.url),
                "check SUPABASE_URL (Dashboard → Project Settings → API), the network, DNS \
                 and proxies; a paused project must be restored first",
            ));
            return findings;
        }
    }

    let migrations = manifest::migrations();
    // The table every key probe reads (zero rows): the first one the migrations create.
    let probe_table = migrations
        .iter()
        .flat_map(|m| m.tables.iter())
        .find(|t| t.creates)
        .map(|t| t.table.clone())
        .unwrap_or_else(|| "users".to_string());

    let mut service_key_works = true;
    for (kind, key) in [
        (KeyKind::Anon, &supabase.anon_key),
        (KeyKind::Service, &supabase.service_key),
    ] {
        let name = kind.setting();
        match check_key(kind, key, &supabase.jwt_secret, &supabase.url) {
            KeyShape::SignedJwt => findings.push(Finding::ok(format!(
                "{name} is signed with SUPABASE_JWT_SECRET (role {})",
                kind.role()
            ))),
            KeyShape::Opaque => findings.push(Finding::ok(format!(
                "{name} is an sb_… API key (only the project can check it: see below)"
            ))),
            KeyShape::Wrong(problem) => findings.push(Finding::fail(problem, KEYS_FIX)),
        }
        let refused = |why: String| {
            Finding::fail(
                format!("the project's REST API refuses {name}: {why}"),
                format!(
                    "set {name} to {} of this project; {KEYS_FIX}",
                    kind.dashboard_hint()
                ),
            )
        };
        match probe.select_nothing(key, &probe_table, &[]).await {
            Ok(Answer::KeyRefused(why)) => {
                findings.push(refused(why));
                if kind == KeyKind::Service {
                    service_key_works = false;
                }
            }
            Ok(Answer::Ok | Answer::NoTable | Answer::NoColumn) if kind == KeyKind::Service => {
                findings.push(Finding::ok(format!("the REST API accepts {name}")))
            }
            Ok(Answer::PermissionDenied) if kind == KeyKind::Anon => findings.push(Finding::ok(
                format!("the REST API accepts {name} (and gives it no table access)"),
            )),
            // The service key's were handled above.
            Ok(Answer::NoTable | Answer::NoColumn) => {
                findings.push(Finding::ok(format!("the REST API accepts {name}")))
            }
            Ok(Answer::Ok) => findings.push(Finding::warn(
                format!("{name} can read table {probe_table} without a user's token"),
                format!(
                    "make sure {name} is {} (not the service key), and apply the migrations: \
                     they revoke anonymous access and enable row-level security",
                    kind.dashboard_hint()
                ),
            )),
            Ok(Answer::PermissionDenied) => {
                service_key_works = false;
                findings.push(Finding::fail(
                    format!("{name} is accepted but may not read table {probe_table}"),
                    format!("set {name} to {}; {KEYS_FIX}", kind.dashboard_hint()),
                ));
            }
            Ok(Answer::Unexpected(what)) => {
                if kind == KeyKind::Service {
                    service_key_works = false;
                }
                findings.push(Finding::fail(
                    format!("unexpected answer of the REST API to {name}: {what}"),
                    "check that SUPABASE_URL is the project's API URL (https://<ref>.supabase.co)",
                ));
            }
            Err(e) => {
                findings.push(Finding::fail(
                    format!("the REST API stopped answering: {e}"),
                    "check the network and run lucid doctor again",
                ));
                return findings;
            }
        }
    }

    if !service_key_works {
        findings.push(Finding::warn(
            "migrations not checked: they are read with SUPABASE_SERVICE_KEY",
            "fix SUPABASE_SERVICE_KEY first",
        ));
        return findings;
    }
    for migration in &migrations {
        findings.push(check_migration(&probe, &supabase.service_key, migration).await);
    }
    findings
}

/// Whether every table and column `migration` creates can be read.
async fn check_migration(probe: &RestProbe, service_key: &str, migration: &Migration) -> Finding {
    let mut missing = Vec::new();
    for table in &migration.tables {
        match probe
            .select_nothing(service_key, &table.table, &table.columns)
            .await
        {
            Ok(Answer::Ok) => {}
            Ok(Answer::NoTable) => missing.push(format!("table {}", table.table)),
            Ok(Answer::NoColumn) => {
                // Name the columns: one probe each.
                for column in &table.columns {
                    let one = std::slice::from_ref(column);
                    if let Ok(Answer::NoColumn | Answer::NoTable) =
                        probe.select_nothing(service_key, &table.table, one).await
                    {
                        missing.push(format!("column {}.{column}", table.table));
                    }
                }
            }
            Ok(other) => {
                return Finding::fail(
                    format!(
                        "migration {} could not be checked: table {}: {other:?}",
                        migration.file, table.table
                    ),
                    "check SUPABASE_SERVICE_KEY and the project's API settings",
                )
            }
            Err(e) => {
                return Finding::fail(
                    format!("migration {} could not be checked: {e}", migration.file),
                    "check the network and run lucid doctor again",
                )
            }
        }
    }
    let triggers: Vec<&str> = migration
        .functions
        .iter()
        .map(|f| f.name.as_str())
        .collect();
    if missing.is_empty() {
        let tables: Vec<&str> = migration.tables.iter().map(|t| t.table.as_str()).collect();
        let mut what = format!("migration {} is applied", migration.file);
        if !tables.is_empty() {
            what.push_str(&format!(" (tables {})", tables.join(", ")));
        }
        if !triggers.is_empty() {
            what.push_str(&format!(
                "; its functions ({}) are not visible through the REST API and were not checked",
                triggers.join(", ")
            ));
        }
        Finding::ok(what)
    } else {
        Finding::fail(
            format!(
                "migration {} is not applied: {} missing",
                migration.file,
                missing.join(", ")
            ),
            format!(
                "apply supabase/migrations/{file} (`supabase db push`, or `psql \"$DATABASE_URL\" \
                 -1 -v ON_ERROR_STOP=1 -f supabase/migrations/{file}`); if it was applied just \
                 now, reload the API's schema cache (SQL: NOTIFY pgrst, 'reload schema')",
                file = migration.file
            ),
        )
    }
}
