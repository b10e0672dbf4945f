//! Reading safetensors weights with positioned reads instead of a memory map.
//!
//! candle's `VarBuilder::from_mmaped_safetensors` maps the files and copies each tensor out of
//! the mapping; while it does, the mapped pages count as resident memory, so loading a 2 GB
//! F32 model peaks near 4 GB although the model holds 2 GB. [`SafetensorsReader`] reads the
//! header once and each tensor with `pread` straight into a vector of its own dtype, which
//! becomes the tensor's storage without another copy (a dtype conversion, when asked for,
//! allocates the converted tensor only). It implements candle's [`SimpleBackend`], so a
//! [`VarBuilder`] builds a model from it.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Shape, Tensor, WithDType};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::VarBuilder;

use crate::EngineError;

/// Where one tensor lies in a safetensors file.
#[derive(Debug, Clone)]
struct Entry {
    /// Index into [`SafetensorsReader::files`].
    file: usize,
    dtype: DType,
    shape: Vec<usize>,
    /// Absolute byte offset of the data in the file.
    offset: u64,
    /// Data length in bytes.
    len: usize,
}

/// The tensors of one or more safetensors files (the shards of a model), indexed by name and
/// read on demand.
#[derive(Debug)]
pub struct SafetensorsReader {
    files: Vec<(PathBuf, File)>,
    entries: HashMap<String, Entry>,
    /// Names in file order, then header order (sorted by offset).
    order: Vec<String>,
}

/// The largest header accepted (the format's own reference reader refuses more than 100 MB).
const MAX_HEADER: u64 = 100_000_000;

fn dtype_of(name: &str) -> Option<DType> {
    Some(match name {
        "F64" => DType::F64,
        "F32" => DType::F32,
        "F16" => DType::F16,
        "BF16" => DType::BF16,
        "I64" => DType::I64,
        "I32" => DType::I32,
        "I16" => DType::I16,
        "U32" => DType::U32,
        "U8" => DType::U8,
        _ => return None,
    })
}

impl SafetensorsReader {
    /// Reads the headers of `files`: every tensor's dtype, shape and place, checked against
    /// the file's length. A malformed or truncated file, an unsupported dtype or a name in two
    /// shards is an error naming the file (and tensor).
    pub fn open(files: &[PathBuf]) -> Result<Self, EngineError> {
        let mut me = SafetensorsReader {
            files: Vec::new(),
            entries: HashMap::new(),
            order: Vec::new(),
        };
        for path in files {
            me.add_file(path)?;
        }
        Ok(me)
    }

    fn add_file(&mut self, path: &Path) -> Result<(), EngineError> {
        let err = |m: String| EngineError::Model(format!("{}: {m}", path.display()));
        let file = File::open(path).map_err(|e| err(format!("cannot open: {e}")))?;
        let file_len = file
            .metadata()
            .map_err(|e| err(format!("cannot stat: {e}")))?
            .len();
        let mut n = [0u8; 8];
        read_exact_at(&file, &mut n, 0)
            .map_err(|e| err(format!("not a safetensors file (no header length: {e})")))?;
        let header_len = u64::from_le_bytes(n);
        if header_len > MAX_HEADER || 8 + header_len > file_len {
            return Err(err(format!(
                "not a safetensors file (header of {header_len} bytes in a file of {file_len})"
            )));
        }
        let mut header = vec![0u8; header_len as usize];
        read_exact_at(&file, &mut header, 8)
            .map_err(|e| err(format!("cannot read header: {e}")))?;
        let header: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&header)
            .map_err(|e| err(format!("header is not a JSON object: {e}")))?;
        let data_start = 8 + header_len;
        let data_len = file_len - data_start;
        let index = self.files.len();
        let mut names: Vec<(u64, String)> = Vec::new();
        for (name, info) in &header {
            if name == "__metadata__" {
                continue;
            }
            let bad = |m: &str| err(format!("tensor {name}: {m}"));
            let dtype_name = info
                .get("dtype")
                .and_then(|d| d.as_str())
                .ok_or_else(|| bad("no dtype"))?;
            let dtype = dtype_of(dtype_name)
                .ok_or_else(|| bad(&format!("unsupported dtype {dtype_name}")))?;
            let shape: Vec<usize> = info
                .get("shape")
                .and_then(|s| s.as_array())
                .and_then(|s| s.iter().map(|d| d.as_u64().map(|d| d as usize)).collect())
                .ok_or_else(|| bad("shape is not a list of sizes"))?;
            let offsets: Vec<u64> = info
                .get("data_offsets")
                .and_then(|o| o.as_array())
                .and_then(|o| o.iter().map(|v| v.as_u64()).collect())
                .filter(|o: &Vec<u64>| o.len() == 2)
                .ok_or_else(|| bad("data_offsets is not [begin, end]"))?;
            let (begin, end) = (offsets[0], offsets[1]);
            let elems: usize = shape.iter().product();
            let len = elems
                .checked_mul(dtype.size_in_bytes())
                .ok_or_else(|| bad("shape too large"))?;
            if begin > end || end > data_len || (end - begin) as usize != len {
                return Err(bad(&format!(
                    "data_offsets [{begin}, {end}] do not hold {len} bytes of {dtype_name} {shape:?} \
                     within the {data_len} data bytes (truncated file?)"
                )));
            }
            if self.entries.contains_key(name) {
                return Err(bad("also in an earlier shard"));
            }
            self.entries.insert(
                name.clone(),
                Entry {
                    file: index,
                    dtype,
                    shape,
                    offset: data_start + begin,
                    len,
                },
            );
            names.push((begin, name.clone()));
        }
        names.sort();
        self.order.extend(names.into_iter().map(|(_, n)| n));
        self.files.push((path.to_path_buf(), file));
        Ok(())
    }

    /// The names of every tensor, shard by shard in file order.
    pub fn names(&self) -> &[String] {
        &self.order
    }

    /// The tensor `name` on `device`, in the file's dtype.
    pub fn load(&self, name: &str, device: &Device) -> candle_core::Result<Tensor> {
        let Some(e) = self.entries.get(name) else {
            return Err(candle_core::Error::CannotFindTensor {
                path: name.to_string(),
            }
            .bt());
        };
        let (path, file) = &self.files[e.file];
        let t = match e.dtype {
            DType::F64 => read_tensor::<f64>(file, e, device),
            DType::F32 => read_tensor::<f32>(file, e, device),
            DType::F16 => read_tensor::<half::f16>(file, e, device),
            DType::BF16 => read_tensor::<half::bf16>(file, e, device),
            DType::I64 => read_tensor::<i64>(file, e, device),
            DType::I32 => read_tensor::<i32>(file, e, device),
            DType::I16 => read_tensor::<i16>(file, e, device),
            DType::U32 => read_tensor::<u32>(file, e, device),
            DType::U8 => read_tensor::<u8>(file, e, device),
            other => candle_core::bail!("{}: tensor {name}: dtype {other:?}", path.display()),
        };
        t.map_err(|err| {
            candle_core::Error::Msg(format!("{}: tensor {name}: {err}", path.display())).bt()
        })
    }

    /// A [`VarBuilder`] over these tensors, converting each to `dtype` on `device`.
    pub fn into_var_builder(self, dtype: DType, device: &Device) -> VarBuilder<'static> {
        VarBuilder::from_backend(Box::new(self), dtype, device.clone())
    }
}

/// Reads `e`'s bytes into a vector of `T` that becomes the tensor's storage.
fn read_tensor<T: WithDType + bytemuck::Pod>(
    file: &File,
    e: &Entry,
    device: &Device,
) -> candle_core::Result<Tensor> {
    if cfg!(target_endian = "big") {
        candle_core::bail!("safetensors data is little-endian; this machine is big-endian");
    }
    let mut v = vec![T::zeroed(); e.len / std::mem::size_of::<T>()];
    read_exact_at(file, bytemuck::cast_slice_mut(&mut v), e.offset)?;
    Tensor::from_vec(v, e.shape.as_slice(), device)
}

#[cfg(unix)]
fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

#[cfg(not(unix))]
fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = file;
    f.seek(SeekFrom::Start(offset))?;
    f.read_exact(buf)
}

impl SimpleBackend for SafetensorsReader {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _init: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let t = self.get_unchecked(name, dtype, dev)?;
        if t.shape() != &s {
            return Err(candle_core::Error::UnexpectedShape {
                msg: format!("shape mismatch for {name}"),
                expected: s,
                got: t.shape().clone(),
            }
            .bt());
        }
        Ok(t)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.load(name, dev)?.to_dtype(dtype)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("nxt-weights-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn save(path: &Path, tensors: &[(&str, Tensor)]) {
        let map: HashMap<String, Tensor> = tensors
            .iter()
            .map(|(n, t)| (n.to_string(), t.clone()))
            .collect();
        candle_core::safetensors::save(&map, path).unwrap();
    }

    fn values(dtype: DType) -> Tensor {
        Tensor::arange(0f32, 12f32, &Device::Cpu)
            .unwrap()
            .affine(0.25, -1.0)
            .unwrap()
            .reshape((3, 4))
            .unwrap()
            .to_dtype(dtype)
            .unwrap()
    }

    #[test]
    fn every_dtype_reads_back_exactly_and_converts_like_candle() {
        let d = dir("dtypes");
        let path = d.join("m.safetensors");
        let dtypes = [
            DType::F32,
            DType::F64,
            DType::F16,
            DType::BF16,
            DType::U32,
            DType::I64,
        ];
        let names: Vec<String> = dtypes.iter().map(|t| format!("t.{t:?}")).collect();
        let tensors: Vec<(&str, Tensor)> = names
            .iter()
            .zip(dtypes)
            .map(|(n, t)| (n.as_str(), values(t)))
            .collect();
        save(&path, &tensors);
        let r = SafetensorsReader::open(std::slice::from_ref(&path)).unwrap();
        assert_eq!(r.names().len(), dtypes.len());
        let reference = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
        for (name, t) in &tensors {
            let got = r.load(name, &Device::Cpu).unwrap();
            assert_eq!(got.dtype(), t.dtype());
            assert_eq!(got.dims(), &[3, 4]);
            let as_f64 = |x: &Tensor| {
                x.to_dtype(DType::F64)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f64>()
                    .unwrap()
            };
            assert_eq!(as_f64(&got), as_f64(&reference[*name]));
            let conv = r.get_unchecked(name, DType::F32, &Device::Cpu).unwrap();
            let want = reference[*name].to_dtype(DType::F32).unwrap();
            assert_eq!(
                conv.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                want.flatten_all().unwrap().to_vec1::<f32>().unwrap()
            );
        }
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_var_builder_checks_shapes_and_names() {
        let d = dir("vb");
        let path = d.join("m.safetensors");
        save(&path, &[("w", values(DType::F32))]);
        let vb = SafetensorsReader::open(std::slice::from_ref(&path))
            .unwrap()
            .into_var_builder(DType::F64, &Device::Cpu);
        assert_eq!(vb.get((3, 4), "w").unwrap().dtype(), DType::F64);
        let e = vb.get((4, 3), "w").unwrap_err().to_string();
        assert!(e.contains("shape mismatch for w"), "{e}");
        assert!(vb.get((3, 4), "missing").is_err());
        assert!(vb.contains_tensor("w") && !vb.contains_tensor("missing"));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn shards_are_read_together_and_a_name_in_two_is_refused() {
        let d = dir("shards");
        let (a, b) = (d.join("a.safetensors"), d.join("b.safetensors"));
        save(&a, &[("x", values(DType::F32))]);
        save(&b, &[("y", values(DType::BF16))]);
        let r = SafetensorsReader::open(&[a.clone(), b.clone()]).unwrap();
        assert_eq!(r.names(), ["x", "y"]);
        assert_eq!(r.load("y", &Device::Cpu).unwrap().dtype(), DType::BF16);
        let e = SafetensorsReader::open(&[a.clone(), a.clone()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("tensor x: also in an earlier shard"), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn truncated_and_malformed_files_are_clear_errors() {
        let d = dir("bad");
        let path = d.join("m.safetensors");
        save(&path, &[("w", values(DType::F32))]);
        let bytes = std::fs::read(&path).unwrap();
        let cut = d.join("cut.safetensors");
        std::fs::write(&cut, &bytes[..bytes.len() - 5]).unwrap();
        let e = SafetensorsReader::open(std::slice::from_ref(&cut))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("cut.safetensors") && e.contains("tensor w") && e.contains("truncated"),
            "{e}"
        );
        let junk = d.join("junk.safetensors");
        std::fs::write(&junk, b"\xff\xff\xff\xff\xff\xff\xff\x7fnot json").unwrap();
        let e = SafetensorsReader::open(std::slice::from_ref(&junk))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a safetensors file"), "{e}");
        let mut bad_json = 8u64.to_le_bytes().to_vec();
        bad_json.extend_from_slice(b"{\"w\": 1}");
        std::fs::write(&junk, &bad_json).unwrap();
        let e = SafetensorsReader::open(std::slice::from_ref(&junk))
            .unwrap_err()
            .to_string();
        assert!(e.contains("tensor w: no dtype"), "{e}");
        std::fs::write(&junk, b"abc").unwrap();
        assert!(SafetensorsReader::open(std::slice::from_ref(&junk)).is_err());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
