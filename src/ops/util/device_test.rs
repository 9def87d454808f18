//! Tests of kernels through the executor on the test adapter (lavapipe in
//! CI): a graph from a few nodes, planned for one adapter kind, run once.
use crate::exec::device::{limits, Executor, PipelineCache};
use crate::ir::{self, AttrValue, DType, Dim, Graph, NodeParts, Parts, Tensor, TypeDecl};
use crate::runtime::Gpu;

/// The test adapter (a CPU one in CI).
pub(crate) fn gpu() -> Gpu {
    Gpu::open(None).expect("a wgpu adapter (scripts/test.sh installs lavapipe)")
}

/// A node of a registered op; `""` inputs or outputs are absent.
pub(crate) fn node(def: &'static crate::ops::OpDef, inputs: &[&str], outputs: &[&str], attrs: Vec<(&str, AttrValue)>) -> NodeParts {
    NodeParts::of(def, inputs.iter().map(|s| s.to_string()).collect(), outputs.iter().map(|s| s.to_string()).collect(), attrs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

/// A constant tensor (initializer) from f64 values in `dtype`.
pub(crate) fn tensor(dtype: DType, dims: &[usize], values: &[f64]) -> Tensor {
    let data: Vec<u8> = match dtype {
        DType::F32 => values.iter().flat_map(|&x| (x as f32).to_le_bytes()).collect(),
        DType::I64 => values.iter().flat_map(|&x| (x as i64).to_le_bytes()).collect(),
        DType::I32 => values.iter().flat_map(|&x| (x as i32).to_le_bytes()).collect(),
        DType::Bool => values.iter().map(|&x| u8::from(x != 0.0)).collect(),
        d => panic!("no test tensors of {}", d.name()),
    };
    Tensor { dtype, dims: dims.iter().map(|&d| d as i64).collect(), data: data.into() }
}

/// A graph of `nodes` (opset `opset`) with typed inputs and constants.
pub(crate) fn graph(opset: i64, nodes: Vec<NodeParts>, inputs: &[(&str, DType, &[usize])], constants: Vec<(&str, Tensor)>, outputs: &[&str]) -> Graph {
    let parts = Parts {
        name: "test".into(),
        symbols: Vec::new(),
        initializers: constants.into_iter().map(|(n, t)| (n.to_string(), t)).collect(),
        inputs: inputs.iter().map(|(n, d, s)| (n.to_string(), Some(TypeDecl { dtype: Some(*d), shape: Some(s.iter().map(|&x| Dim::Known(x as i64)).collect()) }))).collect(),
        outputs: outputs.iter().map(|n| (n.to_string(), None)).collect(),
        value_info: Vec::new(),
        nodes,
    };
    let how = ir::Resolve { path: "test.onnx".into(), opset, producer: String::new(), body: false, keep_order: false, infer: true };
    ir::resolve(parts, &how).expect("the test graph resolves")
}

/// The graph on the adapter, planned as for a CPU adapter or not (`cpu`:
/// `None` for the adapter's own kind), with random streams seeded by `seed`.
pub(crate) fn executor<'g>(gpu: &'g Gpu, g: Graph, cpu: Option<bool>, seed: u64) -> Executor<'g> {
    let mut l = limits(gpu);
    if let Some(c) = cpu {
        l.cpu = c;
    }
    let program = crate::exec::plan(g, l).expect("the test graph plans");
    Executor::new(gpu, program, &mut PipelineCache::default(), seed).expect("the test graph compiles")
}
