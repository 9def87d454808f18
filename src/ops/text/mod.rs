//! The text ops: token n-grams and string normalization.
mod string_normalizer;
mod tfidf_vectorizer;

pub use string_normalizer::*;
pub use tfidf_vectorizer::*;

use super::OpDef;

/// The ops of this family.
pub(crate) static OPS: &[&OpDef] = &[
    &TF_IDF_VECTORIZER,
    &STRING_NORMALIZER,
];
