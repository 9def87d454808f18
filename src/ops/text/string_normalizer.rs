//! The `StringNormalizer`: definition and rules.
use crate::ops::util::prelude::*;

// The attributes, with their ONNX defaults (checked when the IR is built).
const STOPWORDS: StringsAttr = StringsAttr::new("stopwords");

/// The `StringNormalizer` op (opset 10): case changes and stop-word removal on
/// `[C]` or `[1, C]` strings. With stop words the output length depends on the
/// strings, so the op is data-dependent.
pub static STRING_NORMALIZER: OpDef = OpDef {
    name: "StringNormalizer",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 10, until: None },
    attrs: &[
        STOPWORDS.spec,
    ],
    shape: Some(string_normalizer_shape),
    data_dependent: true,
    arg_slots: ArgSlots::All,
    analysis: Analysis::Unknown("its input is strings"),
    gradient: Gradient::Zero("its input is strings"),
    ..OpDef::BASE
};

/// Without stop words every string stays: the input's shape. With them only the rank is known.
fn string_normalizer_shape(g: &Graph, n: &Node) -> Vec<ShapeOut> {
    let x = shape_of(g, n, 0);
    let removes = STOPWORDS.is_set(n);
    let shape = match x {
        Some(x) if removes => {
            let mut s = x.clone();
            if let Some(last) = s.last_mut() {
                *last = Dim::Unknown;
            }
            Some(s)
        }
        other => other,
    };
    vec![(shape, None, None, first_dtype(g, n))]
}
