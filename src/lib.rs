//! adamp-graph: static scale-invariance analysis of ONNX graphs for the
//! AdamP/SGDP optimizers (Heo et al., ICLR 2021).
//!
//! The pipeline follows the data:
//! [`onnx`] (decode, external data) → [`ir`] (graph, shapes) →
//! [`analysis`] (scale-invariance classes with evidence) → [`plan`]
//! (optimizer-state plan) → [`rewrite`] (the ONNX training-step graph) and
//! `runtime` (wgpu device, WGSL kernels; cargo feature `gpu`, on by default)
//! → [`cli`]. [`optim`] describes the optimizers once, without a GPU.
//! [`data`] reads the training data (`.npz`); [`train`] holds the run's
//! learning-rate schedules and checkpoints.
#![deny(missing_docs)]

pub mod analysis;
pub mod cli;
pub mod data;
pub mod exec;
pub mod ir;
pub mod onnx;
pub mod ops;
pub mod optim;
pub mod plan;
pub mod report;
pub mod rewrite;
pub mod train;
#[cfg(feature = "gpu")]
pub mod runtime;

use std::path::Path;

/// Any error the library reports; each names the file, node or tensor.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or decoding the model.
    #[error(transparent)]
    Onnx(#[from] onnx::OnnxError),
    /// Building the graph.
    #[error(transparent)]
    Ir(#[from] ir::IrError),
}

/// Loads a model file and builds its IR.
pub fn load_graph(path: &Path) -> Result<ir::Graph, Error> {
    let model = onnx::load_model(path)?;
    Ok(ir::from_model(&model)?)
}

/// Loads a model file and analyses it.
pub fn analyze_file(path: &Path) -> Result<analysis::Analysis, Error> {
    Ok(analysis::analyze(&load_graph(path)?))
}

/// Analyses a model held in memory (no external data).
pub fn analyze_bytes(bytes: Vec<u8>) -> Result<analysis::Analysis, Error> {
    let model = onnx::load_model_bytes(bytes)?;
    Ok(analysis::analyze(&ir::from_model(&model)?))
}
