//! The training ops.
mod optimizer;

pub use optimizer::*;

use super::OpDef;

/// The ops of this family.
pub(crate) static OPS: &[&OpDef] = &[
    &ADAGRAD,
    &MOMENTUM,
    &ADAM,
];
