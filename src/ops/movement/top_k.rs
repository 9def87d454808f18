//! The `TopK`: definitions and rules.
#![allow(clippy::too_many_arguments)]
use crate::ops::util::prelude::*;

// The attributes, with their ONNX defaults (checked when the IR is built).
const AXIS: IntAttr = IntAttr::new("axis", AttrCheck::Any, -1);
/// Opset 1's k (later opsets take it as an input).
const K: OptIntAttr = OptIntAttr::new("k", AttrCheck::AtLeast(0));
const LARGEST: IntAttr = IntAttr::flag("largest", true);
const SORTED: IntAttr = IntAttr::flag("sorted", true);

/// The `TopK` op.
pub static TOP_K: OpDef = OpDef {
    name: "TopK",
    module: module_path!(),
    inputs: Arity::range(2, 2),
    outputs: Arity::range(2, 2),
    opsets: Opsets { since: 1, until: None },
    attrs: &[
        AXIS.spec,
        K.spec,
        LARGEST.spec,
        SORTED.spec,
    ],
    shape: Some(top_k_shape),
    analysis: Analysis::Unknown("not written: a change reaching it is unknown"),
    arg_slots: ArgSlots::From(1),
    gradient: Gradient::None("not written: an error on the gradient path"),
    kernel: Some(top_k_kernel),
    ..OpDef::BASE
};

pub(crate) fn top_k_shape(g: &Graph, n: &Node) -> Vec<ShapeOut> {
    let k = ints_of(g, n, 1).filter(|k| k.len() == 1).map(|k| k[0]).or(K.get(n));
    let s = shape_of(g, n, 0).and_then(|mut s| {
        let axis = norm_axis(AXIS.get(n), s.len())?;
        s[axis] = k.map_or(Dim::Unknown, Dim::Known);
        Some(s)
    });
    vec![(s.clone(), None, None, first_dtype(g, n)), (s, None, None, Some(DType::I64))]
}

fn top_k_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    use super::map::{launch, Arg};
    // One invocation per row along the axis; the j-th pick is the best element
    // that comes after the (j-1)-th in the order (value, then lower index
    // first), so no per-row state is kept: k passes over the row, always sorted.
    let x = ctx.input(0)?;
    let vals = ctx.output(0)?;
    let r = x.shape.len();
    let a = super::map::axis(AXIS.get(ctx.node), r, "axis")?;
    if vals.shape.len() != r || (0..r).any(|d| d != a && vals.shape[d] != x.shape[d]) || vals.shape[a] > x.shape[a] {
        return Err(format!("the output {:?} is not a top-k of the input {:?} along axis {a}", vals.shape, x.shape));
    }
    if x.elem == Elem::Bool || ctx.output(1)?.elem != Elem::I32 || ctx.output(1)?.shape != vals.shape {
        return Err("TopK of numbers, with integer indices shaped like the values".into());
    }
    let (n, k) = (x.shape[a], vals.shape[a]);
    let inner: usize = x.shape[a + 1..].iter().product();
    let rows = x.numel() / n.max(1);
    if k == 0 || rows == 0 {
        return Ok(Lowered::default());
    }
    let ty = x.elem.wgsl();
    let cmp = if LARGEST.on(ctx.node) { ">" } else { "<" };
    let helpers = format!("fn before(a: {ty}, ia: i32, b: {ty}, ib: i32) -> bool {{ return a {cmp} b || (a == b && ia < ib); }}\n");
    let body = format!(
        "    let xb = (i / {inner}u) * {} + i % {inner}u;\n\
         \x20   let yb = (i / {inner}u) * {} + i % {inner}u;\n\
         \x20   var pv = x[xb];\n\
         \x20   var pi = -1;\n\
         \x20   for (var j = 0u; j < {k}u; j++) {{\n\
         \x20       var bv = x[xb];\n\
         \x20       var bi = -1;\n\
         \x20       for (var e = 0u; e < {n}u; e++) {{\n\
         \x20           let v = x[xb + e * {inner}u];\n\
         \x20           let ie = i32(e);\n\
         \x20           if (pi >= 0 && !before(pv, pi, v, ie)) {{ continue; }}\n\
         \x20           if (bi < 0 || before(v, ie, bv, bi)) {{ bv = v; bi = ie; }}\n\
         \x20       }}\n\
         \x20       vals[yb + j * {inner}u] = bv;\n\
         \x20       idx[yb + j * {inner}u] = bi;\n\
         \x20       pv = bv;\n\
         \x20       pi = bi;\n\
         \x20   }}",
        format!("{}u", n * inner),
        format!("{}u", k * inner),
    );
    let args = [Arg::input(ctx, 0, "x")?, Arg::output(ctx, 0, "vals")?, Arg::output(ctx, 1, "idx")?];
    Ok(Lowered::one(launch(ctx, "", &args, rows, &helpers, &body)?))
}
