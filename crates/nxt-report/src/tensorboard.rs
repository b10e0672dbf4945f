//! TensorBoard event files, written by hand: TFRecord framing (`u64le length`,
//! `u32le masked_crc32c(length)`, `data`, `u32le masked_crc32c(data)`) around protobuf
//! `Event` messages (1: wall_time double, 2: step int64, 3: file_version string in the first
//! record, 5: summary = `Summary { 1: Value { 1: tag string, 2: simple_value float } }`).
//! `tensorboard --logdir` and `wandb sync` read these. A reader of the same format is here
//! too, so the writer is checked by a round trip (CRCs included).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::run::{LoadedRun, Metric, Run};
use crate::ReportError;

/// The CRC mask TFRecord applies.
fn masked_crc(data: &[u8]) -> u32 {
    let crc = crc32c::crc32c(data);
    (crc.rotate_right(15)).wrapping_add(0xa282_ead8)
}

/// Frame one record.
pub fn encode_record(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 16);
    let len = (data.len() as u64).to_le_bytes();
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc(data).to_le_bytes());
    out
}

/// Split a byte stream into records, checking both CRCs of each.
pub fn decode_records(bytes: &[u8]) -> Result<Vec<Vec<u8>>, ReportError> {
    let bad = |offset: usize, what: &str| {
        ReportError::EventFile(format!("record at byte {offset}: {what}"))
    };
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes.len() - i < 12 {
            return Err(bad(i, "truncated header"));
        }
        let len_bytes: [u8; 8] = bytes[i..i + 8].try_into().map_err(|_| bad(i, "header"))?;
        let crc = u32::from_le_bytes(
            bytes[i + 8..i + 12]
                .try_into()
                .map_err(|_| bad(i, "header"))?,
        );
        if crc != masked_crc(&len_bytes) {
            return Err(bad(i, "length CRC mismatch"));
        }
        let len = u64::from_le_bytes(len_bytes) as usize;
        let start = i + 12;
        if bytes.len() < start + len + 4 {
            return Err(bad(i, "truncated data"));
        }
        let data = &bytes[start..start + len];
        let crc = u32::from_le_bytes(
            bytes[start + len..start + len + 4]
                .try_into()
                .map_err(|_| bad(i, "data CRC"))?,
        );
        if crc != masked_crc(data) {
            return Err(bad(i, "data CRC mismatch"));
        }
        out.push(data.to_vec());
        i = start + len + 4;
    }
    Ok(out)
}

fn varint(mut v: u64, out: &mut Vec<u8>) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn len_field(field: u32, data: &[u8], out: &mut Vec<u8>) {
    varint(((field << 3) | 2) as u64, out);
    varint(data.len() as u64, out);
    out.extend_from_slice(data);
}

/// A decoded `Event`.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Seconds since the epoch.
    pub wall_time: f64,
    /// Step.
    pub step: i64,
    /// `file_version` (the first record only).
    pub file_version: Option<String>,
    /// Scalars of the summary: (tag, value).
    pub scalars: Vec<(String, f32)>,
}

/// Encode an `Event`.
pub fn encode_event(e: &Event) -> Vec<u8> {
    let mut out = Vec::new();
    out.push(0x09); // field 1, fixed64
    out.extend_from_slice(&e.wall_time.to_le_bytes());
    if e.step != 0 {
        out.push(0x10); // field 2, varint
        varint(e.step as u64, &mut out);
    }
    if let Some(v) = &e.file_version {
        len_field(3, v.as_bytes(), &mut out);
    }
    if !e.scalars.is_empty() {
        let mut summary = Vec::new();
        for (tag, value) in &e.scalars {
            let mut val = Vec::new();
            len_field(1, tag.as_bytes(), &mut val);
            val.push(0x15); // field 2, fixed32
            val.extend_from_slice(&value.to_le_bytes());
            len_field(1, &val, &mut summary);
        }
        len_field(5, &summary, &mut out);
    }
    out
}

struct Reader<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Reader<'a> {
    fn err(&self, what: &str) -> ReportError {
        ReportError::EventFile(format!("protobuf at byte {}: {what}", self.i))
    }
    fn varint(&mut self) -> Result<u64, ReportError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self
                .b
                .get(self.i)
                .ok_or_else(|| self.err("truncated varint"))?;
            self.i += 1;
            v |= ((b & 0x7f) as u64) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(self.err("varint too long"))
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], ReportError> {
        if self.b.len() < self.i + n {
            return Err(self.err("truncated field"));
        }
        let s = &self.b[self.i..self.i + n];
        self.i += n;
        Ok(s)
    }
    /// (field, wire type) pairs with their payload: varint value or bytes.
    fn field(&mut self) -> Result<Option<(u32, Payload<'a>)>, ReportError> {
        if self.i >= self.b.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let field = (key >> 3) as u32;
        let p = match key & 7 {
            0 => Payload::Varint(self.varint()?),
            1 => Payload::Fixed64(self.take(8)?.try_into().map_err(|_| self.err("fixed64"))?),
            2 => {
                let n = self.varint()? as usize;
                Payload::Bytes(self.take(n)?)
            }
            5 => Payload::Fixed32(self.take(4)?.try_into().map_err(|_| self.err("fixed32"))?),
            w => return Err(self.err(&format!("unsupported wire type {w}"))),
        };
        Ok(Some((field, p)))
    }
}

enum Payload<'a> {
    Varint(u64),
    Fixed64([u8; 8]),
    Fixed32([u8; 4]),
    Bytes(&'a [u8]),
}

/// Decode an `Event` (the fields this module writes; others are skipped).
pub fn decode_event(b: &[u8]) -> Result<Event, ReportError> {
    let mut r = Reader { b, i: 0 };
    let mut e = Event {
        wall_time: 0.0,
        step: 0,
        file_version: None,
        scalars: Vec::new(),
    };
    let utf8 = |b: &[u8]| {
        String::from_utf8(b.to_vec()).map_err(|_| ReportError::EventFile("tag is not UTF-8".into()))
    };
    while let Some((f, p)) = r.field()? {
        match (f, p) {
            (1, Payload::Fixed64(v)) => e.wall_time = f64::from_le_bytes(v),
            (2, Payload::Varint(v)) => e.step = v as i64,
            (3, Payload::Bytes(v)) => e.file_version = Some(utf8(v)?),
            (5, Payload::Bytes(summary)) => {
                let mut sr = Reader { b: summary, i: 0 };
                while let Some((sf, sp)) = sr.field()? {
                    if let (1, Payload::Bytes(val)) = (sf, sp) {
                        let mut vr = Reader { b: val, i: 0 };
                        let (mut tag, mut value) = (String::new(), None);
                        while let Some((vf, vp)) = vr.field()? {
                            match (vf, vp) {
                                (1, Payload::Bytes(t)) => tag = utf8(t)?,
                                (2, Payload::Fixed32(v)) => value = Some(f32::from_le_bytes(v)),
                                _ => {}
                            }
                        }
                        if let Some(v) = value {
                            e.scalars.push((tag, v));
                        }
                    }
                }
            }
            _ => {}
        }
    }
    Ok(e)
}

/// Read every event of an event file, checking the framing.
pub fn read_events(path: &Path) -> Result<Vec<Event>, ReportError> {
    let bytes = std::fs::read(path).map_err(|source| ReportError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    decode_records(&bytes)
        .map_err(|e| ReportError::EventFile(format!("{}: {e}", path.display())))?
        .iter()
        .map(|r| decode_event(r))
        .collect()
}

/// An event file being written.
pub struct EventWriter {
    out: BufWriter<File>,
    path: PathBuf,
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty() && !s.contains('/'))
        .unwrap_or_else(|| "localhost".into())
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl EventWriter {
    /// Create `dir/events.out.tfevents.<unix time>.<host>` and write the version record.
    pub fn create(dir: &Path) -> Result<EventWriter, ReportError> {
        let io = |path: &Path, source| ReportError::Io {
            path: path.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let t = now();
        let path = dir.join(format!("events.out.tfevents.{}.{}", t as u64, hostname()));
        let file = File::create(&path).map_err(|e| io(&path, e))?;
        let mut w = EventWriter {
            out: BufWriter::new(file),
            path,
        };
        w.write(&Event {
            wall_time: t,
            step: 0,
            file_version: Some("brain.Event:2".into()),
            scalars: Vec::new(),
        })?;
        Ok(w)
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Write one event.
    pub fn write(&mut self, e: &Event) -> Result<(), ReportError> {
        self.out
            .write_all(&encode_record(&encode_event(e)))
            .map_err(|source| ReportError::Io {
                path: self.path.clone(),
                source,
            })
    }

    /// Write one scalar.
    pub fn scalar(
        &mut self,
        tag: &str,
        step: i64,
        value: f64,
        wall_time: Option<f64>,
    ) -> Result<(), ReportError> {
        self.write(&Event {
            wall_time: wall_time.unwrap_or_else(now),
            step,
            file_version: None,
            scalars: vec![(tag.to_string(), value as f32)],
        })
    }

    /// Flush to disk.
    pub fn finish(mut self) -> Result<PathBuf, ReportError> {
        self.out.flush().map_err(|source| ReportError::Io {
            path: self.path.clone(),
            source,
        })?;
        Ok(self.path)
    }
}

fn eval_scalars(
    w: &mut EventWriter,
    prefix: &str,
    e: &crate::run::EvalView,
    step: i64,
) -> Result<usize, ReportError> {
    let mut n = 0;
    let mut metrics: Vec<Metric> = e.ks().into_iter().map(Metric::PassAt).collect();
    metrics.push(Metric::Greedy);
    metrics.push(Metric::ProxyPassAt(1));
    for m in metrics {
        if let Some(v) = e.metric(m) {
            w.scalar(
                &format!("{prefix}/{}", m.name().replace(' ', "_")),
                step,
                v.value,
                None,
            )?;
            n += 1;
        }
    }
    let (trunc, unp) = e.rates();
    for (name, v) in [("truncated", trunc), ("unparseable", unp)] {
        if let Some(v) = v {
            w.scalar(&format!("{prefix}/{name}"), step, v, None)?;
            n += 1;
        }
    }
    Ok(n)
}

/// Write a run's training and evaluation scalars under `dir`: evaluation scalars in `dir`
/// (step = iteration; 0 = the base model), each iteration's training curves in
/// `dir/iter-N` (step = optimizer step), so TensorBoard shows one run per iteration.
/// Returns the files written and the number of scalars.
pub fn write_tensorboard(
    run: &LoadedRun,
    dir: &Path,
) -> Result<(Vec<PathBuf>, usize), ReportError> {
    let mut files = Vec::new();
    let mut count = 0;
    let mut w = EventWriter::create(dir)?;
    match &run.run {
        Run::Eval(e) => count += eval_scalars(&mut w, "eval", e, 0)?,
        Run::Selftrain(s) => {
            if let Some(b) = &s.base_dev {
                count += eval_scalars(&mut w, "dev", b, 0)?;
            }
            if let Some(p) = s.results.hard.as_ref().and_then(|h| h.pass_at_1) {
                w.scalar("train/base_pass@1", 0, p, None)?;
                count += 1;
            }
            for it in &s.iterations {
                let step = it.number as i64;
                if let Some(d) = &it.dev {
                    count += eval_scalars(&mut w, "dev", d, step)?;
                }
                if let Some(p) = it.it.train_side.as_ref().and_then(|t| t.pass_at_1) {
                    w.scalar("train_side/pass@1", step, p, None)?;
                    count += 1;
                }
                if let Some(f) = &it.it.funnel {
                    let unfaithful = ("passing but unfaithful", f.unfaithful);
                    for (name, v) in f.stages(true).into_iter().chain([unfaithful]) {
                        if let Some(v) = v {
                            w.scalar(
                                &format!("funnel/{}", name.replace(' ', "_")),
                                step,
                                v as f64,
                                None,
                            )?;
                            count += 1;
                        }
                    }
                    if let Some(t) = f.training_tokens {
                        w.scalar("funnel/training_tokens", step, t as f64, None)?;
                        count += 1;
                    }
                }
                if !it.metrics.is_empty() {
                    let mut tw = EventWriter::create(&dir.join(format!("iter-{}", it.number)))?;
                    for (j, m) in it.metrics.iter().enumerate() {
                        let step = m.step.map(|s| s as i64).unwrap_or(j as i64 + 1);
                        for (tag, v) in [
                            ("train/loss", m.loss),
                            ("train/lr", m.lr),
                            ("train/grad_norm", m.grad_norm),
                            ("train/tokens_per_s", m.tokens_per_s),
                            ("train/epoch", m.epoch),
                        ] {
                            if let Some(v) = v {
                                tw.scalar(tag, step, v, None)?;
                                count += 1;
                            }
                        }
                    }
                    files.push(tw.finish()?);
                }
            }
            for (who, m, step) in [
                ("base", &s.test_base, 0i64),
                ("chosen", &s.test_best, s.best().unwrap_or(0) as i64),
            ] {
                for (bench, (t, nt)) in m {
                    for (p, e) in [("trace", t), ("no_trace", nt)] {
                        if let Some(e) = e {
                            count +=
                                eval_scalars(&mut w, &format!("test_{who}/{bench}/{p}"), e, step)?;
                        }
                    }
                }
            }
        }
    }
    files.insert(0, w.finish()?);
    Ok((files, count))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_crc_matches_tensorflow() {
        // crc32c("") = 0; masked: rotate 0 by 15 then add the constant.
        assert_eq!(masked_crc(b""), 0xa282_ead8);
        // Known CRC-32C check value of "123456789" (RFC 3720): 0xE3069283.
        let c = 0xE306_9283u32;
        assert_eq!(
            masked_crc(b"123456789"),
            c.rotate_right(15).wrapping_add(0xa282_ead8)
        );
    }

    #[test]
    fn events_round_trip_and_corruption_is_caught() {
        let e = Event {
            wall_time: 1234.5,
            step: 300,
            file_version: None,
            scalars: vec![("train/loss".into(), 0.25)],
        };
        let rec = encode_record(&encode_event(&e));
        let back = decode_records(&rec).expect("records");
        assert_eq!(decode_event(&back[0]).expect("event"), e);
        let mut bad = rec.clone();
        let last = bad.len() - 6;
        bad[last] ^= 1;
        assert!(decode_records(&bad).is_err());
        assert!(decode_records(&rec[..rec.len() - 1]).is_err());
    }
}
