//! The forward half of the step graph: the model's nodes, with the ops whose
//! gradient rule is an expansion (normalizations, Gelu) written out in
//! primitive ops, MaxPool and Dropout asked for the side outputs their
//! gradients read, BatchNormalization's running statistics exposed, and the
//! loss attached to the first output.
use super::emit::{a_int, Emitter, INT64};
use super::{Loss, RewriteError};
use crate::ir::{AttrValue, Dim, Graph, Node, NodeParts, TypeDecl};
use crate::ops::{self, OpDef};

/// Lowers every node of `g` into `em`.
pub(crate) fn forward(g: &Graph, em: &mut Emitter) -> Result<Vec<(String, String)>, RewriteError> {
    let mut buffers = Vec::new();
    for n in &g.nodes {
        if n.is(&ops::IF) {
            if let Some(c) = known_condition(g, n) {
                inline_branch(g, n, c, em)?;
                continue;
            }
        }
        match n.def.and_then(|d| d.lowering) {
            Some(f) => {
                super::grad::check_arity(n)?;
                f(g, n, em, &mut buffers)?
            }
            _ => {
                let mut p = g.node_parts(n);
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
pub(crate) fn upgrade(g: &Graph, n: &Node, p: &mut NodeParts, em: &mut Emitter) -> Result<bool, RewriteError> {
    let Some(softmax) = n.def.filter(|d| **d == ops::SOFTMAX || **d == ops::LOG_SOFTMAX) else {
        upgrade_form(p, em);
        return Ok(true);
    };
    // Before 13, (Log)Softmax normalized the input flattened to 2-D at `axis`.
    let r = rank_of(g, n, 0)?;
    let axis = checked_axis(n, ops::softmax_axis_value(g.opset, n), r)?;
    p.attrs.retain(|a| a.0 != "axis");
    if axis + 1 == r {
        p.attrs.push(a_int("axis", axis as i64));
        return Ok(true);
    }
    let x = name(g, n, 0).unwrap_or_default();
    let flat = em.op(&ops::FLATTEN, &[&x], vec![a_int("axis", axis as i64)]);
    let y = em.op(softmax, &[&flat], vec![a_int("axis", 1)]);
    let s = em.shape(&x);
    let out = out_name(g, n, 0).unwrap_or_else(|| em.fresh("softmax_y"));
    em.node(&ops::RESHAPE, &[&y, &s], &[out], vec![]);
    Ok(false)
}

/// The opset 13 forms that need no shapes: axes and split sizes as inputs;
/// Dropout-10's ratio attribute dropped (it is the identity at inference,
/// the only mode it has).
pub(crate) fn upgrade_form(p: &mut NodeParts, em: &mut Emitter) {
    let attr_to_input = |p: &mut NodeParts, name: &str, em: &mut Emitter| {
        if let Some(i) = p.attrs.iter().position(|a| a.0 == name) {
            let values = match p.attrs.remove(i).1 {
                AttrValue::Ints(v) => v,
                _ => Vec::new(),
            };
            let c = em.ints(&values);
            p.inputs.truncate(1);
            p.inputs.push(c);
        }
    };
    let is = |def: &OpDef| ops::lookup("", &p.op_type).is_some_and(|d| d == def);
    if is(&ops::SQUEEZE) || is(&ops::UNSQUEEZE) || is(&ops::REDUCE_SUM) {
        attr_to_input(p, "axes", em);
    } else if is(&ops::SPLIT) {
        attr_to_input(p, "split", em);
    } else if is(&ops::DROPOUT) {
        p.attrs.retain(|a| a.0 != "ratio");
    }
}

/// The value of an If's condition when shape arithmetic fixes it (exporters
/// emit such Ifs, e.g. PyTorch's `squeeze(dim)` on a static dim).
pub(crate) fn known_condition(g: &Graph, n: &Node) -> Option<bool> {
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
pub(crate) fn inline_branch(g: &Graph, n: &Node, cond: bool, em: &mut Emitter) -> Result<(), RewriteError> {
    let which = if cond { "then_branch" } else { "else_branch" };
    let err = |detail: String| RewriteError::Node { node: n.name.clone(), op: n.op_type.clone(), detail };
    let Some(branch) = ops::if_branch(n, cond) else { return Err(err(format!("{which} is missing"))) };
    if branch.outputs.len() != n.outputs.len() {
        return Err(err(format!("{which} has {} outputs for {} node outputs", branch.outputs.len(), n.outputs.len())));
    }
    // What the branch defines: its nodes' outputs and its initializers (not its captures).
    let defined = branch.values.iter().filter(|v| v.producer.is_some() || v.initializer.is_some());
    for v in defined {
        if g.value_by_name(&v.name).is_some() {
            return Err(err(format!("{which} redefines '{}' of the outer graph", v.name)));
        }
    }
    for init in &branch.initializers {
        em.constant_named(init.tensor.clone(), &branch.values[init.value].name);
    }
    for m in &branch.nodes {
        let mut m = branch.node_parts(m);
        if g.opset < 13 && (m.domain.is_empty() || m.domain == "ai.onnx") {
            let coerced = ops::lookup("", &m.op_type).is_some_and(|d| *d == ops::SOFTMAX || *d == ops::LOG_SOFTMAX || *d == ops::HARDMAX)
                && m.attrs.iter().find(|a| a.0 == "axis").is_none_or(|a| !matches!(a.1, AttrValue::Int(-1)));
            if coerced {
                return Err(err(format!("{which} holds an opset-{} {} over a middle axis; re-export with opset 13 or later", g.opset, m.op_type)));
            }
            upgrade_form(&mut m, em);
        }
        em.nodes.push(m);
    }
    for (&inner, outer) in branch.outputs.iter().zip(&n.outputs) {
        if let Some(outer) = outer {
            bind(em, &branch.values[inner].name, &g.values[*outer].name);
        }
    }
    Ok(())
}

/// MaxPool's Indices and training Dropout's mask, which their gradients read.
pub(crate) fn side_outputs(g: &Graph, n: &Node, p: &mut NodeParts, em: &mut Emitter) -> Result<(), RewriteError> {
    match n.def {
        Some(d) if *d == ops::MAX_POOL && (p.outputs.len() < 2 || p.outputs[1].is_empty()) => {
            p.outputs.resize(1, String::new());
            p.outputs.push(em.fresh("maxpool_indices"));
        }
        Some(d) if *d == ops::DROPOUT && dropout_training(g, n)? && (p.outputs.len() < 2 || p.outputs[1].is_empty()) => {
            p.outputs.resize(1, String::new());
            p.outputs.push(em.fresh("dropout_mask"));
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

pub(crate) fn rank_of(g: &Graph, n: &Node, i: usize) -> Result<usize, RewriteError> {
    n.input(i).and_then(|v| g.values[v].rank()).ok_or_else(|| RewriteError::Node {
        node: n.name.clone(),
        op: n.op_type.clone(),
        detail: format!("the rank of input {i} is unknown"),
    })
}

/// A node's axis (its op's `axis` attribute, read through the op's
/// declaration) normalized against `rank`.
pub(crate) fn checked_axis(n: &Node, axis: i64, rank: usize) -> Result<usize, RewriteError> {
    crate::ir::norm_axis(axis, rank).ok_or_else(|| RewriteError::Node {
        node: n.name.clone(),
        op: n.op_type.clone(),
        detail: format!("axis {axis} out of range for rank {rank}"),
    })
}

pub(crate) fn name(g: &Graph, n: &Node, i: usize) -> Option<String> {
    n.input(i).map(|v| g.values[v].name.clone())
}

pub(crate) fn out_name(g: &Graph, n: &Node, i: usize) -> Option<String> {
    n.output(i).map(|v| g.values[v].name.clone())
}

/// `Identity` into a named output.
pub(crate) fn bind(em: &mut Emitter, from: &str, to: &str) {
    em.node(&ops::IDENTITY, &[from], &[to.to_string()], vec![]);
}

/// `(x - mean) / sqrt(var + eps)` over `axes`, with the mean and variance (keepdims).
pub(crate) fn standardize(em: &mut Emitter, x: &str, axes: &[i64], eps: f64) -> (String, String, String) {
    let mean = em.reduce(&ops::REDUCE_MEAN, x, Some(axes), true);
    let d = em.sub(x, &mean);
    let d2 = em.mul(&d, &d);
    let var = em.reduce(&ops::REDUCE_MEAN, &d2, Some(axes), true);
    let e = em.scalar(eps);
    let ve = em.add(&var, &e);
    let sd = em.op(&ops::SQRT, &[&ve], vec![]);
    let y = em.div(&d, &sd);
    (y, mean, var)
}

/// `[C] → [C, 1, ..., 1]` for an input of rank `rank` (channel axis 1).
pub(crate) fn per_channel(em: &mut Emitter, v: &str, rank: usize) -> String {
    if rank <= 2 {
        return v.to_string();
    }
    let axes: Vec<i64> = (1..rank as i64 - 1).collect();
    em.unsqueeze(v, &axes)
}

/// The axes from `axis` (the node's) to the last, which Layer and RMS
/// normalization normalize over.
pub(crate) fn trailing_axes(g: &Graph, n: &Node, axis: i64) -> Result<Vec<i64>, RewriteError> {
    let r = rank_of(g, n, 0)?;
    let axis = checked_axis(n, axis, r)?;
    Ok((axis as i64..r as i64).collect())
}

/// Attaches the loss to `output` (a value of `g`); returns the scalar loss and
/// the declaration of the `labels` input.
pub(crate) fn loss(g: &Graph, output: usize, loss: Loss, em: &mut Emitter) -> Result<(String, (String, Option<TypeDecl>)), RewriteError> {
    let v = &g.values[output];
    let shape = match (&v.shape, loss) {
        (Some(s), _) => Some(s.clone()),
        (None, Loss::Mse) => None,
        (None, Loss::CrossEntropy) => {
            return Err(RewriteError::Model { detail: format!("the rank of the first output '{}' is unknown; cross-entropy needs [N, C]", v.name) })
        }
    };
    let info = |elem: i32, dims: Option<&[Dim]>| super::emit::decl("labels", elem, dims);
    let out = v.name.clone();
    match loss {
        Loss::CrossEntropy => {
            let shape = shape.unwrap_or_default();
            if shape.len() != 2 {
                return Err(RewriteError::Model {
                    detail: format!("cross-entropy needs logits of shape [N, C]; the first output '{out}' has rank {}", shape.len()),
                });
            }
            let ls = em.op(&ops::LOG_SOFTMAX, &[&out], vec![a_int("axis", 1)]);
            let idx = em.unsqueeze("labels", &[1]);
            let picked = em.op(&ops::GATHER_ELEMENTS, &[&ls, &idx], vec![a_int("axis", 1)]);
            let mean = em.reduce(&ops::REDUCE_MEAN, &picked, None, false);
            Ok((em.neg(&mean), info(INT64, Some(&shape[..1]))))
        }
        Loss::Mse => {
            let d = em.sub(&out, "labels");
            let d2 = em.mul(&d, &d);
            Ok((em.reduce(&ops::REDUCE_MEAN, &d2, None, false), info(em.float, shape.as_deref())))
        }
    }
}
