//! The `ArgMax`, `ArgMin`: definitions and rules.
#![allow(clippy::too_many_arguments)]
use super::kernel as kern_reduce;
use crate::ops::util::prelude::*;

// The attributes, with their ONNX defaults (checked when the IR is built).
const SELECT_LAST_INDEX: IntAttr = IntAttr::flag("select_last_index", false);

/// The `ArgMax` op.
pub static ARG_MAX: OpDef = OpDef {
    name: "ArgMax",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    attrs: &[
        ARG_AXIS.spec,
        KEEPDIMS.spec,
        SELECT_LAST_INDEX.spec,
    ],
    shape: Some(reduce_shape),
    analysis: Analysis::Rule(arg_reduce_rule),
    gradient: Gradient::Zero("integer output"),
    kernel: Some(arg_max_kernel),
    ..OpDef::BASE
};

/// The `ArgMin` op.
pub static ARG_MIN: OpDef = OpDef {
    name: "ArgMin",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    attrs: &[
        ARG_AXIS.spec,
        KEEPDIMS.spec,
        SELECT_LAST_INDEX.spec,
    ],
    shape: Some(reduce_shape),
    analysis: Analysis::Rule(arg_reduce_rule),
    gradient: Gradient::Zero("integer output"),
    kernel: Some(arg_min_kernel),
    ..OpDef::BASE
};

pub(crate) fn arg_reduce_rule(c: &mut Ctx, n: &Node, e: &[Option<Affine>]) -> Vec<Flow> {
    let Some(x) = e.first().and_then(Option::as_ref) else { return one(Flow::Same) };
    let Some(r) = c.rank(n.input(0)) else { return one(unknown("rank unknown")) };
    let Some(a) = crate::ir::norm_axis(ARG_AXIS.get(n), r) else { return one(variant("bad axis")) };
    let ok = x.scale.as_ref().is_none_or(|s| s.mask & mask::bit(a) == 0) && x.shift.as_ref().is_none_or(|t| t.mask & mask::bit(a) == 0);
    one(if ok { Flow::Same } else { variant(format!("{} along a varying axis", n.op_type)) })
}

fn arg_max_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    arg_kernel(ctx, true)
}

fn arg_min_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    arg_kernel(ctx, false)
}

/// The index of the largest (`max`) or smallest element along `axis`. Ties
/// go to the first index, or the last with `select_last_index`; a NaN counts
/// as the extreme (numpy's rule: the first NaN wins). The combine compares
/// indices, so it is order-free and the tree reduction may pair any chunks.
fn arg_kernel(ctx: &KernelCtx, max: bool) -> Result<Lowered, String> {
    let x = ctx.input(0)?;
    let out = ctx.output(0)?;
    if out.elem != Elem::I32 {
        return Err(format!("the output is {:?}; int64 was expected", out.elem));
    }
    let rank = x.shape.len();
    let axis_attr = ARG_AXIS.get(ctx.node);
    let axis = crate::ir::norm_axis(axis_attr, rank.max(1)).filter(|&a| a < rank).ok_or_else(|| format!("axis {axis_attr} is out of range for an input of rank {rank}"))?;
    let geo = kern_reduce::Geometry::new(&x.shape, &[axis]);
    if geo.outputs != out.numel() {
        return Err(format!("reducing {:?} over axis {axis} gives {} elements, but the output has shape {:?}", x.shape, geo.outputs, out.shape));
    }
    if geo.reduced == 0 && geo.outputs > 0 {
        return Err(format!("axis {axis} of {:?} is empty: there is no index to return", x.shape));
    }
    let (vt, load) = match x.elem {
        Elem::F32 => ("f32", "x"),
        Elem::I32 => ("i32", "x"),
        Elem::Bool => ("i32", "i32(x)"),
    };
    let later = if SELECT_LAST_INDEX.on(ctx.node) { ">" } else { "<" };
    let better = if max { ">" } else { "<" };
    let nan = if x.elem == Elem::F32 {
        "    let an = is_nan_f(a.v);\n    let bn = is_nan_f(b.v);\n    if (an && bn) { return tie(a, b); }\n    if (an) { return a; }\n    if (bn) { return b; }\n"
    } else {
        ""
    };
    let comb = kern_reduce::Combine {
        acc: "Arg".into(),
        defs: format!(
            "struct Arg {{ v: {vt}, i: i32 }}\n\
             fn tie(a: Arg, b: Arg) -> Arg {{\n    if (b.i {later} a.i) {{ return b; }}\n    return a;\n}}\n"
        ),
        init: format!("Arg({vt}(0), -1)"),
        map: format!("Arg({load}, i32(r))"),
        comb: format!("if (a.i < 0) {{ return b; }}\n    if (b.i < 0) {{ return a; }}\n{nan}    if (a.v == b.v) {{ return tie(a, b); }}\n    if (b.v {better} a.v) {{ return b; }}\n    return a;"),
        fin: "a.i".into(),
        words: 2,
        store: Some("part[2u * p] = bitcast<u32>(a.v);\n    part[2u * p + 1u] = bitcast<u32>(a.i);".into()),
        load: Some(format!("return Arg(bitcast<{vt}>(part[2u * p]), bitcast<i32>(part[2u * p + 1u]));")),
    };
    let mut low = Lowered::default();
    kern_reduce::lower(ctx, &geo, x.elem, &comb, kern_reduce::Dst { bind: kern::Bind::Output(0), elem: Elem::I32 }, &[], &mut low, "")?;
    Ok(low)
}
