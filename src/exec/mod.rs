//! The executor: runs a graph (the forward-and-backward graph of
//! [`crate::rewrite::gradient_graph`]) with WGSL kernels on wgpu.
//!
//! [`plan`] specialises the graph for concrete input shapes and plans the
//! device memory; each op's kernel ([`kernel::KernelFn`], in the op's file
//! under `src/ops/`) turns a node with static shapes into WGSL launches;
//! `device` (feature `gpu`) compiles them, keeps parameters resident and
//! records a whole step into one command encoder.
pub mod kernel;
pub mod plan;

#[cfg(feature = "gpu")]
pub mod device;

#[cfg(feature = "gpu")]
pub use device::Executor;
pub use plan::{plan, specialize, specialize_with, Program};

#[cfg(all(test, feature = "gpu"))]
mod node_tests;

/// Errors of the executor; each names the node, value or array.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// An op without a WGSL kernel.
    #[error("node '{node}' ({op}) has no WGSL kernel. Ops with kernels: {}", kernel_ops().join(", "))]
    NoKernel {
        /// The node.
        node: String,
        /// Its op type.
        op: String,
    },
    /// A node the kernels cannot run as given.
    #[error("node '{node}' ({op}): {detail}")]
    Node {
        /// The node.
        node: String,
        /// Its op type.
        op: String,
        /// What is wrong.
        detail: String,
    },
    /// An input fed with the wrong shape or type.
    #[error("input '{name}': {detail}")]
    InputShape {
        /// The input.
        name: String,
        /// What is wrong.
        detail: String,
    },
    /// A value the caller asked for that the program does not hold.
    #[error("'{0}' is not a tensor of the program")]
    NoValue(String),
    /// A float32 tensor asked for as integers.
    #[error("'{0}' is a float32 tensor, not an integer or bool one")]
    NotIntegers(String),
    /// Building the specialised graph.
    #[error(transparent)]
    Ir(#[from] crate::ir::IrError),
    /// The device.
    #[cfg(feature = "gpu")]
    #[error(transparent)]
    Gpu(#[from] crate::runtime::GpuError),
    /// The adapter cannot hold the program.
    #[error("{0}")]
    Device(String),
}

/// The ops that have a WGSL kernel, sorted.
pub fn kernel_ops() -> Vec<&'static str> {
    let mut v: Vec<&'static str> = crate::ops::all().filter(|d| d.kernel.is_some()).map(|d| d.name).collect();
    v.sort_unstable();
    v.dedup();
    v
}
