//! Build script of the desktop app: Tauri's code generation from `tauri.conf.json`, with the
//! capabilities kept beside the shell's sources. The UI is built by `npm run build` in `ui/`
//! (the README's commands do it); when it has not been built, a page saying so is put in its
//! place so that the engine and its tests still build.

fn main() {
    let dist = std::path::Path::new("ui/dist");
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
    println!("cargo:rerun-if-changed=ui/dist");
    tauri_build::try_build(
        tauri_build::Attributes::new().capabilities_path_pattern("src-tauri/capabilities/**/*"),
    )
    .expect("tauri build script");
}
