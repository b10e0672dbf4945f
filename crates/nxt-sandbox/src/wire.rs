//! The wire between the pool and its Python processes: length-prefixed frames (JSON header +
//! raw blob) to and from workers and compilers, job frames with their fixed binary header, the
//! authenticated records a job process writes, and bounded output captures.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::process::{ChildStdin, ChildStdout};
use std::time::Instant;

use serde::Deserialize;

use crate::{SandboxError, TestOutcome};

/// Bytes of the per-attempt secret that authenticates result records.
pub(crate) const NONCE_LEN: usize = 16;

/// What a job process is asked to do, in the fixed binary header of its frame (the harness
/// reads it with `struct`, which costs the forked process far less than parsing JSON).
#[derive(Debug, Clone, Copy)]
pub(crate) struct JobHeader {
    /// 0 probe, 1 tests, 2 driver.
    pub kind: u8,
    /// First test to run.
    pub start: u32,
    /// Setup code runs after the program.
    pub setup_after: bool,
    /// Strict comparison in asserts.
    pub strict: bool,
    /// Address-space limit in bytes.
    pub memory: u64,
    /// Wall-clock limit of the job in seconds (the CPU limit is derived from it).
    pub job_timeout: f64,
    /// Largest file the job may write.
    pub file_bytes: u64,
    /// Most processes the job's uid may run.
    pub processes: u32,
    /// Most bytes a driver may emit.
    pub max_emit: u64,
}

impl JobHeader {
    /// Kind of a probe job.
    pub const PROBE: u8 = 0;
    /// Kind of a test job.
    pub const TESTS: u8 = 1;
    /// Kind of a driver job.
    pub const DRIVER: u8 = 2;

    /// Big-endian layout `>16sBI??QdQIQ` (the harness's `JOB_HEADER`), secret first.
    pub(crate) fn encode(&self, nonce: &[u8; NONCE_LEN]) -> Vec<u8> {
        let mut b = Vec::with_capacity(59);
        b.extend_from_slice(nonce);
        b.push(self.kind);
        b.extend_from_slice(&self.start.to_be_bytes());
        b.push(u8::from(self.setup_after));
        b.push(u8::from(self.strict));
        b.extend_from_slice(&self.memory.to_be_bytes());
        b.extend_from_slice(&self.job_timeout.to_be_bytes());
        b.extend_from_slice(&self.file_bytes.to_be_bytes());
        b.extend_from_slice(&self.processes.to_be_bytes());
        b.extend_from_slice(&self.max_emit.to_be_bytes());
        b
    }
}

/// Bounded capture of one stream in one phase.
#[derive(Debug, Default, Clone)]
pub(crate) struct Capture {
    data: Vec<u8>,
    cap: usize,
    /// True when bytes beyond the cap were dropped.
    pub truncated: bool,
}

impl Capture {
    pub(crate) fn new(cap: usize) -> Capture {
        Capture {
            data: Vec::new(),
            cap,
            truncated: false,
        }
    }

    pub(crate) fn add(&mut self, bytes: &[u8]) {
        let room = self.cap.saturating_sub(self.data.len());
        let take = room.min(bytes.len());
        self.data.extend_from_slice(&bytes[..take]);
        if take < bytes.len() {
            self.truncated = true;
        }
    }

    /// The captured text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }
}

/// A worker's failure report (a JSON frame in place of an answer).
#[derive(Debug, Deserialize)]
struct Failure {
    #[serde(default)]
    infra: String,
}

/// Reads a worker's answer to a job: `E` and the child's end (exit code, or 128 + signal), or
/// a JSON frame describing a failure of the worker itself (its length's first byte is 0).
pub(crate) fn read_answer(inp: &mut ChildStdout, deadline: Instant) -> Result<i32, SandboxError> {
    let mut first = [0u8; 1];
    read_exact_deadline(inp, &mut first, deadline)?;
    if first[0] == b'E' {
        let mut code = [0u8; 4];
        read_exact_deadline(inp, &mut code, deadline)?;
        return Ok(i32::from_be_bytes(code));
    }
    let mut rest = [0u8; 3];
    read_exact_deadline(inp, &mut rest, deadline)?;
    let n = u32::from_be_bytes([first[0], rest[0], rest[1], rest[2]]) as usize;
    let mut header = vec![0u8; n];
    read_exact_deadline(inp, &mut header, deadline)?;
    let _blob = read_part(inp, deadline)?;
    let failure: Failure = serde_json::from_slice(&header)
        .map_err(|e| SandboxError::Worker(format!("worker answer unreadable: {e}")))?;
    Err(SandboxError::Worker(failure.infra))
}

/// Writes one job frame: u32 length of the rest, then each part as u32 length + bytes.
pub(crate) fn write_job(out: &mut ChildStdin, parts: &[&[u8]]) -> Result<(), SandboxError> {
    let total: usize = parts.iter().map(|p| 4 + p.len()).sum();
    let too_large = || SandboxError::Worker("job too large".into());
    let mut msg = Vec::with_capacity(4 + total);
    msg.extend_from_slice(&u32::try_from(total).map_err(|_| too_large())?.to_be_bytes());
    for p in parts {
        msg.extend_from_slice(
            &u32::try_from(p.len())
                .map_err(|_| too_large())?
                .to_be_bytes(),
        );
        msg.extend_from_slice(p);
    }
    out.write_all(&msg)?;
    out.flush()?;
    Ok(())
}

/// Waits up to `ms` milliseconds (at least 1) for any of `fds` to be readable; returns how
/// many are (0 on timeout or interruption).
pub(crate) fn poll_ready(fds: &mut [libc::pollfd], ms: i32) -> Result<usize, SandboxError> {
    // SAFETY: a valid array of pollfds and its length.
    let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms.max(1)) };
    if r < 0 {
        let e = std::io::Error::last_os_error();
        if e.kind() == std::io::ErrorKind::Interrupted {
            return Ok(0);
        }
        return Err(e.into());
    }
    Ok(r as usize)
}

pub(crate) fn pollfd(fd: RawFd) -> libc::pollfd {
    libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }
}

/// Reads a non-blocking descriptor until it has nothing more, handing each chunk to `sink`.
pub(crate) fn drain(
    f: &mut File,
    buf: &mut [u8],
    mut sink: impl FnMut(&[u8]),
) -> Result<(), SandboxError> {
    loop {
        match f.read(buf) {
            Ok(0) => return Ok(()),
            Ok(n) => sink(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// One authenticated record from a job process.
pub(crate) struct Record {
    pub(crate) kind: u8,
    pub(crate) idx: u32,
    pub(crate) payload: Vec<u8>,
}

/// Splits the result channel into records; anything without the attempt's secret marks the
/// channel as tampered with (and is dropped, with everything after it).
pub(crate) struct RecordReader {
    nonce: [u8; NONCE_LEN],
    buf: Vec<u8>,
    /// Something without the secret was seen (everything after it is dropped).
    pub(crate) tampered: bool,
}

impl RecordReader {
    pub(crate) fn new(nonce: [u8; NONCE_LEN]) -> RecordReader {
        RecordReader {
            nonce,
            buf: Vec::new(),
            tampered: false,
        }
    }

    pub(crate) fn feed(&mut self, data: &[u8], out: &mut Vec<Record>) {
        if self.tampered {
            return;
        }
        self.buf.extend_from_slice(data);
        const HEAD: usize = NONCE_LEN + 1 + 8;
        let mut pos = 0;
        while self.buf.len() - pos >= HEAD {
            let b = &self.buf[pos..];
            if b[..NONCE_LEN] != self.nonce {
                self.tampered = true;
                self.buf.clear();
                return;
            }
            let kind = b[NONCE_LEN];
            let idx = u32::from_be_bytes([b[17], b[18], b[19], b[20]]);
            let n = u32::from_be_bytes([b[21], b[22], b[23], b[24]]) as usize;
            if b.len() < HEAD + n {
                break;
            }
            out.push(Record {
                kind,
                idx,
                payload: b[HEAD..HEAD + n].to_vec(),
            });
            pos += HEAD + n;
        }
        self.buf.drain(..pos);
    }
}

/// Decodes an outcome payload: `passed`, `memory`, `failed\0msg`, `error\0type\0msg\0line`.
pub(crate) fn decode_outcome(p: &[u8]) -> TestOutcome {
    let parts: Vec<&[u8]> = p.split(|b| *b == 0).collect();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    match parts.first().copied() {
        Some(b"passed") => TestOutcome::Passed,
        Some(b"memory") => TestOutcome::MemoryExceeded,
        Some(b"failed") => TestOutcome::Failed {
            message: parts.get(1).map(|m| text(m)).unwrap_or_default(),
        },
        Some(b"error") if parts.len() >= 4 => {
            let exc_type = text(parts[1]);
            if exc_type == "MemoryError" {
                return TestOutcome::MemoryExceeded;
            }
            // The message may itself contain NUL bytes: it is everything between type and line.
            let message = text(&p[7 + parts[1].len()..p.len() - parts[parts.len() - 1].len() - 1]);
            let line = std::str::from_utf8(parts[parts.len() - 1])
                .ok()
                .and_then(|l| l.parse::<i64>().ok())
                .filter(|l| *l >= 0)
                .and_then(|l| u32::try_from(l).ok());
            TestOutcome::Error {
                exc_type,
                message,
                line,
            }
        }
        _ => TestOutcome::Error {
            exc_type: "HarnessProtocolError".into(),
            message: "unreadable outcome record".into(),
            line: None,
        },
    }
}

pub(crate) fn write_frame(
    out: &mut ChildStdin,
    header: &[u8],
    blob: &[u8],
) -> Result<(), SandboxError> {
    let hl =
        u32::try_from(header.len()).map_err(|_| SandboxError::Worker("job too large".into()))?;
    let bl =
        u32::try_from(blob.len()).map_err(|_| SandboxError::Worker("payload too large".into()))?;
    let mut msg = Vec::with_capacity(8 + header.len() + blob.len());
    msg.extend_from_slice(&hl.to_be_bytes());
    msg.extend_from_slice(header);
    msg.extend_from_slice(&bl.to_be_bytes());
    msg.extend_from_slice(blob);
    out.write_all(&msg)?;
    out.flush()?;
    Ok(())
}

pub(crate) fn read_frame(
    inp: &mut ChildStdout,
    deadline: Instant,
) -> Result<(Vec<u8>, Vec<u8>), SandboxError> {
    let header = read_part(inp, deadline)?;
    let blob = read_part(inp, deadline)?;
    Ok((header, blob))
}

pub(crate) fn read_part(inp: &mut ChildStdout, deadline: Instant) -> Result<Vec<u8>, SandboxError> {
    let mut len = [0u8; 4];
    read_exact_deadline(inp, &mut len, deadline)?;
    let n = u32::from_be_bytes(len) as usize;
    let mut buf = vec![0u8; n];
    read_exact_deadline(inp, &mut buf, deadline)?;
    Ok(buf)
}

pub(crate) fn read_exact_deadline(
    inp: &mut ChildStdout,
    mut buf: &mut [u8],
    deadline: Instant,
) -> Result<(), SandboxError> {
    let fd = inp.as_raw_fd();
    while !buf.is_empty() {
        let now = Instant::now();
        if now >= deadline {
            return Err(SandboxError::Worker(
                "worker did not answer in time (killed and replaced)".into(),
            ));
        }
        let ms = (deadline - now).as_millis().min(i32::MAX as u128) as i32;
        if poll_ready(&mut [pollfd(fd)], ms)? == 0 {
            continue;
        }
        let n = inp.read(buf)?;
        if n == 0 {
            return Err(SandboxError::Worker("worker exited unexpectedly".into()));
        }
        buf = &mut buf[n..];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_decode() {
        assert_eq!(decode_outcome(b"passed"), TestOutcome::Passed);
        assert_eq!(decode_outcome(b"memory"), TestOutcome::MemoryExceeded);
        assert_eq!(
            decode_outcome(b"failed\0boom"),
            TestOutcome::Failed {
                message: "boom".into()
            }
        );
        assert_eq!(
            decode_outcome(b"error\0ValueError\0bad\0value\x003"),
            TestOutcome::Error {
                exc_type: "ValueError".into(),
                message: "bad\0value".into(),
                line: Some(3)
            }
        );
        assert_eq!(
            decode_outcome(b"error\0KeyError\0k\0-1"),
            TestOutcome::Error {
                exc_type: "KeyError".into(),
                message: "k".into(),
                line: None
            }
        );
        assert!(matches!(
            decode_outcome(b"nonsense"),
            TestOutcome::Error { ref exc_type, .. } if exc_type == "HarnessProtocolError"
        ));
    }

    #[test]
    fn records_need_the_secret() {
        let nonce = [7u8; NONCE_LEN];
        let mut r = RecordReader::new(nonce);
        let mut out = Vec::new();
        let mut msg = nonce.to_vec();
        msg.push(b'R');
        msg.extend_from_slice(&3u32.to_be_bytes());
        msg.extend_from_slice(&6u32.to_be_bytes());
        msg.extend_from_slice(b"passed");
        // Split across two reads.
        r.feed(&msg[..10], &mut out);
        assert!(out.is_empty());
        r.feed(&msg[10..], &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].kind, out[0].idx), (b'R', 3));
        assert_eq!(out[0].payload, b"passed");
        let mut forged = vec![0u8; NONCE_LEN];
        forged.extend_from_slice(&msg[NONCE_LEN..]);
        r.feed(&forged, &mut out);
        assert!(r.tampered);
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn capture_is_bounded() {
        let mut c = Capture::new(4);
        c.add(b"ab");
        c.add(b"cdef");
        assert_eq!(c.text(), "abcd");
        assert!(c.truncated);
    }
}
