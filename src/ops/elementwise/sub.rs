//! The `Sub`: definitions and rules.
#![allow(clippy::too_many_arguments)]
use crate::ops::util::prelude::*;

/// The `Sub` op.
pub static SUB: OpDef = OpDef {
    name: "Sub",
    module: module_path!(),
    inputs: Arity::range(2, 2),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    shape: Some(sub_shape),
    analysis: Analysis::Rule(sub_rule),
    gradient: Gradient::Rule(sub_grad),
    reads: 2,
    kernel: Some(sub_kernel),
    ..OpDef::BASE
};

pub(crate) fn sub_rule(c: &mut Ctx, n: &Node, e: &[Option<Affine>]) -> Vec<Flow> {
    // x - mean(x): the very same change on both sides cancels the shift. Masks
    // are compared index by index, so both sides must have the output's rank
    // (or carry only global changes).
    if let (Some(a), Some(b)) = (e[0].as_ref(), e.get(1).and_then(Option::as_ref)) {
        let out = c.rank(n.output(0));
        let same_rank = out.is_some() && c.rank(n.input(0)) == out && c.rank(n.input(1)) == out;
        let global = a.scale.as_ref().is_none_or(|s| s.mask == 0) && a.shift.as_ref().is_none_or(|t| t.mask == 0);
        if a == b && (same_rank || global) {
            return one(changed(Affine { scale: a.scale.clone(), shift: None }));
        }
    }
    let out_rank = c.rank(n.output(0));
    let terms = [
        Term { value: n.input(0), rank: c.rank(n.input(0)), effect: e[0].as_ref(), negate: false },
        Term { value: n.input(1), rank: c.rank(n.input(1)), effect: e.get(1).and_then(Option::as_ref), negate: true },
    ];
    one(combine_sum(c, out_rank, &terms))
}

pub(crate) fn sub_grad(ad: &mut Ad, n: &Node, dy: &[Option<String>], need: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    let dy = dy0!(n, dy);
    let mut out = Vec::new();
    if nd(need, 0) {
        out.push((0, ad.unb(n, 0, &dy)?));
    }
    if nd(need, 1) {
        let ng = ad.em.neg(&dy);
        out.push((1, ad.unb(n, 1, &ng)?));
    }
    Ok(grads(n, out))
}

pub(crate) fn sub_shape(g: &Graph, n: &Node) -> Vec<ShapeOut> {
    arith_shape(g, n, Arith::Sub, |a, b| a - b)
}

fn sub_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    kern::elementwise(ctx, "x0 - x1")
}
