//! The optimizer step in ONNX ops, with the semantics of the WGSL kernels and
//! the reference implementations (official adamp 0.3.0, torch.optim): see
//! fixtures/golden/README.md. Scalars that the reference computes in Python
//! (bias corrections, step size, decay multipliers) are computed in float64.
use super::emit::{Emitter, DOUBLE};
use crate::runtime::optim::{effective, PROJ_CHANNEL, PROJ_LAYER, PROJ_RUNTIME};
use crate::runtime::{Algorithm, Detect, Hyper, TensorSpec};

/// Names of one tensor's update.
pub(crate) struct Slot<'a> {
    /// The parameter (input name).
    pub param: &'a str,
    /// Its gradient.
    pub grad: &'a str,
    /// State inputs (`exp_avg`, `exp_avg_sq`, or `momentum`).
    pub state: &'a [String],
    /// Dims.
    pub dims: &'a [i64],
}

/// Scalars shared by every tensor's update.
pub(crate) struct Shared {
    step_d: String,
    lr_d: String,
    is_first: String,
}

pub(crate) fn shared(em: &mut Emitter) -> Shared {
    let step_d = em.cast("step", DOUBLE);
    let lr_d = em.cast("lr", DOUBLE);
    let one = em.scalar_of(1.0, super::emit::INT64);
    let is_first = em.op("Equal", &["step", &one], vec![]);
    Shared { step_d, lr_d, is_first }
}

/// A float64 scalar computed from `lr`, cast to the model's float type.
fn lr_scalar(em: &mut Emitter, sh: &Shared, mul: f64, add: f64) -> String {
    let m = em.scalar_of(mul, DOUBLE);
    let p = em.mul(&sh.lr_d, &m);
    let a = em.scalar_of(add, DOUBLE);
    let s = em.add(&p, &a);
    em.cast(&s, em.float)
}

/// `1 - beta^step` in float64.
fn bias_correction(em: &mut Emitter, sh: &Shared, beta: f64) -> String {
    let b = em.scalar_of(beta, DOUBLE);
    let bt = em.op("Pow", &[&b, &sh.step_d], vec![]);
    let one = em.scalar_of(1.0, DOUBLE);
    em.sub(&one, &bt)
}

/// `a*x + b*y` (either factor may be 1).
fn lin(em: &mut Emitter, x: &str, a: f64, y: &str, b: f64) -> String {
    let ax = if a == 1.0 { x.to_string() } else { em.mul_scalar(x, a) };
    let by = if b == 1.0 { y.to_string() } else { em.mul_scalar(y, b) };
    em.add(&ax, &by)
}

/// The projection of `perturb` onto the tangent space of `p` per row over
/// `axes` (`None`: the whole tensor): `perturb - p_n * sum_row(p_n * perturb)`,
/// `p_n = p / (‖p_row‖ + eps)`.
fn project(em: &mut Emitter, p: &str, perturb: &str, axes: Option<&[i64]>, eps: f64) -> String {
    let e = em.scalar(eps);
    let norm = match axes {
        Some([]) => em.op("Abs", &[p], vec![]),
        _ => em.reduce("ReduceL2", p, axes, true),
    };
    let ne = em.add(&norm, &e);
    let pn = em.div(p, &ne);
    let prod = em.mul(&pn, perturb);
    let dot = match axes {
        Some([]) => prod,
        _ => em.reduce("ReduceSum", &prod, axes, true),
    };
    let r = em.mul(&pn, &dot);
    em.sub(perturb, &r)
}

/// The reference test: `max |cos(g_row, p_row)| < delta / sqrt(row length)`.
fn cosine_test(em: &mut Emitter, p: &str, g: &str, axes: Option<&[i64]>, row_len: i64, hp: &Hyper) -> String {
    let e = em.scalar(hp.eps);
    let unit = |em: &mut Emitter, x: &str| {
        let n = em.reduce("ReduceL2", x, axes, true);
        let m = em.op("Max", &[&n, &e], vec![]);
        em.div(x, &m)
    };
    let gu = unit(em, g);
    let pu = unit(em, p);
    let prod = em.mul(&gu, &pu);
    let cos = em.reduce("ReduceSum", &prod, axes, true);
    let a = em.op("Abs", &[&cos], vec![]);
    let max = em.reduce("ReduceMax", &a, None, false);
    let t = em.scalar(hp.delta / (row_len.max(1) as f64).sqrt());
    em.op("Less", &[&max, &t], vec![])
}

/// Projects `perturb` per the tensor's effective projection; returns it and
/// whether it was projected (a bool tensor name, or a constant).
fn projection(em: &mut Emitter, s: &Slot, perturb: &str, kind: u32, axis: Option<usize>, hp: &Hyper) -> (String, Flag) {
    let r = s.dims.len();
    let numel: i64 = s.dims.iter().product();
    let rows_over = |a: usize| -> Vec<i64> { (0..r as i64).filter(|&k| k != a as i64).collect() };
    match kind {
        PROJ_CHANNEL => {
            let axes = rows_over(axis.unwrap_or(0));
            (project(em, s.param, perturb, Some(&axes), hp.eps), Flag::Yes)
        }
        PROJ_LAYER => (project(em, s.param, perturb, None, hp.eps), Flag::Yes),
        PROJ_RUNTIME => {
            let axes = rows_over(0);
            let c_ok = cosine_test(em, s.param, s.grad, Some(&axes), numel / s.dims[0].max(1), hp);
            let l_ok = cosine_test(em, s.param, s.grad, None, numel, hp);
            let pc = project(em, s.param, perturb, Some(&axes), hp.eps);
            let pl = project(em, s.param, perturb, None, hp.eps);
            let inner = em.where_(&l_ok, &pl, perturb);
            let out = em.where_(&c_ok, &pc, &inner);
            let any = em.op("Or", &[&c_ok, &l_ok], vec![]);
            (out, Flag::Dynamic(any))
        }
        _ => (perturb.to_string(), Flag::No),
    }
}

/// Whether a tensor's update was projected this step.
enum Flag {
    Yes,
    No,
    Dynamic(String),
}

/// `p * (1 - lr * wd * m)` with `m = wd_ratio` where projected, else 1
/// (`scale` divides the decay, as SGDP's `1 / (1 - momentum)`).
fn decay(em: &mut Emitter, sh: &Shared, p: &str, flag: &Flag, hp: &Hyper, scale: f64) -> String {
    let f = |em: &mut Emitter, m: f64| lr_scalar(em, sh, -hp.weight_decay * m / scale, 1.0);
    let factor = match flag {
        Flag::Yes => f(em, hp.wd_ratio),
        Flag::No => f(em, 1.0),
        Flag::Dynamic(c) => {
            let (a, b) = (f(em, hp.wd_ratio), f(em, 1.0));
            em.where_(c, &a, &b)
        }
    };
    em.mul(p, &factor)
}

/// Emits the update of one tensor; returns the new parameter and the new state.
pub(crate) fn emit(em: &mut Emitter, sh: &Shared, algo: Algorithm, detect: Detect, hp: &Hyper, spec: &TensorSpec, s: &Slot) -> (String, Vec<String>) {
    let (kind, axis) = effective(algo, detect, spec);
    let g = s.grad;
    match algo {
        Algorithm::Adamp | Algorithm::Adam | Algorithm::Adamw => {
            let (b1, b2) = (hp.beta1, hp.beta2);
            // Adam's weight decay is L2 on the gradient; AdamW's and AdamP's are decoupled.
            let g = if algo == Algorithm::Adam && hp.weight_decay != 0.0 { lin(em, g, 1.0, s.param, hp.weight_decay) } else { g.to_string() };
            let m = lin(em, &s.state[0], b1, &g, 1.0 - b1);
            let g2 = em.mul(&g, &g);
            let v = lin(em, &s.state[1], b2, &g2, 1.0 - b2);
            let bc1 = bias_correction(em, sh, b1);
            let bc2 = bias_correction(em, sh, b2);
            let step_d = em.div(&sh.lr_d, &bc1);
            let step = em.cast(&step_d, em.float);
            let sq_d = em.op("Sqrt", &[&bc2], vec![]);
            let sq = em.cast(&sq_d, em.float);
            let root = em.op("Sqrt", &[&v], vec![]);
            let q = em.div(&root, &sq);
            let e = em.scalar(hp.eps);
            let denom = em.add(&q, &e);
            let num = if hp.nesterov { lin(em, &m, b1, &g, 1.0 - b1) } else { m.clone() };
            let perturb = em.div(&num, &denom);
            let (perturb, flag) = projection(em, s, &perturb, kind, axis, hp);
            let decayed = match algo {
                Algorithm::Adam => s.param.to_string(),
                _ if hp.weight_decay > 0.0 => decay(em, sh, s.param, &flag, hp, 1.0),
                _ => s.param.to_string(),
            };
            let delta = em.mul(&perturb, &step);
            (em.sub(&decayed, &delta), vec![m, v])
        }
        Algorithm::Sgdp => {
            let mo = hp.momentum;
            let buf = lin(em, &s.state[0], mo, g, 1.0 - hp.dampening);
            let d_p = if hp.nesterov { lin(em, g, 1.0, &buf, mo) } else { buf.clone() };
            let (d_p, flag) = projection(em, s, &d_p, kind, axis, hp);
            let decayed = if hp.weight_decay != 0.0 { decay(em, sh, s.param, &flag, hp, 1.0 - mo) } else { s.param.to_string() };
            let lr = em.cast("lr", em.float);
            let delta = em.mul(&d_p, &lr);
            // Without nesterov the reference projects its stored buffer in place.
            let stored = if hp.nesterov { buf } else { d_p };
            (em.sub(&decayed, &delta), vec![stored])
        }
        Algorithm::Sgd => {
            let mo = hp.momentum;
            let g = if hp.weight_decay != 0.0 { lin(em, g, 1.0, s.param, hp.weight_decay) } else { g.to_string() };
            let (d_p, stored) = if mo != 0.0 {
                // torch.optim.SGD starts the buffer at the first gradient, undamped.
                let later = lin(em, &s.state[0], mo, &g, 1.0 - hp.dampening);
                let buf = em.where_(&sh.is_first, &g, &later);
                let d_p = if hp.nesterov { lin(em, &g, 1.0, &buf, mo) } else { buf.clone() };
                (d_p, buf)
            } else {
                (g.clone(), s.state[0].clone())
            };
            let lr = em.cast("lr", em.float);
            let delta = em.mul(&d_p, &lr);
            (em.sub(s.param, &delta), vec![stored])
        }
    }
}
