//! Numpy-style broadcasting of shapes, and of the small integer tensors of
//! shape arithmetic.
#![allow(clippy::too_many_arguments)]
use crate::ops::util::prelude::*;

/// Elementwise combination of two small integer tensors (with size-1 broadcasting).
pub(crate) fn elementwise_ints(g: &Graph, n: &Node, a: usize, b: usize, f: impl Fn(Dim, Dim) -> Dim) -> Option<Vec<Dim>> {
    let (x, y) = (val(g, n, a)?.ints.clone()?, val(g, n, b)?.ints.clone()?);
    let len = x.len().max(y.len());
    if x.is_empty() || y.is_empty() || !(x.len() == len || x.len() == 1) || !(y.len() == len || y.len() == 1) {
        return None;
    }
    Some((0..len).map(|i| f(x[i.min(x.len() - 1)], y[i.min(y.len() - 1)])).collect())
}

/// Numpy-style broadcast of shapes.
pub fn broadcast(shapes: &[Vec<Dim>]) -> Option<Vec<Dim>> {
    let rank = shapes.iter().map(Vec::len).max()?;
    let mut out = vec![Dim::Known(1); rank];
    for s in shapes {
        let off = rank - s.len();
        for (i, d) in s.iter().enumerate() {
            let o = &mut out[off + i];
            *o = match (*o, *d) {
                (Dim::Known(1), x) => x,
                (x, Dim::Known(1)) => x,
                // unequal known sizes make an invalid model; keep the first
                (Dim::Known(a), Dim::Known(_)) => Dim::Known(a),
                (Dim::Sym(a), Dim::Sym(b)) if a == b => Dim::Sym(a),
                (Dim::Known(a), _) | (_, Dim::Known(a)) => Dim::Known(a),
                _ => Dim::Unknown,
            };
        }
    }
    Some(out)
}

/// The broadcast of all inputs' shapes (unknown when one is).
pub(crate) fn broadcast_inputs(g: &Graph, n: &Node) -> Option<Vec<Dim>> {
    let shapes: Option<Vec<Vec<Dim>>> = n.inputs.iter().map(|i| i.and_then(|v| g.values[v].shape.clone())).collect();
    shapes.and_then(|s| broadcast(&s))
}

/// A broadcasting op whose output has the first input's element type.
pub(crate) fn binary_shape(g: &Graph, n: &Node) -> Vec<Out> {
    vec![(broadcast_inputs(g, n), None, None, first_dtype(g, n))]
}

/// A broadcasting op with a boolean output.
pub(crate) fn logical_shape(g: &Graph, n: &Node) -> Vec<Out> {
    vec![(broadcast_inputs(g, n), None, None, Some(DType::Bool))]
}

/// Integer arithmetic on two small integer tensors (shape arithmetic), with
/// size-1 broadcasting.
pub(crate) fn arith_ints(g: &Graph, n: &Node, op: Arith) -> Option<Vec<Dim>> {
    combine_ints(g, n, |x, y| arith(x, y, op))
}

/// `f` elementwise over two small integer tensors, with size-1 broadcasting.
pub(crate) fn combine_ints(g: &Graph, n: &Node, f: impl Fn(Dim, Dim) -> Dim) -> Option<Vec<Dim>> {
    let (a, b) = (val(g, n, 0).and_then(|v| v.ints.clone())?, val(g, n, 1).and_then(|v| v.ints.clone())?);
    let len = a.len().max(b.len());
    if (a.len() == len || a.len() == 1) && (b.len() == len || b.len() == 1) {
        return Some((0..len).map(|i| f(a[i.min(a.len() - 1)], b[i.min(b.len() - 1)])).collect());
    }
    None
}

/// The value of a one-element input: its scalar, or its one shape int.
pub(crate) fn scalar_in(g: &Graph, n: &Node, i: usize) -> Option<f64> {
    let v = val(g, n, i)?;
    v.scalar.or_else(|| match v.ints.as_deref() {
        Some([Dim::Known(x)]) => Some(*x as f64),
        _ => None,
    })
}

/// `f` of two one-element inputs, when both are known (one-element shape ints
/// count: a Gather of a Shape, cast to float).
pub(crate) fn fold_scalars(g: &Graph, n: &Node, f: fn(f64, f64) -> f64) -> Option<f64> {
    match (scalar_in(g, n, 0), scalar_in(g, n, 1)) {
        (Some(a), Some(b)) => Some(f(a, b)),
        _ => None,
    }
}

/// A broadcasting arithmetic op: shape, integer values and scalar folded.
pub(crate) fn arith_shape(g: &Graph, n: &Node, op: Arith, f: fn(f64, f64) -> f64) -> Vec<Out> {
    vec![(broadcast_inputs(g, n), arith_ints(g, n, op), fold_scalars(g, n, f), first_dtype(g, n))]
}
