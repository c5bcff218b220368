//! Errors of the workspace file functions and their mapping to [`EngineError`].
//!
//! Messages never contain host paths: only the path as the caller requested it.

use std::io;

use thiserror::Error;

use crate::error::{EngineError, ErrorKind};

/// Why a workspace file operation failed.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum FilesError {
    /// The path climbs above the workspace root with `..`.
    #[error("Path traversal not allowed.")]
    Traversal,
    /// Nothing (or nothing of the expected kind) exists at the requested path.
    #[error("File not found: {0}")]
    NotFound(String),
    /// The path is malformed (NUL byte, too long, ...). The payload says why.
    #[error("Invalid path: {0}")]
    InvalidPath(&'static str),
    /// A component of the path is a file where a directory is needed.
    #[error("Not a directory: {0}")]
    NotADirectory(String),
    /// The path names or goes through a symbolic link, which Lucid never follows. The
    /// payload is the link's workspace path in tree form (`/d`).
    #[error("{0} is a symbolic link; Lucid does not follow links — use the target path.")]
    Symlink(String),
    /// A file operation was asked on a directory. The payload is the tree form (`/d`).
    #[error("Is a directory: {0}")]
    IsADirectory(String),
    /// A file operation was asked on the workspace root itself.
    #[error("The workspace root is a directory, not a file.")]
    IsRoot,
    /// The workspace directory itself does not exist.
    #[error("Workspace not found.")]
    WorkspaceMissing,
    /// Any other I/O failure; only the error kind is kept so no host path can leak.
    #[error("Failed to access file: {0}")]
    Io(io::ErrorKind),
}

impl FilesError {
    /// Classifies an I/O error met while working on `requested` (the caller's own path).
    pub(crate) fn from_io(err: &io::Error, requested: &str) -> Self {
        match err.kind() {
            io::ErrorKind::NotFound => Self::NotFound(requested.to_string()),
            io::ErrorKind::NotADirectory => Self::NotADirectory(requested.to_string()),
            io::ErrorKind::InvalidFilename => Self::InvalidPath("a path component is too long"),
            // O_NOFOLLOW met a symlink (swapped in after the caller looked).
            _ if err.raw_os_error() == Some(libc::ELOOP) => Self::Symlink(requested.to_string()),
            kind => Self::Io(kind),
        }
    }
}

impl From<FilesError> for EngineError {
    fn from(err: FilesError) -> Self {
        let kind = match &err {
            FilesError::Traversal
            | FilesError::InvalidPath(_)
            | FilesError::NotADirectory(_)
            | FilesError::Symlink(_)
            | FilesError::IsADirectory(_)
            | FilesError::IsRoot => ErrorKind::BadRequest,
            FilesError::NotFound(_) | FilesError::WorkspaceMissing => ErrorKind::NotFound,
            FilesError::Io(_) => ErrorKind::Internal,
        };
        EngineError::new(kind, err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_to_engine_errors_with_original_messages() {
        let e: EngineError = FilesError::Traversal.into();
        assert_eq!(e.kind, ErrorKind::BadRequest);
        assert_eq!(e.message, "Path traversal not allowed.");

        let e: EngineError = FilesError::NotFound("/src/a.py".into()).into();
        assert_eq!(e.kind, ErrorKind::NotFound);
        assert_eq!(e.message, "File not found: /src/a.py");

        let e: EngineError = FilesError::Symlink("/d".into()).into();
        assert_eq!(e.kind, ErrorKind::BadRequest);
        assert_eq!(
            e.message,
            "/d is a symbolic link; Lucid does not follow links — use the target path."
        );

        let e: EngineError = FilesError::Io(io::ErrorKind::PermissionDenied).into();
        assert_eq!(e.kind, ErrorKind::Internal);
        assert!(!e.message.contains('/'));
    }

    #[test]
    fn classifies_io_errors() {
        let loop_err = io::Error::from_raw_os_error(libc::ELOOP);
        assert_eq!(
            FilesError::from_io(&loop_err, "a"),
            FilesError::Symlink("a".into())
        );
        let missing = io::Error::from(io::ErrorKind::NotFound);
        assert_eq!(
            FilesError::from_io(&missing, "b"),
            FilesError::NotFound("b".into())
        );
        let notdir = io::Error::from_raw_os_error(libc::ENOTDIR);
        assert_eq!(
            FilesError::from_io(&notdir, "c/d"),
            FilesError::NotADirectory("c/d".into())
        );
    }
}
