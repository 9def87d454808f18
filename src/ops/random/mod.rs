//! The random ops.
pub mod philox;
mod random;

pub use random::*;

use super::OpDef;

/// The ops of this family.
pub(crate) static OPS: &[&OpDef] = &[
    &RANDOM_UNIFORM,
    &RANDOM_NORMAL,
    &RANDOM_UNIFORM_LIKE,
    &RANDOM_NORMAL_LIKE,
    &BERNOULLI,
    &MULTINOMIAL,
];
