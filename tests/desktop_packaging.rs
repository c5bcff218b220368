//! The Linux package hands `lucid://` sign-in links to the app. The `.deb`'s desktop entry
//! declares the scheme (`MimeType=x-scheme-handler/lucid`, from the deep-link plugin's
//! configured schemes) and its `Exec` line must carry `%u`: without a field code, launchers
//! start the app without the URL and the sign-in callback is lost (tauri-bundler's stock
//! template has none, hence our template). `scripts/package.sh` builds the `.deb` and checks
//! the entry it contains; this test checks the configuration that entry is made from.

use std::path::Path;

use serde_json::Value;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_deb_desktop_entry_registers_the_lucid_scheme_and_passes_the_link() {
    let conf: Value =
        serde_json::from_str(&std::fs::read_to_string(root().join("tauri.conf.json")).unwrap())
            .unwrap();
    let schemes = &conf["plugins"]["deep-link"]["desktop"]["schemes"];
    assert_eq!(schemes, &serde_json::json!(["lucid"]), "{conf}");
    assert!(conf["bundle"]["targets"]
        .as_array()
        .unwrap()
        .contains(&Value::from("deb")));
    let template_path = conf["bundle"]["linux"]["deb"]["desktopTemplate"]
        .as_str()
        .expect("a desktop template for the .deb");
    let template = std::fs::read_to_string(root().join(template_path)).unwrap();
    let lines: Vec<&str> = template.lines().collect();
    let exec: Vec<&&str> = lines.iter().filter(|l| l.starts_with("Exec=")).collect();
    assert_eq!(exec.len(), 1, "{template}");
    assert_eq!(
        *exec[0], "Exec={{exec}} %u",
        "the link must reach the app as its one argument"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("MimeType={{mime_type}}")),
        "{template}"
    );
    // The rest of the stock entry is kept.
    for key in ["Name=", "Icon=", "Type=Application", "Categories="] {
        assert!(
            lines.iter().any(|l| l.starts_with(key)),
            "{key}: {template}"
        );
    }
}
