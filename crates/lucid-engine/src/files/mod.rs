//! Files inside a session's host workspace: the directory-handle layer every host-side
//! access goes through, the UI's file tree and file reads.
//!
//! The sandbox is hostile and changes the workspace concurrently, so nothing here resolves a
//! workspace path by name: [`WorkspaceDir`] opens the workspace root once as a directory
//! handle and walks each requested [`WorkspacePath`] component by component without following
//! any symlink (see [`workspace_dir`]). Tree walks recurse with handles and list symlinks as
//! symlinks; reads are capped and flag binary files — closing the original's traversal,
//! symlink-escape and unbounded-read holes, and the check-then-reopen races.
//!
//! These are synchronous functions; callers check session ownership first and run them on a
//! blocking thread.

mod error;
mod read;
mod tree;
pub mod workspace_dir;

pub use error::FilesError;
pub use read::{read_file, FileContent, DEFAULT_MAX_READ_BYTES};
pub use tree::{build_tree, FileNode, FileTree, NodeKind, TreeLimits, EXCLUDED_DIRS};
pub use workspace_dir::{Entry, WorkspaceDir, WorkspacePath, MAX_COMPONENT_BYTES, MAX_PATH_BYTES};
