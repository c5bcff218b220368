//! The sandbox test image and Docker reachability helpers.
//!
//! [`ensure_test_image`] imports, once per machine, a tiny image `lucid-test-sandbox:latest`
//! built `FROM scratch`: the host's static `/bin/busybox` with every applet installed as a
//! symlink (`sh`, `sleep`, `cat`, `seq`, `head`, `dd`, `kill`, `ps`, `awk`…), plus `/tmp`,
//! `/workspace`, `/root` and a minimal `/etc/passwd`. No registry is needed: the root
//! filesystem is written as an in-memory tar archive and imported through the Docker API.
//!
//! The image carries a version label; an image with another version is re-imported. Several
//! test binaries may call [`ensure_test_image`] at once: a lock file serialises the imports
//! across processes and a process-wide cell makes later calls free.

use std::path::Path;
use std::time::Duration;

use bollard::query_parameters::CreateImageOptionsBuilder;
use bollard::Docker;
use futures::StreamExt;
use tokio::sync::OnceCell;

/// Name of the sandbox test image.
pub const TEST_IMAGE: &str = "lucid-test-sandbox:latest";
const TEST_IMAGE_REPO: &str = "lucid-test-sandbox";
const TEST_IMAGE_TAG: &str = "latest";
/// Label telling which layout of the test image is installed; bump when the layout changes.
const VERSION_LABEL: &str = "lucid.test-image.version";
const IMAGE_VERSION: &str = "1";
/// The static busybox on the host (Debian's `busybox-static`).
const HOST_BUSYBOX: &str = "/bin/busybox";

static IMAGE_READY: OnceCell<String> = OnceCell::const_new();

/// Connects to the local Docker daemon (honouring `DOCKER_HOST`), negotiates the API version
/// and pings it. The error says why Docker is unusable.
pub async fn connect_docker() -> Result<Docker, String> {
    let docker = Docker::connect_with_local_defaults()
        .map_err(|e| format!("cannot configure a Docker client: {e}"))?;
    let docker = tokio::time::timeout(Duration::from_secs(10), docker.negotiate_version())
        .await
        .map_err(|_| "the Docker daemon did not answer within 10 s".to_string())?
        .map_err(|e| format!("the Docker daemon is not reachable: {e}"))?;
    tokio::time::timeout(Duration::from_secs(10), docker.ping())
        .await
        .map_err(|_| "the Docker daemon did not answer a ping within 10 s".to_string())?
        .map_err(|e| format!("the Docker daemon does not answer pings: {e}"))?;
    Ok(docker)
}

/// Whether a Docker daemon answers at the local default address.
pub async fn docker_reachable() -> bool {
    connect_docker().await.is_ok()
}

/// Returns a connected Docker client, or panics with a message explaining that these tests
/// need a running Docker daemon (they never pass silently without one).
pub async fn require_docker() -> Docker {
    match connect_docker().await {
        Ok(docker) => docker,
        Err(reason) => panic!(
            "this test needs a running Docker daemon (socket /var/run/docker.sock or DOCKER_HOST): {reason}"
        ),
    }
}

/// Makes sure the sandbox test image exists and returns its name. Panics with a clear message
/// when Docker is unreachable or the image cannot be imported.
pub async fn ensure_test_image() -> String {
    IMAGE_READY
        .get_or_init(|| async {
            let docker = require_docker().await;
            if let Err(reason) = import_if_missing(&docker).await {
                panic!("cannot prepare the sandbox test image {TEST_IMAGE}: {reason}");
            }
            TEST_IMAGE.to_string()
        })
        .await
        .clone()
}

async fn installed_version(docker: &Docker) -> Option<String> {
    let image = docker.inspect_image(TEST_IMAGE).await.ok()?;
    image.config?.labels?.get(VERSION_LABEL).cloned()
}

async fn import_if_missing(docker: &Docker) -> Result<(), String> {
    if installed_version(docker).await.as_deref() == Some(IMAGE_VERSION) {
        return Ok(());
    }
    // Serialise imports across test processes; the holder of the lock re-checks first.
    let lock_path = std::env::temp_dir().join("lucid-test-sandbox-image.lock");
    let lock = tokio::task::spawn_blocking(move || -> std::io::Result<std::fs::File> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)?;
        file.lock()?;
        Ok(file)
    })
    .await
    .map_err(|e| format!("lock task failed: {e}"))?
    .map_err(|e| format!("cannot take the image lock file: {e}"))?;

    let result = async {
        if installed_version(docker).await.as_deref() == Some(IMAGE_VERSION) {
            return Ok(());
        }
        let rootfs = build_rootfs_tar(Path::new(HOST_BUSYBOX))?;
        import_rootfs(docker, rootfs).await
    }
    .await;
    drop(lock);
    result
}

async fn import_rootfs(docker: &Docker, rootfs: Vec<u8>) -> Result<(), String> {
    let options = CreateImageOptionsBuilder::default()
        .from_src("-")
        .repo(TEST_IMAGE_REPO)
        .tag(TEST_IMAGE_TAG)
        .changes(vec![
            format!("LABEL {VERSION_LABEL}={IMAGE_VERSION}"),
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
            "WORKDIR /workspace".to_string(),
            "CMD [\"/bin/sh\"]".to_string(),
        ])
        .build();
    let mut stream =
        docker.create_image(Some(options), Some(bollard::body_full(rootfs.into())), None);
    while let Some(message) = stream.next().await {
        message.map_err(|e| format!("import failed: {e}"))?;
    }
    match installed_version(docker).await {
        Some(v) if v == IMAGE_VERSION => Ok(()),
        _ => Err("the import finished but the image is not there".to_string()),
    }
}

/// Writes the image's root filesystem as a tar archive.
fn build_rootfs_tar(busybox: &Path) -> Result<Vec<u8>, String> {
    let binary = std::fs::read(busybox).map_err(|e| {
        format!(
            "{} is needed to build the test image (apt-get install busybox-static): {e}",
            busybox.display()
        )
    })?;
    let listing = std::process::Command::new(busybox)
        .arg("--list-full")
        .output()
        .map_err(|e| format!("cannot run {} --list-full: {e}", busybox.display()))?;
    if !listing.status.success() {
        return Err(format!("{} --list-full failed", busybox.display()));
    }
    let applets = String::from_utf8_lossy(&listing.stdout).into_owned();

    let mut tar = TarWriter::default();
    for dir in [
        "bin",
        "sbin",
        "usr",
        "usr/bin",
        "usr/sbin",
        "etc",
        "dev",
        "proc",
        "sys",
        "workspace",
    ] {
        tar.dir(dir, 0o755)?;
    }
    tar.dir("root", 0o700)?;
    tar.dir("tmp", 0o1777)?;
    tar.file("etc/passwd", 0o644, b"root:x:0:0:root:/root:/bin/sh\n")?;
    tar.file("etc/group", 0o644, b"root:x:0:\n")?;
    tar.file("bin/busybox", 0o755, &binary)?;
    for applet in applets.lines().map(str::trim) {
        if applet.is_empty() || applet == "bin/busybox" || applet.contains("..") {
            continue;
        }
        tar.symlink(applet, "/bin/busybox")?;
    }
    Ok(tar.finish())
}

/// A minimal ustar writer: directories, regular files and symlinks owned by root.
#[derive(Default)]
struct TarWriter {
    buf: Vec<u8>,
}

impl TarWriter {
    fn dir(&mut self, path: &str, mode: u32) -> Result<(), String> {
        self.header(&format!("{path}/"), mode, 0, b'5', "")
    }

    fn file(&mut self, path: &str, mode: u32, data: &[u8]) -> Result<(), String> {
        self.header(path, mode, data.len() as u64, b'0', "")?;
        self.buf.extend_from_slice(data);
        let padding = (512 - data.len() % 512) % 512;
        self.buf.extend(std::iter::repeat_n(0u8, padding));
        Ok(())
    }

    fn symlink(&mut self, path: &str, target: &str) -> Result<(), String> {
        self.header(path, 0o777, 0, b'2', target)
    }

    fn header(
        &mut self,
        path: &str,
        mode: u32,
        size: u64,
        kind: u8,
        link: &str,
    ) -> Result<(), String> {
        if path.len() > 99 || link.len() > 99 {
            return Err(format!("path too long for the test image archive: {path}"));
        }
        let mut h = [0u8; 512];
        h[..path.len()].copy_from_slice(path.as_bytes());
        put_octal(&mut h[100..108], u64::from(mode));
        put_octal(&mut h[108..116], 0);
        put_octal(&mut h[116..124], 0);
        put_octal(&mut h[124..136], size);
        put_octal(&mut h[136..148], 1_700_000_000);
        h[156] = kind;
        h[157..157 + link.len()].copy_from_slice(link.as_bytes());
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[265..269].copy_from_slice(b"root");
        h[297..301].copy_from_slice(b"root");
        h[148..156].fill(b' ');
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        let checksum = format!("{sum:06o}\0 ");
        h[148..156].copy_from_slice(checksum.as_bytes());
        self.buf.extend_from_slice(&h);
        Ok(())
    }

    fn finish(mut self) -> Vec<u8> {
        self.buf.extend(std::iter::repeat_n(0u8, 1024));
        self.buf
    }
}

/// Writes `value` as zero-padded octal followed by a NUL, filling `field`.
fn put_octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let text = format!("{value:0digits$o}");
    field[..digits].copy_from_slice(&text.as_bytes()[text.len() - digits..]);
    field[digits] = 0;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tar_headers_have_valid_checksums_and_padding() {
        let mut tar = TarWriter::default();
        tar.dir("tmp", 0o1777).unwrap();
        tar.file("etc/passwd", 0o644, b"root\n").unwrap();
        tar.symlink("bin/sh", "/bin/busybox").unwrap();
        let bytes = tar.finish();
        assert_eq!(bytes.len(), 512 * 4 + 1024);
        for header in [&bytes[0..512], &bytes[512..1024], &bytes[1536..2048]] {
            let stored = std::str::from_utf8(&header[148..154]).unwrap();
            let mut copy = header.to_vec();
            copy[148..156].fill(b' ');
            let sum: u32 = copy.iter().map(|&b| u32::from(b)).sum();
            assert_eq!(u32::from_str_radix(stored, 8).unwrap(), sum);
        }
        assert_eq!(&bytes[0..4], b"tmp/");
        assert_eq!(&bytes[100..107], b"0001777");
        assert_eq!(bytes[1536 + 156], b'2');
        assert_eq!(&bytes[1536 + 157..1536 + 169], b"/bin/busybox");
    }

    #[test]
    fn overlong_paths_are_refused() {
        let mut tar = TarWriter::default();
        assert!(tar.dir(&"a".repeat(120), 0o755).is_err());
    }
}
