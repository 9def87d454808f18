//! Shared by the randomized soundness tests: a dense float64 tensor, a
//! deterministic RNG, and the check that perturbs each parameter as its claimed
//! class allows and requires the outputs to stay put.
use adamp_graph::analysis::{Analysis, ScaleClass};
use std::collections::HashMap;

/// A dense float64 tensor, row-major.
#[derive(Clone, Debug)]
pub struct T {
    /// Dimensions.
    pub shape: Vec<usize>,
    /// Values.
    pub data: Vec<f64>,
}

/// xorshift64: deterministic, so a failing seed reproduces.
pub struct Rng(pub u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    /// Next raw value.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// In `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// In [-1.2, 1.2), at least 0.2 away from 0 (no special values).
    pub fn value(&mut self) -> f64 {
        let v = 2.0 * self.unit() - 1.0;
        v + 0.2 * v.signum()
    }
    /// A positive scale factor in [0.5, 2).
    pub fn positive(&mut self) -> f64 {
        0.5 + 1.5 * self.unit()
    }
}

thread_local! {
    static DEGENERATE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Evaluators call this when a normalization divides by a (near-)zero spread:
/// the claims are about the eps -> 0 limit, where such a graph is 0/0 and
/// roundoff decides, so the evaluation is not evidence either way.
pub fn mark_degenerate() {
    DEGENERATE.with(|d| d.set(true));
}

fn take_degenerate() -> bool {
    DEGENERATE.with(|d| d.replace(false))
}

/// Largest absolute difference relative to the largest reference value.
pub fn rel_change(a: &T, b: &T) -> f64 {
    let scale = b.data.iter().fold(0f64, |m, x| m.max(x.abs())).max(1e-300);
    a.data
        .iter()
        .zip(&b.data)
        .fold(0f64, |m, (x, y)| m.max((x - y).abs()))
        / scale
}

/// Checks every claim of `analysis` numerically: channel (a positive factor per
/// slice), layer (x1.7), dead (a random perturbation), joint (the whole group
/// x1.9). Returns the number of claims checked, or `None` when the unperturbed
/// graph is degenerate or not finite. Panics on a claim that does not hold.
pub fn check_claims(
    seed: u64,
    analysis: &Analysis,
    params: &HashMap<String, T>,
    eval: impl Fn(&HashMap<String, T>) -> T,
    describe: impl Fn() -> String,
) -> Option<usize> {
    take_degenerate();
    let base = eval(params);
    if take_degenerate() || base.data.iter().any(|x| !x.is_finite()) {
        return None;
    }
    let mut rng = Rng::new(seed + 12345);
    let mut claims = 0;
    for p in &analysis.parameters {
        let mut changed = params.clone();
        let t = changed.get_mut(&p.name).expect("param");
        match &p.class {
            ScaleClass::Channel { axis } => {
                let inner: usize = t.shape[axis + 1..].iter().product();
                let dim = t.shape[*axis];
                let factors: Vec<f64> = (0..dim).map(|_| rng.positive()).collect();
                for (k, x) in t.data.iter_mut().enumerate() {
                    *x *= factors[(k / inner) % dim];
                }
            }
            ScaleClass::Layer => t.data.iter_mut().for_each(|x| *x *= 1.7),
            ScaleClass::Dead => t.data.iter_mut().for_each(|x| *x += rng.value()),
            ScaleClass::Joint { group } => {
                for name in group {
                    changed
                        .get_mut(name)
                        .expect("group member")
                        .data
                        .iter_mut()
                        .for_each(|x| *x *= 1.9);
                }
            }
            ScaleClass::None | ScaleClass::Unknown => continue,
        }
        let out = eval(&changed);
        if take_degenerate() {
            continue;
        }
        claims += 1;
        let change = rel_change(&out, &base);
        assert!(
            change < 1e-6,
            "seed {seed}: '{}' claimed {:?} but the output changes by {change:e}\n{}",
            p.name,
            p.class,
            describe()
        );
    }
    Some(claims)
}
