//! The `Pow`: definitions and rules.
#![allow(clippy::too_many_arguments)]
use crate::ops::util::prelude::*;

/// The `Pow` op.
pub static POW: OpDef = OpDef {
    name: "Pow",
    module: module_path!(),
    inputs: Arity::range(2, 2),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    shape: Some(pow_shape),
    analysis: Analysis::Rule(pow_rule),
    arg_slots: ArgSlots::Only(1),
    gradient: Gradient::Rule(pow_grad),
    reads: 2,
    kernel: Some(pow_kernel),
    ..OpDef::BASE
};

pub(crate) fn pow_rule(c: &mut Ctx, n: &Node, e: &[Option<Affine>]) -> Vec<Flow> {
    if e.get(1).is_some_and(Option::is_some) {
        return one(variant("Pow exponent changes"));
    }
    match n.input(1).and_then(|v| c.g.values[v].scalar) {
        Some(p) if p.is_finite() => power(c, n, e, p),
        _ if e[0].is_none() => one(Flow::Same),
        _ => one(variant("Pow with a non-constant exponent")),
    }
}

pub(crate) fn pow_grad(ad: &mut Ad, n: &Node, dy: &[Option<String>], need: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    let dy = dy0!(n, dy);
    let x = ad.name(n, 0);
    let e = ad.as_float(n, 1);
    let mut out = Vec::new();
    if nd(need, 0) {
        let one = ad.em.scalar(1.0);
        let em1 = ad.em.sub(&e, &one);
        let p = ad.em.op(&POW, &[&x, &em1], vec![]);
        let d = ad.em.mul(&p, &e);
        let g = ad.em.mul(&dy, &d);
        out.push((0, ad.unb(n, 0, &g)?));
    }
    if nd(need, 1) {
        let y = ad.out(n, 0);
        let l = ad.em.op(&LOG, &[&x], vec![]);
        let yl = ad.em.mul(&y, &l);
        let g = ad.em.mul(&dy, &yl);
        out.push((1, ad.unb(n, 1, &g)?));
    }
    Ok(grads(n, out))
}

pub(crate) fn pow_shape(g: &Graph, n: &Node) -> Vec<ShapeOut> {
    vec![(broadcast_inputs(g, n), None, fold_scalars(g, n, f64::powf), first_dtype(g, n))]
}

fn pow_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    let b = kern::convert(ctx.input(1)?.elem, Elem::F32, "x1");
    kern::typed(ctx, &format!("pow_f(x0, {b})"), None)
}
