//! Decoded protobuf → the IR's named parts ([`ir::Parts`]); subgraphs (If
//! branches, Loop and Scan bodies) become IR graphs of their own.
use super::{pb, LoadedModel, MAX_ELEMENTS};
use crate::ir::{self, AttrValue, DType, Dim, IrError, NodeParts, Parts, Tensor, TypeDecl};
use bytes::Bytes;
use std::collections::HashMap;
use std::path::PathBuf;

/// Largest single dimension accepted in a declared shape.
const MAX_DIM: i64 = 1 << 40;

/// The named parts of a model's graph.
pub fn read_parts(model: &LoadedModel) -> Result<Parts, IrError> {
    let empty = pb::GraphProto::default();
    let g = model.proto.graph.as_ref().unwrap_or(&empty);
    Reader::new(model.path.clone(), model.opset()).graph(g)
}

/// A serialized `TensorProto` file (the ONNX node tests' `input_0.pb`): its name and tensor.
pub fn read_tensor_file(path: &std::path::Path) -> Result<(String, Tensor), IrError> {
    use prost::Message;
    let bad = |detail: String| IrError::BadTensor { path: path.to_path_buf(), tensor: String::new(), detail };
    let bytes = std::fs::read(path).map_err(|e| bad(format!("cannot read the tensor file: {e}")))?;
    let t = pb::TensorProto::decode(bytes.as_slice()).map_err(|e| bad(format!("not a TensorProto: {e}")))?;
    let tensor = Reader::new(path.to_path_buf(), 0).tensor(&t)?;
    Ok((t.name, tensor))
}

struct Reader {
    path: PathBuf,
    opset: i64,
    symbols: Vec<String>,
    sym_ids: HashMap<String, u32>,
}

impl Reader {
    fn new(path: PathBuf, opset: i64) -> Self {
        Reader { path, opset, symbols: Vec::new(), sym_ids: HashMap::new() }
    }

    fn graph(mut self, g: &pb::GraphProto) -> Result<Parts, IrError> {
        let mut initializers = Vec::with_capacity(g.initializer.len());
        for t in &g.initializer {
            initializers.push((t.name.clone(), self.tensor(t)?));
        }
        let mut inputs = Vec::with_capacity(g.input.len());
        for vi in &g.input {
            inputs.push((vi.name.clone(), self.declared(vi)?));
        }
        let mut nodes = Vec::with_capacity(g.node.len());
        for (i, n) in g.node.iter().enumerate() {
            let name = if n.name.is_empty() { format!("{}#{i}", n.op_type) } else { n.name.clone() };
            let mut attrs = Vec::with_capacity(n.attribute.len());
            for a in &n.attribute {
                attrs.push((a.name.clone(), self.attribute(a, &name)?));
            }
            nodes.push(NodeParts {
                name: n.name.clone(),
                op_type: n.op_type.clone(),
                domain: n.domain.clone(),
                def: None,
                inputs: n.input.clone(),
                outputs: n.output.clone(),
                attrs,
            });
        }
        let mut value_info = Vec::with_capacity(g.value_info.len());
        for vi in &g.value_info {
            if let Some(d) = self.declared(vi)? {
                value_info.push((vi.name.clone(), d));
            }
        }
        let mut outputs = Vec::with_capacity(g.output.len());
        for vi in &g.output {
            outputs.push((vi.name.clone(), self.declared(vi)?));
        }
        Ok(Parts { name: g.name.clone(), symbols: self.symbols, initializers, inputs, outputs, value_info, nodes })
    }

    /// A subgraph as an IR graph of its own (names it does not define are captures).
    fn subgraph(&self, g: &pb::GraphProto) -> Result<ir::Graph, IrError> {
        let parts = Reader::new(self.path.clone(), self.opset).graph(g)?;
        let how = ir::Resolve { path: self.path.clone(), opset: self.opset, producer: String::new(), body: true, keep_order: false, infer: true };
        ir::resolve(parts, &how)
    }

    fn bad(&self, tensor: &str, detail: String) -> IrError {
        IrError::BadTensor { path: self.path.clone(), tensor: tensor.into(), detail }
    }

    /// The element type and shape a value_info declares (inputs, outputs, value_info).
    fn declared(&mut self, vi: &pb::ValueInfoProto) -> Result<Option<TypeDecl>, IrError> {
        let Some(pb::type_proto::Value::TensorType(t)) = vi.r#type.as_ref().and_then(|t| t.value.as_ref()) else {
            return Ok(None);
        };
        let dtype = (t.elem_type != 0).then(|| DType::from_onnx(t.elem_type));
        let Some(shape) = &t.shape else { return Ok(Some(TypeDecl { dtype, shape: None })) };
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
        Ok(Some(TypeDecl { dtype, shape: Some(dims) }))
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
        let named = |e: IrError| match e {
            IrError::BadTensor { path, detail, .. } => IrError::BadTensor { path, tensor: format!("{node}.{}", a.name), detail },
            other => other,
        };
        Ok(match T::try_from(a.r#type).unwrap_or(T::Undefined) {
            T::Int => AttrValue::Int(a.i),
            T::Float => AttrValue::Float(a.f),
            T::Ints => AttrValue::Ints(a.ints.clone()),
            T::Floats => AttrValue::Floats(a.floats.clone()),
            T::String => AttrValue::Str(String::from_utf8_lossy(&a.s).into_owned()),
            T::Strings => AttrValue::Strings(a.strings.iter().map(|s| String::from_utf8_lossy(s).into_owned()).collect()),
            T::Tensor => match &a.t {
                Some(t) => AttrValue::Tensor(self.tensor(t).map_err(named)?),
                None => AttrValue::Other,
            },
            T::Tensors => AttrValue::Tensors(a.tensors.iter().map(|t| self.tensor(t)).collect::<Result<_, _>>().map_err(named)?),
            T::Graph => match &a.g {
                Some(g) => AttrValue::Graph(Box::new(self.subgraph(g)?)),
                None => AttrValue::Other,
            },
            T::Graphs => AttrValue::Graphs(a.graphs.iter().map(|g| self.subgraph(g)).collect::<Result<_, _>>()?),
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
        // uint8, int8 and the float8 types: one byte per int32 entry.
        DType::Other(2 | 3 | 17..=20) => t.int32_data.iter().map(|&x| x as u8).collect(),
        // uint16, int16
        DType::Other(4 | 5) => t.int32_data.iter().flat_map(|&x| (x as u16).to_le_bytes()).collect(),
        // uint32, uint64
        DType::Other(12) => t.uint64_data.iter().flat_map(|&x| (x as u32).to_le_bytes()).collect(),
        DType::Other(13) => t.uint64_data.iter().flat_map(|x| x.to_le_bytes()).collect(),
        // complex64, complex128: (real, imaginary) pairs
        DType::Other(14) => t.float_data.iter().flat_map(|x| x.to_le_bytes()).collect(),
        DType::Other(15) => t.double_data.iter().flat_map(|x| x.to_le_bytes()).collect(),
        // strings and the 4-bit types: not kept (the writer refuses such a tensor)
        DType::Other(_) => Vec::new(),
    };
    Bytes::from(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(op: &str, inputs: &[&str], outputs: &[&str], sub: Option<pb::GraphProto>) -> pb::NodeProto {
        use pb::attribute_proto::AttributeType as T;
        pb::NodeProto {
            op_type: op.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            // an If takes both branches: the same graph twice
            attribute: sub
                .into_iter()
                .flat_map(|g| ["then_branch", "else_branch"].map(|b| pb::AttributeProto { name: b.into(), g: Some(g.clone()), r#type: T::Graph as i32, ..Default::default() }))
                .collect(),
            ..Default::default()
        }
    }

    fn captures(g: &ir::Graph) -> Vec<&str> {
        let mut got: Vec<&str> = g.captures.iter().map(|&c| g.values[c].name.as_str()).collect();
        got.sort_unstable();
        got
    }

    #[test]
    fn captures_see_through_nesting_and_respect_scopes() {
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
        let r = Reader::new("<test>".into(), 17);
        let g = r.subgraph(&branch).expect("resolves");
        assert_eq!(captures(&g), ["c", "outer", "u", "x"]);
        // The inner If reads `b1` from the branch and `outer` through it.
        let inner_if = g.nodes.iter().find(|n| n.op_type == "If").expect("If");
        let implicit: Vec<&str> = inner_if.implicit_inputs.iter().map(|&v| g.values[v].name.as_str()).collect();
        assert!(implicit.contains(&"b1") && implicit.contains(&"outer"), "{implicit:?}");
        let body = &inner_if.attrs["then_branch"].subgraphs()[0];
        assert_eq!(captures(body), ["b1", "outer"]);
    }
}
