//! Atomic file writes inside a workspace: a temporary file in the same directory is written,
//! flushed and renamed over the target, so a reader (or a crash) never sees a half-written file.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Mode of files that did not exist before.
const NEW_FILE_MODE: u32 = 0o644;
/// Mode of directories created for a new file.
const NEW_DIR_MODE: u32 = 0o755;

/// Writes `content` to `path` atomically.
///
/// An existing file keeps its permission bits and (when the process may change it) its owner.
/// A new file gets mode 0644 and the owner of its directory, so a sandbox user who owns the
/// workspace can still modify what the engine wrote. `path` must already be resolved safely
/// (see [`super::resolve_for_write`]); its parent directory must exist.
pub fn write_atomic(path: &Path, content: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no parent directory"))?;
    let existing = fs::symlink_metadata(path).ok().filter(|m| m.is_file());
    let (mode, owner) = match &existing {
        Some(meta) => (meta.mode() & 0o7777, (meta.uid(), meta.gid())),
        None => {
            let dir_meta = fs::metadata(dir)?;
            (NEW_FILE_MODE, (dir_meta.uid(), dir_meta.gid()))
        }
    };
    let tmp = temp_path(dir);
    let result = write_temp(&tmp, content, mode, owner).and_then(|()| fs::rename(&tmp, path));
    if result.is_err() {
        // Best effort: the temporary file may not exist if its creation failed.
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Creates `dir` and its missing ancestors, giving each new directory the owner of the
/// deepest existing ancestor (best effort) and mode 0755.
pub fn create_dirs(dir: &Path) -> io::Result<()> {
    let mut missing = Vec::new();
    let mut current = dir;
    let ancestor_meta = loop {
        match fs::metadata(current) {
            Ok(meta) if meta.is_dir() => break meta,
            Ok(_) => return Err(io::Error::from(io::ErrorKind::NotADirectory)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                missing.push(current);
                current = current
                    .parent()
                    .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
            }
            Err(e) => return Err(e),
        }
    };
    for new_dir in missing.into_iter().rev() {
        match fs::create_dir(new_dir) {
            Ok(()) => {
                let _ = std::os::unix::fs::chown(
                    new_dir,
                    Some(ancestor_meta.uid()),
                    Some(ancestor_meta.gid()),
                );
                fs::set_permissions(new_dir, fs::Permissions::from_mode(NEW_DIR_MODE))?;
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && new_dir.is_dir() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn temp_path(dir: &Path) -> PathBuf {
    dir.join(format!(".lucid-edit-{}.tmp", uuid::Uuid::new_v4().simple()))
}

fn write_temp(tmp: &Path, content: &[u8], mode: u32, owner: (u32, u32)) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(tmp)?;
    file.write_all(content)?;
    // Changing the owner fails without the privilege; the file then stays ours.
    let _ = std::os::unix::fs::fchown(&file, Some(owner.0), Some(owner.1));
    // After chown, which clears set-id bits.
    file.set_permissions(fs::Permissions::from_mode(mode))?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leftovers(dir: &Path) -> Vec<String> {
        fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".lucid-edit-"))
            .collect()
    }

    #[test]
    fn replaces_content_and_keeps_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.sh");
        fs::write(&path, "old").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o750)).unwrap();
        write_atomic(&path, b"#!/bin/sh\necho new\n").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "#!/bin/sh\necho new\n");
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o7777, 0o750);
        assert!(leftovers(dir.path()).is_empty());
    }

    #[test]
    fn new_files_get_default_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new.txt");
        write_atomic(&path, b"x").unwrap();
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o7777, NEW_FILE_MODE);
    }

    #[test]
    fn new_files_and_dirs_take_the_directory_owner_when_privileged() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return; // Changing owners needs root; the fallback (keep ours) is covered above.
        }
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::chown(dir.path(), Some(4242), Some(4243)).unwrap();
        create_dirs(&dir.path().join("x/y")).unwrap();
        let path = dir.path().join("x/y/new.txt");
        write_atomic(&path, b"x").unwrap();
        for p in [dir.path().join("x"), dir.path().join("x/y"), path.clone()] {
            let meta = fs::metadata(&p).unwrap();
            assert_eq!((meta.uid(), meta.gid()), (4242, 4243), "{}", p.display());
        }
        // An existing file keeps its own owner.
        std::os::unix::fs::chown(&path, Some(777), Some(778)).unwrap();
        write_atomic(&path, b"y").unwrap();
        let meta = fs::metadata(&path).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (777, 778));
    }

    #[test]
    fn failure_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        // Renaming a file over a non-empty directory fails.
        let target = dir.path().join("occupied");
        fs::create_dir(&target).unwrap();
        fs::write(target.join("inner"), "").unwrap();
        assert!(write_atomic(&target, b"x").is_err());
        assert!(leftovers(dir.path()).is_empty());
        assert!(target.join("inner").exists());
    }

    #[test]
    fn creates_missing_directories() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("a/b/c");
        create_dirs(&deep).unwrap();
        assert!(deep.is_dir());
        assert_eq!(fs::metadata(&deep).unwrap().mode() & 0o777, NEW_DIR_MODE);
        create_dirs(&deep).unwrap();
        fs::write(dir.path().join("f"), "").unwrap();
        assert_eq!(
            create_dirs(&dir.path().join("f/g")).unwrap_err().kind(),
            io::ErrorKind::NotADirectory
        );
    }
}
