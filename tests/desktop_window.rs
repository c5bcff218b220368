//! The real desktop app in a real window: the built `lucid-desktop` binary under Xvfb, driven
//! through WebDriver (`tauri-driver` + WebKitWebDriver), with the scripted LLM and a real
//! Docker sandbox (test image, network `none`). A task runs end to end and its events appear
//! in the window, a slow step is stopped, the session is found in History, and a screenshot
//! of the window is kept (`target/desktop-artifacts/`) and checked to be non-blank.
//!
//! Needs Xvfb, WebKitWebDriver and `tauri-driver` (installed by `scripts/test.sh`); fails with
//! the missing program's name otherwise.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lucid_testkit::llm::{Format, ScriptedLlm, Step};
use serde_json::{json, Value};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Kills a child process (and waits for it) when dropped.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn require(program: &str, hint: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|p| p.is_file())
    });
    let home_cargo = std::env::var_os("HOME")
        .map(|h| Path::new(&h).join(".cargo/bin").join(program))
        .filter(|p| p.is_file());
    found
        .or(home_cargo)
        .unwrap_or_else(|| panic!("{program} is needed for this test: {hint}"))
}

/// Proportional set size (KiB) of `root` and all its descendants, with their names.
fn pss_of_tree(root: u32) -> (u64, Vec<String>) {
    let parent_of = |pid: u32| -> Option<u32> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // `pid (comm) state ppid ...`: the comm may contain spaces; read after the last ')'.
        stat.rsplit_once(')')?
            .1
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    let pids: Vec<u32> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    let mut total = 0;
    let mut names = Vec::new();
    for pid in pids {
        let mut cur = Some(pid);
        let mut inside = false;
        while let Some(p) = cur {
            if p == root {
                inside = true;
                break;
            }
            if p <= 1 {
                break;
            }
            cur = parent_of(p);
        }
        if !inside || pid == root {
            continue;
        }
        let rollup =
            std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
        let pss: u64 = rollup
            .lines()
            .find(|l| l.starts_with("Pss:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0);
        total += pss;
        names.push(
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .unwrap_or_default()
                .trim()
                .to_string(),
        );
    }
    (total, names)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Driver {
    http: reqwest::Client,
    base: String,
    session: String,
}

impl Driver {
    async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let resp = self
            .http
            .request(method, &url)
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        let json: Value = resp.json().await.unwrap();
        json["value"].clone()
    }

    async fn find(&self, css: &str) -> Option<String> {
        let v = self
            .call(
                reqwest::Method::POST,
                "/element",
                json!({"using": "css selector", "value": css}),
            )
            .await;
        v[ELEMENT].as_str().map(str::to_string)
    }

    async fn wait_for(&self, css: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(id) = self.find(css).await {
                return id;
            }
            assert!(Instant::now() < deadline, "no element {css} in the window");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn type_into(&self, element: &str, text: &str) {
        self.call(
            reqwest::Method::POST,
            &format!("/element/{element}/value"),
            json!({ "text": text }),
        )
        .await;
    }

    async fn click(&self, element: &str) {
        self.call(
            reqwest::Method::POST,
            &format!("/element/{element}/click"),
            json!({}),
        )
        .await;
    }

    async fn source(&self) -> String {
        self.call(reqwest::Method::GET, "/source", Value::Null)
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    async fn wait_for_text(&self, text: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            if self.source().await.contains(text) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{text:?} never appeared in the window"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn script(&self, js: &str) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            json!({"script": js, "args": []}),
        )
        .await
    }
}

/// A screenshot of the whole Xvfb screen (ImageMagick's `import`; WebKitWebDriver's own
/// screenshot command is unreliable under Xvfb).
fn screenshot(display: &str, to: &Path) {
    let status = Command::new("import")
        .args(["-display", display, "-window", "root", to.to_str().unwrap()])
        .status()
        .expect("ImageMagick's import (scripts/setup-desktop.sh)");
    assert!(status.success(), "screenshot failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_runs_a_task_in_a_real_window() {
    let xvfb = require("Xvfb", "apt-get install xvfb");
    let tauri_driver = require("tauri-driver", "cargo install tauri-driver --locked");
    require(
        "WebKitWebDriver",
        "apt-get install webkit2gtk-driver (scripts/setup-desktop.sh)",
    );
    let app = PathBuf::from(env!("CARGO_BIN_EXE_lucid-desktop"));
    let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/desktop-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();

    let llm = ScriptedLlm::start(
        Format::Anthropic,
        vec![
            Step::tool_call(
                "execute_bash",
                json!({"command": "echo hello-from-the-desktop-window"}),
            ),
            Step::tool_call("finish", json!({"message": "Said hello"})),
            Step::tool_call("execute_bash", json!({"command": "sleep 30"})),
            Step::text("stopped"),
        ],
    )
    .await;
    let home = tempfile::tempdir().unwrap();
    let vars = common::env_for(Some(&llm), &home.path().join("unused")).await;

    let display = format!(":{}", 90 + (std::process::id() % 9));
    let _xvfb = Reaped(
        Command::new(xvfb)
            .args([
                display.as_str(),
                "-screen",
                "0",
                "1280x860x24",
                "-nolisten",
                "tcp",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    tokio::time::sleep(Duration::from_millis(700)).await;

    let port = free_port();
    let native_port = free_port();
    let mut driver_cmd = Command::new(tauri_driver);
    driver_cmd
        .args([
            "--port",
            &port.to_string(),
            "--native-port",
            &native_port.to_string(),
        ])
        .env("DISPLAY", &display)
        .env("HOME", home.path())
        .env("XDG_DATA_HOME", home.path().join("data"))
        .env("XDG_CONFIG_HOME", home.path().join("config"))
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .env_remove("WAYLAND_DISPLAY")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (key, value) in &vars {
        if key != "LUCID_DATA_DIR" {
            driver_cmd.env(key, value);
        }
    }
    let _driver = Reaped(driver_cmd.spawn().unwrap());
    let driver_pid = _driver.0.id();

    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let launched = Instant::now();
    let session = loop {
        let created = http
            .post(format!("{base}/session"))
            .json(&json!({"capabilities": {"alwaysMatch": {
                "browserName": "wry",
                "tauri:options": {"application": app}
            }}}))
            .send()
            .await;
        if let Ok(resp) = created {
            let v: Value = resp.json().await.unwrap_or_default();
            if let Some(id) = v["value"]["sessionId"].as_str() {
                break id.to_string();
            }
            panic!("WebDriver refused the session: {v}");
        }
        assert!(
            launched.elapsed() < Duration::from_secs(30),
            "tauri-driver did not start"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let d = Driver {
        http: http.clone(),
        base: base.clone(),
        session,
    };

    // The app opens on the new-task page, in local mode without signing in.
    let task_box = d.wait_for("textarea", Duration::from_secs(60)).await;
    println!(
        "bench: launch to interactive window: {} ms",
        launched.elapsed().as_millis()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (pss_kib, processes) = pss_of_tree(driver_pid);
    println!(
        "bench: idle memory (PSS) of the app's processes: {} MiB ({})",
        pss_kib / 1024,
        processes.join(", ")
    );
    assert_eq!(
        d.script("return '__TAURI_INTERNALS__' in window").await,
        json!(true),
        "the UI does not run inside the app"
    );
    d.type_into(&task_box, "say hello from the window").await;
    d.type_into(&task_box, "\u{E007}").await; // Enter sends
    d.wait_for_text("hello-from-the-desktop-window", Duration::from_secs(90))
        .await;
    d.wait_for_text("Said hello", Duration::from_secs(30)).await;
    screenshot(&display, &artifacts.join("window-task.png"));

    // A follow-up runs a slow step; Stop interrupts it.
    let follow_up = d
        .wait_for("textarea#follow-up", Duration::from_secs(10))
        .await;
    d.type_into(&follow_up, "now wait a while").await;
    d.type_into(&follow_up, "\u{E007}").await;
    d.wait_for_text("sleep 30", Duration::from_secs(30)).await;
    let stop = d.wait_for("button.danger", Duration::from_secs(10)).await;
    let stopped_at = Instant::now();
    d.click(&stop).await;
    d.wait_for_text("stopped", Duration::from_secs(10)).await;
    assert!(stopped_at.elapsed() < Duration::from_secs(10));

    // History lists the session, under the title the session's model gave it.
    let history = d
        .wait_for("a[href='/ui/history']", Duration::from_secs(10))
        .await;
    d.click(&history).await;
    d.wait_for_text(lucid_testkit::llm::DEFAULT_TITLE, Duration::from_secs(15))
        .await;
    let shot = artifacts.join("window-history.png");
    screenshot(&display, &shot);

    // Settings inside the app offer the app's own settings: API keys and the rest.
    let settings = d
        .wait_for("a[href='/ui/settings']", Duration::from_secs(10))
        .await;
    d.click(&settings).await;
    d.wait_for_text("API keys", Duration::from_secs(15)).await;
    d.wait_for_text("Save settings", Duration::from_secs(5))
        .await;

    // The screenshot shows a rendered window, not a blank one.
    let colours = Command::new("identify")
        .args(["-format", "%k", shot.to_str().unwrap()])
        .output()
        .expect("ImageMagick's identify (scripts/setup-desktop.sh)");
    let colours: u64 = String::from_utf8_lossy(&colours.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    assert!(colours > 16, "the window looks blank ({colours} colours)");

    let _ = http
        .delete(format!("{base}/session/{}", d.session))
        .send()
        .await;
}
