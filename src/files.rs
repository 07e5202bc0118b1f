//! Reading the files an operator names (the config, the credentials file, the TLS files) so that no
//! file can hang or exhaust the daemon.
//!
//! A path can name anything: a FIFO (whose `open` blocks until a writer comes, and whose `read` blocks
//! until it writes), `/dev/zero` or `/dev/urandom` (endless), a socket, a directory, or a file on a
//! hung network file system. [`read_regular`] therefore opens with `O_NONBLOCK` (so that opening a FIFO
//! returns at once), asks `fstat` about the descriptor it opened (the path's `stat`, looked at first so
//! that a device is not even opened, could be swapped before the `open`), refuses anything but a regular file, and reads at most the limit plus
//! one byte whatever size the file claims (a file may grow while it is read, and `/proc` files claim 0).
//!
//! Only a hung file system is left: a read can then block for as long as the server is away. The
//! daemon's event loop also renews the lease, so it never reads a file itself: [`off_loop`] runs the
//! read on a thread of its own and gives up after a deadline, abandoning the thread (a thread, not
//! tokio's blocking pool: the runtime waits for the blocking pool when it shuts down, and a read stuck
//! on a dead NFS server would then hold the daemon's exit).

use std::fmt;
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;
use std::time::Duration;

/// The largest file the daemon reads: a config of 10,000 workers fits well within it.
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// How long a read off the event loop may take before it is abandoned.
pub const READ_DEADLINE: Duration = Duration::from_secs(5);

/// Why a file was not read. Displayed as the end of a sentence that starts with the file's name:
/// `/etc/x.toml: is a FIFO, not a regular file`.
#[derive(Debug)]
pub enum ReadError {
    NotFound,
    PermissionDenied,
    /// A directory, FIFO, socket, or device.
    NotRegular(&'static str),
    /// Larger than the limit (as `fstat` says, or as found while reading).
    TooLarge {
        size: Option<u64>,
        limit: u64,
    },
    Io(io::Error),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::NotFound => f.write_str("no such file"),
            ReadError::PermissionDenied => f.write_str("cannot read: permission denied"),
            ReadError::NotRegular(what) => write!(f, "is {what}, not a regular file"),
            ReadError::TooLarge {
                size: Some(size),
                limit,
            } => write!(f, "too large: {size} bytes (the limit is {limit})"),
            ReadError::TooLarge { size: None, limit } => {
                write!(f, "too large: more than {limit} bytes (the limit)")
            }
            ReadError::Io(e) => write!(f, "cannot read: {e}"),
        }
    }
}

impl std::error::Error for ReadError {}

/// What a file is when it is not a regular file, with its article: "a FIFO".
fn kind(file_type: std::fs::FileType) -> Option<&'static str> {
    if file_type.is_file() {
        None
    } else if file_type.is_dir() {
        Some("a directory")
    } else if file_type.is_fifo() {
        Some("a FIFO")
    } else if file_type.is_socket() {
        Some("a socket")
    } else if file_type.is_char_device() {
        Some("a character device")
    } else if file_type.is_block_device() {
        Some("a block device")
    } else {
        Some("not a file")
    }
}

/// A regular file's metadata and content, read as described in the module docs. Symbolic links are
/// followed (configuration management makes them); what they lead to must be a regular file.
///
/// # Errors
/// The file is missing, unreadable, not a regular file, or larger than `limit` bytes.
pub fn read_regular(path: &Path, limit: u64) -> Result<(std::fs::Metadata, Vec<u8>), ReadError> {
    // A first look at the path, so that a device is refused without being opened (opening some has
    // effects: a tape rewinds, a modem line is taken). Only the `fstat` below decides, though.
    if let Some(what) = std::fs::metadata(path)
        .ok()
        .and_then(|m| kind(m.file_type()))
    {
        return Err(ReadError::NotRegular(what));
    }
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY)
        .open(path);
    let file = match opened {
        Ok(file) => file,
        Err(e) => {
            // A socket cannot be opened at all (ENXIO): say what it is rather than the errno.
            if let Some(what) = std::fs::metadata(path)
                .ok()
                .and_then(|m| kind(m.file_type()))
            {
                return Err(ReadError::NotRegular(what));
            }
            return Err(match e.kind() {
                io::ErrorKind::NotFound => ReadError::NotFound,
                io::ErrorKind::PermissionDenied => ReadError::PermissionDenied,
                _ => ReadError::Io(e),
            });
        }
    };
    let meta = file.metadata().map_err(ReadError::Io)?;
    if let Some(what) = kind(meta.file_type()) {
        return Err(ReadError::NotRegular(what));
    }
    if meta.len() > limit {
        return Err(ReadError::TooLarge {
            size: Some(meta.len()),
            limit,
        });
    }
    let capacity = usize::try_from(meta.len().min(limit)).unwrap_or(0);
    let mut bytes = Vec::with_capacity(capacity);
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| match e.kind() {
            io::ErrorKind::PermissionDenied => ReadError::PermissionDenied,
            _ => ReadError::Io(e),
        })?;
    if bytes.len() as u64 > limit {
        return Err(ReadError::TooLarge { size: None, limit });
    }
    Ok((meta, bytes))
}

/// Runs `read` on a thread of its own and waits for it at most `deadline`; `None` past it (the thread
/// is abandoned and its result dropped whenever it comes). For the event loop: nothing it runs here
/// can hold the loop.
///
/// # Cancellation safety
/// Cancel-safe: dropping the future abandons the thread as the deadline does.
pub async fn off_loop<T, F>(deadline: Duration, read: F) -> Option<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("zk-supervise-read".into())
        .spawn(move || {
            let _ = tx.send(read());
        });
    if spawned.is_err() {
        return None;
    }
    tokio::time::timeout(deadline, rx).await.ok()?.ok()
}

/// Like [`off_loop`], for a caller that is not on an event loop (the command line's `check`).
pub fn with_deadline<T, F>(deadline: Duration, read: F) -> Option<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("zk-supervise-read".into())
        .spawn(move || {
            let _ = tx.send(read());
        })
        .ok()?;
    rx.recv_timeout(deadline).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(label: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("zk-supervise-files-{label}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create a temp dir");
        dir
    }

    #[test]
    fn a_regular_file_is_read_whole() {
        let dir = temp_dir("regular");
        let path = dir.join("f");
        std::fs::write(&path, b"hello").expect("write");
        let (meta, bytes) = read_regular(&path, 5).expect("read");
        assert!(meta.is_file());
        assert_eq!(bytes, b"hello");
        assert!(matches!(
            read_regular(&path, 4),
            Err(ReadError::TooLarge { size: Some(5), .. })
        ));
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let dir = temp_dir("fifo");
        let path = dir.join("fifo");
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .expect("mkfifo");
        let e = read_regular(&path, MAX_FILE_BYTES).expect_err("a FIFO is refused");
        assert_eq!(e.to_string(), "is a FIFO, not a regular file");
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn devices_and_directories_are_refused() {
        let e = read_regular(Path::new("/dev/zero"), MAX_FILE_BYTES).expect_err("refused");
        assert_eq!(e.to_string(), "is a character device, not a regular file");
        let e = read_regular(Path::new("/"), MAX_FILE_BYTES).expect_err("refused");
        assert_eq!(e.to_string(), "is a directory, not a regular file");
        let dir = temp_dir("socket");
        let path = dir.join("sock");
        let _listener = std::os::unix::net::UnixListener::bind(&path).expect("bind");
        let e = read_regular(&path, MAX_FILE_BYTES).expect_err("refused");
        assert_eq!(e.to_string(), "is a socket, not a regular file");
        assert!(matches!(
            read_regular(&dir.join("missing"), 1),
            Err(ReadError::NotFound)
        ));
        std::fs::remove_dir_all(dir).ok();
    }

    /// A file that claims a small size but reads on (a `/proc` file claims 0): at most the limit
    /// plus one byte is read.
    #[test]
    fn a_file_longer_than_it_claims_is_cut_at_the_limit() {
        let (meta, bytes) = read_regular(Path::new("/proc/self/status"), 1 << 20).expect("read");
        assert_eq!(meta.len(), 0, "/proc files claim no size");
        assert!(!bytes.is_empty());
        assert!(matches!(
            read_regular(Path::new("/proc/self/status"), 10),
            Err(ReadError::TooLarge { size: None, .. })
        ));
    }

    /// A read that hangs (a dead NFS server) is given up at the deadline, and the event loop runs on
    /// meanwhile: a timer on the same current-thread runtime fires while the read is waited for.
    #[tokio::test]
    async fn off_loop_gives_up_at_the_deadline_without_holding_the_loop() {
        let started = std::time::Instant::now();
        let ticker = tokio::spawn(async {
            let mut ticks = 0;
            let mut interval = tokio::time::interval(Duration::from_millis(10));
            for _ in 0..5 {
                interval.tick().await;
                ticks += 1;
            }
            ticks
        });
        let out = off_loop(Duration::from_millis(200), || {
            std::thread::sleep(Duration::from_secs(3));
        })
        .await;
        assert!(out.is_none());
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(
            ticker.is_finished(),
            "the loop was held while the read was waited for"
        );
        assert_eq!(ticker.await.expect("the ticker"), 5);
        assert_eq!(off_loop(READ_DEADLINE, || 7).await, Some(7));
    }

    #[test]
    fn with_deadline_gives_up_on_a_read_that_hangs() {
        let started = std::time::Instant::now();
        let out = with_deadline(Duration::from_millis(50), || {
            std::thread::sleep(Duration::from_secs(3));
        });
        assert!(out.is_none());
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(with_deadline(Duration::from_secs(5), || 7), Some(7));
    }
}
