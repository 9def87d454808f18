//! The `Exp`, `Log`, `Sqrt`, `Reciprocal`, `Erf`, `Sin`, `Cos`, `Tan`, `Asin`, `Acos`, `Atan`, `Sinh`, `Cosh`, `Asinh`, `Acosh`, `Atanh`, `Floor`, `Ceil`, `Round`, `Sign`, `IsNaN`, `IsInf`, `Not`, `BitwiseNot`, `Binarizer`: definitions and rules.
#![allow(clippy::too_many_arguments)]
use crate::ops::util::prelude::*;

// The attributes, with their ONNX defaults (checked when the IR is built).
const DETECT_NEGATIVE: IntAttr = IntAttr::flag("detect_negative", true);
const DETECT_POSITIVE: IntAttr = IntAttr::flag("detect_positive", true);

/// The `Exp` op.
pub static EXP: OpDef = OpDef {
    name: "Exp",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    shape: Some(same_shape),
    constraints: Some(same_shape_constraints),
    analysis: Analysis::Rule(nonlinear),
    gradient: Gradient::Rule(exp_grad),
    kernel: Some(exp_kernel),
    ..OpDef::BASE
};

/// The `Log` op.
pub static LOG: OpDef = OpDef {
    name: "Log",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    shape: Some(same_shape),
    constraints: Some(same_shape_constraints),
    analysis: Analysis::Rule(nonlinear),
    gradient: Gradient::Rule(log_grad),
    kernel: Some(log_kernel),
    ..OpDef::BASE
};

/// The `Sqrt` op.
pub static SQRT: OpDef = OpDef {
    name: "Sqrt",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    shape: Some(same_shape),
    constraints: Some(same_shape_constraints),
    analysis: Analysis::Rule(sqrt_rule),
    gradient: Gradient::Rule(sqrt_grad),
    kernel: Some(sqrt_kernel),
    ..OpDef::BASE
};

/// The `Reciprocal` op.
pub static RECIPROCAL: OpDef = OpDef {
    name: "Reciprocal",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    shape: Some(same_shape),
    constraints: Some(same_shape_constraints),
    analysis: Analysis::Rule(reciprocal_rule),
    gradient: Gradient::Rule(reciprocal_grad),
    kernel: Some(reciprocal_kernel),
    ..OpDef::BASE
};

/// The `Erf` op.
pub static ERF: OpDef = OpDef {
    name: "Erf",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 9, until: None },
    shape: Some(same_shape),
    constraints: Some(same_shape_constraints),
    analysis: Analysis::Rule(nonlinear),
    gradient: Gradient::Rule(erf_grad),
    kernel: Some(erf_kernel),
    ..OpDef::BASE
};

/// The `Sin` op.
pub static SIN: OpDef = OpDef {
    name: "Sin",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 7, until: None },
    shape: Some(same_shape),
    analysis: Analysis::Rule(nonlinear),
    gradient: Gradient::Rule(sin_grad),
    kernel: Some(sin_kernel),
    ..OpDef::BASE
};

/// The `Cos` op.
pub static COS: OpDef = OpDef {
    name: "Cos",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 7, until: None },
    shape: Some(same_shape),
    analysis: Analysis::Rule(nonlinear),
    gradient: Gradient::Rule(cos_grad),
    kernel: Some(cos_kernel),
    ..OpDef::BASE
};

/// The `Tan` op.
pub static TAN: OpDef = OpDef {
    name: "Tan",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 7, until: None },
    shape: Some(same_shape),
    analysis: Analysis::Unknown("not written: a change reaching it is unknown"),
    gradient: Gradient::None("not written: an error on the gradient path"),
    ..OpDef::BASE
};

/// The `Asin` op.
pub static ASIN: OpDef = OpDef {
    name: "Asin",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 7, until: None },
    shape: Some(same_shape),
    analysis: Analysis::Unknown("not written: a change reaching it is unknown"),
    gradient: Gradient::None("not written: an error on the gradient path"),
    ..OpDef::BASE
};

/// The `Acos` op.
pub static ACOS: OpDef = OpDef {
    name: "Acos",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 7, until: None },
    shape: Some(same_shape),
    analysis: Analysis::Unknown("not written: a change reaching it is unknown"),
    gradient: Gradient::None("not written: an error on the gradient path"),
    ..OpDef::BASE
};

/// The `Atan` op.
pub static ATAN: OpDef = OpDef {
    name: "Atan",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 7, until: None },
    shape: Some(same_shape),
    analysis: Analysis::Unknown("not written: a change reaching it is unknown"),
    gradient: Gradient::None("not written: an error on the gradient path"),
    ..OpDef::BASE
};

/// The `Sinh` op.
pub static SINH: OpDef = OpDef {
    name: "Sinh",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 9, until: None },
    shape: Some(same_shape),
    analysis: Analysis::Unknown("not written: a change reaching it is unknown"),
    gradient: Gradient::None("not written: an error on the gradient path"),
    ..OpDef::BASE
};

/// The `Cosh` op.
pub static COSH: OpDef = OpDef {
    name: "Cosh",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 9, until: None },
    shape: Some(same_shape),
    analysis: Analysis::Unknown("not written: a change reaching it is unknown"),
    gradient: Gradient::None("not written: an error on the gradient path"),
    ..OpDef::BASE
};

/// The `Asinh` op.
pub static ASINH: OpDef = OpDef {
    name: "Asinh",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 9, until: None },
    shape: Some(same_shape),
    analysis: Analysis::Unknown("not written: a change reaching it is unknown"),
    gradient: Gradient::None("not written: an error on the gradient path"),
    ..OpDef::BASE
};

/// The `Acosh` op.
pub static ACOSH: OpDef = OpDef {
    name: "Acosh",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 9, until: None },
    shape: Some(same_shape),
    analysis: Analysis::Unknown("not written: a change reaching it is unknown"),
    gradient: Gradient::None("not written: an error on the gradient path"),
    ..OpDef::BASE
};

/// The `Atanh` op.
pub static ATANH: OpDef = OpDef {
    name: "Atanh",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 9, until: None },
    shape: Some(same_shape),
    analysis: Analysis::Unknown("not written: a change reaching it is unknown"),
    gradient: Gradient::None("not written: an error on the gradient path"),
    ..OpDef::BASE
};

/// The `Floor` op.
pub static FLOOR: OpDef = OpDef {
    name: "Floor",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    shape: Some(rounding_shape),
    analysis: Analysis::Rule(nonlinear),
    gradient: Gradient::Zero("piecewise constant"),
    kernel: Some(floor_kernel),
    ..OpDef::BASE
};

/// The `Ceil` op.
pub static CEIL: OpDef = OpDef {
    name: "Ceil",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    shape: Some(rounding_shape),
    analysis: Analysis::Rule(nonlinear),
    gradient: Gradient::Zero("piecewise constant"),
    kernel: Some(ceil_kernel),
    ..OpDef::BASE
};

/// The `Round` op.
pub static ROUND: OpDef = OpDef {
    name: "Round",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 11, until: None },
    shape: Some(rounding_shape),
    analysis: Analysis::Rule(nonlinear),
    gradient: Gradient::Zero("piecewise constant"),
    kernel: Some(round_kernel),
    ..OpDef::BASE
};

/// The `Sign` op.
pub static SIGN: OpDef = OpDef {
    name: "Sign",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 9, until: None },
    shape: Some(same_shape),
    analysis: Analysis::Rule(nonlinear),
    gradient: Gradient::Zero("piecewise constant"),
    kernel: Some(sign_kernel),
    ..OpDef::BASE
};

/// The `IsNaN` op.
pub static IS_NA_N: OpDef = OpDef {
    name: "IsNaN",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 9, until: None },
    shape: Some(same_shape_bool),
    analysis: Analysis::Rule(nonlinear),
    gradient: Gradient::None("not written: an error on the gradient path"),
    kernel: Some(is_nan_kernel),
    ..OpDef::BASE
};

/// The `IsInf` op.
pub static IS_INF: OpDef = OpDef {
    name: "IsInf",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 10, until: None },
    attrs: &[
        DETECT_NEGATIVE.spec,
        DETECT_POSITIVE.spec,
    ],
    shape: Some(same_shape_bool),
    analysis: Analysis::Rule(nonlinear),
    gradient: Gradient::None("not written: an error on the gradient path"),
    kernel: Some(is_inf_kernel),
    ..OpDef::BASE
};

/// The `Not` op.
pub static NOT: OpDef = OpDef {
    name: "Not",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    shape: Some(same_shape),
    analysis: Analysis::Rule(nonlinear),
    gradient: Gradient::Zero("boolean output"),
    kernel: Some(not_kernel),
    ..OpDef::BASE
};

/// The `BitwiseNot` op.
pub static BITWISE_NOT: OpDef = OpDef {
    name: "BitwiseNot",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 18, until: None },
    shape: Some(same_shape),
    analysis: Analysis::Unknown("not written: a change reaching it is unknown"),
    gradient: Gradient::None("not written: an error on the gradient path"),
    ..OpDef::BASE
};

pub(crate) fn sqrt_rule(c: &mut Ctx, n: &Node, e: &[Option<Affine>]) -> Vec<Flow> {
    power(c, n, e, 0.5)
}

pub(crate) fn reciprocal_rule(c: &mut Ctx, n: &Node, e: &[Option<Affine>]) -> Vec<Flow> {
    power(c, n, e, -1.0)
}

pub(crate) fn erf_grad(ad: &mut Ad, n: &Node, dy: &[Option<String>], _: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    let dy = dy0!(n, dy);
    let x = ad.name(n, 0);
    let x2 = ad.em.mul(&x, &x);
    let nx2 = ad.em.neg(&x2);
    let e = ad.em.op(&EXP, &[&nx2], vec![]);
    let d = ad.em.mul_scalar(&e, 2.0 / std::f64::consts::PI.sqrt());
    Ok(grads(n, vec![(0, ad.em.mul(&dy, &d))]))
}

pub(crate) fn sin_grad(ad: &mut Ad, n: &Node, dy: &[Option<String>], _: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    pointwise(ad, n, dy, |em, x, _| em.op(&COS, &[x], vec![]))
}

pub(crate) fn cos_grad(ad: &mut Ad, n: &Node, dy: &[Option<String>], _: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    pointwise(ad, n, dy, |em, x, _| {
        let s = em.op(&SIN, &[x], vec![]);
        em.neg(&s)
    })
}

pub(crate) fn sqrt_grad(ad: &mut Ad, n: &Node, dy: &[Option<String>], _: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    let dy = dy0!(n, dy);
    let y = ad.out(n, 0);
    let y2 = ad.em.mul_scalar(&y, 2.0);
    Ok(grads(n, vec![(0, ad.em.div(&dy, &y2))]))
}

pub(crate) fn exp_grad(ad: &mut Ad, n: &Node, dy: &[Option<String>], _: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    let dy = dy0!(n, dy);
    let y = ad.out(n, 0);
    Ok(grads(n, vec![(0, ad.em.mul(&dy, &y))]))
}

pub(crate) fn log_grad(ad: &mut Ad, n: &Node, dy: &[Option<String>], _: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    let dy = dy0!(n, dy);
    let x = ad.name(n, 0);
    Ok(grads(n, vec![(0, ad.em.div(&dy, &x))]))
}

pub(crate) fn reciprocal_grad(ad: &mut Ad, n: &Node, dy: &[Option<String>], _: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    let dy = dy0!(n, dy);
    let y = ad.out(n, 0);
    let y2 = ad.em.mul(&y, &y);
    let g = ad.em.mul(&dy, &y2);
    Ok(grads(n, vec![(0, ad.em.neg(&g))]))
}

/// Ceil, Floor and Round fold a known scalar; integers are their own rounding.
pub(crate) fn rounding_shape(g: &Graph, n: &Node) -> Vec<ShapeOut> {
    let scalar = scalar_in(g, n, 0).map(|x| {
        if n.is(&CEIL) {
            x.ceil()
        } else if n.is(&FLOOR) {
            x.floor()
        } else {
            x.round_ties_even()
        }
    });
    vec![(shape_of(g, n, 0), val(g, n, 0).and_then(|v| v.ints.clone()), scalar, first_dtype(g, n))]
}

fn exp_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    kern::typed(ctx, "exp(x0)", None)
}

fn log_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    kern::typed(ctx, "log(x0)", None)
}

fn sqrt_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    kern::typed(ctx, "sqrt(x0)", None)
}

fn reciprocal_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    kern::typed(ctx, "1.0 / x0", None)
}

fn erf_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    kern::typed(ctx, "erf_f(x0)", None)
}

fn sin_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    kern::typed(ctx, "sin(x0)", None)
}

fn cos_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    kern::typed(ctx, "cos(x0)", None)
}

fn floor_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    kern::typed(ctx, "floor(x0)", None)
}

fn ceil_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    kern::typed(ctx, "ceil(x0)", None)
}

fn round_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    // WGSL's round() rounds halves to even, as ONNX does
    kern::typed(ctx, "round(x0)", None)
}

fn sign_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    kern::typed(ctx, "sign(x0)", Some("sign(x0)"))
}

fn is_nan_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    kern::typed(ctx, "select(0u, 1u, is_nan_f(x0))", None)
}

fn is_inf_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    let neg = DETECT_NEGATIVE.on(ctx.node);
    let pos = DETECT_POSITIVE.on(ctx.node);
    kern::typed(ctx, &format!("select(0u, 1u, is_inf_f(x0) && ((x0 < 0.0 && {neg}) || (x0 > 0.0 && {pos})))"), None)
}

fn not_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    kern::elementwise(ctx, "1u - x0")
}
