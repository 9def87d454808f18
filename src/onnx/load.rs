//! Reading model files: memory mapping, gzip, external data.
use super::{pb, OnnxError};
use bytes::Bytes;
use prost::Message;
use std::collections::HashMap;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

/// A decoded ONNX model with every tensor's payload resolved in memory.
#[derive(Debug)]
pub struct LoadedModel {
    /// The file it came from (for error messages); `<memory>` for bytes.
    pub path: PathBuf,
    pub(crate) proto: pb::ModelProto,
    /// Every file the model was read from: the model and its external-data files.
    pub(crate) inputs: Vec<PathBuf>,
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

    /// The model with these float32 initializers' values replaced (trained
    /// parameters, BatchNorm running statistics); every name must be a float32
    /// initializer of the model's graph, holding as many elements.
    pub fn with_initializers(&self, values: &std::collections::HashMap<String, Vec<f32>>) -> Result<LoadedModel, OnnxError> {
        let mut proto = self.proto.clone();
        let bad = |tensor: &str, detail: String| OnnxError::BadTensor { path: self.path.clone(), tensor: tensor.to_string(), detail };
        let mut found = std::collections::HashSet::new();
        if let Some(g) = proto.graph.as_mut() {
            for t in g.initializer.iter_mut() {
                let Some(v) = values.get(&t.name) else { continue };
                if t.data_type != pb::tensor_proto::DataType::Float as i32 {
                    return Err(bad(&t.name, "is not a float32 initializer; trained values are float32".into()));
                }
                let n: i64 = t.dims.iter().product();
                if n != v.len() as i64 {
                    return Err(bad(&t.name, format!("has {n} elements; {} trained values were given", v.len())));
                }
                t.raw_data = v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>().into();
                t.float_data.clear();
                t.external_data.clear();
                t.data_location = 0;
                found.insert(t.name.clone());
            }
        }
        if let Some(missing) = values.keys().find(|k| !found.contains(*k)) {
            return Err(bad(missing, "is not an initializer of the model".into()));
        }
        Ok(LoadedModel { path: self.path.clone(), proto, inputs: self.inputs.clone() })
    }

    /// Every file the model was read from (the model file and its external-data
    /// files), so that outputs can refuse to replace any of them.
    pub fn input_files(&self) -> &[PathBuf] {
        &self.inputs
    }

    /// The model's producer, as the exporter recorded it.
    pub fn producer(&self) -> String {
        format!("{} {}", self.proto.producer_name, self.proto.producer_version).trim().to_string()
    }
}

/// Bounds on what a model file may make the loader allocate, relative to the
/// bytes it really holds: a small file cannot claim a large model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadLimits {
    /// Largest inflated size of a gzip-compressed model. Protobuf caps one
    /// message at 2 GiB, so nothing larger can be a valid model.
    pub max_inflated_bytes: u64,
    /// Protobuf entries (nodes, attributes, tensors, value infos, names) any
    /// model may hold, whatever its size.
    pub entries_floor: u64,
    /// Further entries allowed per byte of the file as stored (the compressed
    /// size for gzip), so that a tiny file of empty messages cannot decode into
    /// gigabytes of structs.
    pub entries_per_byte: u64,
}

impl Default for LoadLimits {
    fn default() -> Self {
        LoadLimits { max_inflated_bytes: 2 << 30, entries_floor: 1 << 18, entries_per_byte: 2 }
    }
}

/// Loads a model file (`.onnx`, or gzip-compressed), resolving external data
/// relative to the file's folder. The file is only read, never modified.
pub fn load_model(path: &Path) -> Result<LoadedModel, OnnxError> {
    load_model_with(path, &LoadLimits::default())
}

/// [`load_model`] under explicit limits.
pub fn load_model_with(path: &Path, limits: &LoadLimits) -> Result<LoadedModel, OnnxError> {
    let (file, len) = open_input(path)?;
    if len == 0 {
        return Err(OnnxError::Empty { path: path.to_path_buf() });
    }
    let io = |source| OnnxError::Io { path: path.to_path_buf(), source };
    // SAFETY: the mapping is read-only; the input is never written by this process.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
    let bytes = Bytes::from_owner(map);
    let bytes = maybe_inflate(path, bytes, limits)?;
    let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
    decode(path, bytes, len, Some(&base_dir), limits)
}

/// Decodes a model held in memory. External data is refused: it has no folder.
pub fn load_model_bytes(bytes: Vec<u8>) -> Result<LoadedModel, OnnxError> {
    load_model_bytes_with(bytes, &LoadLimits::default())
}

/// [`load_model_bytes`] under explicit limits.
pub fn load_model_bytes_with(bytes: Vec<u8>, limits: &LoadLimits) -> Result<LoadedModel, OnnxError> {
    let path = PathBuf::from("<memory>");
    if bytes.is_empty() {
        return Err(OnnxError::Empty { path });
    }
    let stored = bytes.len() as u64;
    let bytes = maybe_inflate(&path, Bytes::from(bytes), limits)?;
    decode(&path, bytes, stored, None, limits)
}

/// Opens a file this process will only read, refusing anything but a regular
/// file: a directory, and a FIFO or device, which could block or never end.
/// Returns the file and its length.
pub fn open_input(path: &Path) -> Result<(std::fs::File, u64), OnnxError> {
    let io = |source| OnnxError::Io { path: path.to_path_buf(), source };
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // Opening a FIFO for reading blocks until a writer comes; O_NONBLOCK
        // returns at once and the type check below refuses it.
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options.open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if meta.is_dir() {
        return Err(OnnxError::NotAFile { path: path.to_path_buf(), kind: "a directory" });
    }
    if !meta.is_file() {
        return Err(OnnxError::NotAFile { path: path.to_path_buf(), kind: "not a regular file (a FIFO, socket or device)" });
    }
    Ok((file, meta.len()))
}

fn maybe_inflate(path: &Path, bytes: Bytes, limits: &LoadLimits) -> Result<Bytes, OnnxError> {
    if !bytes.starts_with(&[0x1f, 0x8b]) {
        return Ok(bytes);
    }
    let cap = limits.max_inflated_bytes;
    let mut out = Vec::new();
    // Multi-member streams (concatenated gzip files, pigz) are valid gzip.
    let mut reader = flate2::read::MultiGzDecoder::new(&bytes[..]).take(cap + 1);
    reader.read_to_end(&mut out).map_err(|e| OnnxError::Decode {
        path: path.to_path_buf(),
        detail: format!("gzip stream: {e}"),
    })?;
    if out.len() as u64 > cap {
        return Err(OnnxError::Decode {
            path: path.to_path_buf(),
            detail: format!("gzip stream inflates past {cap} bytes (protobuf's limit for one model)"),
        });
    }
    Ok(Bytes::from(out))
}

fn decode(path: &Path, bytes: Bytes, stored: u64, base_dir: Option<&Path>, limits: &LoadLimits) -> Result<LoadedModel, OnnxError> {
    let allowed = limits.entries_floor.saturating_add(limits.entries_per_byte.saturating_mul(stored));
    let entries = super::wire::count_entries(&bytes, allowed);
    if entries > allowed {
        return Err(OnnxError::TooManyEntries { path: path.to_path_buf(), stored, allowed });
    }
    let mut proto = pb::ModelProto::decode(bytes).map_err(|e| OnnxError::Decode {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })?;
    match &proto.graph {
        Some(g) if !g.node.is_empty() => {}
        _ => return Err(OnnxError::EmptyGraph { path: path.to_path_buf() }),
    }
    let mut resolver = ExternalData { model_path: path, base_dir, files: HashMap::new() };
    resolver.resolve_model(&mut proto)?;
    let mut inputs: Vec<PathBuf> = base_dir.map(|_| path.to_path_buf()).into_iter().collect();
    inputs.extend(resolver.files.into_keys());
    Ok(LoadedModel { path: path.to_path_buf(), proto, inputs })
}

/// Resolves `data_location = EXTERNAL` tensors to slices of mapped files.
struct ExternalData<'a> {
    model_path: &'a Path,
    base_dir: Option<&'a Path>,
    files: HashMap<PathBuf, Bytes>,
}

impl ExternalData<'_> {
    /// Visits every tensor the model holds: initializers, sparse initializers,
    /// attribute tensors (`TENSOR`, `TENSORS`, sparse ones) in every subgraph,
    /// functions and training graphs, so that none escapes the checks.
    fn resolve_model(&mut self, model: &mut pb::ModelProto) -> Result<(), OnnxError> {
        if let Some(graph) = model.graph.as_mut() {
            self.resolve_graph(graph)?;
        }
        for f in &mut model.functions {
            for node in &mut f.node {
                self.resolve_node(node)?;
            }
            for attr in &mut f.attribute_proto {
                self.resolve_attribute(attr)?;
            }
        }
        for t in &mut model.training_info {
            for g in t.initialization.iter_mut().chain(t.algorithm.iter_mut()) {
                self.resolve_graph(g)?;
            }
        }
        Ok(())
    }

    fn resolve_graph(&mut self, graph: &mut pb::GraphProto) -> Result<(), OnnxError> {
        for tensor in &mut graph.initializer {
            self.resolve_tensor(tensor)?;
        }
        for sparse in &mut graph.sparse_initializer {
            self.resolve_sparse(sparse)?;
        }
        for node in &mut graph.node {
            self.resolve_node(node)?;
        }
        Ok(())
    }

    fn resolve_node(&mut self, node: &mut pb::NodeProto) -> Result<(), OnnxError> {
        for attr in &mut node.attribute {
            self.resolve_attribute(attr)?;
        }
        Ok(())
    }

    fn resolve_attribute(&mut self, attr: &mut pb::AttributeProto) -> Result<(), OnnxError> {
        for t in attr.t.iter_mut().chain(attr.tensors.iter_mut()) {
            self.resolve_tensor(t)?;
        }
        for s in attr.sparse_tensor.iter_mut().chain(attr.sparse_tensors.iter_mut()) {
            self.resolve_sparse(s)?;
        }
        for g in attr.g.iter_mut().chain(attr.graphs.iter_mut()) {
            self.resolve_graph(g)?;
        }
        Ok(())
    }

    fn resolve_sparse(&mut self, sparse: &mut pb::SparseTensorProto) -> Result<(), OnnxError> {
        for t in sparse.values.iter_mut().chain(sparse.indices.iter_mut()) {
            self.resolve_tensor(t)?;
        }
        Ok(())
    }

    fn resolve_tensor(&mut self, tensor: &mut pb::TensorProto) -> Result<(), OnnxError> {
        if tensor.data_location == pb::tensor_proto::DataLocation::External as i32 {
            self.resolve_external(tensor)?;
        }
        check_payload(self.model_path, tensor)
    }

    fn resolve_external(&mut self, tensor: &mut pb::TensorProto) -> Result<(), OnnxError> {
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
            let (f, _) = open_input(&file).map_err(|e| err(format!("'{location}': {}", e.cause())))?;
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

/// Refuses a tensor that declares elements but holds no data, or far fewer
/// entries than elements: its size would come from the dims alone, and later
/// stages (bench, rewrite) allocate by size. Every element is backed by input.
fn check_payload(model_path: &Path, t: &pb::TensorProto) -> Result<(), OnnxError> {
    // Negative or overflowing dims are the IR's to report, with their own message.
    let Some(elements) = t.dims.iter().try_fold(1u64, |acc, &d| u64::try_from(d).ok().and_then(|d| acc.checked_mul(d))) else {
        return Ok(());
    };
    let entries = t.raw_data.len()
        + t.float_data.len()
        + t.int32_data.len()
        + t.string_data.len()
        + t.int64_data.len()
        + t.double_data.len()
        + t.uint64_data.len();
    // Two elements per entry: 4-bit types pack two into a byte.
    if elements > 2 * entries as u64 {
        return Err(OnnxError::BadTensor {
            path: model_path.to_path_buf(),
            tensor: t.name.clone(),
            detail: if entries == 0 {
                format!("dims {:?} declare {elements} elements but the tensor holds no data", t.dims)
            } else {
                format!("dims {:?} declare {elements} elements but the tensor holds only {entries} data entries", t.dims)
            },
        });
    }
    Ok(())
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
