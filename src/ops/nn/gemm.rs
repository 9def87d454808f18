//! The `Gemm`: definitions and rules.
#![allow(clippy::too_many_arguments)]
use crate::ops::util::prelude::*;

/// The `Gemm` op.
pub static GEMM: OpDef = OpDef {
    name: "Gemm",
    module: module_path!(),
    inputs: Arity::range(2, 3),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    attrs: &[
        AttrSpec::float("alpha"),
        AttrSpec::float("beta"),
        // any nonzero value transposes (as onnxruntime reads them), so only the type is checked
        AttrSpec::int("transA", AttrCheck::Any),
        AttrSpec::int("transB", AttrCheck::Any),
    ],
    shape: Some(gemm_shape),
    analysis: Analysis::Rule(gemm_rule),
    channel_axis: Some(gemm_channel_axis),
    gradient: Gradient::Rule(gemm_grad),
    reads: 2,
    ..OpDef::BASE
};

pub(crate) fn gemm_rule(c: &mut Ctx, n: &Node, e: &[Option<Affine>]) -> Vec<Flow> {
    let (ea, eb) = (e[0].as_ref(), e.get(1).and_then(Option::as_ref));
    let (ta, tb) = (n.attr_int("transA", 0) != 0, n.attr_int("transB", 0) != 0);
    let (m_axis, k_axis_a) = if ta { (1, 0) } else { (0, 1) };
    let (n_axis, k_axis_b) = if tb { (0, 1) } else { (1, 0) };
    let mut scale = None;
    let mut shift = None;
    if let Some(a) = ea {
        if let Some(s) = &a.scale {
            if s.mask & mask::bit(k_axis_a) != 0 {
                return one(variant("Gemm contracts over a varying scale"));
            }
            scale = Some(Scale { mask: if s.mask & mask::bit(m_axis) != 0 { mask::bit(0) } else { 0 }, ..s.clone() });
        }
        if let Some(t) = &a.shift {
            if eb.is_some() || !c.is_const(n.input(1)) {
                return one(variant("Gemm of a shifted input by data"));
            }
            let m = mask::bit(1) | if t.mask & mask::bit(m_axis) != 0 { mask::bit(0) } else { 0 };
            shift = Some(Shift { mask: m, token: c.fresh(), sources: t.sources.clone() });
        }
    }
    if let Some(b) = eb {
        if b.shift.is_some() {
            return one(variant("Gemm weight changes additively"));
        }
        if let Some(s) = &b.scale {
            let out = (s.mask & mask::bit(k_axis_b) == 0).then(|| if s.mask & mask::bit(n_axis) != 0 { mask::bit(1) } else { 0 });
            scale = match times_weight(c, scale, s, out, true, 2, "Gemm weight scale varies along the contracted axis") {
                Ok(s) => s,
                Err(f) => return one(f),
            };
        }
    }
    let linear = Affine { scale, shift };
    let Some(cv) = n.input(2) else { return one(changed(linear)) };
    // C broadcasts to [M, N]: a sum of the data term and a constant term.
    let terms = [
        Term { value: None, rank: Some(2), effect: Some(&linear).filter(|a| !a.is_identity()), negate: false },
        Term { value: Some(cv), rank: c.rank(Some(cv)), effect: e.get(2).and_then(Option::as_ref), negate: false },
    ];
    one(combine_sum(c, Some(2), &terms))
}

pub(crate) fn gemm_grad(ad: &mut Ad, n: &Node, dy: &[Option<String>], need: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    let dy = dy0!(n, dy);
    let alpha = n.attr_float("alpha", 1.0);
    let beta = n.attr_float("beta", 1.0);
    let (ta, tb) = (n.attr_int("transA", 0) != 0, n.attr_int("transB", 0) != 0);
    let (a, b) = (ad.name(n, 0), ad.name(n, 1));
    let gm = |em: &mut Emitter, x: &str, y: &str, t1: bool, t2: bool| {
        em.op(&GEMM, &[x, y], vec![crate::rewrite::emit::a_float("alpha", alpha), a_int("transA", t1 as i64), a_int("transB", t2 as i64)])
    };
    let mut out = Vec::new();
    if nd(need, 0) {
        let g = if ta { gm(ad.em, &b, &dy, tb, true) } else { gm(ad.em, &dy, &b, false, !tb) };
        out.push((0, g));
    }
    if nd(need, 1) {
        let g = if tb { gm(ad.em, &dy, &a, true, ta) } else { gm(ad.em, &a, &dy, !ta, false) };
        out.push((1, g));
    }
    if need.get(2).copied().unwrap_or(false) {
        let scaled = if beta == 1.0 { dy.clone() } else { ad.em.mul_scalar(&dy, beta as f64) };
        out.push((2, ad.unb(n, 2, &scaled)?));
    }
    Ok(grads(n, out))
}

pub(crate) fn gemm_shape(g: &Graph, n: &Node) -> Vec<ShapeOut> {
    let (a, b) = (shape_of(g, n, 0), shape_of(g, n, 1));
    let s = match (a, b) {
        (Some(a), Some(b)) if a.len() == 2 && b.len() == 2 => {
            let m = if n.attr_int("transA", 0) != 0 { a[1] } else { a[0] };
            let k = if n.attr_int("transB", 0) != 0 { b[0] } else { b[1] };
            Some(vec![m, k])
        }
        _ => None,
    };
    vec![(s, None, None, first_dtype(g, n))]
}

/// The output's columns: B's axis 1 (0 transposed); A's rows likewise.
pub(crate) fn gemm_channel_axis(n: &Node, slot: usize, _: usize) -> Option<usize> {
    match slot {
        1 => Some(if n.attr_int("transB", 0) != 0 { 0 } else { 1 }),
        0 => Some(if n.attr_int("transA", 0) != 0 { 1 } else { 0 }),
        _ => None,
    }
}
