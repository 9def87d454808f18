//! The `ImageDecoder`: definition and rules.
use crate::ops::util::prelude::*;

// The attributes, with their ONNX defaults (checked when the IR is built).
const PIXEL_FORMAT: StrAttr = StrAttr::new("pixel_format", AttrCheck::OneOf(&["RGB", "BGR", "Grayscale"]), "RGB");

/// The `ImageDecoder` op (opset 20): decodes an encoded image into
/// `[height, width, channels]`; height and width come from the bytes.
pub static IMAGE_DECODER: OpDef = OpDef {
    name: "ImageDecoder",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 20, until: None },
    attrs: &[
        PIXEL_FORMAT.spec,
    ],
    shape: Some(image_decoder_shape),
    data_dependent: true,
    arg_slots: ArgSlots::All,
    analysis: Analysis::Unknown("its input is encoded bytes"),
    gradient: Gradient::Zero("its input is encoded bytes"),
    ..OpDef::BASE
};

/// Rank 3, uint8; three channels for RGB and BGR (the default), one for Grayscale.
fn image_decoder_shape(_: &Graph, n: &Node) -> Vec<ShapeOut> {
    let channels = match PIXEL_FORMAT.get(n) {
        "RGB" | "BGR" => Dim::Known(3),
        "Grayscale" => Dim::Known(1),
        _ => Dim::Unknown,
    };
    vec![(Some(vec![Dim::Unknown, Dim::Unknown, channels]), None, None, Some(DType::Other(2)))]
}
