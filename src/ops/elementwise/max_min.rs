//! The `Max`, `Min`: definitions and rules.
#![allow(clippy::too_many_arguments)]
use crate::ops::util::prelude::*;

/// The `Max` op.
pub static MAX: OpDef = OpDef {
    name: "Max",
    module: module_path!(),
    inputs: Arity::range(1, Arity::VARIADIC),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    shape: Some(max_min_shape),
    analysis: Analysis::Rule(max_rule),
    gradient: Gradient::Rule(max_min_grad),
    kernel: Some(max_kernel),
    ..OpDef::BASE
};

/// The `Min` op.
pub static MIN: OpDef = OpDef {
    name: "Min",
    module: module_path!(),
    inputs: Arity::range(1, Arity::VARIADIC),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    shape: Some(max_min_shape),
    analysis: Analysis::Rule(nonlinear),
    gradient: Gradient::Rule(max_min_grad),
    kernel: Some(min_kernel),
    ..OpDef::BASE
};

pub(crate) fn max_rule(c: &mut Ctx, n: &Node, e: &[Option<Affine>]) -> Vec<Flow> {
    // Max(x, eps): a clamp from below by an epsilon (F.normalize's clamp_min).
    if n.inputs.len() == 2 {
        for (x, k) in [(0usize, 1usize), (1, 0)] {
            if let (Some(ex), None) = (e[x].as_ref(), e[k].as_ref()) {
                if tiny_or_zero(c, n.input(k)) && n.input(k).is_some() && ex.shift.is_none() {
                    return one(changed(ex.clone()));
                }
            }
        }
    }
    same_scale_all(n, e, MAX.name)
}

pub(crate) fn max_min_grad(ad: &mut Ad, n: &Node, dy: &[Option<String>], need: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    // The gradient goes to every input equal to the result.
    let dy = dy0!(n, dy);
    let y = ad.out(n, 0);
    let mut out = Vec::new();
    for (i, &nd) in need.iter().enumerate() {
        if nd {
            let x = ad.name(n, i);
            let eq = ad.em.op(&EQUAL, &[&x, &y], vec![]);
            let z = ad.zero();
            let g = ad.em.where_(&eq, &dy, &z);
            out.push((i, ad.unb(n, i, &g)?));
        }
    }
    Ok(grads(n, out))
}

pub(crate) fn max_min_shape(g: &Graph, n: &Node) -> Vec<ShapeOut> {
    let max = n.is(&MAX);
    let ints = if n.inputs.len() == 2 {
        elementwise_ints(g, n, 0, 1, |a, b| match (a, b) {
            (Dim::Known(x), Dim::Known(y)) => Dim::Known(if max { x.max(y) } else { x.min(y) }),
            _ => Dim::Unknown,
        })
    } else {
        None
    };
    vec![(broadcast_inputs(g, n), ints, None, first_dtype(g, n))]
}

/// `f(x0, f(x1, ...))` over the present inputs, NaN propagating as ONNX says.
fn fold_kernel(ctx: &KernelCtx, f: &str) -> Result<Lowered, String> {
    let n = ctx.inputs.iter().flatten().count();
    if n + 1 > ctx.limits.max_bindings as usize {
        return Err(format!("{n} inputs; the adapter binds {} buffers per kernel", ctx.limits.max_bindings));
    }
    let float = ctx.input(0)?.elem == Elem::F32;
    let mut e = "x0".to_string();
    for k in 1..n {
        e = if float { format!("select({f}({e}, x{k}), bitcast<f32>(0x7fc00000u), is_nan_f({e}) || is_nan_f(x{k}))") } else { format!("{f}({e}, x{k})") };
    }
    kern::elementwise(ctx, &e)
}

fn max_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    fold_kernel(ctx, "max")
}

fn min_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    fold_kernel(ctx, "min")
}
