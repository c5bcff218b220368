//! A second launch of the desktop app hands over to the first one (which comes to the front)
//! and exits, instead of opening a second window: the real binary under Xvfb, in its own
//! D-Bus session (`dbus-run-session`), which the single-instance plugin uses on Linux.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn a_second_launch_focuses_the_first_window_and_exits() {
    for program in ["Xvfb", "dbus-run-session", "xwininfo"] {
        assert!(
            Command::new("sh")
                .args(["-c", &format!("command -v {program}")])
                .status()
                .unwrap()
                .success(),
            "{program} is needed for this test (scripts/setup-desktop.sh installs it)"
        );
    }
    let app = env!("CARGO_BIN_EXE_lucid-desktop");
    let home = tempfile::tempdir().unwrap();
    let display = format!(":{}", 60 + (std::process::id() % 9));
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

    // Inside one D-Bus session: the first instance, then (once its window exists) a second
    // one whose exit status and time are reported, then the count of Lucid windows.
    let script = format!(
        r#"
        "{app}" >"$HOME/first.log" 2>&1 &
        first=$!
        for i in $(seq 1 150); do
          xwininfo -root -tree 2>/dev/null | grep -q '"Lucid"' && break
          sleep 0.2
        done
        start=$(date +%s%N)
        timeout 20 "{app}" >"$HOME/second.log" 2>&1
        echo "second-exit=$?"
        echo "second-ms=$(( ($(date +%s%N) - start) / 1000000 ))"
        sleep 1
        echo "windows=$(xwininfo -root -tree | grep -c '"Lucid"')"
        kill -0 $first 2>/dev/null && echo first-alive=yes
        kill $first; wait $first 2>/dev/null
        "#
    );
    let started = Instant::now();
    let out = Command::new("dbus-run-session")
        .args(["--", "sh", "-c", &script])
        .env("DISPLAY", &display)
        .env("HOME", home.path())
        .env("XDG_DATA_HOME", home.path().join("data"))
        .env("XDG_CONFIG_HOME", home.path().join("config"))
        .env("DOCKER_NETWORK", "none")
        .env_remove("WAYLAND_DISPLAY")
        .output()
        .unwrap();
    let _ = xvfb.kill();
    let _ = xvfb.wait();
    let text = String::from_utf8_lossy(&out.stdout);
    let logs = format!(
        "{text}\n--- first ---\n{}\n--- second ---\n{}",
        std::fs::read_to_string(home.path().join("first.log")).unwrap_or_default(),
        std::fs::read_to_string(home.path().join("second.log")).unwrap_or_default()
    );
    assert!(started.elapsed() < Duration::from_secs(90), "{logs}");
    assert!(
        text.contains("second-exit=0"),
        "the second launch did not hand over: {logs}"
    );
    let second_ms: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("second-ms="))
        .and_then(|v| v.trim().parse().ok())
        .expect("timing");
    assert!(second_ms < 15_000, "{logs}");
    assert!(text.contains("windows=1"), "a second window opened: {logs}");
    assert!(text.contains("first-alive=yes"), "{logs}");
}
