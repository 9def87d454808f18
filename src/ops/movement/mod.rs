//! The movement ops.
mod concat;
mod data_dependent;
mod depth_space;
mod gather;
mod one_hot;
mod pad;
mod resize;
mod reverse_sequence;
mod scatter;
mod slice;
mod split;
mod tile;
mod top_k;
mod trilu;

pub use concat::*;
pub use data_dependent::*;
pub use depth_space::*;
pub use gather::*;
pub use one_hot::*;
pub use pad::*;
pub use resize::*;
pub use reverse_sequence::*;
pub use scatter::*;
pub use slice::*;
pub use split::*;
pub use tile::*;
pub use top_k::*;
pub use trilu::*;

use super::OpDef;

/// The ops of this family.
pub(crate) static OPS: &[&OpDef] = &[
    &CONCAT,
    &SPLIT,
    &SLICE,
    &GATHER,
    &GATHER_ELEMENTS,
    &GATHER_ND,
    &SCATTER,
    &SCATTER_ELEMENTS,
    &SCATTER_ND,
    &TENSOR_SCATTER,
    &TILE,
    &PAD,
    &CENTER_CROP_PAD,
    &RESIZE,
    &UPSAMPLE,
    &DEPTH_TO_SPACE,
    &SPACE_TO_DEPTH,
    &TRILU,
    &TOP_K,
    &ONE_HOT,
    &REVERSE_SEQUENCE,
    &NON_ZERO,
    &UNIQUE,
    &COMPRESS,
];
