//! Reading a workspace file for the UI (`GET /api/v1/files/read`), with a size cap and binary
//! detection (the original read whole files and decoded binaries into garbage).

use std::io::Read;
use std::path::Path;

use cap_std::fs::File;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Entry, FilesError, WorkspaceDir, WorkspacePath};

/// Default cap of [`read_file`]: 1 MiB.
pub const DEFAULT_MAX_READ_BYTES: u64 = 1024 * 1024;

/// Share of invalid UTF-8 sequences (per byte read) above which a file counts as binary.
const MAX_INVALID_UTF8_RATIO: f64 = 0.01;

/// A file's content as returned to the UI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct FileContent {
    /// The text read (at most the cap), or a short notice for binary files.
    pub content: String,
    /// The file's full size in bytes.
    pub size: u64,
    /// True when the file is larger than the cap and only its beginning is returned.
    pub truncated: bool,
    /// True when the file looks binary; `content` then holds only a notice.
    pub binary: bool,
}

/// Reads at most `max_bytes` of the regular file at `requested` inside the workspace `root`.
/// Opens the workspace root and calls [`read_file_in`].
pub fn read_file(
    root: &Path,
    mount_path: &str,
    requested: &str,
    max_bytes: u64,
) -> Result<FileContent, FilesError> {
    let path = WorkspacePath::parse(mount_path, requested)?;
    read_file_in(&WorkspaceDir::open(root)?, &path, max_bytes)
}

/// Reads at most `max_bytes` of the regular file at `path` through the workspace handle
/// (no symlink followed anywhere on the path: [`FilesError::Symlink`]). Directories, devices,
/// FIFOs and sockets are reported as not found (like the original). A few invalid UTF-8
/// sequences in text are replaced with U+FFFD; more, or any NUL byte, marks the file as
/// binary.
fn read_file_in(
    ws: &WorkspaceDir,
    path: &WorkspacePath,
    max_bytes: u64,
) -> Result<FileContent, FilesError> {
    let (file, meta) = match ws.open_entry(path)? {
        Entry::File(file, meta) => (file, meta),
        Entry::Dir(_) | Entry::Other => {
            return Err(FilesError::NotFound(path.requested().to_string()))
        }
    };
    let size = meta.len();
    let bytes = read_capped(file, max_bytes).map_err(|e| FilesError::Io(e.kind()))?;
    let truncated = size > bytes.len() as u64;
    let Some(content) = decode_text(&bytes, truncated) else {
        return Ok(FileContent {
            content: format!("[Binary file ({size} bytes) not shown]"),
            size,
            truncated,
            binary: true,
        });
    };
    Ok(FileContent {
        content,
        size,
        truncated,
        binary: false,
    })
}

fn read_capped(file: File, max_bytes: u64) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    file.take(max_bytes).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Decodes `bytes` as UTF-8 text, or returns `None` when they look binary. When the read was
/// `cut` at the cap, an incomplete character at the end is dropped rather than replaced.
fn decode_text(bytes: &[u8], cut: bool) -> Option<String> {
    if bytes.contains(&0) {
        return None;
    }
    let mut invalid = 0usize;
    let mut text = String::with_capacity(bytes.len());
    let mut rest = bytes;
    loop {
        match std::str::from_utf8(rest) {
            Ok(valid) => {
                text.push_str(valid);
                break;
            }
            Err(e) => {
                let (valid, after) = rest.split_at(e.valid_up_to());
                // `valid_up_to` guarantees this prefix is valid UTF-8 (lossy borrows it as is).
                text.push_str(&String::from_utf8_lossy(valid));
                match e.error_len() {
                    Some(len) => {
                        invalid += 1;
                        text.push(char::REPLACEMENT_CHARACTER);
                        rest = &after[len..];
                    }
                    None => {
                        // Incomplete sequence at the very end.
                        if !cut {
                            invalid += 1;
                            text.push(char::REPLACEMENT_CHARACTER);
                        }
                        break;
                    }
                }
            }
        }
    }
    let ratio = invalid as f64 / bytes.len().max(1) as f64;
    if ratio > MAX_INVALID_UTF8_RATIO {
        None
    } else {
        Some(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    const MOUNT: &str = "/workspace";

    #[test]
    fn reads_text_in_both_path_forms() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("src")).unwrap();
        fs::write(dir.path().join("src/a.py"), "héllo\n").unwrap();
        for form in ["/src/a.py", "/workspace/src/a.py", "src/a.py"] {
            let c = read_file(dir.path(), MOUNT, form, DEFAULT_MAX_READ_BYTES).unwrap();
            assert_eq!(
                c,
                FileContent {
                    content: "héllo\n".into(),
                    size: 7,
                    truncated: false,
                    binary: false
                }
            );
        }
        let v = serde_json::to_value(
            read_file(dir.path(), MOUNT, "src/a.py", DEFAULT_MAX_READ_BYTES).unwrap(),
        )
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"content": "héllo\n", "size": 7, "truncated": false, "binary": false})
        );
    }

    #[test]
    fn large_file_is_capped() {
        let dir = tempfile::tempdir().unwrap();
        let line = "0123456789abcdef\n";
        let big = line.repeat(20 * 1024 * 1024 / line.len() + 1);
        fs::write(dir.path().join("big.log"), &big).unwrap();
        let c = read_file(dir.path(), MOUNT, "big.log", DEFAULT_MAX_READ_BYTES).unwrap();
        assert!(c.truncated);
        assert!(!c.binary);
        assert_eq!(c.size, big.len() as u64);
        assert_eq!(c.content.len() as u64, DEFAULT_MAX_READ_BYTES);
        assert!(big.starts_with(&c.content));
    }

    #[test]
    fn cut_inside_a_multibyte_character_is_not_garbage() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("u.txt"), "ééé").unwrap(); // 6 bytes
        let c = read_file(dir.path(), MOUNT, "u.txt", 3).unwrap();
        assert_eq!(c.content, "é");
        assert!(c.truncated);
        assert!(!c.binary);
    }

    #[test]
    fn binary_files_are_flagged() {
        let dir = tempfile::tempdir().unwrap();
        let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
        png.extend((0..=255u8).cycle().take(4096));
        fs::write(dir.path().join("img.png"), &png).unwrap();
        let c = read_file(dir.path(), MOUNT, "img.png", DEFAULT_MAX_READ_BYTES).unwrap();
        assert!(c.binary);
        assert_eq!(c.size, png.len() as u64);
        assert!(!c.content.contains('\u{fffd}'));
        assert!(c.content.contains("Binary file"));

        // Latin-1 text without NULs: mostly invalid UTF-8 → binary.
        let latin1: Vec<u8> = "caf\u{e9} "
            .bytes()
            .chain([0xe9, 0xe8, 0xe0])
            .cycle()
            .take(300)
            .collect();
        fs::write(dir.path().join("l1.txt"), &latin1).unwrap();
        assert!(read_file(dir.path(), MOUNT, "l1.txt", 1024).unwrap().binary);

        // One stray byte in a long text is replaced, not treated as binary.
        let mut mostly = "a".repeat(1000).into_bytes();
        mostly.push(0xff);
        fs::write(dir.path().join("m.txt"), &mostly).unwrap();
        let c = read_file(dir.path(), MOUNT, "m.txt", 4096).unwrap();
        assert!(!c.binary);
        assert!(c.content.ends_with('\u{fffd}'));
    }

    #[test]
    fn empty_file_reads_empty() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("e"), "").unwrap();
        let c = read_file(dir.path(), MOUNT, "e", 10).unwrap();
        assert_eq!(c.content, "");
        assert!(!c.truncated && !c.binary);
    }

    #[test]
    fn non_regular_files_are_not_found() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("d")).unwrap();
        let fifo = dir.path().join("pipe");
        let c_path = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path; mkfifo has no other preconditions.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o644) }, 0);
        let start = std::time::Instant::now();
        for p in ["d", "/workspace", "pipe", "missing.txt"] {
            assert_eq!(
                read_file(dir.path(), MOUNT, p, 10),
                Err(FilesError::NotFound(p.into())),
                "{p}"
            );
        }
        // The FIFO was not opened for a blocking read.
        assert!(start.elapsed() < std::time::Duration::from_secs(2));
    }

    #[test]
    fn symlink_escapes_and_traversal_are_refused() {
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("secret"), "s3cret").unwrap();
        let dir = tempfile::tempdir().unwrap();
        symlink(outside.path().join("secret"), dir.path().join("link")).unwrap();
        symlink(outside.path(), dir.path().join("dirlink")).unwrap();
        symlink("/proc/self/environ", dir.path().join("env")).unwrap();
        for (p, link) in [
            ("link", "/link"),
            ("/workspace/dirlink/secret", "/dirlink"),
            ("/env", "/env"),
        ] {
            let err = read_file(dir.path(), MOUNT, p, 1024).unwrap_err();
            assert_eq!(err, FilesError::Symlink(link.into()), "{p}");
        }
        for p in ["../../etc/passwd", "/workspace/../../etc/passwd"] {
            assert_eq!(
                read_file(dir.path(), MOUNT, p, 1024),
                Err(FilesError::Traversal),
                "{p}"
            );
        }
        assert_eq!(
            read_file(dir.path(), MOUNT, "/etc/passwd", 1024),
            Err(FilesError::NotFound("/etc/passwd".into()))
        );
        assert_eq!(
            read_file(dir.path(), MOUNT, "link\0", 1024),
            Err(FilesError::InvalidPath("NUL byte in path"))
        );
    }
}
