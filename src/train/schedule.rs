//! Learning-rate schedules, as in the AdamP paper's setups: constant, cosine
//! annealing to zero, and step decay, each after an optional linear warmup.
//!
//! Steps are counted from 1: `lr_at(base, k)` is the learning rate the k-th
//! optimizer step uses. With `W` warmup steps:
//!
//! - warmup, `k <= W`: `base * k / W` (the first step already moves, the W-th
//!   runs at `base`);
//! - after it, with `e = k - W - 1` the 0-based count of post-warmup steps:
//!   - constant: `base`;
//!   - cosine over `T` total steps: `base * (1 + cos(pi * e / (T - W))) / 2`,
//!     and 0 from step `T + 1` on;
//!   - step: `base * gamma^floor(e / S)`.
//!
//! This is PyTorch's behaviour, step for step, where the two correspond (the
//! lr of step k is `optimizer.param_groups[0]["lr"]` before the k-th
//! `optimizer.step()`, with `scheduler.step()` after each):
//!
//! - no warmup: cosine is `CosineAnnealingLR(T_max=T, eta_min=0)`, step is
//!   `StepLR(step_size=S, gamma=G)`;
//! - warmup `W >= 2`: `SequentialLR([LinearLR(start_factor=1/W,
//!   end_factor=1, total_iters=W-1), <the above with T_max=T-W>],
//!   milestones=[W])`; so `base` is used by both step W and step W+1.
//!
//! One deliberate difference: past `T` steps PyTorch's cosine rises again (it
//! is periodic); here it stays at 0, since `T` is the length of the run.

use serde::{Deserialize, Serialize};

/// The schedule's name, as the command line spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleKind {
    /// The base learning rate throughout (after warmup).
    Constant,
    /// Cosine annealing to zero at the last step.
    Cosine,
    /// Multiply by `gamma` every `step_size` steps.
    Step,
}

/// How the learning rate decays after warmup.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Decay {
    /// No decay.
    Constant,
    /// Cosine annealing from `base` to 0 over the steps after warmup.
    Cosine {
        /// The run's total number of steps, warmup included.
        total_steps: u64,
    },
    /// Step decay.
    Step {
        /// Steps between two decays.
        step_size: u64,
        /// Factor applied at each decay.
        gamma: f64,
    },
}

/// Why a schedule's parameters are refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScheduleError {
    /// The cosine schedule needs its length.
    #[error("--lr-schedule cosine needs the run's total number of steps")]
    MissingTotal,
    /// Warmup would take the whole cosine run.
    #[error("--warmup-steps {warmup} must be below the run's {total} total steps for the cosine schedule")]
    WarmupTooLong {
        /// The warmup asked for.
        warmup: u64,
        /// The total steps.
        total: u64,
    },
    /// A step size of zero.
    #[error("--step-size must be at least 1")]
    ZeroStepSize,
    /// A decay factor that is not a positive finite number.
    #[error("--gamma must be a positive finite number, not {0}")]
    BadGamma(f64),
}

/// A validated learning-rate schedule: linear warmup, then a decay.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "ScheduleFields")]
pub struct Schedule {
    decay: Decay,
    warmup_steps: u64,
}

/// The serialized form, validated on the way in.
#[derive(Deserialize)]
struct ScheduleFields {
    decay: Decay,
    warmup_steps: u64,
}

impl TryFrom<ScheduleFields> for Schedule {
    type Error = ScheduleError;

    fn try_from(fields: ScheduleFields) -> Result<Schedule, ScheduleError> {
        Schedule::new(fields.decay, fields.warmup_steps)
    }
}

impl Default for Schedule {
    /// A constant learning rate, no warmup.
    fn default() -> Schedule {
        Schedule { decay: Decay::Constant, warmup_steps: 0 }
    }
}

impl Schedule {
    /// A schedule, after checking its parameters: a cosine run longer than
    /// its warmup, a step size of at least 1, a positive finite gamma.
    pub fn new(decay: Decay, warmup_steps: u64) -> Result<Schedule, ScheduleError> {
        match decay {
            Decay::Constant => {}
            Decay::Cosine { total_steps } => {
                if warmup_steps >= total_steps {
                    return Err(ScheduleError::WarmupTooLong { warmup: warmup_steps, total: total_steps });
                }
            }
            Decay::Step { step_size, gamma } => {
                if step_size == 0 {
                    return Err(ScheduleError::ZeroStepSize);
                }
                if !(gamma.is_finite() && gamma > 0.0) {
                    return Err(ScheduleError::BadGamma(gamma));
                }
            }
        }
        Ok(Schedule { decay, warmup_steps })
    }

    /// A schedule from the command line's flags: the kind, the warmup, the
    /// run's total steps (needed by cosine only), and step decay's size and
    /// gamma (read by step only).
    pub fn from_flags(
        kind: ScheduleKind,
        warmup_steps: u64,
        total_steps: Option<u64>,
        step_size: u64,
        gamma: f64,
    ) -> Result<Schedule, ScheduleError> {
        let decay = match kind {
            ScheduleKind::Constant => Decay::Constant,
            ScheduleKind::Cosine => Decay::Cosine { total_steps: total_steps.ok_or(ScheduleError::MissingTotal)? },
            ScheduleKind::Step => Decay::Step { step_size, gamma },
        };
        Schedule::new(decay, warmup_steps)
    }

    /// The decay after warmup.
    pub fn decay(&self) -> Decay {
        self.decay
    }

    /// The number of warmup steps.
    pub fn warmup_steps(&self) -> u64 {
        self.warmup_steps
    }

    /// The schedule's name.
    pub fn kind(&self) -> ScheduleKind {
        match self.decay {
            Decay::Constant => ScheduleKind::Constant,
            Decay::Cosine { .. } => ScheduleKind::Cosine,
            Decay::Step { .. } => ScheduleKind::Step,
        }
    }

    /// The factor on the base learning rate at (1-based) step `step`; step 0
    /// is read as step 1.
    pub fn factor_at(&self, step: u64) -> f64 {
        let k = step.max(1);
        let warmup = self.warmup_steps;
        if k <= warmup {
            return k as f64 / warmup as f64;
        }
        let e = k - warmup - 1;
        match self.decay {
            Decay::Constant => 1.0,
            Decay::Cosine { total_steps } => {
                let span = total_steps - warmup;
                if e >= span {
                    0.0
                } else {
                    0.5 * (1.0 + (std::f64::consts::PI * e as f64 / span as f64).cos())
                }
            }
            Decay::Step { step_size, gamma } => gamma.powf((e / step_size) as f64),
        }
    }

    /// The learning rate of (1-based) step `step` for base rate `base`.
    pub fn lr_at(&self, base: f64, step: u64) -> f64 {
        base * self.factor_at(step)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Relative agreement with PyTorch's numbers. PyTorch's chainable
    /// schedulers multiply step by step, so the last bits can differ.
    fn assert_matches(schedule: &Schedule, base: f64, torch: &[f64]) {
        for (i, &expected) in torch.iter().enumerate() {
            let step = i as u64 + 1;
            let got = schedule.lr_at(base, step);
            assert!(
                (got - expected).abs() <= 1e-12 * expected.abs().max(1e-3),
                "step {step}: {got} vs PyTorch's {expected}"
            );
        }
    }

    // The expected values below are PyTorch 2.15's, from (base lr 0.1):
    //
    //   import torch, warnings; warnings.simplefilter("ignore")
    //   from torch.optim.lr_scheduler import CosineAnnealingLR, StepLR, LinearLR, SequentialLR
    //   def run(make, steps, base=0.1):
    //       p = torch.nn.Parameter(torch.zeros(1)); opt = torch.optim.SGD([p], lr=base)
    //       s = make(opt); out = []
    //       for k in range(1, steps + 1):
    //           out.append(opt.param_groups[0]["lr"])  # the lr used by step k
    //           opt.step(); s.step()
    //       return out
    //   W, T = 4, 14
    //   warm = lambda o: LinearLR(o, start_factor=1/W, end_factor=1.0, total_iters=W-1)
    //   run(lambda o: CosineAnnealingLR(o, T_max=10), 11)
    //   run(lambda o: StepLR(o, step_size=3, gamma=0.5), 10)
    //   run(lambda o: SequentialLR(o, [warm(o), CosineAnnealingLR(o, T_max=T-W)], milestones=[W]), T)
    //   run(lambda o: SequentialLR(o, [warm(o), StepLR(o, step_size=3, gamma=0.1)], milestones=[W]), 12)
    //   run(warm, 7)

    #[test]
    fn cosine_matches_cosine_annealing_lr() {
        let schedule = Schedule::new(Decay::Cosine { total_steps: 10 }, 0).unwrap();
        let torch = [
            0.1,
            0.09755282581475769,
            0.09045084971874738,
            0.07938926261462367,
            0.06545084971874739,
            0.05000000000000001,
            0.03454915028125264,
            0.020610737385376353,
            0.009549150281252635,
            0.002447174185242324,
            0.0,
        ];
        assert_matches(&schedule, 0.1, &torch);
        // Past the run's end it stays at zero (PyTorch's would rise again).
        assert_eq!(schedule.lr_at(0.1, 12), 0.0);
        assert_eq!(schedule.lr_at(0.1, 1000), 0.0);
    }

    #[test]
    fn step_matches_step_lr() {
        let schedule = Schedule::new(Decay::Step { step_size: 3, gamma: 0.5 }, 0).unwrap();
        let torch = [0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025, 0.025, 0.025, 0.0125];
        assert_matches(&schedule, 0.1, &torch);
    }

    #[test]
    fn warmup_then_cosine_matches_sequential_lr() {
        let schedule = Schedule::new(Decay::Cosine { total_steps: 14 }, 4).unwrap();
        let torch = [
            0.025,
            0.05,
            0.07500000000000001,
            0.1,
            0.1,
            0.09755282581475769,
            0.09045084971874738,
            0.07938926261462367,
            0.06545084971874739,
            0.05000000000000001,
            0.03454915028125264,
            0.020610737385376353,
            0.009549150281252635,
            0.002447174185242324,
        ];
        assert_matches(&schedule, 0.1, &torch);
        assert_eq!(schedule.lr_at(0.1, 15), 0.0);
    }

    #[test]
    fn warmup_then_step_matches_sequential_lr() {
        let schedule = Schedule::new(Decay::Step { step_size: 3, gamma: 0.1 }, 4).unwrap();
        let torch = [
            0.025,
            0.05,
            0.07500000000000001,
            0.1,
            0.1,
            0.1,
            0.1,
            0.010000000000000002,
            0.010000000000000002,
            0.010000000000000002,
            0.0010000000000000002,
            0.0010000000000000002,
        ];
        assert_matches(&schedule, 0.1, &torch);
    }

    #[test]
    fn warmup_then_constant_matches_linear_lr() {
        let schedule = Schedule::new(Decay::Constant, 4).unwrap();
        assert_matches(&schedule, 0.1, &[0.025, 0.05, 0.07500000000000001, 0.1, 0.1, 0.1, 0.1]);
        assert_eq!(Schedule::default().lr_at(0.3, 1_000_000), 0.3);
    }

    #[test]
    fn exact_values_at_chosen_steps() {
        // Halfway through a cosine run after warmup: exactly base / 2.
        let cosine = Schedule::new(Decay::Cosine { total_steps: 110 }, 10).unwrap();
        assert_eq!(cosine.lr_at(2.0, 61), 1.0);
        assert_eq!(cosine.lr_at(2.0, 11), 2.0);
        assert_eq!(cosine.lr_at(2.0, 5), 1.0);
        // Step 0 reads as step 1.
        assert_eq!(cosine.lr_at(2.0, 0), cosine.lr_at(2.0, 1));
        // A huge step count: no overflow, decays to zero.
        let step = Schedule::new(Decay::Step { step_size: 1, gamma: 0.5 }, 0).unwrap();
        assert_eq!(step.lr_at(1.0, u64::MAX), 0.0);
        assert_eq!(step.lr_at(1.0, 3), 0.25);
    }

    #[test]
    fn invalid_parameters_are_refused() {
        assert_eq!(Schedule::new(Decay::Step { step_size: 0, gamma: 0.1 }, 0), Err(ScheduleError::ZeroStepSize));
        for gamma in [0.0, -0.5, f64::NAN, f64::INFINITY] {
            assert!(matches!(Schedule::new(Decay::Step { step_size: 2, gamma }, 0), Err(ScheduleError::BadGamma(_))));
        }
        assert_eq!(
            Schedule::new(Decay::Cosine { total_steps: 5 }, 5),
            Err(ScheduleError::WarmupTooLong { warmup: 5, total: 5 })
        );
        assert!(Schedule::new(Decay::Cosine { total_steps: 0 }, 0).is_err());
        assert_eq!(Schedule::from_flags(ScheduleKind::Cosine, 0, None, 1, 0.1), Err(ScheduleError::MissingTotal));
        let s = Schedule::from_flags(ScheduleKind::Step, 2, None, 30, 0.1).unwrap();
        assert_eq!((s.kind(), s.warmup_steps()), (ScheduleKind::Step, 2));
    }

    #[test]
    fn serde_round_trip_validates() {
        let schedule = Schedule::new(Decay::Cosine { total_steps: 100 }, 5).unwrap();
        let json = serde_json::to_string(&schedule).unwrap();
        assert_eq!(json, r#"{"decay":{"kind":"cosine","total_steps":100},"warmup_steps":5}"#);
        assert_eq!(serde_json::from_str::<Schedule>(&json).unwrap(), schedule);
        let bad = r#"{"decay":{"kind":"step","step_size":0,"gamma":0.1},"warmup_steps":0}"#;
        let err = serde_json::from_str::<Schedule>(bad).unwrap_err().to_string();
        assert!(err.contains("--step-size"), "{err}");
    }

    #[test]
    fn kind_names_on_the_command_line() {
        use clap::ValueEnum;
        let names: Vec<_> = ScheduleKind::value_variants()
            .iter()
            .map(|k| k.to_possible_value().unwrap().get_name().to_owned())
            .collect();
        assert_eq!(names, ["constant", "cosine", "step"]);
        assert_eq!(ScheduleKind::from_str("cosine", false), Ok(ScheduleKind::Cosine));
    }
}
