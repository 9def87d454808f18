//! The `Scatter`, `ScatterElements`, `ScatterND`, `TensorScatter`: definitions and rules.
#![allow(clippy::too_many_arguments)]
use crate::ops::util::prelude::*;

// The attributes, with their ONNX defaults (checked when the IR is built).
const AXIS: IntAttr = IntAttr::new("axis", AttrCheck::Any, 0);
/// How duplicate indices combine (ScatterElements and ScatterND, opset 16 on).
const REDUCTION: StrAttr = StrAttr::new("reduction", AttrCheck::OneOf(&["none", "add", "mul", "max", "min"]), "none");

/// The `Scatter` op.
pub static SCATTER: OpDef = OpDef {
    name: "Scatter",
    module: module_path!(),
    inputs: Arity::range(3, 3),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 9, until: Some(10) },
    attrs: &[
        AXIS.spec,
    ],
    shape: Some(same_shape),
    analysis: Analysis::Unknown("not written: a change reaching it is unknown"),
    gradient: Gradient::None("not written: an error on the gradient path"),
    kernel: Some(scatter_elements_kernel),
    ..OpDef::BASE
};

/// The `ScatterElements` op.
pub static SCATTER_ELEMENTS: OpDef = OpDef {
    name: "ScatterElements",
    module: module_path!(),
    inputs: Arity::range(3, 3),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 11, until: None },
    attrs: &[
        AXIS.spec,
        REDUCTION.spec,
    ],
    shape: Some(scatter_shape),
    analysis: Analysis::Unknown("not written: a change reaching it is unknown"),
    gradient: Gradient::None("not written: an error on the gradient path"),
    kernel: Some(scatter_elements_kernel),
    ..OpDef::BASE
};

/// The `ScatterND` op.
pub static SCATTER_ND: OpDef = OpDef {
    name: "ScatterND",
    module: module_path!(),
    inputs: Arity::range(3, 3),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 11, until: None },
    attrs: &[
        REDUCTION.spec,
    ],
    shape: Some(scatter_shape),
    analysis: Analysis::Unknown("not written: a change reaching it is unknown"),
    gradient: Gradient::None("not written: an error on the gradient path"),
    kernel: Some(scatter_nd_kernel),
    ..OpDef::BASE
};

/// The `TensorScatter` op.
pub static TENSOR_SCATTER: OpDef = OpDef {
    name: "TensorScatter",
    module: module_path!(),
    inputs: Arity::range(2, 3),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 24, until: None },
    shape: Some(same_shape),
    analysis: Analysis::Unknown("not written: a change reaching it is unknown"),
    gradient: Gradient::None("not written: an error on the gradient path"),
    ..OpDef::BASE
};

pub(crate) fn scatter_shape(g: &Graph, n: &Node) -> Vec<ShapeOut> {
    vec![(shape_of(g, n, 0), None, None, first_dtype(g, n))]
}

/// WGSL helpers for writing `v` into `out[t]` (`out` an `array<atomic<u32>>`
/// holding `elem` bits) under `reduction`: a plain store for none, else a
/// compare-exchange loop, so duplicate indices all reach the element.
fn reduce_helpers(elem: Elem, reduction: &str) -> Result<String, String> {
    let ty = elem.wgsl();
    let combine = match (reduction, elem) {
        ("none", _) => None,
        ("add", Elem::Bool) => Some("a | b"),
        ("mul", Elem::Bool) => Some("a & b"),
        ("add", _) => Some("a + b"),
        ("mul", _) => Some("a * b"),
        ("max", _) => Some("max(a, b)"),
        ("min", _) => Some("min(a, b)"),
        (r, _) => return Err(format!("reduction '{r}' is not one of none, add, mul, max, min")),
    };
    Ok(match combine {
        None => format!("fn put(t: u32, v: {ty}) {{\n    atomicStore(&out[t], bitcast<u32>(v));\n}}\n"),
        Some(c) => format!(
            "fn combine(a: {ty}, b: {ty}) -> {ty} {{ return {c}; }}\n\
             fn put(t: u32, v: {ty}) {{\n\
             \x20   var old = atomicLoad(&out[t]);\n\
             \x20   loop {{\n\
             \x20       let r = atomicCompareExchangeWeak(&out[t], old, bitcast<u32>(combine(bitcast<{ty}>(old), v)));\n\
             \x20       if (r.exchanged) {{ break; }}\n\
             \x20       old = r.old_value;\n\
             \x20   }}\n\
             }}\n"
        ),
    })
}

/// Copies data (input 0) to the output, then runs `body` over the `n`
/// updates (input 2), which calls `put(t, v)`; the indices are input 1.
fn scatter_lowered(ctx: &KernelCtx, n: usize, body: &str) -> Result<Lowered, String> {
    use super::map::{copy, launch, Arg};
    let x = ctx.input(0)?;
    let out = ctx.output(0)?;
    if out.shape != x.shape || out.elem != x.elem || ctx.input(2)?.elem != x.elem {
        return Err(format!("data {:?} {:?}, updates {:?} and output {:?} {:?} differ", x.elem, x.shape, ctx.input(2)?.elem, out.elem, out.shape));
    }
    if ctx.input(1)?.elem != Elem::I32 {
        return Err("the indices must be integers".into());
    }
    // Scatter (opsets 9-10) has no reduction
    let reduction = REDUCTION.get_if_declared(ctx.node);
    let helpers = reduce_helpers(x.elem, reduction)?;
    let mut lowered = Lowered { in_place: vec![0], ..Default::default() };
    if out.numel() > 0 {
        lowered.launches.push(copy(ctx, 0, 0)?);
    }
    if n > 0 {
        let args = [Arg::input(ctx, 1, "idx")?, Arg::input(ctx, 2, "upd")?, Arg { name: "out".into(), ty: "atomic<u32>".into(), bind: crate::exec::kernel::Bind::Output(0) }];
        lowered.launches.push(launch(ctx, "scatter", &args, n, &helpers, body)?);
    }
    Ok(lowered)
}

// Out-of-range indices (an error in ONNX) write nothing.
fn scatter_elements_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    use super::map::{coords, flat, norm_index};
    let x = ctx.input(0)?;
    let ind = ctx.input(1)?;
    let r = x.shape.len();
    let a = super::map::axis(AXIS.get(ctx.node), r, "axis")?;
    if ind.shape != ctx.input(2)?.shape || ind.shape.len() != r || (0..r).any(|d| d != a && ind.shape[d] > x.shape[d]) {
        return Err(format!("indices {:?} and updates {:?} do not fit data of shape {:?}", ind.shape, ctx.input(2)?.shape, x.shape));
    }
    let dim = x.shape[a];
    let mut body = coords("c", "i", &ind.shape);
    body.push_str(&norm_index("k", "idx[i]", dim));
    let tc: Vec<String> = (0..r).map(|d| if d == a { "u32(k)".to_string() } else { format!("c{d}") }).collect();
    body.push_str(&format!("    if (k_ok) {{ put({}, upd[i]); }}", flat(&tc, &x.shape)));
    scatter_lowered(ctx, ind.numel(), &body)
}

fn scatter_nd_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    use super::map::norm_index;
    let x = ctx.input(0)?;
    let ind = ctx.input(1)?;
    let upd = ctx.input(2)?;
    let (r, q) = (x.shape.len(), ind.shape.len());
    let m = *ind.shape.last().ok_or("indices of rank 0")?;
    let want: Vec<usize> = ind.shape[..q - 1].iter().chain(x.shape.get(m..).unwrap_or(&[])).copied().collect();
    if m > r || upd.shape != want {
        return Err(format!("indices {:?} and updates {:?} do not fit data of shape {:?}", ind.shape, upd.shape, x.shape));
    }
    let slice: usize = x.shape[m..].iter().product();
    let st = kern::strides(&x.shape);
    let mut body = format!("    let u = i / {slice}u;\n    let s = i % {slice}u;\n");
    let mut target = vec!["s".to_string()];
    let mut ok = vec!["true".to_string()];
    for k in 0..m {
        body.push_str(&norm_index(&format!("k{k}"), &format!("idx[u * {m}u + {k}u]"), x.shape[k]));
        ok.push(format!("k{k}_ok"));
        target.push(format!("u32(k{k}) * {}u", st[k]));
    }
    body.push_str(&format!("    if ({}) {{ put({}, upd[i]); }}", ok.join(" && "), target.join(" + ")));
    scatter_lowered(ctx, upd.numel(), &body)
}
