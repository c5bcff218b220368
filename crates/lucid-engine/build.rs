//! Embeds the Supabase migrations (`supabase/migrations/*.sql` at the repository root) so that
//! `lucid doctor` can tell which of them a Supabase project lacks: generates
//! `$OUT_DIR/supabase_migrations.rs` with one `(file name, SQL text)` entry per file, in
//! file-name (= application) order.

use std::path::PathBuf;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("manifest dir"));
    let dir = manifest_dir.join("../../supabase/migrations");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files: Vec<(String, PathBuf)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .filter_map(|entry| {
            let path = entry.expect("directory entry").path();
            let name = path.file_name()?.to_str()?.to_string();
            name.ends_with(".sql").then_some((name, path))
        })
        .collect();
    files.sort();
    let mut code = String::from(
        "/// The Supabase migrations, `(file name, SQL)`, in application order.\n\
         pub const MIGRATION_FILES: &[(&str, &str)] = &[\n",
    );
    for (name, path) in &files {
        let path = path.canonicalize().expect("canonical migration path");
        code.push_str(&format!(
            "    ({name:?}, include_str!({:?})),\n",
            path.display().to_string()
        ));
    }
    code.push_str("];\n");
    let out =
        PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("supabase_migrations.rs");
    std::fs::write(&out, code).unwrap_or_else(|e| panic!("cannot write {}: {e}", out.display()));
}
