//! A child's output, logged line by line under the target `zk_supervise::child`.
//!
//! Output is read from the pipes directly rather than through a line-stream crate: a child may print
//! invalid UTF-8 (decoded lossily here, never an error) and arbitrarily long lines (cut into pieces of
//! at most [`MAX_LINE`] bytes, so one line cannot exhaust memory), and a grandchild may hold the pipes
//! open after the child exits (the reader simply runs until end-of-file; the child's exit is known
//! from the guard, not from the pipes).

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, BufReader};

/// The longest piece of child output logged as one event.
pub const MAX_LINE: usize = 16 * 1024;

/// Logs each line of a child's stream as an event with the fields `worker` and `stream`.
pub(super) async fn log_output(worker: String, stream: &'static str, pipe: impl AsyncRead + Unpin) {
    // A small buffer: a thousand running workers hold two readers each; long lines accumulate in `line`.
    let mut reader = BufReader::with_capacity(1024, pipe);
    let mut line = Vec::new();
    loop {
        line.clear();
        match read_line_capped(&mut reader, &mut line, MAX_LINE).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                while line.last().is_some_and(|&b| b == b'\n' || b == b'\r') {
                    line.pop();
                }
                tracing::info!(target: "zk_supervise::child", worker = %worker, stream, "{}", String::from_utf8_lossy(&line));
            }
        }
    }
}

/// Reads up to and including a newline, or `cap` bytes, whichever comes first. Returns the number of
/// bytes read (0 at end of file).
async fn read_line_capped<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    out: &mut Vec<u8>,
    cap: usize,
) -> std::io::Result<usize> {
    loop {
        let buf = reader.fill_buf().await?;
        if buf.is_empty() {
            return Ok(out.len());
        }
        let room = cap.saturating_sub(out.len());
        let window = &buf[..buf.len().min(room)];
        if let Some(i) = window.iter().position(|&b| b == b'\n') {
            out.extend_from_slice(&window[..=i]);
            reader.consume(i + 1);
            return Ok(out.len());
        }
        let n = window.len();
        out.extend_from_slice(window);
        reader.consume(n);
        if out.len() >= cap {
            return Ok(out.len());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn long_lines_are_cut_and_invalid_utf8_is_kept() {
        let mut data = vec![b'a'; 40];
        data.push(b'\n');
        data.extend_from_slice(b"\xff\xfeok\n");
        data.extend_from_slice(b"tail");
        let mut reader = BufReader::new(&data[..]);
        let mut line = Vec::new();
        let mut pieces = Vec::new();
        loop {
            line.clear();
            if read_line_capped(&mut reader, &mut line, 16).await.unwrap() == 0 {
                break;
            }
            pieces.push(line.clone());
        }
        assert_eq!(pieces.len(), 5, "{pieces:?}");
        assert_eq!(pieces[0].len(), 16);
        assert_eq!(pieces[2], b"aaaaaaaa\n");
        assert_eq!(String::from_utf8_lossy(&pieces[3]), "\u{fffd}\u{fffd}ok\n");
        assert_eq!(pieces[4], b"tail");
    }
}
