//! The `ReduceMean`, `ReduceSum`, `ReduceMax`, `ReduceMin`, `ReduceL2`, `ReduceL1`, `ReduceProd`, `ReduceSumSquare`, `ReduceLogSumExp`, `ReduceLogSum`: definitions and rules.
#![allow(clippy::too_many_arguments)]
use super::kernel as kern_reduce;
use crate::ops::util::prelude::*;

/// The `ReduceMean` op.
pub static REDUCE_MEAN: OpDef = OpDef {
    name: "ReduceMean",
    module: module_path!(),
    inputs: Arity::range(1, 2),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    attrs: REDUCE_ATTRS,
    shape: Some(reduce_shape),
    analysis: Analysis::Rule(reduce_rule),
    arg_slots: ArgSlots::From(1),
    gradient: Gradient::Rule(reduce_grad),
    kernel: Some(reduce_mean_kernel),
    ..OpDef::BASE
};

/// The `ReduceSum` op.
pub static REDUCE_SUM: OpDef = OpDef {
    name: "ReduceSum",
    module: module_path!(),
    inputs: Arity::range(1, 2),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    attrs: REDUCE_ATTRS,
    shape: Some(reduce_shape),
    analysis: Analysis::Rule(reduce_rule),
    arg_slots: ArgSlots::From(1),
    gradient: Gradient::Rule(reduce_grad),
    kernel: Some(reduce_sum_kernel),
    ..OpDef::BASE
};

/// The `ReduceMax` op.
pub static REDUCE_MAX: OpDef = OpDef {
    name: "ReduceMax",
    module: module_path!(),
    inputs: Arity::range(1, 2),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    attrs: REDUCE_ATTRS,
    shape: Some(reduce_shape),
    analysis: Analysis::Rule(reduce_rule),
    arg_slots: ArgSlots::From(1),
    gradient: Gradient::Rule(extremum_grad),
    kernel: Some(reduce_max_kernel),
    ..OpDef::BASE
};

/// The `ReduceMin` op.
pub static REDUCE_MIN: OpDef = OpDef {
    name: "ReduceMin",
    module: module_path!(),
    inputs: Arity::range(1, 2),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    attrs: REDUCE_ATTRS,
    shape: Some(reduce_shape),
    analysis: Analysis::Rule(reduce_rule),
    arg_slots: ArgSlots::From(1),
    gradient: Gradient::Rule(extremum_grad),
    kernel: Some(reduce_min_kernel),
    ..OpDef::BASE
};

/// The `ReduceL2` op.
pub static REDUCE_L2: OpDef = OpDef {
    name: "ReduceL2",
    module: module_path!(),
    inputs: Arity::range(1, 2),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    attrs: REDUCE_ATTRS,
    shape: Some(reduce_shape),
    analysis: Analysis::Rule(reduce_rule),
    arg_slots: ArgSlots::From(1),
    gradient: Gradient::Rule(reduce_grad),
    kernel: Some(reduce_l2_kernel),
    ..OpDef::BASE
};

/// The `ReduceL1` op.
pub static REDUCE_L1: OpDef = OpDef {
    name: "ReduceL1",
    module: module_path!(),
    inputs: Arity::range(1, 2),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    attrs: REDUCE_ATTRS,
    shape: Some(reduce_shape),
    analysis: Analysis::Rule(reduce_rule),
    arg_slots: ArgSlots::From(1),
    gradient: Gradient::Rule(reduce_grad),
    kernel: Some(reduce_l1_kernel),
    ..OpDef::BASE
};

/// The `ReduceProd` op.
pub static REDUCE_PROD: OpDef = OpDef {
    name: "ReduceProd",
    module: module_path!(),
    inputs: Arity::range(1, 2),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    attrs: REDUCE_ATTRS,
    shape: Some(reduce_shape),
    analysis: Analysis::Unknown("not written: a change reaching it is unknown"),
    arg_slots: ArgSlots::From(1),
    gradient: Gradient::None("not written: an error on the gradient path"),
    kernel: Some(reduce_prod_kernel),
    ..OpDef::BASE
};

/// The `ReduceSumSquare` op.
pub static REDUCE_SUM_SQUARE: OpDef = OpDef {
    name: "ReduceSumSquare",
    module: module_path!(),
    inputs: Arity::range(1, 2),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    attrs: REDUCE_ATTRS,
    shape: Some(reduce_shape),
    analysis: Analysis::Rule(reduce_rule),
    arg_slots: ArgSlots::From(1),
    gradient: Gradient::Rule(reduce_grad),
    kernel: Some(reduce_sum_square_kernel),
    ..OpDef::BASE
};

/// The `ReduceLogSumExp` op.
pub static REDUCE_LOG_SUM_EXP: OpDef = OpDef {
    name: "ReduceLogSumExp",
    module: module_path!(),
    inputs: Arity::range(1, 2),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    attrs: REDUCE_ATTRS,
    shape: Some(reduce_shape),
    analysis: Analysis::Unknown("not written: log-sum-exp is neither homogeneous nor shift-equivariant per axis"),
    arg_slots: ArgSlots::From(1),
    gradient: Gradient::Rule(reduce_grad),
    kernel: Some(reduce_log_sum_exp_kernel),
    ..OpDef::BASE
};

/// The `ReduceLogSum` op.
pub static REDUCE_LOG_SUM: OpDef = OpDef {
    name: "ReduceLogSum",
    module: module_path!(),
    inputs: Arity::range(1, 2),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    attrs: REDUCE_ATTRS,
    shape: Some(reduce_shape),
    analysis: Analysis::Unknown("not written: a change reaching it is unknown"),
    arg_slots: ArgSlots::From(1),
    gradient: Gradient::None("not written: an error on the gradient path"),
    kernel: Some(reduce_log_sum_kernel),
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
    let keep = KEEPDIMS.on(n);
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
        Some(a) if !pool && !KEEPDIMS.on(n) => (ad.em.unsqueeze(&y, a), ad.em.unsqueeze(&dy, a)),
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
    let noop = NOOP_WITH_EMPTY_AXES.on(n);
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
    let keep = KEEPDIMS.on(n) || every;
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
        let keep = KEEPDIMS.on(n);
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

/// The reductions' device arithmetic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reduce {
    Sum,
    Mean,
    Max,
    Min,
    Prod,
    L1,
    L2,
    SumSquare,
    LogSum,
    LogSumExp,
}

/// The axes a kernel reduces, normalized, sorted and deduplicated: the
/// attribute (old opsets), the host-known input 1 (new), or every axis
/// (none listed, unless `noop_with_empty_axes`).
pub(crate) fn kernel_axes(ctx: &KernelCtx, rank: usize) -> Result<Vec<usize>, String> {
    let n = ctx.node;
    let listed: Vec<i64> = match REDUCE_AXES.get(n) {
        Some(a) => a.to_vec(),
        None if ctx.has_input(1) => ctx.host_ints(1).map_err(|e| format!("the axes ({e})"))?,
        None => Vec::new(),
    };
    if listed.is_empty() {
        return Ok(if NOOP_WITH_EMPTY_AXES.on(n) { Vec::new() } else { (0..rank).collect() });
    }
    let mut axes = listed
        .iter()
        .map(|&a| crate::ir::norm_axis(a, rank).ok_or_else(|| format!("axis {a} is out of range for an input of rank {rank}")))
        .collect::<Result<Vec<_>, _>>()?;
    axes.sort_unstable();
    axes.dedup();
    Ok(axes)
}

/// The accumulator of a reduction over `count` elements of type `elem`.
fn combine(op: Reduce, elem: Elem, count: usize) -> Result<kern_reduce::Combine, String> {
    use kern_reduce::Combine as C;
    let neg_inf = "bitcast<f32>(0xff800000u)".to_string();
    let pos_inf = "bitcast<f32>(0x7f800000u)".to_string();
    let nan = "bitcast<f32>(0x7fc00000u)";
    Ok(match (elem, op) {
        (Elem::F32, Reduce::Sum) => C::compensated("x", "{s}"),
        (Elem::F32, Reduce::Mean) => {
            let fin = if count == 0 { nan.to_string() } else { format!("{{s}} / {}", kern::f32_literal(count as f32)) };
            C::compensated("x", &fin)
        }
        (Elem::F32, Reduce::Max) => C::scalar(elem, neg_inf, "x", "max_nan(a, b)", "a"),
        (Elem::F32, Reduce::Min) => C::scalar(elem, pos_inf, "x", "min_nan(a, b)", "a"),
        (Elem::F32, Reduce::Prod) => C::scalar(elem, "1.0".into(), "x", "a * b", "a"),
        (Elem::F32, Reduce::L1) => C::compensated("abs(x)", "{s}"),
        (Elem::F32, Reduce::L2) => C::compensated("x * x", "sqrt({s})"),
        (Elem::F32, Reduce::SumSquare) => C::compensated("x * x", "{s}"),
        (Elem::F32, Reduce::LogSum) => C::scalar(elem, "0.0".into(), "x", "a + b", "log_f(a)"),
        // The sum of exp(x - m) over the reduced elements, m their largest
        // finite value (input `m`, from the max pass).
        (Elem::F32, Reduce::LogSumExp) => C::scalar(elem, "0.0".into(), "exp(x - m[k])", "a + b", "log_f(a) + m[k]"),
        (Elem::I32, Reduce::Sum | Reduce::Mean | Reduce::Prod | Reduce::L1 | Reduce::L2 | Reduce::SumSquare | Reduce::Max | Reduce::Min) => {
            let fin = match op {
                // numpy's mean cast back to the integer type truncates toward zero, as i32 division does
                Reduce::Mean if count > 0 => format!("a / {}i", count.min(i32::MAX as usize)),
                Reduce::Mean => "0i".into(),
                Reduce::L2 => "i32(sqrt(f32(a)))".into(),
                _ => "a".into(),
            };
            let (init, map, comb) = match op {
                Reduce::Prod => ("1i", "x", "a * b"),
                Reduce::Max => ("bitcast<i32>(0x80000000u)", "x", "max(a, b)"),
                Reduce::Min => ("i32(2147483647)", "x", "min(a, b)"),
                Reduce::L1 => ("0i", "abs(x)", "a + b"),
                Reduce::L2 | Reduce::SumSquare => ("0i", "x * x", "a + b"),
                _ => ("0i", "x", "a + b"),
            };
            C::scalar(elem, init.into(), map, comb, &fin)
        }
        (Elem::Bool, Reduce::Max) => C::scalar(elem, "0u".into(), "x", "max(a, b)", "a"),
        (Elem::Bool, Reduce::Min) => C::scalar(elem, "1u".into(), "x", "min(a, b)", "a"),
        (e, op) => return Err(format!("{op:?} of {e:?} elements is not computed on the device (float32{})", if matches!(op, Reduce::LogSum | Reduce::LogSumExp) { "" } else { " and integers" })),
    })
}


fn reduce_kernel(ctx: &KernelCtx, op: Reduce) -> Result<Lowered, String> {
    let x = ctx.input(0)?;
    let out = ctx.output(0)?;
    if out.elem != x.elem {
        return Err(format!("the output is {:?} but the input {:?}", out.elem, x.elem));
    }
    let axes = kernel_axes(ctx, x.shape.len())?;
    let geo = kern_reduce::Geometry::new(&x.shape, &axes);
    if geo.outputs != out.numel() {
        return Err(format!("reducing {:?} over axes {axes:?} gives {} elements, but the output has shape {:?}", x.shape, geo.outputs, out.shape));
    }
    let comb = combine(op, x.elem, geo.reduced)?;
    // One element per output: the identity for these (not for L1, L2, ...: |x|, x*x).
    if geo.reduced == 1 && matches!(op, Reduce::Sum | Reduce::Mean | Reduce::Max | Reduce::Min | Reduce::Prod) {
        return Ok(Lowered::alias(0));
    }
    let mut low = Lowered::default();
    let dst = kern_reduce::Dst { bind: kern::Bind::Output(0), elem: out.elem };
    if op == Reduce::LogSumExp {
        // exp(x - max) cannot overflow; the max skips infinities so that an
        // infinite element still gives an infinite result, and is 0 when
        // nothing is finite (log of a sum of zeros: -inf).
        low.scratch.push((Elem::F32, geo.outputs.max(1)));
        let m = kern::Bind::Scratch(low.scratch.len() - 1);
        let max = kern_reduce::Combine::scalar(Elem::F32, "bitcast<f32>(0xff800000u)".into(), "select(x, bitcast<f32>(0xff800000u), is_inf_f(x))", "max_nan(a, b)", "select(a, 0.0, is_inf_f(a))");
        kern_reduce::lower(ctx, &geo, x.elem, &max, kern_reduce::Dst { bind: m, elem: Elem::F32 }, &[], &mut low, "max")?;
        kern_reduce::lower(ctx, &geo, x.elem, &comb, dst, &[("m", Elem::F32, m)], &mut low, "")?;
    } else {
        kern_reduce::lower(ctx, &geo, x.elem, &comb, dst, &[], &mut low, "")?;
    }
    Ok(low)
}

fn reduce_sum_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    reduce_kernel(ctx, Reduce::Sum)
}

fn reduce_mean_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    reduce_kernel(ctx, Reduce::Mean)
}

fn reduce_max_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    reduce_kernel(ctx, Reduce::Max)
}

fn reduce_min_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    reduce_kernel(ctx, Reduce::Min)
}

fn reduce_prod_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    reduce_kernel(ctx, Reduce::Prod)
}

fn reduce_l1_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    reduce_kernel(ctx, Reduce::L1)
}

fn reduce_l2_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    reduce_kernel(ctx, Reduce::L2)
}

fn reduce_sum_square_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    reduce_kernel(ctx, Reduce::SumSquare)
}

fn reduce_log_sum_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    reduce_kernel(ctx, Reduce::LogSum)
}

fn reduce_log_sum_exp_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    reduce_kernel(ctx, Reduce::LogSumExp)
}
