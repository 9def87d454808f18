//! The `Add`, `Sum`: definitions and rules.
#![allow(clippy::too_many_arguments)]
use crate::ops::util::prelude::*;

/// The `Add` op.
pub static ADD: OpDef = OpDef {
    name: "Add",
    module: module_path!(),
    inputs: Arity::range(2, 2),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    shape: Some(add_shape),
    analysis: Analysis::Rule(add_rule),
    gradient: Gradient::Rule(add_grad),
    reads: 2,
    kernel: Some(add_kernel),
    ..OpDef::BASE
};

/// The `Sum` op.
pub static SUM: OpDef = OpDef {
    name: "Sum",
    module: module_path!(),
    inputs: Arity::range(1, Arity::VARIADIC),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    shape: Some(binary_shape),
    analysis: Analysis::Rule(add_rule),
    gradient: Gradient::Rule(sum_grad),
    kernel: Some(sum_kernel),
    ..OpDef::BASE
};

pub(crate) fn add_rule(c: &mut Ctx, n: &Node, e: &[Option<Affine>]) -> Vec<Flow> {
    let out_rank = c.rank(n.output(0));
    // x + eps before a square root: the epsilon of a decomposed normalization.
    if n.inputs.len() == 2 {
        for (x, k) in [(0usize, 1usize), (1, 0)] {
            if let (Some(ex), None) = (e[x].as_ref(), e[k].as_ref()) {
                if ex.shift.is_none() && feeds_root(c, n) && tiny_or_zero(c, n.input(k)) {
                    return one(changed(ex.clone()));
                }
            }
        }
    }
    let terms: Vec<Term> = n.inputs.iter().zip(e).map(|(v, ef)| Term { value: *v, rank: c.rank(*v), effect: ef.as_ref(), negate: false }).collect();
    one(combine_sum(c, out_rank, &terms))
}

pub(crate) fn add_grad(ad: &mut Ad, n: &Node, dy: &[Option<String>], need: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    let dy = dy0!(n, dy);
    let mut out = Vec::new();
    for i in 0..2 {
        if nd(need, i) {
            out.push((i, ad.unb(n, i, &dy)?));
        }
    }
    Ok(grads(n, out))
}

pub(crate) fn sum_grad(ad: &mut Ad, n: &Node, dy: &[Option<String>], need: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    let dy = dy0!(n, dy);
    let mut out = Vec::new();
    for (i, &nd) in need.iter().enumerate() {
        if nd {
            out.push((i, ad.unb(n, i, &dy)?));
        }
    }
    Ok(grads(n, out))
}

pub(crate) fn add_shape(g: &Graph, n: &Node) -> Vec<ShapeOut> {
    arith_shape(g, n, Arith::Add, |a, b| a + b)
}

fn add_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    kern::elementwise(ctx, "x0 + x1")
}

fn sum_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    let n = ctx.inputs.iter().flatten().count();
    if n + 1 > ctx.limits.max_bindings as usize {
        return Err(format!("{n} inputs; the adapter binds {} buffers per kernel", ctx.limits.max_bindings));
    }
    kern::elementwise(ctx, &(0..n).map(|k| format!("x{k}")).collect::<Vec<_>>().join(" + "))
}
