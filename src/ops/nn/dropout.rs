//! The `Dropout`: definitions and rules.
#![allow(clippy::too_many_arguments)]
use crate::ops::util::prelude::*;

// The attributes, with their ONNX defaults (checked when the IR is built).
const RATIO: FloatAttr = FloatAttr::new("ratio", 0.5);
/// Dropout's own seed, fixing its masks (absent: the run's seed).
pub(crate) const DROPOUT_SEED: OptIntAttr = OptIntAttr::new("seed", AttrCheck::Any);

/// The `Dropout` op.
pub static DROPOUT: OpDef = OpDef {
    name: "Dropout",
    module: module_path!(),
    inputs: Arity::range(1, 3),
    outputs: Arity::range(1, 2),
    opsets: Opsets { since: 1, until: None },
    attrs: &[
        RATIO.spec,
        DROPOUT_SEED.spec,
    ],
    shape: Some(dropout_shape),
    constraints: Some(same_shape_constraints),
    random: true,
    analysis: Analysis::Rule(identity),
    arg_slots: ArgSlots::From(1),
    gradient: Gradient::Rule(dropout_grad),
    kernel: Some(dropout_kernel),
    ..OpDef::BASE
};

pub(crate) fn dropout_grad(ad: &mut Ad, n: &Node, dy: &[Option<String>], _: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    let dy = dy0!(n, dy);
    if !crate::rewrite::lower::dropout_training(ad.g, n)? {
        return Ok(grads(n, vec![(0, dy)]));
    }
    let ratio = crate::rewrite::lower::dropout_ratio(ad.g, n)?;
    let mask = n.output(1).map(|v| ad.g.values[v].name.clone()).ok_or_else(|| Ad::err(n, "the mask output is missing"))?;
    let m = ad.em.cast(&mask, ad.em.float);
    let g = ad.em.mul(&dy, &m);
    Ok(grads(n, vec![(0, ad.em.mul_scalar(&g, 1.0 / (1.0 - ratio)))]))
}

pub(crate) fn dropout_shape(g: &Graph, n: &Node) -> Vec<ShapeOut> {
    let s = shape_of(g, n, 0);
    vec![(s.clone(), None, None, first_dtype(g, n)), (s, None, None, Some(DType::Bool))]
}

/// A scalar argument: known to the host (baked into the kernel) or read on
/// the device.
enum Arg {
    Host(f64),
    Device,
}

fn scalar_arg(ctx: &KernelCtx, k: usize, default: f64) -> Result<Arg, String> {
    if !ctx.has_input(k) {
        return Ok(Arg::Host(default));
    }
    if ctx.input(k)?.numel() != 1 {
        return Err(format!("input {k} has shape {:?}; a scalar was expected", ctx.input(k)?.shape));
    }
    Ok(match ctx.host.get(k).and_then(Option::as_ref) {
        Some(_) => Arg::Host(ctx.host_scalar(k)?),
        None => Arg::Device,
    })
}

/// Dropout. In training mode the mask keeps an element when its uniform draw
/// is at least the ratio (P = 1 - ratio) and the output is `x * mask / (1 -
/// ratio)`; in inference mode (no `training_mode`, or false, or ratio 0) the
/// output is the input and the mask all true. The ratio and the mode may be
/// computed on the device: the kernel then reads them. Opsets before 12
/// have no `training_mode`: inference, as the rewrite reads them.
fn dropout_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    let x = ctx.input(0)?;
    let y = ctx.output(0)?;
    if x.elem != Elem::F32 || y.elem != Elem::F32 {
        return Err(format!("the data is {:?}; the device computes float32", x.elem));
    }
    let with_mask = ctx.outputs.get(1).is_some_and(Option::is_some);
    if with_mask && ctx.output(1)?.elem != Elem::Bool {
        return Err("the mask output must be bool".into());
    }
    let n = x.numel();
    let ratio = if ctx.has_input(1) { scalar_arg(ctx, 1, 0.5)? } else { Arg::Host(f64::from(RATIO.get(ctx.node))) };
    let training = scalar_arg(ctx, 2, 0.0)?;
    if let Arg::Host(r) = ratio {
        if !(0.0..=1.0).contains(&r) {
            return Err(format!("the ratio {r} is outside [0, 1]"));
        }
    }
    let inference = matches!(training, Arg::Host(t) if t == 0.0) || matches!(ratio, Arg::Host(r) if r == 0.0);
    if inference {
        // The output is the input itself; only the mask (all true) is written.
        let mut low = Lowered::alias(0);
        if with_mask {
            let wgsl = format!("{}{}", kern::bindings(&[("mask", Elem::Bool)]), kern::elementwise_main(n, "    mask[i] = 1u;"));
            low.launches.push(kern::Launch { label: kern::label(ctx.node, "mask"), wgsl, binds: vec![kern::Bind::Output(1)], groups: kern::groups_for(n, &ctx.limits) });
        }
        return Ok(low);
    }
    let mut decls = vec![("x", Elem::F32, kern::Bind::Input(0))];
    let mut pre = String::new();
    match ratio {
        Arg::Host(r) => {
            pre.push_str(&format!("    let ratio = {};\n    let scale = {};", kern::f32_literal(r as f32), kern::f32_literal((1.0 / (1.0 - r)) as f32)));
        }
        Arg::Device => {
            decls.push(("ratio_in", Elem::F32, kern::Bind::Input(1)));
            pre.push_str("    let ratio = ratio_in[0];\n    let scale = 1.0 / (1.0 - ratio);");
        }
    }
    // A device-side mode: inference keeps every element, unscaled.
    let mut keep = "philox_uniform(b) >= ratio".to_string();
    let mut scale = "scale";
    if let Arg::Device = training {
        decls.push(("training_in", Elem::Bool, kern::Bind::Input(2)));
        pre.push_str("\n    let training = training_in[0] != 0u;\n    let factor = select(1.0, scale, training);");
        keep = format!("!training || {keep}");
        scale = "factor";
    }
    decls.push(("y", Elem::F32, kern::Bind::Output(0)));
    if with_mask {
        decls.push(("mask", Elem::Bool, kern::Bind::Output(1)));
    }
    let mut body = format!("        let keep = {keep};\n        y[i] = select(0.0, x[i] * {scale}, keep);");
    if with_mask {
        body.push_str("\n        mask[i] = select(0u, 1u, keep);");
    }
    let launch = crate::ops::random::philox::draw_launch(ctx, &decls, n, &pre, &body, false)?;
    Ok(Lowered { launches: vec![launch], in_place: vec![0], ..Default::default() })
}

#[cfg(all(test, feature = "gpu"))]
mod tests {
    use crate::ir::DType;
    use crate::ops::random::philox;
    use crate::ops::util::device_test::{executor, gpu, graph, node, tensor};
    use crate::ops::DROPOUT;

    const N: usize = 100_000;

    fn input() -> Vec<f32> {
        (0..N).map(|i| (i % 7) as f32 - 2.5).collect()
    }

    /// The mask the kernel must draw: element i keeps when the uniform of its
    /// Philox word is at least the ratio.
    fn expected_mask(seed: u64, step: u32, stream: u32, ratio: f32) -> Vec<bool> {
        (0..N)
            .map(|i| {
                let words = philox::philox4x32_10(philox::counter((i / 4) as u32, step, stream), [seed as u32, (seed >> 32) as u32]);
                philox::uniform(words[i % 4]) >= ratio
            })
            .collect()
    }

    /// The mask's mean is within five binomial standard deviations of 1 - ratio.
    fn assert_rate(mask: &[f32], ratio: f64) {
        let p = 1.0 - ratio;
        let mean = mask.iter().map(|&m| f64::from(m)).sum::<f64>() / mask.len() as f64;
        let tol = 5.0 * (p * (1.0 - p) / mask.len() as f64).sqrt();
        assert!((mean - p).abs() <= tol, "kept {mean}, expected {p} within {tol}");
    }

    #[test]
    fn training_mask_is_philox_and_scaling_is_exact() {
        let gpu = gpu();
        let ratio = 0.3f32;
        let g = graph(
            22,
            vec![node(&DROPOUT, &["x", "r", "t"], &["y", "mask"], vec![])],
            &[("x", DType::F32, &[N])],
            vec![("r", tensor(DType::F32, &[], &[f64::from(ratio)])), ("t", tensor(DType::Bool, &[], &[1.0]))],
            &["y", "mask"],
        );
        let seed = 0x1234_5678_9abc_def0;
        let mut exec = executor(&gpu, g, None, seed);
        let stream = exec.program().steps[0].node as u32;
        let x = input();
        exec.write_f32("x", &x).unwrap();
        let scale = (1.0 / (1.0 - f64::from(ratio))) as f32;
        let mut masks = Vec::new();
        for step in [5u32, 6, 5] {
            exec.set_step(step);
            exec.run().unwrap();
            let y = exec.read_f32("y").unwrap();
            let mask = exec.read_f32("mask").unwrap();
            let want = expected_mask(seed, step, stream, ratio);
            for i in 0..N {
                assert_eq!(mask[i] == 1.0, want[i], "step {step}: mask {i}");
                let yw = if want[i] { x[i] * scale } else { 0.0 };
                assert_eq!(y[i].to_bits(), yw.to_bits(), "step {step}: output {i}");
            }
            assert_rate(&mask, f64::from(ratio));
            masks.push(mask);
        }
        assert_eq!(masks[0], masks[2], "the same seed and step draw the same mask");
        assert_ne!(masks[0], masks[1], "another step draws another mask");
    }

    /// Ratio and mode computed on the device: the kernel reads them.
    #[test]
    fn device_ratio_and_mode() {
        let gpu = gpu();
        let g = graph(22, vec![node(&DROPOUT, &["x", "r", "t"], &["y", "mask"], vec![])], &[("x", DType::F32, &[N]), ("r", DType::F32, &[]), ("t", DType::Bool, &[])], vec![], &["y", "mask"]);
        let mut exec = executor(&gpu, g, None, 7);
        let x = input();
        exec.write_f32("x", &x).unwrap();
        exec.write_f32("r", &[0.75]).unwrap();
        exec.write_i64("t", &[1]).unwrap();
        exec.run().unwrap();
        let (y, mask) = (exec.read_f32("y").unwrap(), exec.read_f32("mask").unwrap());
        assert_rate(&mask, 0.75);
        for i in 0..N {
            assert_eq!(y[i], if mask[i] == 1.0 { x[i] * 4.0 } else { 0.0 }, "output {i}");
        }
        exec.write_i64("t", &[0]).unwrap();
        exec.run().unwrap();
        assert_eq!(exec.read_f32("y").unwrap(), x, "inference mode is the identity");
        assert!(exec.read_f32("mask").unwrap().iter().all(|&m| m == 1.0), "inference mode keeps everything");
    }

    /// Without training_mode: the output is the input's storage, the mask all true.
    #[test]
    fn inference_aliases_the_input() {
        let gpu = gpu();
        let g = graph(22, vec![node(&DROPOUT, &["x", "r"], &["y", "mask"], vec![])], &[("x", DType::F32, &[N])], vec![("r", tensor(DType::F32, &[], &[0.5]))], &["mask"]);
        let mut exec = executor(&gpu, g, None, 7);
        assert_eq!(exec.program().steps.len(), 1, "only the mask is written");
        exec.write_f32("x", &input()).unwrap();
        exec.run().unwrap();
        assert!(exec.read_f32("mask").unwrap().iter().all(|&m| m == 1.0));
    }
}
