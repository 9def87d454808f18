//! The `Shape`, `Size`: definitions and rules.
#![allow(clippy::too_many_arguments)]
use crate::ops::util::prelude::*;

// The attributes, with their ONNX defaults (checked when the IR is built).
const START: IntAttr = IntAttr::new("start", AttrCheck::Any, 0);
/// The end (absent: the rank).
const END: OptIntAttr = OptIntAttr::new("end", AttrCheck::Any);

/// The `Shape` op.
pub static SHAPE: OpDef = OpDef {
    name: "Shape",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    attrs: &[
        START.spec,
        END.spec,
    ],
    shape: Some(shape_shape),
    analysis: Analysis::Rule(shape_only_rule),
    shape_only: true,
    gradient: Gradient::Zero("no floating-point input reaches the output"),
    kernel: Some(shape_kernel),
    ..OpDef::BASE
};

/// The `Size` op.
pub static SIZE: OpDef = OpDef {
    name: "Size",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    shape: Some(size_shape),
    analysis: Analysis::Rule(shape_only_rule),
    shape_only: true,
    gradient: Gradient::Zero("no floating-point input reaches the output"),
    kernel: Some(size_kernel),
    ..OpDef::BASE
};

/// Shape and Size read only the shape, which no change alters.
pub(crate) fn shape_only_rule(_: &mut Ctx, n: &Node, _: &[Option<Affine>]) -> Vec<Flow> {
    vec![Flow::Same; n.outputs.len()]
}

pub(crate) fn shape_shape(g: &Graph, n: &Node) -> Vec<ShapeOut> {
    let s = shape_of(g, n, 0);
    let ints = s.map(|s| {
        let r = s.len() as i64;
        let clamp = |x: i64| (if x < 0 { x + r } else { x }).clamp(0, r) as usize;
        let start = clamp(START.get(n));
        let end = clamp(END.get(n).unwrap_or(r));
        s[start..end.max(start)].to_vec()
    });
    let len = ints.as_ref().map(|i| i.len() as i64);
    vec![(Some(vec![len.map(Dim::Known).unwrap_or(Dim::Unknown)]), ints, None, Some(DType::I64))]
}

pub(crate) fn size_shape(g: &Graph, n: &Node) -> Vec<ShapeOut> {
    let size = shape_of(g, n, 0).map(|s| product(&s));
    let ints = size.filter(|d| *d != Dim::Unknown).map(|d| vec![d]);
    vec![(Some(vec![]), ints, size.and_then(Dim::known).map(|k| k as f64), Some(DType::I64))]
}

/// Output 0 filled with host-computed integers (the host usually knows these
/// outputs and launches nothing; this covers a graph output it must upload).
fn ints_fill(ctx: &KernelCtx, values: &[i64]) -> Result<Lowered, String> {
    use crate::ops::movement::map::{launch, Arg};
    if values.is_empty() {
        return Ok(Lowered::default());
    }
    let list: Vec<String> = values.iter().map(|&v| i32::try_from(v).map(|v| format!("{v}")).map_err(|_| format!("{v} does not fit 32 bits"))).collect::<Result<_, _>>()?;
    let helpers = format!("var<private> VALUES: array<i32, {n}> = array<i32, {n}>({});\n", list.join(", "), n = list.len());
    let args = [Arg::output(ctx, 0, "out")?];
    Ok(Lowered::one(launch(ctx, "", &args, values.len(), &helpers, "    out[i] = VALUES[i];")?))
}

fn shape_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    let dims: Vec<i64> = ctx.input(0)?.shape.iter().map(|&d| d as i64).collect();
    let r = dims.len() as i64;
    let at = |x: i64| if x < 0 { (x + r).clamp(0, r) } else { x.min(r) } as usize;
    let (s, e) = (at(START.get(ctx.node)), at(END.get(ctx.node).unwrap_or(r)));
    ints_fill(ctx, dims.get(s..e.max(s)).unwrap_or(&[]))
}

fn size_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    ints_fill(ctx, &[ctx.input(0)?.numel() as i64])
}
