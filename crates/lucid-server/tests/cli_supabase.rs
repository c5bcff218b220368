//! The `lucid` binary in Supabase mode, against a local stand-in project (API gateway +
//! PostgREST reads on a real PostgreSQL 15 + Supabase Auth's JWKS, see `supabase_standin`):
//! `serve --print-token` refuses to mint tokens (exit 3, says where tokens come from), `serve`
//! says how to sign in and accepts Supabase access tokens only, and `doctor` checks
//! reachability, both keys and which migration files are applied. The token step of
//! `scripts/run.sh` is run as written against the binary in both modes.

mod cli_support;
mod supabase_standin;

use std::time::Duration;

use cli_support::*;
use lucid_testkit::jwks::TestKey;
use serde_json::{json, Value};
use supabase_standin::{migration_files, project_key, SupabaseStandIn};

const SHORT: Duration = Duration::from_secs(60);

/// `PATH`, `HOME`, `LUCID_DATA_DIR`, an LLM key (doctor wants a provider; nothing calls it),
/// local sandboxes (no Docker needed to answer these questions) and the project's settings.
fn supabase_env(dirs: &TestDirs, project: &[(String, String)]) -> Vec<(String, String)> {
    let mut env = base_env(dirs);
    env.push(("ANTHROPIC_API_KEY".into(), LLM_KEY.into()));
    env.push(("SANDBOX_MODE".into(), "local".into()));
    env.push((
        "ENCRYPTION_KEY".into(),
        "cli-supabase-encryption-key-0123456789".into(),
    ));
    env.extend(project.iter().cloned());
    env
}

fn replace(env: &mut [(String, String)], name: &str, value: &str) {
    let slot = env
        .iter_mut()
        .find(|(k, _)| k == name)
        .unwrap_or_else(|| panic!("{name} not in env"));
    slot.1 = value.to_string();
}

async fn doctor(env: &[(String, String)], dirs: &TestDirs) -> Finished {
    Lucid::run(&["doctor"], env, dirs, SHORT).await
}

/// The doctor lines of the "Supabase project" section.
fn supabase_section(stdout: &str) -> String {
    let start = stdout
        .find("Supabase project")
        .unwrap_or_else(|| panic!("no Supabase section:\n{stdout}"));
    let rest = &stdout[start..];
    let end = rest.find("\nsandbox").unwrap_or(rest.len());
    rest[..end].to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn print_token_in_supabase_mode_exits_3_and_prints_no_token() {
    let dirs = TestDirs::new();
    let project = [
        ("SUPABASE_URL".to_string(), "http://127.0.0.1:9".to_string()),
        (
            "SUPABASE_ANON_KEY".into(),
            project_key("anon", supabase_standin::PROJECT_SECRET),
        ),
        (
            "SUPABASE_JWT_SECRET".into(),
            supabase_standin::PROJECT_SECRET.into(),
        ),
        (
            "SUPABASE_SERVICE_KEY".into(),
            project_key("service_role", supabase_standin::PROJECT_SECRET),
        ),
    ];
    let env = supabase_env(&dirs, &project);
    let out = Lucid::run(&["serve", "--print-token"], &env, &dirs, SHORT).await;
    assert_eq!(out.code(), Some(3), "{out:#?}");
    assert_eq!(out.stdout.trim(), "", "no token on stdout: {out:#?}");
    assert!(
        out.stderr.contains("Supabase mode")
            && out
                .stderr
                .contains("Supabase Auth (http://127.0.0.1:9/auth/v1)"),
        "{out:#?}"
    );
    assert!(
        !dirs.data().join("jwt-secret").exists(),
        "no local secret is made in Supabase mode"
    );

    // The same command in local mode still prints a token (exit 0): the mode decides.
    let local = supabase_env(&dirs, &[]);
    let token = print_token(&local, &dirs).await;
    assert_eq!(token.split('.').count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_in_supabase_mode_says_how_to_sign_in_and_takes_only_supabase_tokens() {
    let key = TestKey::es256("project-es256");
    let project = SupabaseStandIn::start(usize::MAX, &[&key]).await;
    let dirs = TestDirs::new();
    let env = supabase_env(&dirs, &project.env());
    let served = Served::start(&env, &dirs).await;

    let (_, line) = served
        .process
        .wait_for_line(
            Stream::Stdout,
            |l| l.contains("Access tokens are issued by Supabase Auth"),
            SHORT,
        )
        .await;
    assert!(
        line.contains(&format!("({}/auth/v1)", project.url)),
        "{line}"
    );
    let stdout = served.process.stdout();
    assert!(
        stdout.contains("sign in with your Supabase account"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("http://127.0.0.1:{}/", served.port)),
        "{stdout}"
    );
    assert!(
        !stdout.contains("#token="),
        "no local sign-in link: {stdout}"
    );
    assert!(
        !dirs.data().join("jwt-secret").exists(),
        "no local secret is made in Supabase mode"
    );

    let now = chrono::Utc::now().timestamp();
    let claims = json!({"sub": "8d0f6a52-5b7e-4a55-9d8e-3f0c9f1b2a10", "aud": "authenticated",
                        "role": "authenticated", "iat": now, "exp": now + 600});
    let client = http();
    let status = |token: String| {
        client
            .get(served.url("/api/v1/status"))
            .bearer_auth(token)
            .send()
    };
    let ok = status(key.sign(&claims)).await.unwrap();
    assert_eq!(ok.status(), 200);
    let body: Value = ok.json().await.unwrap();
    assert_eq!(body["mode"], "supabase", "{body}");
    // A token Lucid would mint in local mode is not a Supabase token.
    let local_style = lucid_engine::auth::issue_token(
        "8d0f6a52-5b7e-4a55-9d8e-3f0c9f1b2a10",
        b"some-local-secret-0123456789-0123456789",
        Duration::from_secs(600),
    );
    assert_eq!(status(local_style).await.unwrap().status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_passes_against_a_project_with_every_migration_applied() {
    let key = TestKey::es256("project-es256");
    let project = SupabaseStandIn::start(usize::MAX, &[&key]).await;
    let dirs = TestDirs::new();
    let env = supabase_env(&dirs, &project.env());
    let out = doctor(&env, &dirs).await;
    let section = supabase_section(&out.stdout);
    assert_eq!(out.code(), Some(0), "{out:#?}");
    assert!(!section.contains("FAIL"), "{section}");
    for expected in [
        format!("ok    SUPABASE_URL {} answers", project.url),
        "ok    SUPABASE_ANON_KEY is signed with SUPABASE_JWT_SECRET (role anon)".to_string(),
        "ok    SUPABASE_SERVICE_KEY is signed with SUPABASE_JWT_SECRET (role service_role)"
            .to_string(),
        "ok    the REST API accepts SUPABASE_ANON_KEY (and gives it no table access)".to_string(),
        "ok    the REST API accepts SUPABASE_SERVICE_KEY".to_string(),
        format!(
            "ok    Supabase Auth publishes 1 ES256/RS256 signing key(s) ({}/auth/v1/.well-known/jwks.json)",
            project.url
        ),
    ] {
        assert!(section.contains(&expected), "{expected:?} in\n{section}");
    }
    for (file, _) in migration_files() {
        assert!(
            section.contains(&format!("ok    migration {file} is applied")),
            "{file} in\n{section}"
        );
    }
    // Supabase mode keeps nothing in a local SQLite store.
    assert!(!out.stdout.contains("lucid.sqlite3"), "{}", out.stdout);
    assert!(
        section.contains("ok    no session events are waiting to be sent to Supabase"),
        "{section}"
    );

    // Batches a stopped server left in its outbox, and one the database refused: reported
    // as warnings (nothing is lost; they are sent at the next start), not as failures.
    let outbox = dirs.data().join("supabase/outbox");
    std::fs::create_dir_all(outbox.join("failed")).unwrap();
    for name in [
        "00000000000000000001.json",
        "00000000000000000002.json",
        "failed/00000000000000000003.json",
    ] {
        std::fs::write(outbox.join(name), b"{}").unwrap();
    }
    std::fs::write(outbox.join("notes.txt"), b"not a batch").unwrap();
    let out = doctor(&env, &dirs).await;
    let section = supabase_section(&out.stdout);
    assert_eq!(out.code(), Some(0), "{out:#?}");
    assert!(
        section.contains(&format!(
            "warn  2 batch(es) of session events are waiting in {} to be sent to Supabase",
            outbox.display()
        )),
        "{section}"
    );
    assert!(
        section.contains("warn  1 batch(es) the database refused are kept in"),
        "{section}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_names_the_migration_file_that_is_missing() {
    let files = migration_files();
    let (first, _) = &files[0];
    let (second, _) = &files[1];

    // Only the first file applied: the second is named, the first is fine.
    let project = SupabaseStandIn::start(1, &[]).await;
    let dirs = TestDirs::new();
    let env = supabase_env(&dirs, &project.env());
    let out = doctor(&env, &dirs).await;
    let section = supabase_section(&out.stdout);
    assert_eq!(out.code(), Some(1), "{out:#?}");
    assert!(
        section.contains(&format!("ok    migration {first} is applied")),
        "{section}"
    );
    assert!(
        section.contains(&format!(
            "FAIL  migration {second} is not applied: table integrations missing"
        )),
        "{section}"
    );
    assert!(
        section.contains(&format!("-f supabase/migrations/{second}")),
        "the fix names the file: {section}"
    );
    assert!(
        section.contains("ok    Supabase Auth publishes no asymmetric signing keys"),
        "{section}"
    );

    // Every file applied, then a column of the first one lost (an old schema, say): the
    // first file is named with the exact column, the second is fine.
    let project = SupabaseStandIn::start(usize::MAX, &[]).await;
    project
        .admin
        .batch_execute("alter table public.chat_sessions drop column branch")
        .await
        .expect("drop a column");
    let env = supabase_env(&dirs, &project.env());
    let out = doctor(&env, &dirs).await;
    let section = supabase_section(&out.stdout);
    assert_eq!(out.code(), Some(1), "{out:#?}");
    assert!(
        section.contains(&format!(
            "FAIL  migration {first} is not applied: column chat_sessions.branch missing"
        )),
        "{section}"
    );
    assert!(
        section.contains(&format!("ok    migration {second} is applied")),
        "{section}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_refuses_keys_of_another_project_and_an_unreachable_url() {
    let project = SupabaseStandIn::start(usize::MAX, &[]).await;
    let dirs = TestDirs::new();

    // A service key of another project: wrong signature offline, refused by the gateway, and
    // the migrations cannot be read.
    let mut env = supabase_env(&dirs, &project.env());
    let foreign = project_key("service_role", "another-projects-secret-0123456789abcdef");
    replace(&mut env, "SUPABASE_SERVICE_KEY", &foreign);
    let out = doctor(&env, &dirs).await;
    let section = supabase_section(&out.stdout);
    assert_eq!(out.code(), Some(1), "{out:#?}");
    assert!(
        section.contains("FAIL  SUPABASE_SERVICE_KEY is not signed with SUPABASE_JWT_SECRET"),
        "{section}"
    );
    assert!(
        section.contains(
            "FAIL  the project's REST API refuses SUPABASE_SERVICE_KEY: HTTP 401: Invalid API key"
        ),
        "{section}"
    );
    assert!(section.contains("migrations not checked"), "{section}");
    assert!(
        section.contains("ok    the REST API accepts SUPABASE_ANON_KEY"),
        "{section}"
    );

    // The keys swapped: each names the wrong role.
    let mut env = supabase_env(&dirs, &project.env());
    replace(&mut env, "SUPABASE_ANON_KEY", &project.service_key);
    replace(&mut env, "SUPABASE_SERVICE_KEY", &project.anon_key);
    let out = doctor(&env, &dirs).await;
    let section = supabase_section(&out.stdout);
    assert_eq!(out.code(), Some(1), "{out:#?}");
    assert!(
        section.contains("FAIL  SUPABASE_ANON_KEY is a key for role \"service_role\""),
        "{section}"
    );
    assert!(
        section.contains("FAIL  SUPABASE_SERVICE_KEY is a key for role \"anon\""),
        "{section}"
    );

    // Nothing listens at SUPABASE_URL.
    let mut env = supabase_env(&dirs, &project.env());
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    replace(&mut env, "SUPABASE_URL", &nowhere);
    let out = doctor(&env, &dirs).await;
    let section = supabase_section(&out.stdout);
    assert_eq!(out.code(), Some(1), "{out:#?}");
    assert!(
        section.contains(&format!("FAIL  SUPABASE_URL {nowhere} is not reachable")),
        "{section}"
    );
    assert!(!section.contains("migration "), "{section}");
}

/// The token step of `scripts/run.sh` (its lines from `status=0` to `esac`), run by bash with
/// `lucid` = this binary, followed by a marker showing whether the script went on.
async fn run_sh_token_step(env: &[(String, String)], dirs: &TestDirs) -> Finished {
    let script =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/run.sh"))
            .expect("scripts/run.sh");
    let start = script
        .find("\nstatus=0\n")
        .expect("run.sh: the token step starts with `status=0`");
    let end = start + script[start..].find("\nesac\n").expect("run.sh: `esac`") + 6;
    let step = &script[start..end];
    let program = format!(
        "set -euo pipefail\nlucid() {{ {:?} \"$@\"; }}\n{step}\necho RUN_SH_WENT_ON\n",
        env!("CARGO_BIN_EXE_lucid")
    );
    let out = tokio::process::Command::new("bash")
        .arg("-c")
        .arg(program)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .current_dir(dirs.home())
        .output()
        .await
        .expect("run bash");
    Finished {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_sh_prints_a_token_in_local_mode_goes_on_in_supabase_mode_and_stops_on_errors() {
    let dirs = TestDirs::new();
    let local = run_sh_token_step(&supabase_env(&dirs, &[]), &dirs).await;
    assert_eq!(local.code(), Some(0), "{local:#?}");
    let lines: Vec<&str> = local.stdout.lines().collect();
    assert_eq!(
        lines[0], "Bearer token for the API (valid 30 days):",
        "{local:#?}"
    );
    assert_eq!(lines[1].split('.').count(), 3, "a JWT: {local:#?}");
    assert_eq!(lines[2], "RUN_SH_WENT_ON");

    let project = [
        ("SUPABASE_URL".to_string(), "http://127.0.0.1:9".to_string()),
        ("SUPABASE_ANON_KEY".into(), "anon".into()),
        ("SUPABASE_JWT_SECRET".into(), "secret".into()),
        ("SUPABASE_SERVICE_KEY".into(), "service".into()),
    ];
    let supabase = run_sh_token_step(&supabase_env(&dirs, &project), &dirs).await;
    assert_eq!(supabase.code(), Some(0), "{supabase:#?}");
    assert_eq!(
        supabase.stdout.trim(),
        "RUN_SH_WENT_ON",
        "no token: {supabase:#?}"
    );
    assert!(supabase.stderr.contains("Supabase Auth"), "{supabase:#?}");

    // A real failure (half the Supabase settings) stops the script with lucid's status.
    let broken = run_sh_token_step(&supabase_env(&dirs, &project[..2]), &dirs).await;
    assert_eq!(broken.code(), Some(1), "{broken:#?}");
    assert!(!broken.stdout.contains("RUN_SH_WENT_ON"), "{broken:#?}");
    assert!(broken.stderr.contains("all-or-nothing"), "{broken:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_checks_new_style_api_keys_through_the_project() {
    use supabase_standin::{PUBLISHABLE_KEY, SECRET_KEY};
    let project = SupabaseStandIn::start(usize::MAX, &[]).await;
    let dirs = TestDirs::new();
    let mut env = supabase_env(&dirs, &project.env());
    replace(&mut env, "SUPABASE_ANON_KEY", PUBLISHABLE_KEY);
    replace(&mut env, "SUPABASE_SERVICE_KEY", SECRET_KEY);
    let out = doctor(&env, &dirs).await;
    let section = supabase_section(&out.stdout);
    assert_eq!(out.code(), Some(0), "{out:#?}");
    for expected in [
        "ok    SUPABASE_ANON_KEY is an sb_… API key",
        "ok    SUPABASE_SERVICE_KEY is an sb_… API key",
        "ok    the REST API accepts SUPABASE_ANON_KEY (and gives it no table access)",
        "ok    the REST API accepts SUPABASE_SERVICE_KEY",
    ] {
        assert!(section.contains(expected), "{expected:?} in\n{section}");
    }
    for (file, _) in migration_files() {
        assert!(
            section.contains(&format!("ok    migration {file} is applied")),
            "{file} in\n{section}"
        );
    }

    // A secret key given as the anon key, and an unknown secret key.
    replace(&mut env, "SUPABASE_ANON_KEY", SECRET_KEY);
    replace(
        &mut env,
        "SUPABASE_SERVICE_KEY",
        "sb_secret_revoked0000000000",
    );
    let out = doctor(&env, &dirs).await;
    let section = supabase_section(&out.stdout);
    assert_eq!(out.code(), Some(1), "{out:#?}");
    assert!(
        section.contains(
            "FAIL  SUPABASE_ANON_KEY is a secret key; expected the anon (publishable) key"
        ),
        "{section}"
    );
    assert!(
        section.contains(
            "FAIL  the project's REST API refuses SUPABASE_SERVICE_KEY: HTTP 401: Invalid API key"
        ),
        "{section}"
    );
}
