//! Dims and the small constant values shape inference tracks: reading an
//! input's shape or values, axis normalization, checked dim arithmetic.
#![allow(clippy::too_many_arguments)]
use crate::ops::util::prelude::*;

/// What inference learns about one output.
pub(crate) type Out = ShapeOut;

pub(crate) fn shape_of(g: &Graph, n: &Node, i: usize) -> Option<Vec<Dim>> {
    n.input(i).and_then(|v| g.values[v].shape.clone())
}

pub(crate) fn val<'g>(g: &'g Graph, n: &Node, i: usize) -> Option<&'g Value> {
    n.input(i).map(|v| &g.values[v])
}

pub(crate) fn ints_of(g: &Graph, n: &Node, i: usize) -> Option<Vec<i64>> {
    val(g, n, i)?.ints.as_ref()?.iter().map(|d| d.known()).collect()
}

/// The elements of a small constant input as f64 (initializer, Constant node,
/// or tracked shape arithmetic).
pub(crate) fn floats_of(g: &Graph, n: &Node, i: usize) -> Option<Vec<f64>> {
    let v = n.input(i)?;
    if let Some(t) = g.initializer_of(v) {
        return t.as_floats();
    }
    let value = &g.values[v];
    if let Some(t) = value.producer.map(|p| &g.nodes[p]).filter(|p| p.is(&CONSTANT)).and_then(|p| CONSTANT_VALUE.get(p)) {
        return t.as_floats();
    }
    if let Some(ints) = ints_of(g, n, i) {
        return Some(ints.into_iter().map(|x| x as f64).collect());
    }
    value.scalar.map(|x| vec![x])
}

/// Normalizes a possibly negative axis against `rank`.
pub fn norm_axis(axis: i64, rank: usize) -> Option<usize> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    (0..r).contains(&a).then_some(a as usize)
}

pub(crate) fn first_dtype(g: &Graph, n: &Node) -> Option<DType> {
    val(g, n, 0).and_then(|v| v.dtype)
}

pub(crate) fn same(g: &Graph, n: &Node) -> Vec<Out> {
    vec![(shape_of(g, n, 0), None, None, first_dtype(g, n))]
}

/// The integer operations of shape arithmetic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Arith {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
}

/// `a op b` on dims: checked on known sizes, symbolic where the identity allows.
pub(crate) fn arith(a: Dim, b: Dim, op: Arith) -> Dim {
    match (a, b) {
        (Dim::Known(x), Dim::Known(y)) => match op {
            Arith::Add => x.checked_add(y),
            Arith::Sub => x.checked_sub(y),
            Arith::Mul => x.checked_mul(y),
            // integer Div truncates toward zero (ONNX, C); div_euclid would floor negatives
            Arith::Div => x.checked_div(y),
            // integer Mod (fmod=0): the result takes the divisor's sign, as in Python
            Arith::Mod if y != 0 => x.checked_rem(y).map(|r| if r != 0 && (r < 0) != (y < 0) { r + y } else { r }),
            _ => None,
        }
        .map(Dim::Known)
        .unwrap_or(Dim::Unknown),
        (s @ Dim::Sym(_), Dim::Known(1)) if op == Arith::Mul || op == Arith::Div => s,
        (Dim::Known(1), s @ Dim::Sym(_)) if op == Arith::Mul => s,
        (s @ Dim::Sym(_), Dim::Known(0)) if op == Arith::Add || op == Arith::Sub => s,
        _ => Dim::Unknown,
    }
}

/// Product of dims (Unknown unless all known, or a single symbol).
pub fn product(dims: &[Dim]) -> Dim {
    let mut acc = Dim::Known(1);
    for d in dims {
        acc = arith(acc, *d, Arith::Mul);
    }
    acc
}

/// Output 0 has input 0's shape, element type, tracked values and value.
/// The input's shape, as a bool tensor (IsNaN, IsInf).
pub(crate) fn same_shape_bool(g: &Graph, n: &Node) -> Vec<Out> {
    let shape = n.input(0).and_then(|v| g.values[v].shape.clone());
    vec![(shape, None, None, Some(DType::Bool))]
}

pub(crate) fn same_shape(g: &Graph, n: &Node) -> Vec<Out> {
    same(g, n)
}

/// Elementwise ops of one data input: the input has the output's shape.
pub(crate) fn same_shape_constraints(g: &Graph, n: &Node) -> Vec<(usize, Vec<Dim>)> {
    n.output(0).and_then(|v| g.values[v].shape.clone()).map(|o| vec![(0, o)]).unwrap_or_default()
}
