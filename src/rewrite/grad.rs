//! Reverse-mode differentiation as a graph rewrite: the driver and the
//! toolkit the gradient rules are written with. Each op's rule lives in its
//! definition (`crate::ops`), written in standard ONNX ops.
//!
//! A rule gets the node, the gradient of each output (`None` where no
//! gradient reaches it) and which inputs need a gradient, and returns one
//! gradient per input, with that input's shape. Gradients of a value with
//! several consumers are summed by the driver ([`backward`]).
use super::emit::{a_int, Emitter, INT64};
use super::RewriteError;
use crate::ir::{Dim, Graph, Node, ValueId};
use std::collections::HashMap;

/// Lowers a node into primitive ops during the forward pass (its gradient is then theirs).
pub(crate) type ExpandFn = fn(&Graph, &Node, &mut Emitter, &mut Vec<(String, String)>) -> Result<(), RewriteError>;
/// Emits the input gradients of a node.
pub(crate) type GradFn = fn(&mut Ad, &Node, &[Option<String>], &[bool]) -> Result<Vec<Option<String>>, RewriteError>;

use crate::ops::{self, *};

/// The differentiable ops by family, for error messages.
pub(crate) fn supported() -> String {
    let mut families: Vec<(&str, Vec<&str>)> = Vec::new();
    for d in ops::all().filter(|d| !matches!(d.gradient, Gradient::None(_))) {
        match families.iter_mut().find(|(f, _)| *f == d.family()) {
            Some((_, list)) => list.push(d.name),
            None => families.push((d.family(), vec![d.name])),
        }
    }
    families.iter().map(|(f, list)| format!("{f}: {}", list.join(", "))).collect::<Vec<_>>().join("; ")
}

/// The ops with a gradient rule or a lowering (not the zero-gradient ones).
pub(crate) fn differentiable_ops() -> Vec<&'static str> {
    ops::all().filter(|d| matches!(d.gradient, Gradient::Rule(_) | Gradient::Lowered)).map(|d| d.name).collect()
}

/// Differentiation state: the forward graph and the emitter of backward nodes.
pub(crate) struct Ad<'g> {
    pub g: &'g Graph,
    pub em: &'g mut Emitter,
}

/// Emits the gradients of `loss` with respect to `wrt`; `None` where the loss
/// does not depend on a value.
pub(crate) fn backward(g: &Graph, em: &mut Emitter, loss: ValueId, wrt: &[ValueId]) -> Result<Vec<Option<String>>, RewriteError> {
    // Values that depend on a parameter through floating-point data.
    let mut requires = vec![false; g.values.len()];
    for &p in wrt {
        requires[p] = true;
    }
    for n in &g.nodes {
        // Subgraph reads count: an If or Loop body computing from a parameter
        // must not pass for a constant.
        if n.inputs.iter().flatten().chain(&n.implicit_inputs).any(|&v| requires[v]) {
            for &o in n.outputs.iter().flatten() {
                requires[o] = g.values[o].dtype.is_none_or(|d| d.is_float());
            }
        }
    }
    // Values the loss depends on.
    let mut reaches = vec![false; g.values.len()];
    reaches[loss] = true;
    for n in g.nodes.iter().rev() {
        if n.outputs.iter().flatten().any(|&o| reaches[o]) {
            for &i in n.inputs.iter().flatten().chain(&n.implicit_inputs) {
                reaches[i] = true;
            }
        }
    }
    let mut ad = Ad { g, em };
    let mut pending: HashMap<ValueId, Vec<String>> = HashMap::new();
    let seed = ad.em.scalar(1.0);
    pending.insert(loss, vec![seed]);
    for n in g.nodes.iter().rev() {
        if !n.outputs.iter().flatten().any(|&o| requires[o] && reaches[o]) {
            continue;
        }
        let dy: Vec<Option<String>> =
            n.outputs.iter().map(|o| o.and_then(|o| pending.remove(&o)).map(|gs| ad.em.sum(&gs))).collect();
        if dy.iter().all(Option::is_none) {
            continue;
        }
        let need: Vec<bool> = n.inputs.iter().map(|i| i.is_some_and(|v| requires[v] && reaches[v])).collect();
        let f = match n.def.map(|d| d.gradient) {
            Some(Gradient::Rule(f)) => f,
            Some(Gradient::Zero(_)) => continue,
            _ => return Err(RewriteError::Unsupported { node: n.name.clone(), op: n.op_type.clone(), supported: supported() }),
        };
        check_arity(n)?;
        let grads = f(&mut ad, n, &dy, &need)?;
        for (k, gr) in grads.into_iter().enumerate() {
            if let (Some(gr), Some(v), true) = (gr, n.input(k), need.get(k).copied().unwrap_or(false)) {
                pending.entry(v).or_default().push(gr);
            }
        }
    }
    Ok(wrt.iter().map(|p| pending.remove(p).map(|gs| ad.em.sum(&gs))).collect())
}

impl Ad<'_> {
    pub(crate) fn name(&self, n: &Node, i: usize) -> String {
        n.input(i).map(|v| self.g.values[v].name.clone()).unwrap_or_default()
    }

    pub(crate) fn out(&self, n: &Node, i: usize) -> String {
        n.output(i).map(|v| self.g.values[v].name.clone()).unwrap_or_default()
    }

    pub(crate) fn dims(&self, v: Option<ValueId>) -> Option<Vec<Dim>> {
        v.and_then(|v| self.g.values[v].shape.clone())
    }

    pub(crate) fn err(n: &Node, detail: impl Into<String>) -> RewriteError {
        RewriteError::Node { node: n.name.clone(), op: n.op_type.clone(), detail: detail.into() }
    }

    pub(crate) fn rank(&self, n: &Node, i: usize) -> Result<usize, RewriteError> {
        n.input(i).and_then(|v| self.g.values[v].rank()).ok_or_else(|| Self::err(n, format!("the rank of input {i} is unknown")))
    }

    /// Static dims of input `i` (all known), or an error naming what is missing.
    pub(crate) fn static_dims(&self, n: &Node, i: usize) -> Result<Vec<i64>, RewriteError> {
        self.dims(n.input(i))
            .and_then(|d| d.iter().map(|d| d.known()).collect::<Option<Vec<i64>>>())
            .ok_or_else(|| Self::err(n, format!("input {i} needs a static shape here (it is {})", self.shape_str(n.input(i)))))
    }

    pub(crate) fn shape_str(&self, v: Option<ValueId>) -> String {
        v.map(|v| self.g.shape_string(v)).unwrap_or_else(|| "absent".into())
    }

    pub(crate) fn ints_input(&self, n: &Node, i: usize) -> Option<Vec<i64>> {
        n.input(i).and_then(|v| self.g.values[v].ints.as_ref()).and_then(|d| d.iter().map(|d| d.known()).collect())
    }

    /// Sums `dy` (shaped like the broadcast result, dims `ydims`) down to the
    /// shape of `x` (dims `xdims`): static reduction axes where the dims tell,
    /// else computed from the runtime shapes.
    pub(crate) fn unbroadcast(&mut self, n: &Node, dy: &str, ydims: Option<Vec<Dim>>, x: &str, xdims: Option<Vec<Dim>>) -> Result<String, RewriteError> {
        let (yd, xd) = match (ydims, xdims) {
            (Some(y), Some(x)) if x.len() > y.len() => return Err(Self::err(n, "an operand has a higher rank than the result")),
            (Some(y), Some(x)) => (y, x),
            _ => (Vec::new(), Vec::new()),
        };
        let ranks_known = !(yd.is_empty() && xd.is_empty());
        let lead = yd.len() - xd.len();
        let mut axes: Vec<i64> = (0..lead as i64).collect();
        let mut dynamic = !ranks_known;
        for (i, &xdim) in xd.iter().enumerate() {
            let ydim = yd[i + lead];
            match (xdim, ydim) {
                (Dim::Known(1), Dim::Known(1)) => {}
                (Dim::Known(1), _) => axes.push((i + lead) as i64),
                (a, b) if a == b && a != Dim::Unknown => {}
                (Dim::Known(_), _) => {}
                _ => dynamic = true,
            }
        }
        if dynamic {
            // Reduce where x's (left-padded) dim is 1 and the gradient's is not.
            let sx = self.em.shape(x);
            let sy = self.em.shape(dy);
            let padded = if !ranks_known {
                // Ranks only known at run time: pad with (rank(dy) - rank(x)) ones.
                let ry = self.em.op(&ops::SIZE, &[&sy], vec![]);
                let rx = self.em.op(&ops::SIZE, &[&sx], vec![]);
                let d = self.em.sub(&ry, &rx);
                let flat = self.em.ints(&[1]);
                let d1 = self.em.reshape(&d, &flat);
                let ones = self.em.filled(&d1, 1.0, INT64);
                self.em.op(&ops::CONCAT, &[&ones, &sx], vec![a_int("axis", 0)])
            } else if lead > 0 {
                let ones = self.em.ints(&vec![1; lead]);
                self.em.op(&ops::CONCAT, &[&ones, &sx], vec![a_int("axis", 0)])
            } else {
                sx
            };
            let one = self.em.ints(&[1]);
            let x1 = self.em.op(&ops::EQUAL, &[&padded, &one], vec![]);
            let y1 = self.em.op(&ops::EQUAL, &[&sy, &one], vec![]);
            let yn = self.em.op(&ops::NOT, &[&y1], vec![]);
            let mask = self.em.op(&ops::AND, &[&x1, &yn], vec![]);
            let nz = self.em.op(&ops::NON_ZERO, &[&mask], vec![]);
            let flat = self.em.ints(&[-1]);
            let ax = self.em.reshape(&nz, &flat);
            let r = self.em.reduce_sum_dyn(dy, &ax);
            return Ok(self.em.reshape_like(&r, x));
        }
        if axes.is_empty() {
            return Ok(dy.to_string());
        }
        let r = self.em.reduce(&ops::REDUCE_SUM, dy, Some(&axes), true);
        if lead == 0 {
            return Ok(r);
        }
        Ok(self.em.reshape_like(&r, x))
    }

    /// `unbroadcast` for input `i` of node `n`, whose output 0 had gradient `dy`.
    pub(crate) fn unb(&mut self, n: &Node, i: usize, dy: &str) -> Result<String, RewriteError> {
        let x = self.name(n, i);
        let (yd, xd) = (self.dims(n.output(0)), self.dims(n.input(i)));
        self.unbroadcast(n, dy, yd, &x, xd)
    }

    pub(crate) fn zero(&mut self) -> String {
        self.em.scalar(0.0)
    }

    /// `x` cast to the model's float type when it has another type.
    pub(crate) fn as_float(&mut self, n: &Node, i: usize) -> String {
        let x = self.name(n, i);
        let is_model_float = n.input(i).and_then(|v| self.g.values[v].dtype).is_some_and(|d| d.is_float());
        if is_model_float {
            x
        } else {
            self.em.cast(&x, self.em.float)
        }
    }
}

/// Whether input `i` needs a gradient (false for absent inputs).
pub(crate) fn nd(need: &[bool], i: usize) -> bool {
    need.get(i).copied().unwrap_or(false)
}

/// Errors on a node with fewer inputs than its rule reads, or no first output.
pub(crate) fn check_arity(n: &Node) -> Result<(), RewriteError> {
    let present = n.inputs.iter().take_while(|i| i.is_some()).count();
    let need = n.def.map_or(1, |d| d.reads);
    if present < need || n.output(0).is_none() {
        return Err(Ad::err(n, format!("{present} leading inputs and {} outputs; the op needs at least {need} inputs and its first output", n.outputs.len())));
    }
    Ok(())
}

pub(crate) fn first(dy: &[Option<String>]) -> Option<String> {
    dy.first().cloned().flatten()
}

/// Returns all-`None` when output 0 has no gradient.
macro_rules! dy0 {
    ($n:expr, $dy:expr) => {
        match first($dy) {
            Some(d) => d,
            None => return Ok(vec![None; $n.inputs.len()]),
        }
    };
}
pub(crate) use dy0;

pub(crate) fn grads(n: &Node, list: Vec<(usize, String)>) -> Vec<Option<String>> {
    let mut out = vec![None; n.inputs.len()];
    for (i, g) in list {
        if i < out.len() {
            out[i] = Some(g);
        }
    }
    out
}

// ---- linear algebra ----

// ---- activations ----

/// `dy * d` where the derivative `d` is computed from x and y by `f`.
pub(crate) fn pointwise(ad: &mut Ad, n: &Node, dy: &[Option<String>], f: impl FnOnce(&mut Emitter, &str, &str) -> String) -> Result<Vec<Option<String>>, RewriteError> {
    let dy = dy0!(n, dy);
    let (x, y) = (ad.name(n, 0), ad.out(n, 0));
    let d = f(ad.em, &x, &y);
    Ok(grads(n, vec![(0, ad.em.mul(&dy, &d))]))
}

/// `where(x > 0, 1, neg)`.
pub(crate) fn positive_or(em: &mut Emitter, x: &str, neg: &str) -> String {
    let z = em.scalar(0.0);
    let pos = em.op(&ops::GREATER, &[x, &z], vec![]);
    let one = em.scalar(1.0);
    em.where_(&pos, &one, neg)
}

// ---- pooling ----

// ---- elementwise ----

// ---- layout ----

pub(crate) fn movement(ad: &mut Ad, n: &Node, dy: &[Option<String>], need: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    // Ops whose every output element is a copy of one input element (Tile,
    // DepthToSpace, SpaceToDepth, nearest Resize): run the op, with its
    // attributes, on the input's index map, then scatter-add the gradient.
    let dy = dy0!(n, dy);
    if need.iter().skip(1).any(|&b| b) {
        return Err(Ad::err(n, "only the data input has a gradient"));
    }
    if n.is(&ops::RESIZE) && ops::RESIZE_MODE.get(n) != "nearest" {
        return Err(Ad::err(n, "only mode = nearest has a gradient rule (a copy of one input element per output)"));
    }
    let mut attrs = Vec::new();
    for (name, value) in &n.attrs {
        use crate::ir::AttrValue as V;
        match value {
            V::Int(_) | V::Float(_) | V::Ints(_) | V::Str(_) => attrs.push((name.clone(), value.clone())),
            _ => return Err(Ad::err(n, format!("attribute '{name}' cannot be copied to the gradient"))),
        }
    }
    attrs.sort_by(|a, b| a.0.cmp(&b.0));
    let def = n.def.ok_or_else(|| Ad::err(n, "the op is not in the registry"))?;
    let x = ad.name(n, 0);
    let idx = index_map(ad, &x, 0);
    let others: Vec<String> = (1..n.inputs.len()).map(|i| ad.name(n, i)).collect();
    let apply = |ad: &mut Ad, data: &str| {
        let mut ins: Vec<&str> = vec![data];
        ins.extend(others.iter().map(String::as_str));
        ad.em.op(def, &ins, attrs.clone())
    };
    // The index map goes through the op in a type the op takes, exactly:
    // int64 for Tile, double for DepthToSpace/SpaceToDepth (exact below 2^53),
    // and for Resize (which onnxruntime runs on int32, not int64) as two int32
    // halves of 16 bits recombined after.
    let moved = match n.def {
        Some(d) if *d == ops::RESIZE => {
            let base = ad.em.scalar_of(65536.0, INT64);
            let hi = ad.em.div(&idx, &base);
            let lo = ad.em.op(&ops::MOD, &[&idx, &base], vec![]);
            let (hi, lo) = (ad.em.cast(&hi, super::emit::INT32), ad.em.cast(&lo, super::emit::INT32));
            let (rh, rl) = (apply(ad, &hi), apply(ad, &lo));
            let (rh, rl) = (ad.em.cast(&rh, INT64), ad.em.cast(&rl, INT64));
            let high = ad.em.mul(&rh, &base);
            ad.em.add(&high, &rl)
        }
        Some(d) if *d == ops::DEPTH_TO_SPACE || *d == ops::SPACE_TO_DEPTH => {
            let f = ad.em.cast(&idx, super::emit::DOUBLE);
            let r = apply(ad, &f);
            ad.em.cast(&r, INT64)
        }
        _ => apply(ad, &idx),
    };
    Ok(grads(n, vec![(0, scatter_flat(ad, &x, &moved, &dy, 0))]))
}

// ---- reductions ----

// ---- identity-like ----

