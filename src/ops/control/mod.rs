//! The control ops.
mod cast;
mod constant;
mod identity;
mod optional;
mod subgraph;

pub use cast::*;
pub use constant::*;
pub use identity::*;
pub use optional::*;
pub use subgraph::*;

use super::OpDef;

/// The ops of this family.
pub(crate) static OPS: &[&OpDef] = &[
    &CONSTANT,
    &CONSTANT_OF_SHAPE,
    &EYE_LIKE,
    &IDENTITY,
    &CAST,
    &CAST_LIKE,
    &BIT_CAST,
    &IF,
    &LOOP,
    &SCAN,
    &OPTIONAL,
    &OPTIONAL_HAS_ELEMENT,
    &OPTIONAL_GET_ELEMENT,
];
