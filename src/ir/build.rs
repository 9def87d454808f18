//! Lowering a decoded ONNX model into the IR.
use super::{shape, AttrValue, DType, Dim, Graph, Initializer, Node, Tensor, Value, ValueId};
use crate::onnx::{pb, LoadedModel, MAX_ELEMENTS};
use bytes::Bytes;
use petgraph::graph::DiGraph;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

/// Largest single dimension accepted in a declared shape.
const MAX_DIM: i64 = 1 << 40;

/// Errors from building the IR; each names the file and the node or tensor.
#[derive(Debug, thiserror::Error)]
pub enum IrError {
    /// Two nodes (or a node and an input/initializer) define the same value.
    #[error("{path}: value '{value}' is defined twice (second time by node '{node}')")]
    Redefined {
        /// The model file.
        path: PathBuf,
        /// The value name.
        value: String,
        /// The second definer.
        node: String,
    },
    /// A node reads a value that nothing defines.
    #[error("{path}: node '{node}' reads '{value}', which no node, input or initializer defines")]
    Undefined {
        /// The model file.
        path: PathBuf,
        /// The reading node.
        node: String,
        /// The missing value.
        value: String,
    },
    /// The graph has a cycle.
    #[error("{path}: the graph has a cycle through node '{node}'")]
    Cycle {
        /// The model file.
        path: PathBuf,
        /// A node on the cycle.
        node: String,
    },
    /// A tensor's declaration is inconsistent or hostile.
    #[error("{path}: tensor '{tensor}': {detail}")]
    BadTensor {
        /// The model file.
        path: PathBuf,
        /// The tensor.
        tensor: String,
        /// What is wrong.
        detail: String,
    },
    /// A node's attribute has the wrong type or a value out of range for its op.
    #[error("{path}: node '{node}' ({op}): attribute '{attribute}' {detail}")]
    BadAttribute {
        /// The model file.
        path: PathBuf,
        /// The node.
        node: String,
        /// Its op type.
        op: String,
        /// The attribute.
        attribute: String,
        /// What is wrong.
        detail: String,
    },
    /// A graph output names a value nothing defines.
    #[error("{path}: graph output '{value}' is not computed by any node, input or initializer")]
    DanglingOutput {
        /// The model file.
        path: PathBuf,
        /// The output name.
        value: String,
    },
}

/// Builds the IR of a loaded model: values, nodes in topological order, shapes.
pub fn from_model(model: &LoadedModel) -> Result<Graph, IrError> {
    let path = model.path.clone();
    let empty = pb::GraphProto::default();
    let g = model.proto.graph.as_ref().unwrap_or(&empty);
    let mut b = Builder { path: path.clone(), values: Vec::new(), by_name: HashMap::new(), symbols: Vec::new(), sym_ids: HashMap::new() };

    let mut initializers = Vec::new();
    for t in &g.initializer {
        let tensor = b.tensor(t)?;
        let v = b.define(&t.name, "initializer")?;
        b.values[v].dtype = Some(tensor.dtype);
        b.values[v].shape = Some(tensor.dims.iter().map(|&d| Dim::Known(d)).collect());
        b.values[v].initializer = Some(initializers.len());
        initializers.push(Initializer { value: v, tensor });
    }
    let mut inputs = Vec::new();
    for vi in &g.input {
        if let Some(&v) = b.by_name.get(&vi.name) {
            // Old-style models list initializers among the inputs too.
            if b.values[v].initializer.is_some() {
                continue;
            }
        }
        let v = b.define(&vi.name, "graph input")?;
        // A graph input's declared type is its definition, not a hint.
        if let Some((dtype, shape)) = b.declared(vi)? {
            b.values[v].dtype = dtype;
            b.values[v].shape = shape;
        }
        inputs.push(v);
    }

    // Nodes: first define every output, then resolve inputs (any order in the file).
    let mut nodes = Vec::with_capacity(g.node.len());
    for (i, n) in g.node.iter().enumerate() {
        let name = if n.name.is_empty() { format!("{}#{i}", n.op_type) } else { n.name.clone() };
        let mut outputs = Vec::with_capacity(n.output.len());
        for o in &n.output {
            outputs.push(if o.is_empty() { None } else { Some(b.define(o, &name)?) });
        }
        let mut attrs = HashMap::new();
        for a in &n.attribute {
            attrs.insert(a.name.clone(), b.attribute(a, &name)?);
        }
        let def = crate::ops::lookup(&n.domain, &n.op_type);
        if let Some(d) = def {
            crate::ops::check_attributes(d, &attrs).map_err(|(attribute, detail)| IrError::BadAttribute {
                path: path.clone(),
                node: name.clone(),
                op: n.op_type.clone(),
                attribute,
                detail,
            })?;
        }
        nodes.push(Node {
            name,
            op_type: n.op_type.clone(),
            def,
            domain: n.domain.clone(),
            inputs: Vec::new(),
            outputs,
            implicit_inputs: Vec::new(),
            attrs,
            source: i,
        });
    }
    for (i, n) in g.node.iter().enumerate() {
        let mut ins = Vec::with_capacity(n.input.len());
        for name in &n.input {
            if name.is_empty() {
                ins.push(None);
                continue;
            }
            let v = *b.by_name.get(name).ok_or_else(|| IrError::Undefined {
                path: path.clone(),
                node: nodes[i].name.clone(),
                value: name.clone(),
            })?;
            ins.push(Some(v));
        }
        nodes[i].inputs = ins;
        let mut outer = HashSet::new();
        for a in &n.attribute {
            for sub in a.g.iter().chain(a.graphs.iter()) {
                outer_reads(sub, &mut HashSet::new(), &mut outer);
            }
        }
        let mut implicit: Vec<ValueId> = outer.iter().filter_map(|name| b.by_name.get(name).copied()).collect();
        implicit.sort_unstable();
        nodes[i].implicit_inputs = implicit;
    }
    // Exporter-declared types of computed values are checked against inference
    // (shape::infer), so they are kept apart; the first declaration counts.
    let mut declared: Vec<Option<shape::Declared>> = vec![None; b.values.len()];
    for vi in &g.value_info {
        if let Some(&v) = b.by_name.get(&vi.name) {
            if declared[v].is_none() {
                declared[v] = b.declared(vi)?;
            }
        }
    }
    let mut outputs = Vec::new();
    for vi in &g.output {
        let v = *b.by_name.get(&vi.name).ok_or_else(|| IrError::DanglingOutput { path: path.clone(), value: vi.name.clone() })?;
        if declared[v].is_none() {
            declared[v] = b.declared(vi)?;
        }
        b.values[v].is_output = true;
        outputs.push(v);
    }

    // Topological order (petgraph), refusing cycles.
    let mut dag = DiGraph::<(), ()>::with_capacity(nodes.len(), nodes.len() * 2);
    let idx: Vec<_> = (0..nodes.len()).map(|_| dag.add_node(())).collect();
    let mut producer = vec![usize::MAX; b.values.len()];
    for (i, n) in nodes.iter().enumerate() {
        for v in n.outputs.iter().flatten() {
            producer[*v] = i;
        }
    }
    for (i, n) in nodes.iter().enumerate() {
        for v in n.inputs.iter().flatten().chain(n.implicit_inputs.iter()) {
            if producer[*v] != usize::MAX {
                dag.add_edge(idx[producer[*v]], idx[i], ());
            }
        }
    }
    let order = petgraph::algo::toposort(&dag, None)
        .map_err(|c| IrError::Cycle { path: path.clone(), node: nodes[c.node_id().index()].name.clone() })?;
    let mut slots: Vec<Option<Node>> = nodes.into_iter().map(Some).collect();
    let nodes: Vec<Node> = order.iter().filter_map(|i| slots[i.index()].take()).collect();

    for (id, n) in nodes.iter().enumerate() {
        for v in n.outputs.iter().flatten() {
            b.values[*v].producer = Some(id);
        }
        for (k, v) in n.inputs.iter().enumerate() {
            if let Some(v) = v {
                b.values[*v].consumers.push((id, k));
            }
        }
        for v in &n.implicit_inputs {
            b.values[*v].consumers.push((id, usize::MAX));
        }
    }

    let mut graph = Graph {
        model_path: path,
        name: g.name.clone(),
        opset: model.opset(),
        producer: model.producer(),
        nodes,
        values: b.values,
        initializers,
        inputs,
        outputs,
        symbols: b.symbols,
        by_name: b.by_name,
        shape_conflicts: Vec::new(),
    };
    shape::infer(&mut graph, &declared);
    Ok(graph)
}

/// Names a subgraph reads from outer scopes (recursively through nested subgraphs).
/// `defined` holds names the caller's scopes already define (usually empty).
pub(crate) fn outer_reads(g: &pb::GraphProto, defined: &mut HashSet<String>, out: &mut HashSet<String>) {
    let mut scopes: Vec<HashSet<&str>> = vec![defined.iter().map(String::as_str).collect()];
    reads_in_scope(g, &mut scopes, out);
}

/// One scope per subgraph on a stack, innermost last: a name is local when any
/// scope defines it. Nothing is copied per subgraph, so the walk is linear in
/// the names (times the nesting depth) however many subgraphs a branch holds.
fn reads_in_scope<'g>(g: &'g pb::GraphProto, scopes: &mut Vec<HashSet<&'g str>>, out: &mut HashSet<String>) {
    let mut local: HashSet<&'g str> = g.input.iter().map(|i| i.name.as_str()).collect();
    local.extend(g.initializer.iter().map(|i| i.name.as_str()));
    scopes.push(local);
    for n in &g.node {
        for i in &n.input {
            if !i.is_empty() && !scopes.iter().any(|s| s.contains(i.as_str())) {
                out.insert(i.clone());
            }
        }
        for a in &n.attribute {
            for sub in a.g.iter().chain(a.graphs.iter()) {
                reads_in_scope(sub, scopes, out);
            }
        }
        if let Some(innermost) = scopes.last_mut() {
            innermost.extend(n.output.iter().map(String::as_str));
        }
    }
    scopes.pop();
}

struct Builder {
    path: PathBuf,
    values: Vec<Value>,
    by_name: HashMap<String, ValueId>,
    symbols: Vec<String>,
    sym_ids: HashMap<String, u32>,
}

impl Builder {
    fn define(&mut self, name: &str, definer: &str) -> Result<ValueId, IrError> {
        if self.by_name.contains_key(name) {
            return Err(IrError::Redefined { path: self.path.clone(), value: name.into(), node: definer.into() });
        }
        let id = self.values.len();
        self.values.push(Value { name: name.into(), ..Default::default() });
        self.by_name.insert(name.into(), id);
        Ok(id)
    }

    fn bad(&self, tensor: &str, detail: String) -> IrError {
        IrError::BadTensor { path: self.path.clone(), tensor: tensor.into(), detail }
    }

    /// The element type and shape a value_info declares (inputs, outputs, value_info).
    fn declared(&mut self, vi: &pb::ValueInfoProto) -> Result<Option<shape::Declared>, IrError> {
        let Some(pb::type_proto::Value::TensorType(t)) = vi.r#type.as_ref().and_then(|t| t.value.as_ref()) else {
            return Ok(None);
        };
        let dtype = (t.elem_type != 0).then(|| DType::from_onnx(t.elem_type));
        let Some(shape) = &t.shape else { return Ok(Some((dtype, None))) };
        use pb::tensor_shape_proto::dimension::Value as D;
        let mut dims = Vec::with_capacity(shape.dim.len());
        for d in &shape.dim {
            dims.push(match &d.value {
                Some(D::DimValue(n)) if *n < 0 || *n > MAX_DIM => {
                    return Err(self.bad(&vi.name, format!("declared dimension {n} is out of range")))
                }
                Some(D::DimValue(n)) => Dim::Known(*n),
                Some(D::DimParam(s)) if !s.is_empty() => Dim::Sym(self.symbol(s)),
                _ => Dim::Unknown,
            });
        }
        Ok(Some((dtype, Some(dims))))
    }

    fn symbol(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.sym_ids.get(name) {
            return id;
        }
        let id = self.symbols.len() as u32;
        self.symbols.push(name.into());
        self.sym_ids.insert(name.into(), id);
        id
    }

    fn tensor(&self, t: &pb::TensorProto) -> Result<Tensor, IrError> {
        let dtype = DType::from_onnx(t.data_type);
        let mut count: u64 = 1;
        for &d in &t.dims {
            if d < 0 {
                return Err(self.bad(&t.name, format!("negative dimension {d}")));
            }
            count = count
                .checked_mul(d as u64)
                .filter(|&c| c <= MAX_ELEMENTS)
                .ok_or_else(|| self.bad(&t.name, format!("dims {:?} overflow the element limit ({MAX_ELEMENTS})", t.dims)))?;
        }
        let data = if !t.raw_data.is_empty() {
            t.raw_data.clone()
        } else {
            typed_fields(t, dtype)
        };
        if let Some(size) = dtype.size() {
            let want = count * size as u64;
            if !data.is_empty() && data.len() as u64 != want {
                return Err(self.bad(
                    &t.name,
                    format!("holds {} bytes of data, dims {:?} of {} need {want}", data.len(), t.dims, dtype.name()),
                ));
            }
        }
        Ok(Tensor { dtype, dims: t.dims.clone(), data })
    }

    fn attribute(&self, a: &pb::AttributeProto, node: &str) -> Result<AttrValue, IrError> {
        use pb::attribute_proto::AttributeType as T;
        Ok(match T::try_from(a.r#type).unwrap_or(T::Undefined) {
            T::Int => AttrValue::Int(a.i),
            T::Float => AttrValue::Float(a.f),
            T::Ints => AttrValue::Ints(a.ints.clone()),
            T::Floats => AttrValue::Floats(a.floats.clone()),
            T::String => AttrValue::Str(String::from_utf8_lossy(&a.s).into_owned()),
            T::Tensor => match &a.t {
                Some(t) => AttrValue::Tensor(self.tensor(t).map_err(|e| match e {
                    IrError::BadTensor { path, detail, .. } => {
                        IrError::BadTensor { path, tensor: format!("{node}.{}", a.name), detail }
                    }
                    other => other,
                })?),
                None => AttrValue::Other,
            },
            T::Graph | T::Graphs => AttrValue::Graph,
            _ => AttrValue::Other,
        })
    }
}

/// Packs a tensor's typed repeated fields into little-endian bytes.
fn typed_fields(t: &pb::TensorProto, dtype: DType) -> Bytes {
    let bytes: Vec<u8> = match dtype {
        DType::F32 => t.float_data.iter().flat_map(|x| x.to_le_bytes()).collect(),
        DType::F64 => t.double_data.iter().flat_map(|x| x.to_le_bytes()).collect(),
        DType::I64 => t.int64_data.iter().flat_map(|x| x.to_le_bytes()).collect(),
        DType::I32 => t.int32_data.iter().flat_map(|x| x.to_le_bytes()).collect(),
        DType::Bool => t.int32_data.iter().map(|&x| x as u8).collect(),
        DType::F16 | DType::BF16 => t.int32_data.iter().flat_map(|&x| (x as u16).to_le_bytes()).collect(),
        DType::Other(_) => Vec::new(),
    };
    Bytes::from(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(op: &str, inputs: &[&str], outputs: &[&str], sub: Option<pb::GraphProto>) -> pb::NodeProto {
        pb::NodeProto {
            op_type: op.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            attribute: sub.map(|g| pb::AttributeProto { name: "then_branch".into(), g: Some(g), ..Default::default() }).into_iter().collect(),
            ..Default::default()
        }
    }

    #[test]
    fn outer_reads_sees_through_nesting_and_respects_scopes() {
        // inner reads: its own input `i`, the branch's `b1` (local to the
        // branch), and `outer` (from the enclosing graph).
        let inner = pb::GraphProto {
            input: vec![pb::ValueInfoProto { name: "i".into(), ..Default::default() }],
            node: vec![node("Add", &["i", "b1"], &["t"], None), node("Add", &["t", "outer"], &["u"], None)],
            ..Default::default()
        };
        let branch = pb::GraphProto {
            node: vec![
                node("Relu", &["x"], &["b1"], None),
                node("If", &["c"], &["b2"], Some(inner)),
                // `u` is the inner graph's, not visible here: an outer read.
                node("Add", &["b2", "u"], &["b3"], None),
            ],
            ..Default::default()
        };
        let mut out = HashSet::new();
        outer_reads(&branch, &mut HashSet::new(), &mut out);
        let mut got: Vec<&str> = out.iter().map(String::as_str).collect();
        got.sort_unstable();
        assert_eq!(got, ["c", "outer", "u", "x"]);
        let mut out = HashSet::new();
        outer_reads(&branch, &mut ["x".to_string()].into_iter().collect(), &mut out);
        assert!(!out.contains("x"), "names the caller defines are not outer reads");
    }
}
