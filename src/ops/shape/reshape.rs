//! The `Reshape`, `Flatten`, `Squeeze`, `Unsqueeze`: definitions and rules.
#![allow(clippy::too_many_arguments)]
use crate::ops::util::prelude::*;

// The attributes, with their ONNX defaults (checked when the IR is built).
const ALLOWZERO: IntAttr = IntAttr::flag("allowzero", false);
const AXIS: IntAttr = IntAttr::new("axis", AttrCheck::Any, 1);
const AXES: IntsAttr = IntsAttr::new("axes", AttrCheck::Any);

/// The `Reshape` op.
pub static RESHAPE: OpDef = OpDef {
    name: "Reshape",
    module: module_path!(),
    inputs: Arity::range(2, 2),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    attrs: &[
        ALLOWZERO.spec,
    ],
    shape: Some(reshape_out_shape),
    analysis: Analysis::Rule(reshape_like_rule),
    arg_slots: ArgSlots::From(1),
    gradient: Gradient::Rule(reshape_grad),
    reads: 2,
    kernel: Some(reshape_kernel),
    ..OpDef::BASE
};

/// The `Flatten` op.
pub static FLATTEN: OpDef = OpDef {
    name: "Flatten",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    attrs: &[
        AXIS.spec,
    ],
    shape: Some(flatten_shape),
    analysis: Analysis::Rule(reshape_like_rule),
    gradient: Gradient::Rule(reshape_grad),
    kernel: Some(reshape_kernel),
    ..OpDef::BASE
};

/// The `Squeeze` op.
pub static SQUEEZE: OpDef = OpDef {
    name: "Squeeze",
    module: module_path!(),
    inputs: Arity::range(1, 2),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    attrs: &[
        AXES.spec,
    ],
    shape: Some(squeeze_shape),
    analysis: Analysis::Rule(reshape_like_rule),
    arg_slots: ArgSlots::From(1),
    gradient: Gradient::Rule(reshape_grad),
    kernel: Some(reshape_kernel),
    ..OpDef::BASE
};

/// The `Unsqueeze` op.
pub static UNSQUEEZE: OpDef = OpDef {
    name: "Unsqueeze",
    module: module_path!(),
    inputs: Arity::range(2, 2),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    attrs: &[
        AXES.spec,
    ],
    shape: Some(squeeze_shape),
    analysis: Analysis::Rule(reshape_like_rule),
    arg_slots: ArgSlots::From(1),
    gradient: Gradient::Rule(reshape_grad),
    kernel: Some(reshape_kernel),
    ..OpDef::BASE
};

/// Squeeze, Unsqueeze, Reshape, Flatten: group input and output axes by
/// equal products of dims; a varying axis marks its whole output group.
pub(crate) fn reshape_like_rule(c: &mut Ctx, n: &Node, e: &[Option<Affine>]) -> Vec<Flow> {
    if e.iter().skip(1).any(Option::is_some) {
        return one(variant("shape input changes"));
    }
    let Some(x) = e.first().and_then(Option::as_ref) else { return one(Flow::Same) };
    let (din, dout) = (c.dims(n.input(0)).map(<[Dim]>::to_vec), c.dims(n.output(0)).map(<[Dim]>::to_vec));
    let all_global = x.scale.as_ref().is_none_or(|s| s.mask == 0) && x.shift.as_ref().is_none_or(|t| t.mask == 0);
    let (Some(din), Some(dout)) = (din, dout) else {
        return one(if all_global { changed(x.clone()) } else { unknown("reshape with unknown shapes") });
    };
    let Some(groups) = reshape_groups(&din, &dout) else {
        return one(if all_global { changed(x.clone()) } else { unknown("reshape with unknown dims") });
    };
    one(remap_effect(c, x, &|m| {
        let mut out = 0;
        let mut keep = true;
        for (ins, outs) in &groups {
            let varying: Vec<usize> = ins.clone().filter(|&a| m & mask::bit(a) != 0 && din[a] != Dim::Known(1)).collect();
            if varying.is_empty() {
                continue;
            }
            let non_unit_in = ins.clone().filter(|&a| din[a] != Dim::Known(1)).count();
            let non_unit_out: Vec<usize> = outs.clone().filter(|&a| dout[a] != Dim::Known(1)).collect();
            if non_unit_in != 1 || non_unit_out.len() != 1 {
                keep = false;
            }
            for a in non_unit_out {
                out |= mask::bit(a);
            }
        }
        Some((out, keep))
    }))
}

/// Pairs of (input axes, output axes) ranges with equal dim products.
pub(crate) fn reshape_groups(din: &[Dim], dout: &[Dim]) -> Option<Vec<(std::ops::Range<usize>, std::ops::Range<usize>)>> {
    #[derive(Clone, PartialEq, Debug)]
    struct Prod(i128, Vec<u32>);
    fn mul_rule(p: &mut Prod, d: Dim) -> Option<()> {
        match d {
            Dim::Known(k) => p.0 = p.0.checked_mul(k as i128)?,
            Dim::Sym(s) => {
                p.1.push(s);
                p.1.sort_unstable();
            }
            Dim::Unknown => return None,
        }
        Some(())
    }
    let mut groups = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < din.len() || j < dout.len() {
        let (si, sj) = (i, j);
        let mut pi = Prod(1, vec![]);
        let mut po = Prod(1, vec![]);
        if i < din.len() {
            mul_rule(&mut pi, din[i])?;
            i += 1;
        }
        if j < dout.len() {
            mul_rule(&mut po, dout[j])?;
            j += 1;
        }
        let mut guard = 0;
        while pi != po {
            guard += 1;
            if guard > 256 {
                return None;
            }
            let grow_in = match (pi.1.len().cmp(&po.1.len()), pi.0 < po.0) {
                (std::cmp::Ordering::Less, _) => true,
                (std::cmp::Ordering::Greater, _) => false,
                (_, lt) => lt,
            };
            if grow_in && i < din.len() {
                mul_rule(&mut pi, din[i])?;
                i += 1;
            } else if j < dout.len() {
                mul_rule(&mut po, dout[j])?;
                j += 1;
            } else if i < din.len() {
                mul_rule(&mut pi, din[i])?;
                i += 1;
            } else {
                return None;
            }
        }
        // absorb trailing size-1 output axes into this group
        while j < dout.len() && dout[j] == Dim::Known(1) && i == din.len() {
            j += 1;
        }
        groups.push((si..i, sj..j));
    }
    Some(groups)
}

pub(crate) fn reshape_grad(ad: &mut Ad, n: &Node, dy: &[Option<String>], _: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    let dy = dy0!(n, dy);
    let x = ad.name(n, 0);
    Ok(grads(n, vec![(0, ad.em.reshape_like(&dy, &x))]))
}

pub(crate) fn reshape_shape(input: Option<&[Dim]>, target: &[Dim], allowzero: bool) -> Option<Vec<Dim>> {
    let mut out: Vec<Dim> = target
        .iter()
        .enumerate()
        .map(|(i, d)| match d {
            Dim::Known(0) if !allowzero => input.and_then(|s| s.get(i).copied()).unwrap_or(Dim::Unknown),
            _ => *d,
        })
        .collect();
    if let Some(pos) = out.iter().position(|d| *d == Dim::Known(-1)) {
        out[pos] = Dim::Unknown;
        if let Some(input) = input {
            let total = product(input);
            let rest = product(&out.iter().enumerate().filter(|(i, _)| *i != pos).map(|(_, d)| *d).collect::<Vec<_>>());
            out[pos] = match (total, rest) {
                (Dim::Known(t), Dim::Known(r)) if r > 0 && t % r == 0 => Dim::Known(t / r),
                (t, Dim::Known(1)) => t,
                _ => infer_sym_quotient(input, &out, pos),
            };
        }
    }
    if out.iter().any(|d| matches!(d, Dim::Known(x) if *x < 0)) {
        return None;
    }
    Some(out)
}

/// `-1` against a symbolic input: cancel equal symbols, divide the known parts.
pub(crate) fn infer_sym_quotient(input: &[Dim], out: &[Dim], pos: usize) -> Dim {
    let mut syms: Vec<u32> = input.iter().filter_map(|d| if let Dim::Sym(s) = d { Some(*s) } else { None }).collect();
    let mut known: i64 = 1;
    for d in input {
        match d {
            Dim::Known(k) => known = known.saturating_mul(*k),
            Dim::Sym(_) => {}
            Dim::Unknown => return Dim::Unknown,
        }
    }
    let mut div: i64 = 1;
    for (i, d) in out.iter().enumerate() {
        if i == pos {
            continue;
        }
        match d {
            Dim::Known(k) => div = div.saturating_mul(*k),
            Dim::Sym(s) => match syms.iter().position(|x| x == s) {
                Some(p) => {
                    syms.remove(p);
                }
                None => return Dim::Unknown,
            },
            Dim::Unknown => return Dim::Unknown,
        }
    }
    if div == 0 || known % div != 0 {
        return Dim::Unknown;
    }
    match (syms.as_slice(), known / div) {
        ([], q) => Dim::Known(q),
        ([s], 1) => Dim::Sym(*s),
        _ => Dim::Unknown,
    }
}

pub(crate) fn squeeze(s: Option<&[Dim]>, axes: Option<&[i64]>) -> Option<Vec<Dim>> {
    let s = s?;
    match axes {
        Some(axes) => {
            let axes: Option<Vec<usize>> = axes.iter().map(|&a| norm_axis(a, s.len())).collect();
            let axes = axes?;
            Some(s.iter().enumerate().filter(|(i, _)| !axes.contains(i)).map(|(_, d)| *d).collect())
        }
        None => {
            if s.iter().any(|d| !matches!(d, Dim::Known(_))) {
                return None;
            }
            Some(s.iter().filter(|d| **d != Dim::Known(1)).copied().collect())
        }
    }
}

pub(crate) fn unsqueeze(s: Option<&[Dim]>, axes: Option<&[i64]>) -> Option<Vec<Dim>> {
    let (s, axes) = (s?, axes?);
    let rank = s.len() + axes.len();
    let axes: Option<Vec<usize>> = axes.iter().map(|&a| norm_axis(a, rank)).collect();
    let axes = axes?;
    let mut inserted = vec![false; rank];
    for &a in &axes {
        inserted[a] = true;
    }
    let mut it = s.iter();
    (0..rank).map(|i| if inserted[i] { Some(Dim::Known(1)) } else { it.next().copied() }).collect()
}

pub(crate) fn reshape_out_shape(g: &Graph, n: &Node) -> Vec<ShapeOut> {
    let target = val(g, n, 1).and_then(|v| v.ints.clone());
    let s = match (shape_of(g, n, 0), target) {
        (input, Some(t)) => reshape_shape(input.as_deref(), &t, ALLOWZERO.on(n)),
        (_, None) => val(g, n, 1).and_then(|v| v.shape.as_ref()).and_then(|s| s.first()).and_then(|d| d.known()).map(|r| vec![Dim::Unknown; r.max(0) as usize]),
    };
    let ints = val(g, n, 0).and_then(|v| v.ints.clone());
    vec![(s, ints, None, first_dtype(g, n))]
}

pub(crate) fn flatten_shape(g: &Graph, n: &Node) -> Vec<ShapeOut> {
    let s = shape_of(g, n, 0).and_then(|s| {
        // axis in [-r, r]: a negative one counts from the rank, not rank + 1
        let a = AXIS.get(n);
        let axis = if a < 0 { norm_axis(a, s.len())? } else { norm_axis(a, s.len() + 1)? };
        Some(vec![product(&s[..axis]), product(&s[axis..])])
    });
    vec![(s, None, None, first_dtype(g, n))]
}

pub(crate) fn squeeze_shape(g: &Graph, n: &Node) -> Vec<ShapeOut> {
    let axes = AXES.get(n).map(<[i64]>::to_vec).or_else(|| ints_of(g, n, 1));
    let input = shape_of(g, n, 0);
    let s = if n.is(&SQUEEZE) { squeeze(input.as_deref(), axes.as_deref()) } else { unsqueeze(input.as_deref(), axes.as_deref()) };
    let ints = val(g, n, 0).and_then(|v| v.ints.clone());
    vec![(s, ints, val(g, n, 0).and_then(|v| v.scalar), first_dtype(g, n))]
}

/// The data is unchanged (row-major): the output aliases the input.
fn reshape_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    let (i, o) = (ctx.input(0)?, ctx.output(0)?);
    if i.numel() != o.numel() {
        return Err(format!("{} elements cannot take the shape {:?}", i.numel(), o.shape));
    }
    Ok(Lowered::alias(0))
}
