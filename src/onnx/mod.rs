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
#[cfg(test)]
pub(crate) mod node_tests;
mod output;
mod read;
mod wire;
mod write;

pub use builder::{Attr, GraphBuilder, TensorData};
pub use load::{load_model, load_model_bytes, load_model_bytes_with, load_model_with, open_input, LoadLimits, LoadedModel};
pub use output::{check_output, write_atomic};
pub(crate) use read::read_parts;
pub use read::read_tensor_file;
pub use write::{write_model, ModelInfo};

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
    /// The path is a directory, FIFO, socket or device, not a model file.
    #[error("{path}: is {kind}; give the path of a model file")]
    NotAFile {
        /// The path given.
        path: PathBuf,
        /// What it is instead.
        kind: &'static str,
    },
    /// The file holds more protobuf entries than its size can justify (a
    /// decompression bomb or a flood of empty messages).
    #[error(
        "{path}: holds more than {allowed} protobuf entries (nodes, attributes, tensors, names) in {stored} bytes as stored; \
         a real model needs more bytes per entry, so it is refused before decoding"
    )]
    TooManyEntries {
        /// The model file.
        path: PathBuf,
        /// Its size as stored (compressed, for gzip).
        stored: u64,
        /// The entries its size allows.
        allowed: u64,
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
    /// An output path that must not be written: one of the inputs, or not a regular file.
    #[error("{path}: refusing to write the output here: {reason}")]
    OutputRefused {
        /// The output path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// An attribute of a type the IR keeps by name only (sparse tensors, type protos) cannot be written.
    #[error("{path}: node '{node}': attribute '{attribute}' has a type the ONNX writer does not support")]
    Unwritable {
        /// The model file.
        path: PathBuf,
        /// The node.
        node: String,
        /// The attribute.
        attribute: String,
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

impl OnnxError {
    /// The cause without the path, for errors reported under another file's name.
    pub fn cause(&self) -> String {
        match self {
            OnnxError::Io { source, .. } | OnnxError::Write { source, .. } => source.to_string(),
            OnnxError::NotAFile { kind, .. } => format!("is {kind}"),
            other => other.to_string(),
        }
    }
}
