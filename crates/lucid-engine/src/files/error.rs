//! Errors of the workspace file functions and their mapping to [`EngineError`].
//!
//! Messages never contain host paths: only the path as the caller requested it.

use std::io;

use thiserror::Error;

use crate::error::{EngineError, ErrorKind};

/// Why a workspace file operation failed.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum FilesError {
    /// The path leaves the workspace (lexically, or through a symlink).
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
    /// The path runs into a symlink cycle.
    #[error("Too many levels of symbolic links: {0}")]
    SymlinkLoop(String),
    /// The path ends in (or passes through) a symlink whose target does not exist.
    #[error("Path is a broken symbolic link: {0}")]
    BrokenSymlink(String),
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
            _ if err.raw_os_error() == Some(libc::ELOOP) => {
                Self::SymlinkLoop(requested.to_string())
            }
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
            | FilesError::SymlinkLoop(_)
            | FilesError::BrokenSymlink(_) => ErrorKind::BadRequest,
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

        let e: EngineError = FilesError::Io(io::ErrorKind::PermissionDenied).into();
        assert_eq!(e.kind, ErrorKind::Internal);
        assert!(!e.message.contains('/'));
    }

    #[test]
    fn classifies_io_errors() {
        let loop_err = io::Error::from_raw_os_error(libc::ELOOP);
        assert_eq!(
            FilesError::from_io(&loop_err, "a"),
            FilesError::SymlinkLoop("a".into())
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
