//! The float64 CPU backend: the stages of [`super`] written out plainly, one
//! tensor at a time. It is the yardstick the WGSL kernels and the ONNX update
//! are tested against, and it replays the golden traces itself.
use super::{Algorithm, Config, Detect, Label, Projected, TensorSpec};

/// One tensor's parameter and state.
#[derive(Debug, Clone)]
struct Slot {
    spec: TensorSpec,
    label: Label,
    param: Vec<f64>,
    /// `exp_avg`, `exp_avg_sq` (Adam family) or the momentum buffer.
    state: Vec<Vec<f64>>,
}

/// Bad input to the reference: which tensor, and what.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("tensor '{tensor}': {detail}")]
pub struct ReferenceError {
    /// The tensor (`<all>` for a count mismatch).
    pub tensor: String,
    /// What is wrong.
    pub detail: String,
}

/// The float64 optimizer over a set of tensors.
#[derive(Debug, Clone)]
pub struct Reference {
    config: Config,
    slots: Vec<Slot>,
    step: u32,
}

impl Reference {
    /// Tensors with their initial values and zero state.
    pub fn new(config: &Config, detect: Detect, specs: Vec<TensorSpec>, params: &[&[f64]]) -> Result<Reference, ReferenceError> {
        config.validate().map_err(|e| ReferenceError { tensor: "<config>".into(), detail: e.to_string() })?;
        if specs.len() != params.len() {
            return Err(ReferenceError { tensor: "<all>".into(), detail: format!("{} parameter arrays for {} tensors", params.len(), specs.len()) });
        }
        let algo = config.algorithm();
        let states = algo.state_names().len();
        let mut slots = Vec::with_capacity(specs.len());
        for (spec, p) in specs.into_iter().zip(params) {
            if p.len() != spec.numel() {
                return Err(ReferenceError { tensor: spec.name.clone(), detail: format!("{} values for shape {:?}", p.len(), spec.shape) });
            }
            let label = Label::of(algo, detect, &spec);
            if let Label::Channel { axis } = label {
                if axis >= spec.shape.len() {
                    return Err(ReferenceError { tensor: spec.name.clone(), detail: format!("channel axis {axis} for shape {:?}", spec.shape) });
                }
            }
            slots.push(Slot { label, param: p.to_vec(), state: vec![vec![0.0; p.len()]; states], spec });
        }
        Ok(Reference { config: config.clone(), slots, step: 0 })
    }

    /// One step with these gradients (one per tensor, in order); returns what
    /// the projection stage did to each tensor.
    pub fn step(&mut self, grads: &[&[f64]]) -> Result<Vec<Projected>, ReferenceError> {
        if grads.len() != self.slots.len() {
            return Err(ReferenceError { tensor: "<all>".into(), detail: format!("{} gradients for {} tensors", grads.len(), self.slots.len()) });
        }
        for (s, g) in self.slots.iter().zip(grads) {
            if g.len() != s.param.len() {
                return Err(ReferenceError { tensor: s.spec.name.clone(), detail: format!("gradient of {} values for shape {:?}", g.len(), s.spec.shape) });
            }
        }
        self.step += 1;
        let (config, step) = (&self.config, self.step);
        Ok(self.slots.iter_mut().zip(grads).map(|(s, g)| update(config, step, s, g)).collect())
    }

    /// A tensor's parameter.
    pub fn param(&self, t: usize) -> &[f64] {
        &self.slots[t].param
    }

    /// A tensor's state buffers, in [`Algorithm::state_names`] order.
    pub fn state(&self, t: usize) -> &[Vec<f64>] {
        &self.slots[t].state
    }

    /// Steps taken.
    pub fn steps(&self) -> u32 {
        self.step
    }
}

/// Index of element `i`'s slice along `axis`.
fn row_of(shape: &[usize], axis: usize, i: usize) -> usize {
    let inner: usize = shape[axis + 1..].iter().product();
    (i / inner.max(1)) % shape[axis].max(1)
}

/// The reference cosine test: channel view (axis 0), then layer view.
fn cosine_view(shape: &[usize], p: &[f64], g: &[f64], delta: f64, eps: f64) -> Option<Option<usize>> {
    let n = p.len();
    let max_cos = |rows: usize, row: &dyn Fn(usize) -> usize| -> f64 {
        let mut s = vec![[0.0f64; 3]; rows];
        for i in 0..n {
            let r = row(i);
            s[r][0] += g[i] * p[i];
            s[r][1] += g[i] * g[i];
            s[r][2] += p[i] * p[i];
        }
        s.iter().map(|x| (x[0] / (x[1].sqrt().max(eps) * x[2].sqrt().max(eps))).abs()).fold(0.0, f64::max)
    };
    let rows = shape[0].max(1);
    if max_cos(rows, &|i| row_of(shape, 0, i)) < delta / ((n / rows) as f64).sqrt() {
        Some(Some(0))
    } else if max_cos(1, &|_| 0) < delta / (n as f64).sqrt() {
        Some(None)
    } else {
        None
    }
}

fn update(config: &Config, step: u32, s: &mut Slot, g: &[f64]) -> Projected {
    let h = config.hyper();
    let algo = config.algorithm();
    let k = config.step_scalars(step, h.lr);
    let n = s.param.len();
    // Stage 1: moments (with the L2 term of Adam and SGD folded into the gradient).
    let coupled = matches!(algo, Algorithm::Adam | Algorithm::Sgd);
    let g: Vec<f64> = (0..n).map(|i| if coupled { g[i] + h.weight_decay * s.param[i] } else { g[i] }).collect();
    let mut d = vec![0.0; n];
    if algo.is_adam_family() {
        for i in 0..n {
            let m = h.beta1 * s.state[0][i] + k.one_minus_beta1 * g[i];
            let v = h.beta2 * s.state[1][i] + k.one_minus_beta2 * g[i] * g[i];
            s.state[0][i] = m;
            s.state[1][i] = v;
            let num = if h.nesterov { h.beta1 * m + k.one_minus_beta1 * g[i] } else { m };
            d[i] = num / (v.sqrt() / k.sqrt_bias_correction2 + h.eps);
        }
    } else if algo == Algorithm::Sgd && h.momentum == 0.0 {
        d.copy_from_slice(&g);
    } else {
        for i in 0..n {
            let buf = if algo == Algorithm::Sgd && step == 1 { g[i] } else { h.momentum * s.state[0][i] + k.one_minus_dampening * g[i] };
            s.state[0][i] = buf;
            d[i] = if h.nesterov { g[i] + h.momentum * buf } else { buf };
        }
    }
    // Stage 2: projection by the label.
    let view = match s.label {
        Label::None => None,
        Label::Channel { axis } => Some(Some(axis)),
        Label::Layer => Some(None),
        Label::Runtime => cosine_view(&s.spec.shape, &s.param, &g, h.delta, h.eps),
    };
    if let Some(axis) = view {
        let rows = axis.map(|a| s.spec.shape[a]).unwrap_or(1);
        let row = |i: usize| axis.map(|a| row_of(&s.spec.shape, a, i)).unwrap_or(0);
        let (mut pp, mut pd) = (vec![0.0; rows], vec![0.0; rows]);
        for i in 0..n {
            pp[row(i)] += s.param[i] * s.param[i];
            pd[row(i)] += s.param[i] * d[i];
        }
        for i in 0..n {
            let norm = pp[row(i)].sqrt() + h.eps;
            d[i] -= s.param[i] * pd[row(i)] / (norm * norm);
        }
        if algo == Algorithm::Sgdp && !h.nesterov {
            // The reference projects the stored buffer in place.
            s.state[0].copy_from_slice(&d);
        }
    }
    // Stages 3 and 4: decoupled decay, then the learning rate.
    let decay = if view.is_some() { k.decay_projected } else { k.decay };
    for i in 0..n {
        s.param[i] = s.param[i] * decay - k.step_size * d[i];
    }
    match view {
        None => Projected::None,
        Some(Some(_)) => Projected::Channel,
        Some(None) => Projected::Layer,
    }
}
