//! The team deployment files (`Dockerfile`, `docker-compose.yml`, `.dockerignore`) read and
//! checked against the code and the README: every `${VAR}` of the compose file is documented,
//! secrets are never literal, the Docker socket and the workspace bind mount are there and
//! agree with `HOST_WORKSPACE_PATH`, every environment name is one `config.rs` reads, the
//! resulting settings parse into a Supabase-mode configuration, and the Dockerfile builds the
//! UI and the binary in separate stages and runs as a non-root user.
//!
//! Building and running the image is not tested here: no image registry is reachable from the
//! test machines, so the base images (node, rust, debian) cannot be pulled.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use regex::Regex;
use yaml_rust2::{Yaml, YamlLoader};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{ROOT}/{path}"))
        .unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

fn compose() -> Yaml {
    let text = read("docker-compose.yml");
    let mut docs = YamlLoader::load_from_str(&text).expect("docker-compose.yml is valid YAML");
    assert_eq!(docs.len(), 1, "one YAML document");
    docs.remove(0)
}

/// The `lucid` service.
fn service(doc: &Yaml) -> &Yaml {
    let services = doc["services"].as_hash().expect("services: a map");
    assert_eq!(
        services.len(),
        1,
        "one service (no database: Supabase hosts it)"
    );
    let service = &doc["services"]["lucid"];
    assert!(service.as_hash().is_some(), "service `lucid`");
    service
}

/// Every scalar string of the document (comments excluded).
fn strings(node: &Yaml, out: &mut Vec<String>) {
    match node {
        Yaml::String(s) => out.push(s.clone()),
        Yaml::Array(items) => items.iter().for_each(|i| strings(i, out)),
        Yaml::Hash(map) => map.iter().for_each(|(k, v)| {
            strings(k, out);
            strings(v, out);
        }),
        _ => {}
    }
}

/// `${NAME}`, `${NAME:-default}`, `${NAME:?message}` references: name → the first one's
/// operator and argument.
fn references(text: &str) -> Vec<(String, Option<(String, String)>)> {
    let re = Regex::new(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}").unwrap();
    re.captures_iter(text)
        .map(|c| {
            (
                c[1].to_string(),
                c.get(2)
                    .map(|op| (op.as_str().to_string(), c[3].to_string())),
            )
        })
        .collect()
}

/// The environment names `crates/lucid-engine/src/config.rs` reads (its upper-case string
/// literals outside the tests).
fn config_names() -> BTreeSet<String> {
    let source = read("crates/lucid-engine/src/config.rs");
    let code = source.split("#[cfg(test)]").next().unwrap();
    let re = Regex::new(r#""([A-Z][A-Z0-9_]+)""#).unwrap();
    let names: BTreeSet<String> = re.captures_iter(code).map(|c| c[1].to_string()).collect();
    for expected in [
        "SUPABASE_URL",
        "HOST_WORKSPACE_PATH",
        "ENCRYPTION_KEY",
        "PORT",
    ] {
        assert!(names.contains(expected), "{expected} read by config.rs");
    }
    names
}

/// The service's `environment` as a map (either YAML form).
fn environment(service: &Yaml) -> BTreeMap<String, String> {
    let scalar = |v: &Yaml| match v {
        Yaml::String(s) => s.clone(),
        Yaml::Integer(i) => i.to_string(),
        Yaml::Boolean(b) => b.to_string(),
        other => panic!("environment value {other:?}"),
    };
    match &service["environment"] {
        Yaml::Hash(map) => map
            .iter()
            .map(|(k, v)| (k.as_str().expect("name").to_string(), scalar(v)))
            .collect(),
        Yaml::Array(items) => items
            .iter()
            .map(|i| {
                let (k, v) = i.as_str().expect("NAME=value").split_once('=').expect("=");
                (k.to_string(), v.to_string())
            })
            .collect(),
        other => panic!("environment: {other:?}"),
    }
}

fn is_secret_name(name: &str) -> bool {
    ["KEY", "SECRET", "TOKEN", "PASSWORD"]
        .iter()
        .any(|w| name.contains(w))
}

#[test]
fn every_compose_variable_is_a_documented_setting_and_no_secret_is_literal() {
    let doc = compose();
    let service = service(&doc);
    let readme = read("README.md");
    let config = config_names();

    let mut all = Vec::new();
    strings(&doc, &mut all);
    let mut referenced = BTreeSet::new();
    for s in &all {
        for (name, _) in references(s) {
            assert!(
                readme.contains(&format!("`{name}`")),
                "${{{name}}} in docker-compose.yml is not documented in README.md"
            );
            referenced.insert(name);
        }
        // Nothing that looks like a real credential, anywhere.
        for (pattern, what) in [
            (r"eyJ[A-Za-z0-9_-]{10,}", "a JWT"),
            (r"\bsk-[A-Za-z0-9]{8,}", "an API key"),
            (r"\bgh[pousr]_[A-Za-z0-9]{8,}", "a GitHub token"),
            (r"\bsb_(secret|publishable)_", "a Supabase API key"),
            (r"\b[0-9a-fA-F]{32,}\b", "a hex secret"),
        ] {
            assert!(
                !Regex::new(pattern).unwrap().is_match(s),
                "{what} in docker-compose.yml: {s}"
            );
        }
    }
    // Compose-only variables: the docker group's gid. Everything else is a Lucid setting.
    for name in &referenced {
        assert!(
            config.contains(name) || name == "DOCKER_GID",
            "${{{name}}} is neither a setting config.rs reads nor DOCKER_GID"
        );
    }

    let env = environment(service);
    for (name, value) in &env {
        assert!(
            config.contains(name),
            "environment name {name} is not read by config.rs"
        );
        if is_secret_name(name) {
            let refs = references(value);
            assert!(
                refs.len() == 1
                    && refs[0].0 == *name
                    && value.starts_with("${")
                    && value.ends_with('}'),
                "{name} must be exactly ${{{name}...}}, not {value:?}"
            );
        }
    }
    for required in [
        "SUPABASE_URL",
        "SUPABASE_ANON_KEY",
        "SUPABASE_JWT_SECRET",
        "SUPABASE_SERVICE_KEY",
        "ENCRYPTION_KEY",
        "HOST_WORKSPACE_PATH",
    ] {
        let value = env
            .get(required)
            .unwrap_or_else(|| panic!("{required} missing"));
        assert!(
            references(value)
                .iter()
                .any(|(n, op)| n == required && op.as_ref().is_some_and(|(o, _)| o == ":?")),
            "{required} must be required (${{{required}:?...}}), is {value:?}"
        );
    }
}

#[test]
fn compose_mounts_the_docker_socket_and_the_workspace_where_host_workspace_path_says() {
    let doc = compose();
    let service = service(&doc);
    let env = environment(service);
    let volumes = service["volumes"].as_vec().expect("volumes");
    let mounts: Vec<(String, String, String)> = volumes
        .iter()
        .map(|v| match v {
            Yaml::Hash(_) => (
                v["type"].as_str().expect("type").to_string(),
                v["source"].as_str().expect("source").to_string(),
                v["target"].as_str().expect("target").to_string(),
            ),
            Yaml::String(short) => {
                let parts: Vec<&str> = short.splitn(3, ':').collect();
                let kind = if parts[0].starts_with('/') || parts[0].starts_with("${") {
                    "bind"
                } else {
                    "volume"
                };
                (kind.into(), parts[0].into(), parts[1].into())
            }
            other => panic!("volume {other:?}"),
        })
        .collect();

    assert!(
        mounts.contains(&(
            "bind".into(),
            "/var/run/docker.sock".into(),
            "/var/run/docker.sock".into()
        )),
        "the Docker socket: {mounts:?}"
    );
    // The workspace directory is a bind mount from HOST_WORKSPACE_PATH onto the engine's
    // WORKSPACE_BASE_PATH: the daemon resolves sandbox mounts with that mapping.
    let base = env.get("WORKSPACE_BASE_PATH").expect("WORKSPACE_BASE_PATH");
    let workspace = mounts
        .iter()
        .find(|(_, _, target)| target == base)
        .unwrap_or_else(|| panic!("no mount onto {base}: {mounts:?}"));
    assert_eq!(workspace.0, "bind", "a bind mount, never a named volume");
    assert_eq!(
        references(&workspace.1).first().map(|r| r.0.as_str()),
        Some("HOST_WORKSPACE_PATH"),
        "mounted from HOST_WORKSPACE_PATH: {workspace:?}"
    );
    assert_eq!(
        references(env.get("HOST_WORKSPACE_PATH").expect("HOST_WORKSPACE_PATH"))[0].0,
        "HOST_WORKSPACE_PATH"
    );
    // Docker access through the host's docker group, not root.
    let groups = service["group_add"].as_vec().expect("group_add");
    assert!(
        groups
            .iter()
            .any(|g| g.as_str().is_some_and(|g| g.starts_with("${DOCKER_GID"))),
        "group_add: {groups:?}"
    );
    assert!(
        service["user"].is_badvalue() || service["user"].as_str() != Some("root"),
        "not root"
    );
}

/// The compose environment with every `${VAR:?…}` given `sample` and every `${VAR:-d}` its
/// default, as the engine would see it (plus the image's ENV).
#[test]
fn the_compose_settings_make_a_supabase_mode_configuration() {
    let doc = compose();
    let env = environment(service(&doc));
    let sample = |name: &str| match name {
        "SUPABASE_URL" => "https://abcdefgh.supabase.co".to_string(),
        "HOST_WORKSPACE_PATH" => "/srv/lucid/workspaces".to_string(),
        other => format!("sample-{other}"),
    };
    let re = Regex::new(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}").unwrap();
    let mut vars: HashMap<String, String> = dockerfile_runtime_env();
    for (name, value) in &env {
        let resolved = re
            .replace_all(value, |c: &regex::Captures| {
                match c.get(2).map(|m| m.as_str()) {
                    Some(":-") | Some("-") => c[3].to_string(),
                    _ => sample(&c[1]),
                }
            })
            .into_owned();
        vars.insert(name.clone(), resolved);
    }
    let config = lucid_engine::Config::from_map(&vars).expect("the compose settings parse");
    assert!(!config.is_local_mode(), "Supabase mode");
    assert_eq!(config.host, "0.0.0.0");
    assert_eq!(config.port, 8000);
    assert_eq!(
        config.workspace_base,
        std::path::PathBuf::from("/app/storage")
    );
    assert_eq!(
        config.sandbox.host_workspace_path,
        Some(std::path::PathBuf::from("/srv/lucid/workspaces"))
    );
    assert_eq!(config.data_dir, std::path::PathBuf::from("/app/data"));
    assert!(config.encryption_key.is_some());
}

/// `FROM image AS name` stages of the Dockerfile, each with its instructions (continuation
/// lines joined).
fn dockerfile_stages() -> Vec<(String, String, Vec<String>)> {
    let text = read("Dockerfile");
    let mut lines = Vec::new();
    let mut current = String::new();
    for raw in text.lines() {
        let line = raw.trim();
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        if let Some(head) = line.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
        } else {
            current.push_str(line);
            lines.push(std::mem::take(&mut current));
        }
    }
    let mut stages: Vec<(String, String, Vec<String>)> = Vec::new();
    for line in lines {
        let upper = line.to_ascii_uppercase();
        if upper.starts_with("FROM ") {
            let words: Vec<&str> = line.split_whitespace().collect();
            let image = words[1].to_string();
            let name = match words.iter().position(|w| w.eq_ignore_ascii_case("as")) {
                Some(i) => words[i + 1].to_string(),
                None => String::new(),
            };
            stages.push((name, image, Vec::new()));
        } else if let Some(stage) = stages.last_mut() {
            stage.2.push(line);
        }
    }
    stages
}

/// `ENV` of the final stage.
fn dockerfile_runtime_env() -> HashMap<String, String> {
    let stages = dockerfile_stages();
    let (_, _, instructions) = stages.last().expect("a stage");
    let mut env = HashMap::new();
    for line in instructions {
        if let Some(rest) = line.strip_prefix("ENV ") {
            for pair in rest.split_whitespace() {
                let (k, v) = pair.split_once('=').expect("ENV NAME=value");
                env.insert(k.to_string(), v.to_string());
            }
        }
    }
    env
}

#[test]
fn the_dockerfile_builds_ui_and_binary_apart_and_runs_unprivileged() {
    let stages = dockerfile_stages();
    let names: Vec<&str> = stages.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(names, ["ui", "build", "runtime"], "stages");
    assert!(
        stages[0].1.starts_with("node:"),
        "UI built by node: {}",
        stages[0].1
    );
    assert!(
        stages[1].1.starts_with("rust:"),
        "binary built by rust: {}",
        stages[1].1
    );
    assert_eq!(stages[2].1, "debian:bookworm-slim", "small runtime image");

    let has = |stage: usize, needle: &str| stages[stage].2.iter().any(|l| l.contains(needle));
    assert!(
        has(0, "npm ci") && has(0, "npm run build"),
        "{:?}",
        stages[0].2
    );
    assert!(has(1, "COPY --from=ui /src/ui/dist ui/dist"), "UI embedded");
    assert!(
        has(1, "cargo build --release --locked -p lucid-server"),
        "{:?}",
        stages[1].2
    );
    let runtime = &stages[2].2;
    assert!(has(2, "COPY --from=build"), "only the binary is copied");
    let install = runtime
        .iter()
        .find(|l| l.contains("apt-get install"))
        .expect("apt-get install");
    for package in ["git", "ca-certificates", "tini", "--no-install-recommends"] {
        assert!(
            install.split_whitespace().any(|w| w == package),
            "{package}: {install}"
        );
    }
    let user = runtime
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("USER in the runtime stage");
    let uid = user.split(':').next().unwrap().trim();
    assert!(
        uid.parse::<u32>().is_ok_and(|u| u >= 1000),
        "numeric non-root uid, got {user:?}"
    );
    let entrypoint = runtime
        .iter()
        .find_map(|l| l.strip_prefix("ENTRYPOINT "))
        .expect("ENTRYPOINT");
    assert!(
        entrypoint.contains("tini") && entrypoint.contains("lucid"),
        "{entrypoint}"
    );
    let cmd = runtime
        .iter()
        .find_map(|l| l.strip_prefix("CMD "))
        .expect("CMD");
    assert!(cmd.contains("serve"), "{cmd}");

    // Every setting the image sets is one the binary reads.
    let config = config_names();
    for name in dockerfile_runtime_env().keys() {
        assert!(
            config.contains(name) || name == "HOME",
            "ENV {name} is not read by config.rs"
        );
    }
}

#[test]
fn the_build_context_leaves_out_build_output_and_secrets() {
    let ignore = read(".dockerignore");
    let entries: Vec<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    for needed in [".git", "**/target", "**/node_modules", ".env", ".env.*"] {
        assert!(
            entries.contains(&needed),
            "{needed} in .dockerignore: {entries:?}"
        );
    }
    // The build needs these: nothing may exclude them.
    for kept in ["supabase", "ui", "crates", "Cargo.lock"] {
        assert!(
            !entries.iter().any(|e| e.trim_end_matches('/') == kept),
            "{kept} must be in the build context"
        );
    }
}

#[test]
fn the_readme_explains_the_team_deployment_and_the_docker_socket() {
    let readme = read("README.md");
    let start = readme
        .find("## Running Lucid for a team")
        .expect("README section \"Running Lucid for a team\"");
    let rest = &readme[start + 3..];
    let section = &rest[..rest.find("\n## ").unwrap_or(rest.len())];
    for needle in [
        "docker compose",
        "HOST_WORKSPACE_PATH",
        "DOCKER_GID",
        "root on the host",
        "socket proxy",
        "rootless",
        "lucid doctor",
        "10001",
    ] {
        assert!(section.contains(needle), "{needle:?} in the team section");
    }
}
