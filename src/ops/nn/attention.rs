//! The `Attention`, `RotaryEmbedding`: definitions and rules.
#![allow(clippy::too_many_arguments)]
use crate::ops::util::prelude::*;

// The attributes, with their ONNX defaults (checked when the IR is built).
/// The query's heads, when its inputs are packed 3-D (absent: 4-D inputs).
const Q_NUM_HEADS: OptIntAttr = OptIntAttr::new("q_num_heads", AttrCheck::AtLeast(1));
/// The key's and value's heads, when packed 3-D.
const KV_NUM_HEADS: OptIntAttr = OptIntAttr::new("kv_num_heads", AttrCheck::AtLeast(1));

/// The `Attention` op.
pub static ATTENTION: OpDef = OpDef {
    name: "Attention",
    module: module_path!(),
    inputs: Arity::range(3, 7),
    outputs: Arity::range(1, 4),
    opsets: Opsets { since: 23, until: None },
    attrs: &[
        Q_NUM_HEADS.spec,
        KV_NUM_HEADS.spec,
    ],
    shape: Some(attention_shapes),
    analysis: Analysis::Unknown("not written: a change reaching it is unknown"),
    gradient: Gradient::None("not written: an error on the gradient path"),
    ..OpDef::BASE
};

/// The `RotaryEmbedding` op.
pub static ROTARY_EMBEDDING: OpDef = OpDef {
    name: "RotaryEmbedding",
    module: module_path!(),
    inputs: Arity::range(3, 4),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 23, until: None },
    shape: Some(same_shape),
    analysis: Analysis::Unknown("not written: a change reaching it is unknown"),
    gradient: Gradient::None("not written: an error on the gradient path"),
    ..OpDef::BASE
};

/// Attention (opset 23): Y, present key, present value, and the QK product.
pub(crate) fn attention_shapes(g: &Graph, n: &Node) -> Vec<Out> {
    let (Some(q), Some(k), Some(v)) = (shape_of(g, n, 0), shape_of(g, n, 1), shape_of(g, n, 2)) else { return Vec::new() };
    let dtype = first_dtype(g, n);
    // 4-D [B, heads, seq, head_size]; 3-D [B, seq, heads * head_size]
    let as4 = |t: &[Dim], h: Option<i64>| -> Option<Vec<Dim>> {
        match t.len() {
            4 => Some(t.to_vec()),
            3 => {
                let h = h?;
                Some(vec![t[0], Dim::Known(h), t[1], arith(t[2], Dim::Known(h), Arith::Div)])
            }
            _ => None,
        }
    };
    let (Some(q4), Some(k4), Some(v4)) = (as4(&q, Q_NUM_HEADS.get(n)), as4(&k, KV_NUM_HEADS.get(n)), as4(&v, KV_NUM_HEADS.get(n))) else {
        return Vec::new();
    };
    // past key/value (inputs 4, 5) are concatenated before the current ones along the sequence
    let past = shape_of(g, n, 4).filter(|p| p.len() == 4).map(|p| p[2]);
    let total = match past {
        Some(p) => arith(p, k4[2], Arith::Add),
        None => k4[2],
    };
    let y = if q.len() == 4 {
        vec![q4[0], q4[1], q4[2], v4[3]]
    } else {
        vec![q4[0], q4[2], arith(q4[1], v4[3], Arith::Mul)]
    };
    let present_k = vec![k4[0], k4[1], total, k4[3]];
    let present_v = vec![v4[0], v4[1], total, v4[3]];
    let qk = vec![q4[0], q4[1], q4[2], total];
    vec![(Some(y), None, None, dtype), (Some(present_k), None, None, dtype), (Some(present_v), None, None, dtype), (Some(qk), None, None, dtype)]
}
