//! The `Mean`: definitions and rules.
#![allow(clippy::too_many_arguments)]
use crate::ops::util::prelude::*;

/// The `Mean` op.
pub static MEAN: OpDef = OpDef {
    name: "Mean",
    module: module_path!(),
    inputs: Arity::range(1, Arity::VARIADIC),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    shape: Some(binary_shape),
    analysis: Analysis::Unknown("not written: a change reaching it is unknown"),
    gradient: Gradient::Rule(mean_grad),
    kernel: Some(mean_kernel),
    ..OpDef::BASE
};

pub(crate) fn mean_grad(ad: &mut Ad, n: &Node, dy: &[Option<String>], need: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    let dy = dy0!(n, dy);
    let share = ad.em.mul_scalar(&dy, 1.0 / n.inputs.len().max(1) as f64);
    let mut out = Vec::new();
    for (i, &nd) in need.iter().enumerate() {
        if nd {
            out.push((i, ad.unb(n, i, &share)?));
        }
    }
    Ok(grads(n, out))
}

fn mean_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    let n = ctx.inputs.iter().flatten().count();
    if n + 1 > ctx.limits.max_bindings as usize {
        return Err(format!("{n} inputs; the adapter binds {} buffers per kernel", ctx.limits.max_bindings));
    }
    let sum = (0..n).map(|k| format!("x{k}")).collect::<Vec<_>>().join(" + ");
    kern::typed(ctx, &format!("({sum}) / {}", kern::f32_literal(n as f32)), None)
}
