//! The `DFT`: definitions and rules.
#![allow(clippy::too_many_arguments)]
use crate::ops::util::prelude::*;

// The attributes, with their ONNX defaults (checked when the IR is built).
const AXIS: IntAttr = IntAttr::new("axis", AttrCheck::Any, 1);
const INVERSE: IntAttr = IntAttr::flag("inverse", false);
const ONESIDED: IntAttr = IntAttr::flag("onesided", false);

/// The `DFT` op.
pub static DFT: OpDef = OpDef {
    name: "DFT",
    module: module_path!(),
    inputs: Arity::range(1, 3),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 17, until: None },
    attrs: &[
        AXIS.spec,
        INVERSE.spec,
        ONESIDED.spec,
    ],
    shape: Some(dft_out_shape),
    analysis: Analysis::Unknown("not written: a change reaching it is unknown"),
    gradient: Gradient::None("not written: an error on the gradient path"),
    ..OpDef::BASE
};

/// DFT: the signal axis becomes the DFT length (half plus one one-sided), the
/// last axis holds real and imaginary parts (1 for a one-sided inverse).
pub(crate) fn dft_shape(g: &Graph, n: &Node) -> Option<Vec<Dim>> {
    let x = shape_of(g, n, 0).filter(|x| x.len() >= 2)?;
    let r = x.len();
    let axis = if g.opset >= 20 {
        match n.input(2) {
            Some(_) => floats_of(g, n, 2).filter(|v| v.len() == 1).map(|v| v[0] as i64)?,
            None => -2,
        }
    } else {
        AXIS.get(n)
    };
    // the last axis is the complex one: axes count among the others
    let axis = norm_axis(axis, r)?;
    if axis == r - 1 {
        return None;
    }
    let length = match n.input(1) {
        Some(_) => Some(floats_of(g, n, 1).filter(|v| v.len() == 1).map(|v| v[0] as i64)?),
        None => None,
    };
    let (inverse, onesided) = (INVERSE.on(n), ONESIDED.on(n));
    let mut out = x.clone();
    let d = length.map(Dim::Known).unwrap_or(x[axis]);
    out[axis] = match (inverse, onesided) {
        (false, true) => arith(arith(d, Dim::Known(2), Arith::Div), Dim::Known(1), Arith::Add),
        (true, true) => length.map(Dim::Known).unwrap_or_else(|| arith(arith(x[axis], Dim::Known(1), Arith::Sub), Dim::Known(2), Arith::Mul)),
        _ => d,
    };
    out[r - 1] = Dim::Known(if inverse && onesided { 1 } else { 2 });
    Some(out)
}

pub(crate) fn dft_out_shape(g: &Graph, n: &Node) -> Vec<ShapeOut> {
    vec![(dft_shape(g, n), None, None, first_dtype(g, n))]
}
