//! Build script of the desktop app: Tauri's code generation from `tauri.conf.json`, with the
//! capabilities kept beside the shell's sources.
//!
//! The UI is built by `npm run build` in `ui/` (the README's commands do it) for `lucid serve`,
//! which serves it under `/ui/`. The window loads the same build: it is laid out here in
//! `ui/dist-desktop/` with its files under `ui/` and its page at the root, so that the same
//! asset paths work in both front doors. When the UI has not been built, a page saying so
//! takes its place, so that the engine and its tests still build.

use std::path::Path;

fn main() {
    let dist = Path::new("ui/dist");
    if !dist.join("index.html").exists() {
        std::fs::create_dir_all(dist).expect("create ui/dist");
        std::fs::write(
            dist.join("index.html"),
            "<!doctype html><meta charset=utf-8><title>Lucid</title>\
             <p>The Lucid UI has not been built: run <code>npm ci &amp;&amp; npm run build</code> \
             in <code>ui/</code>, then rebuild the app.</p>",
        )
        .expect("write the placeholder UI");
    }
    let desktop = Path::new("ui/dist-desktop");
    if desktop.exists() {
        std::fs::remove_dir_all(desktop).expect("clear ui/dist-desktop");
    }
    copy_tree(dist, &desktop.join("ui")).expect("lay out the UI for the window");
    std::fs::copy(dist.join("index.html"), desktop.join("index.html")).expect("copy the UI's page");
    println!("cargo:rerun-if-changed=ui/dist");
    tauri_build::try_build(
        tauri_build::Attributes::new().capabilities_path_pattern("src-tauri/capabilities/**/*"),
    )
    .expect("tauri build script");
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}
