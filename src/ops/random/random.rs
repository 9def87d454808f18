//! The `RandomUniform`, `RandomNormal`, `RandomUniformLike`, `RandomNormalLike`, `Bernoulli`, `Multinomial`: definitions and rules.
#![allow(clippy::too_many_arguments)]
use super::philox;
use crate::ops::util::prelude::*;

// The attributes, with their ONNX defaults (checked when the IR is built).
const HIGH: FloatAttr = FloatAttr::new("high", 1.0);
const LOW: FloatAttr = FloatAttr::new("low", 0.0);
/// The ops' own seed, fixing their draws (absent: the run's seed).
pub(crate) const RANDOM_SEED: OptFloatAttr = OptFloatAttr::new("seed");
const DRAW_SHAPE: IntsAttr = IntsAttr::required("shape", AttrCheck::AtLeast(0));
/// RandomUniform's and RandomNormal's element type.
const DTYPE: IntAttr = IntAttr::new("dtype", AttrCheck::Any, 1);
/// The `*Like` ops' and Bernoulli's element type (absent: the input's).
const LIKE_DTYPE: OptIntAttr = OptIntAttr::new("dtype", AttrCheck::Any);
const MULTINOMIAL_DTYPE: IntAttr = IntAttr::new("dtype", AttrCheck::Any, 6);
const MEAN: FloatAttr = FloatAttr::new("mean", 0.0);
const SCALE: FloatAttr = FloatAttr::new("scale", 1.0);
const SAMPLE_SIZE: IntAttr = IntAttr::new("sample_size", AttrCheck::AtLeast(1), 1);

/// The `RandomUniform` op.
pub static RANDOM_UNIFORM: OpDef = OpDef {
    name: "RandomUniform",
    module: module_path!(),
    inputs: Arity::range(0, 0),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    attrs: &[
        DTYPE.spec,
        HIGH.spec,
        LOW.spec,
        RANDOM_SEED.spec,
        DRAW_SHAPE.spec,
    ],
    shape: Some(random_shape),
    random: true,
    analysis: Analysis::Rule(random_draw_rule),
    gradient: Gradient::None("not written: an error on the gradient path"),
    kernel: Some(random_uniform_kernel),
    ..OpDef::BASE
};

/// The `RandomNormal` op.
pub static RANDOM_NORMAL: OpDef = OpDef {
    name: "RandomNormal",
    module: module_path!(),
    inputs: Arity::range(0, 0),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    attrs: &[
        DTYPE.spec,
        MEAN.spec,
        SCALE.spec,
        RANDOM_SEED.spec,
        DRAW_SHAPE.spec,
    ],
    shape: Some(random_shape),
    random: true,
    analysis: Analysis::Rule(random_draw_rule),
    gradient: Gradient::None("not written: an error on the gradient path"),
    kernel: Some(random_normal_kernel),
    ..OpDef::BASE
};

/// The `RandomUniformLike` op.
pub static RANDOM_UNIFORM_LIKE: OpDef = OpDef {
    name: "RandomUniformLike",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    attrs: &[
        LIKE_DTYPE.spec,
        HIGH.spec,
        LOW.spec,
        RANDOM_SEED.spec,
    ],
    shape: Some(random_like_shape),
    constraints: Some(same_shape_constraints),
    random: true,
    analysis: Analysis::Rule(random_draw_rule),
    gradient: Gradient::None("not written: an error on the gradient path"),
    kernel: Some(random_uniform_kernel),
    ..OpDef::BASE
};

/// The `RandomNormalLike` op.
pub static RANDOM_NORMAL_LIKE: OpDef = OpDef {
    name: "RandomNormalLike",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    attrs: &[
        LIKE_DTYPE.spec,
        MEAN.spec,
        SCALE.spec,
        RANDOM_SEED.spec,
    ],
    shape: Some(random_like_shape),
    constraints: Some(same_shape_constraints),
    random: true,
    analysis: Analysis::Rule(random_draw_rule),
    gradient: Gradient::None("not written: an error on the gradient path"),
    kernel: Some(random_normal_kernel),
    ..OpDef::BASE
};

/// The `Bernoulli` op.
pub static BERNOULLI: OpDef = OpDef {
    name: "Bernoulli",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 15, until: None },
    attrs: &[
        LIKE_DTYPE.spec,
        RANDOM_SEED.spec,
    ],
    shape: Some(random_like_shape),
    constraints: Some(same_shape_constraints),
    random: true,
    analysis: Analysis::Rule(nonlinear),
    gradient: Gradient::None("not written: an error on the gradient path"),
    kernel: Some(bernoulli_kernel),
    ..OpDef::BASE
};

/// The `Multinomial` op.
pub static MULTINOMIAL: OpDef = OpDef {
    name: "Multinomial",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 7, until: None },
    attrs: &[
        MULTINOMIAL_DTYPE.spec,
        SAMPLE_SIZE.spec,
        RANDOM_SEED.spec,
    ],
    shape: Some(multinomial_shape),
    random: true,
    analysis: Analysis::Rule(nonlinear),
    gradient: Gradient::None("not written: an error on the gradient path"),
    ..OpDef::BASE
};

/// RandomUniform(Like), RandomNormal(Like): the draw reads only the input's
/// shape and element type (and the attributes), which no rescaling or
/// perturbation of a parameter alters. For each fixed state of the generator the
/// output is therefore the same tensor before and after the change: unchanged.
/// (Bernoulli and Multinomial read their input's values: `nonlinear`.)
pub(crate) fn random_draw_rule(_: &mut Ctx, n: &Node, _: &[Option<Affine>]) -> Vec<Flow> {
    vec![Flow::Same; n.outputs.len().max(1)]
}

pub(crate) fn random_shape(_g: &Graph, n: &Node) -> Vec<ShapeOut> {
    let s = DRAW_SHAPE.get(n).filter(|s| s.iter().all(|&d| d >= 0)).map(|s| s.iter().map(|&d| Dim::Known(d)).collect());
    vec![(s, None, None, DTYPE.dtype(n))]
}

pub(crate) fn random_like_shape(g: &Graph, n: &Node) -> Vec<ShapeOut> {
    let dtype = LIKE_DTYPE.dtype(n).or(first_dtype(g, n));
    vec![(shape_of(g, n, 0), None, None, dtype)]
}

pub(crate) fn multinomial_shape(g: &Graph, n: &Node) -> Vec<ShapeOut> {
    // [batch, classes] -> [batch, sample_size]
    let s = shape_of(g, n, 0).filter(|s| s.len() == 2).map(|s| vec![s[0], Dim::Known(SAMPLE_SIZE.get(n))]);
    vec![(s, None, None, MULTINOMIAL_DTYPE.dtype(n))]
}

/// RandomUniform(Like): `low + (high - low) * u`, u uniform in [0, 1).
fn random_uniform_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    let out = float_output(ctx)?;
    let low = LOW.get(ctx.node);
    let high = HIGH.get(ctx.node);
    let body = format!("        out[i] = {} + {} * philox_uniform(b);", kern::f32_literal(low), kern::f32_literal(high - low));
    Ok(Lowered::one(philox::draw_launch(ctx, &[("out", Elem::F32, kern::Bind::Output(0))], out.numel(), "", &body, false)?))
}

/// RandomNormal(Like): `mean + scale * g`, g standard normal (Box-Muller).
fn random_normal_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    let out = float_output(ctx)?;
    let mean = MEAN.get(ctx.node);
    let scale = SCALE.get(ctx.node);
    let body = format!("        out[i] = {} + {} * g;", kern::f32_literal(mean), kern::f32_literal(scale));
    Ok(Lowered::one(philox::draw_launch(ctx, &[("out", Elem::F32, kern::Bind::Output(0))], out.numel(), "", &body, true)?))
}

/// The output of a draw, which the device computes in float32 only.
fn float_output<'a>(ctx: &'a KernelCtx) -> Result<&'a kern::TensorInfo, String> {
    let out = ctx.output(0)?;
    if out.elem != Elem::F32 {
        return Err(format!("the output is {:?}; the device draws float32", out.elem));
    }
    Ok(out)
}

/// Bernoulli: 1 where `u < p`, so P(1) = p.
fn bernoulli_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    let p = ctx.input(0)?;
    let out = ctx.output(0)?;
    if p.elem != Elem::F32 {
        return Err(format!("the probabilities are {:?}; float32 was expected", p.elem));
    }
    if p.shape != out.shape {
        return Err(format!("the output shape {:?} differs from the input's {:?}", out.shape, p.shape));
    }
    let one = kern::convert(Elem::Bool, out.elem, "select(0u, 1u, philox_uniform(b) < p[i])");
    let body = format!("        out[i] = {one};");
    let decls = [("p", Elem::F32, kern::Bind::Input(0)), ("out", out.elem, kern::Bind::Output(0))];
    Ok(Lowered::one(philox::draw_launch(ctx, &decls, out.numel(), "", &body, false)?))
}

#[cfg(all(test, feature = "gpu"))]
mod tests {
    use crate::ir::{AttrValue, DType};
    use crate::ops::util::device_test::{executor, gpu, graph, node, tensor};
    use crate::ops::{BERNOULLI, RANDOM_NORMAL, RANDOM_NORMAL_LIKE, RANDOM_UNIFORM_LIKE};

    const N: usize = 40_000;

    fn moments(v: &[f32]) -> (f64, f64) {
        let n = v.len() as f64;
        let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
        let var = v.iter().map(|&x| (f64::from(x) - mean).powi(2)).sum::<f64>() / n;
        (mean, var)
    }

    /// Uniform and normal draws have their distribution's moments (within
    /// five standard errors), two nodes draw different streams, and a node's
    /// `seed` attribute fixes its draws whatever the run's seed.
    #[test]
    fn draws_have_their_moments_and_streams() {
        let gpu = gpu();
        let nodes = vec![
            node(&RANDOM_UNIFORM_LIKE, &["x"], &["u"], vec![("low", AttrValue::Float(-1.0)), ("high", AttrValue::Float(3.0))]),
            node(&RANDOM_NORMAL_LIKE, &["x"], &["g"], vec![("mean", AttrValue::Float(2.0)), ("scale", AttrValue::Float(0.5))]),
            node(&RANDOM_NORMAL, &[], &["h"], vec![("shape", AttrValue::Ints(vec![N as i64])), ("seed", AttrValue::Float(3.0))]),
            node(&BERNOULLI, &["p"], &["b"], vec![("dtype", AttrValue::Int(1))]),
        ];
        let p = tensor(DType::F32, &[N], &vec![0.25; N]);
        let run = |seed: u64| {
            let g = graph(22, nodes.clone(), &[("x", DType::F32, &[N])], vec![("p", p.clone())], &["u", "g", "h", "b"]);
            let mut exec = executor(&gpu, g, None, seed);
            exec.write_f32("x", &vec![0.0; N]).unwrap();
            exec.run().unwrap();
            ["u", "g", "h", "b"].map(|n| exec.read_f32(n).unwrap())
        };
        let [u, g, h, b] = run(1);
        let se = |var: f64| 5.0 * (var / N as f64).sqrt();
        let (m, v) = moments(&u);
        assert!((m - 1.0).abs() < se(16.0 / 12.0) && (v - 16.0 / 12.0).abs() < 0.05, "uniform mean {m} var {v}");
        assert!(u.iter().all(|&x| (-1.0..3.0).contains(&x)));
        let (m, v) = moments(&g);
        assert!((m - 2.0).abs() < se(0.25) && (v - 0.25).abs() < 0.01, "normal mean {m} var {v}");
        let (m, v) = moments(&h);
        assert!(m.abs() < se(1.0) && (v - 1.0).abs() < 0.04, "standard normal mean {m} var {v}");
        let (m, _) = moments(&b);
        assert!((m - 0.25).abs() < se(0.25 * 0.75), "bernoulli mean {m}");
        let [u2, _, h2, _] = run(2);
        assert_ne!(u, u2, "the run's seed changes the draws");
        assert_eq!(h, h2, "a seed attribute fixes the draws");
    }
}
