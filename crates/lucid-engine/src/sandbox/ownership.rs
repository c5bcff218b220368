//! Who owns the files a sandbox leaves in its workspace.
//!
//! Sandboxes run as the engine's user (on Linux), so what the agent creates belongs to the
//! desktop user and nothing owned by root can appear on the host. When an image needs root
//! (`SANDBOX_RUN_AS_ROOT`), the workspace is handed back to that user once the container is
//! gone. The walk never follows a symbolic link: each directory is opened relative to its
//! parent's handle with `O_NOFOLLOW`, and every entry is changed with
//! `fchownat(AT_SYMLINK_NOFOLLOW)` (a symlink gets the new owner itself; its target is never
//! touched). The kernel clears set-user-ID and set-group-ID bits of regular files on a change
//! of owner, so no set-user-ID file survives the hand-back with root as its owner.

use std::io;
use std::path::Path;

/// The engine process's effective `uid:gid`.
pub fn engine_user() -> (u32, u32) {
    // SAFETY: geteuid/getegid have no preconditions and cannot fail.
    unsafe { (libc::geteuid(), libc::getegid()) }
}

/// Gives `root` and everything beneath it to `uid:gid` without following symlinks. Returns
/// how many entries were changed. Entries that vanish during the walk are skipped.
#[cfg(target_os = "linux")]
pub fn chown_tree(root: &Path, uid: u32, gid: u32) -> io::Result<usize> {
    use std::ffi::CString;
    use std::fs::File;
    use std::os::fd::{AsRawFd, FromRawFd};
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::OpenOptionsExt;

    let top = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(root)?;
    std::os::unix::fs::fchown(&top, Some(uid), Some(gid))?;
    let mut changed = 1;
    let mut stack = vec![top];
    while let Some(dir) = stack.pop() {
        // The open handle's own listing: /proc/self/fd/N is this very directory, whatever
        // happened to its path since it was opened.
        let listing = std::fs::read_dir(format!("/proc/self/fd/{}", dir.as_raw_fd()))?;
        for entry in listing {
            let Ok(entry) = entry else { continue };
            let Ok(name) = CString::new(entry.file_name().as_bytes()) else {
                continue;
            };
            let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
            if is_dir {
                // SAFETY: a valid directory fd and a NUL-terminated name.
                let fd = unsafe {
                    libc::openat(
                        dir.as_raw_fd(),
                        name.as_ptr(),
                        libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                    )
                };
                if fd >= 0 {
                    // SAFETY: `fd` was just opened and is owned by nothing else.
                    let sub = unsafe { File::from_raw_fd(fd) };
                    std::os::unix::fs::fchown(&sub, Some(uid), Some(gid))?;
                    changed += 1;
                    stack.push(sub);
                    continue;
                }
                // Replaced by something else meanwhile: change that entry itself below.
            }
            // SAFETY: a valid directory fd and a NUL-terminated name.
            let r = unsafe {
                libc::fchownat(
                    dir.as_raw_fd(),
                    name.as_ptr(),
                    uid,
                    gid,
                    libc::AT_SYMLINK_NOFOLLOW,
                )
            };
            if r == 0 {
                changed += 1;
            } else {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::NotFound {
                    return Err(e);
                }
            }
        }
    }
    Ok(changed)
}

/// Other systems: sandboxes run in a VM that maps ownership itself; nothing to do.
#[cfg(not(target_os = "linux"))]
pub fn chown_tree(_root: &Path, _uid: u32, _gid: u32) -> io::Result<usize> {
    Ok(0)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    #[test]
    fn chown_tree_changes_everything_and_never_follows_symlinks() {
        if engine_user().0 != 0 {
            eprintln!("skipped: changing owners needs root");
            return;
        }
        let outside = tempfile::tempdir().unwrap();
        let victim = outside.path().join("victim");
        std::fs::write(&victim, "host file").unwrap();
        let ws = tempfile::tempdir().unwrap();
        let root = ws.path();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::write(root.join("a/b/f"), "x").unwrap();
        let suid = root.join("a/suid");
        std::fs::write(&suid, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&suid, std::fs::Permissions::from_mode(0o4755)).unwrap();
        std::os::unix::fs::symlink(&victim, root.join("a/link-to-file")).unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("link-to-dir")).unwrap();

        let n = chown_tree(root, 4321, 4322).unwrap();
        assert_eq!(n, 7, "root, a, a/b, a/b/f, a/suid and both links");
        for p in [
            "",
            "a",
            "a/b",
            "a/b/f",
            "a/suid",
            "a/link-to-file",
            "link-to-dir",
        ] {
            let m = std::fs::symlink_metadata(root.join(p)).unwrap();
            assert_eq!((m.uid(), m.gid()), (4321, 4322), "{p}");
        }
        // Symlink targets outside keep their owner.
        let m = std::fs::metadata(&victim).unwrap();
        assert_eq!(m.uid(), 0);
        assert_eq!(std::fs::metadata(outside.path()).unwrap().uid(), 0);
        // The set-user-ID bit did not survive the change of owner.
        let mode = std::fs::metadata(&suid).unwrap().mode();
        assert_eq!(mode & 0o6000, 0, "mode {mode:o}");
        // A symlink as the root is refused rather than followed.
        let link_root = outside.path().join("root-link");
        std::os::unix::fs::symlink(root, &link_root).unwrap();
        assert!(chown_tree(&link_root, 1, 1).is_err());
    }
}
