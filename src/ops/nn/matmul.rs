//! The `MatMul`, `MatMulInteger`, `QLinearMatMul`: definitions and rules.
#![allow(clippy::too_many_arguments)]
use crate::ops::util::prelude::*;

/// The `MatMul` op.
pub static MAT_MUL: OpDef = OpDef {
    name: "MatMul",
    module: module_path!(),
    inputs: Arity::range(2, 2),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    shape: Some(matmul_out_shape),
    constraints: Some(matmul_constraints),
    analysis: Analysis::Rule(matmul_rule),
    channel_axis: Some(matmul_channel_axis),
    gradient: Gradient::Rule(matmul_grad),
    reads: 2,
    kernel: Some(matmul_kernel),
    ..OpDef::BASE
};

/// The `MatMulInteger` op.
pub static MAT_MUL_INTEGER: OpDef = OpDef {
    name: "MatMulInteger",
    module: module_path!(),
    inputs: Arity::range(2, 4),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 10, until: None },
    shape: Some(matmul_integer_shape),
    analysis: Analysis::Unknown("not written: a change reaching it is unknown"),
    gradient: Gradient::None("not written: an error on the gradient path"),
    ..OpDef::BASE
};

/// The `QLinearMatMul` op.
pub static Q_LINEAR_MAT_MUL: OpDef = OpDef {
    name: "QLinearMatMul",
    module: module_path!(),
    inputs: Arity::range(8, 8),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 10, until: None },
    shape: Some(matmul_integer_shape),
    analysis: Analysis::Unknown("not written: a change reaching it is unknown"),
    gradient: Gradient::None("not written: an error on the gradient path"),
    ..OpDef::BASE
};

pub(crate) fn matmul_rule(c: &mut Ctx, n: &Node, e: &[Option<Affine>]) -> Vec<Flow> {
    let (ea, eb) = (e[0].as_ref(), e.get(1).and_then(Option::as_ref));
    let (Some(ra), Some(rb), Some(ro)) = (c.rank(n.input(0)), c.rank(n.input(1)), c.rank(n.output(0))) else {
        return one(unknown("MatMul ranks unknown"));
    };
    // Map an input axis to an output axis (None: contracted).
    let map_a = |a: usize| -> Option<usize> {
        if a == ra - 1 || ra == 1 {
            None
        } else if a == ra - 2 {
            Some(ro - if rb == 1 { 1 } else { 2 })
        } else {
            Some(a + ro - ra)
        }
    };
    let map_b = |b: usize| -> Option<usize> {
        if rb == 1 || b == rb - 2 {
            None
        } else if b == rb - 1 {
            Some(ro - 1)
        } else {
            Some(b + ro - rb)
        }
    };
    let remap = |m: Mask, f: &dyn Fn(usize) -> Option<usize>| -> Option<Mask> {
        let mut out = 0;
        for a in mask::axes(m) {
            out |= mask::bit(f(a)?);
        }
        Some(out)
    };
    let mut scale = None;
    let mut shift = None;
    if let Some(a) = ea {
        if let Some(s) = &a.scale {
            let Some(m) = remap(s.mask, &map_a) else { return one(variant("MatMul contracts over a varying scale")) };
            scale = Some(Scale { mask: m, ..s.clone() });
        }
        if let Some(t) = &a.shift {
            if eb.is_some() || !c.is_const(n.input(1)) {
                return one(variant("MatMul of a shifted input by data"));
            }
            let kept = remap(t.mask & !mask::bit(ra - 1), &map_a).unwrap_or(mask::below(ro));
            let m = kept | if rb > 1 { mask::bit(ro - 1) } else { 0 };
            shift = Some(Shift { mask: m, token: c.fresh(), sources: t.sources.clone() });
        }
    }
    if let Some(b) = eb {
        if let Some(t) = &b.shift {
            if ea.is_some() || !c.is_const(n.input(0)) {
                return one(variant("MatMul by an additively changed weight"));
            }
            // A · T_B with a constant A: data-independent, may vary along every axis.
            let extra = Shift { mask: mask::below(ro), token: c.fresh(), sources: t.sources.clone() };
            shift = merge_shifts(c, shift, Some(extra));
        }
        if let Some(s) = &b.scale {
            scale = match times_weight(c, scale, s, remap(s.mask, &map_b), true, ro, "MatMul weight scale varies along the contracted axis") {
                Ok(s) => s,
                Err(f) => return one(f),
            };
        }
    }
    one(changed(Affine { scale, shift }))
}

pub(crate) fn matmul_grad(ad: &mut Ad, n: &Node, dy: &[Option<String>], need: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    let dy = dy0!(n, dy);
    let (ra, rb) = (ad.rank(n, 0)?, ad.rank(n, 1)?);
    if ra == 0 || rb == 0 {
        return Err(Ad::err(n, "an input has rank 0; MatMul needs rank 1 or more"));
    }
    let (mut a, mut b) = (ad.name(n, 0), ad.name(n, 1));
    let (mut ad_dims, mut bd_dims) = (ad.dims(n.input(0)).unwrap_or_default(), ad.dims(n.input(1)).unwrap_or_default());
    let mut g = dy;
    let mut gd = ad.dims(n.output(0)).ok_or_else(|| Ad::err(n, "output shape unknown"))?;
    // Vectors become matrices; the gradient gets the dims the product dropped.
    if ra == 1 {
        a = ad.em.unsqueeze(&a, &[0]);
        ad_dims.insert(0, Dim::Known(1));
        let at = gd.len().saturating_sub(if rb == 1 { 0 } else { 1 });
        g = ad.em.unsqueeze(&g, &[at as i64]);
        gd.insert(at, Dim::Known(1));
    }
    if rb == 1 {
        b = ad.em.unsqueeze(&b, &[1]);
        bd_dims.push(Dim::Known(1));
        g = ad.em.unsqueeze(&g, &[gd.len() as i64]);
        gd.push(Dim::Known(1));
    }
    // Inconsistent declared or inferred ranks (found by fuzzing) would make
    // the index arithmetic below underflow.
    if gd.len() < 2 || gd.len() < ad_dims.len().max(bd_dims.len()) {
        return Err(Ad::err(n, &format!("output rank {} does not fit inputs of rank {ra} and {rb}", gd.len().saturating_sub(usize::from(ra == 1) + usize::from(rb == 1)))));
    }
    let t_last = |em: &mut Emitter, x: &str, r: usize| {
        let mut perm: Vec<i64> = (0..r as i64).collect();
        perm.swap(r - 2, r - 1);
        em.op(&TRANSPOSE, &[x], vec![a_ints("perm", &perm)])
    };
    let mut out = Vec::new();
    let batch = &gd[..gd.len() - 2];
    if nd(need, 0) {
        let bt = t_last(ad.em, &b, bd_dims.len());
        let ga = ad.em.op(&MAT_MUL, &[&g, &bt], vec![]);
        let gdims: Vec<Dim> = batch.iter().copied().chain(ad_dims[ad_dims.len() - 2..].iter().copied()).collect();
        let r = ad.unbroadcast(n, &ga, Some(gdims), &a, Some(ad_dims.clone()))?;
        let orig = ad.name(n, 0);
        out.push((0, if ra == 1 { ad.em.reshape_like(&r, &orig) } else { r }));
    }
    if nd(need, 1) {
        let at = t_last(ad.em, &a, ad_dims.len());
        let gb = ad.em.op(&MAT_MUL, &[&at, &g], vec![]);
        let gdims: Vec<Dim> = batch.iter().copied().chain(bd_dims[bd_dims.len() - 2..].iter().copied()).collect();
        let r = ad.unbroadcast(n, &gb, Some(gdims), &b, Some(bd_dims.clone()))?;
        let orig = ad.name(n, 1);
        out.push((1, if rb == 1 { ad.em.reshape_like(&r, &orig) } else { r }));
    }
    Ok(grads(n, out))
}

pub(crate) fn matmul_shape(a: &[Dim], b: &[Dim]) -> Option<Vec<Dim>> {
    if a.is_empty() || b.is_empty() {
        return None;
    }
    let a2: Vec<Dim> = if a.len() == 1 { vec![Dim::Known(1), a[0]] } else { a.to_vec() };
    let b2: Vec<Dim> = if b.len() == 1 { vec![b[0], Dim::Known(1)] } else { b.to_vec() };
    let batch = broadcast(&[a2[..a2.len() - 2].to_vec(), b2[..b2.len() - 2].to_vec()])?;
    let mut out = batch;
    if a.len() > 1 {
        out.push(a2[a2.len() - 2]);
    }
    if b.len() > 1 {
        out.push(b2[b2.len() - 1]);
    }
    Some(out)
}

pub(crate) fn matmul_out_shape(g: &Graph, n: &Node) -> Vec<ShapeOut> {
    let s = match (shape_of(g, n, 0), shape_of(g, n, 1)) {
        (Some(a), Some(b)) => matmul_shape(&a, &b),
        _ => None,
    };
    vec![(s, None, None, first_dtype(g, n))]
}

pub(crate) fn matmul_integer_shape(g: &Graph, n: &Node) -> Vec<ShapeOut> {
    let b = if n.is(&Q_LINEAR_MAT_MUL) { 3 } else { 1 };
    let s = match (shape_of(g, n, 0), shape_of(g, n, b)) {
        (Some(a), Some(b)) => matmul_shape(&a, &b),
        _ => None,
    };
    let dtype = if n.is(&MAT_MUL_INTEGER) { Some(DType::I32) } else { val(g, n, 7).and_then(|v| v.dtype) };
    vec![(s, None, None, dtype)]
}

/// a @ W with a 2-D W: a's last axis has W's rows.
pub(crate) fn matmul_constraints(g: &Graph, n: &Node) -> Vec<(usize, Vec<Dim>)> {
    match (shape_of(g, n, 0).as_ref().map(Vec::len), shape_of(g, n, 1)) {
        (Some(r), Some(w)) if r >= 1 && w.len() == 2 => {
            let mut hint = vec![Dim::Unknown; r];
            hint[r - 1] = w[0];
            vec![(0, hint)]
        }
        _ => Vec::new(),
    }
}

/// B's last axis holds the output columns; A's second to last its rows.
pub(crate) fn matmul_channel_axis(_: &Node, slot: usize, rank: usize) -> Option<usize> {
    match slot {
        1 if rank >= 1 => Some(rank - 1),
        0 if rank >= 2 => Some(rank - 2),
        _ => None,
    }
}

/// A MatMul's operands as batched matrices.
pub(crate) struct Product {
    /// The output's batch dims (A's and B's broadcast).
    pub batch: Vec<usize>,
    /// A's batch dims.
    pub a_batch: Vec<usize>,
    /// B's batch dims.
    pub b_batch: Vec<usize>,
    /// Rows of A.
    pub m: usize,
    /// The contracted length.
    pub k: usize,
    /// Columns of B.
    pub n: usize,
}

/// The product's operands as batched matrices, with a 1-D A as one row and a
/// 1-D B as one column (numpy's matmul).
pub(crate) fn matmul_dims(a: &[usize], b: &[usize]) -> Result<Product, String> {
    if a.is_empty() || b.is_empty() {
        return Err("MatMul needs operands of rank 1 or more".into());
    }
    let a2: Vec<usize> = if a.len() == 1 { vec![1, a[0]] } else { a.to_vec() };
    let b2: Vec<usize> = if b.len() == 1 { vec![b[0], 1] } else { b.to_vec() };
    let (m, ka) = (a2[a2.len() - 2], a2[a2.len() - 1]);
    let (kb, n) = (b2[b2.len() - 2], b2[b2.len() - 1]);
    if ka != kb {
        return Err(format!("A of shape {a:?} and B of shape {b:?}: the contracted dims {ka} and {kb} differ"));
    }
    let (ab, bb) = (&a2[..a2.len() - 2], &b2[..b2.len() - 2]);
    let rank = ab.len().max(bb.len());
    let mut batch = vec![1usize; rank];
    for (d, slot) in batch.iter_mut().enumerate() {
        let x = if d + ab.len() >= rank { ab[d + ab.len() - rank] } else { 1 };
        let y = if d + bb.len() >= rank { bb[d + bb.len() - rank] } else { 1 };
        *slot = match (x, y) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return Err(format!("the batch dims of A {a:?} and B {b:?} do not broadcast")),
        };
    }
    Ok(Product { batch, a_batch: ab.to_vec(), b_batch: bb.to_vec(), m, k: ka, n })
}

fn matmul_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    let (a, b, out) = (ctx.input(0)?, ctx.input(1)?, ctx.output(0)?);
    if a.elem != Elem::F32 || b.elem != Elem::F32 {
        return Err(format!("the kernel computes float32; the inputs are {:?} and {:?}", a.elem, b.elem));
    }
    let Product { batch, a_batch: ab, b_batch: bb, m, k, n } = matmul_dims(&a.shape, &b.shape)?;
    let nb: usize = batch.iter().product();
    if out.numel() != nb * m * n {
        return Err(format!("output of shape {:?} for a product of {nb} {m}×{n} matrices", out.shape));
    }
    let a_base = kern::broadcast_offset("o", "b", &ab, &batch);
    let b_base = kern::broadcast_offset("o", "b", &bb, &batch);
    crate::ops::nn::tiled::TiledGemm {
        label: kern::label(ctx.node, &format!("{nb}×{m}×{k}×{n}")),
        batch: nb,
        m,
        n,
        k,
        binds: vec![("a".into(), Elem::F32, kern::Bind::Input(0)), ("bm".into(), Elem::F32, kern::Bind::Input(1)), ("out".into(), Elem::F32, kern::Bind::Output(0))],
        load_a: format!("    {a_base}\n    return a[o * {}u + m * {k}u + k];", m * k),
        load_b: format!("    {b_base}\n    return bm[o * {}u + k * {n}u + n];", k * n),
        epilogue: format!("    out[(b * {m}u + m) * {n}u + n] = v;"),
        helpers: String::new(),
    }
    .lower(&ctx.limits)
}

#[cfg(all(test, feature = "gpu"))]
mod tests {
    use crate::ops::nn::tiled::testing::{assert_close, run_node_as, values};

    /// numpy matmul on the host, through the same batch broadcasting rules.
    fn reference(a: &[f32], ash: &[usize], b: &[f32], bsh: &[usize]) -> Vec<f64> {
        let super::Product { batch, a_batch: ab, b_batch: bb, m, k, n } = super::matmul_dims(ash, bsh).unwrap();
        let nb: usize = batch.iter().product();
        let mut out = vec![0.0f64; nb * m * n];
        let offset = |i: usize, from: &[usize]| -> usize {
            // coordinates of batch index i, broadcast into `from`
            let mut rem = i;
            let mut coords = vec![0; batch.len()];
            for d in (0..batch.len()).rev() {
                coords[d] = rem % batch[d];
                rem /= batch[d];
            }
            let pad = batch.len() - from.len();
            let mut o = 0;
            for (d, &len) in from.iter().enumerate() {
                o = o * len + if len == 1 { 0 } else { coords[d + pad] };
            }
            o
        };
        for bi in 0..nb {
            let (oa, ob) = (offset(bi, &ab) * m * k, offset(bi, &bb) * k * n);
            for i in 0..m {
                for j in 0..n {
                    out[(bi * m + i) * n + j] = (0..k).map(|p| a[oa + i * k + p] as f64 * b[ob + p * n + j] as f64).sum();
                }
            }
        }
        out
    }

    fn check(ash: &[usize], bsh: &[usize], want_shape: &[usize]) {
        let a = values(ash.iter().product(), 1);
        let b = values(bsh.iter().product(), 2);
        for cpu in [true, false] {
            let got = run_node_as(super::MAT_MUL.name, vec![], &[Some((ash, &a)), Some((bsh, &b))], 1, cpu).unwrap();
            assert_eq!(got[0].1, want_shape);
            assert_close(&got[0].0, &reference(&a, ash, &b, bsh), &format!("MatMul {ash:?} x {bsh:?} (CPU kernel {cpu})"));
        }
    }

    #[test]
    fn broadcast_batches_and_ragged_tiles() {
        check(&[2, 1, 33, 70], &[3, 70, 45], &[2, 3, 33, 45]);
    }

    #[test]
    fn vectors_are_a_row_and_a_column() {
        check(&[70], &[2, 70, 3], &[2, 3]);
        check(&[2, 5, 70], &[70], &[2, 5]);
        check(&[37], &[37], &[]);
    }

    #[test]
    fn long_contraction_is_split() {
        // K = 3000 over a single output tile: the split-K path and its sum.
        check(&[4, 3000], &[3000, 5], &[4, 5]);
        // the convolution weight gradient's form: [G, cg, N·O] x [G, N·O, mg]
        check(&[3, 8, 1200], &[3, 1200, 16], &[3, 8, 16]);
    }
}
