//! The `BatchNormalization`: definitions and rules.
#![allow(clippy::too_many_arguments)]
use crate::ops::util::prelude::*;

// The attributes, with their ONNX defaults (checked when the IR is built).
const EPSILON: FloatAttr = FloatAttr::new("epsilon", 1e-5);
const MOMENTUM: FloatAttr = FloatAttr::new("momentum", 0.9);
const TRAINING_MODE: IntAttr = IntAttr::flag("training_mode", false);

/// True for a BatchNormalization in training mode: its `training_mode`
/// (opset 14 on); before opset 14, extra outputs meant training.
pub(crate) fn bn_training(opset: i64, n: &Node) -> bool {
    if opset >= 14 { TRAINING_MODE.on(n) } else { n.outputs.iter().skip(1).any(Option::is_some) }
}
const SPATIAL: IntAttr = IntAttr::flag("spatial", true);

/// The `BatchNormalization` op.
pub static BATCH_NORMALIZATION: OpDef = OpDef {
    name: "BatchNormalization",
    module: module_path!(),
    inputs: Arity::range(5, 5),
    outputs: Arity::range(1, 3),
    opsets: Opsets { since: 1, until: None },
    attrs: &[
        EPSILON.spec,
        MOMENTUM.spec,
        TRAINING_MODE.spec,
        SPATIAL.spec,
    ],
    shape: Some(batch_norm_shape),
    constraints: Some(channel_constraints),
    analysis: Analysis::Rule(batch_norm_rule),
    arg_slots: ArgSlots::From(3),
    normalizer: true,
    statistics_outputs: true,
    gradient: Gradient::Lowered,
    reads: 5,
    lowering: Some(batch_norm_lower),
    ..OpDef::BASE
};

pub(crate) fn batch_norm_rule(c: &mut Ctx, n: &Node, e: &[Option<Affine>]) -> Vec<Flow> {
    let training = bn_training(c.g.opset, n);
    let outs = n.outputs.len();
    let Some(r) = c.rank(n.input(0)) else { return vec![unknown("BatchNormalization input rank unknown"); outs] };
    let mut flows = vec![Flow::Same; outs];
    if training {
        // Batch statistics per channel: removes scale/shift varying along channel only.
        let removed = match normalize_input(e[0].as_ref(), mask::bit(1), Some(mask::bit(1)), BATCH_NORMALIZATION.name) {
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

/// BatchNormalization, training or inference mode.
pub(crate) fn batch_norm_lower(g: &Graph, n: &Node, em: &mut Emitter, buffers: &mut Vec<(String, String)>) -> Result<(), RewriteError> {
    let r = rank_of(g, n, 0)?;
    if r < 2 {
        return Err(RewriteError::Node { node: n.name.clone(), op: n.op_type.clone(), detail: format!("input of rank {r}; 2 or more expected") });
    }
    let x = name(g, n, 0).unwrap_or_default();
    let [scale, bias, rm, rv] = [1, 2, 3, 4].map(|i| name(g, n, i));
    let (Some(scale), Some(bias), Some(rm), Some(rv)) = (scale, bias, rm, rv) else {
        return Err(RewriteError::Node { node: n.name.clone(), op: n.op_type.clone(), detail: "five inputs expected".into() });
    };
    let eps = EPSILON.get(n) as f64;
    let momentum = MOMENTUM.get(n) as f64;
    let training = bn_training(g.opset, n);
    let sc = per_channel(em, &scale, r);
    let b = per_channel(em, &bias, r);
    let y_out = out_name(g, n, 0).unwrap_or_else(|| em.fresh("bn_y"));
    if !training {
        let m = per_channel(em, &rm, r);
        let v = per_channel(em, &rv, r);
        let e = em.scalar(eps);
        let ve = em.add(&v, &e);
        let sd = em.op(&SQRT, &[&ve], vec![]);
        let d = em.sub(&x, &m);
        let xh = em.div(&d, &sd);
        let ys = em.mul(&xh, &sc);
        em.node(&ADD, &[&ys, &b], &[y_out], vec![]);
        return Ok(());
    }
    let axes: Vec<i64> = std::iter::once(0).chain(2..r as i64).collect();
    let (xh, mean, var) = standardize(em, &x, &axes, eps);
    let ys = em.mul(&xh, &sc);
    em.node(&ADD, &[&ys, &b], &[y_out], vec![]);
    // Running statistics (ONNX semantics: the population variance).
    let flat = em.ints(&[-1]);
    let running = |stat: &str, old: &str, out: Option<String>, em: &mut Emitter| -> String {
        let s = em.reshape(stat, &flat);
        let keep = em.mul_scalar(old, momentum);
        let new = em.mul_scalar(&s, 1.0 - momentum);
        let out = out.unwrap_or_else(|| em.fresh("bn_running"));
        em.node(&ADD, &[&keep, &new], std::slice::from_ref(&out), vec![]);
        out
    };
    let new_mean = running(&mean, &rm, out_name(g, n, 1), em);
    let new_var = running(&var, &rv, out_name(g, n, 2), em);
    for (i, what) in [(3, "saved mean"), (4, "saved variance")] {
        if n.output(i).is_some_and(|o| !g.values[o].consumers.is_empty() || g.values[o].is_output) {
            return Err(RewriteError::Node { node: n.name.clone(), op: n.op_type.clone(), detail: format!("the {what} output is read; it is not supported") });
        }
    }
    for (slot, buf, new) in [(3, rm, new_mean), (4, rv, new_var)] {
        if n.input(slot).is_some_and(|v| g.values[v].initializer.is_some()) {
            buffers.push((buf, new));
        }
    }
    Ok(())
}

pub(crate) fn batch_norm_shape(g: &Graph, n: &Node) -> Vec<ShapeOut> {
    let c = shape_of(g, n, 1);
    // The scale's length is the channel dim (axis 1).
    let x = shape_of(g, n, 0).map(|mut x| {
        if let (Some(d), Some(&k)) = (x.get_mut(1), c.as_ref().and_then(|c| c.first())) {
            *d = crate::ir::refine(Some(vec![*d]), Some(vec![k])).map_or(*d, |r| r[0]);
        }
        x
    });
    vec![(x, None, None, first_dtype(g, n)), (c.clone(), None, None, first_dtype(g, n)), (c, None, None, first_dtype(g, n))]
}

/// Scale and bias (and the statistics) are per channel: axis 1.
pub(crate) fn channel_constraints(g: &Graph, n: &Node) -> Vec<(usize, Vec<Dim>)> {
    let out0 = n.output(0).and_then(|v| g.values[v].shape.clone());
    let rank = shape_of(g, n, 0).as_ref().map(Vec::len).or(out0.as_ref().map(Vec::len));
    let channels = shape_of(g, n, 1).and_then(|s| s.first().copied());
    match (rank, channels) {
        (Some(r), Some(c)) if r >= 2 => {
            let mut hint = out0.filter(|o| o.len() == r).unwrap_or_else(|| vec![Dim::Unknown; r]);
            hint[1] = crate::ir::refine(Some(vec![hint[1]]), Some(vec![c])).map_or(Dim::Unknown, |d| d[0]);
            vec![(0, hint)]
        }
        _ => Vec::new(),
    }
}
