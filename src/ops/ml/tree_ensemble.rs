//! The `TreeEnsemble` (domain `ai.onnx.ml`): definition and rules.
use crate::ops::util::prelude::*;

// The attributes, with their ONNX defaults (checked when the IR is built).
/// The number of targets (absent: not known from the attributes alone).
const N_TARGETS: OptIntAttr = OptIntAttr::new("n_targets", AttrCheck::AtLeast(0));

/// The `TreeEnsemble` op (ai.onnx.ml, opset 5): `[N, F]` features to `[N, n_targets]`.
pub static TREE_ENSEMBLE: OpDef = OpDef {
    name: "TreeEnsemble",
    domain: "ai.onnx.ml",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    attrs: &[
        N_TARGETS.spec,
    ],
    shape: Some(tree_ensemble_shape),
    analysis: Analysis::Unknown("a tree ensemble: a change reaching it is unknown"),
    gradient: Gradient::Zero("trees are piecewise constant"),
    ..OpDef::BASE
};

fn tree_ensemble_shape(g: &Graph, n: &Node) -> Vec<ShapeOut> {
    let targets = N_TARGETS.get(n).map(Dim::Known);
    let shape = shape_of(g, n, 0).filter(|x| x.len() == 2).map(|x| vec![x[0], targets.unwrap_or(Dim::Unknown)]);
    vec![(shape, None, None, first_dtype(g, n))]
}
