//! Problems in a config file, and where they are.
//!
//! The walker and the rules record each problem with the byte offset of the key or value it is
//! about ([`Problems`]); at the end the offsets become 1-based `line:column` (columns count
//! characters, as editors do) and the problems are sorted by place, so an operator reads them in
//! file order, however the checks that found them were ordered.

use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};

/// All the problems of one config file, each with its place.
///
/// Displayed one problem per line, `<path>:<line>:<column>: <message>`, or `<path>: <message>`
/// for a problem of the file as a whole.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub(super) path: PathBuf,
    pub(super) problems: Vec<Problem>,
}

/// One problem in a config file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Where in the file; `None` when it is about the file as a whole.
    pub location: Option<Location>,
    /// Short and lowercase; names the worker when the problem is inside a `[[worker]]`.
    pub message: String,
}

/// A 1-based line and column (in characters) in a config file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Location {
    pub line: usize,
    pub column: usize,
}

impl ConfigError {
    /// The file the problems are in.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The problems, in file order; never empty.
    #[must_use]
    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }

    /// One problem about the file as a whole (it cannot be read, it is empty...).
    pub(super) fn whole_file(path: &Path, message: String) -> Self {
        Self {
            path: path.to_path_buf(),
            problems: vec![Problem {
                location: None,
                message,
            }],
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path.display();
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            match problem.location {
                Some(Location { line, column }) => {
                    write!(f, "{path}:{line}:{column}: {}", problem.message)?;
                }
                None => write!(f, "{path}: {}", problem.message)?,
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// The problems found so far in one text, each at a byte offset (or none: the file as a whole).
pub(super) struct Problems<'t> {
    text: &'t str,
    list: Vec<(Option<usize>, String)>,
}

impl<'t> Problems<'t> {
    pub(super) fn new(text: &'t str) -> Self {
        Self {
            text,
            list: Vec::new(),
        }
    }

    /// A problem about what is written at byte `at`.
    pub(super) fn at(&mut self, at: usize, message: String) {
        self.list.push((Some(at), message));
    }

    /// A problem of the file as a whole.
    pub(super) fn whole(&mut self, message: String) {
        self.list.push((None, message));
    }

    /// How many so far: a reader compares it before and after to know whether it found any.
    pub(super) fn count(&self) -> usize {
        self.list.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The line of byte `at`, to name another place in a message.
    pub(super) fn line_of(&self, at: usize) -> usize {
        locate(self.text, at).line
    }

    /// A TOML syntax error; a duplicate key is named, since the parser's message does not.
    pub(super) fn syntax(&mut self, err: &toml::de::Error) {
        let mut message = format!("syntax error: {}", err.message());
        let span = err.span();
        if message.ends_with("duplicate key") {
            let key = span.clone().and_then(|s| self.text.get(s));
            if let Some(key) = key.filter(|k| !k.is_empty() && !k.contains('\n')) {
                let _ = write!(message, " `{key}`");
            }
        }
        self.list.push((span.map(|s| s.start), message));
    }

    /// The problems in file order, each once, with their places.
    pub(super) fn into_error(mut self, path: &Path) -> ConfigError {
        self.list.sort();
        self.list.dedup();
        let problems = self
            .list
            .into_iter()
            .map(|(at, message)| Problem {
                location: at.map(|at| locate(self.text, at)),
                message,
            })
            .collect();
        ConfigError {
            path: path.to_path_buf(),
            problems,
        }
    }
}

/// A 1-based line and column (in characters) for a byte offset into `text`.
pub(super) fn locate(text: &str, offset: usize) -> Location {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    Location {
        line: before.matches('\n').count() + 1,
        column: before[line_start..].chars().count() + 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_count_characters_not_bytes() {
        let location = |offset| locate("ab\n\u{e9}\u{e9}x\n", offset);
        assert_eq!(location(0), Location { line: 1, column: 1 });
        assert_eq!(location(2), Location { line: 1, column: 3 });
        assert_eq!(location(3), Location { line: 2, column: 1 });
        assert_eq!(location(7), Location { line: 2, column: 3 });
        // Inside a character, or past the end: still a place, never a panic.
        assert_eq!(location(4), Location { line: 2, column: 1 });
        assert_eq!(location(99), Location { line: 3, column: 1 });
    }
}
