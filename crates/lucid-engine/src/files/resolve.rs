//! Safe resolution of a requested path to a host path inside a workspace.
//!
//! Accepted forms, with `mount_path` = `/workspace` (where the sandbox sees the workspace):
//! - `/workspace` and `/workspace/x`: the path as the agent sees it inside the container;
//! - `/x`: the form the file tree reports (workspace-relative with a leading `/`, the
//!   original's contract). Any other absolute path is therefore taken as workspace-relative:
//!   `/etc/passwd` means `<workspace>/etc/passwd`, never the host's file;
//! - `x`, `./x`: relative to the workspace root.
//!
//! A path that starts with the mount path always has the mount path stripped, even if the
//! workspace happens to contain a top-level `workspace` directory.
//!
//! Resolution canonicalises (resolving every symlink, the way the kernel would inside the
//! container) and then requires the result to be inside the canonical workspace root.

use std::io;
use std::path::{Path, PathBuf};

use super::FilesError;

/// Longest accepted requested path, in bytes (Linux `PATH_MAX`).
pub const MAX_PATH_BYTES: usize = 4096;
/// Longest accepted path component, in bytes (Linux `NAME_MAX`).
pub const MAX_COMPONENT_BYTES: usize = 255;

/// One component of a requested path after `.` and empty components are dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part<'a> {
    Parent,
    Normal(&'a str),
}

/// Resolves `requested` to the canonical host path of an existing file or directory inside
/// `root`. Symlinks are followed, and the final target must be inside the workspace.
pub fn resolve_existing(
    root: &Path,
    mount_path: &str,
    requested: &str,
) -> Result<PathBuf, FilesError> {
    let parts = split_requested(mount_path, requested)?;
    let canonical_root = canonical_root(root)?;
    let joined = join_parts(&canonical_root, &parts);
    let resolved =
        std::fs::canonicalize(&joined).map_err(|e| FilesError::from_io(&e, requested))?;
    ensure_inside(&canonical_root, &resolved)?;
    Ok(resolved)
}

/// Resolves `requested` to a host path inside `root` that may not exist yet: the deepest
/// existing ancestor is canonicalised and checked for containment, then the remaining
/// components (which must be plain names, no `..`) are appended.
///
/// A broken symlink on the path is refused ([`FilesError::BrokenSymlink`]): writing through it
/// would create its target, which may lie outside the workspace.
pub fn resolve_for_write(
    root: &Path,
    mount_path: &str,
    requested: &str,
) -> Result<PathBuf, FilesError> {
    let parts = split_requested(mount_path, requested)?;
    let canonical_root = canonical_root(root)?;
    // Components after the last `..` may be missing; everything up to it must exist.
    let min_existing = parts
        .iter()
        .rposition(|p| *p == Part::Parent)
        .map_or(0, |i| i + 1);

    for existing in (min_existing..=parts.len()).rev() {
        let candidate = join_parts(&canonical_root, &parts[..existing]);
        match std::fs::canonicalize(&candidate) {
            Ok(base) => {
                ensure_inside(&canonical_root, &base)?;
                let rest = &parts[existing..];
                if let Some(Part::Normal(first)) = rest.first() {
                    let next = base.join(first);
                    if std::fs::symlink_metadata(&next).is_ok() {
                        // It exists but canonicalize failed on it: a broken symlink.
                        return Err(FilesError::BrokenSymlink(requested.to_string()));
                    }
                }
                let mut out = base;
                for part in rest {
                    match part {
                        Part::Normal(name) => out.push(name),
                        Part::Parent => return Err(FilesError::Traversal),
                    }
                }
                return Ok(out);
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(FilesError::from_io(&e, requested)),
        }
    }
    Err(FilesError::NotFound(requested.to_string()))
}

/// Canonical form of the workspace root.
fn canonical_root(root: &Path) -> Result<PathBuf, FilesError> {
    match std::fs::canonicalize(root) {
        Ok(p) if p.is_dir() => Ok(p),
        Ok(_) => Err(FilesError::WorkspaceMissing),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(FilesError::WorkspaceMissing),
        Err(e) => Err(FilesError::Io(e.kind())),
    }
}

fn ensure_inside(canonical_root: &Path, resolved: &Path) -> Result<(), FilesError> {
    if resolved.starts_with(canonical_root) {
        Ok(())
    } else {
        Err(FilesError::Traversal)
    }
}

fn join_parts(base: &Path, parts: &[Part<'_>]) -> PathBuf {
    let mut out = base.to_path_buf();
    for part in parts {
        match part {
            Part::Parent => out.push(".."),
            Part::Normal(name) => out.push(name),
        }
    }
    out
}

/// Validates `requested` and splits it into workspace-relative components. Rejects NUL bytes,
/// over-long paths and components, and any `..` that climbs above the workspace root
/// (checked lexically here; symlinks are checked after canonicalisation).
fn split_requested<'a>(mount_path: &str, requested: &'a str) -> Result<Vec<Part<'a>>, FilesError> {
    if requested.contains('\0') {
        return Err(FilesError::InvalidPath("NUL byte in path"));
    }
    if requested.len() > MAX_PATH_BYTES {
        return Err(FilesError::InvalidPath("path too long"));
    }
    let relative = strip_mount(mount_path, requested);
    let mut parts = Vec::new();
    let mut depth: usize = 0;
    for raw in relative.split('/') {
        match raw {
            "" | "." => {}
            ".." => {
                depth = depth.checked_sub(1).ok_or(FilesError::Traversal)?;
                parts.push(Part::Parent);
            }
            name => {
                if name.len() > MAX_COMPONENT_BYTES {
                    return Err(FilesError::InvalidPath("a path component is too long"));
                }
                depth += 1;
                parts.push(Part::Normal(name));
            }
        }
    }
    Ok(parts)
}

/// Strips the mount path (`/workspace`) from an agent-style path; other paths are returned
/// unchanged (leading slashes are ignored by the caller's split).
fn strip_mount<'a>(mount_path: &str, requested: &'a str) -> &'a str {
    let mount = mount_path.trim_end_matches('/');
    if mount.is_empty() {
        return requested;
    }
    match requested.strip_prefix(mount) {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => rest,
        _ => requested,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    const MOUNT: &str = "/workspace";

    fn workspace() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("ws");
        fs::create_dir_all(root.join("src/pkg")).unwrap();
        fs::write(root.join("src/pkg/a.py"), "print(1)\n").unwrap();
        fs::write(root.join("top.txt"), "top").unwrap();
        // A secret next to (outside) the workspace.
        fs::write(dir.path().join("secret.txt"), "secret").unwrap();
        let root = fs::canonicalize(root).unwrap();
        (dir, root)
    }

    #[test]
    fn accepts_every_documented_form() {
        let (_d, root) = workspace();
        let expected = root.join("src/pkg/a.py");
        for form in [
            "/src/pkg/a.py",
            "src/pkg/a.py",
            "./src/pkg/a.py",
            "/workspace/src/pkg/a.py",
            "/workspace//src/./pkg/a.py",
            "src/pkg/../pkg/a.py",
            "/workspace/src/../src/pkg/a.py",
        ] {
            assert_eq!(
                resolve_existing(&root, MOUNT, form).unwrap(),
                expected,
                "{form}"
            );
        }
        for root_form in ["/workspace", "/workspace/", "/", "", ".", "src/.."] {
            assert_eq!(
                resolve_existing(&root, MOUNT, root_form).unwrap(),
                root,
                "{root_form}"
            );
        }
        // A mount path given with a trailing slash behaves the same.
        assert_eq!(
            resolve_existing(&root, "/workspace/", "/workspace/top.txt").unwrap(),
            root.join("top.txt")
        );
    }

    #[test]
    fn traversal_matrix_is_refused() {
        let (_d, root) = workspace();
        for bad in [
            "../../etc/passwd",
            "..",
            "../secret.txt",
            "/workspace/../../etc/passwd",
            "/workspace/..",
            "src/../../secret.txt",
            "/../secret.txt",
        ] {
            assert_eq!(
                resolve_existing(&root, MOUNT, bad),
                Err(FilesError::Traversal),
                "{bad}"
            );
            assert_eq!(
                resolve_for_write(&root, MOUNT, bad),
                Err(FilesError::Traversal),
                "{bad}"
            );
        }
    }

    #[test]
    fn absolute_paths_outside_the_mount_never_reach_the_host() {
        let (_d, root) = workspace();
        assert_eq!(
            resolve_existing(&root, MOUNT, "/etc/passwd"),
            Err(FilesError::NotFound("/etc/passwd".into()))
        );
        // For writing it stays inside the workspace.
        let p = resolve_for_write(&root, MOUNT, "/etc/passwd").unwrap();
        assert_eq!(p, root.join("etc/passwd"));
        // `/workspacefoo` is not the mount path: it is a workspace-relative name.
        assert_eq!(
            resolve_for_write(&root, MOUNT, "/workspacefoo/x").unwrap(),
            root.join("workspacefoo/x")
        );
    }

    #[test]
    fn percent_encoding_stays_literal() {
        let (_d, root) = workspace();
        assert_eq!(
            resolve_existing(&root, MOUNT, "%2e%2e/%2e%2e/etc/passwd"),
            Err(FilesError::NotFound("%2e%2e/%2e%2e/etc/passwd".into()))
        );
        assert_eq!(
            resolve_for_write(&root, MOUNT, "%2e%2e/x").unwrap(),
            root.join("%2e%2e/x")
        );
    }

    #[test]
    fn nul_bytes_and_overlong_paths_are_invalid() {
        let (_d, root) = workspace();
        assert_eq!(
            resolve_existing(&root, MOUNT, "top.txt\0.png"),
            Err(FilesError::InvalidPath("NUL byte in path"))
        );
        assert_eq!(
            resolve_for_write(&root, MOUNT, "a\0b"),
            Err(FilesError::InvalidPath("NUL byte in path"))
        );
        let long = "a/".repeat(MAX_PATH_BYTES);
        assert_eq!(
            resolve_existing(&root, MOUNT, &long),
            Err(FilesError::InvalidPath("path too long"))
        );
        let long_name = "n".repeat(MAX_COMPONENT_BYTES + 1);
        assert_eq!(
            resolve_for_write(&root, MOUNT, &long_name),
            Err(FilesError::InvalidPath("a path component is too long"))
        );
    }

    #[test]
    fn symlinks_pointing_outside_are_refused() {
        let (dir, root) = workspace();
        symlink(dir.path().join("secret.txt"), root.join("leak.txt")).unwrap();
        symlink(dir.path(), root.join("outside_dir")).unwrap();
        symlink("/etc", root.join("etc_link")).unwrap();
        for bad in [
            "leak.txt",
            "/workspace/leak.txt",
            "outside_dir",
            "outside_dir/secret.txt",
            "etc_link/passwd",
        ] {
            assert_eq!(
                resolve_existing(&root, MOUNT, bad),
                Err(FilesError::Traversal),
                "{bad}"
            );
        }
        for bad in [
            "leak.txt",
            "outside_dir/new.txt",
            "outside_dir/deeper/new.txt",
            "etc_link/new",
        ] {
            assert_eq!(
                resolve_for_write(&root, MOUNT, bad),
                Err(FilesError::Traversal),
                "{bad}"
            );
        }
    }

    #[test]
    fn symlinks_inside_the_workspace_resolve_to_their_target() {
        let (_d, root) = workspace();
        symlink("src/pkg", root.join("pkg_link")).unwrap();
        symlink("src/pkg/a.py", root.join("a_link.py")).unwrap();
        assert_eq!(
            resolve_existing(&root, MOUNT, "pkg_link/a.py").unwrap(),
            root.join("src/pkg/a.py")
        );
        assert_eq!(
            resolve_existing(&root, MOUNT, "a_link.py").unwrap(),
            root.join("src/pkg/a.py")
        );
        assert_eq!(
            resolve_for_write(&root, MOUNT, "pkg_link/new/b.py").unwrap(),
            root.join("src/pkg/new/b.py")
        );
    }

    #[test]
    fn broken_symlinks_are_refused_for_writing() {
        let (dir, root) = workspace();
        // Dangling link to a not-yet-existing file outside: writing through it would escape.
        symlink(dir.path().join("created_outside"), root.join("dangling")).unwrap();
        assert_eq!(
            resolve_for_write(&root, MOUNT, "dangling"),
            Err(FilesError::BrokenSymlink("dangling".into()))
        );
        assert_eq!(
            resolve_for_write(&root, MOUNT, "dangling/x"),
            Err(FilesError::BrokenSymlink("dangling/x".into()))
        );
        assert_eq!(
            resolve_existing(&root, MOUNT, "dangling"),
            Err(FilesError::NotFound("dangling".into()))
        );
        assert!(!dir.path().join("created_outside").exists());
    }

    #[test]
    fn symlink_loops_are_reported() {
        let (_d, root) = workspace();
        symlink("loop_b", root.join("loop_a")).unwrap();
        symlink("loop_a", root.join("loop_b")).unwrap();
        assert_eq!(
            resolve_existing(&root, MOUNT, "loop_a"),
            Err(FilesError::SymlinkLoop("loop_a".into()))
        );
        assert_eq!(
            resolve_for_write(&root, MOUNT, "loop_a/x"),
            Err(FilesError::SymlinkLoop("loop_a/x".into()))
        );
    }

    #[test]
    fn write_resolution_of_new_paths() {
        let (_d, root) = workspace();
        assert_eq!(
            resolve_for_write(&root, MOUNT, "/workspace/new/dir/f.rs").unwrap(),
            root.join("new/dir/f.rs")
        );
        assert_eq!(
            resolve_for_write(&root, MOUNT, "src/../new.txt").unwrap(),
            root.join("new.txt")
        );
        assert_eq!(
            resolve_for_write(&root, MOUNT, "top.txt").unwrap(),
            root.join("top.txt")
        );
        // `..` after a missing directory cannot be resolved.
        assert_eq!(
            resolve_for_write(&root, MOUNT, "missing/../x"),
            Err(FilesError::NotFound("missing/../x".into()))
        );
        // A file used as a directory.
        assert_eq!(
            resolve_for_write(&root, MOUNT, "top.txt/x"),
            Err(FilesError::NotADirectory("top.txt/x".into()))
        );
    }

    #[test]
    fn missing_workspace_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("gone");
        assert_eq!(
            resolve_existing(&gone, MOUNT, "x"),
            Err(FilesError::WorkspaceMissing)
        );
        assert_eq!(
            resolve_for_write(&gone, MOUNT, "x"),
            Err(FilesError::WorkspaceMissing)
        );
    }
}
