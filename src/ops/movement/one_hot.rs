//! The `OneHot`: definitions and rules.
#![allow(clippy::too_many_arguments)]
use crate::ops::util::prelude::*;

// The attributes, with their ONNX defaults (checked when the IR is built).
const AXIS: IntAttr = IntAttr::new("axis", AttrCheck::Any, -1);

/// The `OneHot` op.
pub static ONE_HOT: OpDef = OpDef {
    name: "OneHot",
    module: module_path!(),
    inputs: Arity::range(3, 3),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 9, until: None },
    attrs: &[
        AXIS.spec,
    ],
    shape: Some(one_hot_shape),
    analysis: Analysis::Unknown("not written: a change reaching it is unknown"),
    arg_slots: ArgSlots::From(1),
    gradient: Gradient::None("not written: an error on the gradient path"),
    kernel: Some(one_hot_kernel),
    ..OpDef::BASE
};

pub(crate) fn one_hot_shape(g: &Graph, n: &Node) -> Vec<ShapeOut> {
    let depth = floats_of(g, n, 1).filter(|v| v.len() == 1).map(|v| v[0] as i64);
    let s = shape_of(g, n, 0).and_then(|mut s| {
        let axis = norm_axis(AXIS.get(n), s.len() + 1)?;
        s.insert(axis, depth.map_or(Dim::Unknown, Dim::Known));
        Some(s)
    });
    vec![(s, None, None, val(g, n, 2).and_then(|v| v.dtype))]
}

fn one_hot_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    use super::map::{coords, flat, launch, Arg};
    // The output's static shape gives the depth.
    let ind = ctx.input(0)?;
    let vals = ctx.input(2)?;
    let out = ctx.output(0)?;
    let q = ind.shape.len();
    let a = super::map::axis(AXIS.get(ctx.node), q + 1, "axis")?;
    if out.shape.len() != q + 1 || vals.numel() != 2 || vals.elem != out.elem {
        return Err(format!("indices {:?}, values {:?} and output {:?} do not fit", ind.shape, vals.shape, out.shape));
    }
    let n = out.numel();
    if n == 0 {
        return Ok(Lowered::default());
    }
    let depth = out.shape[a];
    let ic: Vec<String> = (0..=q).filter(|&d| d != a).map(|d| format!("c{d}")).collect();
    let mut body = coords("c", "i", &out.shape);
    // indices in [-depth, depth) count from the end when negative; others give all off values
    let (ty, t) = match ind.elem {
        Elem::F32 => ("f32", "f32"),
        Elem::I32 => ("i32", "i32"),
        Elem::Bool => return Err("bool indices".into()),
    };
    body.push_str(&format!(
        "    let v0 = idx[{}];\n    let v = select(v0, v0 + {ty}({depth}), v0 < {ty}(0));\n    out[i] = select(vals[0], vals[1], v == {t}(c{a}));",
        flat(&ic, &ind.shape)
    ));
    let args = [Arg::input(ctx, 0, "idx")?, Arg::input(ctx, 2, "vals")?, Arg::output(ctx, 0, "out")?];
    Ok(Lowered::one(launch(ctx, "", &args, n, "", &body)?))
}
