//! The `Concat`: definitions and rules.
#![allow(clippy::too_many_arguments)]
use crate::ops::util::prelude::*;

// The attributes, with their ONNX defaults (checked when the IR is built).
/// The axis: required from opset 4, 1 when absent before ([`concat_axis`]).
const AXIS: OptIntAttr = OptIntAttr::new("axis", AttrCheck::Any);

/// A Concat's axis: the attribute, else opsets 1-3's default 1 (`None`: an
/// opset 4+ node without it, invalid).
fn concat_axis(opset: i64, n: &Node) -> Option<i64> {
    AXIS.get(n).or((opset < 4).then_some(1))
}

/// The `Concat` op.
pub static CONCAT: OpDef = OpDef {
    name: "Concat",
    module: module_path!(),
    inputs: Arity::range(1, Arity::VARIADIC),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    attrs: &[
        AXIS.spec,
    ],
    shape: Some(concat_shape),
    analysis: Analysis::Rule(concat_rule),
    gradient: Gradient::Rule(concat_grad),
    kernel: Some(concat_kernel),
    ..OpDef::BASE
};

pub(crate) fn concat_rule(c: &mut Ctx, n: &Node, e: &[Option<Affine>]) -> Vec<Flow> {
    let changed_in: Vec<&Affine> = e.iter().flatten().collect();
    if changed_in.is_empty() {
        return one(Flow::Same);
    }
    let Some(r) = c.rank(n.output(0)) else { return one(unknown("Concat rank unknown")) };
    let Some(axis) = concat_axis(c.g.opset, n).and_then(|a| crate::ir::norm_axis(a, r)) else { return one(variant("bad axis")) };
    let ab = mask::bit(axis);
    let uniform = changed_in.len() == n.inputs.len() && changed_in.iter().all(|a| *a == changed_in[0]);
    if uniform {
        let x = changed_in[0];
        return one(remap_effect(c, x, &|m| Some((m, m & ab == 0))));
    }
    // Blocks along `axis` change differently: the factor varies along `axis` too.
    let mut scale: Option<Scale> = None;
    let mut shift_mask: Option<Mask> = None;
    let mut sources = Vec::new();
    for x in &changed_in {
        if let Some(s) = &x.scale {
            match &scale {
                None => scale = Some(s.clone()),
                Some(p) if p.exp == s.exp => {}
                Some(_) => return one(variant("Concat of differently scaled blocks")),
            }
        }
    }
    for t in changed_in.iter().filter_map(|x| x.shift.as_ref()) {
        shift_mask = Some(shift_mask.unwrap_or(0) | t.mask | ab);
        sources.extend(t.sources.iter().copied());
    }
    let scale = scale.map(|s| Scale { mask: s.mask | ab, token: c.fresh(), exp: s.exp });
    let shift = shift_mask.map(|m| Shift { mask: m, token: c.fresh(), sources });
    one(changed(Affine { scale, shift }))
}

pub(crate) fn concat_grad(ad: &mut Ad, n: &Node, dy: &[Option<String>], need: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    let dy = dy0!(n, dy);
    let r = ad.rank(n, 0)?;
    let axis = concat_axis(ad.g.opset, n).and_then(|a| crate::ir::norm_axis(a, r)).ok_or_else(|| Ad::err(n, "axis missing or out of range"))? as i64;
    // Split sizes from the inputs' runtime shapes.
    let mut sizes = Vec::new();
    for i in 0..n.inputs.len() {
        let x = ad.name(n, i);
        sizes.push(ad.em.op(&SHAPE, &[&x], vec![a_int("start", axis), a_int("end", axis + 1)]));
    }
    let refs: Vec<&str> = sizes.iter().map(String::as_str).collect();
    let split = ad.em.op(&CONCAT, &refs, vec![a_int("axis", 0)]);
    let outs: Vec<String> = (0..n.inputs.len()).map(|_| ad.em.fresh("concat_grad")).collect();
    ad.em.node(&SPLIT, &[&dy, &split], &outs, vec![a_int("axis", axis)]);
    Ok(outs.into_iter().enumerate().map(|(i, o)| nd(need, i).then_some(o)).collect())
}

pub(crate) fn concat_shape(g: &Graph, n: &Node) -> Vec<ShapeOut> {
    let shapes: Option<Vec<Vec<Dim>>> = n.inputs.iter().map(|i| i.and_then(|v| g.values[v].shape.clone())).collect();
    let s = shapes.and_then(|shapes| {
        let rank = shapes.first()?.len();
        let axis = norm_axis(concat_axis(g.opset, n)?, rank)?;
        let mut out = shapes[0].clone();
        out[axis] = shapes.iter().map(|s| s.get(axis).copied().unwrap_or(Dim::Unknown)).reduce(|a, b| arith(a, b, Arith::Add))?;
        Some(out)
    });
    let ints: Option<Vec<Dim>> = n
        .inputs
        .iter()
        .map(|i| i.and_then(|v| g.values[v].ints.clone()))
        .collect::<Option<Vec<_>>>()
        .map(|parts| parts.concat())
        .filter(|v| v.len() <= MAX_TRACKED_INTS);
    vec![(s, ints, None, first_dtype(g, n))]
}

fn concat_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    use super::map::{coords, flat, launch, Arg};
    // One launch per input, each copying its elements into its band of the
    // output: any number of inputs fits the adapter's binding limit.
    let out = ctx.output(0)?;
    let r = out.shape.len();
    let axis = super::map::axis(concat_axis(ctx.opset, ctx.node).ok_or("the axis attribute is missing")?, r, "axis")?;
    let mut lowered = Lowered::default();
    let mut at = 0usize;
    for (k, info) in ctx.inputs.iter().enumerate() {
        let Some(info) = info else { continue };
        if info.shape.len() != r || (0..r).any(|d| d != axis && info.shape[d] != out.shape[d]) {
            return Err(format!("input {k} of shape {:?} does not fit the output's {:?} along axis {axis}", info.shape, out.shape));
        }
        if info.elem != out.elem {
            return Err(format!("input {k} is {:?}, the output {:?}", info.elem, out.elem));
        }
        let n = info.numel();
        if n > 0 {
            let mut body = coords("c", "i", &info.shape);
            let c: Vec<String> = (0..r).map(|d| if d == axis { format!("c{d} + {at}u") } else { format!("c{d}") }).collect();
            body.push_str(&format!("    out[{}] = x[i];", flat(&c, &out.shape)));
            let args = [Arg::input(ctx, k, "x")?, Arg::output(ctx, 0, "out")?];
            lowered.launches.push(launch(ctx, &format!("input {k}"), &args, n, "", &body)?);
        }
        at += info.shape[axis];
    }
    if at != out.shape[axis] {
        return Err(format!("the inputs give {at} along axis {axis}, the output has {}", out.shape[axis]));
    }
    Ok(lowered)
}
