//! The `Cast`, `CastLike`, `BitCast`: definitions and rules.
#![allow(clippy::too_many_arguments)]
use crate::ops::util::prelude::*;

// The attributes, with their ONNX defaults (checked when the IR is built).
const SATURATE: IntAttr = IntAttr::flag("saturate", true);
/// The element type cast to (an ONNX `TensorProto.DataType` code).
pub(crate) const CAST_TO: OptIntAttr = OptIntAttr::required("to", AttrCheck::Any);

/// The `Cast` op.
pub static CAST: OpDef = OpDef {
    name: "Cast",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    attrs: &[
        CAST_TO.spec,
        SATURATE.spec,
    ],
    shape: Some(identity_shape),
    constraints: Some(same_shape_constraints),
    analysis: Analysis::Rule(cast_rule),
    gradient: Gradient::Rule(cast_grad),
    kernel: Some(cast_kernel),
    ..OpDef::BASE
};

/// The `CastLike` op.
pub static CAST_LIKE: OpDef = OpDef {
    name: "CastLike",
    module: module_path!(),
    inputs: Arity::range(2, 2),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 15, until: None },
    attrs: &[
        SATURATE.spec,
    ],
    shape: Some(identity_shape),
    constraints: Some(same_shape_constraints),
    analysis: Analysis::Rule(cast_rule),
    gradient: Gradient::None("not written: an error on the gradient path"),
    ..OpDef::BASE
};

/// The `BitCast` op.
pub static BIT_CAST: OpDef = OpDef {
    name: "BitCast",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 26, until: None },
    attrs: &[
        CAST_TO.spec,
    ],
    shape: Some(bit_cast_shape),
    analysis: Analysis::Unknown("not written: a change reaching it is unknown"),
    gradient: Gradient::None("not written: an error on the gradient path"),
    ..OpDef::BASE
};

pub(crate) fn cast_rule(_: &mut Ctx, n: &Node, e: &[Option<Affine>]) -> Vec<Flow> {
    match e.first().and_then(Option::as_ref) {
        None => one(Flow::Same),
        Some(x) => {
            // CastLike takes its target's type, a float where the change reaches it
            if n.is(&CAST) && !CAST_TO.dtype(n).is_some_and(|t| t.is_float()) {
                one(variant("cast of a changed value to a non-float type"))
            } else {
                one(changed(x.clone()))
            }
        }
    }
}

pub(crate) fn cast_grad(ad: &mut Ad, n: &Node, dy: &[Option<String>], _: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    let dy = dy0!(n, dy);
    let from = n.input(0).and_then(|v| ad.g.values[v].dtype).ok_or_else(|| Ad::err(n, "input type unknown"))?;
    if !from.is_float() {
        return Ok(vec![None; n.inputs.len()]);
    }
    let to = n.output(0).and_then(|v| ad.g.values[v].dtype);
    let g = if to == Some(from) { dy } else { ad.em.cast(&dy, from.onnx_code()) };
    Ok(grads(n, vec![(0, g)]))
}

pub(crate) fn bit_cast_shape(g: &Graph, n: &Node) -> Vec<ShapeOut> {
    // same total bytes: a smaller element adds a trailing axis, a larger one drops it
    let Some(to) = CAST_TO.get(n).and_then(|t| i32::try_from(t).ok()) else { return Vec::new() };
    let size = |code: i32| -> Option<i64> {
        Some(match code {
            2 | 3 | 9 => 1,
            4 | 5 | 10 | 16 => 2,
            1 | 6 | 12 => 4,
            7 | 11 | 13 => 8,
            _ => return None,
        })
    };
    let from = first_dtype(g, n).map(DType::onnx_code);
    let s = match (shape_of(g, n, 0), from.and_then(size), size(to)) {
        (Some(x), Some(a), Some(b)) if a == b => Some(x),
        (Some(mut x), Some(a), Some(b)) if a > b => {
            x.push(Dim::Known(a / b));
            Some(x)
        }
        (Some(mut x), Some(a), Some(b)) if x.last() == Some(&Dim::Known(b / a)) => {
            x.pop();
            Some(x)
        }
        _ => None,
    };
    vec![(s, None, None, Some(DType::from_onnx(to)))]
}

fn cast_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    let (from, to) = (ctx.input(0)?.elem, ctx.output(0)?.elem);
    if from == to {
        return Ok(Lowered::alias(0));
    }
    kern::elementwise(ctx, &kern::convert(from, to, "x0"))
}
