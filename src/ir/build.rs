//! Lowering a decoded ONNX model into the IR.
use super::{shape, AttrValue, Dim, Graph, Initializer, Node, Parts, Value, ValueId};
use crate::onnx::LoadedModel;
use petgraph::graph::DiGraph;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

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
    let parts = crate::onnx::read_parts(model)?;
    let how = Resolve { path: model.path.clone(), opset: model.opset(), producer: model.producer(), body: false, keep_order: false, infer: true };
    resolve(parts, &how)
}

/// How [`resolve`] builds a graph.
#[derive(Debug, Clone)]
pub(crate) struct Resolve {
    /// The model file (for errors and [`Graph::model_path`]).
    pub path: PathBuf,
    /// Default-domain opset.
    pub opset: i64,
    /// Producer recorded in the model.
    pub producer: String,
    /// A subgraph: names it does not define are reads of the enclosing scope
    /// ([`Graph::captures`]), not errors.
    pub body: bool,
    /// Keep the nodes' order when it is already topological.
    pub keep_order: bool,
    /// Run shape inference.
    pub infer: bool,
}

/// Resolves named parts into a graph: values, nodes in topological order,
/// attribute checks, and (when asked) shapes.
pub(crate) fn resolve(parts: Parts, how: &Resolve) -> Result<Graph, IrError> {
    let path = how.path.clone();
    let mut b = Builder { values: Vec::new(), by_name: HashMap::new(), path: path.clone() };

    let mut initializers = Vec::new();
    for (name, tensor) in parts.initializers {
        let v = b.define(&name, "initializer")?;
        b.values[v].dtype = Some(tensor.dtype);
        b.values[v].shape = Some(tensor.dims.iter().map(|&d| Dim::Known(d)).collect());
        b.values[v].initializer = Some(initializers.len());
        initializers.push(Initializer { value: v, tensor });
    }
    let mut inputs = Vec::new();
    let mut input_decls = Vec::new();
    for (name, decl) in parts.inputs {
        if let Some(&v) = b.by_name.get(&name) {
            // Old-style models list initializers among the inputs too.
            if b.values[v].initializer.is_some() {
                input_decls.push((v, decl));
                continue;
            }
        }
        let v = b.define(&name, "graph input")?;
        // A graph input's declared type is its definition, not a hint.
        if let Some(d) = &decl {
            b.values[v].dtype = d.dtype;
            b.values[v].shape = d.shape.clone();
        }
        inputs.push(v);
        input_decls.push((v, decl));
    }

    // Nodes: first define every output, then resolve inputs (any order in the file).
    let mut nodes = Vec::with_capacity(parts.nodes.len());
    let mut node_inputs = Vec::with_capacity(parts.nodes.len());
    for (i, n) in parts.nodes.into_iter().enumerate() {
        let name = if n.name.is_empty() { format!("{}#{i}", n.op_type) } else { n.name };
        let mut outputs = Vec::with_capacity(n.outputs.len());
        for o in &n.outputs {
            outputs.push(if o.is_empty() { None } else { Some(b.define(o, &name)?) });
        }
        let attrs: HashMap<String, AttrValue> = n.attrs.into_iter().collect();
        let def = n.def.or_else(|| crate::ops::lookup(&n.domain, &n.op_type));
        if let Some(d) = def {
            crate::ops::check_attributes(d, &attrs).map_err(|(attribute, detail)| IrError::BadAttribute {
                path: path.clone(),
                node: name.clone(),
                op: n.op_type.clone(),
                attribute,
                detail,
            })?;
        }
        node_inputs.push(n.inputs);
        nodes.push(Node {
            name,
            op_type: n.op_type,
            def,
            domain: n.domain,
            inputs: Vec::new(),
            outputs,
            implicit_inputs: Vec::new(),
            attrs,
            source: i,
        });
    }
    let mut captures = Vec::new();
    for (i, names) in node_inputs.into_iter().enumerate() {
        let mut ins = Vec::with_capacity(names.len());
        for name in &names {
            if name.is_empty() {
                ins.push(None);
                continue;
            }
            let v = match b.by_name.get(name) {
                Some(&v) => v,
                None if how.body => b.capture(name, &mut captures),
                None => return Err(IrError::Undefined { path: path.clone(), node: nodes[i].name.clone(), value: name.clone() }),
            };
            ins.push(Some(v));
        }
        nodes[i].inputs = ins;
        // What the node's subgraphs read of this scope (or, in a subgraph, of the ones around it).
        let outer: HashSet<String> = nodes[i]
            .attrs
            .values()
            .flat_map(|a| a.subgraphs())
            .flat_map(|sub| sub.captures.iter().map(|&c| sub.values[c].name.clone()))
            .collect();
        let mut implicit: Vec<ValueId> = Vec::with_capacity(outer.len());
        for name in &outer {
            match b.by_name.get(name) {
                Some(&v) => implicit.push(v),
                None if how.body => implicit.push(b.capture(name, &mut captures)),
                None => {}
            }
        }
        implicit.sort_unstable();
        nodes[i].implicit_inputs = implicit;
    }
    let mut value_info = Vec::with_capacity(parts.value_info.len());
    for (name, decl) in parts.value_info {
        if let Some(&v) = b.by_name.get(&name) {
            value_info.push((v, decl));
        }
    }
    let mut outputs = Vec::new();
    let mut output_decls = Vec::new();
    for (name, decl) in parts.outputs {
        let v = match b.by_name.get(&name) {
            Some(&v) => v,
            None if how.body => b.capture(&name, &mut captures),
            None => return Err(IrError::DanglingOutput { path: path.clone(), value: name }),
        };
        b.values[v].is_output = true;
        outputs.push(v);
        output_decls.push(decl);
    }
    let nodes = if how.keep_order && is_topological(&nodes, b.values.len()) { nodes } else { toposort(nodes, b.values.len(), &path)? };

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
        name: parts.name,
        opset: how.opset,
        producer: how.producer.clone(),
        nodes,
        values: b.values,
        initializers,
        inputs,
        outputs,
        input_decls,
        output_decls,
        value_info,
        captures,
        symbols: parts.symbols,
        by_name: b.by_name,
        shape_conflicts: Vec::new(),
    };
    if how.infer {
        let declared = shape::declarations(&graph);
        shape::infer(&mut graph, &declared);
    }
    Ok(graph)
}

/// True when every node comes after the producers of what it reads.
fn is_topological(nodes: &[Node], values: usize) -> bool {
    let mut defined_at = vec![usize::MAX; values];
    for (i, n) in nodes.iter().enumerate() {
        for v in n.outputs.iter().flatten() {
            defined_at[*v] = i;
        }
    }
    nodes.iter().enumerate().all(|(i, n)| n.inputs.iter().flatten().chain(n.implicit_inputs.iter()).all(|v| defined_at[*v] == usize::MAX || defined_at[*v] < i))
}

/// Topological order (petgraph), refusing cycles.
fn toposort(nodes: Vec<Node>, values: usize, path: &std::path::Path) -> Result<Vec<Node>, IrError> {
    let mut dag = DiGraph::<(), ()>::with_capacity(nodes.len(), nodes.len() * 2);
    let idx: Vec<_> = (0..nodes.len()).map(|_| dag.add_node(())).collect();
    let mut producer = vec![usize::MAX; values];
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
        .map_err(|c| IrError::Cycle { path: path.to_path_buf(), node: nodes[c.node_id().index()].name.clone() })?;
    let mut slots: Vec<Option<Node>> = nodes.into_iter().map(Some).collect();
    Ok(order.iter().filter_map(|i| slots[i.index()].take()).collect())
}

struct Builder {
    path: PathBuf,
    values: Vec<Value>,
    by_name: HashMap<String, ValueId>,
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

    /// A value of an enclosing scope that a subgraph reads.
    fn capture(&mut self, name: &str, captures: &mut Vec<ValueId>) -> ValueId {
        let id = self.values.len();
        self.values.push(Value { name: name.into(), ..Default::default() });
        self.by_name.insert(name.into(), id);
        captures.push(id);
        id
    }
}
