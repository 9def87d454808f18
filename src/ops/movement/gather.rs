//! The `Gather`, `GatherElements`, `GatherND`: definitions and rules.
#![allow(clippy::too_many_arguments)]
use crate::ops::util::prelude::*;

// The attributes, with their ONNX defaults (checked when the IR is built).
pub(crate) const GATHER_AXIS: IntAttr = IntAttr::new("axis", AttrCheck::Any, 0);
const BATCH_DIMS: IntAttr = IntAttr::new("batch_dims", AttrCheck::AtLeast(0), 0);

/// The `Gather` op.
pub static GATHER: OpDef = OpDef {
    name: "Gather",
    module: module_path!(),
    inputs: Arity::range(2, 2),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    attrs: &[
        GATHER_AXIS.spec,
    ],
    shape: Some(gather_shape),
    analysis: Analysis::Rule(select),
    gradient: Gradient::Rule(gather_grad),
    reads: 2,
    kernel: Some(gather_kernel),
    ..OpDef::BASE
};

/// The `GatherElements` op.
pub static GATHER_ELEMENTS: OpDef = OpDef {
    name: "GatherElements",
    module: module_path!(),
    inputs: Arity::range(2, 2),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 11, until: None },
    attrs: &[
        GATHER_AXIS.spec,
    ],
    shape: Some(gather_elements_shape),
    analysis: Analysis::Unknown("not written: per-element indices move values across positions"),
    gradient: Gradient::Rule(gather_elements_grad),
    reads: 2,
    kernel: Some(gather_elements_kernel),
    ..OpDef::BASE
};

/// The `GatherND` op.
pub static GATHER_ND: OpDef = OpDef {
    name: "GatherND",
    module: module_path!(),
    inputs: Arity::range(2, 2),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 11, until: None },
    attrs: &[
        BATCH_DIMS.spec,
    ],
    shape: Some(gather_nd_shape),
    analysis: Analysis::Unknown("not written: a change reaching it is unknown"),
    gradient: Gradient::None("not written: an error on the gradient path"),
    kernel: Some(gather_nd_kernel),
    ..OpDef::BASE
};

/// Indices as int64 with negative entries wrapped by the size of `data`'s `axis`.
pub(crate) fn wrapped_indices(ad: &mut Ad, n: &Node, data: &str, axis: i64) -> String {
    let idx = ad.name(n, 1);
    let is_i64 = n.input(1).and_then(|v| ad.g.values[v].dtype) == Some(crate::ir::DType::I64);
    let idx = if is_i64 { idx } else { ad.em.cast(&idx, INT64) };
    let dim = ad.em.op(&SHAPE, &[data], vec![a_int("start", axis), a_int("end", axis + 1)]);
    // A scalar, so that scalar indices keep their rank.
    let scalar = ad.em.ints(&[]);
    let dim = ad.em.reshape(&dim, &scalar);
    let zero = ad.em.scalar_of(0.0, INT64);
    let neg = ad.em.op(&LESS, &[&idx, &zero], vec![]);
    let shifted = ad.em.add(&idx, &dim);
    ad.em.where_(&neg, &shifted, &idx)
}

pub(crate) fn gather_grad(ad: &mut Ad, n: &Node, dy: &[Option<String>], _: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    // Move the gathered axis to the front, scatter-add the gradient rows
    // there (ScatterND), and move it back.
    let dy = dy0!(n, dy);
    let r = ad.rank(n, 0)?;
    let rq = ad.rank(n, 1)?;
    let a = crate::ir::norm_axis(GATHER_AXIS.get(n), r).ok_or_else(|| Ad::err(n, "axis out of range"))?;
    let data = ad.name(n, 0);
    let idx = wrapped_indices(ad, n, &data, a as i64);
    let idx = ad.em.unsqueeze(&idx, &[-1]);
    let front: Vec<i64> = std::iter::once(a).chain((0..r).filter(|&k| k != a)).map(|k| k as i64).collect();
    let (data_t, dy_t) = if a == 0 {
        (data.clone(), dy)
    } else {
        let dt = ad.em.op(&TRANSPOSE, &[&data], vec![a_ints("perm", &front)]);
        let dperm: Vec<i64> = (a..a + rq).chain(0..a).chain(a + rq..r - 1 + rq).map(|k| k as i64).collect();
        (dt, ad.em.op(&TRANSPOSE, &[&dy], vec![a_ints("perm", &dperm)]))
    };
    let zeros = ad.em.zeros_like(&data_t);
    let g = ad.em.op(&SCATTER_ND, &[&zeros, &idx, &dy_t], vec![a_str("reduction", "add")]);
    if a == 0 {
        return Ok(grads(n, vec![(0, g)]));
    }
    let mut inv = vec![0i64; r];
    for (i, &p) in front.iter().enumerate() {
        inv[p as usize] = i as i64;
    }
    Ok(grads(n, vec![(0, ad.em.op(&TRANSPOSE, &[&g], vec![a_ints("perm", &inv)]))]))
}

pub(crate) fn gather_elements_grad(ad: &mut Ad, n: &Node, dy: &[Option<String>], _: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    let dy = dy0!(n, dy);
    let r = ad.rank(n, 0)?;
    let axis = crate::ir::norm_axis(GATHER_AXIS.get(n), r).ok_or_else(|| Ad::err(n, "axis out of range"))? as i64;
    let data = ad.name(n, 0);
    let idx = wrapped_indices(ad, n, &data, axis);
    let zeros = ad.em.zeros_like(&data);
    let g = ad.em.op(&SCATTER_ELEMENTS, &[&zeros, &idx, &dy], vec![a_int("axis", axis), a_str("reduction", "add")]);
    Ok(grads(n, vec![(0, g)]))
}

pub(crate) fn gather_shape(g: &Graph, n: &Node) -> Vec<ShapeOut> {
    let data = shape_of(g, n, 0);
    let idx = shape_of(g, n, 1);
    let s = match (data, idx) {
        (Some(d), Some(i)) => norm_axis(GATHER_AXIS.get(n), d.len()).map(|a| [&d[..a], &i[..], &d[a + 1..]].concat()),
        _ => None,
    };
    let ints = match (val(g, n, 0).and_then(|v| v.ints.clone()), ints_of(g, n, 1)) {
        (Some(xs), Some(idx)) if GATHER_AXIS.get(n) == 0 => idx
            .iter()
            .map(|&i| {
                let i = if i < 0 { i + xs.len() as i64 } else { i };
                usize::try_from(i).ok().and_then(|i| xs.get(i).copied())
            })
            .collect(),
        _ => None,
    };
    vec![(s, ints, None, first_dtype(g, n))]
}

pub(crate) fn gather_nd_shape(g: &Graph, n: &Node) -> Vec<ShapeOut> {
    let b = usize::try_from(BATCH_DIMS.get(n)).unwrap_or(0);
    let s = match (shape_of(g, n, 0), shape_of(g, n, 1)) {
        (Some(d), Some(i)) if !i.is_empty() => match i[i.len() - 1] {
            Dim::Known(k) if k >= 0 && b + (k as usize) <= d.len() => Some([&i[..i.len() - 1], &d[b + k as usize..]].concat()),
            _ => None,
        },
        _ => None,
    };
    vec![(s, None, None, first_dtype(g, n))]
}

pub(crate) fn gather_elements_shape(g: &Graph, n: &Node) -> Vec<ShapeOut> {
    vec![(shape_of(g, n, 1), None, None, first_dtype(g, n))]
}

/// The index input (slot 1) as a binding, which must hold integers.
fn index_arg(ctx: &KernelCtx, k: usize) -> Result<super::map::Arg, String> {
    let info = ctx.input(k)?;
    if info.elem != Elem::I32 {
        return Err(format!("input {k} holds {:?}; indices must be integers", info.elem));
    }
    super::map::Arg::input(ctx, k, "idx")
}

// Out-of-range indices (an error in ONNX) read nothing: the element is 0.
fn gather_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    use super::map::{flat, norm_index};
    let x = ctx.input(0)?;
    let ind = ctx.input(1)?;
    let out = ctx.output(0)?;
    let r = x.shape.len();
    let q = ind.shape.len();
    let a = super::map::axis(GATHER_AXIS.get(ctx.node), r, "axis")?;
    if out.shape.len() != r + q - 1 {
        return Err(format!("output rank {} for data rank {r} and indices rank {q}", out.shape.len()));
    }
    let dim = x.shape[a];
    let ic: Vec<String> = (a..a + q).map(|d| format!("c{d}")).collect();
    let mut body = format!("    let k0 = idx[{}];\n", flat(&ic, &ind.shape));
    body.push_str(&norm_index("k", "k0", dim));
    let mut sc: Vec<String> = (0..a).map(|d| format!("c{d}")).collect();
    sc.push(format!("u32(clamp(k, 0, {}))", dim as i64 - 1));
    sc.extend((a + q..r + q - 1).map(|d| format!("c{d}")));
    body.push_str(&format!("    let ok = k_ok;\n    let src = {};", flat(&sc, &x.shape)));
    if dim == 0 && out.numel() > 0 {
        return Err("gathering from an empty axis".into());
    }
    super::map::gather(ctx, 0, &body, Some(&out.elem.literal(0.0)), &[index_arg(ctx, 1)?])
}

fn gather_elements_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    use super::map::{flat, norm_index};
    let x = ctx.input(0)?;
    let ind = ctx.input(1)?;
    let r = x.shape.len();
    let a = super::map::axis(GATHER_AXIS.get(ctx.node), r, "axis")?;
    if ind.shape.len() != r || (0..r).any(|d| d != a && ind.shape[d] > x.shape[d]) {
        return Err(format!("indices of shape {:?} do not fit data of shape {:?}", ind.shape, x.shape));
    }
    let dim = x.shape[a];
    if dim == 0 && ind.numel() > 0 {
        return Err("gathering from an empty axis".into());
    }
    let mut body = norm_index("k", "idx[i]", dim);
    let sc: Vec<String> = (0..r).map(|d| if d == a { format!("u32(clamp(k, 0, {}))", dim as i64 - 1) } else { format!("c{d}") }).collect();
    body.push_str(&format!("    let ok = k_ok;\n    let src = {};", flat(&sc, &x.shape)));
    super::map::gather(ctx, 0, &body, Some(&ctx.output(0)?.elem.literal(0.0)), &[index_arg(ctx, 1)?])
}

fn gather_nd_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    use super::map::{flat, norm_index};
    let x = ctx.input(0)?;
    let ind = ctx.input(1)?;
    let out = ctx.output(0)?;
    let (r, q) = (x.shape.len(), ind.shape.len());
    let b = usize::try_from(BATCH_DIMS.get(ctx.node)).map_err(|_| "batch_dims is negative")?;
    let m = *ind.shape.last().ok_or("indices of rank 0")?;
    if q < 1 || b >= q || b + m > r || (0..b).any(|d| ind.shape[d] != x.shape[d]) {
        return Err(format!("indices of shape {:?} with batch_dims {b} do not fit data of shape {:?}", ind.shape, x.shape));
    }
    if out.shape.len() != q - 1 + r - b - m {
        return Err(format!("output rank {} does not follow from the data and indices", out.shape.len()));
    }
    // the index tuple of this output element starts at its leading q-1 coordinates
    let lead: Vec<String> = (0..q - 1).map(|d| format!("c{d}")).collect();
    let mut body = format!("    let base = ({}) * {m}u;\n", flat(&lead, &ind.shape[..q - 1]));
    let mut sc: Vec<String> = (0..b).map(|d| format!("c{d}")).collect();
    let mut ok = vec!["true".to_string()];
    for k in 0..m {
        let dim = x.shape[b + k];
        if dim == 0 && out.numel() > 0 {
            return Err(format!("gathering from the empty axis {}", b + k));
        }
        body.push_str(&norm_index(&format!("k{k}"), &format!("idx[base + {k}u]"), dim));
        ok.push(format!("k{k}_ok"));
        sc.push(format!("u32(clamp(k{k}, 0, {}))", dim as i64 - 1));
    }
    sc.extend((q - 1..out.shape.len()).map(|d| format!("c{d}")));
    body.push_str(&format!("    let ok = {};\n    let src = {};", ok.join(" && "), flat(&sc, &x.shape)));
    super::map::gather(ctx, 0, &body, Some(&out.elem.literal(0.0)), &[index_arg(ctx, 1)?])
}
