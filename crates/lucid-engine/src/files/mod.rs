//! Files inside a session's host workspace: safe path resolution, the UI's file tree and
//! file reads.
//!
//! These are pure, synchronous functions over a workspace directory; callers check session
//! ownership first and run them on a blocking thread. Every path is canonicalised (symlinks
//! resolved) before the containment check, tree walks never follow symlinks, and reads are
//! capped — closing the original's traversal, symlink-escape and unbounded-read holes.

mod error;
mod read;
mod resolve;
mod tree;
mod write;

pub use error::FilesError;
pub use read::{read_file, FileContent, DEFAULT_MAX_READ_BYTES};
pub use resolve::{resolve_existing, resolve_for_write, MAX_COMPONENT_BYTES, MAX_PATH_BYTES};
pub use tree::{build_tree, FileNode, FileTree, NodeKind, TreeLimits, EXCLUDED_DIRS};
pub use write::{create_dirs, write_atomic};
