//! The shape ops.
mod expand;
mod range;
mod reshape;
mod shape;
mod transpose;

pub use expand::*;
pub use range::*;
pub use reshape::*;
pub use shape::*;
pub use transpose::*;

use super::OpDef;

/// The ops of this family.
pub(crate) static OPS: &[&OpDef] = &[
    &SHAPE,
    &SIZE,
    &RESHAPE,
    &FLATTEN,
    &SQUEEZE,
    &UNSQUEEZE,
    &TRANSPOSE,
    &EXPAND,
    &RANGE,
];
