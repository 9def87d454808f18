//! The `MelWeightMatrix`: definition and rules.
use crate::ops::util::prelude::*;

// The attributes, with their ONNX defaults (checked when the IR is built).
const OUTPUT_DATATYPE: IntAttr = IntAttr::new("output_datatype", AttrCheck::Any, 1);

/// The `MelWeightMatrix` op (opset 17): the `[dft_length / 2 + 1, num_mel_bins]`
/// matrix that maps a one-sided spectrum to mel bins.
pub static MEL_WEIGHT_MATRIX: OpDef = OpDef {
    name: "MelWeightMatrix",
    module: module_path!(),
    inputs: Arity::range(5, 5),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 17, until: None },
    attrs: &[
        OUTPUT_DATATYPE.spec,
    ],
    shape: Some(mel_weight_matrix_shape),
    arg_slots: ArgSlots::All,
    analysis: Analysis::Unknown("not written: a change reaching it is unknown"),
    gradient: Gradient::Zero("its inputs are sizes and frequencies, not weights"),
    ..OpDef::BASE
};

fn mel_weight_matrix_shape(g: &Graph, n: &Node) -> Vec<ShapeOut> {
    let scalar = |i: usize| floats_of(g, n, i).filter(|v| v.len() == 1).map(|v| v[0] as i64).filter(|&x| x >= 0);
    let bins = scalar(1).map_or(Dim::Unknown, |d| Dim::Known(d / 2 + 1));
    let mels = scalar(0).map_or(Dim::Unknown, Dim::Known);
    vec![(Some(vec![bins, mels]), None, None, OUTPUT_DATATYPE.dtype(n))]
}
