//! The IR → protobuf writer: an [`ir::Graph`] (subgraphs included) and the
//! model-level fields a written model keeps, as a [`LoadedModel`] to encode or save.
use super::{pb, LoadedModel, OnnxError};
use crate::ir::{AttrValue, Dim, Graph, Tensor, TypeDecl};
use std::path::PathBuf;

/// The model-level fields of a written model.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    /// The file it stands for (error messages).
    pub path: PathBuf,
    /// Every file it was read from (outputs refuse to replace them).
    pub input_files: Vec<PathBuf>,
    /// The ONNX IR version.
    pub ir_version: i64,
    /// Opset imports: `(domain, version)`.
    pub opsets: Vec<(String, i64)>,
    /// Producer name.
    pub producer_name: String,
    /// Producer version.
    pub producer_version: String,
    /// Metadata properties, in order.
    pub metadata: Vec<(String, String)>,
}

impl LoadedModel {
    /// The model-level fields of this model, for writing its IR back.
    pub fn info(&self) -> ModelInfo {
        ModelInfo {
            path: self.path.clone(),
            input_files: self.inputs.clone(),
            ir_version: self.proto.ir_version,
            opsets: self.proto.opset_import.iter().map(|o| (o.domain.clone(), o.version)).collect(),
            producer_name: self.proto.producer_name.clone(),
            producer_version: self.proto.producer_version.clone(),
            metadata: self.proto.metadata_props.iter().map(|p| (p.key.clone(), p.value.clone())).collect(),
        }
    }
}

/// Writes a graph as a model.
pub fn write_model(g: &Graph, info: &ModelInfo) -> Result<LoadedModel, OnnxError> {
    let w = Writer { path: &info.path, ir_version: info.ir_version };
    let proto = pb::ModelProto {
        ir_version: info.ir_version,
        opset_import: info.opsets.iter().map(|(domain, version)| pb::OperatorSetIdProto { domain: domain.clone(), version: *version }).collect(),
        producer_name: info.producer_name.clone(),
        producer_version: info.producer_version.clone(),
        metadata_props: info.metadata.iter().map(|(k, v)| pb::StringStringEntryProto { key: k.clone(), value: v.clone() }).collect(),
        graph: Some(w.graph(g)?),
        ..Default::default()
    };
    Ok(LoadedModel { path: info.path.clone(), proto, inputs: info.input_files.clone() })
}

struct Writer<'a> {
    path: &'a std::path::Path,
    ir_version: i64,
}

impl Writer<'_> {
    fn graph(&self, g: &Graph) -> Result<pb::GraphProto, OnnxError> {
        let name = |v: &Option<usize>| v.map(|v| g.values[v].name.clone()).unwrap_or_default();
        let mut nodes = Vec::with_capacity(g.nodes.len());
        for n in in_source_order(g) {
            let mut attrs: Vec<(&String, &AttrValue)> = n.attrs.iter().collect();
            // The IR keeps attributes by name; sorted, the bytes are the same every run.
            attrs.sort_by(|a, b| a.0.cmp(b.0));
            let mut attribute = Vec::with_capacity(attrs.len());
            for (k, v) in attrs {
                attribute.push(self.attribute(k, v).ok_or_else(|| OnnxError::Unwritable {
                    path: self.path.to_path_buf(),
                    node: n.name.clone(),
                    attribute: k.clone(),
                })??);
            }
            nodes.push(pb::NodeProto {
                name: n.name.clone(),
                op_type: n.op_type.clone(),
                domain: n.domain.clone(),
                input: n.inputs.iter().map(name).collect(),
                output: n.outputs.iter().map(name).collect(),
                attribute,
                ..Default::default()
            });
        }
        let decl = |v: usize, d: Option<&TypeDecl>| value_info(&g.values[v].name, d, &g.symbols);
        let mut input: Vec<pb::ValueInfoProto> = g.input_decls.iter().map(|(v, d)| decl(*v, d.as_ref())).collect();
        if self.ir_version < 4 {
            // Before IR version 4 every initializer is also a graph input.
            let listed: std::collections::HashSet<usize> = g.input_decls.iter().map(|(v, _)| *v).collect();
            for init in g.initializers.iter().filter(|i| !listed.contains(&i.value)) {
                let d = TypeDecl { dtype: Some(init.tensor.dtype), shape: Some(init.tensor.dims.iter().map(|&d| Dim::Known(d)).collect()) };
                input.push(decl(init.value, Some(&d)));
            }
        }
        Ok(pb::GraphProto {
            name: g.name.clone(),
            node: nodes,
            initializer: g.initializers.iter().map(|i| self.tensor(&g.values[i.value].name, &i.tensor)).collect::<Result<_, _>>()?,
            input,
            output: g.outputs.iter().zip(&g.output_decls).map(|(&v, d)| decl(v, d.as_ref())).collect(),
            value_info: g.value_info.iter().map(|(v, d)| decl(*v, Some(d))).collect(),
            ..Default::default()
        })
    }

    /// The attribute's protobuf; `None` for a value the IR kept by name only.
    fn attribute(&self, name: &str, v: &AttrValue) -> Option<Result<pb::AttributeProto, OnnxError>> {
        use pb::attribute_proto::AttributeType as T;
        let mut a = pb::AttributeProto { name: name.into(), ..Default::default() };
        match v {
            AttrValue::Int(i) => (a.i, a.r#type) = (*i, T::Int as i32),
            AttrValue::Float(f) => (a.f, a.r#type) = (*f, T::Float as i32),
            AttrValue::Ints(xs) => (a.ints, a.r#type) = (xs.clone(), T::Ints as i32),
            AttrValue::Floats(xs) => (a.floats, a.r#type) = (xs.clone(), T::Floats as i32),
            AttrValue::Str(s) => (a.s, a.r#type) = (s.clone().into_bytes().into(), T::String as i32),
            AttrValue::Strings(xs) => (a.strings, a.r#type) = (xs.iter().map(|s| s.clone().into_bytes().into()).collect(), T::Strings as i32),
            AttrValue::Tensor(t) => match self.tensor(name, t) {
                Ok(t) => (a.t, a.r#type) = (Some(pb::TensorProto { name: String::new(), ..t }), T::Tensor as i32),
                Err(e) => return Some(Err(e)),
            },
            AttrValue::Tensors(ts) => match ts.iter().map(|t| self.tensor("", t)).collect::<Result<Vec<_>, _>>() {
                Ok(ts) => (a.tensors, a.r#type) = (ts, T::Tensors as i32),
                Err(e) => return Some(Err(e)),
            },
            AttrValue::Graph(g) => match self.graph(g) {
                Ok(g) => (a.g, a.r#type) = (Some(g), T::Graph as i32),
                Err(e) => return Some(Err(e)),
            },
            AttrValue::Graphs(gs) => match gs.iter().map(|g| self.graph(g)).collect::<Result<Vec<_>, _>>() {
                Ok(gs) => (a.graphs, a.r#type) = (gs, T::Graphs as i32),
                Err(e) => return Some(Err(e)),
            },
            AttrValue::Other => return None,
        }
        Some(Ok(a))
    }
}

/// The nodes in the order the model listed them when that order is
/// topological (so that a model read and written again reads the same),
/// else in the IR's order.
fn in_source_order(g: &Graph) -> Vec<&crate::ir::Node> {
    let mut nodes: Vec<&crate::ir::Node> = g.nodes.iter().collect();
    nodes.sort_by_key(|n| n.source);
    let mut defined = vec![false; g.values.len()];
    let mut topological = true;
    for n in &nodes {
        let reads = n.inputs.iter().flatten().chain(&n.implicit_inputs);
        topological &= reads.into_iter().all(|&v| defined[v] || g.values[v].producer.is_none());
        for &o in n.outputs.iter().flatten() {
            defined[o] = true;
        }
    }
    if topological {
        nodes
    } else {
        g.nodes.iter().collect()
    }
}

impl Writer<'_> {
    /// A tensor's protobuf (little-endian `raw_data`, shared with the IR's bytes).
    /// A tensor whose data the IR did not keep (strings, 4-bit types, data in
    /// another type's field) is an error, not an empty tensor.
    fn tensor(&self, name: &str, t: &Tensor) -> Result<pb::TensorProto, OnnxError> {
        if t.data.is_empty() && t.elements() > 0 {
            return Err(OnnxError::BadTensor {
                path: self.path.to_path_buf(),
                tensor: name.into(),
                detail: format!("its {} data is not kept in the IR (strings, 4-bit types, or data in another type's field), so it cannot be written", t.dtype.name()),
            });
        }
        Ok(pb::TensorProto { name: name.into(), dims: t.dims.clone(), data_type: t.dtype.onnx_code(), raw_data: t.data.clone(), ..Default::default() })
    }
}

/// A value's declaration; `None`: no type (what the file had).
fn value_info(name: &str, d: Option<&TypeDecl>, symbols: &[String]) -> pb::ValueInfoProto {
    use pb::tensor_shape_proto::{dimension::Value, Dimension};
    let dim = |d: &Dim| Dimension {
        value: match d {
            Dim::Known(k) => Some(Value::DimValue(*k)),
            Dim::Sym(s) => symbols.get(*s as usize).map(|n| Value::DimParam(n.clone())),
            Dim::Unknown => None,
        },
        denotation: String::new(),
    };
    let r#type = d.map(|d| pb::TypeProto {
        denotation: String::new(),
        value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
            elem_type: d.dtype.map_or(0, |t| t.onnx_code()),
            shape: d.shape.as_ref().map(|s| pb::TensorShapeProto { dim: s.iter().map(dim).collect() }),
        })),
    });
    pb::ValueInfoProto { name: name.into(), r#type, ..Default::default() }
}
