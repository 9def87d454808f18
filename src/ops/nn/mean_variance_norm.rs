//! The `MeanVarianceNormalization`: definitions and rules.
#![allow(clippy::too_many_arguments)]
use crate::ops::util::prelude::*;

// The attributes, with their ONNX defaults (checked when the IR is built).
const AXES: IntsAttr = IntsAttr::new("axes", AttrCheck::Any);

/// The `MeanVarianceNormalization` op.
pub static MEAN_VARIANCE_NORMALIZATION: OpDef = OpDef {
    name: "MeanVarianceNormalization",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 9, until: None },
    attrs: &[
        AXES.spec,
    ],
    shape: Some(same_shape),
    analysis: Analysis::Rule(mean_variance_norm_rule),
    normalizer: true,
    gradient: Gradient::None("not written: an error on the gradient path"),
    ..OpDef::BASE
};

pub(crate) fn mean_variance_norm_rule(c: &mut Ctx, n: &Node, e: &[Option<Affine>]) -> Vec<Flow> {
    let Some(r) = c.rank(n.input(0)) else { return one(unknown("MeanVarianceNormalization input rank unknown")) };
    let axes = AXES.get(n).map(<[i64]>::to_vec).unwrap_or_else(|| vec![0, 2, 3]);
    let Some(axes) = axes.iter().map(|&a| crate::ir::norm_axis(a, r)).collect::<Option<Vec<_>>>() else {
        return one(variant("bad axes"));
    };
    let kept = mask::below(r) & !axes.iter().fold(0, |m, &a| m | mask::bit(a));
    match normalize_input(e[0].as_ref(), kept, Some(kept), MEAN_VARIANCE_NORMALIZATION.name) {
        Ok(true) => one(Flow::Normalized),
        Ok(false) => one(Flow::Same),
        Err(f) => one(f),
    }
}
