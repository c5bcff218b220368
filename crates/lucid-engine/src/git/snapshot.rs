//! A snapshot of a workspace's worktree, read through directory handles and written as a
//! `git fast-import` stream for the host-private repository.
//!
//! The workspace is written by the sandbox, which Lucid does not trust: the walk opens every
//! directory beneath the workspace's root handle one component at a time without following
//! symlinks, opens files with `O_NOFOLLOW | O_NONBLOCK` and decides what an entry is from the
//! opened handle, so nothing outside the workspace is ever read whatever the workspace holds.
//! The sandbox's `.git` (and any `.git` further down) is skipped: it is the agent's business
//! and never reaches host-side git.
//!
//! What is kept: regular files (mode `100755` when the owner may execute them, else
//! `100644`) and symlinks stored as links (`120000`, their target as content, never followed).
//! Untracked paths matched by the workspace's `.gitignore` files are left out, the way
//! `git add -A` would; paths tracked in the parent commit are always kept. FIFOs, sockets and
//! devices cannot be stored by git and are skipped.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use cap_fs_ext::{DirExt, FollowSymlinks, OpenOptionsFollowExt};
use cap_std::fs::{Dir, OpenOptions, OpenOptionsExt, PermissionsExt};
use ignore::gitignore::{Gitignore, GitignoreBuilder};
use ignore::Match;

use super::error::GitError;

/// Limits of one snapshot.
#[derive(Debug, Clone, Copy)]
pub struct SnapshotLimits {
    /// Most files and links.
    pub max_entries: usize,
    /// Largest single file (GitHub refuses files above 100 MiB).
    pub max_file_bytes: u64,
    /// Most bytes of content in all.
    pub max_total_bytes: u64,
    /// Deepest directory nesting walked.
    pub max_depth: usize,
    /// Most directories walked.
    pub max_dirs: usize,
    /// Most bytes of `.gitignore` files read in all.
    pub max_ignore_bytes: u64,
}

impl Default for SnapshotLimits {
    fn default() -> Self {
        Self {
            max_entries: 200_000,
            max_file_bytes: 100 * 1024 * 1024,
            max_total_bytes: 2 * 1024 * 1024 * 1024,
            max_depth: 128,
            max_dirs: 100_000,
            max_ignore_bytes: 8 * 1024 * 1024,
        }
    }
}

/// What a snapshot wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SnapshotStats {
    pub files: usize,
    pub symlinks: usize,
    pub bytes: u64,
}

/// Paths of the parent commit (bytes, `/`-separated), and every directory that holds one.
#[derive(Debug, Default)]
pub(crate) struct TrackedPaths {
    files: HashSet<Vec<u8>>,
    dirs: HashSet<Vec<u8>>,
}

impl TrackedPaths {
    /// From `git ls-tree -r -z --name-only` output.
    pub(crate) fn from_ls_tree(output: &[u8]) -> Self {
        let mut tracked = Self::default();
        for path in output.split(|b| *b == 0).filter(|p| !p.is_empty()) {
            let mut end = path.len();
            while let Some(slash) = path[..end].iter().rposition(|b| *b == b'/') {
                if !tracked.dirs.insert(path[..slash].to_vec()) {
                    break;
                }
                end = slash;
            }
            tracked.files.insert(path.to_vec());
        }
        tracked
    }

    fn has_file(&self, path: &[u8]) -> bool {
        self.files.contains(path)
    }

    fn has_dir(&self, path: &[u8]) -> bool {
        self.dirs.contains(path)
    }
}

/// Writes the `M` (modify) commands of a fast-import commit for every entry of the worktree
/// under `root` to `out`. The caller writes the commit header (with `deleteall`) before and
/// the end of the stream after.
pub(crate) fn write_worktree(
    root: &Path,
    tracked: &TrackedPaths,
    limits: SnapshotLimits,
    out: &mut dyn Write,
) -> Result<SnapshotStats, GitError> {
    let dir = Dir::open_ambient_dir(root, cap_std::ambient_authority())
        .map_err(|e| GitError::io("could not open the workspace", e))?;
    let mut walk = Walk {
        tracked,
        limits,
        out,
        stats: SnapshotStats::default(),
        ignores: Vec::new(),
        depth: 0,
        dirs: 0,
        ignore_bytes: 0,
    };
    walk.dir(&dir, &mut Vec::new(), false)?;
    Ok(walk.stats)
}

struct Walk<'a> {
    tracked: &'a TrackedPaths,
    limits: SnapshotLimits,
    out: &'a mut dyn Write,
    stats: SnapshotStats,
    /// `.gitignore` matchers of the directories being walked, outermost first.
    ignores: Vec<Gitignore>,
    depth: usize,
    dirs: usize,
    ignore_bytes: u64,
}

impl Walk<'_> {
    /// Walks `dir` (at workspace-relative `rel`, empty for the root). `ignored` = `dir` itself
    /// is ignored, so only tracked paths below it are kept.
    fn dir(&mut self, dir: &Dir, rel: &mut Vec<u8>, ignored: bool) -> Result<(), GitError> {
        self.dirs += 1;
        if self.depth > self.limits.max_depth || self.dirs > self.limits.max_dirs {
            return Err(GitError::Snapshot(format!(
                "the workspace is too deep or has too many directories to push (at {}: at most \
                 {} levels and {} directories)",
                show(rel),
                self.limits.max_depth,
                self.limits.max_dirs
            )));
        }
        let pushed = match read_gitignore(dir, rel, &mut self.ignore_bytes, &self.limits)? {
            Some(matcher) => {
                self.ignores.push(matcher);
                true
            }
            None => false,
        };
        let mut names: Vec<_> = dir
            .entries()
            .map_err(|e| walk_error("list", rel, e))?
            .map(|entry| entry.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(|e| walk_error("list", rel, e))?;
        names.sort();
        for name in names {
            if name.as_bytes().eq_ignore_ascii_case(b".git") {
                continue;
            }
            let base_len = rel.len();
            if !rel.is_empty() {
                rel.push(b'/');
            }
            rel.extend_from_slice(name.as_bytes());
            let result = self.entry(dir, &name, rel, ignored);
            rel.truncate(base_len);
            result?;
        }
        if pushed {
            self.ignores.pop();
        }
        Ok(())
    }

    fn entry(
        &mut self,
        dir: &Dir,
        name: &OsStr,
        rel: &mut Vec<u8>,
        parent_ignored: bool,
    ) -> Result<(), GitError> {
        let meta = match dir.symlink_metadata(name) {
            Ok(meta) => meta,
            // Gone since the listing (only possible when the sandbox is not frozen).
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(walk_error("inspect", rel, e)),
        };
        let file_type = meta.file_type();
        if file_type.is_dir() {
            let ignored = parent_ignored || self.is_ignored(rel, true);
            if ignored && !self.tracked.has_dir(rel) {
                return Ok(());
            }
            let sub = dir
                .open_dir_nofollow(name)
                .map_err(|e| walk_error("open", rel, e))?;
            self.depth += 1;
            let walked = self.dir(&sub, rel, ignored);
            self.depth -= 1;
            return walked;
        }
        let keep = self.tracked.has_file(rel) || !(parent_ignored || self.is_ignored(rel, false));
        if !keep {
            return Ok(());
        }
        if file_type.is_symlink() {
            let target = dir
                .read_link_contents(name)
                .map_err(|e| walk_error("read the link", rel, e))?;
            let target = target.as_os_str().as_bytes().to_vec();
            self.count(target.len() as u64, rel)?;
            self.stats.symlinks += 1;
            self.emit(b"120000", rel, &target)?;
        } else if file_type.is_file() {
            self.file(dir, name, rel)?;
        }
        Ok(())
    }

    fn file(&mut self, dir: &Dir, name: &OsStr, rel: &[u8]) -> Result<(), GitError> {
        let mut options = OpenOptions::new();
        options
            .read(true)
            .follow(FollowSymlinks::No)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY);
        let file = match dir.open_with(name, &options) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(walk_error("open", rel, e)),
        };
        let meta = file.metadata().map_err(|e| walk_error("inspect", rel, e))?;
        if !meta.is_file() {
            return Ok(());
        }
        let len = meta.len();
        if len > self.limits.max_file_bytes {
            return Err(GitError::Snapshot(format!(
                "{} is {len} bytes; files above {} bytes cannot be pushed",
                show(rel),
                self.limits.max_file_bytes
            )));
        }
        self.count(len, rel)?;
        let mode: &[u8] = if meta.permissions().mode() & 0o100 != 0 {
            b"100755"
        } else {
            b"100644"
        };
        self.header(mode, rel, len)?;
        let copied = io::copy(&mut file.into_std().take(len), &mut self.out)
            .map_err(|e| walk_error("read", rel, e))?;
        if copied != len {
            return Err(GitError::Snapshot(format!(
                "{} changed while it was being read; try again",
                show(rel)
            )));
        }
        self.out
            .write_all(b"\n")
            .map_err(|e| GitError::io("could not write the snapshot", e))?;
        self.stats.files += 1;
        Ok(())
    }

    fn is_ignored(&self, rel: &[u8], is_dir: bool) -> bool {
        let path = virtual_path(rel);
        for matcher in self.ignores.iter().rev() {
            match matcher.matched(&path, is_dir) {
                Match::Ignore(_) => return true,
                Match::Whitelist(_) => return false,
                Match::None => {}
            }
        }
        false
    }

    fn count(&mut self, bytes: u64, rel: &[u8]) -> Result<(), GitError> {
        self.stats.bytes += bytes;
        if self.stats.files + self.stats.symlinks >= self.limits.max_entries
            || self.stats.bytes > self.limits.max_total_bytes
        {
            return Err(GitError::Snapshot(format!(
                "the workspace is too large to push (stopped at {}: more than {} files or {} \
                 bytes)",
                show(rel),
                self.limits.max_entries,
                self.limits.max_total_bytes
            )));
        }
        Ok(())
    }

    fn emit(&mut self, mode: &[u8], rel: &[u8], content: &[u8]) -> Result<(), GitError> {
        self.header(mode, rel, content.len() as u64)?;
        self.out
            .write_all(content)
            .and_then(|()| self.out.write_all(b"\n"))
            .map_err(|e| GitError::io("could not write the snapshot", e))
    }

    fn header(&mut self, mode: &[u8], rel: &[u8], len: u64) -> Result<(), GitError> {
        let mut line = Vec::with_capacity(rel.len() + 32);
        line.extend_from_slice(b"M ");
        line.extend_from_slice(mode);
        line.extend_from_slice(b" inline ");
        quote_path(rel, &mut line);
        line.extend_from_slice(format!("\ndata {len}\n").as_bytes());
        self.out
            .write_all(&line)
            .map_err(|e| GitError::io("could not write the snapshot", e))
    }
}

/// The `.gitignore` of `dir`, if it is a regular file (read without following links).
fn read_gitignore(
    dir: &Dir,
    rel: &[u8],
    budget_used: &mut u64,
    limits: &SnapshotLimits,
) -> Result<Option<Gitignore>, GitError> {
    let mut options = OpenOptions::new();
    options
        .read(true)
        .follow(FollowSymlinks::No)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY);
    let Ok(file) = dir.open_with(".gitignore", &options) else {
        return Ok(None);
    };
    match file.metadata() {
        Ok(meta) if meta.is_file() => {}
        _ => return Ok(None),
    }
    // Never silently disregarded (that would push what it ignores): over budget is an error.
    let remaining = limits.max_ignore_bytes.saturating_sub(*budget_used);
    let mut text = Vec::new();
    file.into_std()
        .take(remaining + 1)
        .read_to_end(&mut text)
        .map_err(|e| walk_error("read the .gitignore in", rel, e))?;
    *budget_used += text.len() as u64;
    if *budget_used > limits.max_ignore_bytes {
        return Err(GitError::Snapshot(format!(
            "the workspace's .gitignore files are too large (more than {} bytes in all)",
            limits.max_ignore_bytes
        )));
    }
    let mut builder = GitignoreBuilder::new(virtual_path(rel));
    for line in String::from_utf8_lossy(&text).lines() {
        // A pattern the matcher cannot parse is skipped, as git would ignore it.
        let _ = builder.add_line(None, line);
    }
    Ok(builder.build().ok())
}

/// The path the ignore matchers see for a workspace-relative path: `/w/<rel>`.
fn virtual_path(rel: &[u8]) -> PathBuf {
    let mut bytes = b"/w".to_vec();
    if !rel.is_empty() {
        bytes.push(b'/');
        bytes.extend_from_slice(rel);
    }
    PathBuf::from(OsStr::from_bytes(&bytes))
}

/// A path in fast-import's C-style quoting: always quoted, with `"`, `\` and every byte that
/// is not printable ASCII written as an octal escape.
pub(crate) fn quote_path(path: &[u8], out: &mut Vec<u8>) {
    out.push(b'"');
    for &b in path {
        match b {
            b'"' | b'\\' => {
                out.push(b'\\');
                out.push(b);
            }
            0x20..=0x7e => out.push(b),
            _ => out.extend_from_slice(format!("\\{b:03o}").as_bytes()),
        }
    }
    out.push(b'"');
}

fn show(rel: &[u8]) -> String {
    String::from_utf8_lossy(rel).escape_debug().to_string()
}

fn walk_error(action: &str, rel: &[u8], source: io::Error) -> GitError {
    let shown = if rel.is_empty() {
        "the workspace".to_string()
    } else {
        show(rel)
    };
    GitError::Snapshot(format!("could not {action} {shown}: {}", source.kind()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{symlink, PermissionsExt as _};

    fn snapshot(root: &Path, tracked: &[u8]) -> (String, SnapshotStats) {
        let mut out = Vec::new();
        let stats = write_worktree(
            root,
            &TrackedPaths::from_ls_tree(tracked),
            SnapshotLimits::default(),
            &mut out,
        )
        .unwrap();
        (String::from_utf8_lossy(&out).into_owned(), stats)
    }

    #[test]
    fn quoting_escapes_quotes_backslashes_and_non_printable_bytes() {
        let mut out = Vec::new();
        quote_path(b"a \"b\"\\c\nd\xff", &mut out);
        assert_eq!(out, b"\"a \\\"b\\\"\\\\c\\012d\\377\"");
    }

    #[test]
    fn files_links_and_modes_are_written_and_git_dirs_skipped() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        fs::create_dir_all(root.join("src/.git")).unwrap();
        fs::create_dir_all(root.join(".git")).unwrap();
        fs::write(root.join(".git/config"), "[core]\n").unwrap();
        fs::write(root.join("src/.git/HEAD"), "x").unwrap();
        fs::write(root.join("src/main.py"), "print(1)\n").unwrap();
        fs::write(root.join("run.sh"), "#!/bin/sh\n").unwrap();
        fs::set_permissions(root.join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
        symlink("/etc/passwd", root.join("link")).unwrap();
        let (stream, stats) = snapshot(root, b"");
        assert_eq!(
            stats,
            SnapshotStats {
                files: 2,
                symlinks: 1,
                bytes: 9 + 10 + 11
            }
        );
        assert!(stream.contains("M 120000 inline \"link\"\ndata 11\n/etc/passwd\n"));
        assert!(stream.contains("M 100755 inline \"run.sh\"\ndata 10\n#!/bin/sh\n\n"));
        assert!(stream.contains("M 100644 inline \"src/main.py\"\ndata 9\nprint(1)\n\n"));
        assert!(!stream.contains(".git"), "{stream}");
        assert!(!stream.contains("root:"), "the link was followed: {stream}");
    }

    #[test]
    fn gitignore_rules_apply_to_untracked_paths_only() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        fs::write(root.join(".gitignore"), "*.log\nbuild/\n!keep.log\n").unwrap();
        fs::create_dir_all(root.join("build/sub")).unwrap();
        fs::create_dir_all(root.join("pkg")).unwrap();
        fs::write(root.join("pkg/.gitignore"), "local.txt\n").unwrap();
        fs::write(root.join("pkg/local.txt"), "x").unwrap();
        fs::write(root.join("pkg/kept.txt"), "x").unwrap();
        fs::write(root.join("a.log"), "x").unwrap();
        fs::write(root.join("keep.log"), "x").unwrap();
        fs::write(root.join("build/out.bin"), "x").unwrap();
        fs::write(root.join("build/sub/tracked.txt"), "x").unwrap();
        let (stream, _) = snapshot(root, b"build/sub/tracked.txt\0");
        for kept in [
            "keep.log",
            "pkg/kept.txt",
            "build/sub/tracked.txt",
            ".gitignore",
        ] {
            assert!(stream.contains(&format!("\"{kept}\"")), "{kept}: {stream}");
        }
        for dropped in ["a.log", "pkg/local.txt", "build/out.bin"] {
            assert!(
                !stream.contains(&format!("\"{dropped}\"")),
                "{dropped}: {stream}"
            );
        }
    }

    #[test]
    fn fifos_are_skipped_without_blocking_and_limits_hold() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let fifo = std::ffi::CString::new(root.join("pipe").as_os_str().as_bytes()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
        fs::write(root.join("big"), vec![b'x'; 2048]).unwrap();
        let (stream, stats) = snapshot(root, b"");
        assert_eq!(stats.files, 1);
        assert!(!stream.contains("pipe"));
        let err = write_worktree(
            root,
            &TrackedPaths::default(),
            SnapshotLimits {
                max_file_bytes: 1024,
                ..SnapshotLimits::default()
            },
            &mut Vec::new(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("big"), "{err}");
    }

    #[test]
    fn deep_trees_and_huge_ignore_files_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let mut deep = tmp.path().to_path_buf();
        for _ in 0..20 {
            deep.push("a");
        }
        fs::create_dir_all(&deep).unwrap();
        let limits = SnapshotLimits {
            max_depth: 10,
            ..SnapshotLimits::default()
        };
        let err = write_worktree(
            tmp.path(),
            &TrackedPaths::default(),
            limits,
            &mut Vec::new(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("too deep"), "{err}");
        let wide = tempfile::tempdir().unwrap();
        fs::write(wide.path().join(".gitignore"), "x\n".repeat(600)).unwrap();
        let limits = SnapshotLimits {
            max_ignore_bytes: 1000,
            ..SnapshotLimits::default()
        };
        let err = write_worktree(
            wide.path(),
            &TrackedPaths::default(),
            limits,
            &mut Vec::new(),
        )
        .unwrap_err();
        assert!(err.to_string().contains(".gitignore"), "{err}");
    }

    #[test]
    fn a_symlinked_directory_is_stored_as_a_link_never_walked() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("secret"), "top secret").unwrap();
        symlink(outside.path(), tmp.path().join("d")).unwrap();
        let (stream, stats) = snapshot(tmp.path(), b"d/secret\0");
        assert_eq!(stats.files, 0);
        assert_eq!(stats.symlinks, 1);
        assert!(!stream.contains("top secret"));
    }
}
