//! The `Split`: definitions and rules.
#![allow(clippy::too_many_arguments)]
use crate::ops::util::prelude::*;

// The attributes, with their ONNX defaults (checked when the IR is built).
pub(crate) const SPLIT_AXIS: IntAttr = IntAttr::new("axis", AttrCheck::Any, 0);
const NUM_OUTPUTS: OptIntAttr = OptIntAttr::new("num_outputs", AttrCheck::AtLeast(1));
const SPLIT_SIZES: IntsAttr = IntsAttr::new("split", AttrCheck::AtLeast(0));

/// The `Split` op.
pub static SPLIT: OpDef = OpDef {
    name: "Split",
    module: module_path!(),
    inputs: Arity::range(1, 2),
    outputs: Arity::range(1, Arity::VARIADIC),
    opsets: Opsets { since: 1, until: None },
    attrs: &[
        SPLIT_AXIS.spec,
        NUM_OUTPUTS.spec,
        SPLIT_SIZES.spec,
    ],
    shape: Some(split_shapes),
    analysis: Analysis::Rule(select),
    arg_slots: ArgSlots::From(1),
    gradient: Gradient::Rule(split_grad),
    kernel: Some(split_kernel),
    ..OpDef::BASE
};

pub(crate) fn split_grad(ad: &mut Ad, n: &Node, dy: &[Option<String>], _: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    let r = ad.rank(n, 0)?;
    let axis = crate::ir::norm_axis(SPLIT_AXIS.get(n), r).ok_or_else(|| Ad::err(n, "axis out of range"))? as i64;
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
    let Some(axis) = norm_axis(SPLIT_AXIS.get(n), x.len()) else { return Vec::new() };
    let k = n.outputs.len();
    let sizes = ints_of(g, n, 1).or_else(|| SPLIT_SIZES.get(n).map(<[i64]>::to_vec));
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
            // checked: a hostile num_outputs or dim gives unknown sizes, never an overflow
            let num = NUM_OUTPUTS.get(n).unwrap_or(k as i64).max(1);
            match d.checked_add(num - 1).map(|t| t / num).filter(|&chunk| chunk >= 0) {
                Some(chunk) => (0..k as i64).map(|i| i.checked_mul(chunk).and_then(|s| d.checked_sub(s)).map_or(Dim::Unknown, |rest| Dim::Known(rest.clamp(0, chunk)))).collect(),
                None => vec![Dim::Unknown; k],
            }
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

fn split_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    use super::map::{coords, flat, launch, Arg};
    // The outputs' static shapes give the split sizes (from the split input,
    // the attribute or num_outputs alike); one launch per output.
    let x = ctx.input(0)?;
    let r = x.shape.len();
    let axis = super::map::axis(SPLIT_AXIS.get(ctx.node), r, "axis")?;
    let mut lowered = Lowered::default();
    let mut at = 0usize;
    let mut gap = false;
    for (k, info) in ctx.outputs.iter().enumerate() {
        let Some(info) = info else {
            gap = true;
            continue;
        };
        if gap {
            return Err(format!("output {k} follows an absent output, whose size along the axis is unknown"));
        }
        if info.shape.len() != r || (0..r).any(|d| d != axis && info.shape[d] != x.shape[d]) {
            return Err(format!("output {k} of shape {:?} does not fit the input's {:?} along axis {axis}", info.shape, x.shape));
        }
        let n = info.numel();
        if n > 0 {
            let mut body = coords("c", "i", &info.shape);
            let c: Vec<String> = (0..r).map(|d| if d == axis { format!("c{d} + {at}u") } else { format!("c{d}") }).collect();
            body.push_str(&format!("    out[i] = x[{}];", flat(&c, &x.shape)));
            let args = [Arg::input(ctx, 0, "x")?, Arg::output(ctx, k, "out")?];
            lowered.launches.push(launch(ctx, &format!("output {k}"), &args, n, "", &body)?);
        }
        at += info.shape[axis];
    }
    if at > x.shape[axis] {
        return Err(format!("the outputs take {at} along axis {axis}, the input has {}", x.shape[axis]));
    }
    Ok(lowered)
}
