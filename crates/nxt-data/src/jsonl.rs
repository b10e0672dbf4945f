//! Reading JSON Lines files (plain or gzip-compressed) with file/line error reporting.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use serde::de::DeserializeOwned;

use crate::error::{io_err, malformed, Result};

/// Open a file, transparently decompressing it when its name ends in `.gz`.
pub fn open_maybe_gz(path: &Path) -> Result<Box<dyn BufRead>> {
    let file = File::open(path).map_err(io_err(path))?;
    if path.extension().is_some_and(|e| e == "gz") {
        Ok(Box::new(BufReader::new(flate2::read::MultiGzDecoder::new(
            file,
        ))))
    } else {
        Ok(Box::new(BufReader::new(file)))
    }
}

/// Read a whole file (decompressing `.gz`) into a string.
pub fn read_to_string_maybe_gz(path: &Path) -> Result<String> {
    let mut reader = open_maybe_gz(path)?;
    let mut text = String::new();
    reader.read_to_string(&mut text).map_err(io_err(path))?;
    Ok(text)
}

/// The non-empty lines of a JSONL file with their 1-based line numbers.
pub fn read_lines(path: &Path) -> Result<Vec<(usize, String)>> {
    let reader = open_maybe_gz(path)?;
    let mut out = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line = line.map_err(|e| malformed(path, i + 1, format!("unreadable line: {e}")))?;
        if line.trim().is_empty() {
            continue;
        }
        out.push((i + 1, line));
    }
    Ok(out)
}

/// Parse every non-empty line of a JSONL file as `T`.
pub fn read_jsonl<T: DeserializeOwned>(path: &Path) -> Result<Vec<(usize, T)>> {
    read_lines(path)?
        .into_iter()
        .map(|(n, line)| {
            serde_json::from_str::<T>(&line)
                .map(|v| (n, v))
                .map_err(|e| malformed(path, n, format!("bad record: {e}")))
        })
        .collect()
}

/// The complete records of a resumable JSONL output: a file that a run appends one JSON object
/// per line to and that a kill may leave with a cut-off last line.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResumedOutput {
    /// Each complete, non-blank line with its 1-based line number.
    pub records: Vec<(usize, serde_json::Value)>,
    /// Bytes of an unfinished last line that were cut off the file (0 when none).
    pub dropped_bytes: usize,
}

/// Read a resumable JSONL output (see [`ResumedOutput`]): a missing file has no records; an
/// unfinished last line (no newline) is cut off the file, so that appending starts on a clean
/// line; a complete line that is not JSON is an error naming the file and line.
pub fn read_resumable(path: &Path) -> Result<ResumedOutput> {
    let mut data = match std::fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ResumedOutput::default()),
        Err(e) => return Err(io_err(path)(e)),
    };
    let complete = data.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
    let dropped_bytes = data.len() - complete;
    if dropped_bytes > 0 {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(io_err(path))?;
        f.set_len(complete as u64).map_err(io_err(path))?;
        data.truncate(complete);
    }
    let mut records = Vec::new();
    for (i, line) in data.split(|&b| b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let v: serde_json::Value = serde_json::from_slice(line)
            .map_err(|e| malformed(path, i + 1, format!("not a JSON output line: {e}")))?;
        records.push((i + 1, v));
    }
    Ok(ResumedOutput {
        records,
        dropped_bytes,
    })
}

/// Split one JSON object into its top-level fields, keeping each value's raw text.
///
/// Unlike `serde_json`, this accepts the non-standard tokens `NaN`, `Infinity` and
/// `-Infinity` that Python's `json` module writes (EvalPlus' MBPP+ inputs contain them).
/// Returns `(key, raw value text)` pairs in order.
pub fn split_object(text: &str) -> std::result::Result<Vec<(String, String)>, String> {
    let b = text.as_bytes();
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return Err("expected a JSON object".into());
    }
    i = skip_ws(b, i + 1);
    let mut fields = Vec::new();
    if b.get(i) == Some(&b'}') {
        return Ok(fields);
    }
    loop {
        if b.get(i) != Some(&b'"') {
            return Err(format!("expected a field name at byte {i}"));
        }
        let end = skip_string(b, i)?;
        let key: String =
            serde_json::from_str(&text[i..end]).map_err(|e| format!("bad field name: {e}"))?;
        i = skip_ws(b, end);
        if b.get(i) != Some(&b':') {
            return Err(format!("expected `:` after field `{key}`"));
        }
        i = skip_ws(b, i + 1);
        let vend = skip_value(b, i)?;
        fields.push((key, text[i..vend].trim_end().to_string()));
        i = skip_ws(b, vend);
        match b.get(i) {
            Some(b',') => i = skip_ws(b, i + 1),
            Some(b'}') => {
                if skip_ws(b, i + 1) != b.len() {
                    return Err("trailing characters after the object".into());
                }
                return Ok(fields);
            }
            _ => return Err(format!("expected `,` or `}}` at byte {i}")),
        }
    }
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\n' | b'\r') {
        i += 1;
    }
    i
}

fn skip_string(b: &[u8], start: usize) -> std::result::Result<usize, String> {
    let mut i = start + 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return Ok(i + 1),
            _ => i += 1,
        }
    }
    Err(format!("unterminated string starting at byte {start}"))
}

fn skip_value(b: &[u8], start: usize) -> std::result::Result<usize, String> {
    let mut i = start;
    let mut depth = 0usize;
    loop {
        let Some(&c) = b.get(i) else {
            return Err(format!("unterminated value starting at byte {start}"));
        };
        match c {
            b'"' => i = skip_string(b, i)?,
            b'[' | b'{' => {
                depth += 1;
                i += 1;
            }
            b']' | b'}' => {
                if depth == 0 {
                    return if i > start {
                        Ok(i)
                    } else {
                        Err(format!("unexpected `{}` at byte {i}", c as char))
                    };
                }
                depth -= 1;
                i += 1;
            }
            b',' if depth == 0 => {
                return if i > start {
                    Ok(i)
                } else {
                    Err(format!("missing value at byte {i}"))
                };
            }
            _ => i += 1,
        }
        if depth == 0 && i > start && (c == b'"' || c == b']' || c == b'}') {
            return Ok(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_object_keeps_raw_values_and_nonstandard_tokens() {
        let f = split_object(
            r#"{"a": [1, [2, "x]"], -Infinity], "b": "s\"}", "c": 3.5, "d": {"e": NaN}}"#,
        )
        .unwrap();
        assert_eq!(f.len(), 4);
        assert_eq!(f[0], ("a".into(), r#"[1, [2, "x]"], -Infinity]"#.into()));
        assert_eq!(f[1], ("b".into(), r#""s\"}""#.into()));
        assert_eq!(f[2], ("c".into(), "3.5".into()));
        assert_eq!(f[3], ("d".into(), r#"{"e": NaN}"#.into()));
    }

    #[test]
    fn split_object_rejects_garbage() {
        assert!(split_object("[1]").is_err());
        assert!(split_object(r#"{"a": [1, 2}"#).is_err());
        assert!(split_object(r#"{"a" 1}"#).is_err());
        assert!(split_object(r#"{"a": 1} x"#).is_err());
        assert!(split_object(r#"{"a": "unterminated}"#).is_err());
    }
}
