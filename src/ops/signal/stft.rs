//! The `STFT`: definition and rules.
use crate::ops::util::prelude::*;

// The attributes, with their ONNX defaults (checked when the IR is built).
const ONESIDED: IntAttr = IntAttr::flag("onesided", true);

/// The `STFT` op (opset 17): short-time Fourier transform of `[batch, length, 1|2]` signals.
pub static STFT: OpDef = OpDef {
    name: "STFT",
    module: module_path!(),
    inputs: Arity::range(2, 4),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 17, until: None },
    attrs: &[
        ONESIDED.spec,
    ],
    shape: Some(stft_shape),
    arg_slots: ArgSlots::From(1),
    analysis: Analysis::Unknown("not written: a change reaching it is unknown"),
    gradient: Gradient::None("not written: an error on the gradient path"),
    ..OpDef::BASE
};

/// `[batch, frames, bins, 2]`: frames = (length - frame_length) / frame_step + 1,
/// bins = frame_length / 2 + 1 one-sided (the default), frame_length otherwise;
/// the frame length is the `frame_length` input, else the window's length.
fn stft_shape(g: &Graph, n: &Node) -> Vec<ShapeOut> {
    let Some(signal) = shape_of(g, n, 0).filter(|s| s.len() == 3) else { return vec![(None, None, None, first_dtype(g, n))] };
    let scalar = |i: usize| floats_of(g, n, i).filter(|v| v.len() == 1).map(|v| v[0] as i64);
    let step = scalar(1).filter(|&s| s > 0);
    let frame_length = match n.input(3) {
        Some(_) => scalar(3),
        None => shape_of(g, n, 2).filter(|w| w.len() == 1).and_then(|w| w[0].known()),
    }
    .filter(|&l| l > 0);
    let frames = match (signal[1], frame_length, step) {
        (Dim::Known(len), Some(fl), Some(st)) if len >= fl => Dim::Known((len - fl) / st + 1),
        _ => Dim::Unknown,
    };
    let bins = match frame_length {
        Some(fl) if ONESIDED.on(n) => Dim::Known(fl / 2 + 1),
        Some(fl) => Dim::Known(fl),
        None => Dim::Unknown,
    };
    vec![(Some(vec![signal[0], frames, bins, Dim::Known(2)]), None, None, first_dtype(g, n))]
}
