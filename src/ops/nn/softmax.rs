//! The `Softmax`, `LogSoftmax`, `Hardmax`: definitions and rules.
#![allow(clippy::too_many_arguments)]
use crate::ops::util::prelude::*;

// The attributes, with their ONNX defaults (checked when the IR is built).
/// The axis; its default is the opset's ([`softmax_axis_value`]).
const AXIS: OptIntAttr = OptIntAttr::new("axis", AttrCheck::Any);

/// A (Log)Softmax's or Hardmax's axis: the attribute, else the opset's
/// default (1 before opset 13, when the input was flattened to 2-D there;
/// -1 from 13 on).
pub(crate) fn softmax_axis_value(opset: i64, n: &Node) -> i64 {
    AXIS.get(n).unwrap_or(if opset < 13 { 1 } else { -1 })
}

/// The `Softmax` op.
pub static SOFTMAX: OpDef = OpDef {
    name: "Softmax",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    attrs: &[
        AXIS.spec,
    ],
    shape: Some(same_shape),
    constraints: Some(same_shape_constraints),
    analysis: Analysis::Rule(nonlinear),
    gradient: Gradient::Rule(softmax_grad),
    kernel: Some(softmax_kernel),
    ..OpDef::BASE
};

/// The `LogSoftmax` op.
pub static LOG_SOFTMAX: OpDef = OpDef {
    name: "LogSoftmax",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    attrs: &[
        AXIS.spec,
    ],
    shape: Some(same_shape),
    constraints: Some(same_shape_constraints),
    analysis: Analysis::Rule(nonlinear),
    gradient: Gradient::Rule(log_softmax_grad),
    kernel: Some(log_softmax_kernel),
    ..OpDef::BASE
};

/// The `Hardmax` op.
pub static HARDMAX: OpDef = OpDef {
    name: "Hardmax",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    attrs: &[
        AXIS.spec,
    ],
    shape: Some(same_shape),
    analysis: Analysis::Unknown("not written: a change reaching it is unknown"),
    gradient: Gradient::None("not written: an error on the gradient path"),
    ..OpDef::BASE
};

pub(crate) fn softmax_axis(ad: &Ad, n: &Node) -> Result<i64, RewriteError> {
    let r = ad.rank(n, 0)?;
    let axis = crate::ir::norm_axis(softmax_axis_value(ad.g.opset, n), r).ok_or_else(|| Ad::err(n, "axis out of range"))?;
    Ok(axis as i64)
}

pub(crate) fn softmax_grad(ad: &mut Ad, n: &Node, dy: &[Option<String>], _: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    let dy = dy0!(n, dy);
    let axis = softmax_axis(ad, n)?;
    let y = ad.out(n, 0);
    let gy = ad.em.mul(&dy, &y);
    let s = ad.em.reduce(&REDUCE_SUM, &gy, Some(&[axis]), true);
    let d = ad.em.sub(&dy, &s);
    Ok(grads(n, vec![(0, ad.em.mul(&y, &d))]))
}

pub(crate) fn log_softmax_grad(ad: &mut Ad, n: &Node, dy: &[Option<String>], _: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    let dy = dy0!(n, dy);
    let axis = softmax_axis(ad, n)?;
    let y = ad.out(n, 0);
    let p = ad.em.op(&EXP, &[&y], vec![]);
    let s = ad.em.reduce(&REDUCE_SUM, &dy, Some(&[axis]), true);
    let ps = ad.em.mul(&p, &s);
    Ok(grads(n, vec![(0, ad.em.sub(&dy, &ps))]))
}

fn softmax_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    softmax_lowering(ctx, false, ctx.opset < 13)
}

fn log_softmax_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    softmax_lowering(ctx, true, ctx.opset < 13)
}

/// (Log)Softmax over one axis (opset 13 and later), or with `coerce_2d` over
/// everything from `axis` on, the input seen as a matrix (opsets 1–12, whose
/// default axis is 1). One invocation per normalized row: its maximum, the
/// sum of the shifted exponentials, then the outputs.
pub(crate) fn softmax_lowering(ctx: &KernelCtx, log: bool, coerce_2d: bool) -> Result<Lowered, String> {
    let (x, y) = (ctx.input(0)?, ctx.output(0)?);
    if x.elem != Elem::F32 || y.elem != Elem::F32 {
        return Err(format!("X is {:?}; the kernel computes float32", x.elem));
    }
    if x.shape != y.shape {
        return Err(format!("Y of shape {:?} for X of shape {:?}", y.shape, x.shape));
    }
    if x.numel() >= 1 << 31 {
        return Err(format!("X of shape {:?} has 2^31 elements or more", x.shape));
    }
    let r = x.shape.len();
    let given = softmax_axis_value(ctx.opset, ctx.node);
    let axis = crate::ir::norm_axis(given, r).filter(|&a| a < r.max(1)).ok_or_else(|| format!("axis {given} is out of range for rank {r}"))?;
    let outer: usize = x.shape[..axis.min(r)].iter().product();
    let (len, inner): (usize, usize) = if coerce_2d || r == 0 { (x.shape[axis.min(r)..].iter().product(), 1) } else { (x.shape[axis], x.shape[axis + 1..].iter().product()) };
    let rows = outer * inner;
    if len == 0 || rows == 0 {
        return Ok(Lowered::default());
    }
    let out = if log { "x[at] - mx - log(s)" } else { "exp(x[at] - mx) / s" };
    let body = format!(
        "    let base = (i / {inner}u) * {span}u + i % {inner}u;\n    var mx = x[base];\n    for (var k = 1u; k < {len}u; k++) {{ mx = max(mx, x[base + k * {inner}u]); }}\n    var s = 0.0;\n    for (var k = 0u; k < {len}u; k++) {{ s += exp(x[base + k * {inner}u] - mx); }}\n    for (var k = 0u; k < {len}u; k++) {{\n        let at = base + k * {inner}u;\n        out[at] = {out};\n    }}",
        span = len * inner
    );
    let wgsl = format!("{}{}", kern::bindings(&[("x", Elem::F32), ("out", Elem::F32)]), kern::elementwise_main(rows, &body));
    Ok(Lowered::one(kern::Launch { label: kern::label(ctx.node, ""), wgsl, binds: vec![kern::Bind::Input(0), kern::Bind::Output(0)], groups: kern::groups_for(rows, &ctx.limits) }))
}
