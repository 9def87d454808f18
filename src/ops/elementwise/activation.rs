//! The `Relu`, `LeakyRelu`, `Sigmoid`, `HardSigmoid`, `HardSwish`, `Tanh`, `Elu`, `Selu`, `Celu`, `Softplus`, `Softsign`, `Mish`, `ThresholdedRelu`, `Shrink`, `Swish`: definitions and rules.
#![allow(clippy::too_many_arguments)]
use crate::ops::util::prelude::*;

// The attributes, with their ONNX defaults (checked when the IR is built).
const BETA: FloatAttr = FloatAttr::new("beta", 0.5);
const GAMMA: FloatAttr = FloatAttr::new("gamma", 1.050_701);
const BIAS: FloatAttr = FloatAttr::new("bias", 0.0);
const LAMBD: FloatAttr = FloatAttr::new("lambd", 0.5);
// `alpha` is each op's own, with its own default.
const LEAKY_ALPHA: FloatAttr = FloatAttr::new("alpha", 0.01);
const HARD_SIGMOID_ALPHA: FloatAttr = FloatAttr::new("alpha", 0.2);
const ELU_ALPHA: FloatAttr = FloatAttr::new("alpha", 1.0);
const SELU_ALPHA: FloatAttr = FloatAttr::new("alpha", 1.673_263_2);
const CELU_ALPHA: FloatAttr = FloatAttr::new("alpha", 1.0);
const THRESHOLDED_ALPHA: FloatAttr = FloatAttr::new("alpha", 1.0);
const SWISH_ALPHA: FloatAttr = FloatAttr::new("alpha", 1.0);

/// The `Relu` op.
pub static RELU: OpDef = OpDef {
    name: "Relu",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    shape: Some(relu_shape),
    constraints: Some(same_shape_constraints),
    analysis: Analysis::Rule(homogeneous),
    gradient: Gradient::Rule(relu_grad),
    kernel: Some(relu_kernel),
    ..OpDef::BASE
};

/// The `LeakyRelu` op.
pub static LEAKY_RELU: OpDef = OpDef {
    name: "LeakyRelu",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    attrs: &[
        LEAKY_ALPHA.spec,
    ],
    shape: Some(same_shape),
    constraints: Some(same_shape_constraints),
    analysis: Analysis::Rule(homogeneous),
    gradient: Gradient::Rule(leaky_relu_grad),
    kernel: Some(leaky_relu_kernel),
    ..OpDef::BASE
};

/// The `Sigmoid` op.
pub static SIGMOID: OpDef = OpDef {
    name: "Sigmoid",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    shape: Some(same_shape),
    constraints: Some(same_shape_constraints),
    analysis: Analysis::Rule(nonlinear),
    gradient: Gradient::Rule(sigmoid_grad),
    kernel: Some(sigmoid_kernel),
    ..OpDef::BASE
};

/// The `HardSigmoid` op.
pub static HARD_SIGMOID: OpDef = OpDef {
    name: "HardSigmoid",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    attrs: &[
        HARD_SIGMOID_ALPHA.spec,
        BETA.spec,
    ],
    shape: Some(same_shape),
    constraints: Some(same_shape_constraints),
    analysis: Analysis::Rule(nonlinear),
    gradient: Gradient::Rule(hard_sigmoid_grad),
    kernel: Some(hard_sigmoid_kernel),
    ..OpDef::BASE
};

/// The `HardSwish` op.
pub static HARD_SWISH: OpDef = OpDef {
    name: "HardSwish",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 14, until: None },
    shape: Some(same_shape),
    constraints: Some(same_shape_constraints),
    analysis: Analysis::Rule(nonlinear),
    gradient: Gradient::Rule(hard_swish_grad),
    kernel: Some(hard_swish_kernel),
    ..OpDef::BASE
};

/// The `Tanh` op.
pub static TANH: OpDef = OpDef {
    name: "Tanh",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    shape: Some(same_shape),
    constraints: Some(same_shape_constraints),
    analysis: Analysis::Rule(nonlinear),
    gradient: Gradient::Rule(tanh_grad),
    kernel: Some(tanh_kernel),
    ..OpDef::BASE
};

/// The `Elu` op.
pub static ELU: OpDef = OpDef {
    name: "Elu",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    attrs: &[
        ELU_ALPHA.spec,
    ],
    shape: Some(same_shape),
    constraints: Some(same_shape_constraints),
    analysis: Analysis::Rule(nonlinear),
    gradient: Gradient::Rule(elu_grad),
    kernel: Some(elu_kernel),
    ..OpDef::BASE
};

/// The `Selu` op.
pub static SELU: OpDef = OpDef {
    name: "Selu",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    attrs: &[
        SELU_ALPHA.spec,
        GAMMA.spec,
    ],
    shape: Some(same_shape),
    constraints: Some(same_shape_constraints),
    analysis: Analysis::Rule(nonlinear),
    gradient: Gradient::Rule(selu_grad),
    ..OpDef::BASE
};

/// The `Celu` op.
pub static CELU: OpDef = OpDef {
    name: "Celu",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 12, until: None },
    attrs: &[
        CELU_ALPHA.spec,
    ],
    shape: Some(same_shape),
    constraints: Some(same_shape_constraints),
    analysis: Analysis::Rule(nonlinear),
    gradient: Gradient::Rule(celu_grad),
    ..OpDef::BASE
};

/// The `Softplus` op.
pub static SOFTPLUS: OpDef = OpDef {
    name: "Softplus",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    shape: Some(same_shape),
    constraints: Some(same_shape_constraints),
    analysis: Analysis::Rule(nonlinear),
    gradient: Gradient::Rule(softplus_grad),
    kernel: Some(softplus_kernel),
    ..OpDef::BASE
};

/// The `Softsign` op.
pub static SOFTSIGN: OpDef = OpDef {
    name: "Softsign",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    shape: Some(same_shape),
    constraints: Some(same_shape_constraints),
    analysis: Analysis::Rule(nonlinear),
    gradient: Gradient::Rule(softsign_grad),
    ..OpDef::BASE
};

/// The `Mish` op.
pub static MISH: OpDef = OpDef {
    name: "Mish",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 18, until: None },
    shape: Some(same_shape),
    constraints: Some(same_shape_constraints),
    analysis: Analysis::Rule(nonlinear),
    gradient: Gradient::Rule(mish_grad),
    ..OpDef::BASE
};

/// The `ThresholdedRelu` op.
pub static THRESHOLDED_RELU: OpDef = OpDef {
    name: "ThresholdedRelu",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 10, until: None },
    attrs: &[
        THRESHOLDED_ALPHA.spec,
    ],
    shape: Some(same_shape),
    analysis: Analysis::Rule(nonlinear),
    gradient: Gradient::Rule(thresholded_relu_grad),
    ..OpDef::BASE
};

/// The `Shrink` op.
pub static SHRINK: OpDef = OpDef {
    name: "Shrink",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 9, until: None },
    attrs: &[
        BIAS.spec,
        LAMBD.spec,
    ],
    shape: Some(same_shape),
    analysis: Analysis::Rule(nonlinear),
    gradient: Gradient::None("not written: an error on the gradient path"),
    ..OpDef::BASE
};

/// The `Swish` op.
pub static SWISH: OpDef = OpDef {
    name: "Swish",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 24, until: None },
    attrs: &[
        SWISH_ALPHA.spec,
    ],
    shape: Some(same_shape),
    analysis: Analysis::Unknown("not written: a change reaching it is unknown"),
    gradient: Gradient::None("not written: an error on the gradient path"),
    kernel: Some(swish_kernel),
    ..OpDef::BASE
};

pub(crate) fn relu_grad(ad: &mut Ad, n: &Node, dy: &[Option<String>], _: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    let dy = dy0!(n, dy);
    let x = ad.name(n, 0);
    let z = ad.zero();
    let pos = ad.em.op(&GREATER, &[&x, &z], vec![]);
    Ok(grads(n, vec![(0, ad.em.where_(&pos, &dy, &z))]))
}

pub(crate) fn leaky_relu_grad(ad: &mut Ad, n: &Node, dy: &[Option<String>], _: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    let dy = dy0!(n, dy);
    let x = ad.name(n, 0);
    let z = ad.zero();
    let pos = ad.em.op(&GREATER, &[&x, &z], vec![]);
    let neg = ad.em.mul_scalar(&dy, LEAKY_ALPHA.get(n) as f64);
    Ok(grads(n, vec![(0, ad.em.where_(&pos, &dy, &neg))]))
}

pub(crate) fn sigmoid_grad(ad: &mut Ad, n: &Node, dy: &[Option<String>], _: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    let dy = dy0!(n, dy);
    let y = ad.out(n, 0);
    let one = ad.em.scalar(1.0);
    let om = ad.em.sub(&one, &y);
    let d = ad.em.mul(&y, &om);
    Ok(grads(n, vec![(0, ad.em.mul(&dy, &d))]))
}

pub(crate) fn hard_sigmoid_grad(ad: &mut Ad, n: &Node, dy: &[Option<String>], _: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    let dy = dy0!(n, dy);
    let (alpha, beta) = (HARD_SIGMOID_ALPHA.get(n) as f64, BETA.get(n) as f64);
    let x = ad.name(n, 0);
    let ax = ad.em.mul_scalar(&x, alpha);
    let b = ad.em.scalar(beta);
    let z = ad.em.add(&ax, &b);
    let (zero, one) = (ad.zero(), ad.em.scalar(1.0));
    let above = ad.em.op(&GREATER, &[&z, &zero], vec![]);
    let below = ad.em.op(&LESS, &[&z, &one], vec![]);
    let inside = ad.em.op(&AND, &[&above, &below], vec![]);
    let scaled = ad.em.mul_scalar(&dy, alpha);
    Ok(grads(n, vec![(0, ad.em.where_(&inside, &scaled, &zero))]))
}

pub(crate) fn hard_swish_grad(ad: &mut Ad, n: &Node, dy: &[Option<String>], _: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    // y = x·clip_grad(x/6 + 1/2, 0, 1): 0 below -3, 1 above 3, x/3 + 1/2 between.
    let dy = dy0!(n, dy);
    let x = ad.name(n, 0);
    let (m3, p3) = (ad.em.scalar(-3.0), ad.em.scalar(3.0));
    let lo = ad.em.op(&LESS, &[&x, &m3], vec![]);
    let hi = ad.em.op(&GREATER, &[&x, &p3], vec![]);
    let x3 = ad.em.mul_scalar(&x, 1.0 / 3.0);
    let half = ad.em.scalar(0.5);
    let mid = ad.em.add(&x3, &half);
    let one = ad.em.scalar(1.0);
    let zero = ad.zero();
    let upper = ad.em.where_(&hi, &one, &mid);
    let d = ad.em.where_(&lo, &zero, &upper);
    Ok(grads(n, vec![(0, ad.em.mul(&dy, &d))]))
}

pub(crate) fn tanh_grad(ad: &mut Ad, n: &Node, dy: &[Option<String>], _: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    let dy = dy0!(n, dy);
    let y = ad.out(n, 0);
    let y2 = ad.em.mul(&y, &y);
    let one = ad.em.scalar(1.0);
    let d = ad.em.sub(&one, &y2);
    Ok(grads(n, vec![(0, ad.em.mul(&dy, &d))]))
}

pub(crate) fn elu_grad(ad: &mut Ad, n: &Node, dy: &[Option<String>], _: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    // y = alpha (e^x - 1) below 0: y' = y + alpha.
    let alpha = ELU_ALPHA.get(n) as f64;
    pointwise(ad, n, dy, |em, x, y| {
        let a = em.scalar(alpha);
        let neg = em.add(y, &a);
        positive_or(em, x, &neg)
    })
}

pub(crate) fn selu_grad(ad: &mut Ad, n: &Node, dy: &[Option<String>], _: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    // y = gamma x above 0, gamma alpha (e^x - 1) below: y' = gamma, or y + gamma alpha.
    let alpha = SELU_ALPHA.get(n) as f64;
    let gamma = GAMMA.get(n) as f64;
    pointwise(ad, n, dy, |em, x, y| {
        let ga = em.scalar(gamma * alpha);
        let neg = em.add(y, &ga);
        let z = em.scalar(0.0);
        let pos = em.op(&GREATER, &[x, &z], vec![]);
        let g = em.scalar(gamma);
        em.where_(&pos, &g, &neg)
    })
}

pub(crate) fn celu_grad(ad: &mut Ad, n: &Node, dy: &[Option<String>], _: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    // y = alpha (e^(x/alpha) - 1) below 0: y' = e^(x/alpha).
    let alpha = CELU_ALPHA.get(n) as f64;
    pointwise(ad, n, dy, |em, x, _| {
        let xa = em.mul_scalar(x, 1.0 / alpha);
        let e = em.op(&EXP, &[&xa], vec![]);
        positive_or(em, x, &e)
    })
}

pub(crate) fn softplus_grad(ad: &mut Ad, n: &Node, dy: &[Option<String>], _: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    pointwise(ad, n, dy, |em, x, _| em.op(&SIGMOID, &[x], vec![]))
}

pub(crate) fn softsign_grad(ad: &mut Ad, n: &Node, dy: &[Option<String>], _: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    // y' = 1 / (1 + |x|)^2
    pointwise(ad, n, dy, |em, x, _| {
        let a = em.op(&ABS, &[x], vec![]);
        let one = em.scalar(1.0);
        let d = em.add(&a, &one);
        let d2 = em.mul(&d, &d);
        em.op(&RECIPROCAL, &[&d2], vec![])
    })
}

pub(crate) fn mish_grad(ad: &mut Ad, n: &Node, dy: &[Option<String>], _: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    // y = x tanh_grad(softplus_grad(x)): y' = t + x sigmoid_grad(x) (1 - t^2), t = tanh_grad(softplus_grad(x)).
    pointwise(ad, n, dy, |em, x, _| {
        let sp = em.op(&SOFTPLUS, &[x], vec![]);
        let t = em.op(&TANH, &[&sp], vec![]);
        let t2 = em.mul(&t, &t);
        let one = em.scalar(1.0);
        let omt = em.sub(&one, &t2);
        let sg = em.op(&SIGMOID, &[x], vec![]);
        let xs = em.mul(x, &sg);
        let r = em.mul(&xs, &omt);
        em.add(&t, &r)
    })
}

pub(crate) fn thresholded_relu_grad(ad: &mut Ad, n: &Node, dy: &[Option<String>], _: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    let alpha = THRESHOLDED_ALPHA.get(n) as f64;
    pointwise(ad, n, dy, |em, x, _| {
        let a = em.scalar(alpha);
        let above = em.op(&GREATER, &[x, &a], vec![]);
        em.cast(&above, em.float)
    })
}

/// Relu folds a known scalar (the Range function's trip count is `Relu(Ceil(...))`).
pub(crate) fn relu_shape(g: &Graph, n: &Node) -> Vec<ShapeOut> {
    let mut out = same(g, n);
    if let Some(o) = out.first_mut() {
        o.2 = scalar_in(g, n, 0).map(|x| x.max(0.0));
    }
    out
}

fn relu_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    kern::typed(ctx, "max(x0, 0.0)", Some("max(x0, 0)"))
}

fn leaky_relu_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    let a = kern::f32_literal(LEAKY_ALPHA.get(ctx.node));
    kern::typed(ctx, &format!("select({a} * x0, x0, x0 >= 0.0)"), None)
}

fn sigmoid_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    kern::typed(ctx, "1.0 / (1.0 + exp(-x0))", None)
}

fn hard_sigmoid_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    let a = kern::f32_literal(HARD_SIGMOID_ALPHA.get(ctx.node));
    let b = kern::f32_literal(BETA.get(ctx.node));
    kern::typed(ctx, &format!("clamp({a} * x0 + {b}, 0.0, 1.0)"), None)
}

fn hard_swish_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    kern::typed(ctx, "x0 * clamp(x0 * (1.0 / 6.0) + 0.5, 0.0, 1.0)", None)
}

fn tanh_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    // tanh(x) = 1 - 2 / (exp(2x) + 1): finite for every x, unlike some tanh() builtins on large inputs
    kern::typed(ctx, "select(1.0 - 2.0 / (exp(2.0 * x0) + 1.0), -1.0 + 2.0 / (exp(-2.0 * x0) + 1.0), x0 < 0.0)", None)
}

fn elu_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    let a = kern::f32_literal(ELU_ALPHA.get(ctx.node));
    kern::typed(ctx, &format!("select({a} * (exp(x0) - 1.0), x0, x0 >= 0.0)"), None)
}

fn softplus_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    kern::typed(ctx, "max(x0, 0.0) + log(1.0 + exp(-abs(x0)))", None)
}

fn swish_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    let a = kern::f32_literal(SWISH_ALPHA.get(ctx.node));
    kern::typed(ctx, &format!("x0 / (1.0 + exp(-{a} * x0))"), None)
}
