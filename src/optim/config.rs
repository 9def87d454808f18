//! One configuration type per optimizer: serde, documented defaults equal to
//! the reference implementations, validated once ([`Config::validate`]).
use serde::{Deserialize, Serialize};

/// The update rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    /// AdamP (official adamp 0.3.0).
    Adamp,
    /// SGDP (official adamp 0.3.0).
    Sgdp,
    /// torch.optim.Adam.
    Adam,
    /// torch.optim.AdamW.
    Adamw,
    /// torch.optim.SGD.
    Sgd,
}

impl Algorithm {
    /// True for the projecting optimizers.
    pub fn projects(self) -> bool {
        matches!(self, Algorithm::Adamp | Algorithm::Sgdp)
    }

    /// True for Adam, AdamW, AdamP (two state buffers).
    pub fn is_adam_family(self) -> bool {
        matches!(self, Algorithm::Adamp | Algorithm::Adam | Algorithm::Adamw)
    }

    /// The unprojected baseline of the same family.
    pub fn baseline(self) -> Algorithm {
        if self.is_adam_family() {
            Algorithm::Adam
        } else {
            Algorithm::Sgd
        }
    }

    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Adamp => "adamp",
            Algorithm::Sgdp => "sgdp",
            Algorithm::Adam => "adam",
            Algorithm::Adamw => "adamw",
            Algorithm::Sgd => "sgd",
        }
    }

    /// Names of the per-parameter state buffers, in order.
    pub fn state_names(self) -> &'static [&'static str] {
        if self.is_adam_family() {
            &["exp_avg", "exp_avg_sq"]
        } else {
            &["momentum"]
        }
    }
}

/// How projected tensors are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Detect {
    /// The reference cosine test on every tensor of 2 or more dims, every step.
    Runtime,
    /// The plan's projection (any axis); no cosine test (undecided tensors are not projected).
    Static,
    /// The plan where proven; the cosine test for undecided tensors.
    Auto,
}

impl Detect {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Detect::Runtime => "runtime",
            Detect::Static => "static",
            Detect::Auto => "auto",
        }
    }
}

/// AdamP: defaults of `adamp.AdamP` 0.3.0.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdampConfig {
    /// Learning rate (1e-3).
    pub lr: f64,
    /// Moment decay rates (0.9, 0.999).
    pub betas: (f64, f64),
    /// Denominator and norm epsilon (1e-8).
    pub eps: f64,
    /// Decoupled weight decay (0).
    pub weight_decay: f64,
    /// Cosine-test threshold of the runtime test (0.1).
    pub delta: f64,
    /// Weight-decay multiplier where projected (0.1).
    pub wd_ratio: f64,
    /// Nesterov momentum (false).
    pub nesterov: bool,
}

impl Default for AdampConfig {
    fn default() -> Self {
        AdampConfig { lr: 1e-3, betas: (0.9, 0.999), eps: 1e-8, weight_decay: 0.0, delta: 0.1, wd_ratio: 0.1, nesterov: false }
    }
}

/// SGDP: defaults of `adamp.SGDP` 0.3.0 (which has no default `lr`; 0.1 here).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SgdpConfig {
    /// Learning rate (0.1).
    pub lr: f64,
    /// Momentum (0).
    pub momentum: f64,
    /// Dampening (0).
    pub dampening: f64,
    /// Norm epsilon (1e-8).
    pub eps: f64,
    /// Decoupled weight decay, divided by `1 - momentum` as the reference does (0).
    pub weight_decay: f64,
    /// Cosine-test threshold of the runtime test (0.1).
    pub delta: f64,
    /// Weight-decay multiplier where projected (0.1).
    pub wd_ratio: f64,
    /// Nesterov momentum (false).
    pub nesterov: bool,
}

impl Default for SgdpConfig {
    fn default() -> Self {
        SgdpConfig { lr: 0.1, momentum: 0.0, dampening: 0.0, eps: 1e-8, weight_decay: 0.0, delta: 0.1, wd_ratio: 0.1, nesterov: false }
    }
}

/// Adam: defaults of `torch.optim.Adam` (weight decay is an L2 term in the gradient).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdamConfig {
    /// Learning rate (1e-3).
    pub lr: f64,
    /// Moment decay rates (0.9, 0.999).
    pub betas: (f64, f64),
    /// Denominator epsilon (1e-8).
    pub eps: f64,
    /// L2 weight decay added to the gradient (0).
    pub weight_decay: f64,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig { lr: 1e-3, betas: (0.9, 0.999), eps: 1e-8, weight_decay: 0.0 }
    }
}

/// AdamW: defaults of `torch.optim.AdamW` (decoupled decay 1e-2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdamwConfig {
    /// Learning rate (1e-3).
    pub lr: f64,
    /// Moment decay rates (0.9, 0.999).
    pub betas: (f64, f64),
    /// Denominator epsilon (1e-8).
    pub eps: f64,
    /// Decoupled weight decay (1e-2).
    pub weight_decay: f64,
}

impl Default for AdamwConfig {
    fn default() -> Self {
        AdamwConfig { lr: 1e-3, betas: (0.9, 0.999), eps: 1e-8, weight_decay: 1e-2 }
    }
}

/// SGD: defaults of `torch.optim.SGD` (no default `lr` there; 0.1 here).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SgdConfig {
    /// Learning rate (0.1).
    pub lr: f64,
    /// Momentum (0).
    pub momentum: f64,
    /// Dampening (0).
    pub dampening: f64,
    /// L2 weight decay added to the gradient (0).
    pub weight_decay: f64,
    /// Nesterov momentum (false).
    pub nesterov: bool,
}

impl Default for SgdConfig {
    fn default() -> Self {
        SgdConfig { lr: 0.1, momentum: 0.0, dampening: 0.0, weight_decay: 0.0, nesterov: false }
    }
}

/// One optimizer's configuration. In JSON (the plan) it is
/// `"optimizer": NAME, "hyperparameters": {...}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "optimizer", content = "hyperparameters", rename_all = "lowercase")]
pub enum Config {
    /// AdamP.
    Adamp(AdampConfig),
    /// SGDP.
    Sgdp(SgdpConfig),
    /// Adam.
    Adam(AdamConfig),
    /// AdamW.
    Adamw(AdamwConfig),
    /// SGD.
    Sgd(SgdConfig),
}

/// An invalid configuration: which option, and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ConfigError {
    /// The option, as the command line spells it (`--lr`, `--betas`, ...).
    pub option: String,
    /// What is wrong and what is allowed.
    pub message: String,
}

/// A value out of range.
fn bad(option: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError { option: option.into(), message: format!("invalid {option}: {}", reason.into()) }
}

/// An option the optimizer does not have.
fn foreign(option: &str, message: String) -> ConfigError {
    ConfigError { option: option.into(), message }
}

/// Values a user set; the rest keep the optimizer's defaults ([`Config::with`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    /// `--lr`.
    pub lr: Option<f64>,
    /// `--betas`.
    pub betas: Option<(f64, f64)>,
    /// `--eps`.
    pub eps: Option<f64>,
    /// `--weight-decay`.
    pub weight_decay: Option<f64>,
    /// `--momentum`.
    pub momentum: Option<f64>,
    /// `--dampening`.
    pub dampening: Option<f64>,
    /// `--nesterov`.
    pub nesterov: bool,
    /// `--delta`.
    pub delta: Option<f64>,
    /// `--wd-ratio`.
    pub wd_ratio: Option<f64>,
}

impl Config {
    /// The reference defaults of an optimizer.
    pub fn defaults(algo: Algorithm) -> Config {
        match algo {
            Algorithm::Adamp => Config::Adamp(AdampConfig::default()),
            Algorithm::Sgdp => Config::Sgdp(SgdpConfig::default()),
            Algorithm::Adam => Config::Adam(AdamConfig::default()),
            Algorithm::Adamw => Config::Adamw(AdamwConfig::default()),
            Algorithm::Sgd => Config::Sgd(SgdConfig::default()),
        }
    }

    /// The defaults of `algo` with the user's values, validated. An option the
    /// optimizer does not have is an error naming it.
    pub fn with(algo: Algorithm, o: &Overrides) -> Result<Config, ConfigError> {
        let name = algo.name();
        if algo.is_adam_family() && (o.momentum.is_some() || o.dampening.is_some()) {
            let option = if o.momentum.is_some() { "--momentum" } else { "--dampening" };
            return Err(foreign(option, format!("--momentum and --dampening are SGD-family options; {name} takes --betas")));
        }
        if !algo.is_adam_family() && o.betas.is_some() {
            return Err(foreign("--betas", format!("--betas is an Adam-family option; {name} takes --momentum and --dampening")));
        }
        if !algo.projects() && (o.delta.is_some() || o.wd_ratio.is_some()) {
            let option = if o.delta.is_some() { "--delta" } else { "--wd-ratio" };
            return Err(foreign(option, format!("--delta and --wd-ratio apply to adamp and sgdp only, not {name}")));
        }
        if o.eps.is_some() && algo == Algorithm::Sgd {
            return Err(foreign("--eps", "--eps is not an option of torch.optim.SGD".into()));
        }
        if o.nesterov && matches!(algo, Algorithm::Adam | Algorithm::Adamw) {
            let torch = if algo == Algorithm::Adam { "Adam" } else { "AdamW" };
            return Err(foreign("--nesterov", format!("--nesterov is not an option of torch.optim.{torch}")));
        }
        let set = |dst: &mut f64, v: Option<f64>| {
            if let Some(v) = v {
                *dst = v;
            }
        };
        let mut c = Config::defaults(algo);
        match &mut c {
            Config::Adamp(h) => {
                set(&mut h.lr, o.lr);
                h.betas = o.betas.unwrap_or(h.betas);
                set(&mut h.eps, o.eps);
                set(&mut h.weight_decay, o.weight_decay);
                set(&mut h.delta, o.delta);
                set(&mut h.wd_ratio, o.wd_ratio);
                h.nesterov = o.nesterov;
            }
            Config::Sgdp(h) => {
                set(&mut h.lr, o.lr);
                set(&mut h.momentum, o.momentum);
                set(&mut h.dampening, o.dampening);
                set(&mut h.eps, o.eps);
                set(&mut h.weight_decay, o.weight_decay);
                set(&mut h.delta, o.delta);
                set(&mut h.wd_ratio, o.wd_ratio);
                h.nesterov = o.nesterov;
            }
            Config::Adam(h) => {
                set(&mut h.lr, o.lr);
                h.betas = o.betas.unwrap_or(h.betas);
                set(&mut h.eps, o.eps);
                set(&mut h.weight_decay, o.weight_decay);
            }
            Config::Adamw(h) => {
                set(&mut h.lr, o.lr);
                h.betas = o.betas.unwrap_or(h.betas);
                set(&mut h.eps, o.eps);
                set(&mut h.weight_decay, o.weight_decay);
            }
            Config::Sgd(h) => {
                set(&mut h.lr, o.lr);
                set(&mut h.momentum, o.momentum);
                set(&mut h.dampening, o.dampening);
                set(&mut h.weight_decay, o.weight_decay);
                h.nesterov = o.nesterov;
            }
        }
        c.validate()?;
        Ok(c)
    }

    /// The optimizer.
    pub fn algorithm(&self) -> Algorithm {
        match self {
            Config::Adamp(_) => Algorithm::Adamp,
            Config::Sgdp(_) => Algorithm::Sgdp,
            Config::Adam(_) => Algorithm::Adam,
            Config::Adamw(_) => Algorithm::Adamw,
            Config::Sgd(_) => Algorithm::Sgd,
        }
    }

    /// The learning rate.
    pub fn lr(&self) -> f64 {
        self.hyper().lr
    }

    /// The same configuration with another learning rate (a schedule's value for one step).
    pub fn with_lr(&self, lr: f64) -> Config {
        let mut c = self.clone();
        match &mut c {
            Config::Adamp(h) => h.lr = lr,
            Config::Sgdp(h) => h.lr = lr,
            Config::Adam(h) => h.lr = lr,
            Config::Adamw(h) => h.lr = lr,
            Config::Sgd(h) => h.lr = lr,
        }
        c
    }

    /// Checks every value's range (the one validation every entry point uses).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let h = self.hyper();
        let non_negative = |option: &str, v: f64| {
            if v.is_finite() && v >= 0.0 {
                Ok(())
            } else {
                Err(bad(option, format!("{v} (a finite number >= 0)")))
            }
        };
        non_negative("--lr", h.lr)?;
        non_negative("--eps", h.eps)?;
        non_negative("--weight-decay", h.weight_decay)?;
        non_negative("--delta", h.delta)?;
        non_negative("--wd-ratio", h.wd_ratio)?;
        if self.algorithm().is_adam_family() {
            for (which, v) in [("beta1", h.beta1), ("beta2", h.beta2)] {
                if !(v.is_finite() && (0.0..1.0).contains(&v)) {
                    return Err(bad("--betas", format!("{which} = {v} (in [0, 1))")));
                }
            }
        } else {
            if !(h.momentum.is_finite() && (0.0..1.0).contains(&h.momentum)) {
                return Err(bad("--momentum", format!("{} (in [0, 1))", h.momentum)));
            }
            if !(h.dampening.is_finite() && (0.0..=1.0).contains(&h.dampening)) {
                return Err(bad("--dampening", format!("{} (in [0, 1])", h.dampening)));
            }
            if h.nesterov && (h.momentum <= 0.0 || h.dampening != 0.0) {
                return Err(foreign("--nesterov", "nesterov needs a momentum > 0 and zero dampening".into()));
            }
        }
        Ok(())
    }

    /// Every backend's flat view of the configuration (values an optimizer
    /// lacks are neutral: no momentum, no projection threshold).
    pub fn hyper(&self) -> Hyper {
        let none = Hyper { lr: 0.0, beta1: 0.0, beta2: 0.0, eps: 0.0, weight_decay: 0.0, momentum: 0.0, dampening: 0.0, nesterov: false, delta: 0.0, wd_ratio: 1.0 };
        match self {
            Config::Adamp(h) => Hyper {
                lr: h.lr,
                beta1: h.betas.0,
                beta2: h.betas.1,
                eps: h.eps,
                weight_decay: h.weight_decay,
                nesterov: h.nesterov,
                delta: h.delta,
                wd_ratio: h.wd_ratio,
                ..none
            },
            Config::Sgdp(h) => Hyper {
                lr: h.lr,
                eps: h.eps,
                weight_decay: h.weight_decay,
                momentum: h.momentum,
                dampening: h.dampening,
                nesterov: h.nesterov,
                delta: h.delta,
                wd_ratio: h.wd_ratio,
                ..none
            },
            Config::Adam(h) => Hyper { lr: h.lr, beta1: h.betas.0, beta2: h.betas.1, eps: h.eps, weight_decay: h.weight_decay, ..none },
            Config::Adamw(h) => Hyper { lr: h.lr, beta1: h.betas.0, beta2: h.betas.1, eps: h.eps, weight_decay: h.weight_decay, ..none },
            Config::Sgd(h) => Hyper { lr: h.lr, weight_decay: h.weight_decay, momentum: h.momentum, dampening: h.dampening, nesterov: h.nesterov, ..none },
        }
    }
}

/// The flat view of a [`Config`] that the backends read: it has no defaults
/// and no validation of its own; make one with [`Config::hyper`].
#[derive(Debug, Clone, PartialEq)]
pub struct Hyper {
    /// Learning rate.
    pub lr: f64,
    /// Adam beta1.
    pub beta1: f64,
    /// Adam beta2.
    pub beta2: f64,
    /// Epsilon.
    pub eps: f64,
    /// Weight decay (coupled for Adam and SGD, decoupled otherwise).
    pub weight_decay: f64,
    /// SGD momentum.
    pub momentum: f64,
    /// SGD dampening.
    pub dampening: f64,
    /// Nesterov.
    pub nesterov: bool,
    /// Cosine-test threshold.
    pub delta: f64,
    /// Weight-decay multiplier where projected.
    pub wd_ratio: f64,
}
