//! The `Div`: definitions and rules.
#![allow(clippy::too_many_arguments)]
use crate::ops::util::prelude::*;

/// The `Div` op.
pub static DIV: OpDef = OpDef {
    name: "Div",
    module: module_path!(),
    inputs: Arity::range(2, 2),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    shape: Some(div_shape),
    analysis: Analysis::Rule(div_rule),
    gradient: Gradient::Rule(div_grad),
    reads: 2,
    kernel: Some(div_kernel),
    ..OpDef::BASE
};

pub(crate) fn div_rule(c: &mut Ctx, n: &Node, e: &[Option<Affine>]) -> Vec<Flow> {
    one(mul_div(c, n, e, -1.0))
}

pub(crate) fn div_grad(ad: &mut Ad, n: &Node, dy: &[Option<String>], need: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    let dy = dy0!(n, dy);
    let b = ad.as_float(n, 1);
    let mut out = Vec::new();
    if nd(need, 0) {
        let g = ad.em.div(&dy, &b);
        out.push((0, ad.unb(n, 0, &g)?));
    }
    if nd(need, 1) {
        let y = ad.out(n, 0);
        let gy = ad.em.mul(&dy, &y);
        let q = ad.em.div(&gy, &b);
        let g = ad.em.neg(&q);
        out.push((1, ad.unb(n, 1, &g)?));
    }
    Ok(grads(n, out))
}

/// A float Div of integers is an integer only where it divides exactly (timm's
/// pad_same computes in float); an integer Div truncates toward zero.
pub(crate) fn div_shape(g: &Graph, n: &Node) -> Vec<ShapeOut> {
    let dtype = first_dtype(g, n);
    let float = dtype.is_some_and(DType::is_float);
    // arith's integer division, kept for a float Div only where it is exact
    let exact = |x: Dim, y: Dim| match (x, y) {
        (Dim::Known(a), Dim::Known(b)) if b != 0 && a % b == 0 => arith(x, y, Arith::Div),
        _ if float => Dim::Unknown,
        _ => arith(x, y, Arith::Div),
    };
    let ints = combine_ints(g, n, exact);
    let scalar = if float { fold_scalars(g, n, |a, b| a / b) } else { fold_scalars(g, n, |a, b| if b != 0.0 { (a / b).trunc() } else { f64::NAN }).filter(|x| x.is_finite()) };
    vec![(broadcast_inputs(g, n), ints, scalar, dtype)]
}

fn div_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    kern::elementwise(ctx, "x0 / x1")
}
