//! The `Gemm`: definitions and rules.
#![allow(clippy::too_many_arguments)]
use crate::ops::util::prelude::*;

// The attributes, with their ONNX defaults (checked when the IR is built).
const ALPHA: FloatAttr = FloatAttr::new("alpha", 1.0);
const BETA: FloatAttr = FloatAttr::new("beta", 1.0);
const TRANSA: IntAttr = IntAttr::new("transA", AttrCheck::Any, 0);
const TRANSB: IntAttr = IntAttr::new("transB", AttrCheck::Any, 0);

/// The `Gemm` op.
pub static GEMM: OpDef = OpDef {
    name: "Gemm",
    module: module_path!(),
    inputs: Arity::range(2, 3),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    attrs: &[
        ALPHA.spec,
        BETA.spec,
        // any nonzero value transposes (as onnxruntime reads them), so only the type is checked
        TRANSA.spec,
        TRANSB.spec,
    ],
    shape: Some(gemm_shape),
    analysis: Analysis::Rule(gemm_rule),
    channel_axis: Some(gemm_channel_axis),
    gradient: Gradient::Rule(gemm_grad),
    reads: 2,
    kernel: Some(gemm_kernel),
    ..OpDef::BASE
};

pub(crate) fn gemm_rule(c: &mut Ctx, n: &Node, e: &[Option<Affine>]) -> Vec<Flow> {
    let (ea, eb) = (e[0].as_ref(), e.get(1).and_then(Option::as_ref));
    let (ta, tb) = (TRANSA.on(n), TRANSB.on(n));
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
    let (ta, tb, alpha, beta) = (TRANSA.on(n), TRANSB.on(n), ALPHA.get(n), BETA.get(n));
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
            let m = if TRANSA.on(n) { a[1] } else { a[0] };
            let k = if TRANSB.on(n) { b[0] } else { b[1] };
            Some(vec![m, k])
        }
        _ => None,
    };
    vec![(s, None, None, first_dtype(g, n))]
}

/// The output's columns: B's axis 1 (0 transposed); A's rows likewise.
pub(crate) fn gemm_channel_axis(n: &Node, slot: usize, _: usize) -> Option<usize> {
    match slot {
        1 => Some(if TRANSB.on(n) { 0 } else { 1 }),
        0 => Some(if TRANSA.on(n) { 1 } else { 0 }),
        _ => None,
    }
}

fn gemm_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    let (a, b, out) = (ctx.input(0)?, ctx.input(1)?, ctx.output(0)?);
    if a.elem != Elem::F32 || b.elem != Elem::F32 || out.elem != Elem::F32 {
        return Err(format!("the kernel computes float32; the inputs are {:?} and {:?}", a.elem, b.elem));
    }
    let (ta, tb, alpha, beta) = (TRANSA.on(ctx.node), TRANSB.on(ctx.node), ALPHA.get(ctx.node), BETA.get(ctx.node));
    let (&[a0, a1], &[b0, b1]) = (a.shape.as_slice(), b.shape.as_slice()) else {
        return Err(format!("Gemm needs 2-D A and B; they are {:?} and {:?}", a.shape, b.shape));
    };
    let (m, k) = if ta { (a1, a0) } else { (a0, a1) };
    let (kb, n) = if tb { (b1, b0) } else { (b0, b1) };
    if k != kb {
        return Err(format!("A of shape {:?} and B of shape {:?} (transA {ta}, transB {tb}): the contracted dims {k} and {kb} differ", a.shape, b.shape));
    }
    if out.shape != [m, n] {
        return Err(format!("output of shape {:?} for a {m}×{n} product", out.shape));
    }
    let mut binds = vec![("a".into(), Elem::F32, kern::Bind::Input(0)), ("bm".into(), Elem::F32, kern::Bind::Input(1))];
    let alpha_l = kern::f32_literal(alpha);
    let mut epilogue = format!("    var y = {alpha_l} * v;\n");
    match ctx.inputs.get(2).and_then(Option::as_ref) {
        Some(c) if beta != 0.0 => {
            if c.elem != Elem::F32 {
                return Err(format!("C is {:?}; the kernel computes float32", c.elem));
            }
            if c.shape.len() > 2 || c.shape.iter().rev().zip([n, m]).any(|(&d, o)| d != o && d != 1) {
                return Err(format!("C of shape {:?} does not broadcast to [{m}, {n}]", c.shape));
            }
            binds.push(("c".into(), Elem::F32, kern::Bind::Input(2)));
            let off = kern::broadcast_offset("o", &format!("(m * {n}u + n)"), &c.shape, &[m, n]);
            let _ = std::fmt::Write::write_fmt(&mut epilogue, format_args!("    {off}\n    y += {} * c[o];\n", kern::f32_literal(beta)));
        }
        _ => {}
    }
    binds.push(("out".into(), Elem::F32, kern::Bind::Output(0)));
    let _ = std::fmt::Write::write_fmt(&mut epilogue, format_args!("    out[m * {n}u + n] = y;"));
    crate::ops::nn::tiled::TiledGemm {
        label: kern::label(ctx.node, &format!("{m}×{k}×{n}")),
        batch: 1,
        m,
        n,
        k,
        binds,
        load_a: if ta { format!("    return a[k * {m}u + m];") } else { format!("    return a[m * {k}u + k];") },
        load_b: if tb { format!("    return bm[n * {k}u + k];") } else { format!("    return bm[k * {n}u + n];") },
        epilogue,
        helpers: String::new(),
    }
    .lower(&ctx.limits)
}

#[cfg(all(test, feature = "gpu"))]
mod tests {
    use crate::ir::AttrValue;
    use crate::ops::nn::tiled::testing::{assert_close, run_node_as, values};

    fn check(ta: bool, tb: bool, alpha: f32, beta: f32, c_shape: Option<&[usize]>) {
        let (m, k, n) = (35, 40, 9);
        let ash = if ta { [k, m] } else { [m, k] };
        let bsh = if tb { [n, k] } else { [k, n] };
        let (a, b) = (values(m * k, 3), values(k * n, 4));
        let c = c_shape.map(|s| values(s.iter().product(), 5));
        let mut want = vec![0.0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                let dot: f64 = (0..k).map(|p| a[if ta { p * m + i } else { i * k + p }] as f64 * b[if tb { j * k + p } else { p * n + j }] as f64).sum();
                let cv = match (c_shape, &c) {
                    (Some(s), Some(c)) => {
                        let (r, col) = match s {
                            [] => (0, 0),
                            [x] => (0, if *x == 1 { 0 } else { j }),
                            [y, x] => ((if *y == 1 { 0 } else { i }) * x, if *x == 1 { 0 } else { j }),
                            _ => unreachable!(),
                        };
                        c[r + col] as f64
                    }
                    _ => 0.0,
                };
                want[i * n + j] = alpha as f64 * dot + beta as f64 * cv;
            }
        }
        let attrs = vec![("transA", AttrValue::Int(ta as i64)), ("transB", AttrValue::Int(tb as i64)), ("alpha", AttrValue::Float(alpha)), ("beta", AttrValue::Float(beta))];
        let mut inputs = vec![Some((&ash[..], &a[..])), Some((&bsh[..], &b[..]))];
        if let (Some(s), Some(c)) = (c_shape, &c) {
            inputs.push(Some((s, &c[..])));
        }
        for cpu in [true, false] {
            let got = run_node_as(super::GEMM.name, attrs.clone(), &inputs, 1, cpu).unwrap();
            assert_eq!(got[0].1, [m, n]);
            assert_close(&got[0].0, &want, &format!("Gemm transA {ta} transB {tb} C {c_shape:?} (CPU kernel {cpu})"));
        }
    }

    #[test]
    fn transposes_scales_and_broadcast_c() {
        // the step graphs' forms: transB with a bias row, and the weight gradient's transA
        check(false, true, 1.0, 1.0, Some(&[9]));
        check(true, false, 1.0, 1.0, None);
        check(true, true, 0.5, 2.0, Some(&[35, 1]));
        check(false, false, 1.5, 0.25, Some(&[35, 9]));
        check(false, false, 1.0, 1.0, Some(&[]));
    }
}
