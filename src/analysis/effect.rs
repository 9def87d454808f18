//! The abstract value of the analysis: how a tensor changes when the
//! hypothesised parameter(s) are rescaled or perturbed.
//!
//! A changed value is described as `v' = S ⊙ v + T` where
//! - `S` is a positive factor that varies only along the axes in `scale.mask`
//!   (empty mask: one global factor), raised to `scale.exp`;
//! - `T` is a data-independent additive change that varies only along the axes
//!   in `shift.mask`.
//!
//! Tokens identify *which* factor or shift a value carries, so that `a / b`
//! cancels only when both carry the very same factor (weight normalization,
//! weight standardization, decomposed layer norm). Any transformation that may
//! reorder or mix factor entries gets a fresh token, so cancellation is only
//! ever claimed when it is certain.
use crate::ir::ValueId;

/// Bit set over the axes of one value (rank ≤ 64).
pub type Mask = u64;

/// A positive multiplicative factor.
#[derive(Debug, Clone, PartialEq)]
pub struct Scale {
    /// Axes along which the factor varies; 0 for one global factor.
    pub mask: Mask,
    /// Identity of the factor (0 for the hypothesis' global factor).
    pub token: u32,
    /// The power the factor is raised to (dyadic rationals only, exact in f64).
    pub exp: f64,
}

/// A data-independent additive change.
#[derive(Debug, Clone, PartialEq)]
pub struct Shift {
    /// Axes along which the change varies.
    pub mask: Mask,
    /// Identity of the change.
    pub token: u32,
    /// Trainable parameters whose unchanged values produced this shift; scaling
    /// them together with the hypothesis may turn it into a pure scale (joint).
    pub sources: Vec<ValueId>,
}

/// `v' = S ⊙ v + T`; both absent means unchanged (never stored).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Affine {
    /// The multiplicative part.
    pub scale: Option<Scale>,
    /// The additive part.
    pub shift: Option<Shift>,
}

impl Affine {
    /// Pure scale.
    pub fn scaled(scale: Scale) -> Self {
        Affine { scale: Some(scale), shift: None }
    }

    /// Pure shift.
    pub fn shifted(shift: Shift) -> Self {
        Affine { scale: None, shift: Some(shift) }
    }

    /// True when neither part is present.
    pub fn is_identity(&self) -> bool {
        self.scale.is_none() && self.shift.is_none()
    }

    /// Parameters a shift in this effect came from.
    pub fn shift_sources(&self) -> Vec<ValueId> {
        self.shift.as_ref().map(|s| s.sources.clone()).unwrap_or_default()
    }
}

/// What a node does to one of its outputs under the hypothesis.
#[derive(Debug, Clone, PartialEq)]
pub enum Flow {
    /// The output does not change.
    Same,
    /// The output changes as described.
    Changed(Affine),
    /// A normalization removed the change (evidence).
    Normalized,
    /// The output changes in a way no later normalization can be proven to undo.
    Variant(String),
    /// The op has no rule (or its shapes are unknown): undecidable here.
    Unknown(String),
}

/// Mask helpers.
pub mod mask {
    use super::Mask;

    /// The bit of axis `a`.
    pub fn bit(a: usize) -> Mask {
        if a < 64 {
            1 << a
        } else {
            0
        }
    }

    /// All axes `< n`.
    pub fn below(n: usize) -> Mask {
        if n >= 64 {
            u64::MAX
        } else {
            (1u64 << n) - 1
        }
    }

    /// True when `m` only holds axes in `allowed`.
    pub fn within(m: Mask, allowed: Mask) -> bool {
        m & !allowed == 0
    }

    /// Re-indexes a mask from a value of rank `from` to a broadcast result of rank `to`
    /// (numpy right alignment).
    /// The analysis never reasons about ranks above 64 (it says `unknown`
    /// first); past them this saturates instead of overflowing.
    pub fn align(m: Mask, from: usize, to: usize) -> Mask {
        if to >= from {
            match u32::try_from(to - from).ok().and_then(|k| m.checked_shl(k)).filter(|s| s >> (to - from) == m) {
                Some(shifted) => shifted,
                None if m == 0 => 0,
                None => u64::MAX,
            }
        } else {
            u32::try_from(from - to).ok().and_then(|k| m.checked_shr(k)).unwrap_or(0)
        }
    }

    /// Axes in the mask, ascending.
    pub fn axes(m: Mask) -> Vec<usize> {
        (0..64).filter(|a| m & (1 << a) != 0).collect()
    }
}
