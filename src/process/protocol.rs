//! What the supervisor and a guard say to each other on the guard's control socket, defined once
//! for both sides: [`ToGuard`] goes down, [`FromGuard`] comes up.
//!
//! Each message is one line of JSON (serde's externally tagged enums: `{"lease":{"deadline_ns":7}}`,
//! `"stop"`). A line, because the guard reads with `read(2)` from a blocking loop and must find the
//! end of a message without a parser ([`Inbox`]); JSON, because the spec carries the worker's
//! argv and environment, which may hold any character, newlines included (escaped by the encoder).
//! Both ends are the same binary (the spawner is started through `/proc/self/exe`), so the format
//! carries no version.
//!
//! The conversation: the guard says [`FromGuard::Guard`] first (its pid, for a sweep should it die
//! without reporting: see [`super::spawner`]); the supervisor sends [`ToGuard::Spec`] once, then any
//! number of [`ToGuard::Lease`], [`ToGuard::Stop`] and [`ToGuard::Kill`]. The guard answers the spec
//! with [`FromGuard::Started`], [`FromGuard::Failed`] or [`FromGuard::Refused`], and after `Started`
//! ends with [`FromGuard::Exited`] once the child's whole tree is gone. End of file on either side
//! means that side is gone. The spawner writes [`FromGuard::Failed`] on the socket itself when it
//! cannot fork the guard.

use std::io::{self, Read};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// What the supervisor sends first: everything the guard needs to start the child.
///
/// The child's environment is the guard's own (the supervisor's, less systemd's variables) plus `env`.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Spec {
    pub worker: String,
    pub argv: Vec<String>,
    /// Added to the child's environment: the worker's `env`, then the `ZK_SUPERVISE_*` variables.
    pub env: Vec<(String, String)>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    pub group: Option<String>,
    pub stop_signal: i32,
    pub grace_ms: u64,
    /// The lease deadline `K` in nanoseconds on `CLOCK_BOOTTIME`; the child is not started past it.
    pub deadline_ns: u64,
    /// The soft limit on open files to give the child (the supervisor raises its own).
    pub nofile: Option<u64>,
    /// Whether fd 3 is the session's shared deadline page ([`crate::lease::SharedDeadline`]).
    pub shared_deadline: bool,
}

/// Supervisor → guard.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ToGuard {
    /// The child to start; the first message, and only once.
    Spec(Spec),
    /// The lease now lasts until `deadline_ns` (`K` on `CLOCK_BOOTTIME`). Sent only when there is no
    /// shared deadline page; a deadline never moves back.
    Lease { deadline_ns: u64 },
    /// The stop signal to the child's tree now, SIGKILL after the grace period (or at `K`).
    Stop,
    /// SIGKILL to the child's tree now.
    Kill,
}

/// Guard → supervisor.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum FromGuard {
    /// The guard's own pid: its first words.
    Guard { pid: i32 },
    /// The child runs, as process (and process group) `pid`.
    Started { pid: u32 },
    /// The command could not be started; `why` is for the log, on one line.
    Failed { why: String },
    /// The lease no longer held for the grace period when the child was about to start (not a
    /// failure of the command); `why` says what the guard saw.
    Refused { why: String },
    /// The child, its group and every other descendant are gone.
    Exited { exit: Exit, cause: Cause },
}

/// How a child ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Exit {
    Code(i32),
    Signal(i32),
    /// The guard died without reporting (it was killed); its child died with it.
    Unknown,
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::Code(c) => write!(f, "exit code {c}"),
            Exit::Signal(s) => {
                let name = nix::sys::signal::Signal::try_from(*s).map_or("?", |s| s.as_str());
                write!(f, "signal {s} ({name})")
            }
            Exit::Unknown => f.write_str("unknown status (guard lost)"),
        }
    }
}

/// Why the child ended, as the guard reports it in [`FromGuard::Exited`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Cause {
    /// It exited by itself.
    #[serde(rename = "self")]
    Itself,
    /// The supervisor asked for a stop.
    #[serde(rename = "stop")]
    Stop,
    /// The lease deadline came before a renewal.
    #[serde(rename = "lease")]
    Lease,
}

impl Cause {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Itself => "self",
            Cause::Stop => "stop",
            Cause::Lease => "lease",
        }
    }
}

/// One message as it goes on the socket: its JSON and a newline.
fn line(message: &impl Serialize) -> Vec<u8> {
    // Serializing these types cannot fail: no maps with non-string keys, no foreign `Serialize`.
    let mut line = serde_json::to_vec(message).unwrap_or_default();
    line.push(b'\n');
    line
}

/// One line (without its newline) as a message; `None` for a line this binary does not know.
fn parse<T: DeserializeOwned>(line: &str) -> Option<T> {
    serde_json::from_str(line).ok()
}

impl ToGuard {
    /// The message as a line for the socket.
    pub(crate) fn line(&self) -> Vec<u8> {
        line(self)
    }

    /// A line from the socket, without its newline.
    pub(crate) fn parse(line: &str) -> Option<ToGuard> {
        parse(line)
    }
}

impl FromGuard {
    /// The message as a line for the socket.
    pub(crate) fn line(&self) -> Vec<u8> {
        line(self)
    }

    /// A line from the socket, without its newline.
    pub(crate) fn parse(line: &str) -> Option<FromGuard> {
        parse(line)
    }
}

/// How much one read of the control socket takes. Small on purpose: the chunk is on the guard's
/// stack, and every page of it touched stays resident for the life of the guard, one per child
/// (64 KiB cost each guard 60 kB of private memory). Reading stays linear whatever its size.
const READ_CHUNK: usize = 4096;

/// The guard's reader of the control socket: what came down it and is not yet a whole line.
///
/// Linear in what it reads: each byte is looked at once when searching for the end of a line (the
/// search resumes where the last one stopped), and lines are taken off the front by moving an offset,
/// the buffer compacted once per read. A spec is as large as the worker's command and environment
/// (megabytes); rescanning the buffer on every 4 KiB read made it quadratic (15 s of CPU for a 15 MB
/// spec, long enough for the lease to run out before the child could start).
#[derive(Default)]
pub(crate) struct Inbox {
    buf: Vec<u8>,
    /// Where the next line begins in `buf`.
    start: usize,
    /// How far `buf` is known to hold no newline.
    scanned: usize,
    /// Bytes looked at for a newline, ever: what the reading costs (for the tests).
    #[cfg(test)]
    examined: usize,
}

impl Inbox {
    /// Reads one line from `control`; `Ok(None)` at end of file.
    ///
    /// # Errors
    /// The read's error (`WouldBlock` on a non-blocking socket with no whole line yet): what was
    /// read so far is kept for the next call.
    pub(crate) fn read_line(&mut self, control: &mut impl Read) -> io::Result<Option<String>> {
        loop {
            let from = self.scanned.max(self.start);
            let found = self.buf[from..].iter().position(|&b| b == b'\n');
            #[cfg(test)]
            {
                self.examined += found.map_or(self.buf.len() - from, |i| i + 1);
            }
            if let Some(i) = found {
                let line = &self.buf[self.start..from + i];
                let line = String::from_utf8_lossy(line).into_owned();
                self.start = from + i + 1;
                self.scanned = self.start;
                return Ok(Some(line));
            }
            // Compact: what is left of the buffer is the beginning of a line. A buffer a large spec
            // grew is given back once it is read: a guard lives as long as its child.
            self.buf.drain(..self.start);
            if self.buf.is_empty() {
                self.buf.shrink_to(READ_CHUNK);
            }
            self.start = 0;
            self.scanned = self.buf.len();
            let mut chunk = [0u8; READ_CHUNK];
            match control.read(&mut chunk) {
                Ok(0) => return Ok(None),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads one message; `Ok(None)` at end of file, `Ok(Some(None))` for a line this binary does
    /// not know (skipped).
    ///
    /// # Errors
    /// As [`Inbox::read_line`].
    pub(crate) fn recv(&mut self, control: &mut impl Read) -> io::Result<Option<Option<ToGuard>>> {
        Ok(self.read_line(control)?.map(|line| ToGuard::parse(&line)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that hands out at most `chunk` bytes per read, as a socket does.
    struct Trickle<'a> {
        data: &'a [u8],
        chunk: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.data.len().min(self.chunk).min(buf.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    fn spec(env: Vec<(String, String)>) -> Spec {
        Spec {
            worker: "w".into(),
            argv: vec!["/bin/x".into(), "a\nb".into()],
            env,
            working_dir: None,
            user: None,
            group: Some("g".into()),
            stop_signal: 15,
            grace_ms: 1000,
            deadline_ns: 42,
            nofile: Some(1024),
            shared_deadline: true,
        }
    }

    /// Every message reads back as it was written, each on one line, whatever its strings hold.
    #[test]
    fn messages_round_trip_on_one_line() {
        let down = [
            ToGuard::Spec(spec(vec![("K".into(), "v\n\"w\"".into())])),
            ToGuard::Lease { deadline_ns: 7 },
            ToGuard::Stop,
            ToGuard::Kill,
        ];
        for message in down {
            let line = message.line();
            assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
            let text = std::str::from_utf8(&line).unwrap().trim_end();
            assert_eq!(ToGuard::parse(text), Some(message));
        }
        let up = [
            FromGuard::Guard { pid: 12 },
            FromGuard::Started { pid: 13 },
            FromGuard::Failed {
                why: "spawn /bin/x: No such file or directory".into(),
            },
            FromGuard::Refused {
                why: "it ended".into(),
            },
            FromGuard::Exited {
                exit: Exit::Signal(9),
                cause: Cause::Lease,
            },
            FromGuard::Exited {
                exit: Exit::Code(3),
                cause: Cause::Itself,
            },
            FromGuard::Exited {
                exit: Exit::Unknown,
                cause: Cause::Stop,
            },
        ];
        for message in up {
            let line = message.line();
            assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
            let text = std::str::from_utf8(&line).unwrap().trim_end();
            assert_eq!(FromGuard::parse(text), Some(message));
        }
        assert_eq!(ToGuard::parse("lease 42"), None);
    }

    /// The wire format, as an operator reading `strace` output sees it.
    #[test]
    fn the_wire_format_is_plain_json() {
        assert_eq!(ToGuard::Stop.line(), b"\"stop\"\n");
        assert_eq!(
            ToGuard::Lease { deadline_ns: 7 }.line(),
            b"{\"lease\":{\"deadline_ns\":7}}\n"
        );
        let exited = FromGuard::Exited {
            exit: Exit::Signal(9),
            cause: Cause::Lease,
        };
        assert_eq!(
            String::from_utf8(exited.line()).unwrap(),
            "{\"exited\":{\"exit\":{\"signal\":9},\"cause\":\"lease\"}}\n"
        );
    }

    /// Issue 12, 5: a spec of megabytes (a large environment) is read in linear time: every byte is
    /// looked at once for the end of its line, however many reads it takes. Rescanning the buffer on
    /// each 4 KiB read looked at 8 MB × 2048 reads / 2, about 8 GB, here.
    #[test]
    fn a_large_spec_is_read_in_linear_time() {
        let big = || ToGuard::Spec(spec(vec![("BIG".into(), "x".repeat(8 << 20))]));
        let mut data = big().line();
        data.extend_from_slice(&ToGuard::Lease { deadline_ns: 42 }.line());
        data.extend_from_slice(&ToGuard::Stop.line());
        for chunk in [4096, 1 << 16, 1 << 20] {
            let mut reader = Trickle { data: &data, chunk };
            let mut inbox = Inbox::default();
            assert_eq!(inbox.recv(&mut reader).unwrap(), Some(Some(big())));
            assert_eq!(
                inbox.recv(&mut reader).unwrap(),
                Some(Some(ToGuard::Lease { deadline_ns: 42 }))
            );
            assert_eq!(inbox.recv(&mut reader).unwrap(), Some(Some(ToGuard::Stop)));
            assert_eq!(inbox.recv(&mut reader).unwrap(), None);
            assert!(
                inbox.examined <= data.len(),
                "{} bytes examined for {} read, in chunks of {chunk}",
                inbox.examined,
                data.len()
            );
        }
        // Many short lines in one read: each is taken off the front without moving the rest.
        let lines: Vec<u8> = (0..100_000)
            .flat_map(|i| ToGuard::Lease { deadline_ns: i }.line())
            .collect();
        let mut reader = Trickle {
            data: &lines,
            chunk: 1 << 20,
        };
        let mut inbox = Inbox::default();
        for i in 0..100_000 {
            assert_eq!(
                inbox.recv(&mut reader).unwrap(),
                Some(Some(ToGuard::Lease { deadline_ns: i }))
            );
        }
        assert!(inbox.examined <= lines.len());
    }
}
