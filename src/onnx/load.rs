//! Reading model files: memory mapping, gzip, external data.
use super::{pb, OnnxError};
use bytes::Bytes;
use prost::Message;
use std::collections::HashMap;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

/// Largest inflated size accepted for a gzip-compressed model.
const MAX_INFLATED_BYTES: u64 = 8 << 30;

/// A decoded ONNX model with every tensor's payload resolved in memory.
#[derive(Debug)]
pub struct LoadedModel {
    /// The file it came from (for error messages); `<memory>` for bytes.
    pub path: PathBuf,
    pub(crate) proto: pb::ModelProto,
}

impl LoadedModel {
    /// The default-domain opset the model imports (0 when it imports none).
    pub fn opset(&self) -> i64 {
        self.proto
            .opset_import
            .iter()
            .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
            .map(|o| o.version)
            .unwrap_or(0)
    }

    /// Encodes the model back to protobuf bytes. External data has been resolved
    /// into the tensors, so the result is self-contained (and must stay under
    /// protobuf's 2 GiB message limit; larger models need external data again).
    pub fn encode(&self) -> Result<Vec<u8>, OnnxError> {
        use prost::Message;
        let len = self.proto.encoded_len();
        if len > i32::MAX as usize {
            return Err(OnnxError::BadTensor {
                path: self.path.clone(),
                tensor: "<model>".into(),
                detail: format!("{len} bytes exceed protobuf's 2 GiB message limit"),
            });
        }
        Ok(self.proto.encode_to_vec())
    }

    /// Encodes the model and writes it atomically (temporary file, then rename).
    pub fn save(&self, path: &Path) -> Result<(), OnnxError> {
        super::write_atomic(path, &self.encode()?)
    }

    /// The model's producer, as the exporter recorded it.
    pub fn producer(&self) -> String {
        format!("{} {}", self.proto.producer_name, self.proto.producer_version).trim().to_string()
    }
}

/// Loads a model file (`.onnx`, or gzip-compressed), resolving external data
/// relative to the file's folder. The file is only read, never modified.
pub fn load_model(path: &Path) -> Result<LoadedModel, OnnxError> {
    let io = |source| OnnxError::Io { path: path.to_path_buf(), source };
    let file = std::fs::File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    if len == 0 {
        return Err(OnnxError::Empty { path: path.to_path_buf() });
    }
    // SAFETY: the mapping is read-only; the input is never written by this process.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
    let bytes = Bytes::from_owner(map);
    let bytes = maybe_inflate(path, bytes)?;
    let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
    decode(path, bytes, Some(&base_dir))
}

/// Decodes a model held in memory. External data is refused: it has no folder.
pub fn load_model_bytes(bytes: Vec<u8>) -> Result<LoadedModel, OnnxError> {
    let path = PathBuf::from("<memory>");
    if bytes.is_empty() {
        return Err(OnnxError::Empty { path });
    }
    let bytes = maybe_inflate(&path, Bytes::from(bytes))?;
    decode(&path, bytes, None)
}

fn maybe_inflate(path: &Path, bytes: Bytes) -> Result<Bytes, OnnxError> {
    if !bytes.starts_with(&[0x1f, 0x8b]) {
        return Ok(bytes);
    }
    let mut out = Vec::new();
    let mut reader = flate2::read::GzDecoder::new(&bytes[..]).take(MAX_INFLATED_BYTES + 1);
    reader.read_to_end(&mut out).map_err(|e| OnnxError::Decode {
        path: path.to_path_buf(),
        detail: format!("gzip stream: {e}"),
    })?;
    if out.len() as u64 > MAX_INFLATED_BYTES {
        return Err(OnnxError::Decode {
            path: path.to_path_buf(),
            detail: format!("gzip stream inflates past {MAX_INFLATED_BYTES} bytes"),
        });
    }
    Ok(Bytes::from(out))
}

fn decode(path: &Path, bytes: Bytes, base_dir: Option<&Path>) -> Result<LoadedModel, OnnxError> {
    let mut proto = pb::ModelProto::decode(bytes).map_err(|e| OnnxError::Decode {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })?;
    match &proto.graph {
        Some(g) if !g.node.is_empty() => {}
        _ => return Err(OnnxError::EmptyGraph { path: path.to_path_buf() }),
    }
    let mut resolver = ExternalData { model_path: path, base_dir, files: HashMap::new() };
    if let Some(graph) = proto.graph.as_mut() {
        resolver.resolve_graph(graph)?;
    }
    Ok(LoadedModel { path: path.to_path_buf(), proto })
}

/// Resolves `data_location = EXTERNAL` tensors to slices of mapped files.
struct ExternalData<'a> {
    model_path: &'a Path,
    base_dir: Option<&'a Path>,
    files: HashMap<PathBuf, Bytes>,
}

impl ExternalData<'_> {
    fn resolve_graph(&mut self, graph: &mut pb::GraphProto) -> Result<(), OnnxError> {
        for tensor in &mut graph.initializer {
            self.resolve_tensor(tensor)?;
        }
        for node in &mut graph.node {
            for attr in &mut node.attribute {
                if let Some(t) = attr.t.as_mut() {
                    self.resolve_tensor(t)?;
                }
                if let Some(g) = attr.g.as_mut() {
                    self.resolve_graph(g)?;
                }
                for g in &mut attr.graphs {
                    self.resolve_graph(g)?;
                }
            }
        }
        Ok(())
    }

    fn resolve_tensor(&mut self, tensor: &mut pb::TensorProto) -> Result<(), OnnxError> {
        if tensor.data_location != pb::tensor_proto::DataLocation::External as i32 {
            return Ok(());
        }
        let err = |detail: String| OnnxError::ExternalData {
            path: self.model_path.to_path_buf(),
            tensor: tensor.name.clone(),
            detail,
        };
        let mut location = None;
        let mut offset = 0u64;
        let mut length = None;
        for entry in &tensor.external_data {
            match entry.key.as_str() {
                "location" => location = Some(entry.value.clone()),
                "offset" => offset = entry.value.parse().map_err(|_| err(format!("bad offset '{}'", entry.value)))?,
                "length" => {
                    length = Some(entry.value.parse::<u64>().map_err(|_| err(format!("bad length '{}'", entry.value)))?)
                }
                _ => {}
            }
        }
        let location = location.ok_or_else(|| err("no 'location' key".into()))?;
        let base_dir = self
            .base_dir
            .ok_or_else(|| err("model loaded from memory cannot reference external files".into()))?;
        let file = resolve_location(base_dir, &location).map_err(err)?;
        if !self.files.contains_key(&file) {
            let f = std::fs::File::open(&file).map_err(|e| err(format!("cannot open '{location}': {e}")))?;
            // SAFETY: read-only mapping of a file this process never writes.
            let map = unsafe { memmap2::Mmap::map(&f) }.map_err(|e| err(format!("cannot map '{location}': {e}")))?;
            self.files.insert(file.clone(), Bytes::from_owner(map));
        }
        let data = &self.files[&file];
        let file_len = data.len() as u64;
        let length = length.unwrap_or(file_len.saturating_sub(offset));
        let end = offset.checked_add(length).ok_or_else(|| err("offset + length overflows".into()))?;
        if end > file_len {
            return Err(err(format!(
                "'{location}' holds {file_len} bytes, the tensor needs bytes {offset}..{end}"
            )));
        }
        tensor.raw_data = data.slice(offset as usize..end as usize);
        tensor.data_location = pb::tensor_proto::DataLocation::Default as i32;
        tensor.external_data.clear();
        Ok(())
    }
}

/// Joins a relative external-data location to the model folder, refusing
/// absolute paths and paths that escape the folder (also through symlinks).
fn resolve_location(base_dir: &Path, location: &str) -> Result<PathBuf, String> {
    let rel = Path::new(location);
    if location.is_empty() || rel.is_absolute() || rel.has_root() {
        return Err(format!("location '{location}' must be a path relative to the model's folder"));
    }
    if rel.components().any(|c| matches!(c, Component::ParentDir | Component::Prefix(_))) {
        return Err(format!("location '{location}' escapes the model's folder"));
    }
    let joined = base_dir.join(rel);
    let canon_base = std::fs::canonicalize(base_dir).map_err(|e| format!("model folder: {e}"))?;
    let canon = std::fs::canonicalize(&joined).map_err(|e| format!("cannot open '{location}': {e}"))?;
    if !canon.starts_with(&canon_base) {
        return Err(format!("location '{location}' resolves outside the model's folder"));
    }
    Ok(canon)
}
