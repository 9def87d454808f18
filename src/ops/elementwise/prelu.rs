//! The `PRelu`: definitions and rules.
#![allow(clippy::too_many_arguments)]
use crate::ops::util::prelude::*;

/// The `PRelu` op.
pub static P_RELU: OpDef = OpDef {
    name: "PRelu",
    module: module_path!(),
    inputs: Arity::range(2, 2),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    shape: Some(same_shape),
    analysis: Analysis::Rule(prelu_rule),
    gradient: Gradient::Rule(prelu_grad),
    reads: 2,
    ..OpDef::BASE
};

pub(crate) fn prelu_rule(c: &mut Ctx, n: &Node, e: &[Option<Affine>]) -> Vec<Flow> {
    if e.get(1).is_some_and(Option::is_some) {
        return one(variant("PRelu slope changes"));
    }
    homogeneous(c, n, &e[..1])
}

pub(crate) fn prelu_grad(ad: &mut Ad, n: &Node, dy: &[Option<String>], need: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    let dy = dy0!(n, dy);
    let (x, slope) = (ad.name(n, 0), ad.name(n, 1));
    let z = ad.zero();
    let pos = ad.em.op(&GREATER, &[&x, &z], vec![]);
    let mut out = Vec::new();
    if nd(need, 0) {
        let neg = ad.em.mul(&dy, &slope);
        out.push((0, ad.em.where_(&pos, &dy, &neg)));
    }
    if nd(need, 1) {
        let gx = ad.em.mul(&dy, &x);
        let gs = ad.em.where_(&pos, &z, &gx);
        out.push((1, ad.unb(n, 1, &gs)?));
    }
    Ok(grads(n, out))
}
