//! Building small ONNX models in code: for tests, examples and fuzzing seeds.
use super::pb;
use prost::Message;

/// Payload for an initializer built in code.
#[derive(Debug, Clone)]
pub enum TensorData {
    /// float32 values (length must match the dims' product).
    F32(Vec<f32>),
    /// int64 values.
    I64(Vec<i64>),
    /// float32 zeros of the dims' product.
    Zeros,
    /// float32 data in an external file (`location` relative to the model's folder).
    External {
        /// The file.
        location: String,
        /// Byte offset in it.
        offset: u64,
        /// Byte length.
        length: u64,
    },
}

/// An attribute value for [`GraphBuilder::node`].
#[derive(Debug, Clone)]
pub enum Attr {
    /// `INT`
    Int(i64),
    /// `FLOAT`
    Float(f32),
    /// `INTS`
    Ints(Vec<i64>),
    /// `STRING`
    Str(String),
    /// `TENSOR` (dims, data)
    Tensor(Vec<i64>, TensorData),
    /// `TENSORS`: (dims, data) each
    Tensors(Vec<(Vec<i64>, TensorData)>),
    /// `GRAPH`: a subgraph (If branches, Loop bodies); it may read outer values by name.
    Graph(Box<GraphBuilder>),
}

/// Builds a model graph node by node. Symbolic dims are given as `-1`.
#[derive(Debug, Default, Clone)]
pub struct GraphBuilder {
    graph: pb::GraphProto,
    opset: i64,
    ir_version: i64,
}

impl GraphBuilder {
    /// A new graph importing the default domain at `opset`.
    pub fn new(name: &str, opset: i64) -> Self {
        let graph = pb::GraphProto { name: name.into(), ..Default::default() };
        GraphBuilder { graph, opset, ir_version: 8 }
    }

    /// Adds a float32 graph input; `-1` dims become symbolic (`N`, `d1`, ...).
    pub fn input(&mut self, name: &str, dims: &[i64]) -> &mut Self {
        let vi = value_info(name, pb::tensor_proto::DataType::Float, Some(dims));
        self.graph.input.push(vi);
        self
    }

    /// Adds a float32 graph output of unknown shape.
    pub fn output(&mut self, name: &str) -> &mut Self {
        self.graph.output.push(value_info(name, pb::tensor_proto::DataType::Float, None));
        self
    }

    /// Declares a computed value's float32 type and shape (value_info); `-1` dims become symbolic.
    pub fn value_info(&mut self, name: &str, dims: &[i64]) -> &mut Self {
        self.graph.value_info.push(value_info(name, pb::tensor_proto::DataType::Float, Some(dims)));
        self
    }

    /// Adds an initializer.
    pub fn initializer(&mut self, name: &str, dims: &[i64], data: TensorData) -> &mut Self {
        self.graph.initializer.push(tensor(name, dims, data));
        self
    }

    /// Adds a float32 initializer whose data lives in an external file
    /// (`location` relative to the model's folder).
    pub fn external_initializer(&mut self, name: &str, dims: &[i64], location: &str, offset: u64, length: u64) -> &mut Self {
        self.initializer(name, dims, TensorData::External { location: location.into(), offset, length })
    }

    /// Adds a node in the default domain; `""` in `inputs` marks an absent optional input.
    pub fn node(&mut self, op: &str, inputs: &[&str], outputs: &[&str], attrs: &[(&str, Attr)]) -> &mut Self {
        self.node_in_domain("", op, inputs, outputs, attrs)
    }

    /// Adds a node in another domain (custom ops).
    pub fn node_in_domain(
        &mut self,
        domain: &str,
        op: &str,
        inputs: &[&str],
        outputs: &[&str],
        attrs: &[(&str, Attr)],
    ) -> &mut Self {
        let name = format!("{op}_{}", self.graph.node.len());
        let attribute = attrs.iter().map(|(n, a)| attribute(n, a)).collect();
        self.graph.node.push(pb::NodeProto {
            name,
            op_type: op.into(),
            domain: domain.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            attribute,
            ..Default::default()
        });
        self
    }

    /// Serializes the model.
    pub fn to_bytes(&self) -> Vec<u8> {
        let model = pb::ModelProto {
            ir_version: self.ir_version,
            producer_name: "adamp-graph-builder".into(),
            opset_import: vec![pb::OperatorSetIdProto { domain: String::new(), version: self.opset }],
            graph: Some(self.graph.clone()),
            ..Default::default()
        };
        model.encode_to_vec()
    }
}

fn value_info(name: &str, dtype: pb::tensor_proto::DataType, dims: Option<&[i64]>) -> pb::ValueInfoProto {
    use pb::tensor_shape_proto::{dimension::Value, Dimension};
    let shape = dims.map(|dims| pb::TensorShapeProto {
        dim: dims
            .iter()
            .enumerate()
            .map(|(i, &d)| Dimension {
                value: Some(if d < 0 {
                    Value::DimParam(if i == 0 { "N".to_string() } else { format!("d{i}") })
                } else {
                    Value::DimValue(d)
                }),
                denotation: String::new(),
            })
            .collect(),
    });
    pb::ValueInfoProto {
        name: name.into(),
        r#type: Some(pb::TypeProto {
            denotation: String::new(),
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor { elem_type: dtype as i32, shape })),
        }),
        ..Default::default()
    }
}

fn tensor(name: &str, dims: &[i64], data: TensorData) -> pb::TensorProto {
    let count = dims.iter().try_fold(1i64, |a, &d| a.checked_mul(d)).unwrap_or(0);
    let (data_type, raw): (_, Vec<u8>) = match data {
        TensorData::F32(v) => (pb::tensor_proto::DataType::Float, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
        TensorData::I64(v) => (pb::tensor_proto::DataType::Int64, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
        TensorData::Zeros => (pb::tensor_proto::DataType::Float, vec![0u8; 4 * count.max(0) as usize]),
        TensorData::External { location, offset, length } => {
            let entry = |k: &str, v: String| pb::StringStringEntryProto { key: k.into(), value: v };
            return pb::TensorProto {
                name: name.into(),
                dims: dims.to_vec(),
                data_type: pb::tensor_proto::DataType::Float as i32,
                data_location: pb::tensor_proto::DataLocation::External as i32,
                external_data: vec![entry("location", location), entry("offset", offset.to_string()), entry("length", length.to_string())],
                ..Default::default()
            };
        }
    };
    pb::TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: data_type as i32,
        raw_data: raw.into(),
        ..Default::default()
    }
}

fn attribute(name: &str, a: &Attr) -> pb::AttributeProto {
    use pb::attribute_proto::AttributeType as T;
    let mut p = pb::AttributeProto { name: name.into(), ..Default::default() };
    match a {
        Attr::Int(i) => (p.i, p.r#type) = (*i, T::Int as i32),
        Attr::Float(f) => (p.f, p.r#type) = (*f, T::Float as i32),
        Attr::Ints(v) => (p.ints, p.r#type) = (v.clone(), T::Ints as i32),
        Attr::Str(s) => (p.s, p.r#type) = (s.clone().into_bytes().into(), T::String as i32),
        Attr::Tensor(dims, data) => (p.t, p.r#type) = (Some(tensor("", dims, data.clone())), T::Tensor as i32),
        Attr::Tensors(ts) => {
            (p.tensors, p.r#type) = (ts.iter().map(|(dims, data)| tensor("", dims, data.clone())).collect(), T::Tensors as i32)
        }
        Attr::Graph(g) => (p.g, p.r#type) = (Some(g.graph.clone()), T::Graph as i32),
    }
    p
}
