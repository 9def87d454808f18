//! The `Neg`, `Abs`: definitions and rules.
#![allow(clippy::too_many_arguments)]
use crate::ops::util::prelude::*;

/// The `Neg` op.
pub static NEG: OpDef = OpDef {
    name: "Neg",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    shape: Some(neg_abs_shape),
    constraints: Some(same_shape_constraints),
    analysis: Analysis::Rule(neg_rule),
    gradient: Gradient::Rule(neg_grad),
    kernel: Some(neg_kernel),
    ..OpDef::BASE
};

/// The `Abs` op.
pub static ABS: OpDef = OpDef {
    name: "Abs",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    shape: Some(neg_abs_shape),
    constraints: Some(same_shape_constraints),
    analysis: Analysis::Rule(homogeneous),
    gradient: Gradient::Rule(abs_grad),
    kernel: Some(abs_kernel),
    ..OpDef::BASE
};

pub(crate) fn neg_rule(c: &mut Ctx, _: &Node, e: &[Option<Affine>]) -> Vec<Flow> {
    match e.first().and_then(Option::as_ref) {
        None => one(Flow::Same),
        Some(x) => {
            let mut x = x.clone();
            if let Some(t) = x.shift.as_mut() {
                t.token = c.fresh();
            }
            one(changed(x))
        }
    }
}

pub(crate) fn neg_grad(ad: &mut Ad, n: &Node, dy: &[Option<String>], _: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    let dy = dy0!(n, dy);
    Ok(grads(n, vec![(0, ad.em.neg(&dy))]))
}

pub(crate) fn abs_grad(ad: &mut Ad, n: &Node, dy: &[Option<String>], _: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    let dy = dy0!(n, dy);
    let x = ad.name(n, 0);
    let s = ad.em.op(&SIGN, &[&x], vec![]);
    Ok(grads(n, vec![(0, ad.em.mul(&dy, &s))]))
}

/// The input's shape; a known value or small integer tensor negated (Neg) or made absolute (Abs).
pub(crate) fn neg_abs_shape(g: &Graph, n: &Node) -> Vec<ShapeOut> {
    let neg = n.is(&NEG);
    let mut out = same(g, n);
    if let Some(x) = val(g, n, 0).and_then(|v| v.scalar) {
        out[0].2 = Some(if neg { -x } else { x.abs() });
    }
    out[0].1 = val(g, n, 0).and_then(|v| v.ints.clone()).map(|xs| {
        xs.into_iter()
            .map(|d| match d.known().and_then(|x| if neg { x.checked_neg() } else { x.checked_abs() }) {
                Some(x) => Dim::Known(x),
                None => Dim::Unknown,
            })
            .collect()
    });
    out
}

fn neg_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    kern::typed(ctx, "-x0", Some("-x0"))
}

fn abs_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    kern::typed(ctx, "abs(x0)", Some("abs(x0)"))
}
