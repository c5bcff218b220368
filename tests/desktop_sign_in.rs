//! Desktop sign-in (Supabase mode, against the fake Supabase Auth) with the real binary under
//! Xvfb, in its own D-Bus session (`dbus-run-session`), the way Linux delivers `lucid://`
//! links: `lucid-desktop --sign-in github` opens "the browser" (the desktop's default browser,
//! a script registered through `mimeapps.list`, found by xdg-open), which follows the provider's redirects and launches a **second instance** with
//! the `lucid://auth/callback?…` URL as its argument; the single-instance plugin hands it to
//! the first, which completes the sign-in and stores the refresh token in the kernel keyring.
//! A restart opens signed in (restored from the keyring). A link given to a **cold start**
//! (the first process's argument, before the window is ready) is queued and handled, not
//! lost. The refresh token round-trips through the keyring (`KeyringVault`).

use std::process::{Command, Stdio};
use std::time::Duration;

use lucid_desktop::account::{KeyringVault, REFRESH_TOKEN_KEY};
use lucid_desktop::secrets::Secrets;
use lucid_engine::auth::TokenVault;
use lucid_testkit::supabase_auth::FakeSupabaseAuth;

const ANON: &str = "desktop-anon-key";
const SECRET: &str = "desktop-supabase-jwt-secret-0123456789";

fn require(programs: &[&str]) {
    for program in programs {
        assert!(
            Command::new("sh")
                .args(["-c", &format!("command -v {program}")])
                .status()
                .unwrap()
                .success(),
            "{program} is needed for this test (scripts/setup-desktop.sh installs it)"
        );
    }
}

/// Runs `script` inside a fresh D-Bus session on an Xvfb display with the app's environment.
fn in_desktop_session(
    home: &std::path::Path,
    display: &str,
    supabase_url: &str,
    script: &str,
) -> String {
    let out = Command::new("dbus-run-session")
        .args(["--", "sh", "-c", script])
        .env("DISPLAY", display)
        .env("HOME", home)
        .env("XDG_DATA_HOME", home.join("data"))
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("XDG_CURRENT_DESKTOP", "")
        .env("APP", env!("CARGO_BIN_EXE_lucid-desktop"))
        .env("SUPABASE_URL", supabase_url)
        .env("SUPABASE_ANON_KEY", ANON)
        .env("SUPABASE_JWT_SECRET", SECRET)
        .env("SUPABASE_SERVICE_KEY", "desktop-service-key")
        .env("SANDBOX_MODE", "local")
        .env("RUST_LOG", "info")
        .env_remove("WAYLAND_DISPLAY")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn read(home: &std::path::Path, name: &str) -> String {
    std::fs::read_to_string(home.join(name)).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn deep_link_sign_in_through_a_second_instance_restart_and_cold_start() {
    require(&["Xvfb", "dbus-run-session", "curl", "xdg-open"]);
    // The test process gets its session keyring first, so the app (its descendant) shares
    // it and the test can look at what the app stored.
    std::env::remove_var("DBUS_SESSION_BUS_ADDRESS");
    let secrets = Secrets::open_platform_store().expect("a credential store");
    let vault = KeyringVault(secrets.clone());
    // Round trip through the keyring, also from another handle (the app after a restart).
    vault.store(Some("rt-round-trip-0001")).unwrap();
    assert_eq!(vault.load().unwrap().as_deref(), Some("rt-round-trip-0001"));
    let again = KeyringVault(Secrets::open_platform_store().unwrap());
    assert_eq!(again.load().unwrap().as_deref(), Some("rt-round-trip-0001"));
    assert_eq!(
        secrets.get(REFRESH_TOKEN_KEY).unwrap().as_deref(),
        Some("rt-round-trip-0001")
    );
    vault.store(None).unwrap();
    assert_eq!(again.load().unwrap(), None);

    let fake = FakeSupabaseAuth::start(ANON, SECRET.as_bytes()).await;
    let home = tempfile::tempdir().unwrap();
    let display = format!(":{}", 70 + (std::process::id() % 9));
    let mut xvfb = Command::new("Xvfb")
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
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));

    // "The browser": follows the authorize URL to the provider and back, then the OS launches
    // the app with the callback URL as its only argument.
    std::fs::write(
        home.path().join("browser.sh"),
        r#"#!/bin/sh
loc=$(curl -s -o /dev/null -w '%{redirect_url}' "$1")
echo "$loc" > "$HOME/callback.url"
timeout 30 "$APP" "$loc" > "$HOME/second.log" 2>&1
echo $? > "$HOME/second.done"
"#,
    )
    .unwrap();
    Command::new("chmod")
        .args(["+x", home.path().join("browser.sh").to_str().unwrap()])
        .status()
        .unwrap();
    // It is the desktop's default web browser (xdg-open finds it through mimeapps.list).
    std::fs::create_dir_all(home.path().join("data/applications")).unwrap();
    std::fs::create_dir_all(home.path().join("config")).unwrap();
    std::fs::write(
        home.path().join("data/applications/lucid-test-browser.desktop"),
        format!(
            "[Desktop Entry]\nType=Application\nName=Test browser\nExec={} %u\nMimeType=x-scheme-handler/http;x-scheme-handler/https;\n",
            home.path().join("browser.sh").display()
        ),
    )
    .unwrap();
    std::fs::write(
        home.path().join("config/mimeapps.list"),
        "[Default Applications]\nx-scheme-handler/http=lucid-test-browser.desktop\nx-scheme-handler/https=lucid-test-browser.desktop\n",
    )
    .unwrap();

    let url = fake.url().to_string();
    let h = home.path().to_path_buf();
    let d = display.clone();
    let first_run = tokio::task::spawn_blocking(move || {
        in_desktop_session(
            &h,
            &d,
            &url,
            r#"
            "$APP" --sign-in github >"$HOME/first.log" 2>&1 &
            first=$!
            for i in $(seq 1 300); do [ -f "$HOME/second.done" ] && break; sleep 0.2; done
            for i in $(seq 1 100); do grep -q "signed in" "$HOME/first.log" && break; sleep 0.2; done
            echo "second-exit=$(cat "$HOME/second.done" 2>/dev/null)"
            kill $first; wait $first 2>/dev/null
            "#,
        )
    })
    .await
    .unwrap();
    let logs = |out: &str| {
        format!(
            "{out}\n--- first ---\n{}\n--- callback ---\n{}\n--- second ---\n{}\n--- restart ---\n{}\n--- cold ---\n{}",
            read(home.path(), "first.log"),
            read(home.path(), "callback.url"),
            read(home.path(), "second.log"),
            read(home.path(), "restart.log"),
            read(home.path(), "cold.log"),
        )
    };
    assert!(
        read(home.path(), "callback.url").starts_with("lucid://auth/callback?state="),
        "{}",
        logs(&first_run)
    );
    assert!(
        first_run.contains("second-exit=0"),
        "the second instance did not hand over: {}",
        logs(&first_run)
    );
    assert!(
        read(home.path(), "first.log").contains("signed in"),
        "{}",
        logs(&first_run)
    );
    assert_eq!(fake.count("pkce"), 1, "{}", logs(&first_run));
    assert_eq!(fake.live_sessions(), 1);
    let stored = vault
        .load()
        .unwrap()
        .expect("the refresh token is in the keyring");
    assert_eq!(stored.len(), 12, "a GoTrue refresh token");

    // Restart: the app opens signed in (the keyring's refresh token is used and rotated);
    // a link given to this cold start (before the window is ready) is queued, then handled:
    // it answers a sign-in this process never started, so it is refused in words.
    let url = fake.url().to_string();
    let h = home.path().to_path_buf();
    let d = display.clone();
    let restart = tokio::task::spawn_blocking(move || {
        in_desktop_session(
            &h,
            &d,
            &url,
            r#"
            "$APP" 'lucid://auth/callback?state=from-a-previous-run&code=c0ffee' >"$HOME/cold.log" 2>&1 &
            app=$!
            for i in $(seq 1 150); do grep -q "sign-in link refused" "$HOME/cold.log" && break; sleep 0.2; done
            kill $app; wait $app 2>/dev/null
            "$APP" >"$HOME/restart.log" 2>&1 &
            app=$!
            for i in $(seq 1 150); do grep -q "signed in (restored)" "$HOME/restart.log" && break; sleep 0.2; done
            kill $app; wait $app 2>/dev/null
            "#,
        )
    })
    .await
    .unwrap();
    let _ = xvfb.kill();
    let _ = xvfb.wait();
    let cold = read(home.path(), "cold.log");
    assert!(
        cold.contains("queued"),
        "the cold-start link was not queued: {}",
        logs(&restart)
    );
    assert!(
        cold.contains("does not belong to a sign-in started here"),
        "{}",
        logs(&restart)
    );
    assert!(
        read(home.path(), "restart.log").contains("signed in (restored)"),
        "{}",
        logs(&restart)
    );
    let rotated = vault.load().unwrap().expect("still signed in");
    assert_ne!(
        rotated, stored,
        "the restored session's new refresh token is stored"
    );
    assert!(fake.count("refresh_token") >= 1);
    vault.store(None).unwrap();
}
