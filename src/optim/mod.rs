//! The optimizers, described once; no GPU here.
//!
//! Every optimizer is the same chain of stages, in the spirit of optax:
//!
//! 1. **moments**: Adam's first and second moments with bias correction
//!    (AdamP, Adam, AdamW), or a momentum buffer with dampening and nesterov
//!    (SGDP, SGD); Adam and SGD first add their L2 decay to the gradient;
//! 2. **projection** by the tensor's [`Label`]: per slice along an axis, over
//!    the whole tensor, by the reference cosine test each step, or none
//!    (AdamP and SGDP only);
//! 3. **decoupled decay**: the parameter times `1 - lr·wd·r / s`, with
//!    `r = wd_ratio` where projected and `s = 1 - momentum` for SGDP (AdamP,
//!    SGDP, AdamW);
//! 4. **learning rate**: the step `-lr · direction` (`lr / (1 - β1^t)` for the
//!    Adam family).
//!
//! Its backends: the WGSL kernels (`runtime`, feature `gpu`), the ONNX update
//! of the training-step graph (`rewrite`), and the float64 CPU reference
//! ([`reference`]). The golden traces in `fixtures/golden/optim/` replay
//! through them; `fixtures/golden/README.md` states the reference semantics.
mod config;
pub mod reference;

pub use config::{AdamConfig, AdampConfig, AdamwConfig, Algorithm, Config, ConfigError, Detect, Hyper, Overrides, SgdConfig, SgdpConfig};

use crate::plan::Projection;

/// One tensor an optimizer updates.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorSpec {
    /// Its name (errors name it).
    pub name: String,
    /// Its shape.
    pub shape: Vec<usize>,
    /// The plan's projection for it.
    pub projection: Projection,
}

impl TensorSpec {
    /// Elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// What the projection stage does to one tensor, every step, once the
/// optimizer and the detection mode are known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Label {
    /// No projection.
    None,
    /// Per slice along `axis`.
    Channel {
        /// The slice axis.
        axis: usize,
    },
    /// Over the whole tensor.
    Layer,
    /// The reference cosine test decides each step: per slice along axis 0,
    /// else over the whole tensor, else none.
    Runtime,
}

impl Label {
    /// The label of a tensor: its plan projection under a detection mode.
    /// `runtime` tests every tensor of two or more dims (the reference skips
    /// 1-D ones); `static` projects only what the plan proved; `auto` adds the
    /// test for what the plan left undecided. Empty tensors are never projected.
    pub fn of(algo: Algorithm, detect: Detect, spec: &TensorSpec) -> Label {
        if !algo.projects() || spec.numel() == 0 {
            return Label::None;
        }
        let testable = spec.shape.len() >= 2;
        match (detect, &spec.projection) {
            (Detect::Runtime, _) if testable => Label::Runtime,
            (Detect::Runtime, _) => Label::None,
            (_, Projection::Channel { axis }) => Label::Channel { axis: *axis },
            (_, Projection::Layer) => Label::Layer,
            (_, Projection::None) => Label::None,
            (Detect::Auto, Projection::Runtime) if testable => Label::Runtime,
            _ => Label::None,
        }
    }

    /// Short name (`none`, `channel`, `layer`, `runtime`).
    pub fn name(self) -> &'static str {
        match self {
            Label::None => "none",
            Label::Channel { .. } => "channel",
            Label::Layer => "layer",
            Label::Runtime => "runtime",
        }
    }
}

/// What the projection stage did to a tensor in one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Projected {
    /// Not projected.
    None,
    /// Projected per slice (the label's axis, or axis 0 for the runtime test).
    Channel,
    /// Projected as a whole.
    Layer,
}

/// The per-step scalars of the stages, in float64 as the references compute
/// them in Python; backends round each once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepScalars {
    /// The learning-rate stage's factor: `lr / (1 - β1^t)` (Adam family) or `lr`.
    pub step_size: f64,
    /// `sqrt(1 - β2^t)` (Adam family; 1 otherwise).
    pub sqrt_bias_correction2: f64,
    /// `1 - β1`, `1 - β2`, `1 - dampening`.
    pub one_minus_beta1: f64,
    /// See `one_minus_beta1`.
    pub one_minus_beta2: f64,
    /// See `one_minus_beta1`.
    pub one_minus_dampening: f64,
    /// Decoupled decay multiplier of an unprojected tensor (1 without decoupled decay).
    pub decay: f64,
    /// The same for a projected one (with `wd_ratio`).
    pub decay_projected: f64,
}

impl Config {
    /// The stages' scalars at step `step` (1-based) with learning rate `lr`.
    pub fn step_scalars(&self, step: u32, lr: f64) -> StepScalars {
        let h = self.hyper();
        let algo = self.algorithm();
        let t = step as i32;
        let adam = algo.is_adam_family();
        let (bc1, bc2) = if adam { (1.0 - h.beta1.powi(t), 1.0 - h.beta2.powi(t)) } else { (1.0, 1.0) };
        let (decay, decay_projected) = match algo {
            Algorithm::Adamp => (1.0 - lr * h.weight_decay, 1.0 - lr * h.weight_decay * h.wd_ratio),
            Algorithm::Adamw => (1.0 - lr * h.weight_decay, 1.0 - lr * h.weight_decay),
            Algorithm::Sgdp => {
                let scale = self.decay_scale();
                (1.0 - lr * h.weight_decay / scale, 1.0 - lr * h.weight_decay * h.wd_ratio / scale)
            }
            Algorithm::Adam | Algorithm::Sgd => (1.0, 1.0),
        };
        StepScalars {
            step_size: lr / bc1,
            sqrt_bias_correction2: bc2.sqrt(),
            one_minus_beta1: 1.0 - h.beta1,
            one_minus_beta2: 1.0 - h.beta2,
            one_minus_dampening: 1.0 - h.dampening,
            decay,
            decay_projected,
        }
    }

    /// The SGDP decay divisor `1 - momentum` (1 for the others).
    pub fn decay_scale(&self) -> f64 {
        match self {
            Config::Sgdp(h) => 1.0 - h.momentum,
            _ => 1.0,
        }
    }
}
