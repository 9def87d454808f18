//! The `Where`: definitions and rules.
#![allow(clippy::too_many_arguments)]
use crate::ops::util::prelude::*;

/// The `Where` op.
pub static WHERE: OpDef = OpDef {
    name: "Where",
    module: module_path!(),
    inputs: Arity::range(3, 3),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 9, until: None },
    shape: Some(where_shape),
    analysis: Analysis::Rule(nonlinear),
    gradient: Gradient::Rule(where_grad),
    reads: 3,
    kernel: Some(where_kernel),
    ..OpDef::BASE
};

pub(crate) fn where_grad(ad: &mut Ad, n: &Node, dy: &[Option<String>], need: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    let dy = dy0!(n, dy);
    let c = ad.name(n, 0);
    let z = ad.zero();
    let mut out = Vec::new();
    if need.get(1).copied().unwrap_or(false) {
        let g = ad.em.where_(&c, &dy, &z);
        out.push((1, ad.unb(n, 1, &g)?));
    }
    if need.get(2).copied().unwrap_or(false) {
        let g = ad.em.where_(&c, &z, &dy);
        out.push((2, ad.unb(n, 2, &g)?));
    }
    Ok(grads(n, out))
}

pub(crate) fn where_shape(g: &Graph, n: &Node) -> Vec<ShapeOut> {
    let mut ints = None;
    // select(cond, x, y) on small integer tensors (shape arithmetic)
    if let (Some(c), Some(x), Some(y)) = (val(g, n, 0).and_then(|v| v.ints.clone()), val(g, n, 1).and_then(|v| v.ints.clone()), val(g, n, 2).and_then(|v| v.ints.clone())) {
        let len = c.len().max(x.len()).max(y.len());
        if [c.len(), x.len(), y.len()].iter().all(|&l| l == len || l == 1) {
            let at = |v: &Vec<Dim>, i: usize| v[i.min(v.len() - 1)];
            ints = Some((0..len).map(|i| match at(&c, i) {
                Dim::Known(0) => at(&y, i),
                Dim::Known(_) => at(&x, i),
                _ => Dim::Unknown,
            }).collect());
        }
    }
    vec![(broadcast_inputs(g, n), ints, None, val(g, n, 1).and_then(|v| v.dtype))]
}

fn where_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    kern::elementwise(ctx, "select(x2, x1, x0 != 0u)")
}
