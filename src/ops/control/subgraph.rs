//! The `If`, `Loop`, `Scan`: definitions and rules.
#![allow(clippy::too_many_arguments)]
use crate::ops::util::prelude::*;

/// The `If` op.
pub static IF: OpDef = OpDef {
    name: "If",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, Arity::VARIADIC),
    opsets: Opsets { since: 1, until: None },
    attrs: &[
        AttrSpec::of("then_branch", AttrKind::Graph),
        AttrSpec::of("else_branch", AttrKind::Graph),
    ],
    analysis: Analysis::Unknown("not written: a change reaching it is unknown"),
    gradient: Gradient::None("not written: an error on the gradient path"),
    ..OpDef::BASE
};

/// The `Loop` op.
pub static LOOP: OpDef = OpDef {
    name: "Loop",
    module: module_path!(),
    inputs: Arity::range(2, Arity::VARIADIC),
    outputs: Arity::range(1, Arity::VARIADIC),
    opsets: Opsets { since: 1, until: None },
    attrs: &[
        AttrSpec::of("body", AttrKind::Graph),
    ],
    data_dependent: true,
    analysis: Analysis::Unknown("not written: a change reaching it is unknown"),
    gradient: Gradient::None("not written: an error on the gradient path"),
    ..OpDef::BASE
};

/// The `Scan` op.
pub static SCAN: OpDef = OpDef {
    name: "Scan",
    module: module_path!(),
    inputs: Arity::range(1, Arity::VARIADIC),
    outputs: Arity::range(1, Arity::VARIADIC),
    opsets: Opsets { since: 8, until: None },
    attrs: &[
        AttrSpec::of("body", AttrKind::Graph),
    ],
    analysis: Analysis::Unknown("not written: a change reaching it is unknown"),
    gradient: Gradient::None("not written: an error on the gradient path"),
    ..OpDef::BASE
};
