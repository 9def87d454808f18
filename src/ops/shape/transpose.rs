//! The `Transpose`: definitions and rules.
#![allow(clippy::too_many_arguments)]
use crate::ops::util::prelude::*;

// The attributes, with their ONNX defaults (checked when the IR is built).
const PERM: IntsAttr = IntsAttr::new("perm", AttrCheck::AtLeast(0));

/// The `Transpose` op.
pub static TRANSPOSE: OpDef = OpDef {
    name: "Transpose",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    attrs: &[
        PERM.spec,
    ],
    shape: Some(transpose_shape),
    analysis: Analysis::Rule(transpose_rule),
    gradient: Gradient::Rule(transpose_grad),
    kernel: Some(transpose_kernel),
    ..OpDef::BASE
};

pub(crate) fn transpose_rule(c: &mut Ctx, n: &Node, e: &[Option<Affine>]) -> Vec<Flow> {
    let Some(x) = e.first().and_then(Option::as_ref) else { return one(Flow::Same) };
    let Some(r) = c.rank(n.input(0)) else { return one(unknown("Transpose rank unknown")) };
    let perm: Vec<usize> = match PERM.get(n) {
        Some(p) => match p.iter().map(|&a| usize::try_from(a).ok().filter(|&a| a < r)).collect() {
            Some(p) => p,
            None => return one(variant("bad perm")),
        },
        None => (0..r).rev().collect(),
    };
    one(remap_effect(c, x, &|m| {
        let out = perm.iter().enumerate().fold(0, |o, (i, &p)| if m & mask::bit(p) != 0 { o | mask::bit(i) } else { o });
        // The factor keeps its identity only if its varying axes keep their order:
        // swapping two of them transposes the factor itself.
        let order: Vec<usize> = perm.iter().copied().filter(|&p| m & mask::bit(p) != 0).collect();
        Some((out, order.windows(2).all(|w| w[0] < w[1])))
    }))
}

pub(crate) fn transpose_grad(ad: &mut Ad, n: &Node, dy: &[Option<String>], _: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    let dy = dy0!(n, dy);
    let r = ad.rank(n, 0)?;
    let perm: Vec<i64> = PERM.get(n).map(<[i64]>::to_vec).unwrap_or_else(|| (0..r as i64).rev().collect());
    let mut inv = vec![0i64; perm.len()];
    for (i, &p) in perm.iter().enumerate() {
        let p = usize::try_from(p).ok().filter(|&p| p < inv.len()).ok_or_else(|| Ad::err(n, "perm out of range"))?;
        inv[p] = i as i64;
    }
    Ok(grads(n, vec![(0, ad.em.op(&TRANSPOSE, &[&dy], vec![a_ints("perm", &inv)]))]))
}

/// A Transpose of a small integer tensor (torch's pad amounts are reordered so).
pub(crate) fn transpose_ints(g: &Graph, n: &Node) -> Option<Vec<Dim>> {
    let xs = val(g, n, 0)?.ints.clone()?;
    let dims: Vec<i64> = shape_of(g, n, 0)?.iter().map(|d| d.known()).collect::<Option<_>>()?;
    let r = dims.len();
    let perm: Vec<usize> = match PERM.get(n) {
        Some(p) => p.iter().map(|&a| usize::try_from(a).ok().filter(|&a| a < r)).collect::<Option<_>>()?,
        None => (0..r).rev().collect(),
    };
    if perm.len() != r {
        return None;
    }
    let strides: Vec<i64> = (0..r).map(|i| dims[i + 1..].iter().product()).collect();
    // output position -> input flat index
    let mut out = vec![0i64];
    for &p in &perm {
        let (d, stride) = (dims[p], strides[p]);
        out = out.iter().flat_map(|&base| (0..d).map(move |i| base + i * stride)).collect();
        if out.len() > MAX_TRACKED_INTS {
            return None;
        }
    }
    out.iter().map(|&i| xs.get(usize::try_from(i).ok()?).copied()).collect()
}

pub(crate) fn transpose_shape(g: &Graph, n: &Node) -> Vec<ShapeOut> {
    let s = shape_of(g, n, 0).and_then(|s| {
        let perm: Vec<i64> = PERM.get(n).map(<[i64]>::to_vec).unwrap_or_else(|| (0..s.len() as i64).rev().collect());
        if perm.len() != s.len() {
            return None;
        }
        perm.iter().map(|&p| s.get(usize::try_from(p).ok()?).copied()).collect()
    });
    let ints = transpose_ints(g, n);
    vec![(s, ints, None, first_dtype(g, n))]
}

fn transpose_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    let x = ctx.input(0)?;
    let r = x.shape.len();
    let perm: Vec<usize> = match PERM.get(ctx.node) {
        Some(p) => p.iter().map(|&a| usize::try_from(a).ok().filter(|&a| a < r).ok_or_else(|| format!("perm {p:?} is not a permutation of 0..{r}"))).collect::<Result<_, _>>()?,
        None => (0..r).rev().collect(),
    };
    let mut seen = vec![false; r];
    if perm.len() != r || perm.iter().any(|&p| std::mem::replace(&mut seen[p], true)) {
        return Err(format!("perm {perm:?} is not a permutation of 0..{r}"));
    }
    let st = kern::strides(&x.shape);
    // output dim d walks input dim perm[d]
    let mult: Vec<i64> = perm.iter().map(|&p| st[p] as i64).collect();
    let offset = format!("    let src = {};", crate::ops::movement::map::affine("c", 0, &mult));
    crate::ops::movement::map::gather(ctx, 0, &offset, None, &[])
}
