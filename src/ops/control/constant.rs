//! The `Constant`, `ConstantOfShape`, `EyeLike`: definitions and rules.
#![allow(clippy::too_many_arguments)]
use crate::ops::util::prelude::*;

// The attributes, with their ONNX defaults (checked when the IR is built).
/// Constant's value, ConstantOfShape's fill (absent: a float32 zero).
pub(crate) const CONSTANT_VALUE: TensorAttr = TensorAttr::new("value");
const VALUE_FLOAT: OptFloatAttr = OptFloatAttr::new("value_float");
const VALUE_FLOATS: FloatsAttr = FloatsAttr::new("value_floats");
const VALUE_INT: OptIntAttr = OptIntAttr::new("value_int", AttrCheck::Any);
const VALUE_INTS: IntsAttr = IntsAttr::new("value_ints", AttrCheck::Any);
const VALUE_STRING: OptStrAttr = OptStrAttr::new("value_string", AttrCheck::Any);
/// EyeLike's element type (absent: the input's).
const DTYPE: OptIntAttr = OptIntAttr::new("dtype", AttrCheck::Any);
const K: IntAttr = IntAttr::new("k", AttrCheck::Any, 0);

/// The `Constant` op.
pub static CONSTANT: OpDef = OpDef {
    name: "Constant",
    module: module_path!(),
    inputs: Arity::range(0, 0),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    attrs: &[
        CONSTANT_VALUE.spec,
        VALUE_FLOAT.spec,
        VALUE_FLOATS.spec,
        VALUE_INT.spec,
        VALUE_INTS.spec,
        VALUE_STRING.spec,
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
        CONSTANT_VALUE.spec,
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
        DTYPE.spec,
        K.spec,
    ],
    shape: Some(eye_like_shape),
    analysis: Analysis::Unknown("not written: a change reaching it is unknown"),
    gradient: Gradient::None("not written: an error on the gradient path"),
    ..OpDef::BASE
};

pub(crate) fn constant_shape(_g: &Graph, n: &Node) -> Vec<ShapeOut> {
    if let Some(t) = CONSTANT_VALUE.get(n) {
        let ints = t.as_ints().map(|xs| xs.into_iter().map(Dim::Known).collect());
        return vec![(Some(t.dims.iter().map(|&d| Dim::Known(d)).collect()), ints, t.as_scalar(), Some(t.dtype))];
    }
    let scalar = match (VALUE_FLOAT.get(n), VALUE_INT.get(n)) {
        (Some(f), _) => Some(f as f64),
        (None, Some(i)) => return vec![(Some(vec![]), Some(vec![Dim::Known(i)]), Some(i as f64), Some(DType::I64))],
        (None, None) => None,
    };
    if let Some(v) = VALUE_INTS.get(n) {
        return vec![(Some(vec![Dim::Known(v.len() as i64)]), Some(v.iter().map(|&x| Dim::Known(x)).collect()), None, Some(DType::I64))];
    }
    vec![(scalar.map(|_| vec![]), None, scalar, scalar.map(|_| DType::F32))]
}

pub(crate) fn constant_of_shape_shape(g: &Graph, n: &Node) -> Vec<ShapeOut> {
    let s = val(g, n, 0).and_then(|v| v.ints.clone());
    let (ints, dtype) = match CONSTANT_VALUE.get(n) {
        Some(t) => (
            t.as_ints().and_then(|x| x.first().copied()).and_then(|x| {
                let dims = s.as_ref()?;
                let len: i64 = dims.iter().map(|d| d.known()).product::<Option<i64>>()?;
                (dims.len() == 1 && len as usize <= MAX_TRACKED_INTS).then(|| vec![Dim::Known(x); len as usize])
            }),
            Some(t.dtype),
        ),
        None => (None, Some(DType::F32)),
    };
    vec![(s, ints, None, dtype)]
}

pub(crate) fn eye_like_shape(g: &Graph, n: &Node) -> Vec<ShapeOut> {
    let mut out = same(g, n);
    out[0].3 = DTYPE.dtype(n).or(out[0].3);
    out
}

fn constant_of_shape_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    // a fill: the shape is static, the value an attribute
    let out = ctx.output(0)?;
    let value = CONSTANT_VALUE.get(ctx.node);
    let lit = crate::ops::movement::map::scalar_literal(value, out.elem)?;
    let n = out.numel();
    if n == 0 {
        return Ok(Lowered::default());
    }
    let args = [crate::ops::movement::map::Arg::output(ctx, 0, "out")?];
    Ok(Lowered::one(crate::ops::movement::map::launch(ctx, "", &args, n, "", &format!("    out[i] = {lit};"))?))
}
