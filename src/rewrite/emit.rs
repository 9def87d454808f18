//! Emitting IR nodes: fresh names, constants, and the op forms that change
//! between opsets (axes as attributes or as inputs).
use crate::ir::{AttrValue, DType, Dim, NodeParts, Tensor, TypeDecl};
use crate::ops::{self, OpDef};
use std::collections::HashMap;

/// `TensorProto.DataType` codes the rewrite emits.
pub(crate) const FLOAT: i32 = 1;
pub(crate) const INT32: i32 = 6;
pub(crate) const INT64: i32 = 7;
pub(crate) const BOOL: i32 = 9;
pub(crate) const DOUBLE: i32 = 11;

/// A named attribute of an emitted node.
pub(crate) type Attribute = (String, AttrValue);

/// An INT attribute.
pub(crate) fn a_int(name: &str, v: i64) -> Attribute {
    (name.into(), AttrValue::Int(v))
}

/// A FLOAT attribute.
pub(crate) fn a_float(name: &str, v: f32) -> Attribute {
    (name.into(), AttrValue::Float(v))
}

/// An INTS attribute.
pub(crate) fn a_ints(name: &str, v: &[i64]) -> Attribute {
    (name.into(), AttrValue::Ints(v.to_vec()))
}

/// A STRING attribute.
pub(crate) fn a_str(name: &str, v: &str) -> Attribute {
    (name.into(), AttrValue::Str(v.into()))
}

/// A TENSOR attribute.
pub(crate) fn a_tensor(name: &str, t: Tensor) -> Attribute {
    (name.into(), AttrValue::Tensor(t))
}

/// A tensor value's declaration; `None` dims leave the shape out (symbolic
/// dims index the step graph's symbols, which are the model's).
pub(crate) fn decl(name: &str, elem: i32, dims: Option<&[Dim]>) -> (String, Option<TypeDecl>) {
    (name.into(), Some(TypeDecl { dtype: Some(DType::from_onnx(elem)), shape: dims.map(<[Dim]>::to_vec) }))
}

/// A tensor of `elem` type holding `values` (converted), with `dims`.
pub(crate) fn tensor_f(elem: i32, dims: &[i64], values: &[f64]) -> Tensor {
    let raw: Vec<u8> = match elem {
        DOUBLE => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        INT64 => values.iter().flat_map(|&v| (v as i64).to_le_bytes()).collect(),
        INT32 => values.iter().flat_map(|&v| (v as i32).to_le_bytes()).collect(),
        BOOL => values.iter().map(|&v| (v != 0.0) as u8).collect(),
        _ => values.iter().flat_map(|&v| (v as f32).to_le_bytes()).collect(),
    };
    Tensor { dtype: DType::from_onnx(elem), dims: dims.to_vec(), data: raw.into() }
}

/// Appends nodes with unique names to a node list.
pub(crate) struct Emitter {
    /// The emitted nodes, in order.
    pub nodes: Vec<NodeParts>,
    /// Prefix of every name this emitter invents (checked unused by the model).
    prefix: String,
    next: usize,
    /// Default-domain opset of the output model.
    pub opset: i64,
    /// Element type of the model's floating-point values.
    pub float: i32,
    /// Small constants already emitted, by type and value: a gradient rule
    /// asks for the same zero or one once per node, and a fresh `Constant`
    /// each time would add a node per node of the model.
    constants: HashMap<(i32, Vec<u64>), String>,
}

/// Constants longer than this are not shared (their keys would cost memory).
const SHARED_CONSTANT_MAX: usize = 16;

impl Emitter {
    pub(crate) fn new(prefix: String, opset: i64, float: i32) -> Self {
        Emitter { nodes: Vec::new(), prefix, next: 0, opset, float, constants: HashMap::new() }
    }

    /// A fresh value name.
    pub(crate) fn fresh(&mut self, hint: &str) -> String {
        self.next += 1;
        format!("{}{}_{}", self.prefix, hint, self.next)
    }

    /// Adds a node with the given outputs.
    pub(crate) fn node(&mut self, op: &'static OpDef, inputs: &[&str], outputs: &[String], attribute: Vec<Attribute>) {
        let name = self.fresh(&format!("{}_node", op.name));
        let inputs = inputs.iter().map(|s| s.to_string()).collect();
        self.nodes.push(NodeParts { name, ..NodeParts::of(op, inputs, outputs.to_vec(), attribute) });
    }

    /// Adds a one-output node and returns its output's name.
    pub(crate) fn op(&mut self, op: &'static OpDef, inputs: &[&str], attribute: Vec<Attribute>) -> String {
        let out = self.fresh(op.name);
        self.node(op, inputs, std::slice::from_ref(&out), attribute);
        out
    }

    /// A `Constant` node.
    pub(crate) fn constant(&mut self, t: Tensor) -> String {
        self.op(&ops::CONSTANT, &[], vec![a_tensor("value", t)])
    }

    /// A `Constant` node with a given output name.
    pub(crate) fn constant_named(&mut self, t: Tensor, name: &str) {
        self.node(&ops::CONSTANT, &[], &[name.to_string()], vec![a_tensor("value", t)]);
    }

    /// A rank-0 constant of the model's float type.
    pub(crate) fn scalar(&mut self, v: f64) -> String {
        self.scalar_of(v, self.float)
    }

    /// A rank-0 constant of a given type (emitted once per type and value).
    pub(crate) fn scalar_of(&mut self, v: f64, elem: i32) -> String {
        self.shared_constant((elem, vec![v.to_bits()]), |_| tensor_f(elem, &[], &[v]))
    }

    /// A 1-D int64 constant (short ones emitted once per value).
    pub(crate) fn ints(&mut self, v: &[i64]) -> String {
        let make = |_: &mut Self| {
            let raw: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
            Tensor { dtype: DType::I64, dims: vec![v.len() as i64], data: raw.into() }
        };
        if v.len() > SHARED_CONSTANT_MAX {
            let t = make(self);
            return self.constant(t);
        }
        // The element type tags the key; a 1-D key never meets a rank-0 one.
        let mut key = vec![u64::MAX];
        key.extend(v.iter().map(|&x| x as u64));
        self.shared_constant((INT64, key), make)
    }

    fn shared_constant(&mut self, key: (i32, Vec<u64>), make: impl FnOnce(&mut Self) -> Tensor) -> String {
        if let Some(name) = self.constants.get(&key) {
            return name.clone();
        }
        let t = make(self);
        let name = self.constant(t);
        self.constants.insert(key, name.clone());
        name
    }

    /// A reduction; `axes: None` reduces every axis. Emits the axes as an
    /// input where the opset wants one (ReduceSum from 13, the rest from 18).
    pub(crate) fn reduce(&mut self, op: &'static OpDef, x: &str, axes: Option<&[i64]>, keepdims: bool) -> String {
        let input_form = if *op == ops::REDUCE_SUM { self.opset >= 13 } else { self.opset >= 18 };
        let keep = a_int("keepdims", keepdims as i64);
        match axes {
            None => self.op(op, &[x], vec![keep]),
            Some(a) if input_form => {
                let ax = self.ints(a);
                self.op(op, &[x, &ax], vec![keep])
            }
            Some(a) => self.op(op, &[x], vec![keep, a_ints("axes", a)]),
        }
    }

    /// ReduceSum over axes given as a runtime int64 tensor; no reduction when it is empty.
    pub(crate) fn reduce_sum_dyn(&mut self, x: &str, axes: &str) -> String {
        self.op(&ops::REDUCE_SUM, &[x, axes], vec![a_int("keepdims", 1), a_int("noop_with_empty_axes", 1)])
    }

    pub(crate) fn unsqueeze(&mut self, x: &str, axes: &[i64]) -> String {
        let a = self.ints(axes);
        self.op(&ops::UNSQUEEZE, &[x, &a], vec![])
    }

    pub(crate) fn shape(&mut self, x: &str) -> String {
        self.op(&ops::SHAPE, &[x], vec![])
    }

    pub(crate) fn reshape(&mut self, x: &str, shape: &str) -> String {
        self.op(&ops::RESHAPE, &[x, shape], vec![])
    }

    pub(crate) fn reshape_like(&mut self, x: &str, like: &str) -> String {
        let s = self.shape(like);
        self.reshape(x, &s)
    }

    pub(crate) fn cast(&mut self, x: &str, to: i32) -> String {
        self.op(&ops::CAST, &[x], vec![a_int("to", to as i64)])
    }

    pub(crate) fn add(&mut self, a: &str, b: &str) -> String {
        self.op(&ops::ADD, &[a, b], vec![])
    }

    pub(crate) fn sub(&mut self, a: &str, b: &str) -> String {
        self.op(&ops::SUB, &[a, b], vec![])
    }

    pub(crate) fn mul(&mut self, a: &str, b: &str) -> String {
        self.op(&ops::MUL, &[a, b], vec![])
    }

    pub(crate) fn div(&mut self, a: &str, b: &str) -> String {
        self.op(&ops::DIV, &[a, b], vec![])
    }

    pub(crate) fn neg(&mut self, a: &str) -> String {
        self.op(&ops::NEG, &[a], vec![])
    }

    pub(crate) fn mul_scalar(&mut self, a: &str, v: f64) -> String {
        let c = self.scalar(v);
        self.mul(a, &c)
    }

    pub(crate) fn where_(&mut self, c: &str, a: &str, b: &str) -> String {
        self.op(&ops::WHERE, &[c, a, b], vec![])
    }

    /// Zeros of the model's float type with the shape of `like`.
    pub(crate) fn zeros_like(&mut self, like: &str) -> String {
        let s = self.shape(like);
        self.zeros_of_shape(&s)
    }

    /// Zeros of the model's float type with a runtime shape.
    pub(crate) fn zeros_of_shape(&mut self, shape: &str) -> String {
        self.filled(shape, 0.0, self.float)
    }

    /// A tensor of a runtime shape filled with `value` of type `elem`.
    pub(crate) fn filled(&mut self, shape: &str, value: f64, elem: i32) -> String {
        self.op(&ops::CONSTANT_OF_SHAPE, &[shape], vec![a_tensor("value", tensor_f(elem, &[1], &[value]))])
    }

    /// Sum of several values (one is passed through).
    pub(crate) fn sum(&mut self, xs: &[String]) -> String {
        match xs {
            [one] => one.clone(),
            _ => {
                let refs: Vec<&str> = xs.iter().map(String::as_str).collect();
                self.op(&ops::SUM, &refs, vec![])
            }
        }
    }
}
