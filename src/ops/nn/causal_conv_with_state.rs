//! The `CausalConvWithState`: definition and rules.
use crate::ops::util::prelude::*;

/// The `CausalConvWithState` op (opset 27): a causal depthwise 1-D convolution
/// over `[batch, channels, length]` that carries the last `k - 1` positions.
pub static CAUSAL_CONV_WITH_STATE: OpDef = OpDef {
    name: "CausalConvWithState",
    module: module_path!(),
    inputs: Arity::range(2, 4),
    outputs: Arity::range(1, 2),
    opsets: Opsets { since: 27, until: None },
    shape: Some(causal_conv_shape),
    analysis: Analysis::Rule(nonlinear),
    gradient: Gradient::None("not written: an error on the gradient path"),
    ..OpDef::BASE
};

/// The output has the input's shape; the state is `[batch, channels, k - 1]`
/// with `k` the weight's last dim (`[channels, 1, k]`).
fn causal_conv_shape(g: &Graph, n: &Node) -> Vec<ShapeOut> {
    let x = shape_of(g, n, 0).filter(|x| x.len() == 3);
    let k = shape_of(g, n, 1).filter(|w| w.len() == 3).map(|w| w[2]);
    let state = x.as_ref().map(|x| {
        let carried = match k {
            Some(Dim::Known(k)) if k >= 1 => Dim::Known(k - 1),
            _ => Dim::Unknown,
        };
        vec![x[0], x[1], carried]
    });
    let dtype = first_dtype(g, n);
    vec![(x, None, None, dtype), (state, None, None, dtype)]
}
