//! The workspace file tree shown in the UI (`GET /api/v1/files/list`).
//!
//! Node shapes are the original's: `{"name","type":"folder","path":"/rel","children":[...]}`
//! and `{"name","type":"file","path":"/rel"}`, with paths relative to the workspace root and a
//! leading `/`. A symlink is a file node with `"symlink": true` and is never descended.
//!
//! Order: entries of a directory are sorted by the bytes of their names, folders and files
//! interleaved, exactly like the original's `sorted(os.listdir())` (uppercase before lowercase).
//!
//! Skipped: hidden directories and the original's heavy folders ([`EXCLUDED_DIRS`]); hidden
//! files are listed. Walks are bounded by [`TreeLimits`]; when a limit cuts the walk short the
//! result has `truncated: true`. Unreadable directories are listed with no children.
//!
//! The walk recurses with directory handles from the workspace's [`WorkspaceDir`]: each
//! entry is inspected with `lstat` inside its parent's handle and a subdirectory is opened
//! with `O_NOFOLLOW`, so a directory swapped for a symlink mid-walk is never entered.

use std::ffi::OsString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use cap_fs_ext::DirExt;
use cap_std::fs::Dir;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{FilesError, WorkspaceDir};

/// Directory names never descended (nor listed), as in the original.
pub const EXCLUDED_DIRS: &[&str] = &[
    ".git",
    "node_modules",
    "__pycache__",
    ".next",
    ".venv",
    "venv",
    ".mypy_cache",
    ".pytest_cache",
    "dist",
    "build",
    ".tox",
    ".eggs",
];

/// Bounds of one tree walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeLimits {
    /// Deepest directory level whose entries are listed (1 = only the root's entries).
    pub max_depth: usize,
    /// Most nodes (files and folders) in the whole tree.
    pub max_entries: usize,
}

impl Default for TreeLimits {
    fn default() -> Self {
        Self {
            max_depth: 12,
            max_entries: 5_000,
        }
    }
}

/// Kind of a tree node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, specta::Type)]
#[serde(rename_all = "lowercase")]
pub enum NodeKind {
    Folder,
    File,
}

/// One entry of the file tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, specta::Type)]
pub struct FileNode {
    /// The entry's name (non-UTF-8 bytes replaced with U+FFFD).
    pub name: String,
    #[serde(rename = "type")]
    pub kind: NodeKind,
    /// Workspace-relative path with a leading `/`, e.g. `/src/main.rs`.
    pub path: String,
    /// Entries of a folder (absent for files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(no_recursion)]
    pub children: Option<Vec<FileNode>>,
    /// True for a symbolic link (listed as a file, never followed).
    #[serde(default, skip_serializing_if = "is_false")]
    pub symlink: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// The result of a tree walk; serialises as the original's `{"tree": [...]}` plus the flag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, specta::Type)]
pub struct FileTree {
    pub tree: Vec<FileNode>,
    /// True when a depth or entry limit left part of the workspace out.
    pub truncated: bool,
}

/// Walks the workspace at `root` (which must be an existing directory) without following
/// symlinks. Opens the workspace root and calls [`build_tree_in`].
pub fn build_tree(root: &Path, limits: TreeLimits) -> Result<FileTree, FilesError> {
    build_tree_in(&WorkspaceDir::open(root)?, limits)
}

/// Walks the workspace through its root handle without following symlinks.
fn build_tree_in(ws: &WorkspaceDir, limits: TreeLimits) -> Result<FileTree, FilesError> {
    let mut walk = Walk {
        limits,
        emitted: 0,
        truncated: false,
    };
    let tree = match walk.list(ws.root(), "", 1) {
        Ok(nodes) => nodes,
        Err(e) => return Err(FilesError::Io(e.kind())),
    };
    Ok(FileTree {
        tree,
        truncated: walk.truncated,
    })
}

struct Walk {
    limits: TreeLimits,
    emitted: usize,
    truncated: bool,
}

impl Walk {
    /// Lists the directory `dir` (at `depth`, the root's entries being depth 1), whose
    /// workspace-relative path is `rel` ("" for the root).
    fn list(&mut self, dir: &Dir, rel: &str, depth: usize) -> io::Result<Vec<FileNode>> {
        let remaining = self.limits.max_entries.saturating_sub(self.emitted);
        let mut names: Vec<OsString> = Vec::new();
        for entry in dir.entries()? {
            let Ok(entry) = entry else { continue };
            if names.len() > remaining {
                // More names than we could ever emit: stop reading (bounded memory).
                self.truncated = true;
                break;
            }
            names.push(entry.file_name());
        }
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));

        let mut nodes = Vec::new();
        for os_name in names {
            // Never follows symlinks; an entry that vanished meanwhile is skipped.
            let Ok(meta) = dir.symlink_metadata(&os_name) else {
                continue;
            };
            let name = os_name.to_string_lossy().into_owned();
            let is_dir = meta.file_type().is_dir();
            if is_dir && (name.starts_with('.') || EXCLUDED_DIRS.contains(&name.as_str())) {
                continue;
            }
            if self.emitted >= self.limits.max_entries {
                self.truncated = true;
                break;
            }
            self.emitted += 1;
            let path = format!("{rel}/{name}");
            let node = if is_dir {
                // Opened without following: a directory swapped for a symlink since the
                // `lstat` fails to open and is listed empty, like an unreadable one.
                let child = dir.open_dir_nofollow(&os_name).ok();
                let children = match child {
                    Some(child) if depth >= self.limits.max_depth => {
                        if has_entries(&child) {
                            self.truncated = true;
                        }
                        Vec::new()
                    }
                    Some(child) => self.list(&child, &path, depth + 1).unwrap_or_default(),
                    None => Vec::new(),
                };
                FileNode {
                    name,
                    kind: NodeKind::Folder,
                    path,
                    children: Some(children),
                    symlink: false,
                }
            } else {
                FileNode {
                    name,
                    kind: NodeKind::File,
                    path,
                    children: None,
                    symlink: meta.file_type().is_symlink(),
                }
            };
            nodes.push(node);
        }
        Ok(nodes)
    }
}

fn has_entries(dir: &Dir) -> bool {
    dir.entries().is_ok_and(|mut it| it.next().is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::fs;
    use std::os::unix::fs::symlink;

    fn names(nodes: &[FileNode]) -> Vec<&str> {
        nodes.iter().map(|n| n.name.as_str()).collect()
    }

    fn find<'a>(nodes: &'a [FileNode], name: &str) -> &'a FileNode {
        nodes.iter().find(|n| n.name == name).unwrap()
    }

    #[test]
    fn shapes_order_and_paths_match_the_original() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("src/util")).unwrap();
        fs::write(root.join("src/util/x.py"), "").unwrap();
        fs::write(root.join("README.md"), "").unwrap();
        fs::write(root.join("b.txt"), "").unwrap();
        fs::write(root.join("a.txt"), "").unwrap();
        fs::write(root.join(".env"), "").unwrap();

        let tree = build_tree(root, TreeLimits::default()).unwrap();
        assert!(!tree.truncated);
        // Byte order: `.env` < `README.md` < `a.txt` < `b.txt` < `src`.
        assert_eq!(
            names(&tree.tree),
            vec![".env", "README.md", "a.txt", "b.txt", "src"]
        );
        let src = find(&tree.tree, "src");
        assert_eq!(
            serde_json::to_value(src).unwrap(),
            json!({"name": "src", "type": "folder", "path": "/src", "children": [
                {"name": "util", "type": "folder", "path": "/src/util", "children": [
                    {"name": "x.py", "type": "file", "path": "/src/util/x.py"}
                ]}
            ]})
        );
        let v = serde_json::to_value(&tree).unwrap();
        assert_eq!(v["truncated"], json!(false));
        assert_eq!(
            v["tree"][0],
            json!({"name": ".env", "type": "file", "path": "/.env"})
        );
    }

    #[test]
    fn heavy_and_hidden_folders_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for heavy in EXCLUDED_DIRS {
            fs::create_dir_all(root.join(heavy).join("inner")).unwrap();
            fs::write(root.join(heavy).join("f"), "").unwrap();
        }
        fs::create_dir_all(root.join(".hidden_dir")).unwrap();
        fs::create_dir_all(root.join("kept")).unwrap();
        fs::create_dir_all(root.join("kept/node_modules/pkg")).unwrap();
        fs::write(root.join("dist.txt"), "").unwrap();
        let tree = build_tree(root, TreeLimits::default()).unwrap();
        assert_eq!(names(&tree.tree), vec!["dist.txt", "kept"]);
        assert_eq!(find(&tree.tree, "kept").children, Some(vec![]));
    }

    #[test]
    fn symlinks_are_listed_but_never_followed() {
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("secret.txt"), "s").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir(root.join("inner")).unwrap();
        fs::write(root.join("inner/f.txt"), "").unwrap();
        symlink(outside.path(), root.join("out_dir")).unwrap();
        symlink(outside.path().join("secret.txt"), root.join("out_file")).unwrap();
        symlink("inner", root.join("in_dir")).unwrap();
        symlink(root, root.join("inner/self")).unwrap();

        let tree = build_tree(root, TreeLimits::default()).unwrap();
        assert_eq!(
            names(&tree.tree),
            vec!["in_dir", "inner", "out_dir", "out_file"]
        );
        for link in ["in_dir", "out_dir", "out_file"] {
            let node = find(&tree.tree, link);
            assert_eq!(node.kind, NodeKind::File, "{link}");
            assert!(node.symlink, "{link}");
            assert!(node.children.is_none(), "{link}");
        }
        let json = serde_json::to_string(&tree).unwrap();
        assert!(!json.contains("secret.txt"));
        let inner = find(&tree.tree, "inner");
        let kids = inner.children.as_ref().unwrap();
        assert_eq!(names(kids), vec!["f.txt", "self"]);
        assert!(find(kids, "self").symlink);
    }

    #[test]
    fn symlink_loops_do_not_break_the_walk() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        symlink("loop_b", root.join("loop_a")).unwrap();
        symlink("loop_a", root.join("loop_b")).unwrap();
        fs::create_dir(root.join("d")).unwrap();
        symlink("..", root.join("d/up")).unwrap();
        let tree = build_tree(root, TreeLimits::default()).unwrap();
        assert_eq!(names(&tree.tree), vec!["d", "loop_a", "loop_b"]);
        assert!(!tree.truncated);
    }

    #[test]
    fn depth_is_capped() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let deep = root.join("l1/l2/l3/l4");
        fs::create_dir_all(&deep).unwrap();
        fs::write(deep.join("f"), "").unwrap();
        let limits = TreeLimits {
            max_depth: 2,
            max_entries: 100,
        };
        let tree = build_tree(root, limits).unwrap();
        assert!(tree.truncated);
        let l1 = find(&tree.tree, "l1");
        let l2 = find(l1.children.as_ref().unwrap(), "l2");
        assert_eq!(l2.children, Some(vec![]));

        // An empty directory at the depth limit loses nothing.
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("a/b")).unwrap();
        let tree = build_tree(dir.path(), limits).unwrap();
        assert!(!tree.truncated);
    }

    #[test]
    fn entries_are_capped() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for i in 0..50 {
            fs::write(root.join(format!("f{i:02}")), "").unwrap();
        }
        fs::create_dir(root.join("sub")).unwrap();
        for i in 0..50 {
            fs::write(root.join(format!("sub/g{i:02}")), "").unwrap();
        }
        let limits = TreeLimits {
            max_depth: 12,
            max_entries: 60,
        };
        let tree = build_tree(root, limits).unwrap();
        assert!(tree.truncated);
        fn count(nodes: &[FileNode]) -> usize {
            nodes
                .iter()
                .map(|n| 1 + n.children.as_deref().map_or(0, count))
                .sum()
        }
        assert_eq!(count(&tree.tree), 60);
        assert_eq!(tree.tree[0].name, "f00");

        // Exactly at the cap is not truncation.
        let limits = TreeLimits {
            max_depth: 12,
            max_entries: 101,
        };
        let tree = build_tree(root, limits).unwrap();
        assert!(!tree.truncated);
        assert_eq!(count(&tree.tree), 101);
    }

    #[test]
    fn openapi_schemas_are_complete() {
        let mut schemas = Vec::new();
        <FileTree as ToSchema>::schemas(&mut schemas);
        let names: Vec<String> = schemas.iter().map(|(n, _)| n.clone()).collect();
        assert!(names.contains(&"FileNode".to_string()), "{names:?}");
        assert!(names.contains(&"NodeKind".to_string()), "{names:?}");
        let node = serde_json::to_value(<FileNode as utoipa::PartialSchema>::schema()).unwrap();
        assert_eq!(
            node["properties"]["children"]["items"]["$ref"],
            json!("#/components/schemas/FileNode"),
            "{node}"
        );
        assert_eq!(
            node["properties"]["type"]["$ref"],
            json!("#/components/schemas/NodeKind")
        );
    }

    #[test]
    fn missing_root_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            build_tree(&dir.path().join("nope"), TreeLimits::default()),
            Err(FilesError::WorkspaceMissing)
        );
    }
}
