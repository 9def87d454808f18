//! The `CumSum`, `CumProd`: definitions and rules.
#![allow(clippy::too_many_arguments)]
use crate::ops::util::prelude::*;

// The attributes, with their ONNX defaults (checked when the IR is built).
const EXCLUSIVE: IntAttr = IntAttr::flag("exclusive", false);
const REVERSE: IntAttr = IntAttr::flag("reverse", false);

/// The `CumSum` op.
pub static CUM_SUM: OpDef = OpDef {
    name: "CumSum",
    module: module_path!(),
    inputs: Arity::range(2, 2),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 11, until: None },
    attrs: &[
        EXCLUSIVE.spec,
        REVERSE.spec,
    ],
    shape: Some(same_shape),
    analysis: Analysis::Unknown("not written: a running sum mixes positions along its axis"),
    arg_slots: ArgSlots::From(1),
    gradient: Gradient::Rule(cumsum_grad),
    kernel: Some(cumsum_kernel),
    ..OpDef::BASE
};

/// The `CumProd` op.
pub static CUM_PROD: OpDef = OpDef {
    name: "CumProd",
    module: module_path!(),
    inputs: Arity::range(2, 2),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 26, until: None },
    attrs: &[
        EXCLUSIVE.spec,
        REVERSE.spec,
    ],
    shape: Some(same_shape),
    analysis: Analysis::Unknown("not written: a change reaching it is unknown"),
    gradient: Gradient::None("not written: an error on the gradient path"),
    ..OpDef::BASE
};

pub(crate) fn cumsum_grad(ad: &mut Ad, n: &Node, dy: &[Option<String>], _: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    // The gradient accumulates the other way along the axis.
    let dy = dy0!(n, dy);
    let axis = ad.name(n, 1);
    let attrs = vec![a_int("exclusive", EXCLUSIVE.get(n)), a_int("reverse", 1 - REVERSE.get(n).clamp(0, 1))];
    Ok(grads(n, vec![(0, ad.em.op(&CUM_SUM, &[&dy, &axis], attrs))]))
}

/// One invocation per line along the axis, a running sum down the line: the
/// lines are independent, and each element is read before it is written, so
/// the output may take over the input's storage.
fn cumsum_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    let x = ctx.input(0)?;
    let out = ctx.output(0)?;
    if out.elem != x.elem || out.shape != x.shape {
        return Err(format!("the output ({:?} {:?}) differs from the input ({:?} {:?})", out.elem, out.shape, x.elem, x.shape));
    }
    let zero = match x.elem {
        Elem::F32 => "0.0",
        Elem::I32 => "0i",
        Elem::Bool => return Err("CumSum of bool elements is not defined".into()),
    };
    let rank = x.shape.len();
    let raw = ctx.host_scalar(1).map_err(|e| format!("the axis ({e})"))? as i64;
    let axis = crate::ir::norm_axis(raw, rank).ok_or_else(|| format!("axis {raw} is out of range for an input of rank {rank}"))?;
    let len = x.shape[axis];
    let inner: usize = x.shape[axis + 1..].iter().product();
    let lines = x.numel() / len.max(1);
    if len == 0 || lines == 0 {
        return Ok(Lowered::default());
    }
    let exclusive = EXCLUSIVE.on(ctx.node);
    let reverse = REVERSE.on(ctx.node);
    let pos = if reverse { format!("({}u - t)", len - 1) } else { "t".into() };
    let step = if exclusive { "out[p] = acc;\n        acc = acc + v;" } else { "acc = acc + v;\n        out[p] = acc;" };
    let body = format!(
        "    let base = (i / {inner}u) * {span}u + i % {inner}u;\n\
         \x20   var acc = {zero};\n\
         \x20   for (var t = 0u; t < {len}u; t = t + 1u) {{\n\
         \x20       let p = base + {pos} * {inner}u;\n\
         \x20       let v = x[p];\n\
         \x20       {step}\n\
         \x20   }}",
        span = len * inner
    );
    let wgsl = format!("{}{}", kern::bindings(&[("x", x.elem), ("out", x.elem)]), kern::elementwise_main(lines, &body));
    let launch = kern::Launch { label: kern::label(ctx.node, ""), wgsl, binds: vec![kern::Bind::Input(0), kern::Bind::Output(0)], groups: kern::groups_for(lines, &ctx.limits) };
    Ok(Lowered { launches: vec![launch], in_place: vec![0], ..Default::default() })
}
