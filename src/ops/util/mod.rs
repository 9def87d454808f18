//! The arithmetic several ops share, written once: dims and small constant
//! values ([`dims`]), broadcasting ([`broadcast`]), convolution and pooling
//! windows ([`window`]), reduction axes ([`axes`]).
pub(crate) mod axes;
pub(crate) mod broadcast;
pub(crate) mod dims;
pub(crate) mod window;
#[cfg(all(test, feature = "gpu"))]
pub(crate) mod device_test;

/// What every op file imports: the IR, the rule toolkits of the analysis and
/// the rewrite, the shared arithmetic, and every op definition.
pub(crate) mod prelude {
    pub(crate) use super::axes::*;
    pub(crate) use super::broadcast::*;
    pub(crate) use super::dims::*;
    pub(crate) use super::window::*;
    pub(crate) use crate::analysis::effect::{mask, Affine, Flow, Mask, Scale, Shift};
    pub(crate) use crate::analysis::rules::*;
    pub(crate) use crate::ir::{DType, Dim, Graph, Node, Value, ValueId, MAX_TRACKED_INTS};
    pub(crate) use crate::ops::{Analysis, ArgSlots, Arity, AttrCheck, AttrSpec, Gradient, OpDef, Opsets, ShapeOut};
    pub(crate) use crate::ops::*;
    pub(crate) use crate::rewrite::emit::*;
    pub(crate) use crate::rewrite::grad::*;
    pub(crate) use crate::rewrite::lower::*;
    pub(crate) use crate::rewrite::RewriteError;
    pub(crate) use crate::exec::kernel::{self as kern, Elem, KernelCtx, Lowered};
}
