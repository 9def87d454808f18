//! The `NonZero`, `Unique`, `Compress`: definitions and rules.
#![allow(clippy::too_many_arguments)]
use crate::ops::util::prelude::*;

/// The `NonZero` op.
pub static NON_ZERO: OpDef = OpDef {
    name: "NonZero",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 9, until: None },
    data_dependent: true,
    analysis: Analysis::Unknown("not written: a change reaching it is unknown"),
    gradient: Gradient::Zero("integer output"),
    ..OpDef::BASE
};

/// The `Unique` op.
pub static UNIQUE: OpDef = OpDef {
    name: "Unique",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 4),
    opsets: Opsets { since: 11, until: None },
    data_dependent: true,
    analysis: Analysis::Unknown("not written: a change reaching it is unknown"),
    gradient: Gradient::None("not written: an error on the gradient path"),
    ..OpDef::BASE
};

/// The `Compress` op.
pub static COMPRESS: OpDef = OpDef {
    name: "Compress",
    module: module_path!(),
    inputs: Arity::range(2, 2),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 9, until: None },
    data_dependent: true,
    analysis: Analysis::Unknown("not written: a change reaching it is unknown"),
    gradient: Gradient::None("not written: an error on the gradient path"),
    ..OpDef::BASE
};
