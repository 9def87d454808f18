//! The `Slice`: definitions and rules.
#![allow(clippy::too_many_arguments)]
use crate::ops::util::prelude::*;

// The attributes, with their ONNX defaults (checked when the IR is built).
pub(crate) const SLICE_STARTS: IntsAttr = IntsAttr::new("starts", AttrCheck::Any);
const ENDS: IntsAttr = IntsAttr::new("ends", AttrCheck::Any);
const AXES: IntsAttr = IntsAttr::new("axes", AttrCheck::Any);

/// The `Slice` op.
pub static SLICE: OpDef = OpDef {
    name: "Slice",
    module: module_path!(),
    inputs: Arity::range(3, 5),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    attrs: &[
        SLICE_STARTS.spec,
        ENDS.spec,
        AXES.spec,
    ],
    shape: Some(slice_shape),
    analysis: Analysis::Rule(select),
    arg_slots: ArgSlots::From(1),
    gradient: Gradient::Rule(slice_grad),
    reads: 2,
    kernel: Some(slice_kernel),
    ..OpDef::BASE
};

pub(crate) fn slice_grad(ad: &mut Ad, n: &Node, dy: &[Option<String>], _: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    // Slice the input's index map the same way; scatter the gradient there.
    let dy = dy0!(n, dy);
    let x = ad.name(n, 0);
    let idx = index_map(ad, &x, 0);
    let mut ins: Vec<String> = vec![idx];
    for i in 1..n.inputs.len() {
        ins.push(ad.name(n, i));
    }
    let refs: Vec<&str> = ins.iter().map(String::as_str).collect();
    let picked = ad.em.op(&SLICE, &refs, vec![]);
    Ok(grads(n, vec![(0, scatter_flat(ad, &x, &picked, &dy, 0))]))
}

/// The entries of a small integer tensor of `dims` (row-major `xs`) at the
/// cartesian product of `kept[axis]` indices.
pub(crate) fn select_ints(xs: &[Dim], dims: &[Dim], kept: &[Option<Vec<i64>>]) -> Option<Vec<Dim>> {
    let dims: Vec<i64> = dims.iter().map(|d| d.known()).collect::<Option<_>>()?;
    let total = dims.iter().try_fold(1i64, |a, &d| a.checked_mul(d))?;
    if total != xs.len() as i64 {
        return None;
    }
    let kept: Vec<&Vec<i64>> = kept.iter().map(Option::as_ref).collect::<Option<_>>()?;
    let mut out = vec![0i64];
    for (axis, idx) in kept.iter().enumerate() {
        if out.len().checked_mul(idx.len())? > MAX_TRACKED_INTS {
            return None;
        }
        let d = dims[axis];
        out = out.iter().flat_map(|&base| idx.iter().map(move |&i| base * d + i)).collect();
    }
    out.iter().map(|&i| xs.get(usize::try_from(i).ok()?).copied()).collect()
}

pub(crate) fn slice_len(d: i64, start: i64, end: i64, step: i64) -> i64 {
    let (s, e) = slice_bounds(d, start, end, step);
    // ceil(span / |step|) without `span + |step| - 1`, which overflows for a hostile step.
    let span = if step > 0 { (e - s).max(0) } else { (s - e).max(0) };
    match step.unsigned_abs() {
        0 => 0,
        _ if span == 0 => 0,
        by => ((span as u64 - 1) / by + 1) as i64,
    }
}

pub(crate) fn slice_bounds(d: i64, start: i64, end: i64, step: i64) -> (i64, i64) {
    let fix = |x: i64, lo: i64, hi: i64| {
        let x = if x < 0 { x.saturating_add(d) } else { x };
        x.clamp(lo, hi)
    };
    if step > 0 {
        (fix(start, 0, d), fix(end, 0, d))
    } else {
        (fix(start, -1, d - 1), fix(end, -1, d - 1))
    }
}

pub(crate) fn slice_ints(xs: &[Dim], len: i64, start: i64, end: i64, step: i64) -> Option<Vec<Dim>> {
    if step == 0 || xs.len() as i64 != len {
        return None;
    }
    let (s, e) = slice_bounds(len, start, end, step);
    let mut out = Vec::new();
    let mut i = s;
    while (step > 0 && i < e) || (step < 0 && i > e) {
        out.push(*xs.get(usize::try_from(i).ok()?)?);
        // a hostile step jumps past the end: the slice stops there
        match i.checked_add(step) {
            Some(next) => i = next,
            None => break,
        }
    }
    Some(out)
}

pub(crate) fn slice_shape(g: &Graph, n: &Node) -> Vec<ShapeOut> {
    let s = shape_of(g, n, 0);
    let starts = ints_of(g, n, 1).or_else(|| SLICE_STARTS.get(n).map(<[i64]>::to_vec));
    let ends = ints_of(g, n, 2).or_else(|| ENDS.get(n).map(<[i64]>::to_vec));
    let axes = if n.inputs.len() > 3 { ints_of(g, n, 3) } else { AXES.get(n).map(<[i64]>::to_vec) };
    let steps = if n.inputs.len() > 4 { ints_of(g, n, 4) } else { None };
    let mut ints = None;
    let out = s.map(|s| {
        let mut out = s.clone();
        match (&starts, &ends) {
            (Some(st), Some(en)) if st.len() == en.len() => {
                let axes: Vec<i64> = axes.clone().unwrap_or_else(|| (0..st.len() as i64).collect());
                // The entries each axis keeps, for the values of small integer tensors.
                let mut kept: Vec<Option<Vec<i64>>> = s.iter().map(|d| d.known().map(|d| (0..d.min(MAX_TRACKED_INTS as i64 + 1)).collect())).collect();
                for (k, &a) in axes.iter().enumerate().take(st.len()) {
                    let Some(a) = norm_axis(a, s.len()) else { continue };
                    let step = steps.as_ref().and_then(|x| x.get(k).copied()).unwrap_or(1);
                    out[a] = match s[a] {
                        Dim::Known(d) => Dim::Known(slice_len(d, st[k], en[k], step)),
                        _ => Dim::Unknown,
                    };
                    kept[a] = match s[a] {
                        Dim::Known(d) if d <= MAX_TRACKED_INTS as i64 => slice_ints(&(0..d).map(Dim::Known).collect::<Vec<_>>(), d, st[k], en[k], step)
                            .map(|xs| xs.iter().filter_map(|x| x.known()).collect()),
                        _ => None,
                    };
                }
                ints = val(g, n, 0).and_then(|v| v.ints.clone()).and_then(|xs| select_ints(&xs, &s, &kept));
            }
            _ => {
                for d in out.iter_mut() {
                    *d = Dim::Unknown;
                }
            }
        }
        out
    });
    vec![(out, ints, None, first_dtype(g, n))]
}

fn slice_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    let x = ctx.input(0)?;
    let out = ctx.output(0)?;
    let r = x.shape.len();
    // opset 1-9 give the bounds as attributes, later opsets as inputs
    let arg = |k: usize, attr: &IntsAttr| -> Result<Option<Vec<i64>>, String> {
        if ctx.has_input(k) {
            return ctx.host_ints(k).map(Some);
        }
        Ok(attr.get(ctx.node).map(<[i64]>::to_vec))
    };
    let starts = arg(1, &SLICE_STARTS)?.ok_or("starts are missing")?;
    let ends = arg(2, &ENDS)?.ok_or("ends are missing")?;
    let axes = arg(3, &AXES)?.unwrap_or_else(|| (0..starts.len() as i64).collect());
    let steps = if ctx.has_input(4) { ctx.host_ints(4)? } else { vec![1; starts.len()] };
    if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() {
        return Err(format!("starts, ends, axes and steps have {}, {}, {} and {} entries", starts.len(), ends.len(), axes.len(), steps.len()));
    }
    if out.shape.len() != r {
        return Err(format!("the output's rank {} differs from the input's {r}", out.shape.len()));
    }
    let mut first = vec![0i64; r];
    let mut step = vec![1i64; r];
    let mut seen = vec![false; r];
    for k in 0..starts.len() {
        let a = crate::ops::movement::map::axis(axes[k], r, "axis")?;
        if std::mem::replace(&mut seen[a], true) {
            return Err(format!("axis {} appears twice in axes {axes:?}", axes[k]));
        }
        if steps[k] == 0 {
            return Err("a step of 0".into());
        }
        let d = x.shape[a] as i64;
        let (s, _) = slice_bounds(d, starts[k], ends[k], steps[k]);
        let len = slice_len(d, starts[k], ends[k], steps[k]);
        if len as usize != out.shape[a] {
            return Err(format!("axis {a}: the slice has {len} elements but the output {}", out.shape[a]));
        }
        first[a] = s;
        step[a] = steps[k];
    }
    let st = kern::strides(&x.shape);
    let base: i64 = (0..r).map(|d| if out.shape[d] == 0 { 0 } else { first[d] * st[d] as i64 }).sum();
    let mult: Vec<i64> = (0..r).map(|d| step[d] * st[d] as i64).collect();
    let offset = format!("    let src = {};", crate::ops::movement::map::affine("c", base, &mult));
    crate::ops::movement::map::gather(ctx, 0, &offset, None, &[])
}
