//! The `Clip`: definitions and rules.
#![allow(clippy::too_many_arguments)]
use crate::ops::util::prelude::*;

// Opsets 1-10's bounds (absent: unbounded on that side); later opsets take inputs.
const MIN: OptFloatAttr = OptFloatAttr::new("min");
const MAX: OptFloatAttr = OptFloatAttr::new("max");

/// The `Clip` op.
pub static CLIP: OpDef = OpDef {
    name: "Clip",
    module: module_path!(),
    inputs: Arity::range(1, 3),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    attrs: &[
        MIN.spec,
        MAX.spec,
    ],
    shape: Some(clip_shape),
    constraints: Some(same_shape_constraints),
    analysis: Analysis::Rule(clip_rule),
    arg_slots: ArgSlots::From(1),
    gradient: Gradient::Rule(clip_grad),
    kernel: Some(clip_kernel),
    ..OpDef::BASE
};

pub(crate) fn clip_rule(c: &mut Ctx, n: &Node, e: &[Option<Affine>]) -> Vec<Flow> {
    if e.iter().skip(1).any(Option::is_some) {
        return one(variant("Clip bounds change"));
    }
    let Some(x) = e.first().and_then(Option::as_ref) else { return one(Flow::Same) };
    // Clip(x, 0 or eps, +inf) is Relu up to an epsilon: positively homogeneous.
    let (min_ok, no_max) = if c.g.opset >= 11 {
        (n.input(1).is_some() && tiny_or_zero(c, n.input(1)), n.input(2).is_none())
    } else {
        (MIN.get(n).is_some_and(|min| (0.0..=EPSILON_MAX).contains(&f64::from(min))), !MAX.is_set(n))
    };
    if min_ok && no_max && x.shift.is_none() {
        one(changed(x.clone()))
    } else {
        one(variant("Clip with bounds that do not scale"))
    }
}

/// True when a bound is absent or a constant no larger than an epsilon in magnitude.
pub(crate) fn tiny_or_zero(c: &Ctx, v: Option<ValueId>) -> bool {
    match v {
        None => true,
        Some(v) => c.g.values[v].scalar.is_some_and(|s| (0.0..=EPSILON_MAX).contains(&s)),
    }
}

pub(crate) fn clip_grad(ad: &mut Ad, n: &Node, dy: &[Option<String>], need: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    let dy = dy0!(n, dy);
    if need.iter().skip(1).any(|&b| b) {
        return Err(Ad::err(n, "the gradient with respect to the clip bounds is not supported"));
    }
    let x = ad.name(n, 0);
    let mut mask: Option<String> = None;
    // Opset 11+: bounds are inputs; before, attributes.
    let bounds = [(1, &GREATER_OR_EQUAL, MIN), (2, &LESS_OR_EQUAL, MAX)];
    for (i, cmp, attr) in bounds {
        let bound = match n.input(i) {
            Some(_) => Some(ad.name(n, i)),
            None => attr.get(n).map(|b| ad.em.scalar(f64::from(b))),
        };
        if let Some(b) = bound {
            let c = ad.em.op(cmp, &[&x, &b], vec![]);
            mask = Some(match mask {
                Some(m) => ad.em.op(&AND, &[&m, &c], vec![]),
                None => c,
            });
        }
    }
    let g = match mask {
        Some(m) => {
            let z = ad.zero();
            ad.em.where_(&m, &dy, &z)
        }
        None => dy,
    };
    Ok(grads(n, vec![(0, g)]))
}

/// Clip folds a known scalar when its bounds are known (inputs from opset 11,
/// attributes before) or absent.
pub(crate) fn clip_shape(g: &Graph, n: &Node) -> Vec<ShapeOut> {
    let bound = |i: usize, attr: OptFloatAttr, unbounded: f64| -> Option<f64> {
        match n.input(i) {
            Some(_) => scalar_in(g, n, i),
            None => Some(attr.get(n).map_or(unbounded, f64::from)),
        }
    };
    let scalar = scalar_in(g, n, 0).and_then(|x| Some(x.max(bound(1, MIN, f64::NEG_INFINITY)?).min(bound(2, MAX, f64::INFINITY)?)));
    let mut out = same(g, n);
    if let Some(o) = out.first_mut() {
        o.2 = scalar;
    }
    out
}

fn clip_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    // Bounds are inputs 1 and 2 (opset 11+) or attributes; absent ones do not bound.
    let mut e = "x0".to_string();
    let mut next = 1;
    for (slot, f, attr) in [(1usize, "max", MIN), (2, "min", MAX)] {
        if ctx.has_input(slot) {
            e = format!("{f}({e}, x{next})");
            next += 1;
        } else if let Some(b) = attr.get(ctx.node) {
            e = format!("{f}({e}, {})", kern::f32_literal(b));
        }
    }
    kern::typed(ctx, &e, Some(&e))
}
