//! Host access to a workspace through directory handles that cannot leave it.
//!
//! The sandbox writes the workspace concurrently and is hostile: any directory may become a
//! symlink to a host directory between two system calls. So the host never resolves a
//! workspace path by name. [`WorkspaceDir`] opens the workspace root once as a directory
//! handle ([`cap_std::fs::Dir`]); every operation then walks the requested path one component
//! at a time with `openat(O_NOFOLLOW)` (cap-fs-ext's `open_dir_nofollow`, itself confined
//! beneath the handle), opens the final entry without following it (and with `O_NONBLOCK`, so
//! a FIFO cannot hang the host), and decides what it opened from `fstat` on the handle.
//! Creating, renaming and unlinking happen by name inside the parent's handle only.
//! **No symlink is followed at any component**: a path through or naming a symlink is
//! refused with [`FilesError::Symlink`], whatever the link points at.
//!
//! Requested paths are parsed into a [`WorkspacePath`] (components only). Accepted forms,
//! with `mount_path` = `/workspace` (where the sandbox sees the workspace):
//! - `/workspace` and `/workspace/x`: the path as the agent sees it inside the container;
//! - `/x`: the form the file tree reports (workspace-relative with a leading `/`, the
//!   original's contract). Any other absolute path is therefore taken as workspace-relative:
//!   `/etc/passwd` means `<workspace>/etc/passwd`, never the host's file;
//! - `x`, `./x`: relative to the workspace root.
//!
//! A path that starts with the mount path always has the mount path stripped, even if the
//! workspace happens to contain a top-level `workspace` directory. `.` and empty components
//! are dropped; `..` is resolved lexically and may never climb above the root
//! ([`FilesError::Traversal`]).

use std::fmt;
use std::fs::OpenOptions as StdOpenOptions;
use std::hash::{Hash, Hasher};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use cap_fs_ext::{DirExt, FollowSymlinks, OpenOptionsFollowExt};
use cap_std::fs::{
    Dir, DirBuilder, DirBuilderExt, File, Metadata, MetadataExt, OpenOptions, OpenOptionsExt,
    Permissions, PermissionsExt,
};

use super::FilesError;

/// Longest accepted requested path, in bytes (Linux `PATH_MAX`).
pub const MAX_PATH_BYTES: usize = 4096;
/// Longest accepted path component, in bytes (Linux `NAME_MAX`).
pub const MAX_COMPONENT_BYTES: usize = 255;

/// Mode of files that did not exist before.
const NEW_FILE_MODE: u32 = 0o644;
/// Mode of directories created for a new file.
const NEW_DIR_MODE: u32 = 0o755;
/// Prefix of the temporary files of [`WorkspaceDir::write_atomic`].
const TEMP_PREFIX: &str = ".lucid-edit-";

/// A validated workspace-relative path: plain names only (no `.`, `..`, `/` or NUL), plus the
/// text the caller requested, which error messages quote. Equality and hashing use the
/// components only, so `a.py`, `/a.py` and `/workspace/./a.py` are the same path.
#[derive(Debug, Clone)]
pub struct WorkspacePath {
    parts: Vec<String>,
    requested: String,
}

impl PartialEq for WorkspacePath {
    fn eq(&self, other: &Self) -> bool {
        self.parts == other.parts
    }
}

impl Eq for WorkspacePath {}

impl Hash for WorkspacePath {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.parts.hash(state);
    }
}

impl WorkspacePath {
    /// Parses a requested path (see the module docs for the accepted forms). Rejects NUL
    /// bytes, over-long paths and components, and any `..` that climbs above the root.
    pub fn parse(mount_path: &str, requested: &str) -> Result<Self, FilesError> {
        if requested.contains('\0') {
            return Err(FilesError::InvalidPath("NUL byte in path"));
        }
        if requested.len() > MAX_PATH_BYTES {
            return Err(FilesError::InvalidPath("path too long"));
        }
        let mut parts: Vec<String> = Vec::new();
        for raw in strip_mount(mount_path, requested).split('/') {
            match raw {
                "" | "." => {}
                ".." => {
                    parts.pop().ok_or(FilesError::Traversal)?;
                }
                name => {
                    if name.len() > MAX_COMPONENT_BYTES {
                        return Err(FilesError::InvalidPath("a path component is too long"));
                    }
                    parts.push(name.to_string());
                }
            }
        }
        Ok(Self {
            parts,
            requested: requested.to_string(),
        })
    }

    /// True for the workspace root itself.
    pub fn is_root(&self) -> bool {
        self.parts.is_empty()
    }

    /// The path's components, outermost first.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().map(String::as_str)
    }

    /// The last component (`None` for the root).
    pub fn file_name(&self) -> Option<&str> {
        self.parts.last().map(String::as_str)
    }

    /// The directory holding this path (`None` for the root).
    pub fn parent(&self) -> Option<WorkspacePath> {
        let (_, parent) = self.parts.split_last()?;
        Some(Self {
            parts: parent.to_vec(),
            requested: self.requested.clone(),
        })
    }

    /// The path as the caller wrote it (for messages).
    pub fn requested(&self) -> &str {
        &self.requested
    }

    /// The path as the sandbox sees it under `mount_path`, e.g. `/workspace/src/a.py`
    /// (`/src/a.py` for a workspace mounted at `/`).
    pub fn under_mount(&self, mount_path: &str) -> String {
        let mount = mount_path.trim_end_matches('/');
        match (mount.is_empty(), self.is_root()) {
            (true, _) => self.to_string(),
            (false, true) => mount.to_string(),
            (false, false) => format!("{mount}{self}"),
        }
    }

    /// Tree form (`/a/b`) of the first `len` components.
    fn prefix_display(&self, len: usize) -> String {
        let mut out = String::new();
        for part in &self.parts[..len] {
            out.push('/');
            out.push_str(part);
        }
        if out.is_empty() {
            out.push('/');
        }
        out
    }
}

/// The tree form: workspace-relative with a leading `/` (`/` for the root).
impl fmt::Display for WorkspacePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.prefix_display(self.parts.len()))
    }
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

/// What [`WorkspaceDir::open_entry`] found at a path, decided by `fstat` on the opened handle.
#[derive(Debug)]
pub enum Entry {
    /// A directory, opened as a handle.
    Dir(Dir),
    /// A regular file opened for reading, with its metadata.
    File(File, Metadata),
    /// A FIFO, socket or device: never opened for reading.
    Other,
}

/// The root handle of one workspace. See the module docs.
#[derive(Debug)]
pub struct WorkspaceDir {
    root: Dir,
}

impl WorkspaceDir {
    /// Opens the workspace directory `root` (a host path chosen by the engine, outside the
    /// sandbox's reach). Its last component must be a real directory, not a symlink.
    pub fn open(root: &Path) -> Result<Self, FilesError> {
        let file = StdOpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(root)
            .map_err(|e| match e.kind() {
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory => {
                    FilesError::WorkspaceMissing
                }
                _ if e.raw_os_error() == Some(libc::ELOOP) => FilesError::WorkspaceMissing,
                kind => FilesError::Io(kind),
            })?;
        Ok(Self {
            root: Dir::from_std_file(file),
        })
    }

    /// The root directory handle.
    pub fn root(&self) -> &Dir {
        &self.root
    }

    /// Opens the directory at `path`, walking it component by component without following
    /// any symlink.
    pub fn open_dir(&self, path: &WorkspacePath) -> Result<Dir, FilesError> {
        self.walk(path, path.parts.len())
    }

    /// Opens the parent directory of `path` and returns it with the final name. The root has
    /// no parent: [`FilesError::IsRoot`].
    pub fn open_parent<'p>(&self, path: &'p WorkspacePath) -> Result<(Dir, &'p str), FilesError> {
        let name = path.file_name().ok_or(FilesError::IsRoot)?;
        Ok((self.walk(path, path.parts.len() - 1)?, name))
    }

    /// Opens (creating what is missing) the directory at `path`. Each new directory is
    /// created in its parent's handle with mode 0755 and the parent's owner (best effort),
    /// then opened without following symlinks like any other component.
    pub fn create_dirs(&self, path: &WorkspacePath) -> Result<Dir, FilesError> {
        let mut dir = self
            .root
            .try_clone()
            .map_err(|e| FilesError::Io(e.kind()))?;
        for (i, name) in path.components().enumerate() {
            dir = match dir.open_dir_nofollow(name) {
                Ok(next) => next,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    match create_dir_in(&dir, name) {
                        Ok(next) => next,
                        // Created meanwhile by someone else: open it like any other.
                        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => dir
                            .open_dir_nofollow(name)
                            .map_err(|e| step_error(&dir, name, &e, path, i + 1))?,
                        Err(e) => return Err(step_error(&dir, name, &e, path, i + 1)),
                    }
                }
                Err(e) => return Err(step_error(&dir, name, &e, path, i + 1)),
            };
        }
        Ok(dir)
    }

    /// Opens whatever is at `path` without following a symlink: a directory handle, a regular
    /// file open for reading (`O_NONBLOCK`), or [`Entry::Other`] for FIFOs, sockets and
    /// devices (checked before opening, and again with `fstat` after).
    pub fn open_entry(&self, path: &WorkspacePath) -> Result<Entry, FilesError> {
        if path.is_root() {
            return Ok(Entry::Dir(
                self.root
                    .try_clone()
                    .map_err(|e| FilesError::Io(e.kind()))?,
            ));
        }
        let (parent, name) = self.open_parent(path)?;
        let last = path.parts.len();
        let meta = parent
            .symlink_metadata(name)
            .map_err(|e| step_error(&parent, name, &e, path, last))?;
        if meta.file_type().is_symlink() {
            return Err(FilesError::Symlink(path.to_string()));
        }
        if !meta.is_file() && !meta.is_dir() {
            return Ok(Entry::Other);
        }
        let file = parent
            .open_with(
                name,
                OpenOptions::new()
                    .read(true)
                    .follow(FollowSymlinks::No)
                    .custom_flags(libc::O_NONBLOCK),
            )
            .map_err(|e| step_error(&parent, name, &e, path, last))?;
        let meta = file.metadata().map_err(|e| FilesError::Io(e.kind()))?;
        Ok(if meta.is_dir() {
            Entry::Dir(Dir::from_std_file(file.into_std()))
        } else if meta.is_file() {
            Entry::File(file, meta)
        } else {
            Entry::Other
        })
    }

    /// Metadata of the entry at `path` itself (a symlink is reported as a symlink), or `None`
    /// when nothing exists there. The directories leading to it must exist.
    pub fn symlink_metadata(&self, path: &WorkspacePath) -> Result<Option<Metadata>, FilesError> {
        if path.is_root() {
            return self
                .root
                .dir_metadata()
                .map(Some)
                .map_err(|e| FilesError::Io(e.kind()));
        }
        let (parent, name) = self.open_parent(path)?;
        match parent.symlink_metadata(name) {
            Ok(meta) => Ok(Some(meta)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(step_error(&parent, name, &e, path, path.parts.len())),
        }
    }

    /// Writes `content` to the file at `path` atomically: a temporary file is created
    /// (`O_CREAT|O_EXCL`, no symlink following) in the parent's handle, written, given its
    /// mode and owner through its own handle, flushed, and renamed over the target within
    /// that same handle. A reader (or a crash) never sees a half-written file.
    ///
    /// An existing file keeps its permission bits and (when the process may change it) its
    /// owner; a new file gets mode 0644 and its directory's owner, so a sandbox user who owns
    /// the workspace can still modify what the engine wrote. With `create_parents`, missing
    /// directories are created first (see [`Self::create_dirs`]). A symlink at `path` is
    /// refused, never replaced or followed.
    pub fn write_atomic(
        &self,
        path: &WorkspacePath,
        content: &[u8],
        create_parents: bool,
    ) -> Result<(), FilesError> {
        let (Some(name), Some(parent_path)) = (path.file_name(), path.parent()) else {
            return Err(FilesError::IsRoot);
        };
        let parent = if create_parents {
            self.create_dirs(&parent_path)?
        } else {
            self.open_dir(&parent_path)?
        };
        let (mode, owner) = match parent.symlink_metadata(name) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(FilesError::Symlink(path.to_string()))
            }
            Ok(meta) if meta.is_dir() => return Err(FilesError::IsADirectory(path.to_string())),
            Ok(meta) => (meta.mode() & 0o7777, (meta.uid(), meta.gid())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let dir_meta = parent
                    .dir_metadata()
                    .map_err(|e| FilesError::Io(e.kind()))?;
                (NEW_FILE_MODE, (dir_meta.uid(), dir_meta.gid()))
            }
            Err(e) => return Err(FilesError::from_io(&e, path.requested())),
        };
        let tmp = format!("{TEMP_PREFIX}{}.tmp", uuid::Uuid::new_v4().simple());
        let result = write_temp(&parent, &tmp, content, mode, owner)
            .and_then(|()| parent.rename(&tmp, &parent, name));
        if let Err(e) = result {
            // Best effort: the temporary file may not exist if its creation failed.
            let _ = parent.remove_file(&tmp);
            return Err(match e.kind() {
                io::ErrorKind::IsADirectory | io::ErrorKind::DirectoryNotEmpty => {
                    FilesError::IsADirectory(path.to_string())
                }
                _ => FilesError::from_io(&e, path.requested()),
            });
        }
        Ok(())
    }

    /// Removes the file at `path` (unlinked in its parent's handle). Returns `false` when
    /// nothing was there. Directories and symlinks are refused.
    pub fn remove_file(&self, path: &WorkspacePath) -> Result<bool, FilesError> {
        let (parent, name) = self.open_parent(path)?;
        match parent.symlink_metadata(name) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(FilesError::Symlink(path.to_string()))
            }
            Ok(meta) if meta.is_dir() => return Err(FilesError::IsADirectory(path.to_string())),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(FilesError::from_io(&e, path.requested())),
        }
        match parent.remove_file(name) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(FilesError::from_io(&e, path.requested())),
        }
    }

    /// Opens the directory made of the first `len` components of `path`.
    fn walk(&self, path: &WorkspacePath, len: usize) -> Result<Dir, FilesError> {
        let mut dir = self
            .root
            .try_clone()
            .map_err(|e| FilesError::Io(e.kind()))?;
        for (i, name) in path.components().take(len).enumerate() {
            dir = dir
                .open_dir_nofollow(name)
                .map_err(|e| step_error(&dir, name, &e, path, i + 1))?;
        }
        Ok(dir)
    }
}

/// Classifies the failure to open `name` in `dir`, the `depth`-th component of `path`: a
/// symlink there (whatever the kernel said) is reported as such, naming the link.
fn step_error(
    dir: &Dir,
    name: &str,
    err: &io::Error,
    path: &WorkspacePath,
    depth: usize,
) -> FilesError {
    match dir.symlink_metadata(name) {
        Ok(meta) if meta.file_type().is_symlink() => {
            FilesError::Symlink(path.prefix_display(depth))
        }
        Ok(meta) if !meta.is_dir() && err.kind() == io::ErrorKind::NotADirectory => {
            FilesError::NotADirectory(path.requested().to_string())
        }
        _ => FilesError::from_io(err, path.requested()),
    }
}

/// Creates directory `name` in `parent` and opens it (no symlink following), with mode 0755
/// and `parent`'s owner set through the new directory's own handle.
fn create_dir_in(parent: &Dir, name: &str) -> io::Result<Dir> {
    let owner = parent.dir_metadata()?;
    parent.create_dir_with(name, DirBuilder::new().mode(NEW_DIR_MODE))?;
    // A readable (not O_PATH) handle: fchown/fchmod need one.
    let handle = parent.open_with(
        name,
        OpenOptions::new()
            .read(true)
            .follow(FollowSymlinks::No)
            .custom_flags(libc::O_DIRECTORY),
    )?;
    // Changing the owner fails without the privilege; the directory then stays ours.
    let _ = std::os::unix::fs::fchown(&handle, Some(owner.uid()), Some(owner.gid()));
    // After chown, which may clear set-id bits; also undoes the umask.
    handle.set_permissions(Permissions::from_mode(NEW_DIR_MODE))?;
    Ok(Dir::from_std_file(handle.into_std()))
}

fn write_temp(
    dir: &Dir,
    name: &str,
    content: &[u8],
    mode: u32,
    owner: (u32, u32),
) -> io::Result<()> {
    let mut file = dir.open_with(
        name,
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .follow(FollowSymlinks::No),
    )?;
    file.write_all(content)?;
    // Changing the owner fails without the privilege; the file then stays ours.
    let _ = std::os::unix::fs::fchown(&file, Some(owner.0), Some(owner.1));
    // After chown, which clears set-id bits.
    file.set_permissions(Permissions::from_mode(mode))?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::io::Read;
    use std::os::unix::fs::{symlink, MetadataExt as _, PermissionsExt as _};
    use std::path::PathBuf;
    use std::time::{Duration, Instant};

    const MOUNT: &str = "/workspace";

    struct Ws {
        _dir: tempfile::TempDir,
        root: PathBuf,
        outside: PathBuf,
        ws: WorkspaceDir,
    }

    fn ws() -> Ws {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("ws");
        let outside = dir.path().join("outside");
        fs::create_dir_all(root.join("src/pkg")).unwrap();
        fs::write(root.join("src/pkg/a.py"), "print(1)\n").unwrap();
        fs::write(root.join("top.txt"), "top").unwrap();
        fs::create_dir_all(&outside).unwrap();
        fs::write(outside.join("secret.txt"), "secret").unwrap();
        let ws = WorkspaceDir::open(&root).unwrap();
        Ws {
            _dir: dir,
            root,
            outside,
            ws,
        }
    }

    fn p(requested: &str) -> WorkspacePath {
        WorkspacePath::parse(MOUNT, requested).unwrap()
    }

    fn read_all(entry: Entry) -> String {
        match entry {
            Entry::File(mut f, _) => {
                let mut s = String::new();
                f.read_to_string(&mut s).unwrap();
                s
            }
            other => panic!("not a file: {other:?}"),
        }
    }

    fn mkfifo(path: &Path) {
        let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path; mkfifo has no other preconditions.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o644) }, 0);
    }

    #[test]
    fn accepts_every_documented_form() {
        let expected = p("src/pkg/a.py");
        assert_eq!(
            expected.components().collect::<Vec<_>>(),
            ["src", "pkg", "a.py"]
        );
        for form in [
            "/src/pkg/a.py",
            "./src/pkg/a.py",
            "/workspace/src/pkg/a.py",
            "/workspace//src/./pkg/a.py",
            "src/pkg/../pkg/a.py",
            "/workspace/src/../src/pkg/a.py",
            "missing/../src/pkg/a.py",
        ] {
            assert_eq!(p(form), expected, "{form}");
            assert_eq!(p(form).requested(), form);
        }
        for root_form in ["/workspace", "/workspace/", "/", "", ".", "src/.."] {
            assert!(p(root_form).is_root(), "{root_form}");
        }
        let with_slash = WorkspacePath::parse("/workspace/", "/workspace/top.txt").unwrap();
        assert_eq!(with_slash, p("top.txt"));
        // Any other absolute path is workspace-relative; `/workspacefoo` is not the mount.
        assert_eq!(p("/etc/passwd").to_string(), "/etc/passwd");
        assert_eq!(p("/workspacefoo/x").to_string(), "/workspacefoo/x");
        // Percent-encoding stays literal.
        assert_eq!(p("%2e%2e/x").to_string(), "/%2e%2e/x");
        // Displays.
        assert_eq!(expected.to_string(), "/src/pkg/a.py");
        assert_eq!(
            expected.under_mount("/workspace/"),
            "/workspace/src/pkg/a.py"
        );
        assert_eq!(expected.under_mount("/"), "/src/pkg/a.py");
        assert_eq!(p("/").under_mount("/workspace"), "/workspace");
        assert_eq!(p("/").under_mount("/"), "/");
        assert_eq!(p("/").to_string(), "/");
        assert_eq!(expected.parent(), Some(p("src/pkg")));
        assert_eq!(p("a").parent(), Some(p("/")));
        assert_eq!(p("/").parent(), None);
        assert_eq!(expected.file_name(), Some("a.py"));
    }

    #[test]
    fn traversal_matrix_is_refused() {
        for bad in [
            "../../etc/passwd",
            "..",
            "../secret.txt",
            "/workspace/../../etc/passwd",
            "/workspace/..",
            "src/../../secret.txt",
            "/../secret.txt",
            "a/b/../../../x",
            "./..",
        ] {
            assert_eq!(
                WorkspacePath::parse(MOUNT, bad),
                Err(FilesError::Traversal),
                "{bad}"
            );
        }
    }

    #[test]
    fn nul_bytes_and_overlong_paths_are_invalid() {
        assert_eq!(
            WorkspacePath::parse(MOUNT, "top.txt\0.png"),
            Err(FilesError::InvalidPath("NUL byte in path"))
        );
        let long = "a/".repeat(MAX_PATH_BYTES);
        assert_eq!(
            WorkspacePath::parse(MOUNT, &long),
            Err(FilesError::InvalidPath("path too long"))
        );
        let long_name = "n".repeat(MAX_COMPONENT_BYTES + 1);
        assert_eq!(
            WorkspacePath::parse(MOUNT, &long_name),
            Err(FilesError::InvalidPath("a path component is too long"))
        );
    }

    #[test]
    fn opens_files_and_directories_by_fstat() {
        let w = ws();
        assert_eq!(
            read_all(w.ws.open_entry(&p("/src/pkg/a.py")).unwrap()),
            "print(1)\n"
        );
        assert!(matches!(w.ws.open_entry(&p("src")).unwrap(), Entry::Dir(_)));
        assert!(matches!(w.ws.open_entry(&p("/")).unwrap(), Entry::Dir(_)));
        assert_eq!(
            w.ws.open_entry(&p("missing.txt")).unwrap_err(),
            FilesError::NotFound("missing.txt".into())
        );
        assert_eq!(
            w.ws.open_entry(&p("nope/a.txt")).unwrap_err(),
            FilesError::NotFound("nope/a.txt".into())
        );
        assert_eq!(
            w.ws.open_entry(&p("top.txt/x")).unwrap_err(),
            FilesError::NotADirectory("top.txt/x".into())
        );
        // `/etc/passwd` is `<workspace>/etc/passwd`.
        assert_eq!(
            w.ws.open_entry(&p("/etc/passwd")).unwrap_err(),
            FilesError::NotFound("/etc/passwd".into())
        );
    }

    #[test]
    fn fifo_does_not_hang() {
        let w = ws();
        mkfifo(&w.root.join("pipe"));
        let start = Instant::now();
        assert!(matches!(w.ws.open_entry(&p("pipe")).unwrap(), Entry::Other));
        assert!(start.elapsed() < Duration::from_secs(2));
    }

    /// A symlink anywhere on the path (first, intermediate or last component; pointing
    /// outside, inside, nowhere or in a loop) is refused and names the link.
    #[test]
    fn symlink_at_every_position_is_refused() {
        let w = ws();
        fs::create_dir_all(w.root.join("a/b")).unwrap();
        fs::write(w.root.join("a/b/f.txt"), "f").unwrap();
        let targets: [PathBuf; 5] = [
            w.outside.clone(),                // host dir outside
            w.outside.join("secret.txt"),     // host file outside
            PathBuf::from("../src"),          // inside the workspace
            w.outside.join("does-not-exist"), // dangling
            PathBuf::from("loop"),            // a loop (links to itself)
        ];
        for target in &targets {
            for (link, request, shown) in [
                ("L", "L", "/L"),
                ("L", "L/x/f.txt", "/L"),
                ("a/L", "a/L/f.txt", "/a/L"),
                ("a/b/L", "/workspace/a/b/L", "/a/b/L"),
            ] {
                let link_path = w.root.join(link);
                let _ = fs::remove_file(&link_path);
                let target = if target.as_os_str() == "loop" {
                    link_path.clone()
                } else {
                    target.clone()
                };
                symlink(&target, &link_path).unwrap();
                let path = p(request);
                let expected = FilesError::Symlink(shown.into());
                let msg = format!("{request} -> {}", target.display());
                assert_eq!(w.ws.open_entry(&path).unwrap_err(), expected, "{msg}");
                assert_eq!(w.ws.open_dir(&path).unwrap_err(), expected, "{msg}");
                assert_eq!(
                    w.ws.write_atomic(&path, b"pwned", true).unwrap_err(),
                    expected,
                    "{msg}"
                );
                assert_eq!(
                    w.ws.write_atomic(&path, b"pwned", false).unwrap_err(),
                    expected,
                    "{msg}"
                );
                assert_eq!(w.ws.remove_file(&path).unwrap_err(), expected, "{msg}");
                assert_eq!(w.ws.create_dirs(&path).unwrap_err(), expected, "{msg}");
                assert!(fs::symlink_metadata(&link_path).unwrap().is_symlink());
                fs::remove_file(&link_path).unwrap();
            }
        }
        // Nothing outside changed; nothing was created through a link.
        let names: Vec<_> = fs::read_dir(&w.outside)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["secret.txt"]);
        assert_eq!(
            fs::read_to_string(w.outside.join("secret.txt")).unwrap(),
            "secret"
        );
        // symlink_metadata reports the link itself.
        symlink(&w.outside, w.root.join("out")).unwrap();
        assert!(w
            .ws
            .symlink_metadata(&p("out"))
            .unwrap()
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(
            w.ws.symlink_metadata(&p("out/secret.txt")).unwrap_err(),
            FilesError::Symlink("/out".into())
        );
        assert!(w.ws.symlink_metadata(&p("none")).unwrap().is_none());
    }

    #[test]
    fn a_symlinked_workspace_root_is_not_opened() {
        let w = ws();
        let link = w.outside.join("ws-link");
        symlink(&w.root, &link).unwrap();
        assert_eq!(
            WorkspaceDir::open(&link).unwrap_err(),
            FilesError::WorkspaceMissing
        );
        assert_eq!(
            WorkspaceDir::open(&w.root.join("gone")).unwrap_err(),
            FilesError::WorkspaceMissing
        );
        assert_eq!(
            WorkspaceDir::open(&w.root.join("top.txt")).unwrap_err(),
            FilesError::WorkspaceMissing
        );
    }

    #[test]
    fn atomic_write_keeps_mode_and_leaves_no_temporary_file() {
        let w = ws();
        let leftovers = |dir: &Path| -> Vec<String> {
            fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(TEMP_PREFIX))
                .collect()
        };
        let script = w.root.join("run.sh");
        fs::write(&script, "old").unwrap();
        fs::set_permissions(&script, fs::Permissions::from_mode(0o750)).unwrap();
        w.ws.write_atomic(&p("/workspace/run.sh"), b"#!/bin/sh\n", false)
            .unwrap();
        assert_eq!(fs::read_to_string(&script).unwrap(), "#!/bin/sh\n");
        assert_eq!(fs::metadata(&script).unwrap().mode() & 0o7777, 0o750);

        w.ws.write_atomic(&p("new.txt"), b"x", false).unwrap();
        assert_eq!(
            fs::metadata(w.root.join("new.txt")).unwrap().mode() & 0o7777,
            NEW_FILE_MODE
        );
        // Missing parents: refused unless asked for.
        assert_eq!(
            w.ws.write_atomic(&p("x/y/z.txt"), b"z", false).unwrap_err(),
            FilesError::NotFound("x/y/z.txt".into())
        );
        w.ws.write_atomic(&p("x/y/z.txt"), b"z", true).unwrap();
        assert_eq!(fs::read_to_string(w.root.join("x/y/z.txt")).unwrap(), "z");
        for d in ["x", "x/y"] {
            assert_eq!(
                fs::metadata(w.root.join(d)).unwrap().mode() & 0o777,
                NEW_DIR_MODE
            );
        }
        // Over a directory or the root: refused, nothing left behind.
        assert_eq!(
            w.ws.write_atomic(&p("src"), b"x", false).unwrap_err(),
            FilesError::IsADirectory("/src".into())
        );
        assert_eq!(
            w.ws.write_atomic(&p("/workspace"), b"x", false)
                .unwrap_err(),
            FilesError::IsRoot
        );
        assert_eq!(
            w.ws.write_atomic(&p("top.txt/x"), b"x", true).unwrap_err(),
            FilesError::NotADirectory("top.txt/x".into())
        );
        assert!(leftovers(&w.root).is_empty());
        assert!(w.root.join("src/pkg/a.py").exists());
    }

    #[test]
    fn new_files_and_dirs_take_the_directory_owner_when_privileged() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return; // Changing owners needs root; the fallback (keep ours) is covered above.
        }
        let w = ws();
        std::os::unix::fs::chown(&w.root, Some(4242), Some(4243)).unwrap();
        w.ws.write_atomic(&p("x/y/new.txt"), b"x", true).unwrap();
        for rel in ["x", "x/y", "x/y/new.txt"] {
            let meta = fs::metadata(w.root.join(rel)).unwrap();
            assert_eq!((meta.uid(), meta.gid()), (4242, 4243), "{rel}");
        }
        // An existing file keeps its own owner.
        let path = w.root.join("x/y/new.txt");
        std::os::unix::fs::chown(&path, Some(777), Some(778)).unwrap();
        w.ws.write_atomic(&p("x/y/new.txt"), b"y", false).unwrap();
        let meta = fs::metadata(&path).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (777, 778));
    }

    #[test]
    fn create_dirs_and_remove_file() {
        let w = ws();
        w.ws.create_dirs(&p("a/b/c")).unwrap();
        assert!(w.root.join("a/b/c").is_dir());
        w.ws.create_dirs(&p("a/b/c")).unwrap();
        assert_eq!(
            w.ws.create_dirs(&p("top.txt/g")).unwrap_err(),
            FilesError::NotADirectory("top.txt/g".into())
        );
        assert!(w.ws.remove_file(&p("top.txt")).unwrap());
        assert!(!w.root.join("top.txt").exists());
        assert!(!w.ws.remove_file(&p("top.txt")).unwrap());
        assert_eq!(
            w.ws.remove_file(&p("src")).unwrap_err(),
            FilesError::IsADirectory("/src".into())
        );
        assert_eq!(w.ws.remove_file(&p("/")).unwrap_err(), FilesError::IsRoot);
    }

    /// A handle keeps working on the directory it opened even when the sandbox renames that
    /// directory and puts a symlink in its place: nothing reaches the link's target.
    #[test]
    fn handles_survive_a_swap_without_escaping() {
        let w = ws();
        fs::create_dir(w.root.join("d")).unwrap();
        let d = w.ws.open_dir(&p("d")).unwrap();
        fs::rename(w.root.join("d"), w.root.join("d.real")).unwrap();
        symlink(&w.outside, w.root.join("d")).unwrap();
        d.write("f.txt", "inside").unwrap();
        assert_eq!(
            fs::read_to_string(w.root.join("d.real/f.txt")).unwrap(),
            "inside"
        );
        assert!(!w.outside.join("f.txt").exists());
        assert_eq!(
            w.ws.write_atomic(&p("d/f.txt"), b"x", true).unwrap_err(),
            FilesError::Symlink("/d".into())
        );
    }
}
