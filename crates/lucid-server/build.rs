//! Points the embedded UI (`src/ui.rs`) at `ui/dist` when the UI was built (`npm run build`
//! in `ui/`), or at a one-page placeholder saying how to build it. Runs nothing heavy: the
//! binary builds with or without Node.

use std::path::PathBuf;

const PLACEHOLDER: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Lucid: UI not built</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="font-family: system-ui, sans-serif; max-width: 40rem; margin: 4rem auto; line-height: 1.5">
<h1>The Lucid UI was not built into this binary</h1>
<p>This <code>lucid</code> binary was compiled before the web UI was built, so only the API is
available. To get the UI, build it and then the binary:</p>
<pre>cd ui &amp;&amp; npm ci &amp;&amp; npm run build
cargo build --release -p lucid-server</pre>
<p>The API answers at <code>/api/v1</code>; its description is at <a href="/openapi.json">/openapi.json</a>.</p>
</body></html>
"#;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("manifest dir"));
    let dist = manifest.join("../../ui/dist");
    println!("cargo:rerun-if-changed=../../ui/dist");
    // Only a real Vite build counts: its index.html loads content-hashed files from
    // /ui/assets/ (another build script may leave a bare placeholder index.html there).
    let built = std::fs::read_to_string(dist.join("index.html"))
        .map(|html| html.contains("/ui/assets/"))
        .unwrap_or(false);
    let dir = if built {
        println!("cargo:rustc-env=LUCID_UI_BUILT=1");
        dist.canonicalize().expect("canonical ui/dist")
    } else {
        println!("cargo:rustc-env=LUCID_UI_BUILT=0");
        let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("ui-placeholder");
        std::fs::create_dir_all(&out).expect("placeholder dir");
        std::fs::write(out.join("index.html"), PLACEHOLDER).expect("placeholder page");
        out
    };
    println!("cargo:rustc-env=LUCID_UI_DIR={}", dir.display());
}
