//! ONNX decoding and encoding: the only module that sees the protobuf types.
//!
//! A model file is memory-mapped and decoded with prost straight from the
//! mapping, so tensor payloads (`raw_data`) are slices of the file, not copies.
//! Gzip-compressed models (`.onnx.gz`, detected by magic bytes) are inflated
//! into memory first. External data is resolved relative to the model's folder
//! and mapped the same way.

pub(crate) mod pb;

mod builder;
mod load;

pub use builder::{Attr, GraphBuilder, TensorData};
pub use load::{load_model, load_model_bytes, LoadedModel};

use std::path::PathBuf;

/// Largest dimension product accepted anywhere (elements of one tensor).
pub const MAX_ELEMENTS: u64 = 1 << 40;

/// Errors from reading an ONNX model; each names the file and the tensor or node.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    /// The file could not be opened or read.
    #[error("{path}: cannot read model file: {source}")]
    Io {
        /// The model file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The bytes are not a valid ONNX protobuf (truncated or corrupt).
    #[error("{path}: not a valid ONNX model (truncated or corrupt protobuf): {detail}")]
    Decode {
        /// The model file.
        path: PathBuf,
        /// What the decoder reported.
        detail: String,
    },
    /// The file is empty.
    #[error("{path}: file is empty, not an ONNX model")]
    Empty {
        /// The model file.
        path: PathBuf,
    },
    /// The model holds no graph, or a graph without nodes.
    #[error("{path}: the model has an empty graph (no nodes)")]
    EmptyGraph {
        /// The model file.
        path: PathBuf,
    },
    /// A tensor's external data could not be resolved.
    #[error("{path}: tensor '{tensor}': external data: {detail}")]
    ExternalData {
        /// The model file.
        path: PathBuf,
        /// The initializer.
        tensor: String,
        /// What is wrong (missing file, escaping path, out-of-range offset).
        detail: String,
    },
    /// A tensor's dims or data are inconsistent or absurdly large.
    #[error("{path}: tensor '{tensor}': {detail}")]
    BadTensor {
        /// The model file.
        path: PathBuf,
        /// The tensor.
        tensor: String,
        /// What is wrong.
        detail: String,
    },
    /// Writing an output file failed.
    #[error("{path}: cannot write: {source}")]
    Write {
        /// The output file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// Writes `bytes` to `path` atomically: a temporary file beside it, then a rename.
pub fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> Result<(), OnnxError> {
    use std::io::Write;
    let err = |source| OnnxError::Write { path: path.to_path_buf(), source };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(err)
}
