//! The axes a reduction names, read once for shape inference and the gradient.
use crate::ops::util::prelude::*;

// The reductions' attributes, with their ONNX defaults.
pub(crate) const REDUCE_AXES: IntsAttr = IntsAttr::new("axes", AttrCheck::Any);
pub(crate) const KEEPDIMS: IntAttr = IntAttr::flag("keepdims", true);
pub(crate) const NOOP_WITH_EMPTY_AXES: IntAttr = IntAttr::flag("noop_with_empty_axes", false);
/// Every Reduce* op's attributes.
pub(crate) const REDUCE_ATTRS: &[AttrSpec] = &[REDUCE_AXES.spec, KEEPDIMS.spec, NOOP_WITH_EMPTY_AXES.spec];
/// ArgMax's and ArgMin's one axis.
pub(crate) const ARG_AXIS: IntAttr = IntAttr::new("axis", AttrCheck::Any, 0);

/// The axes a reduction lists: its `axes` attribute, ArgMax/ArgMin's `axis`,
/// else its axes input (`input`: that input's value, when known); empty when
/// it names none. `None`: an axes input whose value is not known.
pub(crate) fn listed_axes(n: &Node, input: Option<Vec<i64>>) -> Option<Vec<i64>> {
    if n.is(&ARG_MAX) || n.is(&ARG_MIN) {
        return Some(vec![ARG_AXIS.get(n)]);
    }
    if let Some(a) = REDUCE_AXES.get(n) {
        return Some(a.to_vec());
    }
    if n.input(1).is_some() {
        return input;
    }
    Some(Vec::new())
}

/// The axes a Reduce* node reduces over, normalized (None: not known).
pub fn reduce_axes(g: &Graph, n: &Node, rank: usize) -> Option<Vec<usize>> {
    let axes = listed_axes(n, ints_of(g, n, 1))?;
    if axes.is_empty() {
        if NOOP_WITH_EMPTY_AXES.on(n) {
            return Some(Vec::new());
        }
        return Some((0..rank).collect());
    }
    axes.iter().map(|&a| norm_axis(a, rank)).collect()
}
