//! The `LinearAttention`: definition and rules.
use crate::ops::util::prelude::*;

// The attributes, with their ONNX defaults (checked when the IR is built).
/// Head counts that unpack the packed inputs (absent: unknown dims).
const Q_NUM_HEADS: OptIntAttr = OptIntAttr::new("q_num_heads", AttrCheck::AtLeast(1));
const KV_NUM_HEADS: OptIntAttr = OptIntAttr::new("kv_num_heads", AttrCheck::AtLeast(1));

/// The `LinearAttention` op (opset 27): recurrent linear attention over packed
/// `[B, T, heads * head_size]` inputs, with a `[B, H_kv, d_k, d_v]` state.
pub static LINEAR_ATTENTION: OpDef = OpDef {
    name: "LinearAttention",
    module: module_path!(),
    inputs: Arity::range(3, 6),
    outputs: Arity::range(1, 2),
    opsets: Opsets { since: 27, until: None },
    attrs: &[
        Q_NUM_HEADS.spec,
        KV_NUM_HEADS.spec,
    ],
    shape: Some(linear_attention_shape),
    analysis: Analysis::Rule(nonlinear),
    gradient: Gradient::None("not written: an error on the gradient path"),
    ..OpDef::BASE
};

/// `output` is `[B, T, H_q * d_v]`, `present_state` `[B, H_kv, d_k, d_v]`, where
/// `d_k` and `d_v` unpack the key's and value's last dims by `kv_num_heads`.
fn linear_attention_shape(g: &Graph, n: &Node) -> Vec<ShapeOut> {
    let (q, k, v) = (shape_of(g, n, 0), shape_of(g, n, 1), shape_of(g, n, 2));
    let (q_heads, kv_heads) = (Q_NUM_HEADS.get(n).unwrap_or(0), KV_NUM_HEADS.get(n).unwrap_or(0));
    let valid = q_heads > 0 && kv_heads > 0 && q_heads % kv_heads == 0;
    let per_head = |s: &Option<Vec<Dim>>| match s.as_deref() {
        Some([_, _, Dim::Known(d)]) if valid && d % kv_heads == 0 => Dim::Known(d / kv_heads),
        _ => Dim::Unknown,
    };
    let (d_k, d_v) = (per_head(&k), per_head(&v));
    let output = q.as_ref().filter(|q| q.len() == 3).map(|q| {
        let packed = match d_v {
            Dim::Known(d) => q_heads.checked_mul(d).map_or(Dim::Unknown, Dim::Known),
            _ => Dim::Unknown,
        };
        vec![q[0], q[1], packed]
    });
    let batch = q.as_ref().filter(|q| q.len() == 3).map(|q| q[0]).unwrap_or(Dim::Unknown);
    let heads = if valid { Dim::Known(kv_heads) } else { Dim::Unknown };
    let state = Some(vec![batch, heads, d_k, d_v]);
    let dtype = first_dtype(g, n);
    vec![(output, None, None, dtype), (state, None, None, dtype)]
}
