//! The optimizer step in ONNX ops, with the semantics of the WGSL kernels and
//! the reference implementations (official adamp 0.3.0, torch.optim): see
//! fixtures/golden/README.md. Scalars that the reference computes in Python
//! (bias corrections, step size, decay multipliers) are computed in float64.
use super::emit::{Emitter, DOUBLE};
use crate::optim::{Algorithm, Config, Detect, Hyper, Label, TensorSpec};
use crate::ops;

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

/// Scalars every tensor's update shares, emitted once per step graph.
pub(crate) struct Shared {
    /// `step == 1` (torch SGD's first buffer).
    is_first: String,
    /// `lr` in the model's float type.
    lr: String,
    /// Adam family: `lr / (1 - beta1^step)` and `sqrt(1 - beta2^step)`.
    step_size: String,
    sqrt_bc2: String,
    /// Decoupled decay multipliers: `1 - lr * wd / scale`, and with `wd_ratio`.
    decay_plain: String,
    decay_projected: String,
}

/// Emits the shared scalars. The reference computes them in Python floats,
/// so they are computed in float64 and cast.
pub(crate) fn shared(em: &mut Emitter, config: &Config) -> Shared {
    let hp = &config.hyper();
    let step_d = em.cast("step", DOUBLE);
    let lr_d = em.cast("lr", DOUBLE);
    let one = em.scalar_of(1.0, super::emit::INT64);
    let is_first = em.op(&ops::EQUAL, &["step", &one], vec![]);
    let lr = em.cast("lr", em.float);
    let bias_correction = |em: &mut Emitter, beta: f64| {
        let b = em.scalar_of(beta, DOUBLE);
        let bt = em.op(&ops::POW, &[&b, &step_d], vec![]);
        let one = em.scalar_of(1.0, DOUBLE);
        em.sub(&one, &bt)
    };
    let bc1 = bias_correction(em, hp.beta1);
    let bc2 = bias_correction(em, hp.beta2);
    let step_d = em.div(&lr_d, &bc1);
    let step_size = em.cast(&step_d, em.float);
    let sq = em.op(&ops::SQRT, &[&bc2], vec![]);
    let sqrt_bc2 = em.cast(&sq, em.float);
    // SGDP divides its decay by (1 - momentum).
    let scale = config.decay_scale();
    let factor = |em: &mut Emitter, m: f64| {
        let k = em.scalar_of(-hp.weight_decay * m / scale, DOUBLE);
        let p = em.mul(&lr_d, &k);
        let one = em.scalar_of(1.0, DOUBLE);
        let f = em.add(&p, &one);
        em.cast(&f, em.float)
    };
    let decay_plain = factor(em, 1.0);
    let decay_projected = factor(em, hp.wd_ratio);
    Shared { is_first, lr, step_size, sqrt_bc2, decay_plain, decay_projected }
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
        Some([]) => em.op(&ops::ABS, &[p], vec![]),
        _ => em.reduce(&ops::REDUCE_L2, p, axes, true),
    };
    let ne = em.add(&norm, &e);
    let pn = em.div(p, &ne);
    let prod = em.mul(&pn, perturb);
    let dot = match axes {
        Some([]) => prod,
        _ => em.reduce(&ops::REDUCE_SUM, &prod, axes, true),
    };
    let r = em.mul(&pn, &dot);
    em.sub(perturb, &r)
}

/// The reference test: `max |cos(g_row, p_row)| < delta / sqrt(row length)`.
fn cosine_test(em: &mut Emitter, p: &str, g: &str, axes: Option<&[i64]>, row_len: i64, hp: &Hyper) -> String {
    let e = em.scalar(hp.eps);
    let unit = |em: &mut Emitter, x: &str| {
        let n = em.reduce(&ops::REDUCE_L2, x, axes, true);
        let m = em.op(&ops::MAX, &[&n, &e], vec![]);
        em.div(x, &m)
    };
    let gu = unit(em, g);
    let pu = unit(em, p);
    let prod = em.mul(&gu, &pu);
    let cos = em.reduce(&ops::REDUCE_SUM, &prod, axes, true);
    let a = em.op(&ops::ABS, &[&cos], vec![]);
    let max = em.reduce(&ops::REDUCE_MAX, &a, None, false);
    let t = em.scalar(hp.delta / (row_len.max(1) as f64).sqrt());
    em.op(&ops::LESS, &[&max, &t], vec![])
}

/// Projects `perturb` per the tensor's effective projection; returns it and
/// whether it was projected (a bool tensor name, or a constant).
fn projection(em: &mut Emitter, s: &Slot, perturb: &str, label: Label, hp: &Hyper) -> (String, Flag) {
    let r = s.dims.len();
    let numel: i64 = s.dims.iter().product();
    let rows_over = |a: usize| -> Vec<i64> { (0..r as i64).filter(|&k| k != a as i64).collect() };
    match label {
        Label::Channel { axis } => {
            let axes = rows_over(axis);
            (project(em, s.param, perturb, Some(&axes), hp.eps), Flag::Yes)
        }
        Label::Layer => (project(em, s.param, perturb, None, hp.eps), Flag::Yes),
        Label::Runtime => {
            let axes = rows_over(0);
            let c_ok = cosine_test(em, s.param, s.grad, Some(&axes), numel / s.dims[0].max(1), hp);
            let l_ok = cosine_test(em, s.param, s.grad, None, numel, hp);
            let pc = project(em, s.param, perturb, Some(&axes), hp.eps);
            let pl = project(em, s.param, perturb, None, hp.eps);
            let inner = em.where_(&l_ok, &pl, perturb);
            let out = em.where_(&c_ok, &pc, &inner);
            let any = em.op(&ops::OR, &[&c_ok, &l_ok], vec![]);
            (out, Flag::Dynamic(any))
        }
        Label::None => (perturb.to_string(), Flag::No),
    }
}

/// Whether a tensor's update was projected this step.
enum Flag {
    Yes,
    No,
    Dynamic(String),
}

/// `p * (1 - lr * wd * m / scale)` with `m = wd_ratio` where projected, else 1.
fn decay(em: &mut Emitter, sh: &Shared, p: &str, flag: &Flag) -> String {
    let factor = match flag {
        Flag::Yes => sh.decay_projected.clone(),
        Flag::No => sh.decay_plain.clone(),
        Flag::Dynamic(c) => em.where_(c, &sh.decay_projected, &sh.decay_plain),
    };
    em.mul(p, &factor)
}

/// Emits the update of one tensor; returns the new parameter and the new state.
pub(crate) fn emit(em: &mut Emitter, sh: &Shared, config: &Config, detect: Detect, spec: &TensorSpec, s: &Slot) -> (String, Vec<String>) {
    let (algo, hp) = (config.algorithm(), &config.hyper());
    let label = Label::of(algo, detect, spec);
    let g = s.grad;
    match algo {
        Algorithm::Adamp | Algorithm::Adam | Algorithm::Adamw => {
            let (b1, b2) = (hp.beta1, hp.beta2);
            // Adam's weight decay is L2 on the gradient; AdamW's and AdamP's are decoupled.
            let g = if algo == Algorithm::Adam && hp.weight_decay != 0.0 { lin(em, g, 1.0, s.param, hp.weight_decay) } else { g.to_string() };
            let m = lin(em, &s.state[0], b1, &g, 1.0 - b1);
            let g2 = em.mul(&g, &g);
            let v = lin(em, &s.state[1], b2, &g2, 1.0 - b2);
            let root = em.op(&ops::SQRT, &[&v], vec![]);
            let q = em.div(&root, &sh.sqrt_bc2);
            let e = em.scalar(hp.eps);
            let denom = em.add(&q, &e);
            let num = if hp.nesterov { lin(em, &m, b1, &g, 1.0 - b1) } else { m.clone() };
            let perturb = em.div(&num, &denom);
            let (perturb, flag) = projection(em, s, &perturb, label, hp);
            let decayed = match algo {
                Algorithm::Adam => s.param.to_string(),
                _ if hp.weight_decay > 0.0 => decay(em, sh, s.param, &flag),
                _ => s.param.to_string(),
            };
            let delta = em.mul(&perturb, &sh.step_size);
            (em.sub(&decayed, &delta), vec![m, v])
        }
        Algorithm::Sgdp => {
            let mo = hp.momentum;
            let buf = lin(em, &s.state[0], mo, g, 1.0 - hp.dampening);
            let d_p = if hp.nesterov { lin(em, g, 1.0, &buf, mo) } else { buf.clone() };
            let (d_p, flag) = projection(em, s, &d_p, label, hp);
            let decayed = if hp.weight_decay != 0.0 { decay(em, sh, s.param, &flag) } else { s.param.to_string() };
            let delta = em.mul(&d_p, &sh.lr);
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
            let delta = em.mul(&d_p, &sh.lr);
            (em.sub(s.param, &delta), vec![stored])
        }
    }
}
