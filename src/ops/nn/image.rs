//! The `GridSample`, `AffineGrid`, `RoiAlign`, `Col2Im`, `NonMaxSuppression`: definitions and rules.
#![allow(clippy::too_many_arguments)]
use crate::ops::util::prelude::*;

// The attributes, with their ONNX defaults (checked when the IR is built).
const MODE: StrAttr = StrAttr::new("mode", AttrCheck::OneOf(&["avg", "max"]), "avg");
const OUTPUT_HEIGHT: IntAttr = IntAttr::new("output_height", AttrCheck::AtLeast(1), 1);
const OUTPUT_WIDTH: IntAttr = IntAttr::new("output_width", AttrCheck::AtLeast(1), 1);
const SAMPLING_RATIO: IntAttr = IntAttr::new("sampling_ratio", AttrCheck::AtLeast(0), 0);
const SPATIAL_SCALE: FloatAttr = FloatAttr::new("spatial_scale", 1.0);

/// The `GridSample` op.
pub static GRID_SAMPLE: OpDef = OpDef {
    name: "GridSample",
    module: module_path!(),
    inputs: Arity::range(2, 2),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 16, until: None },
    shape: Some(grid_sample_shape),
    analysis: Analysis::Unknown("not written: a change reaching it is unknown"),
    gradient: Gradient::None("not written: an error on the gradient path"),
    ..OpDef::BASE
};

/// The `AffineGrid` op.
pub static AFFINE_GRID: OpDef = OpDef {
    name: "AffineGrid",
    module: module_path!(),
    inputs: Arity::range(2, 2),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 20, until: None },
    shape: Some(affine_grid_shape),
    analysis: Analysis::Unknown("not written: a change reaching it is unknown"),
    gradient: Gradient::None("not written: an error on the gradient path"),
    ..OpDef::BASE
};

/// The `RoiAlign` op.
pub static ROI_ALIGN: OpDef = OpDef {
    name: "RoiAlign",
    module: module_path!(),
    inputs: Arity::range(3, 3),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 10, until: None },
    attrs: &[
        MODE.spec,
        OUTPUT_HEIGHT.spec,
        OUTPUT_WIDTH.spec,
        SAMPLING_RATIO.spec,
        SPATIAL_SCALE.spec,
    ],
    shape: Some(roi_align_shape),
    analysis: Analysis::Unknown("not written: a change reaching it is unknown"),
    gradient: Gradient::None("not written: an error on the gradient path"),
    ..OpDef::BASE
};

/// The `Col2Im` op.
pub static COL2IM: OpDef = OpDef {
    name: "Col2Im",
    module: module_path!(),
    inputs: Arity::range(3, 3),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 18, until: None },
    shape: Some(col2im_shape),
    analysis: Analysis::Unknown("not written: a change reaching it is unknown"),
    gradient: Gradient::None("not written: an error on the gradient path"),
    ..OpDef::BASE
};

/// The `NonMaxSuppression` op.
pub static NON_MAX_SUPPRESSION: OpDef = OpDef {
    name: "NonMaxSuppression",
    module: module_path!(),
    inputs: Arity::range(2, 5),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 10, until: None },
    data_dependent: true,
    analysis: Analysis::Unknown("not written: a change reaching it is unknown"),
    gradient: Gradient::None("not written: an error on the gradient path"),
    ..OpDef::BASE
};

pub(crate) fn grid_sample_shape(g: &Graph, n: &Node) -> Vec<ShapeOut> {
    // [N, C, D1..] sampled at grid [N, H1.., r] -> [N, C, H1..]
    let s = match (shape_of(g, n, 0), shape_of(g, n, 1)) {
        (Some(x), Some(grid)) if x.len() >= 2 && grid.len() >= 2 => Some([&x[..2], &grid[1..grid.len() - 1]].concat()),
        _ => None,
    };
    vec![(s, None, None, first_dtype(g, n))]
}

pub(crate) fn affine_grid_shape(g: &Graph, n: &Node) -> Vec<ShapeOut> {
    // size [N, C, H, W] (or [N, C, D, H, W]) -> grid [N, H, W, 2] ([N, D, H, W, 3])
    let s = val(g, n, 1).and_then(|v| v.ints.clone()).filter(|z| z.len() >= 3).map(|z| {
        let mut out = vec![z[0]];
        out.extend_from_slice(&z[2..]);
        out.push(Dim::Known(z.len() as i64 - 2));
        out
    });
    vec![(s, None, None, first_dtype(g, n))]
}

pub(crate) fn roi_align_shape(g: &Graph, n: &Node) -> Vec<ShapeOut> {
    let s = match (shape_of(g, n, 0), shape_of(g, n, 1)) {
        (Some(x), Some(r)) if x.len() == 4 && !r.is_empty() => {
            Some(vec![r[0], x[1], Dim::Known(OUTPUT_HEIGHT.get(n)), Dim::Known(OUTPUT_WIDTH.get(n))])
        }
        _ => None,
    };
    vec![(s, None, None, first_dtype(g, n))]
}

pub(crate) fn col2im_shape(g: &Graph, n: &Node) -> Vec<ShapeOut> {
    // [N, C * prod(block), L] -> [N, C, image...]
    let s = match (shape_of(g, n, 0), ints_of(g, n, 1), ints_of(g, n, 2)) {
        (Some(x), Some(image), Some(block)) if x.len() == 3 => {
            let blocks = block.iter().try_fold(1i64, |a, &b| a.checked_mul(b)).filter(|&b| b > 0);
            let c = blocks.map_or(Dim::Unknown, |b| arith(x[1], Dim::Known(b), Arith::Div));
            Some([vec![x[0], c], image.into_iter().map(Dim::Known).collect()].concat())
        }
        _ => None,
    };
    vec![(s, None, None, first_dtype(g, n))]
}
