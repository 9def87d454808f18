//! Reverse-mode differentiation as a graph rewrite: one table of gradient
//! rules, grouped by op family, each written in standard ONNX ops.
//!
//! A rule gets the node, the gradient of each output (`None` where no
//! gradient reaches it) and which inputs need a gradient, and returns one
//! gradient per input, with that input's shape. Gradients of a value with
//! several consumers are summed by the driver ([`backward`]).
use super::emit::{a_int, a_ints, a_str, Emitter, INT64};
use super::RewriteError;
use crate::ir::{Dim, Graph, Node, ValueId};
use std::collections::HashMap;

/// Lowers a node into primitive ops during the forward pass (its gradient is then theirs).
pub(crate) type ExpandFn = fn(&Graph, &Node, &mut Emitter, &mut Vec<(String, String)>) -> Result<(), RewriteError>;
/// Emits the input gradients of a node.
pub(crate) type GradFn = fn(&mut Ad, &Node, &[Option<String>], &[bool]) -> Result<Vec<Option<String>>, RewriteError>;

/// How an op is differentiated.
#[derive(Clone, Copy)]
pub(crate) enum Rule {
    /// A gradient rule.
    Grad(GradFn),
    /// Written out in primitive ops by the forward lowering.
    Expand(ExpandFn),
    /// Piecewise constant, or no floating-point inputs: contributes no gradient.
    Zero,
}

use super::lower::{batch_norm, gelu, group_norm, instance_norm, layer_norm, lp_norm, rms_norm};
use Rule::{Expand as E, Grad as G, Zero as Z};

/// Every supported op, by family.
const RULES: &[(&str, &[(&str, Rule)])] = &[
    (
        "linear algebra",
        &[("Conv", G(conv)), ("ConvTranspose", G(conv_transpose)), ("Gemm", G(gemm)), ("MatMul", G(matmul)), ("Einsum", G(einsum))],
    ),
    (
        "normalization",
        &[
            ("BatchNormalization", E(batch_norm)),
            ("LayerNormalization", E(layer_norm)),
            ("InstanceNormalization", E(instance_norm)),
            ("GroupNormalization", E(group_norm)),
            ("RMSNormalization", E(rms_norm)),
            ("LpNormalization", E(lp_norm)),
        ],
    ),
    (
        "activation",
        &[
            ("Relu", G(relu)),
            ("LeakyRelu", G(leaky_relu)),
            ("PRelu", G(prelu)),
            ("Clip", G(clip)),
            ("Sigmoid", G(sigmoid)),
            ("HardSigmoid", G(hard_sigmoid)),
            ("HardSwish", G(hard_swish)),
            ("Tanh", G(tanh)),
            ("Gelu", E(gelu)),
            ("Erf", G(erf)),
            ("Elu", G(elu)),
            ("Selu", G(selu)),
            ("Celu", G(celu)),
            ("Softplus", G(softplus)),
            ("Softsign", G(softsign)),
            ("Mish", G(mish)),
            ("ThresholdedRelu", G(thresholded_relu)),
            ("Softmax", G(softmax)),
            ("LogSoftmax", G(log_softmax)),
        ],
    ),
    (
        "pooling",
        &[("MaxPool", G(max_pool)), ("AveragePool", G(average_pool)), ("GlobalAveragePool", G(global_average_pool)), ("GlobalMaxPool", G(extremum))],
    ),
    (
        "elementwise",
        &[
            ("Add", G(add)),
            ("Sub", G(sub)),
            ("Mul", G(mul)),
            ("Div", G(div)),
            ("Pow", G(pow)),
            ("Sqrt", G(sqrt)),
            ("Exp", G(exp)),
            ("Log", G(log)),
            ("Neg", G(neg)),
            ("Abs", G(abs)),
            ("Reciprocal", G(reciprocal)),
            ("Sum", G(sum)),
            ("Mean", G(mean)),
            ("Sin", G(sin)),
            ("Cos", G(cos)),
            ("Max", G(max_min)),
            ("Min", G(max_min)),
            ("Where", G(where_)),
        ],
    ),
    (
        "layout",
        &[
            ("Reshape", G(reshape)),
            ("Flatten", G(reshape)),
            ("Squeeze", G(reshape)),
            ("Unsqueeze", G(reshape)),
            ("Transpose", G(transpose)),
            ("Concat", G(concat)),
            ("Split", G(split)),
            ("Slice", G(slice)),
            ("Pad", G(pad)),
            ("Expand", G(expand)),
            ("Gather", G(gather)),
            ("GatherElements", G(gather_elements)),
            ("Tile", G(movement)),
            ("DepthToSpace", G(movement)),
            ("SpaceToDepth", G(movement)),
            ("Resize", G(movement)),
            ("Trilu", G(trilu)),
        ],
    ),
    (
        "reduction",
        &[
            ("ReduceMean", G(reduce)),
            ("ReduceSum", G(reduce)),
            ("ReduceL2", G(reduce)),
            ("ReduceL1", G(reduce)),
            ("ReduceSumSquare", G(reduce)),
            ("ReduceMax", G(extremum)),
            ("ReduceMin", G(extremum)),
            ("ReduceLogSumExp", G(reduce)),
            ("CumSum", G(cumsum)),
        ],
    ),
    ("identity", &[("Identity", G(identity)), ("Cast", G(cast)), ("Dropout", G(dropout))]),
    (
        "constant",
        &[
            ("Constant", Z),
            ("ConstantOfShape", Z),
            ("Shape", Z),
            ("Size", Z),
            ("Range", Z),
            ("Sign", Z),
            ("Floor", Z),
            ("Ceil", Z),
            ("Round", Z),
            ("Equal", Z),
            ("Less", Z),
            ("Greater", Z),
            ("LessOrEqual", Z),
            ("GreaterOrEqual", Z),
            ("Not", Z),
            ("And", Z),
            ("Or", Z),
            ("ArgMax", Z),
            ("ArgMin", Z),
            ("NonZero", Z),
        ],
    ),
];

/// The rule for a default-domain op.
pub(crate) fn rule(op: &str) -> Option<Rule> {
    RULES.iter().flat_map(|(_, ops)| ops.iter()).find(|(o, _)| *o == op).map(|(_, r)| *r)
}

/// The ops with a gradient rule or an expansion (not the zero-gradient ones).
pub(crate) fn differentiable_ops() -> Vec<&'static str> {
    RULES.iter().flat_map(|(_, ops)| ops.iter()).filter(|(_, r)| !matches!(r, Rule::Zero)).map(|(o, _)| *o).collect()
}

/// The supported ops, for error messages.
pub(crate) fn supported() -> String {
    RULES
        .iter()
        .map(|(family, ops)| format!("{family}: {}", ops.iter().map(|(o, _)| *o).collect::<Vec<_>>().join(", ")))
        .collect::<Vec<_>>()
        .join("; ")
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
        let f = match (n.is_default_domain(), rule(&n.op_type)) {
            (true, Some(Rule::Grad(f))) => f,
            (true, Some(Rule::Zero)) => continue,
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
    fn name(&self, n: &Node, i: usize) -> String {
        n.input(i).map(|v| self.g.values[v].name.clone()).unwrap_or_default()
    }

    fn out(&self, n: &Node, i: usize) -> String {
        n.output(i).map(|v| self.g.values[v].name.clone()).unwrap_or_default()
    }

    fn dims(&self, v: Option<ValueId>) -> Option<Vec<Dim>> {
        v.and_then(|v| self.g.values[v].shape.clone())
    }

    fn err(n: &Node, detail: impl Into<String>) -> RewriteError {
        RewriteError::Node { node: n.name.clone(), op: n.op_type.clone(), detail: detail.into() }
    }

    fn rank(&self, n: &Node, i: usize) -> Result<usize, RewriteError> {
        n.input(i).and_then(|v| self.g.values[v].rank()).ok_or_else(|| Self::err(n, format!("the rank of input {i} is unknown")))
    }

    /// Static dims of input `i` (all known), or an error naming what is missing.
    fn static_dims(&self, n: &Node, i: usize) -> Result<Vec<i64>, RewriteError> {
        self.dims(n.input(i))
            .and_then(|d| d.iter().map(|d| d.known()).collect::<Option<Vec<i64>>>())
            .ok_or_else(|| Self::err(n, format!("input {i} needs a static shape here (it is {})", self.shape_str(n.input(i)))))
    }

    fn shape_str(&self, v: Option<ValueId>) -> String {
        v.map(|v| self.g.shape_string(v)).unwrap_or_else(|| "absent".into())
    }

    fn ints_input(&self, n: &Node, i: usize) -> Option<Vec<i64>> {
        n.input(i).and_then(|v| self.g.values[v].ints.as_ref()).and_then(|d| d.iter().map(|d| d.known()).collect())
    }

    /// Sums `dy` (shaped like the broadcast result, dims `ydims`) down to the
    /// shape of `x` (dims `xdims`): static reduction axes where the dims tell,
    /// else computed from the runtime shapes.
    fn unbroadcast(&mut self, n: &Node, dy: &str, ydims: Option<Vec<Dim>>, x: &str, xdims: Option<Vec<Dim>>) -> Result<String, RewriteError> {
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
                let ry = self.em.op("Size", &[&sy], vec![]);
                let rx = self.em.op("Size", &[&sx], vec![]);
                let d = self.em.sub(&ry, &rx);
                let flat = self.em.ints(&[1]);
                let d1 = self.em.reshape(&d, &flat);
                let ones = self.em.filled(&d1, 1.0, INT64);
                self.em.op("Concat", &[&ones, &sx], vec![a_int("axis", 0)])
            } else if lead > 0 {
                let ones = self.em.ints(&vec![1; lead]);
                self.em.op("Concat", &[&ones, &sx], vec![a_int("axis", 0)])
            } else {
                sx
            };
            let one = self.em.ints(&[1]);
            let x1 = self.em.op("Equal", &[&padded, &one], vec![]);
            let y1 = self.em.op("Equal", &[&sy, &one], vec![]);
            let yn = self.em.op("Not", &[&y1], vec![]);
            let mask = self.em.op("And", &[&x1, &yn], vec![]);
            let nz = self.em.op("NonZero", &[&mask], vec![]);
            let flat = self.em.ints(&[-1]);
            let ax = self.em.reshape(&nz, &flat);
            let r = self.em.reduce_sum_dyn(dy, &ax);
            return Ok(self.em.reshape_like(&r, x));
        }
        if axes.is_empty() {
            return Ok(dy.to_string());
        }
        let r = self.em.reduce("ReduceSum", dy, Some(&axes), true);
        if lead == 0 {
            return Ok(r);
        }
        Ok(self.em.reshape_like(&r, x))
    }

    /// `unbroadcast` for input `i` of node `n`, whose output 0 had gradient `dy`.
    fn unb(&mut self, n: &Node, i: usize, dy: &str) -> Result<String, RewriteError> {
        let x = self.name(n, i);
        let (yd, xd) = (self.dims(n.output(0)), self.dims(n.input(i)));
        self.unbroadcast(n, dy, yd, &x, xd)
    }

    fn zero(&mut self) -> String {
        self.em.scalar(0.0)
    }

    /// `x` cast to the model's float type when it has another type.
    fn as_float(&mut self, n: &Node, i: usize) -> String {
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
fn nd(need: &[bool], i: usize) -> bool {
    need.get(i).copied().unwrap_or(false)
}

/// Leading inputs a rule (or expansion) reads; fewer is a malformed node.
fn min_inputs(op: &str) -> usize {
    match op {
        "BatchNormalization" => 5,
        "Where" | "InstanceNormalization" | "GroupNormalization" => 3,
        "RMSNormalization" => 2,
        "Add" | "Sub" | "Mul" | "Div" | "Pow" | "MatMul" | "Gemm" | "Conv" | "ConvTranspose" | "PRelu" | "Gather" | "GatherElements"
        | "Reshape" | "Expand" | "Pad" | "Slice" => 2,
        _ => 1,
    }
}

/// Errors on a node with fewer inputs than its rule reads, or no first output.
pub(crate) fn check_arity(n: &Node) -> Result<(), RewriteError> {
    let present = n.inputs.iter().take_while(|i| i.is_some()).count();
    let need = min_inputs(&n.op_type);
    if present < need || n.output(0).is_none() {
        return Err(Ad::err(n, format!("{present} leading inputs and {} outputs; the op needs at least {need} inputs and its first output", n.outputs.len())));
    }
    Ok(())
}

fn first(dy: &[Option<String>]) -> Option<String> {
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

fn grads(n: &Node, list: Vec<(usize, String)>) -> Vec<Option<String>> {
    let mut out = vec![None; n.inputs.len()];
    for (i, g) in list {
        if i < out.len() {
            out[i] = Some(g);
        }
    }
    out
}

// ---- linear algebra ----

/// A convolution's `(strides, dilations, pads, group)`, validated against its weight.
type ConvAttrs = (Vec<i64>, Vec<i64>, Vec<i64>, i64);

fn conv_attrs(ad: &Ad, n: &Node, sp: usize) -> Result<ConvAttrs, RewriteError> {
    let w = ad.static_dims(n, 1)?;
    let group = n.attr_int("group", 1);
    if w.len() != sp + 2 || group <= 0 || w[0] % group != 0 {
        return Err(Ad::err(n, format!("weight of shape {w:?} does not fit a {sp}-D convolution with {group} groups")));
    }
    let k = &w[2..];
    let strides = n.attr_ints("strides").map(<[i64]>::to_vec).unwrap_or_else(|| vec![1; sp]);
    let dil = n.attr_ints("dilations").map(<[i64]>::to_vec).unwrap_or_else(|| vec![1; sp]);
    // Checked before SAME padding computes with them.
    check_window(n, k, &strides, &dil, &vec![0; 2 * sp])?;
    let pads = match n.attr_str("auto_pad").unwrap_or("NOTSET") {
        "NOTSET" => n.attr_ints("pads").map(<[i64]>::to_vec).unwrap_or_else(|| vec![0; 2 * sp]),
        "VALID" => vec![0; 2 * sp],
        other => {
            // SAME_UPPER / SAME_LOWER: explicit pads from the static input size.
            let x = ad.static_dims(n, 0)?;
            let overflow = || Ad::err(n, "dimension arithmetic overflows");
            let mut pads = vec![0; 2 * sp];
            for i in 0..sp {
                let (h, s, d) = (x[2 + i], strides[i], dil[i]);
                let out = h.checked_add(s - 1).ok_or_else(overflow)? / s;
                let span = (out - 1).checked_mul(s).and_then(|v| v.checked_add((k[i] - 1).checked_mul(d)?)).ok_or_else(overflow)?;
                let total = (span + 1 - h).max(0);
                let (b, e) = if other == "SAME_LOWER" { (total - total / 2, total / 2) } else { (total / 2, total - total / 2) };
                pads[i] = b;
                pads[sp + i] = e;
            }
            pads
        }
    };
    check_window(n, k, &strides, &dil, &pads)?;
    if pads.iter().any(|&p| p > 1 << 32) {
        return Err(Ad::err(n, "pads beyond 2^32 are not supported"));
    }
    Ok((strides, dil, pads, group))
}

/// Kernel, strides, dilations and pads of matching lengths, positive and non-negative.
fn check_window(n: &Node, k: &[i64], strides: &[i64], dil: &[i64], pads: &[i64]) -> Result<(), RewriteError> {
    let sp = k.len();
    if strides.len() != sp || dil.len() != sp || pads.len() != 2 * sp {
        return Err(Ad::err(n, "kernel, strides, dilations and pads do not match the input rank"));
    }
    if strides.iter().chain(dil).chain(k).any(|&v| v <= 0) || pads.iter().any(|&p| p < 0) {
        return Err(Ad::err(n, "kernel, strides and dilations must be positive and pads non-negative"));
    }
    Ok(())
}

/// Output paddings that make a transposed convolution give back `x`'s spatial size.
fn output_padding(n: &Node, x: &[i64], k: &[i64], strides: &[i64], dil: &[i64], pads: &[i64]) -> Result<Vec<i64>, RewriteError> {
    let sp = k.len();
    if x.len() != sp {
        return Err(Ad::err(n, "the kernel does not match the input rank"));
    }
    check_window(n, k, strides, dil, pads)?;
    let overflow = || Ad::err(n, "dimension arithmetic overflows");
    (0..sp)
        .map(|i| {
            let padded = x[i].checked_add(pads[i]).and_then(|v| v.checked_add(pads[sp + i])).ok_or_else(overflow)?;
            let span = (k[i] - 1).checked_mul(dil[i]).and_then(|v| v.checked_add(1)).ok_or_else(overflow)?;
            if padded < span || strides[i] <= 0 {
                return Err(Ad::err(n, "the kernel is larger than the padded input"));
            }
            let out = (padded - span) / strides[i] + 1;
            let covered = (out - 1).checked_mul(strides[i]).and_then(|v| v.checked_add(span)).ok_or_else(overflow)?;
            Ok(padded - covered)
        })
        .collect()
}

fn conv(ad: &mut Ad, n: &Node, dy: &[Option<String>], need: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    let dy = dy0!(n, dy);
    let r = ad.rank(n, 0)?;
    if r < 3 {
        return Err(Ad::err(n, "input of rank < 3"));
    }
    let sp = r - 2;
    let (strides, dil, pads, group) = conv_attrs(ad, n, sp)?;
    let w_dims = ad.static_dims(n, 1)?;
    let k = &w_dims[2..];
    // With static spatial dims the window arithmetic is checked here (and
    // gives dx's output padding).
    let x_sp: Option<Vec<i64>> = ad.dims(n.input(0)).and_then(|d| d[2..].iter().map(|d| d.known()).collect());
    let opad = x_sp.map(|x_sp| output_padding(n, &x_sp, k, &strides, &dil, &pads)).transpose()?;
    let mut out = Vec::new();
    if nd(need, 2) {
        let axes: Vec<i64> = std::iter::once(0).chain(2..r as i64).collect();
        out.push((2, ad.em.reduce("ReduceSum", &dy, Some(&axes), false)));
    }
    let (x, w) = (ad.name(n, 0), ad.name(n, 1));
    if nd(need, 0) {
        // dx = convT(dy, W). Rows past the last window get no gradient: with
        // static dims an output padding restores them, else a zero pad
        // computed from the runtime shapes.
        let attrs = |pads: &[i64]| vec![a_ints("strides", &strides), a_ints("dilations", &dil), a_ints("pads", pads), a_int("group", group), a_ints("kernel_shape", k)];
        match &opad {
            Some(opad) => {
                let mut a = attrs(&pads);
                a.push(a_ints("output_padding", opad));
                out.push((0, ad.em.op("ConvTranspose", &[&dy, &w], a)));
            }
            None => {
                let part = ad.em.op("ConvTranspose", &[&dy, &w], attrs(&begin_pads_only(&pads)));
                out.push((0, fit_to_input(ad, &part, &x, r)));
            }
        }
    }
    if nd(need, 1) {
        let g = ConvGeom { strides: &strides, dil: &dil, pads: &pads, group, k };
        out.push((1, weight_grad(ad, &x, &dy, w_dims[0], w_dims[1], &g)));
    }
    Ok(grads(n, out))
}

/// Convolution geometry shared by the weight-gradient helper.
struct ConvGeom<'a> {
    strides: &'a [i64],
    dil: &'a [i64],
    pads: &'a [i64],
    group: i64,
    k: &'a [i64],
}

/// `prefix` followed by the runtime dims of `t` from axis 2 on, as a shape.
fn shape_with_prefix(ad: &mut Ad, prefix: &[i64], t: &str) -> String {
    let p = ad.em.ints(prefix);
    let rest = ad.em.op("Shape", &[t], vec![a_int("start", 2)]);
    ad.em.op("Concat", &[&p, &rest], vec![a_int("axis", 0)])
}

/// The weight gradient of `y = conv(x, W)` (W: `[m, cg, k...]`, `group` groups):
/// `dW[m, c, κ] = Σ_n Σ_o dy[n, m, o] · x_pad[n, c, o·s + κ·d]`. For each
/// kernel offset κ, a strided slice of the padded input against the
/// gradient is one batched matrix product over the groups
/// (`[G, cg, N·O] × [G, N·O, mg]`), so the work is a few large GEMMs.
/// Spatial dims are read at run time.
fn weight_grad(ad: &mut Ad, x: &str, dy: &str, m: i64, cg: i64, c: &ConvGeom) -> String {
    let (sp, group) = (c.k.len(), c.group);
    let mg = m / group;
    let rest: Vec<i64> = (0..sp as i64).collect();
    // x: [N, G·cg, S...] → padded → [G, cg, N, S'...]
    let xp = if c.pads.iter().any(|&p| p != 0) {
        let pads: Vec<i64> = [0, 0].into_iter().chain(c.pads[..sp].iter().copied()).chain([0, 0]).chain(c.pads[sp..].iter().copied()).collect();
        let pads = ad.em.ints(&pads);
        ad.em.op("Pad", &[x, &pads], vec![])
    } else {
        x.to_string()
    };
    let shape = shape_with_prefix(ad, &[0, group, cg], &xp);
    let xr = ad.em.reshape(&xp, &shape);
    let perm: Vec<i64> = [1, 2, 0].into_iter().chain(rest.iter().map(|a| a + 3)).collect();
    let xt = ad.em.op("Transpose", &[&xr], vec![a_ints("perm", &perm)]);
    // dy: [N, G·mg, O...] → [G, N·O, mg]
    let shape = shape_with_prefix(ad, &[0, group, mg], dy);
    let yr = ad.em.reshape(dy, &shape);
    let perm: Vec<i64> = [1, 0].into_iter().chain(rest.iter().map(|a| a + 3)).chain([2]).collect();
    let yt = ad.em.op("Transpose", &[&yr], vec![a_ints("perm", &perm)]);
    let flat = ad.em.ints(&[group, -1, mg]);
    let ym = ad.em.reshape(&yt, &flat);
    let xflat = ad.em.ints(&[group, cg, -1]);
    let axes: Vec<i64> = rest.iter().map(|a| a + 3).collect();
    let axes = ad.em.ints(&axes);
    let steps = ad.em.ints(c.strides);
    // A window for offset κ spans κ·d .. κ·d + (O - 1)·s + 1 along each axis.
    let o = ad.em.op("Shape", &[dy], vec![a_int("start", 2)]);
    let os = ad.em.mul(&o, &steps);
    let offsets: usize = c.k.iter().map(|&k| k as usize).product();
    let mut parts = Vec::with_capacity(offsets);
    for flat_off in 0..offsets {
        // The kernel offset κ (row-major over the kernel dims).
        let mut rem = flat_off;
        let mut kappa = vec![0i64; sp];
        for i in (0..sp).rev() {
            kappa[i] = (rem % c.k[i] as usize) as i64;
            rem /= c.k[i] as usize;
        }
        let starts: Vec<i64> = (0..sp).map(|i| kappa[i] * c.dil[i]).collect();
        let shift: Vec<i64> = (0..sp).map(|i| starts[i] - c.strides[i] + 1).collect();
        let (starts, shift) = (ad.em.ints(&starts), ad.em.ints(&shift));
        let ends = ad.em.add(&os, &shift);
        let window = ad.em.op("Slice", &[&xt, &starts, &ends, &axes, &steps], vec![]);
        let wm = ad.em.reshape(&window, &xflat);
        let prod = ad.em.op("MatMul", &[&wm, &ym], vec![]);
        parts.push(ad.em.unsqueeze(&prod, &[3]));
    }
    // [G, cg, mg, K] → [G, mg, cg, k...] → [m, cg, k...]
    let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
    let all = if refs.len() == 1 { parts[0].clone() } else { ad.em.op("Concat", &refs, vec![a_int("axis", 3)]) };
    let shape: Vec<i64> = [group, cg, mg].into_iter().chain(c.k.iter().copied()).collect();
    let shape = ad.em.ints(&shape);
    let kr = ad.em.reshape(&all, &shape);
    let perm: Vec<i64> = [0, 2, 1].into_iter().chain(rest.iter().map(|a| a + 3)).collect();
    let kt = ad.em.op("Transpose", &[&kr], vec![a_ints("perm", &perm)]);
    let shape: Vec<i64> = [m, cg].into_iter().chain(c.k.iter().copied()).collect();
    let shape = ad.em.ints(&shape);
    ad.em.reshape(&kt, &shape)
}

fn conv_transpose(ad: &mut Ad, n: &Node, dy: &[Option<String>], need: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    // y = convT(x, W) is the input gradient of a convolution: dx = conv(dy, W),
    // and dW is a convolution's weight gradient with x and dy swapped.
    let dy = dy0!(n, dy);
    let r = ad.rank(n, 0)?;
    if r < 3 {
        return Err(Ad::err(n, "input of rank < 3"));
    }
    let sp = r - 2;
    if n.attr_ints("output_shape").is_some() || !matches!(n.attr_str("auto_pad").unwrap_or("NOTSET"), "NOTSET" | "VALID") {
        return Err(Ad::err(n, "output_shape and SAME auto_pad are not supported; give explicit pads"));
    }
    let (strides, dil, pads, group) = conv_attrs(ad, n, sp)?;
    let w_dims = ad.static_dims(n, 1)?;
    let k = &w_dims[2..];
    let mut out = Vec::new();
    if nd(need, 2) {
        let axes: Vec<i64> = std::iter::once(0).chain(2..r as i64).collect();
        out.push((2, ad.em.reduce("ReduceSum", &dy, Some(&axes), false)));
    }
    let (x, w) = (ad.name(n, 0), ad.name(n, 1));
    if nd(need, 0) {
        let attrs = vec![a_ints("strides", &strides), a_ints("dilations", &dil), a_ints("pads", &pads), a_int("group", group), a_ints("kernel_shape", k)];
        out.push((0, ad.em.op("Conv", &[&dy, &w], attrs)));
    }
    if nd(need, 1) {
        // The forward's output_padding rows lie past every window of the
        // swapped convolution, so the slices never reach them.
        let g = ConvGeom { strides: &strides, dil: &dil, pads: &pads, group, k };
        out.push((1, weight_grad(ad, &dy, &x, w_dims[0], w_dims[1], &g)));
    }
    Ok(grads(n, out))
}

fn gemm(ad: &mut Ad, n: &Node, dy: &[Option<String>], need: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    let dy = dy0!(n, dy);
    let alpha = n.attr_float("alpha", 1.0);
    let beta = n.attr_float("beta", 1.0);
    let (ta, tb) = (n.attr_int("transA", 0) != 0, n.attr_int("transB", 0) != 0);
    let (a, b) = (ad.name(n, 0), ad.name(n, 1));
    let gm = |em: &mut Emitter, x: &str, y: &str, t1: bool, t2: bool| {
        em.op("Gemm", &[x, y], vec![super::emit::a_float("alpha", alpha), a_int("transA", t1 as i64), a_int("transB", t2 as i64)])
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

fn matmul(ad: &mut Ad, n: &Node, dy: &[Option<String>], need: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    let dy = dy0!(n, dy);
    let (ra, rb) = (ad.rank(n, 0)?, ad.rank(n, 1)?);
    if ra == 0 || rb == 0 {
        return Err(Ad::err(n, "an input has rank 0; MatMul needs rank 1 or more"));
    }
    let (mut a, mut b) = (ad.name(n, 0), ad.name(n, 1));
    let (mut ad_dims, mut bd_dims) = (ad.dims(n.input(0)).unwrap_or_default(), ad.dims(n.input(1)).unwrap_or_default());
    let mut g = dy;
    let mut gd = ad.dims(n.output(0)).ok_or_else(|| Ad::err(n, "output shape unknown"))?;
    // Vectors become matrices; the gradient gets the dims the product dropped.
    if ra == 1 {
        a = ad.em.unsqueeze(&a, &[0]);
        ad_dims.insert(0, Dim::Known(1));
        let at = gd.len().saturating_sub(if rb == 1 { 0 } else { 1 });
        g = ad.em.unsqueeze(&g, &[at as i64]);
        gd.insert(at, Dim::Known(1));
    }
    if rb == 1 {
        b = ad.em.unsqueeze(&b, &[1]);
        bd_dims.push(Dim::Known(1));
        g = ad.em.unsqueeze(&g, &[gd.len() as i64]);
        gd.push(Dim::Known(1));
    }
    // Inconsistent declared or inferred ranks (found by fuzzing) would make
    // the index arithmetic below underflow.
    if gd.len() < 2 || gd.len() < ad_dims.len().max(bd_dims.len()) {
        return Err(Ad::err(n, &format!("output rank {} does not fit inputs of rank {ra} and {rb}", gd.len().saturating_sub(usize::from(ra == 1) + usize::from(rb == 1)))));
    }
    let t_last = |em: &mut Emitter, x: &str, r: usize| {
        let mut perm: Vec<i64> = (0..r as i64).collect();
        perm.swap(r - 2, r - 1);
        em.op("Transpose", &[x], vec![a_ints("perm", &perm)])
    };
    let mut out = Vec::new();
    let batch = &gd[..gd.len() - 2];
    if nd(need, 0) {
        let bt = t_last(ad.em, &b, bd_dims.len());
        let ga = ad.em.op("MatMul", &[&g, &bt], vec![]);
        let gdims: Vec<Dim> = batch.iter().copied().chain(ad_dims[ad_dims.len() - 2..].iter().copied()).collect();
        let r = ad.unbroadcast(n, &ga, Some(gdims), &a, Some(ad_dims.clone()))?;
        let orig = ad.name(n, 0);
        out.push((0, if ra == 1 { ad.em.reshape_like(&r, &orig) } else { r }));
    }
    if nd(need, 1) {
        let at = t_last(ad.em, &a, ad_dims.len());
        let gb = ad.em.op("MatMul", &[&at, &g], vec![]);
        let gdims: Vec<Dim> = batch.iter().copied().chain(bd_dims[bd_dims.len() - 2..].iter().copied()).collect();
        let r = ad.unbroadcast(n, &gb, Some(gdims), &b, Some(bd_dims.clone()))?;
        let orig = ad.name(n, 1);
        out.push((1, if rb == 1 { ad.em.reshape_like(&r, &orig) } else { r }));
    }
    Ok(grads(n, out))
}

fn einsum(ad: &mut Ad, n: &Node, dy: &[Option<String>], need: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    // For y = einsum(a, b -> o): da = einsum(o, b -> a') where a' keeps the
    // letters of `a` that appear in `o` or `b`; letters only `a` sums over
    // are broadcast back.
    let dy = dy0!(n, dy);
    let eq: String = n.attr_str("equation").unwrap_or("").chars().filter(|c| !c.is_whitespace()).collect();
    let (lhs, out) = match eq.split_once("->") {
        Some((l, o)) => (l.to_string(), o.to_string()),
        None => {
            // Implicit output: the letters used once, in alphabetical order.
            let mut letters: Vec<char> = eq.chars().filter(|c| c.is_ascii_alphabetic()).collect();
            letters.sort_unstable();
            let once: String = letters.iter().filter(|&&c| eq.chars().filter(|&d| d == c).count() == 1).collect();
            (eq.clone(), once)
        }
    };
    let terms: Vec<&str> = lhs.split(',').collect();
    let plain = |t: &str| t.chars().all(|c| c.is_ascii_alphabetic()) && t.chars().enumerate().all(|(i, c)| !t[..i].contains(c));
    if terms.len() != n.inputs.len() || terms.len() > 2 || !terms.iter().all(|t| plain(t)) || !plain(&out) {
        return Err(Ad::err(n, format!("the gradient supports one or two operands without ellipsis or repeated letters, not '{eq}'")));
    }
    let mut res = Vec::new();
    for (i, term) in terms.iter().enumerate() {
        if !nd(need, i) {
            continue;
        }
        let other = terms.get(1 - i).filter(|_| terms.len() == 2);
        let kept: String = term.chars().filter(|&c| out.contains(c) || other.is_some_and(|o| o.contains(c))).collect();
        let g = match other {
            Some(o) => {
                let b = ad.name(n, 1 - i);
                ad.em.op("Einsum", &[&dy, &b], vec![a_str("equation", &format!("{out},{o}->{kept}"))])
            }
            None => ad.em.op("Einsum", &[&dy], vec![a_str("equation", &format!("{out}->{kept}"))]),
        };
        let g = if kept.len() == term.len() {
            g
        } else {
            let missing: Vec<i64> = term.chars().enumerate().filter(|(_, c)| !kept.contains(*c)).map(|(k, _)| k as i64).collect();
            let u = ad.em.unsqueeze(&g, &missing);
            let x = ad.name(n, i);
            let s = ad.em.shape(&x);
            ad.em.op("Expand", &[&u, &s], vec![])
        };
        res.push((i, g));
    }
    Ok(grads(n, res))
}

// ---- activations ----

fn relu(ad: &mut Ad, n: &Node, dy: &[Option<String>], _: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    let dy = dy0!(n, dy);
    let x = ad.name(n, 0);
    let z = ad.zero();
    let pos = ad.em.op("Greater", &[&x, &z], vec![]);
    Ok(grads(n, vec![(0, ad.em.where_(&pos, &dy, &z))]))
}

fn leaky_relu(ad: &mut Ad, n: &Node, dy: &[Option<String>], _: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    let dy = dy0!(n, dy);
    let x = ad.name(n, 0);
    let z = ad.zero();
    let pos = ad.em.op("Greater", &[&x, &z], vec![]);
    let neg = ad.em.mul_scalar(&dy, n.attr_float("alpha", 0.01) as f64);
    Ok(grads(n, vec![(0, ad.em.where_(&pos, &dy, &neg))]))
}

fn prelu(ad: &mut Ad, n: &Node, dy: &[Option<String>], need: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    let dy = dy0!(n, dy);
    let (x, slope) = (ad.name(n, 0), ad.name(n, 1));
    let z = ad.zero();
    let pos = ad.em.op("Greater", &[&x, &z], vec![]);
    let mut out = Vec::new();
    if nd(need, 0) {
        let neg = ad.em.mul(&dy, &slope);
        out.push((0, ad.em.where_(&pos, &dy, &neg)));
    }
    if nd(need, 1) {
        let gx = ad.em.mul(&dy, &x);
        let gs = ad.em.where_(&pos, &z, &gx);
        out.push((1, ad.unb(n, 1, &gs)?));
    }
    Ok(grads(n, out))
}

fn clip(ad: &mut Ad, n: &Node, dy: &[Option<String>], need: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    let dy = dy0!(n, dy);
    if need.iter().skip(1).any(|&b| b) {
        return Err(Ad::err(n, "the gradient with respect to the clip bounds is not supported"));
    }
    let x = ad.name(n, 0);
    let mut mask: Option<String> = None;
    // Opset 11+: bounds are inputs; before, attributes.
    let bounds = [(1, "GreaterOrEqual", "min"), (2, "LessOrEqual", "max")];
    for (i, cmp, attr) in bounds {
        let bound = match n.input(i) {
            Some(_) => Some(ad.name(n, i)),
            None => n.attrs.get(attr).map(|_| ad.em.scalar(n.attr_float(attr, 0.0) as f64)),
        };
        if let Some(b) = bound {
            let c = ad.em.op(cmp, &[&x, &b], vec![]);
            mask = Some(match mask {
                Some(m) => ad.em.op("And", &[&m, &c], vec![]),
                None => c,
            });
        }
    }
    let g = match mask {
        Some(m) => {
            let z = ad.zero();
            ad.em.where_(&m, &dy, &z)
        }
        None => dy,
    };
    Ok(grads(n, vec![(0, g)]))
}

fn sigmoid(ad: &mut Ad, n: &Node, dy: &[Option<String>], _: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    let dy = dy0!(n, dy);
    let y = ad.out(n, 0);
    let one = ad.em.scalar(1.0);
    let om = ad.em.sub(&one, &y);
    let d = ad.em.mul(&y, &om);
    Ok(grads(n, vec![(0, ad.em.mul(&dy, &d))]))
}

fn hard_sigmoid(ad: &mut Ad, n: &Node, dy: &[Option<String>], _: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    let dy = dy0!(n, dy);
    let (alpha, beta) = (n.attr_float("alpha", 0.2) as f64, n.attr_float("beta", 0.5) as f64);
    let x = ad.name(n, 0);
    let ax = ad.em.mul_scalar(&x, alpha);
    let b = ad.em.scalar(beta);
    let z = ad.em.add(&ax, &b);
    let (zero, one) = (ad.zero(), ad.em.scalar(1.0));
    let above = ad.em.op("Greater", &[&z, &zero], vec![]);
    let below = ad.em.op("Less", &[&z, &one], vec![]);
    let inside = ad.em.op("And", &[&above, &below], vec![]);
    let scaled = ad.em.mul_scalar(&dy, alpha);
    Ok(grads(n, vec![(0, ad.em.where_(&inside, &scaled, &zero))]))
}

fn hard_swish(ad: &mut Ad, n: &Node, dy: &[Option<String>], _: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    // y = x·clip(x/6 + 1/2, 0, 1): 0 below -3, 1 above 3, x/3 + 1/2 between.
    let dy = dy0!(n, dy);
    let x = ad.name(n, 0);
    let (m3, p3) = (ad.em.scalar(-3.0), ad.em.scalar(3.0));
    let lo = ad.em.op("Less", &[&x, &m3], vec![]);
    let hi = ad.em.op("Greater", &[&x, &p3], vec![]);
    let x3 = ad.em.mul_scalar(&x, 1.0 / 3.0);
    let half = ad.em.scalar(0.5);
    let mid = ad.em.add(&x3, &half);
    let one = ad.em.scalar(1.0);
    let zero = ad.zero();
    let upper = ad.em.where_(&hi, &one, &mid);
    let d = ad.em.where_(&lo, &zero, &upper);
    Ok(grads(n, vec![(0, ad.em.mul(&dy, &d))]))
}

fn tanh(ad: &mut Ad, n: &Node, dy: &[Option<String>], _: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    let dy = dy0!(n, dy);
    let y = ad.out(n, 0);
    let y2 = ad.em.mul(&y, &y);
    let one = ad.em.scalar(1.0);
    let d = ad.em.sub(&one, &y2);
    Ok(grads(n, vec![(0, ad.em.mul(&dy, &d))]))
}

fn erf(ad: &mut Ad, n: &Node, dy: &[Option<String>], _: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    let dy = dy0!(n, dy);
    let x = ad.name(n, 0);
    let x2 = ad.em.mul(&x, &x);
    let nx2 = ad.em.neg(&x2);
    let e = ad.em.op("Exp", &[&nx2], vec![]);
    let d = ad.em.mul_scalar(&e, 2.0 / std::f64::consts::PI.sqrt());
    Ok(grads(n, vec![(0, ad.em.mul(&dy, &d))]))
}

/// `dy * d` where the derivative `d` is computed from x and y by `f`.
fn pointwise(ad: &mut Ad, n: &Node, dy: &[Option<String>], f: impl FnOnce(&mut Emitter, &str, &str) -> String) -> Result<Vec<Option<String>>, RewriteError> {
    let dy = dy0!(n, dy);
    let (x, y) = (ad.name(n, 0), ad.out(n, 0));
    let d = f(ad.em, &x, &y);
    Ok(grads(n, vec![(0, ad.em.mul(&dy, &d))]))
}

/// `where(x > 0, 1, neg)`.
fn positive_or(em: &mut Emitter, x: &str, neg: &str) -> String {
    let z = em.scalar(0.0);
    let pos = em.op("Greater", &[x, &z], vec![]);
    let one = em.scalar(1.0);
    em.where_(&pos, &one, neg)
}

fn elu(ad: &mut Ad, n: &Node, dy: &[Option<String>], _: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    // y = alpha (e^x - 1) below 0: y' = y + alpha.
    let alpha = n.attr_float("alpha", 1.0) as f64;
    pointwise(ad, n, dy, |em, x, y| {
        let a = em.scalar(alpha);
        let neg = em.add(y, &a);
        positive_or(em, x, &neg)
    })
}

fn selu(ad: &mut Ad, n: &Node, dy: &[Option<String>], _: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    // y = gamma x above 0, gamma alpha (e^x - 1) below: y' = gamma, or y + gamma alpha.
    let alpha = n.attr_float("alpha", 1.673_263_2) as f64;
    let gamma = n.attr_float("gamma", 1.050_701) as f64;
    pointwise(ad, n, dy, |em, x, y| {
        let ga = em.scalar(gamma * alpha);
        let neg = em.add(y, &ga);
        let z = em.scalar(0.0);
        let pos = em.op("Greater", &[x, &z], vec![]);
        let g = em.scalar(gamma);
        em.where_(&pos, &g, &neg)
    })
}

fn celu(ad: &mut Ad, n: &Node, dy: &[Option<String>], _: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    // y = alpha (e^(x/alpha) - 1) below 0: y' = e^(x/alpha).
    let alpha = n.attr_float("alpha", 1.0) as f64;
    pointwise(ad, n, dy, |em, x, _| {
        let xa = em.mul_scalar(x, 1.0 / alpha);
        let e = em.op("Exp", &[&xa], vec![]);
        positive_or(em, x, &e)
    })
}

fn softplus(ad: &mut Ad, n: &Node, dy: &[Option<String>], _: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    pointwise(ad, n, dy, |em, x, _| em.op("Sigmoid", &[x], vec![]))
}

fn softsign(ad: &mut Ad, n: &Node, dy: &[Option<String>], _: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    // y' = 1 / (1 + |x|)^2
    pointwise(ad, n, dy, |em, x, _| {
        let a = em.op("Abs", &[x], vec![]);
        let one = em.scalar(1.0);
        let d = em.add(&a, &one);
        let d2 = em.mul(&d, &d);
        em.op("Reciprocal", &[&d2], vec![])
    })
}

fn mish(ad: &mut Ad, n: &Node, dy: &[Option<String>], _: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    // y = x tanh(softplus(x)): y' = t + x sigmoid(x) (1 - t^2), t = tanh(softplus(x)).
    pointwise(ad, n, dy, |em, x, _| {
        let sp = em.op("Softplus", &[x], vec![]);
        let t = em.op("Tanh", &[&sp], vec![]);
        let t2 = em.mul(&t, &t);
        let one = em.scalar(1.0);
        let omt = em.sub(&one, &t2);
        let sg = em.op("Sigmoid", &[x], vec![]);
        let xs = em.mul(x, &sg);
        let r = em.mul(&xs, &omt);
        em.add(&t, &r)
    })
}

fn thresholded_relu(ad: &mut Ad, n: &Node, dy: &[Option<String>], _: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    let alpha = n.attr_float("alpha", 1.0) as f64;
    pointwise(ad, n, dy, |em, x, _| {
        let a = em.scalar(alpha);
        let above = em.op("Greater", &[x, &a], vec![]);
        em.cast(&above, em.float)
    })
}

fn sin(ad: &mut Ad, n: &Node, dy: &[Option<String>], _: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    pointwise(ad, n, dy, |em, x, _| em.op("Cos", &[x], vec![]))
}

fn cos(ad: &mut Ad, n: &Node, dy: &[Option<String>], _: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    pointwise(ad, n, dy, |em, x, _| {
        let s = em.op("Sin", &[x], vec![]);
        em.neg(&s)
    })
}

fn softmax_axis(ad: &Ad, n: &Node) -> Result<i64, RewriteError> {
    let r = ad.rank(n, 0)?;
    let axis = crate::ir::norm_axis(n.attr_int("axis", -1), r).ok_or_else(|| Ad::err(n, "axis out of range"))?;
    Ok(axis as i64)
}

fn softmax(ad: &mut Ad, n: &Node, dy: &[Option<String>], _: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    let dy = dy0!(n, dy);
    let axis = softmax_axis(ad, n)?;
    let y = ad.out(n, 0);
    let gy = ad.em.mul(&dy, &y);
    let s = ad.em.reduce("ReduceSum", &gy, Some(&[axis]), true);
    let d = ad.em.sub(&dy, &s);
    Ok(grads(n, vec![(0, ad.em.mul(&y, &d))]))
}

fn log_softmax(ad: &mut Ad, n: &Node, dy: &[Option<String>], _: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    let dy = dy0!(n, dy);
    let axis = softmax_axis(ad, n)?;
    let y = ad.out(n, 0);
    let p = ad.em.op("Exp", &[&y], vec![]);
    let s = ad.em.reduce("ReduceSum", &dy, Some(&[axis]), true);
    let ps = ad.em.mul(&p, &s);
    Ok(grads(n, vec![(0, ad.em.sub(&dy, &ps))]))
}

// ---- pooling ----

fn max_pool(ad: &mut Ad, n: &Node, dy: &[Option<String>], _: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    let dy = dy0!(n, dy);
    if n.attr_int("storage_order", 0) != 0 {
        return Err(Ad::err(n, "storage_order = 1 is not supported"));
    }
    let Some(idx) = n.output(1).map(|v| ad.g.values[v].name.clone()) else {
        return Err(Ad::err(n, "the Indices output is missing"));
    };
    // Indices address the flattened input; scatter-add the gradient there.
    let x = ad.name(n, 0);
    Ok(grads(n, vec![(0, scatter_flat(ad, &x, &idx, &dy, 0))]))
}

/// A tensor shaped like `x` (plus `extra` trailing slots) that receives `upd`
/// at the flat positions `idx` (both flattened), with addition.
fn scatter_flat(ad: &mut Ad, x: &str, idx: &str, upd: &str, extra: i64) -> String {
    let size = ad.em.op("Size", &[x], vec![]);
    let flat = ad.em.ints(&[-1]);
    let len = ad.em.reshape(&size, &flat);
    let len = if extra > 0 {
        let e = ad.em.ints(&[extra]);
        ad.em.add(&len, &e)
    } else {
        len
    };
    let zeros = ad.em.zeros_of_shape(&len);
    let fi = ad.em.reshape(idx, &flat);
    let fu = ad.em.reshape(upd, &flat);
    let sc = ad.em.op("ScatterElements", &[&zeros, &fi, &fu], vec![a_int("axis", 0), a_str("reduction", "add")]);
    if extra > 0 {
        let start = ad.em.ints(&[extra]);
        let end = ad.em.ints(&[i64::MAX]);
        let cut = ad.em.op("Slice", &[&sc, &start, &end], vec![]);
        return ad.em.reshape_like(&cut, x);
    }
    ad.em.reshape_like(&sc, x)
}

/// The flat index of every element of `x`, shaped like `x`, plus `offset`.
fn index_map(ad: &mut Ad, x: &str, offset: i64) -> String {
    let size = ad.em.op("Size", &[x], vec![]);
    let start = ad.em.scalar_of(offset as f64, INT64);
    let end = ad.em.add(&size, &start);
    let one = ad.em.scalar_of(1.0, INT64);
    let r = ad.em.op("Range", &[&start, &end, &one], vec![]);
    ad.em.reshape_like(&r, x)
}

fn average_pool(ad: &mut Ad, n: &Node, dy: &[Option<String>], _: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    let dy = dy0!(n, dy);
    let xd = ad.dims(n.input(0)).ok_or_else(|| Ad::err(n, "input shape unknown"))?;
    let r = xd.len();
    if r < 3 {
        return Err(Ad::err(n, "input of rank < 3"));
    }
    let sp = r - 2;
    let k = n.attr_ints("kernel_shape").map(<[i64]>::to_vec).ok_or_else(|| Ad::err(n, "kernel_shape missing"))?;
    if k.len() != sp {
        return Err(Ad::err(n, "kernel_shape does not match the input rank"));
    }
    if n.attr_ints("dilations").is_some_and(|d| d.iter().any(|&d| d != 1)) {
        return Err(Ad::err(n, "dilations other than 1 are not supported"));
    }
    let c = xd[1].known().ok_or_else(|| Ad::err(n, "the gradient needs a static channel count"))?;
    let strides = n.attr_ints("strides").map(<[i64]>::to_vec).unwrap_or_else(|| vec![1; sp]);
    let mut pads = match n.attr_str("auto_pad").unwrap_or("NOTSET") {
        "NOTSET" => n.attr_ints("pads").map(<[i64]>::to_vec).unwrap_or_else(|| vec![0; 2 * sp]),
        "VALID" => vec![0; 2 * sp],
        other => return Err(Ad::err(n, format!("auto_pad = {other} is not supported"))),
    };
    // Static spatial dims give an output padding; unknown ones a zero pad to
    // the input's runtime shape (as for Conv).
    let x_sp: Option<Vec<i64>> = xd[2..].iter().map(|d| d.known()).collect();
    let count_include_pad = n.attr_int("count_include_pad", 0) != 0;
    let padded_by_model = pads.iter().any(|&p| p != 0);
    if n.attr_int("ceil_mode", 0) != 0 {
        // A partial last window (timm's DownsampleAvg, NFNet) reads past the end
        // padding: it is the floor-mode pool with that much more end padding, whose
        // divisor counts only the input's elements, so the gradient is the padded
        // pool's with the count divisor below.
        let actual = ad.dims(n.output(0)).and_then(|d| d[2..].iter().map(|d| d.known()).collect::<Option<Vec<i64>>>());
        let (Some(x_sp), Some(out)) = (&x_sp, actual) else {
            return Err(Ad::err(n, "ceil_mode = 1 needs static spatial dims"));
        };
        if pads.len() != 2 * sp || strides.len() != sp || out.len() != sp {
            return Err(Ad::err(n, "pads or strides do not match the input rank"));
        }
        for i in 0..sp {
            let extra = (out[i] - 1).checked_mul(strides[i]).and_then(|v| v.checked_add(k[i] - x_sp[i] - pads[i] - pads[sp + i]));
            match extra {
                Some(0) => {}
                Some(e) if e > 0 && e < k[i] => {
                    if count_include_pad && padded_by_model {
                        return Err(Ad::err(n, "ceil_mode = 1 with a partial last window and count_include_pad = 1 over pads is not supported"));
                    }
                    pads[sp + i] += e;
                }
                _ => return Err(Ad::err(n, "ceil_mode = 1: the output dims do not match the input's")),
            }
        }
    }
    let ones = vec![1; sp];
    let opad = match &x_sp {
        Some(x_sp) => Some(output_padding(n, x_sp, &k, &strides, &ones, &pads)?),
        None => {
            check_window(n, &k, &strides, &ones, &pads)?;
            None
        }
    };
    let area = k.iter().try_fold(1i64, |a, &b| a.checked_mul(b)).ok_or_else(|| Ad::err(n, "kernel size overflows"))?;
    let wdims: Vec<i64> = [c, 1].into_iter().chain(k.iter().copied()).collect();
    let count = wdims.iter().try_fold(1i64, |a, &b| a.checked_mul(b)).filter(|&v| v <= 1 << 24).ok_or_else(|| Ad::err(n, "kernel too large"))?;
    let w = ad.em.constant(super::emit::tensor_f("", ad.em.float, &wdims, &vec![1.0; count as usize]));
    let conv_attrs = |transposed: bool| {
        let p = if transposed && opad.is_none() { begin_pads_only(&pads) } else { pads.clone() };
        let mut a = vec![a_ints("strides", &strides), a_ints("pads", &p), a_int("group", c), a_ints("kernel_shape", &k)];
        if let (true, Some(op)) = (transposed, &opad) {
            a.push(a_ints("output_padding", op));
        }
        a
    };
    let x = ad.name(n, 0);
    let padded = pads.iter().any(|&p| p != 0);
    // With count_include_pad the model's own pads count, and a partial window's
    // overflow only arises above without them: then the divisor counts real elements.
    let scaled = if (count_include_pad && padded_by_model) || !padded {
        ad.em.mul_scalar(&dy, 1.0 / area as f64)
    } else {
        // The divisor is the number of real (unpadded) elements under each window.
        let s = ad.em.shape(&x);
        let zeros = ad.em.zeros_of_shape(&s);
        let one = ad.em.scalar(1.0);
        let ones_x = ad.em.add(&zeros, &one);
        let cnt = ad.em.op("Conv", &[&ones_x, &w], conv_attrs(false));
        ad.em.div(&dy, &cnt)
    };
    let g = ad.em.op("ConvTranspose", &[&scaled, &w], conv_attrs(true));
    Ok(grads(n, vec![(0, if opad.is_some() { g } else { fit_to_input(ad, &g, &x, r) })]))
}

/// Pads with zeros at the begin and end of the spatial dims, for a transposed
/// convolution that crops only at the begin (its end is cut by [`fit_to_input`]).
fn begin_pads_only(pads: &[i64]) -> Vec<i64> {
    let sp = pads.len() / 2;
    pads[..sp].iter().copied().chain(std::iter::repeat_n(0, sp)).collect()
}

/// Cuts or zero-pads the trailing spatial dims of `part` to the runtime shape
/// of `like`. `part` is a transposed convolution cropped only at the begin:
/// its rows past `like`'s end are the forward's end padding, and rows it lacks
/// lie past the last window and get no gradient.
fn fit_to_input(ad: &mut Ad, part: &str, like: &str, rank: usize) -> String {
    let want = ad.em.op("Shape", &[like], vec![a_int("start", 2)]);
    let starts = ad.em.ints(&vec![0; rank - 2]);
    let axes: Vec<i64> = (2..rank as i64).collect();
    let axes = ad.em.ints(&axes);
    let cut = ad.em.op("Slice", &[part, &starts, &want, &axes], vec![]);
    let got = ad.em.op("Shape", &[&cut], vec![a_int("start", 2)]);
    let missing = ad.em.sub(&want, &got);
    let lead = ad.em.ints(&vec![0; rank + 2]);
    let pads = ad.em.op("Concat", &[&lead, &missing], vec![a_int("axis", 0)]);
    ad.em.op("Pad", &[&cut, &pads], vec![])
}

fn global_average_pool(ad: &mut Ad, n: &Node, dy: &[Option<String>], _: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    let dy = dy0!(n, dy);
    let (x, y) = (ad.name(n, 0), ad.out(n, 0));
    let s = ad.em.shape(&x);
    let e = ad.em.op("Expand", &[&dy, &s], vec![]);
    let count = size_ratio(ad, &x, &y);
    Ok(grads(n, vec![(0, ad.em.div(&e, &count))]))
}

/// `size(x) / size(y)` in the float type: elements reduced into each output.
fn size_ratio(ad: &mut Ad, x: &str, y: &str) -> String {
    let sx = ad.em.op("Size", &[x], vec![]);
    let sy = ad.em.op("Size", &[y], vec![]);
    let q = ad.em.div(&sx, &sy);
    ad.em.cast(&q, ad.em.float)
}

// ---- elementwise ----

fn add(ad: &mut Ad, n: &Node, dy: &[Option<String>], need: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    let dy = dy0!(n, dy);
    let mut out = Vec::new();
    for i in 0..2 {
        if nd(need, i) {
            out.push((i, ad.unb(n, i, &dy)?));
        }
    }
    Ok(grads(n, out))
}

fn sum(ad: &mut Ad, n: &Node, dy: &[Option<String>], need: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    let dy = dy0!(n, dy);
    let mut out = Vec::new();
    for (i, &nd) in need.iter().enumerate() {
        if nd {
            out.push((i, ad.unb(n, i, &dy)?));
        }
    }
    Ok(grads(n, out))
}

fn mean(ad: &mut Ad, n: &Node, dy: &[Option<String>], need: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    let dy = dy0!(n, dy);
    let share = ad.em.mul_scalar(&dy, 1.0 / n.inputs.len().max(1) as f64);
    let mut out = Vec::new();
    for (i, &nd) in need.iter().enumerate() {
        if nd {
            out.push((i, ad.unb(n, i, &share)?));
        }
    }
    Ok(grads(n, out))
}

fn sub(ad: &mut Ad, n: &Node, dy: &[Option<String>], need: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    let dy = dy0!(n, dy);
    let mut out = Vec::new();
    if nd(need, 0) {
        out.push((0, ad.unb(n, 0, &dy)?));
    }
    if nd(need, 1) {
        let ng = ad.em.neg(&dy);
        out.push((1, ad.unb(n, 1, &ng)?));
    }
    Ok(grads(n, out))
}

fn mul(ad: &mut Ad, n: &Node, dy: &[Option<String>], need: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    let dy = dy0!(n, dy);
    let mut out = Vec::new();
    for (i, other) in [(0, 1), (1, 0)] {
        if nd(need, i) {
            let o = ad.as_float(n, other);
            let g = ad.em.mul(&dy, &o);
            out.push((i, ad.unb(n, i, &g)?));
        }
    }
    Ok(grads(n, out))
}

fn div(ad: &mut Ad, n: &Node, dy: &[Option<String>], need: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    let dy = dy0!(n, dy);
    let b = ad.as_float(n, 1);
    let mut out = Vec::new();
    if nd(need, 0) {
        let g = ad.em.div(&dy, &b);
        out.push((0, ad.unb(n, 0, &g)?));
    }
    if nd(need, 1) {
        let y = ad.out(n, 0);
        let gy = ad.em.mul(&dy, &y);
        let q = ad.em.div(&gy, &b);
        let g = ad.em.neg(&q);
        out.push((1, ad.unb(n, 1, &g)?));
    }
    Ok(grads(n, out))
}

fn pow(ad: &mut Ad, n: &Node, dy: &[Option<String>], need: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    let dy = dy0!(n, dy);
    let x = ad.name(n, 0);
    let e = ad.as_float(n, 1);
    let mut out = Vec::new();
    if nd(need, 0) {
        let one = ad.em.scalar(1.0);
        let em1 = ad.em.sub(&e, &one);
        let p = ad.em.op("Pow", &[&x, &em1], vec![]);
        let d = ad.em.mul(&p, &e);
        let g = ad.em.mul(&dy, &d);
        out.push((0, ad.unb(n, 0, &g)?));
    }
    if nd(need, 1) {
        let y = ad.out(n, 0);
        let l = ad.em.op("Log", &[&x], vec![]);
        let yl = ad.em.mul(&y, &l);
        let g = ad.em.mul(&dy, &yl);
        out.push((1, ad.unb(n, 1, &g)?));
    }
    Ok(grads(n, out))
}

fn sqrt(ad: &mut Ad, n: &Node, dy: &[Option<String>], _: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    let dy = dy0!(n, dy);
    let y = ad.out(n, 0);
    let y2 = ad.em.mul_scalar(&y, 2.0);
    Ok(grads(n, vec![(0, ad.em.div(&dy, &y2))]))
}

fn exp(ad: &mut Ad, n: &Node, dy: &[Option<String>], _: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    let dy = dy0!(n, dy);
    let y = ad.out(n, 0);
    Ok(grads(n, vec![(0, ad.em.mul(&dy, &y))]))
}

fn log(ad: &mut Ad, n: &Node, dy: &[Option<String>], _: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    let dy = dy0!(n, dy);
    let x = ad.name(n, 0);
    Ok(grads(n, vec![(0, ad.em.div(&dy, &x))]))
}

fn neg(ad: &mut Ad, n: &Node, dy: &[Option<String>], _: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    let dy = dy0!(n, dy);
    Ok(grads(n, vec![(0, ad.em.neg(&dy))]))
}

fn abs(ad: &mut Ad, n: &Node, dy: &[Option<String>], _: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    let dy = dy0!(n, dy);
    let x = ad.name(n, 0);
    let s = ad.em.op("Sign", &[&x], vec![]);
    Ok(grads(n, vec![(0, ad.em.mul(&dy, &s))]))
}

fn reciprocal(ad: &mut Ad, n: &Node, dy: &[Option<String>], _: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    let dy = dy0!(n, dy);
    let y = ad.out(n, 0);
    let y2 = ad.em.mul(&y, &y);
    let g = ad.em.mul(&dy, &y2);
    Ok(grads(n, vec![(0, ad.em.neg(&g))]))
}

fn max_min(ad: &mut Ad, n: &Node, dy: &[Option<String>], need: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    // The gradient goes to every input equal to the result.
    let dy = dy0!(n, dy);
    let y = ad.out(n, 0);
    let mut out = Vec::new();
    for (i, &nd) in need.iter().enumerate() {
        if nd {
            let x = ad.name(n, i);
            let eq = ad.em.op("Equal", &[&x, &y], vec![]);
            let z = ad.zero();
            let g = ad.em.where_(&eq, &dy, &z);
            out.push((i, ad.unb(n, i, &g)?));
        }
    }
    Ok(grads(n, out))
}

fn where_(ad: &mut Ad, n: &Node, dy: &[Option<String>], need: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    let dy = dy0!(n, dy);
    let c = ad.name(n, 0);
    let z = ad.zero();
    let mut out = Vec::new();
    if need.get(1).copied().unwrap_or(false) {
        let g = ad.em.where_(&c, &dy, &z);
        out.push((1, ad.unb(n, 1, &g)?));
    }
    if need.get(2).copied().unwrap_or(false) {
        let g = ad.em.where_(&c, &z, &dy);
        out.push((2, ad.unb(n, 2, &g)?));
    }
    Ok(grads(n, out))
}

// ---- layout ----

fn reshape(ad: &mut Ad, n: &Node, dy: &[Option<String>], _: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    let dy = dy0!(n, dy);
    let x = ad.name(n, 0);
    Ok(grads(n, vec![(0, ad.em.reshape_like(&dy, &x))]))
}

fn transpose(ad: &mut Ad, n: &Node, dy: &[Option<String>], _: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    let dy = dy0!(n, dy);
    let r = ad.rank(n, 0)?;
    let perm: Vec<i64> = n.attr_ints("perm").map(<[i64]>::to_vec).unwrap_or_else(|| (0..r as i64).rev().collect());
    let mut inv = vec![0i64; perm.len()];
    for (i, &p) in perm.iter().enumerate() {
        let p = usize::try_from(p).ok().filter(|&p| p < inv.len()).ok_or_else(|| Ad::err(n, "perm out of range"))?;
        inv[p] = i as i64;
    }
    Ok(grads(n, vec![(0, ad.em.op("Transpose", &[&dy], vec![a_ints("perm", &inv)]))]))
}

fn concat(ad: &mut Ad, n: &Node, dy: &[Option<String>], need: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    let dy = dy0!(n, dy);
    let r = ad.rank(n, 0)?;
    let axis = crate::ir::norm_axis(n.attr_int("axis", 0), r).ok_or_else(|| Ad::err(n, "axis out of range"))? as i64;
    // Split sizes from the inputs' runtime shapes.
    let mut sizes = Vec::new();
    for i in 0..n.inputs.len() {
        let x = ad.name(n, i);
        sizes.push(ad.em.op("Shape", &[&x], vec![a_int("start", axis), a_int("end", axis + 1)]));
    }
    let refs: Vec<&str> = sizes.iter().map(String::as_str).collect();
    let split = ad.em.op("Concat", &refs, vec![a_int("axis", 0)]);
    let outs: Vec<String> = (0..n.inputs.len()).map(|_| ad.em.fresh("concat_grad")).collect();
    ad.em.node("Split", &[&dy, &split], &outs, vec![a_int("axis", axis)]);
    Ok(outs.into_iter().enumerate().map(|(i, o)| nd(need, i).then_some(o)).collect())
}

fn split(ad: &mut Ad, n: &Node, dy: &[Option<String>], _: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    let r = ad.rank(n, 0)?;
    let axis = crate::ir::norm_axis(n.attr_int("axis", 0), r).ok_or_else(|| Ad::err(n, "axis out of range"))? as i64;
    let mut parts = Vec::new();
    for (k, d) in dy.iter().enumerate() {
        parts.push(match d {
            Some(d) => d.clone(),
            None => {
                let y = ad.out(n, k);
                if y.is_empty() {
                    return Err(Ad::err(n, "an omitted output of Split would need a zero gradient"));
                }
                ad.em.zeros_like(&y)
            }
        });
    }
    let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
    Ok(grads(n, vec![(0, ad.em.op("Concat", &refs, vec![a_int("axis", axis)]))]))
}

fn slice(ad: &mut Ad, n: &Node, dy: &[Option<String>], _: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    // Slice the input's index map the same way; scatter the gradient there.
    let dy = dy0!(n, dy);
    let x = ad.name(n, 0);
    let idx = index_map(ad, &x, 0);
    let mut ins: Vec<String> = vec![idx];
    for i in 1..n.inputs.len() {
        ins.push(ad.name(n, i));
    }
    let refs: Vec<&str> = ins.iter().map(String::as_str).collect();
    let picked = ad.em.op("Slice", &refs, vec![]);
    Ok(grads(n, vec![(0, scatter_flat(ad, &x, &picked, &dy, 0))]))
}

fn pad(ad: &mut Ad, n: &Node, dy: &[Option<String>], need: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    // Pad the input's index map (shifted by one; constant padding reads slot 0)
    // with the same mode; scatter-add the gradient through it.
    let dy = dy0!(n, dy);
    if need.iter().skip(1).any(|&b| b) {
        return Err(Ad::err(n, "the gradient with respect to the pad value is not supported"));
    }
    let x = ad.name(n, 0);
    let idx = index_map(ad, &x, 1);
    let zero = ad.em.scalar_of(0.0, INT64);
    let mut ins = vec![idx, ad.name(n, 1), zero];
    if n.inputs.len() > 3 && n.input(3).is_some() {
        ins.push(ad.name(n, 3));
    }
    let refs: Vec<&str> = ins.iter().map(String::as_str).collect();
    let mode = n.attr_str("mode").unwrap_or("constant").to_string();
    let padded = ad.em.op("Pad", &refs, vec![a_str("mode", &mode)]);
    Ok(grads(n, vec![(0, scatter_flat(ad, &x, &padded, &dy, 1))]))
}

fn expand(ad: &mut Ad, n: &Node, dy: &[Option<String>], _: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    let dy = dy0!(n, dy);
    Ok(grads(n, vec![(0, ad.unb(n, 0, &dy)?)]))
}

/// Indices as int64 with negative entries wrapped by the size of `data`'s `axis`.
fn wrapped_indices(ad: &mut Ad, n: &Node, data: &str, axis: i64) -> String {
    let idx = ad.name(n, 1);
    let is_i64 = n.input(1).and_then(|v| ad.g.values[v].dtype) == Some(crate::ir::DType::I64);
    let idx = if is_i64 { idx } else { ad.em.cast(&idx, INT64) };
    let dim = ad.em.op("Shape", &[data], vec![a_int("start", axis), a_int("end", axis + 1)]);
    // A scalar, so that scalar indices keep their rank.
    let scalar = ad.em.ints(&[]);
    let dim = ad.em.reshape(&dim, &scalar);
    let zero = ad.em.scalar_of(0.0, INT64);
    let neg = ad.em.op("Less", &[&idx, &zero], vec![]);
    let shifted = ad.em.add(&idx, &dim);
    ad.em.where_(&neg, &shifted, &idx)
}

fn gather(ad: &mut Ad, n: &Node, dy: &[Option<String>], _: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    // Move the gathered axis to the front, scatter-add the gradient rows
    // there (ScatterND), and move it back.
    let dy = dy0!(n, dy);
    let r = ad.rank(n, 0)?;
    let rq = ad.rank(n, 1)?;
    let a = crate::ir::norm_axis(n.attr_int("axis", 0), r).ok_or_else(|| Ad::err(n, "axis out of range"))?;
    let data = ad.name(n, 0);
    let idx = wrapped_indices(ad, n, &data, a as i64);
    let idx = ad.em.unsqueeze(&idx, &[-1]);
    let front: Vec<i64> = std::iter::once(a).chain((0..r).filter(|&k| k != a)).map(|k| k as i64).collect();
    let (data_t, dy_t) = if a == 0 {
        (data.clone(), dy)
    } else {
        let dt = ad.em.op("Transpose", &[&data], vec![a_ints("perm", &front)]);
        let dperm: Vec<i64> = (a..a + rq).chain(0..a).chain(a + rq..r - 1 + rq).map(|k| k as i64).collect();
        (dt, ad.em.op("Transpose", &[&dy], vec![a_ints("perm", &dperm)]))
    };
    let zeros = ad.em.zeros_like(&data_t);
    let g = ad.em.op("ScatterND", &[&zeros, &idx, &dy_t], vec![a_str("reduction", "add")]);
    if a == 0 {
        return Ok(grads(n, vec![(0, g)]));
    }
    let mut inv = vec![0i64; r];
    for (i, &p) in front.iter().enumerate() {
        inv[p as usize] = i as i64;
    }
    Ok(grads(n, vec![(0, ad.em.op("Transpose", &[&g], vec![a_ints("perm", &inv)]))]))
}

fn gather_elements(ad: &mut Ad, n: &Node, dy: &[Option<String>], _: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    let dy = dy0!(n, dy);
    let r = ad.rank(n, 0)?;
    let axis = crate::ir::norm_axis(n.attr_int("axis", 0), r).ok_or_else(|| Ad::err(n, "axis out of range"))? as i64;
    let data = ad.name(n, 0);
    let idx = wrapped_indices(ad, n, &data, axis);
    let zeros = ad.em.zeros_like(&data);
    let g = ad.em.op("ScatterElements", &[&zeros, &idx, &dy], vec![a_int("axis", axis), a_str("reduction", "add")]);
    Ok(grads(n, vec![(0, g)]))
}

fn movement(ad: &mut Ad, n: &Node, dy: &[Option<String>], need: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    // Ops whose every output element is a copy of one input element (Tile,
    // DepthToSpace, SpaceToDepth, nearest Resize): run the op, with its
    // attributes, on the input's index map, then scatter-add the gradient.
    let dy = dy0!(n, dy);
    if need.iter().skip(1).any(|&b| b) {
        return Err(Ad::err(n, "only the data input has a gradient"));
    }
    if n.op_type == "Resize" && n.attr_str("mode").unwrap_or("nearest") != "nearest" {
        return Err(Ad::err(n, "only mode = nearest has a gradient rule (a copy of one input element per output)"));
    }
    let mut attrs = Vec::new();
    for (name, value) in &n.attrs {
        attrs.push(match value {
            crate::ir::AttrValue::Int(v) => a_int(name, *v),
            crate::ir::AttrValue::Float(v) => super::emit::a_float(name, *v),
            crate::ir::AttrValue::Ints(v) => a_ints(name, v),
            crate::ir::AttrValue::Str(v) => a_str(name, v),
            _ => return Err(Ad::err(n, format!("attribute '{name}' cannot be copied to the gradient"))),
        });
    }
    let x = ad.name(n, 0);
    let idx = index_map(ad, &x, 0);
    let others: Vec<String> = (1..n.inputs.len()).map(|i| ad.name(n, i)).collect();
    let apply = |ad: &mut Ad, data: &str| {
        let mut ins: Vec<&str> = vec![data];
        ins.extend(others.iter().map(String::as_str));
        ad.em.op(&n.op_type, &ins, attrs.clone())
    };
    // The index map goes through the op in a type the op takes, exactly:
    // int64 for Tile, double for DepthToSpace/SpaceToDepth (exact below 2^53),
    // and for Resize (which onnxruntime runs on int32, not int64) as two int32
    // halves of 16 bits recombined after.
    let moved = match n.op_type.as_str() {
        "Resize" => {
            let base = ad.em.scalar_of(65536.0, INT64);
            let hi = ad.em.div(&idx, &base);
            let lo = ad.em.op("Mod", &[&idx, &base], vec![]);
            let (hi, lo) = (ad.em.cast(&hi, super::emit::INT32), ad.em.cast(&lo, super::emit::INT32));
            let (rh, rl) = (apply(ad, &hi), apply(ad, &lo));
            let (rh, rl) = (ad.em.cast(&rh, INT64), ad.em.cast(&rl, INT64));
            let high = ad.em.mul(&rh, &base);
            ad.em.add(&high, &rl)
        }
        "DepthToSpace" | "SpaceToDepth" => {
            let f = ad.em.cast(&idx, super::emit::DOUBLE);
            let r = apply(ad, &f);
            ad.em.cast(&r, INT64)
        }
        _ => apply(ad, &idx),
    };
    Ok(grads(n, vec![(0, scatter_flat(ad, &x, &moved, &dy, 0))]))
}

fn trilu(ad: &mut Ad, n: &Node, dy: &[Option<String>], _: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    // The same triangle of the gradient.
    let dy = dy0!(n, dy);
    let mut ins = vec![dy];
    if n.input(1).is_some() {
        ins.push(ad.name(n, 1));
    }
    let refs: Vec<&str> = ins.iter().map(String::as_str).collect();
    let g = ad.em.op("Trilu", &refs, vec![a_int("upper", n.attr_int("upper", 1))]);
    Ok(grads(n, vec![(0, g)]))
}

fn cumsum(ad: &mut Ad, n: &Node, dy: &[Option<String>], _: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    // The gradient accumulates the other way along the axis.
    let dy = dy0!(n, dy);
    let axis = ad.name(n, 1);
    let attrs = vec![a_int("exclusive", n.attr_int("exclusive", 0)), a_int("reverse", 1 - n.attr_int("reverse", 0).clamp(0, 1))];
    Ok(grads(n, vec![(0, ad.em.op("CumSum", &[&dy, &axis], attrs))]))
}

/// ReduceMax, ReduceMin, GlobalMaxPool: the gradient is shared equally by the
/// elements equal to the result (PyTorch's amax/amin rule).
fn extremum(ad: &mut Ad, n: &Node, dy: &[Option<String>], _: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    let dy = dy0!(n, dy);
    let (x, y) = (ad.name(n, 0), ad.out(n, 0));
    let pool = n.op_type == "GlobalMaxPool";
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
    let eq = ad.em.op("Equal", &[&x, &yk], vec![]);
    let mask = ad.em.cast(&eq, ad.em.float);
    let count = ad.em.reduce("ReduceSum", &mask, axes.as_deref(), true);
    let share = ad.em.div(&dk, &count);
    let s = ad.em.shape(&x);
    let e = ad.em.op("Expand", &[&share, &s], vec![]);
    Ok(grads(n, vec![(0, ad.em.mul(&e, &mask))]))
}

/// The sorted, normalized axes a reduction reduces: `Some([])` for all axes
/// when the rank is unknown, `None` when it is a no-op.
fn reduce_axes_of(ad: &Ad, n: &Node) -> Result<Option<Vec<i64>>, RewriteError> {
    let given = n.attrs.contains_key("axes") || n.input(1).is_some();
    let noop = n.attr_int("noop_with_empty_axes", 0) != 0;
    let raw = if !given {
        Vec::new()
    } else {
        match n.attr_ints("axes") {
            Some(a) => a.to_vec(),
            None => ad.ints_input(n, 1).ok_or_else(|| Ad::err(n, "axes must be constant"))?,
        }
    };
    if raw.is_empty() {
        return Ok(if noop { None } else { Some(match ad.rank(n, 0) { Ok(r) => (0..r as i64).collect(), Err(_) => Vec::new() }) });
    }
    let r = ad.rank(n, 0)?;
    let mut a: Vec<i64> = raw.iter().map(|&a| crate::ir::norm_axis(a, r).map(|a| a as i64)).collect::<Option<_>>().ok_or_else(|| Ad::err(n, "axis out of range"))?;
    a.sort_unstable();
    a.dedup();
    Ok(Some(a))
}

// ---- reductions ----

fn reduce(ad: &mut Ad, n: &Node, dy: &[Option<String>], _: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
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
    let e = ad.em.op("Expand", &[&dk, &s], vec![]);
    let g = match n.op_type.as_str() {
        "ReduceSum" => e,
        "ReduceMean" => {
            let c = size_ratio(ad, &x, &y);
            ad.em.div(&e, &c)
        }
        "ReduceL2" => {
            let yk = if keep { y } else { ad.em.unsqueeze(&y, &axes) };
            let q = ad.em.div(&x, &yk);
            let z = ad.zero();
            let is0 = ad.em.op("Equal", &[&yk, &z], vec![]);
            let safe = ad.em.where_(&is0, &z, &q);
            ad.em.mul(&e, &safe)
        }
        "ReduceL1" => {
            let s = ad.em.op("Sign", &[&x], vec![]);
            ad.em.mul(&e, &s)
        }
        "ReduceLogSumExp" => {
            // softmax of x over the reduced axes
            let yk = if keep { y } else { ad.em.unsqueeze(&y, &axes) };
            let d = ad.em.sub(&x, &yk);
            let p = ad.em.op("Exp", &[&d], vec![]);
            ad.em.mul(&e, &p)
        }
        _ => {
            let x2 = ad.em.mul_scalar(&x, 2.0);
            ad.em.mul(&e, &x2)
        }
    };
    Ok(grads(n, vec![(0, g)]))
}

// ---- identity-like ----

fn identity(_: &mut Ad, n: &Node, dy: &[Option<String>], _: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    let dy = dy0!(n, dy);
    Ok(grads(n, vec![(0, dy)]))
}

fn cast(ad: &mut Ad, n: &Node, dy: &[Option<String>], _: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    let dy = dy0!(n, dy);
    let from = n.input(0).and_then(|v| ad.g.values[v].dtype).ok_or_else(|| Ad::err(n, "input type unknown"))?;
    if !from.is_float() {
        return Ok(vec![None; n.inputs.len()]);
    }
    let to = n.output(0).and_then(|v| ad.g.values[v].dtype);
    let g = if to == Some(from) { dy } else { ad.em.cast(&dy, from.onnx_code()) };
    Ok(grads(n, vec![(0, g)]))
}

fn dropout(ad: &mut Ad, n: &Node, dy: &[Option<String>], _: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    let dy = dy0!(n, dy);
    if !super::lower::dropout_training(ad.g, n)? {
        return Ok(grads(n, vec![(0, dy)]));
    }
    let ratio = super::lower::dropout_ratio(ad.g, n)?;
    let mask = n.output(1).map(|v| ad.g.values[v].name.clone()).ok_or_else(|| Ad::err(n, "the mask output is missing"))?;
    let m = ad.em.cast(&mask, ad.em.float);
    let g = ad.em.mul(&dy, &m);
    Ok(grads(n, vec![(0, ad.em.mul_scalar(&g, 1.0 / (1.0 - ratio)))]))
}
