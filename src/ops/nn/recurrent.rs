//! The `RNN`, `GRU`, `LSTM`: definitions and rules.
#![allow(clippy::too_many_arguments)]
use crate::ops::util::prelude::*;

// The attributes, with their ONNX defaults (checked when the IR is built).
/// The hidden size (absent: read from the weights).
const HIDDEN_SIZE: OptIntAttr = OptIntAttr::new("hidden_size", AttrCheck::AtLeast(1));
const DIRECTION: StrAttr = StrAttr::new("direction", AttrCheck::OneOf(&["forward", "reverse", "bidirectional"]), "forward");
const LAYOUT: IntAttr = IntAttr::flag("layout", false);
const CLIP: OptFloatAttr = OptFloatAttr::new("clip");
const LINEAR_BEFORE_RESET: IntAttr = IntAttr::flag("linear_before_reset", false);
const INPUT_FORGET: IntAttr = IntAttr::flag("input_forget", false);

/// The `RNN` op.
pub static RNN: OpDef = OpDef {
    name: "RNN",
    module: module_path!(),
    inputs: Arity::range(3, 6),
    outputs: Arity::range(0, 2),
    opsets: Opsets { since: 1, until: None },
    attrs: &[
        HIDDEN_SIZE.spec,
        DIRECTION.spec,
        LAYOUT.spec,
        CLIP.spec,
    ],
    shape: Some(recurrent_shapes),
    analysis: Analysis::Unknown("not written: a change reaching it is unknown"),
    gradient: Gradient::None("not written: an error on the gradient path"),
    ..OpDef::BASE
};

/// The `GRU` op.
pub static GRU: OpDef = OpDef {
    name: "GRU",
    module: module_path!(),
    inputs: Arity::range(3, 6),
    outputs: Arity::range(0, 2),
    opsets: Opsets { since: 1, until: None },
    attrs: &[
        HIDDEN_SIZE.spec,
        DIRECTION.spec,
        LAYOUT.spec,
        CLIP.spec,
        LINEAR_BEFORE_RESET.spec,
    ],
    shape: Some(recurrent_shapes),
    analysis: Analysis::Unknown("not written: a change reaching it is unknown"),
    gradient: Gradient::None("not written: an error on the gradient path"),
    ..OpDef::BASE
};

/// The `LSTM` op.
pub static LSTM: OpDef = OpDef {
    name: "LSTM",
    module: module_path!(),
    inputs: Arity::range(3, 8),
    outputs: Arity::range(0, 3),
    opsets: Opsets { since: 1, until: None },
    attrs: &[
        HIDDEN_SIZE.spec,
        DIRECTION.spec,
        LAYOUT.spec,
        CLIP.spec,
        INPUT_FORGET.spec,
    ],
    shape: Some(recurrent_shapes),
    analysis: Analysis::Unknown("not written: a change reaching it is unknown"),
    gradient: Gradient::None("not written: an error on the gradient path"),
    ..OpDef::BASE
};

/// RNN, GRU, LSTM: Y [seq, dirs, batch, hidden], Y_h (and Y_c) [dirs, batch, hidden];
/// `layout = 1` puts the batch first.
pub(crate) fn recurrent_shapes(g: &Graph, n: &Node) -> Vec<Out> {
    let Some(x) = shape_of(g, n, 0).filter(|x| x.len() == 3) else { return Vec::new() };
    let dirs = if DIRECTION.get(n) == "bidirectional" { 2 } else { 1 };
    let hidden = HIDDEN_SIZE.get(n).map(Dim::Known).unwrap_or_else(|| {
        shape_of(g, n, 2).and_then(|r| r.get(2).copied()).unwrap_or(Dim::Unknown)
    });
    let (seq, batch) = if !LAYOUT.on(n) { (x[0], x[1]) } else { (x[1], x[0]) };
    let dirs = Dim::Known(dirs);
    let dtype = first_dtype(g, n);
    let (y, state) = if !LAYOUT.on(n) {
        (vec![seq, dirs, batch, hidden], vec![dirs, batch, hidden])
    } else {
        (vec![batch, seq, dirs, hidden], vec![batch, dirs, hidden])
    };
    vec![(Some(y), None, None, dtype), (Some(state.clone()), None, None, dtype), (Some(state), None, None, dtype)]
}
