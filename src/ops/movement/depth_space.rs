//! The `DepthToSpace`, `SpaceToDepth`: definitions and rules.
#![allow(clippy::too_many_arguments)]
use crate::ops::util::prelude::*;

// The attributes, with their ONNX defaults (checked when the IR is built).
const BLOCKSIZE: OptIntAttr = OptIntAttr::required("blocksize", AttrCheck::AtLeast(1));
/// DepthToSpace's, and SpaceToDepth's from the opsets that gave it one.
const MODE: StrAttr = StrAttr::new("mode", AttrCheck::OneOf(&["DCR", "CRD"]), "DCR");

/// The `DepthToSpace` op.
pub static DEPTH_TO_SPACE: OpDef = OpDef {
    name: "DepthToSpace",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    attrs: &[
        BLOCKSIZE.spec,
        MODE.spec,
    ],
    shape: Some(depth_space_shape),
    analysis: Analysis::Rule(depth_space_rule),
    gradient: Gradient::Rule(movement),
    kernel: Some(depth_to_space_kernel),
    ..OpDef::BASE
};

/// The `SpaceToDepth` op.
pub static SPACE_TO_DEPTH: OpDef = OpDef {
    name: "SpaceToDepth",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    attrs: &[
        BLOCKSIZE.spec,
        MODE.spec,
    ],
    shape: Some(depth_space_shape),
    analysis: Analysis::Rule(depth_space_rule),
    gradient: Gradient::Rule(movement),
    kernel: Some(space_to_depth_kernel),
    ..OpDef::BASE
};

pub(crate) fn depth_space_rule(c: &mut Ctx, n: &Node, e: &[Option<Affine>]) -> Vec<Flow> {
    let Some(x) = e.first().and_then(Option::as_ref) else { return one(Flow::Same) };
    let Some(r) = c.rank(n.input(0)) else { return one(unknown("rank unknown")) };
    let mixed = mask::below(r) & !mask::bit(0);
    one(remap_effect(c, x, &|m| Some((if m & mixed != 0 { (m & mask::bit(0)) | mixed } else { m }, m & mixed == 0))))
}

pub(crate) fn depth_space_shape(g: &Graph, n: &Node) -> Vec<ShapeOut> {
    let Some(b) = BLOCKSIZE.get(n) else { return Vec::new() };
    // b * b checked: a hostile block size gives an unknown channel dim
    let bb = b.checked_mul(b).map_or(Dim::Unknown, Dim::Known);
    let s = shape_of(g, n, 0).filter(|s| s.len() == 4).map(|s| {
        if n.is(&DEPTH_TO_SPACE) {
            vec![s[0], arith(s[1], bb, Arith::Div), arith(s[2], Dim::Known(b), Arith::Mul), arith(s[3], Dim::Known(b), Arith::Mul)]
        } else {
            vec![s[0], arith(s[1], bb, Arith::Mul), arith(s[2], Dim::Known(b), Arith::Div), arith(s[3], Dim::Known(b), Arith::Div)]
        }
    });
    vec![(s, None, None, first_dtype(g, n))]
}

/// Input [N, C, H, W] and output shapes for a block size, checked.
fn block_shapes(ctx: &KernelCtx, to_space: bool) -> Result<([usize; 4], [usize; 4], usize), String> {
    let x = ctx.input(0)?;
    let out = ctx.output(0)?;
    let b = BLOCKSIZE.get(ctx.node).and_then(|b| usize::try_from(b).ok()).filter(|&b| b >= 1).ok_or("blocksize must be at least 1")?;
    let (Ok(xs), Ok(os)) = (<[usize; 4]>::try_from(x.shape.as_slice()), <[usize; 4]>::try_from(out.shape.as_slice())) else {
        return Err(format!("input {:?} and output {:?} must be 4-D", x.shape, out.shape));
    };
    let (small, big) = if to_space { (os, xs) } else { (xs, os) };
    // `big` has the channels, `small` the space
    if big[0] != small[0] || big[1] != small[1] * b * b || small[2] != big[2] * b || small[3] != big[3] * b {
        return Err(format!("input {:?} and output {:?} do not differ by blocksize {b}", x.shape, out.shape));
    }
    Ok((xs, os, b))
}

fn depth_to_space_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    let (xs, os, b) = block_shapes(ctx, true)?;
    let c = os[1];
    let ch = match MODE.get(ctx.node) {
        "DCR" => format!("((c2 % {b}u) * {b}u + c3 % {b}u) * {c}u + c1"),
        "CRD" => format!("c1 * {}u + (c2 % {b}u) * {b}u + c3 % {b}u", b * b),
        m => return Err(format!("mode '{m}' is not DCR or CRD")),
    };
    let src = ["c0".to_string(), ch, format!("c2 / {b}u"), format!("c3 / {b}u")];
    super::map::gather(ctx, 0, &format!("    let src = {};", super::map::flat(&src, &xs)), None, &[])
}

fn space_to_depth_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    let (xs, _, b) = block_shapes(ctx, false)?;
    let c = xs[1];
    let src = match MODE.get(ctx.node) {
        // output channel (bh * b + bw) * C + c
        "DCR" => ["c0".to_string(), format!("c1 % {c}u"), format!("c2 * {b}u + c1 / {}u", c * b), format!("c3 * {b}u + (c1 / {c}u) % {b}u")],
        // output channel c * b * b + bh * b + bw
        "CRD" => ["c0".to_string(), format!("c1 / {}u", b * b), format!("c2 * {b}u + (c1 / {b}u) % {b}u"), format!("c3 * {b}u + c1 % {b}u")],
        m => return Err(format!("mode '{m}' is not DCR or CRD")),
    };
    super::map::gather(ctx, 0, &format!("    let src = {};", super::map::flat(&src, &xs)), None, &[])
}
