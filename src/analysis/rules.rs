//! One rule per ONNX operator: how a change of the inputs (an [`Affine`]
//! effect, or none) becomes a change of the outputs. Rules are grouped by op
//! family; [`rule_for`] is the table. An op without a rule makes the analysis
//! answer `unknown` for every parameter whose change reaches it.
//!
//! Every rule is conservative: when it cannot prove the precise effect it
//! answers [`Flow::Variant`] (or `Unknown`), never a weaker change.
use super::effect::{mask, Affine, Flow, Mask, Scale, Shift};
use crate::ir::{Dim, Graph, Node, ValueId};
use crate::ops::*;

/// Constants at most this large (in magnitude) count as numerical epsilons.
pub const EPSILON_MAX: f64 = 1e-3;

/// What rules may consult: the graph, fresh tokens, parameter provenance.
pub struct Ctx<'a> {
    /// The graph.
    pub g: &'a Graph,
    /// Next fresh token.
    pub next_token: u32,
    /// For constant values: the trainable parameters they derive from.
    pub const_params: &'a [Vec<ValueId>],
}

impl Ctx<'_> {
    pub(crate) fn fresh(&mut self) -> u32 {
        self.next_token += 1;
        self.next_token
    }

    pub(crate) fn rank(&self, v: Option<ValueId>) -> Option<usize> {
        v.and_then(|v| self.g.values[v].rank())
    }

    pub(crate) fn dims(&self, v: Option<ValueId>) -> Option<&[Dim]> {
        v.and_then(|v| self.g.values[v].shape.as_deref())
    }

    pub(crate) fn is_const(&self, v: Option<ValueId>) -> bool {
        v.is_some_and(|v| self.g.values[v].is_const)
    }

    /// Axes of a broadcast result (rank `out_rank`) along which `v` may vary.
    pub(crate) fn const_mask(&self, v: ValueId, out_rank: usize) -> Mask {
        match &self.g.values[v].shape {
            Some(dims) => {
                let m = dims.iter().enumerate().fold(0, |m, (i, d)| if *d == Dim::Known(1) { m } else { m | mask::bit(i) });
                mask::align(m, dims.len(), out_rank) & mask::below(out_rank)
            }
            None => mask::below(out_rank),
        }
    }
}

/// A rule: input effects (index-aligned with `node.inputs`) to output flows.
pub type Rule = fn(&mut Ctx, &Node, &[Option<Affine>]) -> Vec<Flow>;

pub(crate) fn one(f: Flow) -> Vec<Flow> {
    vec![f]
}

pub(crate) fn changed(a: Affine) -> Flow {
    if a.is_identity() {
        Flow::Same
    } else {
        Flow::Changed(a)
    }
}

pub(crate) fn variant(why: impl Into<String>) -> Flow {
    Flow::Variant(why.into())
}

pub(crate) fn unknown(why: impl Into<String>) -> Flow {
    Flow::Unknown(why.into())
}

/// Only input 0 carries data; any other changed input is unsupported.
pub(crate) fn data_only<'e>(n: &Node, e: &'e [Option<Affine>]) -> Result<Option<&'e Affine>, Flow> {
    if e.iter().skip(1).any(Option::is_some) {
        return Err(variant(format!("{} parameter input changes", n.op_type)));
    }
    Ok(e.first().and_then(Option::as_ref))
}

// ---------------------------------------------------------------- normalizers

/// Removes the change of `x` when scale and shift vary only within `allowed`
/// (the axes over which the normalization keeps separate statistics).
pub(crate) fn normalize_input(x: Option<&Affine>, allowed_scale: Mask, allowed_shift: Option<Mask>, what: &str) -> Result<bool, Flow> {
    let Some(x) = x else { return Ok(false) };
    if let Some(s) = &x.scale {
        if !mask::within(s.mask, allowed_scale) {
            return Err(variant(format!("{what} keeps a scale that varies along axes {:?}", mask::axes(s.mask & !allowed_scale))));
        }
    }
    if let Some(t) = &x.shift {
        match allowed_shift {
            None => return Err(variant(format!("{what} does not remove an additive change"))),
            Some(m) if !mask::within(t.mask, m) => {
                return Err(variant(format!("{what} keeps a shift that varies along axes {:?}", mask::axes(t.mask & !m))))
            }
            _ => {}
        }
    }
    Ok(true)
}

/// The affine tail `y = x̂ · gamma + beta` of a normalization, for changed
/// gamma/beta; `axis_of` maps the parameter's axis mask to the output's.
pub(crate) fn affine_tail(
    c: &mut Ctx,
    n: &Node,
    e: &[Option<Affine>],
    gamma: usize,
    beta: Option<usize>,
    out_rank: usize,
    map: &dyn Fn(&mut Ctx, Mask, usize) -> Option<(Mask, bool)>,
    removed: bool,
) -> Flow {
    let eg = e.get(gamma).and_then(Option::as_ref);
    let eb = beta.and_then(|b| e.get(b)).and_then(Option::as_ref);
    if eg.is_none() && eb.is_none() {
        return if removed { Flow::Normalized } else { Flow::Same };
    }
    let (gamma_rank, beta_rank) = (c.rank(n.input(gamma)), beta.and_then(|b| c.rank(n.input(b))));
    // gamma' = S gamma (+T: data-dependent after the product)
    let mut scale = None;
    if let Some(eg) = eg {
        if eg.shift.is_some() {
            return variant(format!("{}: additive change of the scale input multiplies normalized data", n.op_type));
        }
        let Some(s) = &eg.scale else { return Flow::Same };
        let Some(r) = gamma_rank else { return unknown("rank of the scale input unknown") };
        let Some((m, keep)) = map(c, s.mask, r) else { return variant("scale input layout not tracked") };
        let token = if keep || s.mask == 0 { s.token } else { c.fresh() };
        scale = Some(Scale { mask: m, token, exp: s.exp });
    }
    let (Some(b), Some(br)) = (beta.and_then(|b| n.input(b)), beta_rank) else {
        return changed(Affine { scale, shift: None });
    };
    // Treat beta as a constant added term, mapped into output axes.
    let beta_mask = |c: &mut Ctx, m: Mask| map(c, m, br).map(|x| x.0);
    let full = c.const_mask(b, br);
    let beta_out = beta_mask(c, full).unwrap_or(mask::below(out_rank));
    let term_scale = match eb {
        Some(eb) => match &eb.scale {
            Some(s) => match map(c, s.mask, br) {
                Some((m, keep)) => Some(Scale { mask: m, token: if keep || s.mask == 0 { s.token } else { u32::MAX }, exp: s.exp }),
                None => return variant("bias input layout not tracked"),
            },
            None => None,
        },
        None => None,
    };
    let beta_shift = eb.and_then(|eb| eb.shift.as_ref()).map(|t| (beta_mask(c, t.mask).unwrap_or(beta_out), t.sources.clone()));
    match (&scale, &term_scale) {
        (Some(a), Some(b)) if a == b && beta_shift.is_none() => changed(Affine { scale, shift: None }),
        _ => {
            // beta' - S beta, i.e. the whole constant term becomes a shift
            let mut sources = Vec::new();
            let mut m = 0;
            if scale.is_some() || eb.is_some() {
                m |= beta_out;
                if eb.is_none() {
                    sources.extend(c.const_params[b].iter().copied());
                }
            }
            if let Some((tm, ts)) = beta_shift {
                m |= tm;
                sources.extend(ts);
            }
            if let Some(s) = &scale {
                m |= s.mask;
            }
            let shift = Shift { mask: m, token: c.fresh(), sources };
            changed(Affine { scale, shift: Some(shift) })
        }
    }
}

pub(crate) fn per_channel_map(_: &mut Ctx, m: Mask, _rank: usize) -> Option<(Mask, bool)> {
    // parameter [C] -> output axis 1
    Some((if m & 1 != 0 { mask::bit(1) } else { 0 }, true))
}

/// Maps a parameter shaped like the trailing (normalized) dims into the output.
pub(crate) fn trailing_map(out_rank: usize) -> impl Fn(&mut Ctx, Mask, usize) -> Option<(Mask, bool)> {
    move |_, m, r| Some((mask::align(m, r, out_rank), true))
}

// ------------------------------------------------------------ elementwise

pub(crate) fn homogeneous(_: &mut Ctx, n: &Node, e: &[Option<Affine>]) -> Vec<Flow> {
    let x = match data_only(n, e) {
        Ok(x) => x,
        Err(f) => return one(f),
    };
    match x {
        None => one(Flow::Same),
        Some(x) if x.shift.is_some() => one(variant(format!("{} of a shifted value", n.op_type))),
        Some(x) => one(changed(x.clone())),
    }
}

pub(crate) fn identity(_: &mut Ctx, n: &Node, e: &[Option<Affine>]) -> Vec<Flow> {
    let x = match data_only(n, e) {
        Ok(x) => x,
        Err(f) => return one(f),
    };
    let mut flows = vec![Flow::Same; n.outputs.len().max(1)];
    if let Some(x) = x {
        // Dropout in training multiplies by a random mask: a scale passes, a shift does not.
        if n.is(&DROPOUT) && x.shift.is_some() && dropout_may_train(n) {
            flows[0] = variant("Dropout (training) of a shifted value");
        } else {
            flows[0] = changed(x.clone());
        }
    }
    flows
}

pub(crate) fn dropout_may_train(n: &Node) -> bool {
    n.input(2).is_some() || n.outputs.iter().skip(1).any(Option::is_some)
}

/// An op that commutes with a common positive scale of all its inputs.
pub(crate) fn same_scale_all(n: &Node, e: &[Option<Affine>], what: &str) -> Vec<Flow> {
    let changed_all: Vec<&Affine> = e.iter().flatten().collect();
    if changed_all.is_empty() {
        return one(Flow::Same);
    }
    if changed_all.len() == n.inputs.len() && changed_all.iter().all(|a| a.shift.is_none() && a.scale == changed_all[0].scale) {
        return one(changed(changed_all[0].clone()));
    }
    one(variant(format!("{what} of differently changed inputs")))
}

pub(crate) fn nonlinear(_: &mut Ctx, n: &Node, e: &[Option<Affine>]) -> Vec<Flow> {
    if e.iter().any(Option::is_some) {
        vec![variant(format!("{} is not positively homogeneous", n.op_type)); n.outputs.len().max(1)]
    } else {
        vec![Flow::Same; n.outputs.len().max(1)]
    }
}

pub(crate) fn power(_: &mut Ctx, n: &Node, e: &[Option<Affine>], p: f64) -> Vec<Flow> {
    match e.first().and_then(Option::as_ref) {
        None => one(Flow::Same),
        Some(x) if x.shift.is_some() => one(variant(format!("{} of a shifted value", n.op_type))),
        Some(x) => {
            let Some(s) = &x.scale else { return one(Flow::Same) };
            let exp = s.exp * p;
            one(if exp == 0.0 { Flow::Same } else { changed(Affine::scaled(Scale { exp, ..s.clone() })) })
        }
    }
}

// ------------------------------------------------------------ arithmetic

/// One operand of a sum: its value, effect, and sign.
pub(crate) struct Term<'a> {
    pub(crate) value: Option<ValueId>,
    /// Rank of the term (for aligning masks to the output).
    pub(crate) rank: Option<usize>,
    pub(crate) effect: Option<&'a Affine>,
    pub(crate) negate: bool,
}

/// `sum(±term)` under broadcasting: the common scale must be shared by every
/// data-dependent term; constant terms only contribute shifts.
pub(crate) fn combine_sum(c: &mut Ctx, out_rank: Option<usize>, terms: &[Term]) -> Flow {
    if terms.iter().all(|t| t.effect.is_none()) {
        return Flow::Same;
    }
    let align = |t: &Term, m: Mask| -> Option<Mask> { Some(mask::align(m, t.rank?, out_rank?)) };
    // The scale of the data-dependent terms.
    let mut common: Option<Option<Scale>> = None;
    for t in terms.iter().filter(|t| !c.is_const(t.value)) {
        let s = match t.effect.and_then(|e| e.scale.as_ref()) {
            None => None,
            Some(s) => match align(t, s.mask) {
                Some(m) => Some(Scale { mask: m, ..s.clone() }),
                None if s.mask == 0 => Some(s.clone()),
                None => return Flow::Unknown("rank unknown at a sum".into()),
            },
        };
        match &common {
            None => common = Some(s),
            Some(prev) if *prev == s => {}
            Some(_) => return variant("sum of data terms that change differently (e.g. a residual add)"),
        }
    }
    let common = common.flatten();
    let Some(out_rank) = out_rank.or(if common.as_ref().is_none_or(|s| s.mask == 0) { Some(0) } else { None }) else {
        return Flow::Unknown("rank unknown at a sum".into());
    };
    let mut shifts: Vec<(Mask, u32, Vec<ValueId>, bool)> = Vec::new();
    for t in terms {
        let v = t.value;
        let is_const = c.is_const(v);
        let tscale = t.effect.and_then(|e| e.scale.as_ref()).map(|s| Scale { mask: align(t, s.mask).unwrap_or(s.mask), ..s.clone() });
        if let Some(sh) = t.effect.and_then(|e| e.shift.as_ref()) {
            let m = align(t, sh.mask).unwrap_or(mask::below(out_rank));
            shifts.push((m, sh.token, sh.sources.clone(), t.negate));
        }
        if !is_const || tscale == common {
            continue;
        }
        // A constant whose scale differs from the common one: (S_t - S) * c is a shift.
        let cm = v.map(|v| c.const_mask(v, out_rank)).unwrap_or(mask::below(out_rank));
        let mut m = cm;
        if let Some(s) = &common {
            m |= s.mask;
        }
        let sources = if t.effect.is_none() { v.map(|v| c.const_params[v].clone()).unwrap_or_default() } else { Vec::new() };
        shifts.push((m, u32::MAX, sources, t.negate));
    }
    let shift = match shifts.len() {
        0 => None,
        1 if !shifts[0].3 && shifts[0].1 != u32::MAX => {
            let (m, token, sources, _) = shifts.pop().unwrap_or_default();
            Some(Shift { mask: m, token, sources })
        }
        _ => {
            let mut sources: Vec<ValueId> = shifts.iter().flat_map(|s| s.2.iter().copied()).collect();
            sources.sort_unstable();
            sources.dedup();
            Some(Shift { mask: shifts.iter().fold(0, |m, s| m | s.0), token: c.fresh(), sources })
        }
    };
    changed(Affine { scale: common, shift })
}

/// True when every consumer of the node's output takes a root or reciprocal of it.
pub(crate) fn feeds_root(c: &Ctx, n: &Node) -> bool {
    let Some(out) = n.output(0) else { return false };
    let consumers = &c.g.values[out].consumers;
    !consumers.is_empty()
        && consumers.iter().all(|&(id, slot)| {
            let m = &c.g.nodes[id];
            slot == 0
                && (m.is(&SQRT)
                    || m.is(&RECIPROCAL)
                    || (m.is(&POW) && m.input(1).and_then(|v| c.g.values[v].scalar).is_some_and(|p| p == 0.5 || p == -0.5)))
        })
}

/// Product of two pure scales (or one), with exponents added (`sign` = -1 divides).
pub(crate) fn product_scale(a: Option<&Scale>, b: Option<&Scale>, sign: f64, a_rank: Option<usize>, b_rank: Option<usize>, out_rank: Option<usize>) -> Result<Option<Scale>, Flow> {
    let align = |s: &Scale, r: Option<usize>| -> Result<Scale, Flow> {
        if s.mask == 0 {
            return Ok(s.clone());
        }
        match (r, out_rank) {
            (Some(r), Some(o)) => Ok(Scale { mask: mask::align(s.mask, r, o), ..s.clone() }),
            _ => Err(Flow::Unknown("rank unknown at a product".into())),
        }
    };
    let a = a.map(|s| align(s, a_rank)).transpose()?;
    let b = b.map(|s| align(s, b_rank)).transpose()?.map(|s| Scale { exp: s.exp * sign, ..s });
    Ok(match (a, b) {
        (None, None) => None,
        (Some(s), None) | (None, Some(s)) => Some(s),
        (Some(x), Some(y)) if x.mask == y.mask && x.token == y.token => {
            let exp = x.exp + y.exp;
            (exp != 0.0).then_some(Scale { exp, ..x })
        }
        _ => return Err(variant("product of differently scaled values")),
    })
}

/// Folds a linear layer's weight factor into the data side's factor. `out` is the
/// weight factor's mask in output axes, or `None` when it varies along an axis
/// the layer sums over (then `why` is the verdict); `keep` is false where output
/// entries come from the weight's entries in another order.
pub(crate) fn times_weight(c: &mut Ctx, data: Option<Scale>, w: &Scale, out: Option<Mask>, keep: bool, rank: usize, why: &str) -> Result<Option<Scale>, Flow> {
    let Some(m) = out else { return Err(variant(why)) };
    let token = if keep || w.mask == 0 { w.token } else { c.fresh() };
    product_scale(data.as_ref(), Some(&Scale { mask: m, token, exp: w.exp }), 1.0, Some(rank), Some(rank), Some(rank))
}

pub(crate) fn mul_div(c: &mut Ctx, n: &Node, e: &[Option<Affine>], sign: f64) -> Flow {
    let (ea, eb) = (e[0].as_ref(), e.get(1).and_then(Option::as_ref));
    if ea.is_none() && eb.is_none() {
        return Flow::Same;
    }
    let out_rank = c.rank(n.output(0));
    let (ra, rb) = (c.rank(n.input(0)), c.rank(n.input(1)));
    if eb.is_some_and(|b| b.shift.is_some()) {
        return variant(format!("{} by an additively changed value", n.op_type));
    }
    let scale = match product_scale(ea.and_then(|a| a.scale.as_ref()), eb.and_then(|b| b.scale.as_ref()), sign, ra, rb, out_rank) {
        Ok(s) => s,
        Err(f) => return f,
    };
    let shift = match ea.and_then(|a| a.shift.as_ref()) {
        None => None,
        Some(t) => {
            // T * b stays data-independent only when b is a constant.
            if eb.is_some() || !c.is_const(n.input(1)) {
                return variant(format!("{} of a shifted value by data", n.op_type));
            }
            let Some(o) = out_rank else { return Flow::Unknown("rank unknown at a product".into()) };
            let tm = ra.map(|r| mask::align(t.mask, r, o)).unwrap_or(mask::below(o));
            let bm = n.input(1).map(|v| c.const_mask(v, o)).unwrap_or(0);
            Some(Shift { mask: tm | bm, token: c.fresh(), sources: t.sources.clone() })
        }
    };
    if scale.is_none() && shift.is_none() {
        // Both sides carried the same factor and it cancelled (weight normalization,
        // weight standardization, decomposed layer norm): evidence of invariance.
        return Flow::Normalized;
    }
    changed(Affine { scale, shift })
}

// ------------------------------------------------------------ linear layers

/// Adds a bias input (shape `[C]` along `map`) to the linear part's effect.
pub(crate) fn with_bias(c: &mut Ctx, n: &Node, e: &[Option<Affine>], bias: usize, r: usize, linear: Affine, map: &dyn Fn(Mask) -> Mask) -> Vec<Flow> {
    let Some(b) = n.input(bias) else { return one(changed(linear)) };
    let eb = e.get(bias).and_then(Option::as_ref);
    if eb.is_none() && linear.is_identity() {
        return one(Flow::Same);
    }
    let bm = map(c.const_mask(b, 1));
    let mapped = eb.map(|x| Affine {
        scale: x.scale.as_ref().map(|s| Scale { mask: map(s.mask), ..s.clone() }),
        shift: x.shift.as_ref().map(|t| Shift { mask: map(t.mask), ..t.clone() }),
    });
    // The linear part is data; the bias a constant with its mask in output axes.
    if let Some(bs) = mapped.as_ref().and_then(|m| m.scale.clone()) {
        if linear.scale.as_ref() == Some(&bs) {
            let shift = merge_shifts(c, linear.shift.clone(), mapped.and_then(|m| m.shift));
            return one(changed(Affine { scale: linear.scale, shift }));
        }
    }
    let mut m = bm;
    let mut sources = Vec::new();
    if mapped.is_none() {
        sources.extend(c.const_params[b].iter().copied());
        if linear.scale.is_none() {
            return one(changed(linear));
        }
    }
    if let Some(s) = &linear.scale {
        m |= s.mask;
    }
    if let Some(t) = mapped.as_ref().and_then(|x| x.shift.as_ref()) {
        m |= t.mask;
        sources.extend(t.sources.iter().copied());
    }
    let extra = Shift { mask: m & mask::below(r), token: c.fresh(), sources };
    let shift = merge_shifts(c, linear.shift.clone(), Some(extra));
    one(changed(Affine { scale: linear.scale, shift }))
}

pub(crate) fn merge_shifts(c: &mut Ctx, a: Option<Shift>, b: Option<Shift>) -> Option<Shift> {
    match (a, b) {
        (None, x) | (x, None) => x,
        (Some(a), Some(b)) => {
            let mut sources = a.sources;
            sources.extend(b.sources);
            sources.sort_unstable();
            sources.dedup();
            Some(Shift { mask: a.mask | b.mask, token: c.fresh(), sources })
        }
    }
}

// ------------------------------------------------------------ pooling & reductions

// ------------------------------------------------------------ layout

/// Applies an axis map to an effect; `keep_token` is false where entries may be reordered.
pub(crate) fn remap_effect(c: &mut Ctx, x: &Affine, f: &dyn Fn(Mask) -> Option<(Mask, bool)>) -> Flow {
    let mut out = x.clone();
    if let Some(s) = out.scale.as_mut() {
        let Some((m, keep)) = f(s.mask) else { return unknown("layout change with unknown dims") };
        if !keep && s.mask != 0 {
            s.token = c.fresh();
        }
        s.mask = m;
    }
    if let Some(t) = out.shift.as_mut() {
        let Some((m, keep)) = f(t.mask) else { return unknown("layout change with unknown dims") };
        if !keep && t.mask != 0 {
            t.token = c.fresh();
        }
        t.mask = m;
    }
    changed(out)
}

/// Split, Slice, Gather, Tile: selection/repetition of entries along axes.
pub(crate) fn select(c: &mut Ctx, n: &Node, e: &[Option<Affine>]) -> Vec<Flow> {
    let outs = n.outputs.len().max(1);
    if e.iter().skip(1).any(Option::is_some) {
        return vec![variant(format!("{} indices change", n.op_type)); outs];
    }
    let Some(x) = e.first().and_then(Option::as_ref) else { return vec![Flow::Same; outs] };
    let Some(r) = c.rank(n.input(0)) else { return vec![unknown("rank unknown"); outs] };
    let touched: Mask = match n.def {
        Some(d) if *d == SPLIT => crate::ir::norm_axis(crate::ops::SPLIT_AXIS.get(n), r).map(mask::bit).unwrap_or(mask::below(r)),
        Some(d) if *d == SLICE => {
            let axes = n.input(3).and_then(|v| c.g.values[v].ints.clone()).map(|d| d.iter().map(|x| x.known()).collect::<Option<Vec<i64>>>());
            match axes {
                Some(Some(a)) => a.iter().filter_map(|&a| crate::ir::norm_axis(a, r)).fold(0, |m, a| m | mask::bit(a)),
                Some(None) => mask::below(r),
                None if n.input(3).is_none() => {
                    let k = n.input(1).and_then(|v| c.g.values[v].ints.as_ref().map(Vec::len)).or(crate::ops::SLICE_STARTS.get(n).map(<[i64]>::len));
                    k.map(mask::below).unwrap_or(mask::below(r))
                }
                None => mask::below(r),
            }
        }
        Some(d) if *d == TILE => mask::below(r),
        _ => 0,
    };
    if n.is(&GATHER) {
        let Some(a) = crate::ir::norm_axis(crate::ops::GATHER_AXIS.get(n), r) else { return one(variant("bad axis")) };
        let Some(ri) = c.rank(n.input(1)) else { return one(unknown("Gather indices rank unknown")) };
        // out = data[:a] ++ indices ++ data[a+1:]
        let map = move |m: Mask| -> Option<(Mask, bool)> {
            let mut out = m & mask::below(a);
            if m & mask::bit(a) != 0 {
                out |= mask::below(ri) << a;
            }
            out |= (m >> (a + 1)) << (a + ri);
            Some((out, m & mask::bit(a) == 0))
        };
        return one(remap_effect(c, x, &map));
    }
    let flow = remap_effect(c, x, &|m| Some((m, m & touched == 0)));
    let mut flows = vec![flow.clone(); outs];
    // each output gets its own tokens where a varying axis was cut
    if matches!(flow, Flow::Changed(_)) && outs > 1 {
        for f in flows.iter_mut().skip(1) {
            *f = remap_effect(c, x, &|m| Some((m, m & touched == 0)));
        }
    }
    flows
}

