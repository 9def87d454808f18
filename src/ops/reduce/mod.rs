//! The reduce ops.
mod arg;
mod cumulative;
mod kernel;
mod reduce;

pub use arg::*;
pub use cumulative::*;
pub use reduce::*;

use super::OpDef;

/// The ops of this family.
pub(crate) static OPS: &[&OpDef] = &[
    &REDUCE_MEAN,
    &REDUCE_SUM,
    &REDUCE_MAX,
    &REDUCE_MIN,
    &REDUCE_L2,
    &REDUCE_L1,
    &REDUCE_PROD,
    &REDUCE_SUM_SQUARE,
    &REDUCE_LOG_SUM_EXP,
    &REDUCE_LOG_SUM,
    &ARG_MAX,
    &ARG_MIN,
    &CUM_SUM,
    &CUM_PROD,
];
