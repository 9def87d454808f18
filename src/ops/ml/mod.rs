//! The `ai.onnx.ml` ops that have rules here.
mod array_feature_extractor;
mod binarizer;
mod label_encoder;
mod tree_ensemble;

pub use array_feature_extractor::*;
pub use binarizer::*;
pub use label_encoder::*;
pub use tree_ensemble::*;

use super::OpDef;

/// The ops of this family.
pub(crate) static OPS: &[&OpDef] = &[
    &LABEL_ENCODER,
    &TREE_ENSEMBLE,
    &BINARIZER,
    &ARRAY_FEATURE_EXTRACTOR,
];
