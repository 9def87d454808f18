//! The `FlexAttention` (domain `ai.onnx.preview`): definition and rules.
use crate::ops::util::prelude::*;

/// The `FlexAttention` op: scaled dot-product attention over rank-4 inputs with
/// optional score and probability modifier subgraphs.
pub static FLEX_ATTENTION: OpDef = OpDef {
    name: "FlexAttention",
    domain: "ai.onnx.preview",
    module: module_path!(),
    inputs: Arity::range(3, 3),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    shape: Some(flex_attention_shape),
    analysis: Analysis::Rule(nonlinear),
    gradient: Gradient::None("not written: an error on the gradient path"),
    ..OpDef::BASE
};

/// `Y` is `[batch, q_heads, q_length, v_head_size]`: Q's first three dims and V's last.
fn flex_attention_shape(g: &Graph, n: &Node) -> Vec<ShapeOut> {
    let q = shape_of(g, n, 0).filter(|q| q.len() == 4);
    let v_head = shape_of(g, n, 2).filter(|v| v.len() == 4).map(|v| v[3]).unwrap_or(Dim::Unknown);
    vec![(q.map(|q| vec![q[0], q[1], q[2], v_head]), None, None, first_dtype(g, n))]
}
