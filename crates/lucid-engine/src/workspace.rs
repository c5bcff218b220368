//! Where a session's workspace lives on the host: `<WORKSPACE_BASE_PATH>/<user_id>/<session_id>`.
//! Ids are validated so that neither component can walk out of the base directory.

use std::path::{Path, PathBuf};

use crate::error::EngineError;

/// True for ids made only of ASCII letters, digits, `-` and `_` (1..=128 chars).
pub fn is_safe_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The host directory of a session's workspace. Errors (400) on ids that are not safe.
pub fn session_workspace(
    base: &Path,
    user_id: &str,
    session_id: &str,
) -> Result<PathBuf, EngineError> {
    if !is_safe_id(session_id) {
        return Err(EngineError::bad_request("Invalid session id."));
    }
    Ok(base.join(user_dir_name(user_id)).join(session_id))
}

/// The host-private git repository of a session: `<data_dir>/private-git/<user>/<session>.git`,
/// outside every workspace (the sandbox never sees it; see [`crate::git`]).
pub fn session_private_repo(
    data_dir: &Path,
    user_id: &str,
    session_id: &str,
) -> Result<PathBuf, EngineError> {
    if !is_safe_id(session_id) {
        return Err(EngineError::bad_request("Invalid session id."));
    }
    Ok(data_dir
        .join("private-git")
        .join(user_dir_name(user_id))
        .join(format!("{session_id}.git")))
}

/// A directory name for a user id. Safe ids are used as they are; anything else (e-mail-like
/// ids from other issuers) is hex-encoded so it can never contain a path separator.
pub fn user_dir_name(user_id: &str) -> String {
    if is_safe_id(user_id) {
        user_id.to_string()
    } else {
        format!("x{}", hex::encode(user_id.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_cannot_escape() {
        let base = Path::new("/base");
        assert!(session_workspace(base, "u", "../x").is_err());
        assert!(session_workspace(base, "u", "a/b").is_err());
        assert!(session_workspace(base, "u", "").is_err());
        let p = session_workspace(base, "../../etc", "abc-1").unwrap();
        assert!(p.starts_with("/base"));
        assert!(!p.to_string_lossy().contains(".."));
        assert_eq!(
            session_workspace(base, "u1", "s1").unwrap(),
            PathBuf::from("/base/u1/s1")
        );
    }
}
