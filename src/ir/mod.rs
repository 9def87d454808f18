//! The analysis IR: an SSA dataflow graph of ONNX nodes and values, in
//! topological order, with the shapes and small constant values that the
//! analysis needs (inferred here where the exporter left them out).

mod build;
mod shape;

pub use build::{from_model, IrError};
pub(crate) use build::{resolve, Resolve};
pub(crate) use shape::{infer_body, refine, MAX_TRACKED_INTS};
pub use crate::ops::util::broadcast::broadcast;
pub use crate::ops::util::dims::{norm_axis, product};
pub use crate::ops::util::axes::reduce_axes;

use bytes::Bytes;
use std::collections::HashMap;
use std::path::PathBuf;

/// Index of a value in [`Graph::values`].
pub type ValueId = usize;
/// Index of a node in [`Graph::nodes`] (which is topologically sorted).
pub type NodeId = usize;

/// One dimension of a shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dim {
    /// A known size.
    Known(i64),
    /// A named symbolic size (index into [`Graph::symbols`]); equal ids are equal sizes.
    Sym(u32),
    /// Nothing is known.
    Unknown,
}

impl Dim {
    /// The size, when known.
    pub fn known(self) -> Option<i64> {
        match self {
            Dim::Known(n) => Some(n),
            _ => None,
        }
    }
}

/// Element types the analysis distinguishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DType {
    /// float32
    #[default]
    F32,
    /// float64
    F64,
    /// float16
    F16,
    /// bfloat16
    BF16,
    /// int64
    I64,
    /// int32
    I32,
    /// bool
    Bool,
    /// any other ONNX type code
    Other(i32),
}

impl DType {
    /// From the ONNX `TensorProto.DataType` code.
    pub fn from_onnx(code: i32) -> DType {
        match code {
            1 => DType::F32,
            11 => DType::F64,
            10 => DType::F16,
            16 => DType::BF16,
            7 => DType::I64,
            6 => DType::I32,
            9 => DType::Bool,
            c => DType::Other(c),
        }
    }

    /// The ONNX `TensorProto.DataType` code (inverse of [`DType::from_onnx`]).
    pub fn onnx_code(self) -> i32 {
        match self {
            DType::F32 => 1,
            DType::F64 => 11,
            DType::F16 => 10,
            DType::BF16 => 16,
            DType::I64 => 7,
            DType::I32 => 6,
            DType::Bool => 9,
            DType::Other(c) => c,
        }
    }

    /// True for the floating-point types that hold trainable weights.
    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F64 | DType::F16 | DType::BF16)
    }

    /// Bytes per element, where fixed.
    pub fn size(self) -> Option<usize> {
        match self {
            DType::F32 | DType::I32 => Some(4),
            DType::F64 | DType::I64 => Some(8),
            DType::F16 | DType::BF16 => Some(2),
            DType::Bool => Some(1),
            DType::Other(_) => None,
        }
    }

    /// The name used in reports (`float32`, ...).
    pub fn name(self) -> String {
        match self {
            DType::F32 => "float32".into(),
            DType::F64 => "float64".into(),
            DType::F16 => "float16".into(),
            DType::BF16 => "bfloat16".into(),
            DType::I64 => "int64".into(),
            DType::I32 => "int32".into(),
            DType::Bool => "bool".into(),
            DType::Other(c) => format!("onnx-type-{c}"),
        }
    }
}

/// A constant tensor: an initializer or a `Constant` node's value.
#[derive(Debug, Clone)]
pub struct Tensor {
    /// Element type.
    pub dtype: DType,
    /// Dimensions (validated non-negative, product bounded).
    pub dims: Vec<i64>,
    /// Little-endian element bytes; a slice of the mapped model file when possible.
    pub data: Bytes,
}

impl Tensor {
    /// Number of elements.
    pub fn elements(&self) -> u64 {
        self.dims.iter().map(|&d| d as u64).product()
    }

    /// The values as i64 when this is a small integer tensor.
    pub fn as_ints(&self) -> Option<Vec<i64>> {
        let n = self.elements() as usize;
        if n > shape::MAX_TRACKED_INTS {
            return None;
        }
        match self.dtype {
            DType::I64 if self.data.len() == n * 8 => {
                Some(self.data.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8]))).collect())
            }
            DType::I32 if self.data.len() == n * 4 => Some(
                self.data.chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().unwrap_or([0; 4])) as i64).collect(),
            ),
            _ => None,
        }
    }

    /// The values as f64 when this is a small float or integer tensor.
    pub fn as_floats(&self) -> Option<Vec<f64>> {
        if self.elements() as usize > shape::MAX_TRACKED_INTS || self.dtype == DType::Bool {
            return None;
        }
        self.values()
    }

    /// Every element as f64 (bools as 0 and 1), whatever the size; `None` for
    /// other types or data that does not match the dims.
    pub fn values(&self) -> Option<Vec<f64>> {
        let n = self.elements() as usize;
        let size = self.dtype.size()?;
        if self.data.len() != n.checked_mul(size)? {
            return None;
        }
        self.data
            .chunks_exact(size)
            .map(|c| match self.dtype {
                DType::F32 => Some(f32::from_le_bytes(c.try_into().ok()?) as f64),
                DType::F64 => Some(f64::from_le_bytes(c.try_into().ok()?)),
                DType::F16 => Some(half_to_f64(u16::from_le_bytes(c.try_into().ok()?))),
                DType::BF16 => Some(f32::from_bits((u16::from_le_bytes(c.try_into().ok()?) as u32) << 16) as f64),
                DType::I64 => Some(i64::from_le_bytes(c.try_into().ok()?) as f64),
                DType::I32 => Some(i32::from_le_bytes(c.try_into().ok()?) as f64),
                DType::Bool => Some(f64::from(c[0] != 0)),
                _ => None,
            })
            .collect()
    }

    /// The value as f64 when this is a one-element float or integer tensor.
    pub fn as_scalar(&self) -> Option<f64> {
        if self.elements() != 1 {
            return None;
        }
        let b = &self.data[..];
        match self.dtype {
            DType::F32 if b.len() == 4 => Some(f32::from_le_bytes(b.try_into().ok()?) as f64),
            DType::F64 if b.len() == 8 => Some(f64::from_le_bytes(b.try_into().ok()?)),
            DType::F16 if b.len() == 2 => Some(half_to_f64(u16::from_le_bytes(b.try_into().ok()?))),
            DType::BF16 if b.len() == 2 => Some(f32::from_bits((u16::from_le_bytes(b.try_into().ok()?) as u32) << 16) as f64),
            DType::I64 if b.len() == 8 => Some(i64::from_le_bytes(b.try_into().ok()?) as f64),
            DType::I32 if b.len() == 4 => Some(i32::from_le_bytes(b.try_into().ok()?) as f64),
            DType::Bool if b.len() == 1 => Some(b[0] as f64),
            _ => None,
        }
    }
}

/// IEEE half precision to f64 (exact).
fn half_to_f64(h: u16) -> f64 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = ((h >> 10) & 0x1f) as i32;
    let frac = (h & 0x3ff) as f64;
    sign * match exp {
        0 => frac * 2f64.powi(-24),
        31 if frac == 0.0 => f64::INFINITY,
        31 => f64::NAN,
        e => (1.0 + frac / 1024.0) * 2f64.powi(e - 15),
    }
}

/// An attribute value.
#[derive(Debug, Clone)]
pub enum AttrValue {
    /// INT
    Int(i64),
    /// FLOAT
    Float(f32),
    /// INTS
    Ints(Vec<i64>),
    /// FLOATS
    Floats(Vec<f32>),
    /// STRING
    Str(String),
    /// STRINGS
    Strings(Vec<String>),
    /// TENSOR
    Tensor(Tensor),
    /// TENSORS
    Tensors(Vec<Tensor>),
    /// GRAPH: a subgraph (an If branch, a Loop or Scan body); its reads of
    /// the enclosing scope are its [`Graph::captures`]
    Graph(Box<Graph>),
    /// GRAPHS
    Graphs(Vec<Graph>),
    /// anything else (sparse tensors, type protos): kept by name only
    Other,
}

impl AttrValue {
    /// The subgraphs the attribute holds (none for other types).
    pub fn subgraphs(&self) -> &[Graph] {
        match self {
            AttrValue::Graph(g) => std::slice::from_ref(g),
            AttrValue::Graphs(gs) => gs,
            _ => &[],
        }
    }
}

/// One ONNX node.
#[derive(Debug, Clone)]
pub struct Node {
    /// The node's name, or `op_type#index` when the model left it empty.
    pub name: String,
    /// Operator type (`Conv`, ...).
    pub op_type: String,
    /// The registry's definition of the op (`None` for ops it does not know,
    /// custom domains included).
    pub def: Option<&'static crate::ops::OpDef>,
    /// Operator domain (`""` for the default ONNX domain).
    pub domain: String,
    /// Inputs; `None` for an absent optional input.
    pub inputs: Vec<Option<ValueId>>,
    /// Outputs; `None` for an absent optional output.
    pub outputs: Vec<Option<ValueId>>,
    /// Outer-scope values read by the node's subgraphs (If, Loop, Scan).
    pub implicit_inputs: Vec<ValueId>,
    /// Attributes by name.
    pub attrs: HashMap<String, AttrValue>,
    /// Index of the node in the model file's node list.
    pub source: usize,
}

impl Node {
    /// True for the default ONNX domain.
    pub fn is_default_domain(&self) -> bool {
        self.domain.is_empty() || self.domain == "ai.onnx"
    }

    /// True when the node is the op `def` (its domain included).
    pub fn is(&self, def: &crate::ops::OpDef) -> bool {
        self.def.is_some_and(|d| d == def)
    }

    /// Input `i`, when present.
    pub fn input(&self, i: usize) -> Option<ValueId> {
        self.inputs.get(i).copied().flatten()
    }

    /// Output `i`, when present.
    pub fn output(&self, i: usize) -> Option<ValueId> {
        self.outputs.get(i).copied().flatten()
    }
}

/// One SSA value (tensor) of the graph.
#[derive(Debug, Clone, Default)]
pub struct Value {
    /// The ONNX name.
    pub name: String,
    /// Element type, when known.
    pub dtype: Option<DType>,
    /// Shape, when the rank is known.
    pub shape: Option<Vec<Dim>>,
    /// The node that computes it (`None` for graph inputs and initializers).
    pub producer: Option<NodeId>,
    /// Every `(node, input index)` reading it; implicit subgraph reads use `usize::MAX`.
    pub consumers: Vec<(NodeId, usize)>,
    /// Index into [`Graph::initializers`] when the value is an initializer.
    pub initializer: Option<usize>,
    /// True for graph outputs.
    pub is_output: bool,
    /// True when the value depends on no graph input (computed from constants only).
    pub is_const: bool,
    /// The elements of a small integer tensor (shape arithmetic), when known.
    pub ints: Option<Vec<Dim>>,
    /// The value of a one-element numeric constant, when known.
    pub scalar: Option<f64>,
}

impl Value {
    /// Rank, when known.
    pub fn rank(&self) -> Option<usize> {
        self.shape.as_ref().map(Vec::len)
    }
}

/// What a model file declares about a value: element type and shape (graph
/// inputs and outputs, value_info), kept so that a written model declares the same.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TypeDecl {
    /// Element type, when declared.
    pub dtype: Option<DType>,
    /// Shape, when declared (symbolic dims index [`Graph::symbols`]).
    pub shape: Option<Vec<Dim>>,
}

/// A named initializer.
#[derive(Debug, Clone)]
pub struct Initializer {
    /// Its value id.
    pub value: ValueId,
    /// Its data.
    pub tensor: Tensor,
}

/// The whole graph.
#[derive(Debug, Clone)]
pub struct Graph {
    /// The file the model came from.
    pub model_path: PathBuf,
    /// The graph's name.
    pub name: String,
    /// Default-domain opset.
    pub opset: i64,
    /// Producer recorded in the model.
    pub producer: String,
    /// Nodes in topological order.
    pub nodes: Vec<Node>,
    /// All values.
    pub values: Vec<Value>,
    /// Initializers.
    pub initializers: Vec<Initializer>,
    /// Graph inputs that are not initializers.
    pub inputs: Vec<ValueId>,
    /// Graph outputs.
    pub outputs: Vec<ValueId>,
    /// Every graph input as the file lists it, initializers among them
    /// included (overridable initializers), with its declared type (`None`: not a tensor type).
    pub input_decls: Vec<(ValueId, Option<TypeDecl>)>,
    /// The declared type of each graph output (parallel to `outputs`).
    pub output_decls: Vec<Option<TypeDecl>>,
    /// The file's value_info declarations of other values, in file order.
    pub value_info: Vec<(ValueId, TypeDecl)>,
    /// Values of enclosing scopes that a subgraph reads (empty for a model's graph):
    /// values without a producer, named as in the enclosing scope.
    pub captures: Vec<ValueId>,
    /// Names of symbolic dims.
    pub symbols: Vec<String>,
    /// Values whose exporter-declared shape disagrees with the inferred one
    /// (the inferred shape is used).
    pub shape_conflicts: Vec<ShapeConflict>,
    /// Value ids by name.
    pub(crate) by_name: HashMap<String, ValueId>,
}

/// A graph as named parts, before names are resolved to values: what the
/// ONNX reader and the rewrite build, and [`resolve`] turns into a [`Graph`].
#[derive(Debug, Clone, Default)]
pub struct Parts {
    /// The graph's name.
    pub name: String,
    /// Names of the symbolic dims the declarations use.
    pub symbols: Vec<String>,
    /// Initializers by name.
    pub initializers: Vec<(String, Tensor)>,
    /// Graph inputs with their declared types (initializers among them are skipped).
    pub inputs: Vec<(String, Option<TypeDecl>)>,
    /// Graph outputs with their declared types.
    pub outputs: Vec<(String, Option<TypeDecl>)>,
    /// Declarations of computed values.
    pub value_info: Vec<(String, TypeDecl)>,
    /// Nodes (any order).
    pub nodes: Vec<NodeParts>,
}

/// One node by value names (`""`: an absent optional input or output).
#[derive(Debug, Clone, Default)]
pub struct NodeParts {
    /// The node's name (`""`: named `op_type#index` when resolved).
    pub name: String,
    /// Operator type.
    pub op_type: String,
    /// Operator domain.
    pub domain: String,
    /// The registry's definition, when the builder knows it (else looked up).
    pub def: Option<&'static crate::ops::OpDef>,
    /// Input names.
    pub inputs: Vec<String>,
    /// Output names.
    pub outputs: Vec<String>,
    /// Attributes in order.
    pub attrs: Vec<(String, AttrValue)>,
}

impl NodeParts {
    /// A node of a registered op.
    pub fn of(def: &'static crate::ops::OpDef, inputs: Vec<String>, outputs: Vec<String>, attrs: Vec<(String, AttrValue)>) -> NodeParts {
        NodeParts { name: String::new(), op_type: def.name.into(), domain: def.domain.into(), def: Some(def), inputs, outputs, attrs }
    }
}

/// A declared (value_info) shape that contradicts what the op definitions imply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapeConflict {
    /// The value.
    pub value: ValueId,
    /// The declared shape, rendered (`[N, 3, 224]`).
    pub declared: String,
    /// The inferred shape, rendered.
    pub inferred: String,
}

impl Graph {
    /// Makes `v` a graph output too (undeclared: its type is the value's),
    /// keeping the output list, its declarations and the value's flag in step.
    pub fn add_output(&mut self, v: ValueId) {
        if !self.outputs.contains(&v) {
            self.outputs.push(v);
            self.output_decls.push(None);
            self.values[v].is_output = true;
        }
    }

    /// The value with this name.
    pub fn value_by_name(&self, name: &str) -> Option<ValueId> {
        self.by_name.get(name).copied()
    }

    /// The initializer tensor behind a value, if it is one.
    pub fn initializer_of(&self, v: ValueId) -> Option<&Tensor> {
        self.values[v].initializer.map(|i| &self.initializers[i].tensor)
    }

    /// A node by value names, its attributes sorted by name.
    pub fn node_parts(&self, n: &Node) -> NodeParts {
        let name = |v: &Option<ValueId>| v.map(|v| self.values[v].name.clone()).unwrap_or_default();
        let mut attrs: Vec<(String, AttrValue)> = n.attrs.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        attrs.sort_by(|a, b| a.0.cmp(&b.0));
        NodeParts {
            name: n.name.clone(),
            op_type: n.op_type.clone(),
            domain: n.domain.clone(),
            def: n.def,
            inputs: n.inputs.iter().map(name).collect(),
            outputs: n.outputs.iter().map(name).collect(),
            attrs,
        }
    }

    /// Renders a shape for humans (`[N, 3, 224, 224]`).
    pub fn shape_string(&self, v: ValueId) -> String {
        self.dims_string(self.values[v].shape.as_deref())
    }

    /// Renders dims for humans (`?` for an unknown rank).
    pub fn dims_string(&self, dims: Option<&[Dim]>) -> String {
        match dims {
            None => "?".into(),
            Some(dims) => {
                let parts: Vec<String> = dims
                    .iter()
                    .map(|d| match d {
                        Dim::Known(n) => n.to_string(),
                        Dim::Sym(s) => self.symbols.get(*s as usize).cloned().unwrap_or_else(|| "?".into()),
                        Dim::Unknown => "?".into(),
                    })
                    .collect();
                format!("[{}]", parts.join(", "))
            }
        }
    }
}
