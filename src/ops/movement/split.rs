//! The `Split`: definitions and rules.
#![allow(clippy::too_many_arguments)]
use crate::ops::util::prelude::*;

/// The `Split` op.
pub static SPLIT: OpDef = OpDef {
    name: "Split",
    module: module_path!(),
    inputs: Arity::range(1, 2),
    outputs: Arity::range(1, Arity::VARIADIC),
    opsets: Opsets { since: 1, until: None },
    attrs: &[
        AttrSpec::int("axis", AttrCheck::Any),
        AttrSpec::int("num_outputs", AttrCheck::AtLeast(1)),
        AttrSpec::ints("split", AttrCheck::AtLeast(0)),
    ],
    shape: Some(split_shapes),
    analysis: Analysis::Rule(select),
    arg_slots: ArgSlots::From(1),
    gradient: Gradient::Rule(split_grad),
    ..OpDef::BASE
};

pub(crate) fn split_grad(ad: &mut Ad, n: &Node, dy: &[Option<String>], _: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    let r = ad.rank(n, 0)?;
    let axis = crate::ir::norm_axis(n.attr_int("axis", 0), r).ok_or_else(|| Ad::err(n, "axis out of range"))? as i64;
    let mut parts = Vec::new();
    for (k, d) in dy.iter().enumerate() {
        parts.push(match d {
            Some(d) => d.clone(),
            None => {
                let y = ad.out(n, k);
                if y.is_empty() {
                    return Err(Ad::err(n, "an omitted output of Split would need a zero gradient"));
                }
                ad.em.zeros_like(&y)
            }
        });
    }
    let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
    Ok(grads(n, vec![(0, ad.em.op(&CONCAT, &refs, vec![a_int("axis", axis)]))]))
}

pub(crate) fn split_shapes(g: &Graph, n: &Node) -> Vec<Out> {
    let Some(x) = shape_of(g, n, 0) else { return Vec::new() };
    let Some(axis) = norm_axis(n.attr_int("axis", 0), x.len()) else { return Vec::new() };
    let k = n.outputs.len();
    let sizes = ints_of(g, n, 1).or_else(|| n.attr_ints("split").map(<[i64]>::to_vec));
    let sizes: Vec<Dim> = match (sizes, x[axis]) {
        // Sizes that are negative, or do not add up to the axis, are invalid:
        // their outputs' dims along the axis stay unknown rather than wrong.
        (Some(s), d) if s.len() == k => {
            let valid = s.iter().all(|&v| v >= 0) && !matches!(d, Dim::Known(d) if s.iter().try_fold(0i64, |a, &v| a.checked_add(v)) != Some(d));
            if valid {
                s.into_iter().map(Dim::Known).collect()
            } else {
                vec![Dim::Unknown; k]
            }
        }
        (_, Dim::Known(d)) if k > 0 => {
            let num = n.attr_int("num_outputs", k as i64).max(1);
            let chunk = (d + num - 1) / num;
            (0..k as i64).map(|i| Dim::Known((d - i * chunk).clamp(0, chunk))).collect()
        }
        _ => vec![Dim::Unknown; k],
    };
    sizes
        .into_iter()
        .map(|d| {
            let mut s = x.clone();
            s[axis] = d;
            (Some(s), None, None, first_dtype(g, n))
        })
        .collect()
}
