//! The `Expand`: definitions and rules.
#![allow(clippy::too_many_arguments)]
use crate::ops::util::prelude::*;

/// The `Expand` op.
pub static EXPAND: OpDef = OpDef {
    name: "Expand",
    module: module_path!(),
    inputs: Arity::range(2, 2),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 8, until: None },
    shape: Some(expand_shape),
    analysis: Analysis::Rule(expand_rule),
    arg_slots: ArgSlots::From(1),
    gradient: Gradient::Rule(expand_grad),
    reads: 2,
    kernel: Some(expand_kernel),
    ..OpDef::BASE
};

pub(crate) fn expand_rule(c: &mut Ctx, n: &Node, e: &[Option<Affine>]) -> Vec<Flow> {
    if e.iter().skip(1).any(Option::is_some) {
        return one(variant("Expand shape changes"));
    }
    let Some(x) = e.first().and_then(Option::as_ref) else { return one(Flow::Same) };
    let (Some(ri), Some(ro)) = (c.rank(n.input(0)), c.rank(n.output(0))) else { return one(unknown("Expand ranks unknown")) };
    one(remap_effect(c, x, &|m| Some((mask::align(m, ri, ro), true))))
}

pub(crate) fn expand_grad(ad: &mut Ad, n: &Node, dy: &[Option<String>], _: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    let dy = dy0!(n, dy);
    Ok(grads(n, vec![(0, ad.unb(n, 0, &dy)?)]))
}

pub(crate) fn expand_shape(g: &Graph, n: &Node) -> Vec<ShapeOut> {
    // Values of the target shape, or at least its length (the output's rank).
    let target = val(g, n, 1).and_then(|v| {
        v.ints.clone().or_else(|| match v.shape.as_deref() {
            Some([Dim::Known(k)]) if (0..=64).contains(k) => Some(vec![Dim::Unknown; *k as usize]),
            _ => None,
        })
    });
    let s = match (shape_of(g, n, 0), target) {
        (Some(a), Some(b)) => broadcast(&[a, b]),
        _ => None,
    };
    vec![(s, None, None, first_dtype(g, n))]
}

fn expand_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    let x = ctx.input(0)?;
    let out = ctx.output(0)?;
    if x.shape.len() > out.shape.len() || x.shape.iter().rev().zip(out.shape.iter().rev()).any(|(&a, &b)| a != b && a != 1) {
        return Err(format!("input of shape {:?} does not broadcast to the output's {:?}", x.shape, out.shape));
    }
    if x.numel() == out.numel() {
        return Ok(Lowered::alias(0));
    }
    let offset = format!("    {}", kern::broadcast_offset("src", "i", &x.shape, &out.shape));
    crate::ops::movement::map::gather(ctx, 0, &offset, None, &[])
}
