//! Local mode's JWT secret: generated on first run and stored in the data directory with
//! owner-only permissions.

use std::io::Write;
use std::path::Path;

const FILE_NAME: &str = "jwt-secret";

/// Reads the secret from `<data_dir>/jwt-secret`, creating it (32 random bytes, hex) if absent.
///
/// Safe when several processes start at once on a fresh data directory: each writes its
/// candidate to its own temporary file and publishes it with a hard link, which fails if
/// another process published first; the loser then returns the winner's secret.
pub fn load_or_create_local_secret(data_dir: &Path) -> std::io::Result<String> {
    load_or_create_secret_file(data_dir, FILE_NAME)
}

/// Like [`load_or_create_local_secret`] for the secret file `<data_dir>/<file_name>`.
pub fn load_or_create_secret_file(data_dir: &Path, file_name: &str) -> std::io::Result<String> {
    let path = data_dir.join(file_name);
    let existing = read_valid(&path);
    if let Some(secret) = existing.clone().flatten() {
        return Ok(secret);
    }
    std::fs::create_dir_all(data_dir)?;
    let secret = hex::encode(rand::random::<[u8; 32]>());
    let tmp = data_dir.join(format!(
        "{file_name}.{}.tmp",
        hex::encode(rand::random::<[u8; 8]>())
    ));
    {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&tmp)?;
        let written = file
            .write_all(secret.as_bytes())
            .and_then(|_| file.sync_all());
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    }
    // An unreadable or too short file is replaced; otherwise publish only if still absent.
    let published = if existing.is_some() {
        std::fs::rename(&tmp, &path)
    } else {
        let linked = std::fs::hard_link(&tmp, &path);
        let _ = std::fs::remove_file(&tmp);
        linked
    };
    match published {
        Ok(()) => Ok(secret),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => match read_valid(&path) {
            Some(Some(winner)) => Ok(winner),
            _ => Err(e),
        },
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// `None` when the file does not exist, `Some(None)` when it exists but holds no usable
/// secret, `Some(Some(secret))` otherwise.
fn read_valid(path: &Path) -> Option<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let text = text.trim().to_string();
            Some((text.len() >= 32).then_some(text))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(_) => Some(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_once_with_owner_only_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create_local_secret(dir.path()).unwrap();
        let b = load_or_create_local_secret(dir.path()).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.len(), 64);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(FILE_NAME))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn concurrent_creators_agree_and_leave_no_temporary_files() {
        let dir = tempfile::tempdir().unwrap();
        let secrets: Vec<String> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|_| scope.spawn(|| load_or_create_local_secret(dir.path()).unwrap()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let stored = std::fs::read_to_string(dir.path().join(FILE_NAME)).unwrap();
        assert!(
            secrets.iter().all(|s| *s == stored),
            "{secrets:?} vs {stored}"
        );
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(FILE_NAME)]);
    }

    #[test]
    fn a_too_short_secret_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), "short").unwrap();
        let secret = load_or_create_local_secret(dir.path()).unwrap();
        assert_eq!(secret.len(), 64);
        assert_eq!(
            std::fs::read_to_string(dir.path().join(FILE_NAME)).unwrap(),
            secret
        );
    }
}
