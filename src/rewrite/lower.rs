//! The forward half of the step graph: the model's nodes, with the ops whose
//! gradient rule is an expansion (normalizations, Gelu) written out in
//! primitive ops, MaxPool and Dropout asked for the side outputs their
//! gradients read, BatchNormalization's running statistics exposed, and the
//! loss attached to the first output.
use super::emit::{a_int, Emitter, INT64};
use super::{Loss, RewriteError};
use crate::ir::{Dim, Graph, Node};
use crate::onnx::pb;

/// Lowers every node of `g` (whose source nodes are `src`) into `em`.
pub(crate) fn forward(g: &Graph, src: &[pb::NodeProto], em: &mut Emitter) -> Result<Vec<(String, String)>, RewriteError> {
    let mut buffers = Vec::new();
    for n in &g.nodes {
        let proto = &src[n.source];
        if n.op_type == "If" && n.is_default_domain() {
            if let Some(c) = known_condition(g, n) {
                inline_branch(g, n, proto, c, em)?;
                continue;
            }
        }
        match super::grad::rule(&n.op_type) {
            Some(super::grad::Rule::Expand(f)) if n.is_default_domain() => {
                super::grad::check_arity(n)?;
                f(g, n, em, &mut buffers)?
            }
            _ => {
                let mut p = proto.clone();
                if g.opset < 13 && n.is_default_domain() && !upgrade(g, n, &mut p, em)? {
                    continue;
                }
                side_outputs(g, n, &mut p, em)?;
                em.nodes.push(p);
            }
        }
    }
    Ok(buffers)
}

/// Rewrites a node of an opset 11–12 model into its opset 13+ form (the step
/// graph imports opset 17 or later). Returns false when it emitted the
/// replacement itself.
fn upgrade(g: &Graph, n: &Node, p: &mut pb::NodeProto, em: &mut Emitter) -> Result<bool, RewriteError> {
    if !matches!(n.op_type.as_str(), "Softmax" | "LogSoftmax") {
        upgrade_form(p, em);
        return Ok(true);
    }
    // Before 13, (Log)Softmax normalized the input flattened to 2-D at `axis`.
    let r = rank_of(g, n, 0)?;
    let axis = axis_attr(n, 1, r)?;
    p.attribute.retain(|a| a.name != "axis");
    if axis + 1 == r {
        p.attribute.push(a_int("axis", axis as i64));
        return Ok(true);
    }
    let x = name(g, n, 0).unwrap_or_default();
    let flat = em.op("Flatten", &[&x], vec![a_int("axis", axis as i64)]);
    let y = em.op(&n.op_type, &[&flat], vec![a_int("axis", 1)]);
    let s = em.shape(&x);
    let out = out_name(g, n, 0).unwrap_or_else(|| em.fresh("softmax_y"));
    em.node("Reshape", &[&y, &s], &[out], vec![]);
    Ok(false)
}

/// The opset 13 forms that need no shapes: axes and split sizes as inputs;
/// Dropout-10's ratio attribute dropped (it is the identity at inference,
/// the only mode it has).
fn upgrade_form(p: &mut pb::NodeProto, em: &mut Emitter) {
    let attr_to_input = |p: &mut pb::NodeProto, name: &str, em: &mut Emitter| {
        if let Some(i) = p.attribute.iter().position(|a| a.name == name) {
            let values = p.attribute.remove(i).ints;
            let c = em.ints(&values);
            p.input.truncate(1);
            p.input.push(c);
        }
    };
    match p.op_type.as_str() {
        "Squeeze" | "Unsqueeze" | "ReduceSum" => attr_to_input(p, "axes", em),
        "Split" => attr_to_input(p, "split", em),
        "Dropout" => p.attribute.retain(|a| a.name != "ratio"),
        _ => {}
    }
}

/// The value of an If's condition when shape arithmetic fixes it (exporters
/// emit such Ifs, e.g. PyTorch's `squeeze(dim)` on a static dim).
fn known_condition(g: &Graph, n: &Node) -> Option<bool> {
    let c = &g.values[n.input(0)?];
    if let Some(v) = c.scalar {
        return Some(v != 0.0);
    }
    match c.ints.as_deref() {
        Some([Dim::Known(v)]) => Some(*v != 0),
        _ => None,
    }
}

/// Replaces an If whose condition is known by the nodes of the branch it takes.
fn inline_branch(g: &Graph, n: &Node, proto: &pb::NodeProto, cond: bool, em: &mut Emitter) -> Result<(), RewriteError> {
    let which = if cond { "then_branch" } else { "else_branch" };
    let err = |detail: String| RewriteError::Node { node: n.name.clone(), op: n.op_type.clone(), detail };
    let branch = proto.attribute.iter().find(|a| a.name == which).and_then(|a| a.g.as_ref()).ok_or_else(|| err(format!("{which} is missing")))?;
    if branch.output.len() != proto.output.len() {
        return Err(err(format!("{which} has {} outputs for {} node outputs", branch.output.len(), proto.output.len())));
    }
    let defined = branch.node.iter().flat_map(|m| m.output.iter()).chain(branch.initializer.iter().map(|t| &t.name));
    for name in defined {
        if !name.is_empty() && g.value_by_name(name).is_some() {
            return Err(err(format!("{which} redefines '{name}' of the outer graph")));
        }
    }
    for t in &branch.initializer {
        em.constant_named(t.clone(), &t.name);
    }
    for m in &branch.node {
        let mut m = m.clone();
        if g.opset < 13 && (m.domain.is_empty() || m.domain == "ai.onnx") {
            let coerced = matches!(m.op_type.as_str(), "Softmax" | "LogSoftmax" | "Hardmax")
                && m.attribute.iter().find(|a| a.name == "axis").is_none_or(|a| a.i != -1);
            if coerced {
                return Err(err(format!("{which} holds an opset-{} {} over a middle axis; re-export with opset 13 or later", g.opset, m.op_type)));
            }
            upgrade_form(&mut m, em);
        }
        em.nodes.push(m);
    }
    for (inner, outer) in branch.output.iter().zip(&proto.output) {
        if !outer.is_empty() {
            bind(em, &inner.name, outer);
        }
    }
    Ok(())
}

/// MaxPool's Indices and training Dropout's mask, which their gradients read.
fn side_outputs(g: &Graph, n: &Node, p: &mut pb::NodeProto, em: &mut Emitter) -> Result<(), RewriteError> {
    match n.op_type.as_str() {
        "MaxPool" if p.output.len() < 2 || p.output[1].is_empty() => {
            p.output.resize(1, String::new());
            p.output.push(em.fresh("maxpool_indices"));
        }
        "Dropout" if dropout_training(g, n)? && (p.output.len() < 2 || p.output[1].is_empty()) => {
            p.output.resize(1, String::new());
            p.output.push(em.fresh("dropout_mask"));
        }
        _ => {}
    }
    Ok(())
}

/// True when a Dropout node drops (training mode with a nonzero ratio).
pub(crate) fn dropout_training(g: &Graph, n: &Node) -> Result<bool, RewriteError> {
    let Some(t) = n.input(2) else { return Ok(false) };
    match g.values[t].scalar {
        Some(v) => Ok(v != 0.0 && dropout_ratio(g, n)? != 0.0),
        None => Err(RewriteError::Node {
            node: n.name.clone(),
            op: n.op_type.clone(),
            detail: "training_mode must be a constant".into(),
        }),
    }
}

/// Dropout's ratio (default 0.5).
pub(crate) fn dropout_ratio(g: &Graph, n: &Node) -> Result<f64, RewriteError> {
    match n.input(1) {
        None => Ok(0.5),
        Some(r) => g.values[r].scalar.ok_or_else(|| RewriteError::Node {
            node: n.name.clone(),
            op: n.op_type.clone(),
            detail: "ratio must be a constant".into(),
        }),
    }
}

fn rank_of(g: &Graph, n: &Node, i: usize) -> Result<usize, RewriteError> {
    n.input(i).and_then(|v| g.values[v].rank()).ok_or_else(|| RewriteError::Node {
        node: n.name.clone(),
        op: n.op_type.clone(),
        detail: format!("the rank of input {i} is unknown"),
    })
}

/// The `axis` attribute (or its default) normalized against `rank`.
fn axis_attr(n: &Node, default: i64, rank: usize) -> Result<usize, RewriteError> {
    crate::ir::norm_axis(n.attr_int("axis", default), rank).ok_or_else(|| RewriteError::Node {
        node: n.name.clone(),
        op: n.op_type.clone(),
        detail: format!("axis {} out of range for rank {rank}", n.attr_int("axis", default)),
    })
}

fn name(g: &Graph, n: &Node, i: usize) -> Option<String> {
    n.input(i).map(|v| g.values[v].name.clone())
}

fn out_name(g: &Graph, n: &Node, i: usize) -> Option<String> {
    n.output(i).map(|v| g.values[v].name.clone())
}

/// `Identity` into a named output.
fn bind(em: &mut Emitter, from: &str, to: &str) {
    em.node("Identity", &[from], &[to.to_string()], vec![]);
}

/// `(x - mean) / sqrt(var + eps)` over `axes`, with the mean and variance (keepdims).
fn standardize(em: &mut Emitter, x: &str, axes: &[i64], eps: f64) -> (String, String, String) {
    let mean = em.reduce("ReduceMean", x, Some(axes), true);
    let d = em.sub(x, &mean);
    let d2 = em.mul(&d, &d);
    let var = em.reduce("ReduceMean", &d2, Some(axes), true);
    let e = em.scalar(eps);
    let ve = em.add(&var, &e);
    let sd = em.op("Sqrt", &[&ve], vec![]);
    let y = em.div(&d, &sd);
    (y, mean, var)
}

/// `[C] → [C, 1, ..., 1]` for an input of rank `rank` (channel axis 1).
fn per_channel(em: &mut Emitter, v: &str, rank: usize) -> String {
    if rank <= 2 {
        return v.to_string();
    }
    let axes: Vec<i64> = (1..rank as i64 - 1).collect();
    em.unsqueeze(v, &axes)
}

/// BatchNormalization, training or inference mode.
pub(crate) fn batch_norm(g: &Graph, n: &Node, em: &mut Emitter, buffers: &mut Vec<(String, String)>) -> Result<(), RewriteError> {
    let r = rank_of(g, n, 0)?;
    if r < 2 {
        return Err(RewriteError::Node { node: n.name.clone(), op: n.op_type.clone(), detail: format!("input of rank {r}; 2 or more expected") });
    }
    let x = name(g, n, 0).unwrap_or_default();
    let [scale, bias, rm, rv] = [1, 2, 3, 4].map(|i| name(g, n, i));
    let (Some(scale), Some(bias), Some(rm), Some(rv)) = (scale, bias, rm, rv) else {
        return Err(RewriteError::Node { node: n.name.clone(), op: n.op_type.clone(), detail: "five inputs expected".into() });
    };
    let eps = n.attr_float("epsilon", 1e-5) as f64;
    let momentum = n.attr_float("momentum", 0.9) as f64;
    // Opset 14 added training_mode; before it, extra outputs meant training.
    let training = if g.opset >= 14 { n.attr_int("training_mode", 0) != 0 } else { n.outputs.iter().skip(1).any(Option::is_some) };
    let sc = per_channel(em, &scale, r);
    let b = per_channel(em, &bias, r);
    let y_out = out_name(g, n, 0).unwrap_or_else(|| em.fresh("bn_y"));
    if !training {
        let m = per_channel(em, &rm, r);
        let v = per_channel(em, &rv, r);
        let e = em.scalar(eps);
        let ve = em.add(&v, &e);
        let sd = em.op("Sqrt", &[&ve], vec![]);
        let d = em.sub(&x, &m);
        let xh = em.div(&d, &sd);
        let ys = em.mul(&xh, &sc);
        em.node("Add", &[&ys, &b], &[y_out], vec![]);
        return Ok(());
    }
    let axes: Vec<i64> = std::iter::once(0).chain(2..r as i64).collect();
    let (xh, mean, var) = standardize(em, &x, &axes, eps);
    let ys = em.mul(&xh, &sc);
    em.node("Add", &[&ys, &b], &[y_out], vec![]);
    // Running statistics (ONNX semantics: the population variance).
    let flat = em.ints(&[-1]);
    let running = |stat: &str, old: &str, out: Option<String>, em: &mut Emitter| -> String {
        let s = em.reshape(stat, &flat);
        let keep = em.mul_scalar(old, momentum);
        let new = em.mul_scalar(&s, 1.0 - momentum);
        let out = out.unwrap_or_else(|| em.fresh("bn_running"));
        em.node("Add", &[&keep, &new], std::slice::from_ref(&out), vec![]);
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

/// The axes from the node's `axis` (default -1) to the last, which Layer and
/// RMS normalization normalize over.
fn trailing_axes(g: &Graph, n: &Node) -> Result<Vec<i64>, RewriteError> {
    let r = rank_of(g, n, 0)?;
    let axis = axis_attr(n, -1, r)?;
    Ok((axis as i64..r as i64).collect())
}

/// LayerNormalization (axis, epsilon; Mean and InvStdDev outputs).
pub(crate) fn layer_norm(g: &Graph, n: &Node, em: &mut Emitter, _: &mut Vec<(String, String)>) -> Result<(), RewriteError> {
    let axes = trailing_axes(g, n)?;
    let x = name(g, n, 0).unwrap_or_default();
    let eps = n.attr_float("epsilon", 1e-5) as f64;
    let (xh, mean, var) = standardize(em, &x, &axes, eps);
    let scaled = match name(g, n, 1) {
        Some(s) => em.mul(&xh, &s),
        None => xh,
    };
    let y_out = out_name(g, n, 0).unwrap_or_else(|| em.fresh("ln_y"));
    match name(g, n, 2) {
        Some(b) => em.node("Add", &[&scaled, &b], &[y_out], vec![]),
        None => bind(em, &scaled, &y_out),
    }
    if let Some(m) = out_name(g, n, 1) {
        bind(em, &mean, &m);
    }
    if let Some(o) = out_name(g, n, 2) {
        let e = em.scalar(eps);
        let ve = em.add(&var, &e);
        let sd = em.op("Sqrt", &[&ve], vec![]);
        em.node("Reciprocal", &[&sd], &[o], vec![]);
    }
    Ok(())
}

/// InstanceNormalization.
pub(crate) fn instance_norm(g: &Graph, n: &Node, em: &mut Emitter, _: &mut Vec<(String, String)>) -> Result<(), RewriteError> {
    let r = rank_of(g, n, 0)?;
    if r < 3 {
        return Err(RewriteError::Node { node: n.name.clone(), op: n.op_type.clone(), detail: format!("input of rank {r}; 3 or more expected") });
    }
    let x = name(g, n, 0).unwrap_or_default();
    let axes: Vec<i64> = (2..r as i64).collect();
    let (xh, _, _) = standardize(em, &x, &axes, n.attr_float("epsilon", 1e-5) as f64);
    let sc = per_channel(em, &name(g, n, 1).unwrap_or_default(), r);
    let b = per_channel(em, &name(g, n, 2).unwrap_or_default(), r);
    let ys = em.mul(&xh, &sc);
    let y_out = out_name(g, n, 0).unwrap_or_else(|| em.fresh("in_y"));
    em.node("Add", &[&ys, &b], &[y_out], vec![]);
    Ok(())
}

/// GroupNormalization: per-group scale and bias before opset 21, per channel from 21.
pub(crate) fn group_norm(g: &Graph, n: &Node, em: &mut Emitter, _: &mut Vec<(String, String)>) -> Result<(), RewriteError> {
    let r = rank_of(g, n, 0)?;
    let groups = n.attr_int("num_groups", 0);
    if r < 2 || groups <= 0 {
        return Err(RewriteError::Node { node: n.name.clone(), op: n.op_type.clone(), detail: "needs rank ≥ 2 and num_groups > 0".into() });
    }
    let x = name(g, n, 0).unwrap_or_default();
    let grouped_shape = em.ints(&[0, groups, -1]);
    let xg = em.reshape(&x, &grouped_shape);
    let (xh, _, _) = standardize(em, &xg, &[2], n.attr_float("epsilon", 1e-5) as f64);
    let (scale, bias) = (name(g, n, 1).unwrap_or_default(), name(g, n, 2).unwrap_or_default());
    let y_out = out_name(g, n, 0).unwrap_or_else(|| em.fresh("gn_y"));
    if g.opset >= 21 {
        let back = em.reshape_like(&xh, &x);
        let sc = per_channel(em, &scale, r);
        let b = per_channel(em, &bias, r);
        let ys = em.mul(&back, &sc);
        em.node("Add", &[&ys, &b], &[y_out], vec![]);
    } else {
        let gs = em.ints(&[1, groups, 1]);
        let sc = em.reshape(&scale, &gs);
        let b = em.reshape(&bias, &gs);
        let ys = em.mul(&xh, &sc);
        let yb = em.add(&ys, &b);
        let s = em.shape(&x);
        em.node("Reshape", &[&yb, &s], &[y_out], vec![]);
    }
    Ok(())
}

/// RMSNormalization (opset 23).
pub(crate) fn rms_norm(g: &Graph, n: &Node, em: &mut Emitter, _: &mut Vec<(String, String)>) -> Result<(), RewriteError> {
    let axes = trailing_axes(g, n)?;
    let x = name(g, n, 0).unwrap_or_default();
    let x2 = em.mul(&x, &x);
    let ms = em.reduce("ReduceMean", &x2, Some(&axes), true);
    let e = em.scalar(n.attr_float("epsilon", 1e-5) as f64);
    let mse = em.add(&ms, &e);
    let rms = em.op("Sqrt", &[&mse], vec![]);
    let xh = em.div(&x, &rms);
    let y_out = out_name(g, n, 0).unwrap_or_else(|| em.fresh("rms_y"));
    em.node("Mul", &[&xh, &name(g, n, 1).unwrap_or_default()], &[y_out], vec![]);
    Ok(())
}

/// LpNormalization (p = 1 or 2).
pub(crate) fn lp_norm(g: &Graph, n: &Node, em: &mut Emitter, _: &mut Vec<(String, String)>) -> Result<(), RewriteError> {
    let r = rank_of(g, n, 0)?;
    let axis = axis_attr(n, -1, r)?;
    let op = match n.attr_int("p", 2) {
        1 => "ReduceL1",
        2 => "ReduceL2",
        p => return Err(RewriteError::Node { node: n.name.clone(), op: n.op_type.clone(), detail: format!("p = {p}; 1 or 2 expected") }),
    };
    let x = name(g, n, 0).unwrap_or_default();
    let norm = em.reduce(op, &x, Some(&[axis as i64]), true);
    let y_out = out_name(g, n, 0).unwrap_or_else(|| em.fresh("lp_y"));
    em.node("Div", &[&x, &norm], &[y_out], vec![]);
    Ok(())
}

/// Gelu (opset 20): exact (erf) or tanh approximation.
pub(crate) fn gelu(g: &Graph, n: &Node, em: &mut Emitter, _: &mut Vec<(String, String)>) -> Result<(), RewriteError> {
    let x = name(g, n, 0).unwrap_or_default();
    let inner = match n.attr_str("approximate").unwrap_or("none") {
        "none" => {
            let s = em.mul_scalar(&x, std::f64::consts::FRAC_1_SQRT_2);
            em.op("Erf", &[&s], vec![])
        }
        "tanh" => {
            let x2 = em.mul(&x, &x);
            let x3 = em.mul(&x2, &x);
            let c = em.mul_scalar(&x3, 0.044715);
            let s = em.add(&x, &c);
            let k = em.mul_scalar(&s, (2.0 / std::f64::consts::PI).sqrt());
            em.op("Tanh", &[&k], vec![])
        }
        other => return Err(RewriteError::Node { node: n.name.clone(), op: n.op_type.clone(), detail: format!("approximate = '{other}'") }),
    };
    let one = em.scalar(1.0);
    let p1 = em.add(&inner, &one);
    let h = em.mul_scalar(&x, 0.5);
    let y_out = out_name(g, n, 0).unwrap_or_else(|| em.fresh("gelu_y"));
    em.node("Mul", &[&h, &p1], &[y_out], vec![]);
    Ok(())
}

/// Attaches the loss to `output` (a value of `g`); returns the scalar loss and
/// the declaration of the `labels` input.
pub(crate) fn loss(g: &Graph, output: usize, loss: Loss, em: &mut Emitter) -> Result<(String, pb::ValueInfoProto), RewriteError> {
    let v = &g.values[output];
    let shape = match (&v.shape, loss) {
        (Some(s), _) => Some(s.clone()),
        (None, Loss::Mse) => None,
        (None, Loss::CrossEntropy) => {
            return Err(RewriteError::Model { detail: format!("the rank of the first output '{}' is unknown; cross-entropy needs [N, C]", v.name) })
        }
    };
    let info = |elem: i32, dims: Option<&[Dim]>| super::emit::value_info("labels", elem, dims, &g.symbols);
    let out = v.name.clone();
    match loss {
        Loss::CrossEntropy => {
            let shape = shape.unwrap_or_default();
            if shape.len() != 2 {
                return Err(RewriteError::Model {
                    detail: format!("cross-entropy needs logits of shape [N, C]; the first output '{out}' has rank {}", shape.len()),
                });
            }
            let ls = em.op("LogSoftmax", &[&out], vec![a_int("axis", 1)]);
            let idx = em.unsqueeze("labels", &[1]);
            let picked = em.op("GatherElements", &[&ls, &idx], vec![a_int("axis", 1)]);
            let mean = em.reduce("ReduceMean", &picked, None, false);
            Ok((em.neg(&mean), info(INT64, Some(&shape[..1]))))
        }
        Loss::Mse => {
            let d = em.sub(&out, "labels");
            let d2 = em.mul(&d, &d);
            Ok((em.reduce("ReduceMean", &d2, None, false), info(em.float, shape.as_deref())))
        }
    }
}
