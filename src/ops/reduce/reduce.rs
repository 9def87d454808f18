//! The `ReduceMean`, `ReduceSum`, `ReduceMax`, `ReduceMin`, `ReduceL2`, `ReduceL1`, `ReduceProd`, `ReduceSumSquare`, `ReduceLogSumExp`, `ReduceLogSum`: definitions and rules.
#![allow(clippy::too_many_arguments)]
use crate::ops::util::prelude::*;

/// The `ReduceMean` op.
pub static REDUCE_MEAN: OpDef = OpDef {
    name: "ReduceMean",
    module: module_path!(),
    inputs: Arity::range(1, 2),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    attrs: &[
        AttrSpec::ints("axes", AttrCheck::Any),
        AttrSpec::flag("keepdims"),
        AttrSpec::flag("noop_with_empty_axes"),
    ],
    shape: Some(reduce_shape),
    analysis: Analysis::Rule(reduce_rule),
    arg_slots: ArgSlots::From(1),
    gradient: Gradient::Rule(reduce_grad),
    ..OpDef::BASE
};

/// The `ReduceSum` op.
pub static REDUCE_SUM: OpDef = OpDef {
    name: "ReduceSum",
    module: module_path!(),
    inputs: Arity::range(1, 2),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    attrs: &[
        AttrSpec::ints("axes", AttrCheck::Any),
        AttrSpec::flag("keepdims"),
        AttrSpec::flag("noop_with_empty_axes"),
    ],
    shape: Some(reduce_shape),
    analysis: Analysis::Rule(reduce_rule),
    arg_slots: ArgSlots::From(1),
    gradient: Gradient::Rule(reduce_grad),
    ..OpDef::BASE
};

/// The `ReduceMax` op.
pub static REDUCE_MAX: OpDef = OpDef {
    name: "ReduceMax",
    module: module_path!(),
    inputs: Arity::range(1, 2),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    attrs: &[
        AttrSpec::ints("axes", AttrCheck::Any),
        AttrSpec::flag("keepdims"),
        AttrSpec::flag("noop_with_empty_axes"),
    ],
    shape: Some(reduce_shape),
    analysis: Analysis::Rule(reduce_rule),
    arg_slots: ArgSlots::From(1),
    gradient: Gradient::Rule(extremum_grad),
    ..OpDef::BASE
};

/// The `ReduceMin` op.
pub static REDUCE_MIN: OpDef = OpDef {
    name: "ReduceMin",
    module: module_path!(),
    inputs: Arity::range(1, 2),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    attrs: &[
        AttrSpec::ints("axes", AttrCheck::Any),
        AttrSpec::flag("keepdims"),
        AttrSpec::flag("noop_with_empty_axes"),
    ],
    shape: Some(reduce_shape),
    analysis: Analysis::Rule(reduce_rule),
    arg_slots: ArgSlots::From(1),
    gradient: Gradient::Rule(extremum_grad),
    ..OpDef::BASE
};

/// The `ReduceL2` op.
pub static REDUCE_L2: OpDef = OpDef {
    name: "ReduceL2",
    module: module_path!(),
    inputs: Arity::range(1, 2),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    attrs: &[
        AttrSpec::ints("axes", AttrCheck::Any),
        AttrSpec::flag("keepdims"),
        AttrSpec::flag("noop_with_empty_axes"),
    ],
    shape: Some(reduce_shape),
    analysis: Analysis::Rule(reduce_rule),
    arg_slots: ArgSlots::From(1),
    gradient: Gradient::Rule(reduce_grad),
    ..OpDef::BASE
};

/// The `ReduceL1` op.
pub static REDUCE_L1: OpDef = OpDef {
    name: "ReduceL1",
    module: module_path!(),
    inputs: Arity::range(1, 2),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    attrs: &[
        AttrSpec::ints("axes", AttrCheck::Any),
        AttrSpec::flag("keepdims"),
        AttrSpec::flag("noop_with_empty_axes"),
    ],
    shape: Some(reduce_shape),
    analysis: Analysis::Rule(reduce_rule),
    arg_slots: ArgSlots::From(1),
    gradient: Gradient::Rule(reduce_grad),
    ..OpDef::BASE
};

/// The `ReduceProd` op.
pub static REDUCE_PROD: OpDef = OpDef {
    name: "ReduceProd",
    module: module_path!(),
    inputs: Arity::range(1, 2),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    attrs: &[
        AttrSpec::ints("axes", AttrCheck::Any),
        AttrSpec::flag("keepdims"),
        AttrSpec::flag("noop_with_empty_axes"),
    ],
    shape: Some(reduce_shape),
    analysis: Analysis::Unknown("not written: a change reaching it is unknown"),
    arg_slots: ArgSlots::From(1),
    gradient: Gradient::None("not written: an error on the gradient path"),
    ..OpDef::BASE
};

/// The `ReduceSumSquare` op.
pub static REDUCE_SUM_SQUARE: OpDef = OpDef {
    name: "ReduceSumSquare",
    module: module_path!(),
    inputs: Arity::range(1, 2),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    attrs: &[
        AttrSpec::ints("axes", AttrCheck::Any),
        AttrSpec::flag("keepdims"),
        AttrSpec::flag("noop_with_empty_axes"),
    ],
    shape: Some(reduce_shape),
    analysis: Analysis::Rule(reduce_rule),
    arg_slots: ArgSlots::From(1),
    gradient: Gradient::Rule(reduce_grad),
    ..OpDef::BASE
};

/// The `ReduceLogSumExp` op.
pub static REDUCE_LOG_SUM_EXP: OpDef = OpDef {
    name: "ReduceLogSumExp",
    module: module_path!(),
    inputs: Arity::range(1, 2),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    attrs: &[
        AttrSpec::ints("axes", AttrCheck::Any),
        AttrSpec::flag("keepdims"),
        AttrSpec::flag("noop_with_empty_axes"),
    ],
    shape: Some(reduce_shape),
    analysis: Analysis::Unknown("not written: log-sum-exp is neither homogeneous nor shift-equivariant per axis"),
    arg_slots: ArgSlots::From(1),
    gradient: Gradient::Rule(reduce_grad),
    ..OpDef::BASE
};

/// The `ReduceLogSum` op.
pub static REDUCE_LOG_SUM: OpDef = OpDef {
    name: "ReduceLogSum",
    module: module_path!(),
    inputs: Arity::range(1, 2),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    attrs: &[
        AttrSpec::ints("axes", AttrCheck::Any),
        AttrSpec::flag("keepdims"),
        AttrSpec::flag("noop_with_empty_axes"),
    ],
    shape: Some(reduce_shape),
    analysis: Analysis::Unknown("not written: a change reaching it is unknown"),
    arg_slots: ArgSlots::From(1),
    gradient: Gradient::None("not written: an error on the gradient path"),
    ..OpDef::BASE
};

pub(crate) fn reduce_rule(c: &mut Ctx, n: &Node, e: &[Option<Affine>]) -> Vec<Flow> {
    let Some(x) = e.first().and_then(Option::as_ref) else { return one(Flow::Same) };
    if e.iter().skip(1).any(Option::is_some) {
        return one(variant("reduction axes change"));
    }
    let Some(r) = c.rank(n.input(0)) else {
        return one(unknown("reduction input rank unknown"));
    };
    let Some(axes) = crate::ir::reduce_axes(c.g, n, r) else { return one(unknown("reduction axes unknown")) };
    let rm = axes.iter().fold(0, |m, &a| m | mask::bit(a));
    let keep = n.attr_int("keepdims", 1) != 0;
    let map = |m: Mask| -> Mask {
        if keep {
            return m & !rm;
        }
        let mut out = 0;
        let mut j = 0;
        for a in 0..r {
            if rm & mask::bit(a) != 0 {
                continue;
            }
            if m & mask::bit(a) != 0 {
                out |= mask::bit(j);
            }
            j += 1;
        }
        out
    };
    let op = n.op_type.as_str();
    let mut scale = None;
    if let Some(s) = &x.scale {
        if s.mask & rm != 0 {
            return one(variant(format!("{op} over a varying scale")));
        }
        let exp = if n.is(&REDUCE_SUM_SQUARE) { s.exp * 2.0 } else { s.exp };
        scale = Some(Scale { mask: map(s.mask), token: s.token, exp });
    }
    let mut shift = None;
    if let Some(t) = &x.shift {
        let linear = n.is(&REDUCE_MEAN) || n.is(&REDUCE_SUM);
        let order = (n.is(&REDUCE_MAX) || n.is(&REDUCE_MIN)) && t.mask & rm == 0 && scale.is_none();
        if !(linear || order) {
            return one(variant(format!("{op} of a shifted value")));
        }
        // Mean of a constant along axes it does not vary on is the same constant.
        let same = (n.is(&REDUCE_MEAN) || order) && t.mask & rm == 0;
        shift = Some(Shift { mask: map(t.mask & !rm), token: if same { t.token } else { c.fresh() }, sources: t.sources.clone() });
    }
    one(changed(Affine { scale, shift }))
}

/// ReduceMax, ReduceMin, GlobalMaxPool: the gradient is shared equally by the
/// elements equal to the result (PyTorch's amax/amin rule).
pub(crate) fn extremum_grad(ad: &mut Ad, n: &Node, dy: &[Option<String>], _: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    let dy = dy0!(n, dy);
    let (x, y) = (ad.name(n, 0), ad.out(n, 0));
    let pool = n.is(&GLOBAL_MAX_POOL);
    // The reduced axes; `None`: every axis.
    let axes: Option<Vec<i64>> = if pool {
        Some((2..ad.rank(n, 0)? as i64).collect())
    } else {
        match reduce_axes_of(ad, n)? {
            None => return Ok(grads(n, vec![(0, dy)])),
            Some(a) if a.is_empty() => None,
            Some(a) => Some(a),
        }
    };
    let (yk, dk) = match &axes {
        Some(a) if !pool && n.attr_int("keepdims", 1) == 0 => (ad.em.unsqueeze(&y, a), ad.em.unsqueeze(&dy, a)),
        _ => (y, dy),
    };
    let eq = ad.em.op(&EQUAL, &[&x, &yk], vec![]);
    let mask = ad.em.cast(&eq, ad.em.float);
    let count = ad.em.reduce(&REDUCE_SUM, &mask, axes.as_deref(), true);
    let share = ad.em.div(&dk, &count);
    let s = ad.em.shape(&x);
    let e = ad.em.op(&EXPAND, &[&share, &s], vec![]);
    Ok(grads(n, vec![(0, ad.em.mul(&e, &mask))]))
}

/// The sorted, normalized axes a reduction reduces: `Some([])` for all axes
/// when the rank is unknown, `None` when it is a no-op.
pub(crate) fn reduce_axes_of(ad: &Ad, n: &Node) -> Result<Option<Vec<i64>>, RewriteError> {
    let noop = n.attr_int("noop_with_empty_axes", 0) != 0;
    let raw = listed_axes(n, ad.ints_input(n, 1)).ok_or_else(|| Ad::err(n, "axes must be constant"))?;
    if raw.is_empty() {
        return Ok(if noop { None } else { Some(match ad.rank(n, 0) { Ok(r) => (0..r as i64).collect(), Err(_) => Vec::new() }) });
    }
    let r = ad.rank(n, 0)?;
    let mut a: Vec<i64> = raw.iter().map(|&a| crate::ir::norm_axis(a, r).map(|a| a as i64)).collect::<Option<_>>().ok_or_else(|| Ad::err(n, "axis out of range"))?;
    a.sort_unstable();
    a.dedup();
    Ok(Some(a))
}

pub(crate) fn reduce_grad(ad: &mut Ad, n: &Node, dy: &[Option<String>], _: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    let dy = dy0!(n, dy);
    let Some(axes) = reduce_axes_of(ad, n)? else {
        return Ok(grads(n, vec![(0, dy)]));
    };
    // Reducing every axis: the gradient (a scalar, or all ones dims) broadcasts
    // back as it is.
    let every = axes.is_empty() || ad.rank(n, 0).ok() == Some(axes.len());
    let keep = n.attr_int("keepdims", 1) != 0 || every;
    let (x, y) = (ad.name(n, 0), ad.out(n, 0));
    let dk = if keep { dy } else { ad.em.unsqueeze(&dy, &axes) };
    let s = ad.em.shape(&x);
    let e = ad.em.op(&EXPAND, &[&dk, &s], vec![]);
    let g = match n.def {
        Some(d) if *d == REDUCE_SUM => e,
        Some(d) if *d == REDUCE_MEAN => {
            let c = size_ratio(ad, &x, &y);
            ad.em.div(&e, &c)
        }
        Some(d) if *d == REDUCE_L2 => {
            let yk = if keep { y } else { ad.em.unsqueeze(&y, &axes) };
            let q = ad.em.div(&x, &yk);
            let z = ad.zero();
            let is0 = ad.em.op(&EQUAL, &[&yk, &z], vec![]);
            let safe = ad.em.where_(&is0, &z, &q);
            ad.em.mul(&e, &safe)
        }
        Some(d) if *d == REDUCE_L1 => {
            let s = ad.em.op(&SIGN, &[&x], vec![]);
            ad.em.mul(&e, &s)
        }
        Some(d) if *d == REDUCE_LOG_SUM_EXP => {
            // softmax of x over the reduced axes
            let yk = if keep { y } else { ad.em.unsqueeze(&y, &axes) };
            let d = ad.em.sub(&x, &yk);
            let p = ad.em.op(&EXP, &[&d], vec![]);
            ad.em.mul(&e, &p)
        }
        _ => {
            let x2 = ad.em.mul_scalar(&x, 2.0);
            ad.em.mul(&e, &x2)
        }
    };
    Ok(grads(n, vec![(0, g)]))
}

pub(crate) fn reduce_shape(g: &Graph, n: &Node) -> Vec<ShapeOut> {
    let op = n.op_type.as_str();
    let s = shape_of(g, n, 0).and_then(|s| {
        let keep = n.attr_int("keepdims", 1) != 0;
        let axes = reduce_axes(g, n, s.len())?;
        let mut reduced = vec![false; s.len()];
        for &a in &axes {
            if let Some(r) = reduced.get_mut(a) {
                *r = true;
            }
        }
        Some(
            s.iter()
                .enumerate()
                .filter_map(|(i, d)| if reduced[i] { keep.then_some(Dim::Known(1)) } else { Some(*d) })
                .collect(),
        )
    });
    let dtype = if op.starts_with("Arg") { Some(DType::I64) } else { first_dtype(g, n) };
    vec![(s, None, None, dtype)]
}
