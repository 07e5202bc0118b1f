//! The daemon's log: stderr, written by a thread of its own through a bounded queue that never makes the
//! event loop wait.
//!
//! # Why
//!
//! The runtime is single-threaded: the lease's renewals, ZooKeeper I/O and the reading of every child's
//! output share one thread. A blocking write to stderr when nobody reads it (a stuck journald,
//! `run … 2>&1 | slow-consumer`) would stop all of it once the pipe is full, and the guards would stop
//! every child of the node at the lease deadline. So every log line (the daemon's own and its children's
//! output) goes into a queue of at most [`QUEUE_LINES`] lines (tracing-appender's non-blocking writer,
//! lossy), which a writer thread empties into stderr; a line that finds the queue full is dropped at once.
//! The queue bounds memory at about a megabyte of typical lines (64 MiB if every line had the 16 KiB a
//! line of child output is cut at).
//!
//! Nothing else writes to stderr while the daemon runs: a panic is logged through the same queue
//! ([`init`] installs the hook), and `main` prints its last error only after [`Logs::close`] has
//! written the queue out, for at most [`FLUSH_TIMEOUT`] each, so that a pipe nobody reads cannot hold
//! the process after its work is done either.
//!
//! # Escaping
//!
//! A line of the log is one line: nothing a worker prints can move the cursor back over the front of
//! its line or start a new one, and so pass off its words as another worker's or the daemon's. In
//! the text format, every control character that survives formatting is written escaped, whatever
//! field it is in: C0 controls and DEL as `\xNN` (`\r` is `\x0d`, NUL `\x00`), and C1 controls (NEL,
//! U+0085, among them) and the Unicode line and paragraph separators (U+2028, U+2029) as `\u{NNNN}`: the
//! style tracing-subscriber uses for the ESC, BEL, BS, FF, DEL and C1 characters it already escapes
//! in messages (`\x1b`, `\u{85}`). ESC is left as it is only when the log goes to a terminal, where
//! the formatter colours the line with it (a child's ESC is escaped all the same). A backslash is not
//! escaped, so the escaped form is for reading, not for decoding. Tab is the one control left as it
//! is: it only moves forward, so it cannot hide what comes before it, and the stack traces of Java
//! and Go indent with it. A line of a child's output shows
//! its `worker` and `stream` fields before the message, not after it as other lines do: nothing the
//! child prints comes before them. The JSON format escapes C0 controls already (serde_json); DEL, C1
//! and the Unicode separators, which it leaves, are written as JSON escapes (`\u2028`), which mean
//! the same. The escaping runs on the writer thread, not on the event loop.
//!
//! # Accounting
//!
//! A line is *dropped* when the queue is full or when writing it fails (the reader is gone). The count is
//! `zk_supervise_log_lines_dropped_total` on `/metrics` ([`zk_supervise::metrics::count_dropped_log_lines`]),
//! and a monitor thread logs, once lines reach stderr again and none has been dropped for a second,
//! `dropped N log lines in the last Ts: stderr was not read`, `T` running from the last second without
//! a drop before the first one. While lines are dropped and written by turns (a reader slower than the
//! log), the same line comes once a minute.

use std::io::{self, Write};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};

/// The most log lines waiting for stderr.
pub const QUEUE_LINES: usize = 4096;

/// How long [`Logs::close`] waits for the queue to be written out, and then for the last message.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// How often the monitor looks at the counts.
const TICK: Duration = Duration::from_secs(1);

/// How often the summary comes while dropping goes on but some lines get through.
const REPORT_EVERY: Duration = Duration::from_secs(60);

/// The log format (`--log-format`).
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// The installed log writer. [`Logs::close`] it before the process exits.
pub struct Logs {
    guard: WorkerGuard,
}

/// Installs the global subscriber writing to stderr through the queue, the panic hook that logs
/// through it, and the monitor of dropped lines.
pub fn init(format: Format) -> Logs {
    use tracing_subscriber::EnvFilter;
    let counts = Arc::new(Counts::default());
    let ansi = io::IsTerminal::is_terminal(&io::stderr());
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(QUEUE_LINES)
        .thread_name("log-writer")
        .finish(Stderr::new(counts.clone(), escaping(format, ansi)));
    let full = writer.error_counter();
    let failed = counts.clone();
    let dropped = move || {
        u64::try_from(full.dropped_lines())
            .unwrap_or(u64::MAX)
            .saturating_add(failed.failed.load(Ordering::Relaxed))
    };
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,zookeeper_client=warn"));
    let builder = tracing_subscriber::fmt()
        .with_ansi(ansi)
        .with_env_filter(filter)
        .with_writer(writer);
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let text = tracing_subscriber::fmt::format();
    match (format, journald) {
        (Format::Json, _) => builder.json().init(),
        (Format::Text, true) => builder
            .fmt_fields(TextFields)
            .event_format(TextEvents(text.without_time()))
            .init(),
        (Format::Text, false) => builder
            .fmt_fields(TextFields)
            .event_format(TextEvents(text))
            .init(),
    }
    std::panic::set_hook(Box::new(|info| {
        let thread = thread::current();
        tracing::error!(thread = thread.name().unwrap_or("?"), "{info}");
    }));
    let metric = dropped.clone();
    zk_supervise::metrics::count_dropped_log_lines(metric);
    let monitor = thread::Builder::new()
        .name("log-drops".into())
        .spawn(move || monitor(&dropped, &|| counts.written.load(Ordering::Relaxed)));
    if let Err(e) = monitor {
        tracing::warn!(error = %e, "cannot start the monitor of dropped log lines");
    }
    Logs { guard }
}

impl Logs {
    /// Writes out the queued lines (waiting at most [`FLUSH_TIMEOUT`]), then prints `message`, if any, on
    /// stderr (waiting at most as long again). Past either wait the process may exit without them.
    pub fn close(self, message: Option<String>) {
        let guard = self.guard;
        // Dropping the guard waits (about a second) for the writer thread, but prints on stdout, blocking,
        // if the queue is full: a thread of its own keeps that from holding the exit.
        within(FLUSH_TIMEOUT, move || drop(guard));
        if let Some(message) = message {
            within(FLUSH_TIMEOUT, move || eprintln!("{message}"));
        }
    }
}

/// Runs `f` on a thread of its own and waits at most `timeout` for it.
fn within(timeout: Duration, f: impl FnOnce() + Send + 'static) {
    let (done, finished) = mpsc::channel();
    let spawned = thread::Builder::new().spawn(move || {
        f();
        let _ = done.send(());
    });
    if spawned.is_ok() {
        let _ = finished.recv_timeout(timeout);
    }
}

/// Lines written to stderr and lines that could not be.
#[derive(Default)]
struct Counts {
    written: AtomicU64,
    failed: AtomicU64,
}

/// The target of the events that carry a line of a child's output (`src/process/output.rs`).
const CHILD_TARGET: &str = "zk_supervise::child";

thread_local! {
    /// Whether the event being formatted on this thread carries a child's output.
    static CHILD_LINE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The text format, which tells [`TextFields`] which events carry a child's output.
struct TextEvents<F>(F);

impl<S, N, F> tracing_subscriber::fmt::FormatEvent<S, N> for TextEvents<F>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
    F: tracing_subscriber::fmt::FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        CHILD_LINE.set(event.metadata().target() == CHILD_TARGET);
        let result = self.0.format_event(ctx, writer, event);
        CHILD_LINE.set(false);
        result
    }
}

/// The text format's fields: tracing-subscriber's, except for a line of a child's output, whose
/// fields (`worker`, `stream`) come before the message, so that whatever the child prints cannot
/// come before them and pass for them.
struct TextFields;

impl<'w> tracing_subscriber::fmt::FormatFields<'w> for TextFields {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(
        &self,
        mut writer: tracing_subscriber::fmt::format::Writer<'w>,
        fields: R,
    ) -> std::fmt::Result {
        if !CHILD_LINE.get() {
            return tracing_subscriber::fmt::format::DefaultFields::new()
                .format_fields(writer, fields);
        }
        let mut line = ChildLine::default();
        fields.record(&mut line);
        for (name, value) in &line.fields {
            write!(writer, "{name}={value} ")?;
        }
        // The formatter would escape ESC and C1 in a message; this one escapes everything.
        writer.write_str(&escape_text(&line.message, false))
    }
}

/// The fields of a line of a child's output, each as tracing-subscriber prints it, and the message.
#[derive(Default)]
struct ChildLine {
    fields: Vec<(&'static str, String)>,
    message: String,
}

impl tracing::field::Visit for ChildLine {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        } else {
            self.fields.push((field.name(), format!("{value:?}")));
        }
    }
}

/// What the writer escapes in each line (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Escaping {
    /// The text format; `ansi`: the formatter colours the line with ESC sequences of its own.
    Text {
        ansi: bool,
    },
    Json,
}

fn escaping(format: Format, ansi: bool) -> Escaping {
    match format {
        Format::Text => Escaping::Text { ansi },
        Format::Json => Escaping::Json,
    }
}

/// `line` (one formatted event, ending with its newline) as it may be written: see the module docs.
/// Borrowed when there is nothing to escape, which is nearly always.
fn escape(line: &[u8], escaping: Escaping) -> std::borrow::Cow<'_, [u8]> {
    use std::fmt::Write as _;
    let (body, end) = match line.strip_suffix(b"\n") {
        Some(body) => (body, &b"\n"[..]),
        None => (line, &b""[..]),
    };
    if body.iter().all(|&b| (0x20..0x7f).contains(&b)) {
        return std::borrow::Cow::Borrowed(line);
    }
    let text = String::from_utf8_lossy(body);
    let mut out = match escaping {
        Escaping::Text { ansi } => escape_text(&text, ansi),
        Escaping::Json => {
            // What serde_json leaves raw: DEL, C1 (NEL among them) and the Unicode separators.
            let special = |c: char| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}');
            let mut out = String::with_capacity(text.len() + 16);
            for c in text.chars() {
                if special(c) {
                    let _ = write!(out, "\\u{:04x}", u32::from(c));
                } else {
                    out.push(c);
                }
            }
            out
        }
    };
    if out.as_bytes() == body {
        return std::borrow::Cow::Borrowed(line);
    }
    out.push_str(std::str::from_utf8(end).unwrap_or_default());
    std::borrow::Cow::Owned(out.into_bytes())
}

/// `text` with its control characters and line separators escaped (the text format: see the module
/// docs); `keep_esc`: ESC stays (the formatter's colours).
fn escape_text(text: &str, keep_esc: bool) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if (keep_esc && c == '\x1b') || c == '\t' {
            out.push(c);
        } else if c.is_ascii_control() {
            let _ = write!(out, "\\x{:02x}", u32::from(c));
        } else if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    out
}

/// Stderr as the writer thread sees it: a descriptor of its own (so it never holds the lock of
/// `std::io::stderr`, which anything else could then wait for), counting each line written or failed,
/// escaping what a line must not carry ([`escape`]).
struct Stderr {
    out: Box<dyn Write + Send>,
    counts: Arc<Counts>,
    escaping: Escaping,
}

impl Stderr {
    fn new(counts: Arc<Counts>, escaping: Escaping) -> Stderr {
        let out: Box<dyn Write + Send> = match io::stderr().as_fd().try_clone_to_owned() {
            Ok(fd) => Box::new(std::fs::File::from(fd)),
            Err(_) => Box::new(io::stderr()),
        };
        Stderr {
            out,
            counts,
            escaping,
        }
    }
}

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.write(buf)
    }

    /// The writer thread hands over one line per call.
    fn write_all(&mut self, line: &[u8]) -> io::Result<()> {
        let result = self.out.write_all(&escape(line, self.escaping));
        let count = if result.is_ok() {
            &self.counts.written
        } else {
            &self.counts.failed
        };
        count.fetch_add(1, Ordering::Relaxed);
        result
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Logs the summary of each episode of dropped lines, for ever.
fn monitor(dropped: &dyn Fn() -> u64, written: &dyn Fn() -> u64) {
    let mut watch = DropWatch::new(Instant::now(), dropped(), written());
    loop {
        thread::sleep(TICK);
        if let Some((lines, over)) = watch.observe(Instant::now(), dropped(), written()) {
            tracing::warn!(
                "dropped {lines} log lines in the last {}s: stderr was not read",
                over.as_secs().max(1)
            );
        }
    }
}

/// Follows the counts of dropped and written lines, and says when to sum up an episode of drops.
#[derive(Debug)]
struct DropWatch {
    /// The counts and the time of the last look.
    dropped: u64,
    written: u64,
    at: Instant,
    /// The episode under way: since when (the last look without a new drop), and the count before it.
    episode: Option<(Instant, u64)>,
}

impl DropWatch {
    fn new(now: Instant, dropped: u64, written: u64) -> DropWatch {
        DropWatch {
            dropped,
            written,
            at: now,
            episode: None,
        }
    }

    /// Takes the counts as of `now`; returns the lines dropped in an episode and its length when it is
    /// time to say so: lines get through again, and either none was dropped since the last look or the
    /// episode has lasted [`REPORT_EVERY`] (then a new one begins).
    fn observe(&mut self, now: Instant, dropped: u64, written: u64) -> Option<(u64, Duration)> {
        let new_drops = dropped > self.dropped;
        let flowing = written > self.written;
        if new_drops && self.episode.is_none() {
            self.episode = Some((self.at, self.dropped));
        }
        let mut summary = None;
        if let Some((since, before)) = self.episode {
            let over = now.saturating_duration_since(since);
            if flowing && (!new_drops || over >= REPORT_EVERY) {
                summary = Some((dropped - before, over));
                self.episode = new_drops.then_some((now, dropped));
            }
        }
        self.dropped = dropped;
        self.written = written;
        self.at = now;
        summary
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn an_episode_is_summed_up_once_lines_get_through_and_none_is_dropped() {
        let t0 = Instant::now();
        let mut watch = DropWatch::new(t0, 0, 100);
        // Lines flow, nothing dropped: nothing to say.
        assert_eq!(watch.observe(t0 + secs(1), 0, 200), None);
        // Stderr blocks: drops, nothing written.
        assert_eq!(watch.observe(t0 + secs(2), 50, 200), None);
        assert_eq!(watch.observe(t0 + secs(3), 500, 200), None);
        // Nobody reads and nobody logs: no drop, nothing written, still nothing to say (it could not be
        // written anyway).
        assert_eq!(watch.observe(t0 + secs(4), 500, 200), None);
        assert_eq!(watch.observe(t0 + secs(30), 900, 200), None);
        // Read again: the queue drains while the last drops happen, then no more drops.
        assert_eq!(watch.observe(t0 + secs(31), 1000, 5000), None);
        assert_eq!(
            watch.observe(t0 + secs(32), 1000, 6000),
            Some((1000, secs(31)))
        );
        // Over: nothing more.
        assert_eq!(watch.observe(t0 + secs(33), 1000, 7000), None);
        // The next episode counts from its own start.
        assert_eq!(watch.observe(t0 + secs(34), 1003, 7000), None);
        assert_eq!(watch.observe(t0 + secs(35), 1003, 7001), Some((3, secs(2))));
    }

    fn text(line: &str) -> String {
        String::from_utf8(escape(line.as_bytes(), Escaping::Text { ansi: false }).into_owned())
            .expect("UTF-8")
    }

    #[test]
    fn control_characters_and_line_separators_are_escaped_in_text() {
        assert_eq!(
            text("INFO zk_supervise::child: \rWORKER other: forged\0x worker=w\n"),
            "INFO zk_supervise::child: \\x0dWORKER other: forged\\x00x worker=w\n"
        );
        assert_eq!(text("a\tb\x01c\x7fd\x1be\n"), "a\tb\\x01c\\x7fd\\x1be\n");
        assert_eq!(
            text("a\u{85}b\u{2028}c\u{2029}d\n"),
            "a\\u{85}b\\u{2028}c\\u{2029}d\n"
        );
        // A newline inside one event (a multi-line panic message) stays on the event's line.
        assert_eq!(text("one\ntwo\n"), "one\\x0atwo\n");
        // Nothing else changes; the line's own newline stays.
        assert_eq!(text("plain é ü ✓ \\x00 line\n"), "plain é ü ✓ \\x00 line\n");
        assert!(matches!(
            escape(b"plain\n", Escaping::Text { ansi: false }),
            std::borrow::Cow::Borrowed(_)
        ));
    }

    #[test]
    fn a_terminal_keeps_the_formatter_colours() {
        let line = "\x1b[32m INFO\x1b[0m x\ry\n";
        let out = escape(line.as_bytes(), Escaping::Text { ansi: true });
        assert_eq!(
            String::from_utf8_lossy(&out),
            "\x1b[32m INFO\x1b[0m x\\x0dy\n"
        );
    }

    /// The lines the text format writes for the events `emit` sends.
    fn formatted(emit: impl FnOnce()) -> String {
        #[derive(Clone, Default)]
        struct Buffer(Arc<std::sync::Mutex<Vec<u8>>>);
        impl Write for Buffer {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                let mut lines = self.0.lock().expect("not poisoned");
                lines.extend_from_slice(&escape(buf, Escaping::Text { ansi: false }));
                Ok(buf.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let buffer = Buffer::default();
        let out = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || out.clone())
            .fmt_fields(TextFields)
            .event_format(TextEvents(tracing_subscriber::fmt::format().without_time()))
            .finish();
        tracing::subscriber::with_default(subscriber, emit);
        let bytes = buffer.0.lock().expect("not poisoned").clone();
        String::from_utf8(bytes).expect("UTF-8")
    }

    #[test]
    fn a_child_line_names_its_worker_before_what_the_child_printed() {
        let printed = "\rWORKER other: forged\0x worker=other \u{1b}[2K\u{9b}";
        let lines = formatted(|| {
            tracing::info!(target: "zk_supervise::child", worker = %"w", stream = "stdout", "{printed}");
            tracing::info!(target: "zk_supervise::worker", worker = "w", pid = 1, "started");
        });
        assert_eq!(
            lines,
            " INFO zk_supervise::child: worker=w stream=\"stdout\" \\x0dWORKER other: forged\\x00x \
             worker=other \\x1b[2K\\u{9b}\n INFO zk_supervise::worker: started worker=\"w\" pid=1\n"
        );
    }

    #[test]
    fn json_lines_stay_json_with_the_same_meaning() {
        let value = serde_json::json!({"fields": {"message": "\rWORKER x\0\u{7f}\u{85}\u{2028}\u{2029}\t"}});
        let line = format!("{value}\n");
        let out = escape(line.as_bytes(), Escaping::Json);
        let out = std::str::from_utf8(&out).expect("UTF-8");
        assert_eq!(out.lines().count(), 1, "{out}");
        assert!(
            !out.trim_end()
                .contains(|c: char| c.is_control() || c == '\u{2028}' || c == '\u{2029}'),
            "{out}"
        );
        let back: serde_json::Value = serde_json::from_str(out).expect("JSON");
        assert_eq!(back, value);
    }

    #[test]
    fn a_reader_slower_than_the_log_gets_a_summary_every_minute() {
        let t0 = Instant::now();
        let mut watch = DropWatch::new(t0, 0, 0);
        let mut reports = Vec::new();
        for s in 1..=150 {
            if let Some(r) = watch.observe(t0 + secs(s), s * 10, s * 100) {
                reports.push(r);
            }
        }
        assert_eq!(reports, [(600, secs(60)), (600, secs(60))]);
    }
}
