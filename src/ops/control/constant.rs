//! The `Constant`, `ConstantOfShape`, `EyeLike`: definitions and rules.
#![allow(clippy::too_many_arguments)]
use crate::ops::util::prelude::*;

/// The `Constant` op.
pub static CONSTANT: OpDef = OpDef {
    name: "Constant",
    module: module_path!(),
    inputs: Arity::range(0, 0),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    attrs: &[
        AttrSpec::of("value", AttrKind::Tensor),
        AttrSpec::float("value_float"),
        AttrSpec::floats("value_floats"),
        AttrSpec::int("value_int", AttrCheck::Any),
        AttrSpec::ints("value_ints", AttrCheck::Any),
        AttrSpec::string("value_string", AttrCheck::Any),
    ],
    shape: Some(constant_shape),
    analysis: Analysis::Unknown("not written: a change reaching it is unknown"),
    gradient: Gradient::Zero("no floating-point input reaches the output"),
    ..OpDef::BASE
};

/// The `ConstantOfShape` op.
pub static CONSTANT_OF_SHAPE: OpDef = OpDef {
    name: "ConstantOfShape",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 9, until: None },
    attrs: &[
        AttrSpec::of("value", AttrKind::Tensor),
    ],
    shape: Some(constant_of_shape_shape),
    analysis: Analysis::Unknown("not written: a change reaching it is unknown"),
    arg_slots: ArgSlots::All,
    gradient: Gradient::Zero("no floating-point input reaches the output"),
    kernel: Some(constant_of_shape_kernel),
    ..OpDef::BASE
};

/// The `EyeLike` op.
pub static EYE_LIKE: OpDef = OpDef {
    name: "EyeLike",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 9, until: None },
    attrs: &[
        AttrSpec::int("dtype", AttrCheck::Any),
        AttrSpec::int("k", AttrCheck::Any),
    ],
    shape: Some(eye_like_shape),
    analysis: Analysis::Unknown("not written: a change reaching it is unknown"),
    gradient: Gradient::None("not written: an error on the gradient path"),
    ..OpDef::BASE
};

pub(crate) fn constant_shape(_g: &Graph, n: &Node) -> Vec<ShapeOut> {
    let t = match n.attrs.get("value") {
        Some(AttrValue::Tensor(t)) => Some(t.clone()),
        _ => None,
    };
    if let Some(t) = t {
        let ints = t.as_ints().map(|xs| xs.into_iter().map(Dim::Known).collect());
        return vec![(Some(t.dims.iter().map(|&d| Dim::Known(d)).collect()), ints, t.as_scalar(), Some(t.dtype))];
    }
    let scalar = match n.attrs.get("value_float") {
        Some(AttrValue::Float(f)) => Some(*f as f64),
        _ => match n.attrs.get("value_int") {
            Some(AttrValue::Int(i)) => return vec![(Some(vec![]), Some(vec![Dim::Known(*i)]), Some(*i as f64), Some(DType::I64))],
            _ => None,
        },
    };
    if let Some(AttrValue::Ints(v)) = n.attrs.get("value_ints") {
        return vec![(Some(vec![Dim::Known(v.len() as i64)]), Some(v.iter().map(|&x| Dim::Known(x)).collect()), None, Some(DType::I64))];
    }
    vec![(scalar.map(|_| vec![]), None, scalar, scalar.map(|_| DType::F32))]
}

pub(crate) fn constant_of_shape_shape(g: &Graph, n: &Node) -> Vec<ShapeOut> {
    let s = val(g, n, 0).and_then(|v| v.ints.clone());
    let (ints, dtype) = match n.attrs.get("value") {
        Some(AttrValue::Tensor(t)) => (
            t.as_ints().and_then(|x| x.first().copied()).and_then(|x| {
                let dims = s.as_ref()?;
                let len: i64 = dims.iter().map(|d| d.known()).product::<Option<i64>>()?;
                (dims.len() == 1 && len as usize <= MAX_TRACKED_INTS).then(|| vec![Dim::Known(x); len as usize])
            }),
            Some(t.dtype),
        ),
        _ => (None, Some(DType::F32)),
    };
    vec![(s, ints, None, dtype)]
}

pub(crate) fn eye_like_shape(g: &Graph, n: &Node) -> Vec<ShapeOut> {
    let mut out = same(g, n);
    out[0].3 = n.attrs.get("dtype").map(|_| DType::from_onnx(n.attr_int("dtype", 1) as i32)).or(out[0].3);
    out
}

fn constant_of_shape_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    // a fill: the shape is static, the value an attribute
    let out = ctx.output(0)?;
    let value = match ctx.node.attrs.get("value") {
        Some(AttrValue::Tensor(t)) => Some(t),
        None => None,
        Some(_) => return Err("the value attribute is not a tensor".into()),
    };
    let lit = crate::ops::movement::map::scalar_literal(value, out.elem)?;
    let n = out.numel();
    if n == 0 {
        return Ok(Lowered::default());
    }
    let args = [crate::ops::movement::map::Arg::output(ctx, 0, "out")?];
    Ok(Lowered::one(crate::ops::movement::map::launch(ctx, "", &args, n, "", &format!("    out[i] = {lit};"))?))
}
