//! The `Resize`, `Upsample`: definitions and rules.
#![allow(clippy::too_many_arguments)]
use crate::ops::util::prelude::*;

// The attributes, with their ONNX defaults (checked when the IR is built).
pub(crate) const RESIZE_MODE: StrAttr = StrAttr::new("mode", AttrCheck::OneOf(&["nearest", "linear", "cubic"]), "nearest");
const KEEP_ASPECT_RATIO_POLICY: StrAttr = StrAttr::new("keep_aspect_ratio_policy", AttrCheck::OneOf(&["stretch", "not_larger", "not_smaller"]), "stretch");
const AXES: IntsAttr = IntsAttr::new("axes", AttrCheck::Any);
/// Upsample's mode: opset 1 named linear `bilinear` (the rules read it as
/// [`RESIZE_MODE`], whose name and type it shares).
const UPSAMPLE_MODE: StrAttr = StrAttr::new("mode", AttrCheck::OneOf(&["nearest", "linear", "bilinear"]), "nearest");
const SCALES: FloatsAttr = FloatsAttr::new("scales");

/// The `Resize` op.
pub static RESIZE: OpDef = OpDef {
    name: "Resize",
    module: module_path!(),
    inputs: Arity::range(1, 4),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 10, until: None },
    attrs: &[
        RESIZE_MODE.spec,
        KEEP_ASPECT_RATIO_POLICY.spec,
        AXES.spec,
    ],
    shape: Some(resize_out_shape),
    analysis: Analysis::Rule(resize_rule),
    arg_slots: ArgSlots::From(1),
    gradient: Gradient::Rule(movement),
    ..OpDef::BASE
};

/// The `Upsample` op.
pub static UPSAMPLE: OpDef = OpDef {
    name: "Upsample",
    module: module_path!(),
    inputs: Arity::range(2, 2),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: Some(9) },
    attrs: &[
        UPSAMPLE_MODE.spec,
        SCALES.spec,
    ],
    shape: Some(resize_out_shape),
    analysis: Analysis::Rule(resize_rule),
    arg_slots: ArgSlots::From(1),
    gradient: Gradient::None("not written: an error on the gradient path"),
    ..OpDef::BASE
};

pub(crate) fn resize_rule(c: &mut Ctx, n: &Node, e: &[Option<Affine>]) -> Vec<Flow> {
    if e.iter().skip(1).any(Option::is_some) {
        return one(variant("Resize parameters change"));
    }
    let Some(x) = e.first().and_then(Option::as_ref) else { return one(Flow::Same) };
    let Some(r) = c.rank(n.input(0)) else { return one(unknown("Resize rank unknown")) };
    let (din, dout) = (c.dims(n.input(0)), c.dims(n.output(0)));
    // Axes that may be resized: all but N and C unless dims prove otherwise.
    let resized: Mask = match (din, dout) {
        (Some(a), Some(b)) if a.len() == b.len() => (0..r).filter(|&i| !(a[i] == b[i] && a[i] != Dim::Unknown)).fold(0, |m, i| m | mask::bit(i)),
        _ => mask::below(r),
    };
    let mode = RESIZE_MODE.get(n);
    if x.scale.as_ref().is_some_and(|s| s.mask & resized != 0) {
        return one(variant("Resize along a varying scale"));
    }
    if let Some(t) = &x.shift {
        if t.mask & resized != 0 || mode == "cubic" {
            return one(variant("Resize of a shifted value"));
        }
    }
    one(changed(x.clone()))
}

/// Resize and Upsample: from `sizes`, else from `scales` (floor(dim * scale)),
/// on all axes or on the `axes` attribute's.
pub(crate) fn resize_shape(g: &Graph, n: &Node) -> Option<Vec<Dim>> {
    let s = shape_of(g, n, 0)?;
    // Upsample and Resize before opset 11: (X, scales); later Resize: (X, roi, scales, sizes)
    let (scales_slot, sizes_slot) = if n.is(&UPSAMPLE) || g.opset < 11 { (1, usize::MAX) } else { (2, 3) };
    let axes: Option<Vec<usize>> = match AXES.get_if_declared(n) {
        Some(a) => a.iter().map(|&a| norm_axis(a, s.len())).collect(),
        None => Some((0..s.len()).collect()),
    };
    let fallback = || s.iter().enumerate().map(|(i, d)| if i < 2 { *d } else { Dim::Unknown }).collect::<Vec<_>>();
    let Some(axes) = axes else { return Some(fallback()) };
    // Upsample has no policy: it stretches.
    let policy = KEEP_ASPECT_RATIO_POLICY.get_if_declared(n);
    if let Some(z) = ints_of(g, n, sizes_slot).filter(|z| z.len() == axes.len() && !z.is_empty()) {
        if policy != "stretch" {
            // one scale for all axes: the smallest (not_larger) or largest (not_smaller) ratio
            let ratios: Option<Vec<f64>> = axes.iter().zip(&z).map(|(a, &t)| s[*a].known().filter(|&d| d > 0).map(|d| t as f64 / d as f64)).collect();
            let Some(ratios) = ratios else { return Some(fallback()) };
            let pick = if policy == "not_larger" { ratios.iter().copied().fold(f64::INFINITY, f64::min) } else { ratios.iter().copied().fold(0.0, f64::max) };
            let mut out = s.clone();
            for a in &axes {
                if let Dim::Known(d) = s[*a] {
                    let v = (pick * d as f64).round_ties_even();
                    out[*a] = if v.is_finite() && v < 1e15 { Dim::Known(v as i64) } else { Dim::Unknown };
                }
            }
            return Some(out);
        }
        let mut out = s.clone();
        for (a, d) in axes.iter().zip(z) {
            out[*a] = Dim::Known(d);
        }
        return Some(out);
    }
    let scales = floats_of(g, n, scales_slot).or_else(|| SCALES.get_if_declared(n).map(|f| f.iter().map(|&x| x as f64).collect()));
    match scales.filter(|z| z.len() == axes.len() && !z.is_empty()) {
        Some(z) => {
            let mut out = s.clone();
            for (a, k) in axes.iter().zip(z) {
                out[*a] = match s[*a] {
                    Dim::Known(d) if k.is_finite() && k >= 0.0 => {
                        let v = (d as f64 * k).floor();
                        if v < 1e15 { Dim::Known(v as i64) } else { Dim::Unknown }
                    }
                    other if k == 1.0 => other,
                    _ => Dim::Unknown,
                };
            }
            Some(out)
        }
        None => Some(fallback()),
    }
}

pub(crate) fn resize_out_shape(g: &Graph, n: &Node) -> Vec<ShapeOut> {
    vec![(resize_shape(g, n), None, None, first_dtype(g, n))]
}
