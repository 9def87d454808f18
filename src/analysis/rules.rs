//! One rule per ONNX operator: how a change of the inputs (an [`Affine`]
//! effect, or none) becomes a change of the outputs. Rules are grouped by op
//! family; [`rule_for`] is the table. An op without a rule makes the analysis
//! answer `unknown` for every parameter whose change reaches it.
//!
//! Every rule is conservative: when it cannot prove the precise effect it
//! answers [`Flow::Variant`] (or `Unknown`), never a weaker change.
use super::effect::{mask, Affine, Flow, Mask, Scale, Shift};
use crate::ir::{Dim, Graph, Node, ValueId};

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
    fn fresh(&mut self) -> u32 {
        self.next_token += 1;
        self.next_token
    }

    fn rank(&self, v: Option<ValueId>) -> Option<usize> {
        v.and_then(|v| self.g.values[v].rank())
    }

    fn dims(&self, v: Option<ValueId>) -> Option<&[Dim]> {
        v.and_then(|v| self.g.values[v].shape.as_deref())
    }

    fn is_const(&self, v: Option<ValueId>) -> bool {
        v.is_some_and(|v| self.g.values[v].is_const)
    }

    /// Axes of a broadcast result (rank `out_rank`) along which `v` may vary.
    fn const_mask(&self, v: ValueId, out_rank: usize) -> Mask {
        match &self.g.values[v].shape {
            Some(dims) => {
                let m = dims.iter().enumerate().fold(0, |m, (i, d)| if *d == Dim::Known(1) { m } else { m | mask::bit(i) });
                mask::align(m, dims.len(), out_rank) & mask::below(out_rank)
            }
            None => mask::below(out_rank),
        }
    }
}

/// The analysis rule of every op that has one (default domain), by op type.
pub const RULES: &[(&str, Rule)] = &[
    ("BatchNormalization", batch_norm),
    ("InstanceNormalization", instance_norm),
    ("LayerNormalization", layer_norm),
    ("GroupNormalization", group_norm),
    ("LpNormalization", lp_norm),
    ("RMSNormalization", rms_norm),
    ("MeanVarianceNormalization", mean_variance_norm),
    ("Relu", homogeneous),
    ("LeakyRelu", homogeneous),
    ("Abs", homogeneous),
    ("Neg", neg),
    ("Identity", identity),
    ("Dropout", identity),
    ("Cast", cast),
    ("CastLike", cast),
    ("PRelu", prelu),
    ("Clip", clip),
    ("Max", max),
    ("Sqrt", sqrt),
    ("Reciprocal", reciprocal),
    ("Pow", pow),
    ("Sigmoid", nonlinear),
    ("Tanh", nonlinear),
    ("Exp", nonlinear),
    ("Log", nonlinear),
    ("Gelu", nonlinear),
    ("Erf", nonlinear),
    ("Softplus", nonlinear),
    ("Softsign", nonlinear),
    ("HardSigmoid", nonlinear),
    ("HardSwish", nonlinear),
    ("Elu", nonlinear),
    ("Selu", nonlinear),
    ("Celu", nonlinear),
    ("Mish", nonlinear),
    ("Softmax", nonlinear),
    ("LogSoftmax", nonlinear),
    ("Sin", nonlinear),
    ("Cos", nonlinear),
    ("Floor", nonlinear),
    ("Ceil", nonlinear),
    ("Round", nonlinear),
    ("Sign", nonlinear),
    ("ThresholdedRelu", nonlinear),
    ("Shrink", nonlinear),
    ("Min", nonlinear),
    ("Mod", nonlinear),
    ("Equal", nonlinear),
    ("Less", nonlinear),
    ("Greater", nonlinear),
    ("LessOrEqual", nonlinear),
    ("GreaterOrEqual", nonlinear),
    ("Not", nonlinear),
    ("And", nonlinear),
    ("Or", nonlinear),
    ("Where", nonlinear),
    ("IsNaN", nonlinear),
    ("IsInf", nonlinear),
    ("Add", add),
    ("Sum", add),
    ("Sub", sub),
    ("Mul", mul),
    ("Div", div),
    ("Conv", conv),
    ("ConvTranspose", conv_transpose),
    ("Gemm", gemm),
    ("MatMul", matmul),
    ("MaxPool", pool),
    ("AveragePool", pool),
    ("LpPool", pool),
    ("GlobalAveragePool", pool),
    ("GlobalMaxPool", pool),
    ("GlobalLpPool", pool),
    ("ReduceMean", reduce),
    ("ReduceSum", reduce),
    ("ReduceMax", reduce),
    ("ReduceMin", reduce),
    ("ReduceL2", reduce),
    ("ReduceL1", reduce),
    ("ReduceSumSquare", reduce),
    ("ArgMax", arg_reduce),
    ("ArgMin", arg_reduce),
    ("Transpose", transpose),
    ("Squeeze", reshape_like),
    ("Unsqueeze", reshape_like),
    ("Reshape", reshape_like),
    ("Flatten", reshape_like),
    ("Expand", expand),
    ("Concat", concat),
    ("Split", select),
    ("Slice", select),
    ("Gather", select),
    ("Tile", select),
    ("Pad", pad),
    ("Resize", resize),
    ("Upsample", resize),
    ("DepthToSpace", depth_space),
    ("SpaceToDepth", depth_space),
    ("Shape", shape_only),
    ("Size", shape_only),
    ("RandomUniformLike", random_draw),
    ("RandomNormalLike", random_draw),
    ("RandomUniform", random_draw),
    ("RandomNormal", random_draw),
    ("Bernoulli", nonlinear),
    ("Multinomial", nonlinear),
];

/// The rule for an op type in the default domain, if there is one.
pub fn rule_for(op: &str) -> Option<Rule> {
    RULES.iter().find(|(name, _)| *name == op).map(|(_, rule)| *rule)
}

fn sqrt(c: &mut Ctx, n: &Node, e: &[Option<Affine>]) -> Vec<Flow> {
    power(c, n, e, 0.5)
}

fn reciprocal(c: &mut Ctx, n: &Node, e: &[Option<Affine>]) -> Vec<Flow> {
    power(c, n, e, -1.0)
}

/// Shape and Size read only the shape, which no change alters.
fn shape_only(_: &mut Ctx, n: &Node, _: &[Option<Affine>]) -> Vec<Flow> {
    vec![Flow::Same; n.outputs.len()]
}

/// A rule: input effects (index-aligned with `node.inputs`) to output flows.
pub type Rule = fn(&mut Ctx, &Node, &[Option<Affine>]) -> Vec<Flow>;

fn one(f: Flow) -> Vec<Flow> {
    vec![f]
}

fn changed(a: Affine) -> Flow {
    if a.is_identity() {
        Flow::Same
    } else {
        Flow::Changed(a)
    }
}

fn variant(why: impl Into<String>) -> Flow {
    Flow::Variant(why.into())
}

fn unknown(why: impl Into<String>) -> Flow {
    Flow::Unknown(why.into())
}

/// Only input 0 carries data; any other changed input is unsupported.
fn data_only<'e>(n: &Node, e: &'e [Option<Affine>]) -> Result<Option<&'e Affine>, Flow> {
    if e.iter().skip(1).any(Option::is_some) {
        return Err(variant(format!("{} parameter input changes", n.op_type)));
    }
    Ok(e.first().and_then(Option::as_ref))
}

// ---------------------------------------------------------------- normalizers

/// Removes the change of `x` when scale and shift vary only within `allowed`
/// (the axes over which the normalization keeps separate statistics).
fn normalize_input(x: Option<&Affine>, allowed_scale: Mask, allowed_shift: Option<Mask>, what: &str) -> Result<bool, Flow> {
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
fn affine_tail(
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

fn per_channel_map(_: &mut Ctx, m: Mask, _rank: usize) -> Option<(Mask, bool)> {
    // parameter [C] -> output axis 1
    Some((if m & 1 != 0 { mask::bit(1) } else { 0 }, true))
}

fn batch_norm(c: &mut Ctx, n: &Node, e: &[Option<Affine>]) -> Vec<Flow> {
    let training = if c.g.opset >= 14 { n.attr_int("training_mode", 0) != 0 } else { n.outputs.iter().skip(1).any(Option::is_some) };
    let outs = n.outputs.len();
    let Some(r) = c.rank(n.input(0)) else { return vec![unknown("BatchNormalization input rank unknown"); outs] };
    let mut flows = vec![Flow::Same; outs];
    if training {
        // Batch statistics per channel: removes scale/shift varying along channel only.
        let removed = match normalize_input(e[0].as_ref(), mask::bit(1), Some(mask::bit(1)), "BatchNormalization") {
            Ok(r) => r,
            Err(f) => {
                flows[0] = f;
                return flows;
            }
        };
        flows[0] = affine_tail(c, n, e, 1, Some(2), r, &per_channel_map, removed);
        // running-statistics outputs feed only the next eval-mode pass, not the training output
        return flows;
    }
    // Frozen statistics: y = a * x + b per channel with constants a, b. For
    // x' = S x + T: y' = S y + (1 - S) b + a T, so any change of x adds a shift
    // that varies along the channel axis (and wherever S or T vary).
    let mut x = e[0].clone();
    if let Some(x) = x.as_mut() {
        let mut m = x.shift.as_ref().map(|t| t.mask).unwrap_or(0) | mask::bit(1);
        let mut sources = x.shift_sources();
        if let Some(s) = &x.scale {
            m |= s.mask;
            for i in [2, 3] {
                if let Some(v) = n.input(i) {
                    sources.extend(c.const_params[v].iter().copied());
                }
            }
        }
        x.shift = Some(Shift { mask: m & mask::below(r), token: c.fresh(), sources });
    }
    if e[3].is_some() || e[4].is_some() {
        flows[0] = variant("eval-mode BatchNormalization statistics change");
        return flows;
    }
    let tail = affine_tail(c, n, e, 1, Some(2), r, &per_channel_map, false);
    flows[0] = match (x, tail) {
        (None, t) => t,
        (Some(x), Flow::Same) => changed(x),
        (Some(_), _) => variant("eval-mode BatchNormalization: input and parameters change together"),
    };
    flows
}

fn instance_norm(c: &mut Ctx, n: &Node, e: &[Option<Affine>]) -> Vec<Flow> {
    let Some(r) = c.rank(n.input(0)) else { return one(unknown("InstanceNormalization input rank unknown")) };
    let allowed = mask::bit(0) | mask::bit(1);
    match normalize_input(e[0].as_ref(), allowed, Some(allowed), "InstanceNormalization") {
        Ok(removed) => one(affine_tail(c, n, e, 1, Some(2), r, &per_channel_map, removed)),
        Err(f) => one(f),
    }
}

/// Maps a parameter shaped like the trailing (normalized) dims into the output.
fn trailing_map(out_rank: usize) -> impl Fn(&mut Ctx, Mask, usize) -> Option<(Mask, bool)> {
    move |_, m, r| Some((mask::align(m, r, out_rank), true))
}

fn layer_norm(c: &mut Ctx, n: &Node, e: &[Option<Affine>]) -> Vec<Flow> {
    let outs = n.outputs.len().max(1);
    let Some(r) = c.rank(n.input(0)) else { return vec![unknown("LayerNormalization input rank unknown"); outs] };
    let Some(axis) = crate::ir::norm_axis(n.attr_int("axis", -1), r) else { return vec![variant("bad axis"); outs] };
    let kept = mask::below(axis);
    let mut flows = vec![Flow::Same; outs];
    flows[0] = match normalize_input(e[0].as_ref(), kept, Some(kept), "LayerNormalization") {
        Ok(removed) => {
            let bias = n.input(2).map(|_| 2);
            affine_tail(c, n, e, 1, bias, r, &trailing_map(r), removed)
        }
        Err(f) => f,
    };
    // Mean / InvStdDev outputs are statistics, as in training-mode BatchNormalization.
    flows
}

fn rms_norm(c: &mut Ctx, n: &Node, e: &[Option<Affine>]) -> Vec<Flow> {
    let Some(r) = c.rank(n.input(0)) else { return one(unknown("RMSNormalization input rank unknown")) };
    let Some(axis) = crate::ir::norm_axis(n.attr_int("axis", -1), r) else { return one(variant("bad axis")) };
    match normalize_input(e[0].as_ref(), mask::below(axis), None, "RMSNormalization") {
        Ok(removed) => one(affine_tail(c, n, e, 1, None, r, &trailing_map(r), removed)),
        Err(f) => one(f),
    }
}

fn group_norm(c: &mut Ctx, n: &Node, e: &[Option<Affine>]) -> Vec<Flow> {
    let Some(r) = c.rank(n.input(0)) else { return one(unknown("GroupNormalization input rank unknown")) };
    // Statistics per (sample, group): only per-sample changes are provably removed.
    let removed = match normalize_input(e[0].as_ref(), mask::bit(0), Some(mask::bit(0)), "GroupNormalization") {
        Ok(r) => r,
        Err(f) => return one(f),
    };
    if c.g.opset >= 21 {
        return one(affine_tail(c, n, e, 1, Some(2), r, &per_channel_map, removed));
    }
    // opset 18: scale and bias are per group; channel c uses group c / (C/G)
    let per_group = |_: &mut Ctx, m: Mask, _rank: usize| -> Option<(Mask, bool)> { Some((if m & 1 != 0 { mask::bit(1) } else { 0 }, false)) };
    one(affine_tail(c, n, e, 1, Some(2), r, &per_group, removed))
}

fn lp_norm(c: &mut Ctx, n: &Node, e: &[Option<Affine>]) -> Vec<Flow> {
    let Some(r) = c.rank(n.input(0)) else { return one(unknown("LpNormalization input rank unknown")) };
    let Some(axis) = crate::ir::norm_axis(n.attr_int("axis", -1), r) else { return one(variant("bad axis")) };
    match normalize_input(e[0].as_ref(), mask::below(r) & !mask::bit(axis), None, "LpNormalization") {
        Ok(true) => one(Flow::Normalized),
        Ok(false) => one(Flow::Same),
        Err(f) => one(f),
    }
}

fn mean_variance_norm(c: &mut Ctx, n: &Node, e: &[Option<Affine>]) -> Vec<Flow> {
    let Some(r) = c.rank(n.input(0)) else { return one(unknown("MeanVarianceNormalization input rank unknown")) };
    let axes = n.attr_ints("axes").map(<[i64]>::to_vec).unwrap_or_else(|| vec![0, 2, 3]);
    let Some(axes) = axes.iter().map(|&a| crate::ir::norm_axis(a, r)).collect::<Option<Vec<_>>>() else {
        return one(variant("bad axes"));
    };
    let kept = mask::below(r) & !axes.iter().fold(0, |m, &a| m | mask::bit(a));
    match normalize_input(e[0].as_ref(), kept, Some(kept), "MeanVarianceNormalization") {
        Ok(true) => one(Flow::Normalized),
        Ok(false) => one(Flow::Same),
        Err(f) => one(f),
    }
}

// ------------------------------------------------------------ elementwise

fn homogeneous(_: &mut Ctx, n: &Node, e: &[Option<Affine>]) -> Vec<Flow> {
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

fn identity(_: &mut Ctx, n: &Node, e: &[Option<Affine>]) -> Vec<Flow> {
    let x = match data_only(n, e) {
        Ok(x) => x,
        Err(f) => return one(f),
    };
    let mut flows = vec![Flow::Same; n.outputs.len().max(1)];
    if let Some(x) = x {
        // Dropout in training multiplies by a random mask: a scale passes, a shift does not.
        if n.op_type == "Dropout" && x.shift.is_some() && dropout_may_train(n) {
            flows[0] = variant("Dropout (training) of a shifted value");
        } else {
            flows[0] = changed(x.clone());
        }
    }
    flows
}

/// RandomUniform(Like), RandomNormal(Like): the draw reads only the input's
/// shape and element type (and the attributes), which no rescaling or
/// perturbation of a parameter alters. For each fixed state of the generator the
/// output is therefore the same tensor before and after the change: unchanged.
/// (Bernoulli and Multinomial read their input's values: `nonlinear`.)
fn random_draw(_: &mut Ctx, n: &Node, _: &[Option<Affine>]) -> Vec<Flow> {
    vec![Flow::Same; n.outputs.len().max(1)]
}

fn dropout_may_train(n: &Node) -> bool {
    n.input(2).is_some() || n.outputs.iter().skip(1).any(Option::is_some)
}

fn neg(c: &mut Ctx, _: &Node, e: &[Option<Affine>]) -> Vec<Flow> {
    match e.first().and_then(Option::as_ref) {
        None => one(Flow::Same),
        Some(x) => {
            let mut x = x.clone();
            if let Some(t) = x.shift.as_mut() {
                t.token = c.fresh();
            }
            one(changed(x))
        }
    }
}

fn cast(_: &mut Ctx, n: &Node, e: &[Option<Affine>]) -> Vec<Flow> {
    match e.first().and_then(Option::as_ref) {
        None => one(Flow::Same),
        Some(x) => {
            let to = crate::ir::DType::from_onnx(n.attr_int("to", 1) as i32);
            if n.op_type == "Cast" && !to.is_float() {
                one(variant("cast of a changed value to a non-float type"))
            } else {
                one(changed(x.clone()))
            }
        }
    }
}

fn prelu(c: &mut Ctx, n: &Node, e: &[Option<Affine>]) -> Vec<Flow> {
    if e.get(1).is_some_and(Option::is_some) {
        return one(variant("PRelu slope changes"));
    }
    homogeneous(c, n, &e[..1])
}

/// True when a bound is absent or a constant no larger than an epsilon in magnitude.
fn tiny_or_zero(c: &Ctx, v: Option<ValueId>) -> bool {
    match v {
        None => true,
        Some(v) => c.g.values[v].scalar.is_some_and(|s| (0.0..=EPSILON_MAX).contains(&s)),
    }
}

fn clip(c: &mut Ctx, n: &Node, e: &[Option<Affine>]) -> Vec<Flow> {
    if e.iter().skip(1).any(Option::is_some) {
        return one(variant("Clip bounds change"));
    }
    let Some(x) = e.first().and_then(Option::as_ref) else { return one(Flow::Same) };
    // Clip(x, 0 or eps, +inf) is Relu up to an epsilon: positively homogeneous.
    let (min_ok, no_max) = if c.g.opset >= 11 {
        (n.input(1).is_some() && tiny_or_zero(c, n.input(1)), n.input(2).is_none())
    } else {
        let min = n.attr_float("min", f32::MIN) as f64;
        (n.attrs.contains_key("min") && (0.0..=EPSILON_MAX).contains(&min), !n.attrs.contains_key("max"))
    };
    if min_ok && no_max && x.shift.is_none() {
        one(changed(x.clone()))
    } else {
        one(variant("Clip with bounds that do not scale"))
    }
}

fn max(c: &mut Ctx, n: &Node, e: &[Option<Affine>]) -> Vec<Flow> {
    // Max(x, eps): a clamp from below by an epsilon (F.normalize's clamp_min).
    if n.inputs.len() == 2 {
        for (x, k) in [(0usize, 1usize), (1, 0)] {
            if let (Some(ex), None) = (e[x].as_ref(), e[k].as_ref()) {
                if tiny_or_zero(c, n.input(k)) && n.input(k).is_some() && ex.shift.is_none() {
                    return one(changed(ex.clone()));
                }
            }
        }
    }
    same_scale_all(n, e, "Max")
}

/// An op that commutes with a common positive scale of all its inputs.
fn same_scale_all(n: &Node, e: &[Option<Affine>], what: &str) -> Vec<Flow> {
    let changed_all: Vec<&Affine> = e.iter().flatten().collect();
    if changed_all.is_empty() {
        return one(Flow::Same);
    }
    if changed_all.len() == n.inputs.len() && changed_all.iter().all(|a| a.shift.is_none() && a.scale == changed_all[0].scale) {
        return one(changed(changed_all[0].clone()));
    }
    one(variant(format!("{what} of differently changed inputs")))
}

fn nonlinear(_: &mut Ctx, n: &Node, e: &[Option<Affine>]) -> Vec<Flow> {
    if e.iter().any(Option::is_some) {
        vec![variant(format!("{} is not positively homogeneous", n.op_type)); n.outputs.len().max(1)]
    } else {
        vec![Flow::Same; n.outputs.len().max(1)]
    }
}

fn power(_: &mut Ctx, n: &Node, e: &[Option<Affine>], p: f64) -> Vec<Flow> {
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

fn pow(c: &mut Ctx, n: &Node, e: &[Option<Affine>]) -> Vec<Flow> {
    if e.get(1).is_some_and(Option::is_some) {
        return one(variant("Pow exponent changes"));
    }
    match n.input(1).and_then(|v| c.g.values[v].scalar) {
        Some(p) if p.is_finite() => power(c, n, e, p),
        _ if e[0].is_none() => one(Flow::Same),
        _ => one(variant("Pow with a non-constant exponent")),
    }
}

// ------------------------------------------------------------ arithmetic

/// One operand of a sum: its value, effect, and sign.
struct Term<'a> {
    value: Option<ValueId>,
    /// Rank of the term (for aligning masks to the output).
    rank: Option<usize>,
    effect: Option<&'a Affine>,
    negate: bool,
}

/// `sum(±term)` under broadcasting: the common scale must be shared by every
/// data-dependent term; constant terms only contribute shifts.
fn combine_sum(c: &mut Ctx, out_rank: Option<usize>, terms: &[Term]) -> Flow {
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

fn add(c: &mut Ctx, n: &Node, e: &[Option<Affine>]) -> Vec<Flow> {
    let out_rank = c.rank(n.output(0));
    // x + eps before a square root: the epsilon of a decomposed normalization.
    if n.inputs.len() == 2 {
        for (x, k) in [(0usize, 1usize), (1, 0)] {
            if let (Some(ex), None) = (e[x].as_ref(), e[k].as_ref()) {
                if ex.shift.is_none() && feeds_root(c, n) && tiny_or_zero(c, n.input(k)) {
                    return one(changed(ex.clone()));
                }
            }
        }
    }
    let terms: Vec<Term> = n.inputs.iter().zip(e).map(|(v, ef)| Term { value: *v, rank: c.rank(*v), effect: ef.as_ref(), negate: false }).collect();
    one(combine_sum(c, out_rank, &terms))
}

/// True when every consumer of the node's output takes a root or reciprocal of it.
fn feeds_root(c: &Ctx, n: &Node) -> bool {
    let Some(out) = n.output(0) else { return false };
    let consumers = &c.g.values[out].consumers;
    !consumers.is_empty()
        && consumers.iter().all(|&(id, slot)| {
            let m = &c.g.nodes[id];
            slot == 0
                && match m.op_type.as_str() {
                    "Sqrt" | "Reciprocal" => true,
                    "Pow" => m.input(1).and_then(|v| c.g.values[v].scalar).is_some_and(|p| p == 0.5 || p == -0.5),
                    _ => false,
                }
        })
}

fn sub(c: &mut Ctx, n: &Node, e: &[Option<Affine>]) -> Vec<Flow> {
    // x - mean(x): the very same change on both sides cancels the shift. Masks
    // are compared index by index, so both sides must have the output's rank
    // (or carry only global changes).
    if let (Some(a), Some(b)) = (e[0].as_ref(), e.get(1).and_then(Option::as_ref)) {
        let out = c.rank(n.output(0));
        let same_rank = out.is_some() && c.rank(n.input(0)) == out && c.rank(n.input(1)) == out;
        let global = a.scale.as_ref().is_none_or(|s| s.mask == 0) && a.shift.as_ref().is_none_or(|t| t.mask == 0);
        if a == b && (same_rank || global) {
            return one(changed(Affine { scale: a.scale.clone(), shift: None }));
        }
    }
    let out_rank = c.rank(n.output(0));
    let terms = [
        Term { value: n.input(0), rank: c.rank(n.input(0)), effect: e[0].as_ref(), negate: false },
        Term { value: n.input(1), rank: c.rank(n.input(1)), effect: e.get(1).and_then(Option::as_ref), negate: true },
    ];
    one(combine_sum(c, out_rank, &terms))
}

/// Product of two pure scales (or one), with exponents added (`sign` = -1 divides).
fn product_scale(a: Option<&Scale>, b: Option<&Scale>, sign: f64, a_rank: Option<usize>, b_rank: Option<usize>, out_rank: Option<usize>) -> Result<Option<Scale>, Flow> {
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
fn times_weight(c: &mut Ctx, data: Option<Scale>, w: &Scale, out: Option<Mask>, keep: bool, rank: usize, why: &str) -> Result<Option<Scale>, Flow> {
    let Some(m) = out else { return Err(variant(why)) };
    let token = if keep || w.mask == 0 { w.token } else { c.fresh() };
    product_scale(data.as_ref(), Some(&Scale { mask: m, token, exp: w.exp }), 1.0, Some(rank), Some(rank), Some(rank))
}

fn mul(c: &mut Ctx, n: &Node, e: &[Option<Affine>]) -> Vec<Flow> {
    one(mul_div(c, n, e, 1.0))
}

fn div(c: &mut Ctx, n: &Node, e: &[Option<Affine>]) -> Vec<Flow> {
    one(mul_div(c, n, e, -1.0))
}

fn mul_div(c: &mut Ctx, n: &Node, e: &[Option<Affine>], sign: f64) -> Flow {
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

fn conv(c: &mut Ctx, n: &Node, e: &[Option<Affine>]) -> Vec<Flow> {
    let (ex, ew) = (e[0].as_ref(), e.get(1).and_then(Option::as_ref));
    let Some(r) = c.rank(n.input(0)).or(c.rank(n.output(0))) else { return one(unknown("Conv rank unknown")) };
    let spatial = mask::below(r) & !(mask::bit(0) | mask::bit(1));
    let group = n.attr_int("group", 1).max(1);
    let cin = c.dims(n.input(0)).and_then(|d| d.get(1).copied()).and_then(Dim::known);
    let cout = c.dims(n.input(1)).and_then(|d| d.first().copied()).and_then(Dim::known);
    let mut scale: Option<Scale> = None;
    let mut shift: Option<Shift> = None;
    if let Some(x) = ex {
        if let Some(s) = &x.scale {
            if s.mask & spatial != 0 {
                return one(variant("Conv input scale varies over space"));
            }
            if s.mask & mask::bit(1) != 0 {
                // Only a depthwise conv keeps a per-channel input scale per channel.
                match (cin, cout) {
                    (Some(ci), Some(co)) if ci == group && co % ci == 0 => {
                        let token = if co == ci { s.token } else { c.fresh() };
                        scale = Some(Scale { token, ..s.clone() });
                    }
                    _ => return one(variant("Conv mixes input channels that scale differently")),
                }
            } else {
                scale = Some(s.clone());
            }
        }
        if let Some(t) = &x.shift {
            // conv(T) is constant over space only without padding (borders see zeros).
            let pads = n.attr_ints("pads").is_none_or(|p| p.iter().all(|&x| x == 0));
            let auto = n.attr_str("auto_pad").is_none_or(|a| a == "NOTSET" || a == "VALID");
            if t.mask & spatial != 0 || !pads || !auto || ew.is_some() {
                return one(variant("Conv of a shifted input (padding or spatial shift)"));
            }
            shift = Some(Shift { mask: (t.mask & mask::bit(0)) | mask::bit(1), token: c.fresh(), sources: t.sources.clone() });
        }
    }
    if let Some(w) = ew {
        if w.shift.is_some() {
            return one(variant("Conv weight changes additively"));
        }
        if let Some(s) = &w.scale {
            // weight [C_out, C_in/group, k...]: axis 0 is the output channel
            let out = (s.mask & !mask::bit(0) == 0).then(|| if s.mask != 0 { mask::bit(1) } else { 0 });
            scale = match times_weight(c, scale, s, out, true, r, "Conv weight scale varies along input channels or space") {
                Ok(s) => s,
                Err(f) => return one(f),
            };
        }
    }
    with_bias(c, n, e, 2, r, Affine { scale, shift }, &|m| if m & 1 != 0 { mask::bit(1) } else { 0 })
}

/// Adds a bias input (shape `[C]` along `map`) to the linear part's effect.
fn with_bias(c: &mut Ctx, n: &Node, e: &[Option<Affine>], bias: usize, r: usize, linear: Affine, map: &dyn Fn(Mask) -> Mask) -> Vec<Flow> {
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

fn merge_shifts(c: &mut Ctx, a: Option<Shift>, b: Option<Shift>) -> Option<Shift> {
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

fn conv_transpose(c: &mut Ctx, n: &Node, e: &[Option<Affine>]) -> Vec<Flow> {
    let (ex, ew) = (e[0].as_ref(), e.get(1).and_then(Option::as_ref));
    let Some(r) = c.rank(n.input(0)).or(c.rank(n.output(0))) else { return one(unknown("ConvTranspose rank unknown")) };
    let group = n.attr_int("group", 1).max(1);
    let mut scale = None;
    if let Some(x) = ex {
        if x.shift.is_some() {
            return one(variant("ConvTranspose of a shifted input"));
        }
        if let Some(s) = &x.scale {
            if s.mask & !mask::bit(0) != 0 {
                return one(variant("ConvTranspose mixes input channels that scale differently"));
            }
            scale = Some(s.clone());
        }
    }
    if let Some(w) = ew {
        if w.shift.is_some() {
            return one(variant("ConvTranspose weight changes additively"));
        }
        if let Some(s) = &w.scale {
            // weight [C_in, C_out/group, k...]: axis 1 is the output channel
            let out = (s.mask & !mask::bit(1) == 0).then_some(s.mask);
            let why = "ConvTranspose weight scale varies along input channels or space";
            scale = match times_weight(c, scale, s, out, group == 1, r, why) {
                Ok(s) => s,
                Err(f) => return one(f),
            };
        }
    }
    with_bias(c, n, e, 2, r, Affine { scale, shift: None }, &|m| if m & 1 != 0 { mask::bit(1) } else { 0 })
}

fn gemm(c: &mut Ctx, n: &Node, e: &[Option<Affine>]) -> Vec<Flow> {
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

fn matmul(c: &mut Ctx, n: &Node, e: &[Option<Affine>]) -> Vec<Flow> {
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

// ------------------------------------------------------------ pooling & reductions

fn pool(_: &mut Ctx, n: &Node, e: &[Option<Affine>]) -> Vec<Flow> {
    let x = match data_only(n, e) {
        Ok(Some(x)) => x,
        Ok(None) => return vec![Flow::Same; n.outputs.len().max(1)],
        Err(f) => return one(f),
    };
    let keep = mask::bit(0) | mask::bit(1);
    let mut flows = vec![Flow::Same; n.outputs.len().max(1)];
    if x.scale.as_ref().is_some_and(|s| !mask::within(s.mask, keep)) {
        flows[0] = variant("pooling over a scale that varies over space");
        return flows;
    }
    if let Some(t) = &x.shift {
        let op = n.op_type.as_str();
        let padded = n.attr_ints("pads").is_some_and(|p| p.iter().any(|&x| x != 0)) || n.attr_str("auto_pad").is_some_and(|a| a.starts_with("SAME"));
        let ok = match op {
            "MaxPool" | "GlobalMaxPool" | "GlobalAveragePool" => true,
            "AveragePool" => !padded || n.attr_int("count_include_pad", 0) == 0,
            _ => false,
        };
        if !ok || !mask::within(t.mask, keep) {
            flows[0] = variant(format!("{op} of a shifted value"));
            return flows;
        }
    }
    flows[0] = changed(x.clone());
    // MaxPool indices are unchanged by per-channel positive scales and shifts.
    flows
}

fn reduce(c: &mut Ctx, n: &Node, e: &[Option<Affine>]) -> Vec<Flow> {
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
        let exp = if op == "ReduceSumSquare" { s.exp * 2.0 } else { s.exp };
        scale = Some(Scale { mask: map(s.mask), token: s.token, exp });
    }
    let mut shift = None;
    if let Some(t) = &x.shift {
        let linear = matches!(op, "ReduceMean" | "ReduceSum");
        let order = matches!(op, "ReduceMax" | "ReduceMin") && t.mask & rm == 0 && scale.is_none();
        if !(linear || order) {
            return one(variant(format!("{op} of a shifted value")));
        }
        // Mean of a constant along axes it does not vary on is the same constant.
        let same = (op == "ReduceMean" || order) && t.mask & rm == 0;
        shift = Some(Shift { mask: map(t.mask & !rm), token: if same { t.token } else { c.fresh() }, sources: t.sources.clone() });
    }
    one(changed(Affine { scale, shift }))
}

fn arg_reduce(c: &mut Ctx, n: &Node, e: &[Option<Affine>]) -> Vec<Flow> {
    let Some(x) = e.first().and_then(Option::as_ref) else { return one(Flow::Same) };
    let Some(r) = c.rank(n.input(0)) else { return one(unknown("rank unknown")) };
    let Some(a) = crate::ir::norm_axis(n.attr_int("axis", 0), r) else { return one(variant("bad axis")) };
    let ok = x.scale.as_ref().is_none_or(|s| s.mask & mask::bit(a) == 0) && x.shift.as_ref().is_none_or(|t| t.mask & mask::bit(a) == 0);
    one(if ok { Flow::Same } else { variant(format!("{} along a varying axis", n.op_type)) })
}

// ------------------------------------------------------------ layout

/// Applies an axis map to an effect; `keep_token` is false where entries may be reordered.
fn remap_effect(c: &mut Ctx, x: &Affine, f: &dyn Fn(Mask) -> Option<(Mask, bool)>) -> Flow {
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

fn transpose(c: &mut Ctx, n: &Node, e: &[Option<Affine>]) -> Vec<Flow> {
    let Some(x) = e.first().and_then(Option::as_ref) else { return one(Flow::Same) };
    let Some(r) = c.rank(n.input(0)) else { return one(unknown("Transpose rank unknown")) };
    let perm: Vec<usize> = match n.attr_ints("perm") {
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

/// Squeeze, Unsqueeze, Reshape, Flatten: group input and output axes by
/// equal products of dims; a varying axis marks its whole output group.
fn reshape_like(c: &mut Ctx, n: &Node, e: &[Option<Affine>]) -> Vec<Flow> {
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
fn reshape_groups(din: &[Dim], dout: &[Dim]) -> Option<Vec<(std::ops::Range<usize>, std::ops::Range<usize>)>> {
    #[derive(Clone, PartialEq, Debug)]
    struct Prod(i128, Vec<u32>);
    fn mul(p: &mut Prod, d: Dim) -> Option<()> {
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
            mul(&mut pi, din[i])?;
            i += 1;
        }
        if j < dout.len() {
            mul(&mut po, dout[j])?;
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
                mul(&mut pi, din[i])?;
                i += 1;
            } else if j < dout.len() {
                mul(&mut po, dout[j])?;
                j += 1;
            } else if i < din.len() {
                mul(&mut pi, din[i])?;
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

fn expand(c: &mut Ctx, n: &Node, e: &[Option<Affine>]) -> Vec<Flow> {
    if e.iter().skip(1).any(Option::is_some) {
        return one(variant("Expand shape changes"));
    }
    let Some(x) = e.first().and_then(Option::as_ref) else { return one(Flow::Same) };
    let (Some(ri), Some(ro)) = (c.rank(n.input(0)), c.rank(n.output(0))) else { return one(unknown("Expand ranks unknown")) };
    one(remap_effect(c, x, &|m| Some((mask::align(m, ri, ro), true))))
}

fn concat(c: &mut Ctx, n: &Node, e: &[Option<Affine>]) -> Vec<Flow> {
    let changed_in: Vec<&Affine> = e.iter().flatten().collect();
    if changed_in.is_empty() {
        return one(Flow::Same);
    }
    let Some(r) = c.rank(n.output(0)) else { return one(unknown("Concat rank unknown")) };
    let Some(axis) = crate::ir::norm_axis(n.attr_int("axis", 0), r) else { return one(variant("bad axis")) };
    let ab = mask::bit(axis);
    let uniform = changed_in.len() == n.inputs.len() && changed_in.iter().all(|a| *a == changed_in[0]);
    if uniform {
        let x = changed_in[0];
        return one(remap_effect(c, x, &|m| Some((m, m & ab == 0))));
    }
    // Blocks along `axis` change differently: the factor varies along `axis` too.
    let mut scale: Option<Scale> = None;
    let mut shift_mask: Option<Mask> = None;
    let mut sources = Vec::new();
    for x in &changed_in {
        if let Some(s) = &x.scale {
            match &scale {
                None => scale = Some(s.clone()),
                Some(p) if p.exp == s.exp => {}
                Some(_) => return one(variant("Concat of differently scaled blocks")),
            }
        }
    }
    for t in changed_in.iter().filter_map(|x| x.shift.as_ref()) {
        shift_mask = Some(shift_mask.unwrap_or(0) | t.mask | ab);
        sources.extend(t.sources.iter().copied());
    }
    let scale = scale.map(|s| Scale { mask: s.mask | ab, token: c.fresh(), exp: s.exp });
    let shift = shift_mask.map(|m| Shift { mask: m, token: c.fresh(), sources });
    one(changed(Affine { scale, shift }))
}

/// Split, Slice, Gather, Tile: selection/repetition of entries along axes.
fn select(c: &mut Ctx, n: &Node, e: &[Option<Affine>]) -> Vec<Flow> {
    let outs = n.outputs.len().max(1);
    if e.iter().skip(1).any(Option::is_some) {
        return vec![variant(format!("{} indices change", n.op_type)); outs];
    }
    let Some(x) = e.first().and_then(Option::as_ref) else { return vec![Flow::Same; outs] };
    let Some(r) = c.rank(n.input(0)) else { return vec![unknown("rank unknown"); outs] };
    let op = n.op_type.as_str();
    let touched: Mask = match op {
        "Split" => crate::ir::norm_axis(n.attr_int("axis", 0), r).map(mask::bit).unwrap_or(mask::below(r)),
        "Slice" => {
            let axes = n.input(3).and_then(|v| c.g.values[v].ints.clone()).map(|d| d.iter().map(|x| x.known()).collect::<Option<Vec<i64>>>());
            match axes {
                Some(Some(a)) => a.iter().filter_map(|&a| crate::ir::norm_axis(a, r)).fold(0, |m, a| m | mask::bit(a)),
                Some(None) => mask::below(r),
                None if n.input(3).is_none() => {
                    let k = n.input(1).and_then(|v| c.g.values[v].ints.as_ref().map(Vec::len)).or(n.attr_ints("starts").map(<[i64]>::len));
                    k.map(mask::below).unwrap_or(mask::below(r))
                }
                None => mask::below(r),
            }
        }
        "Tile" => mask::below(r),
        _ => 0,
    };
    if op == "Gather" {
        let Some(a) = crate::ir::norm_axis(n.attr_int("axis", 0), r) else { return one(variant("bad axis")) };
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

fn pad(c: &mut Ctx, n: &Node, e: &[Option<Affine>]) -> Vec<Flow> {
    if e.iter().skip(1).any(Option::is_some) {
        return one(variant("Pad parameters change"));
    }
    let Some(x) = e.first().and_then(Option::as_ref) else { return one(Flow::Same) };
    let mode = n.attr_str("mode").unwrap_or("constant");
    let Some(r) = c.rank(n.input(0)) else { return one(unknown("Pad rank unknown")) };
    let pads = n.input(1).and_then(|v| c.g.values[v].ints.clone()).and_then(|d| d.iter().map(|x| x.known()).collect::<Option<Vec<i64>>>()).or(n.attr_ints("pads").map(<[i64]>::to_vec));
    let Some(pads) = pads.filter(|p| p.len() == 2 * r || n.input(3).is_some()) else { return one(unknown("Pad amounts unknown")) };
    let padded: Mask = if n.input(3).is_some() { mask::below(r) } else { (0..r).filter(|&a| pads[a] != 0 || pads[a + r] != 0).fold(0, |m, a| m | mask::bit(a)) };
    if mode == "constant" {
        let value_zero = n.input(2).is_none_or(|v| c.g.values[v].scalar == Some(0.0)) && n.attr_float("value", 0.0) == 0.0;
        if !value_zero && x.scale.is_some() {
            return one(variant("Pad with a non-zero constant"));
        }
        if x.shift.is_some() && padded != 0 {
            return one(variant("zero Pad of a shifted value"));
        }
    } else if x.shift.as_ref().is_some_and(|t| t.mask & padded != 0) {
        return one(variant("Pad of a shift varying along a padded axis"));
    }
    one(remap_effect(c, x, &|m| Some((m, m & padded == 0))))
}

fn resize(c: &mut Ctx, n: &Node, e: &[Option<Affine>]) -> Vec<Flow> {
    if e.iter().skip(1).any(Option::is_some) {
        return one(variant("Resize parameters change"));
    }
    let Some(x) = e.first().and_then(Option::as_ref) else { return one(Flow::Same) };
    let Some(r) = c.rank(n.input(0)) else { return one(unknown("Resize rank unknown")) };
    let (din, dout) = (c.dims(n.input(0)), c.dims(n.output(0)));
    // Axes that may be resized: all but N and C unless dims prove otherwise.
    let resized: Mask = match (din, dout) {
        (Some(a), Some(b)) if a.len() == b.len() => (0..r).filter(|&i| !(a[i] == b[i] && a[i] != Dim::Unknown)).fold(0, |m, i| m | mask::bit(i)),
        _ => mask::below(r),
    };
    let mode = n.attr_str("mode").unwrap_or("nearest");
    if x.scale.as_ref().is_some_and(|s| s.mask & resized != 0) {
        return one(variant("Resize along a varying scale"));
    }
    if let Some(t) = &x.shift {
        if t.mask & resized != 0 || mode == "cubic" {
            return one(variant("Resize of a shifted value"));
        }
    }
    one(changed(x.clone()))
}

fn depth_space(c: &mut Ctx, n: &Node, e: &[Option<Affine>]) -> Vec<Flow> {
    let Some(x) = e.first().and_then(Option::as_ref) else { return one(Flow::Same) };
    let Some(r) = c.rank(n.input(0)) else { return one(unknown("rank unknown")) };
    let mixed = mask::below(r) & !mask::bit(0);
    one(remap_effect(c, x, &|m| Some((if m & mixed != 0 { (m & mask::bit(0)) | mixed } else { m }, m & mixed == 0))))
}
