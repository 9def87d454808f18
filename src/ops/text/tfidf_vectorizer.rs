//! The `TfIdfVectorizer`: definition and rules.
use crate::ops::util::prelude::*;

// The attributes, with their ONNX defaults (checked when the IR is built).
const NGRAM_INDEXES: IntsAttr = IntsAttr::required("ngram_indexes", AttrCheck::AtLeast(0));

/// The `TfIdfVectorizer` op (opset 9): n-gram counts of `[C]` or `[N, C]` token ids or strings.
pub static TF_IDF_VECTORIZER: OpDef = OpDef {
    name: "TfIdfVectorizer",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 9, until: None },
    attrs: &[
        NGRAM_INDEXES.spec,
    ],
    shape: Some(tf_idf_shape),
    arg_slots: ArgSlots::All,
    analysis: Analysis::Unknown("its input is tokens, not a value a weight can reach"),
    gradient: Gradient::Zero("its input is tokens"),
    ..OpDef::BASE
};

/// The last dim becomes the output size, `max(ngram_indexes) + 1`; a rank-1
/// input gives a rank-1 output.
fn tf_idf_shape(g: &Graph, n: &Node) -> Vec<ShapeOut> {
    let size = NGRAM_INDEXES.get(n).and_then(|ix| ix.iter().copied().max()).filter(|&m| m >= 0).and_then(|m| m.checked_add(1));
    let size = size.map_or(Dim::Unknown, Dim::Known);
    let shape = match shape_of(g, n, 0).as_deref() {
        Some([_]) => Some(vec![size]),
        Some([batch, _]) => Some(vec![*batch, size]),
        _ => None,
    };
    vec![(shape, None, None, Some(DType::F32))]
}
