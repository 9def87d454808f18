//! The `Range`: definitions and rules.
#![allow(clippy::too_many_arguments)]
use crate::ops::util::prelude::*;

/// The `Range` op.
pub static RANGE: OpDef = OpDef {
    name: "Range",
    module: module_path!(),
    inputs: Arity::range(3, 3),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 11, until: None },
    shape: Some(range_shape),
    analysis: Analysis::Unknown("not written: a change reaching it is unknown"),
    arg_slots: ArgSlots::All,
    gradient: Gradient::Zero("no floating-point input reaches the output"),
    kernel: Some(range_kernel),
    ..OpDef::BASE
};

pub(crate) fn range_shape(g: &Graph, n: &Node) -> Vec<ShapeOut> {
    // max(ceil((limit - start) / delta), 0) elements
    let at = |i| floats_of(g, n, i).filter(|v| v.len() == 1).map(|v| v[0]);
    let len = match (at(0), at(1), at(2)) {
        (Some(a), Some(b), Some(d)) if d != 0.0 => {
            let k = ((b - a) / d).ceil().max(0.0);
            (k.is_finite() && k < 1e15).then_some(k as i64)
        }
        _ => None,
    };
    // small integer ranges are shape arithmetic (reduction axes of a decomposed norm)
    let ints = match (ints_of(g, n, 0), ints_of(g, n, 1), ints_of(g, n, 2), len) {
        (Some(a), Some(_), Some(d), Some(k)) if a.len() == 1 && d.len() == 1 && k as usize <= MAX_TRACKED_INTS => {
            (0..k).map(|i| i.checked_mul(d[0]).and_then(|x| x.checked_add(a[0])).map_or(Dim::Unknown, Dim::Known)).collect::<Vec<_>>().into()
        }
        _ => None,
    };
    vec![(Some(vec![len.map_or(Dim::Unknown, Dim::Known)]), ints, None, first_dtype(g, n))]
}

fn range_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    use crate::ops::movement::map::{launch, Arg};
    // The output's length is static (specialisation computes it from the
    // bounds); start and delta may still live on the device.
    let out = ctx.output(0)?;
    let n = out.numel();
    if n == 0 {
        return Ok(Lowered::default());
    }
    let elem = out.elem;
    if elem == Elem::Bool {
        return Err("Range of bool is not defined".into());
    }
    let mut args = Vec::new();
    let term = |k: usize, name: &str, args: &mut Vec<Arg>| -> Result<String, String> {
        match ctx.host_scalar(k) {
            Ok(x) => Ok(elem.literal(x)),
            Err(_) => {
                let info = ctx.input(k)?;
                if info.numel() != 1 {
                    return Err(format!("input {k} has {} elements; Range takes scalars", info.numel()));
                }
                args.push(Arg::input(ctx, k, name)?);
                Ok(kern::convert(info.elem, elem, &format!("{name}[0]")))
            }
        }
    };
    let start = term(0, "start", &mut args)?;
    let delta = term(2, "delta", &mut args)?;
    args.push(Arg::output(ctx, 0, "out")?);
    let body = format!("    out[i] = {start} + {}(i) * {delta};", elem.wgsl());
    Ok(Lowered::one(launch(ctx, "", &args, n, "", &body)?))
}
