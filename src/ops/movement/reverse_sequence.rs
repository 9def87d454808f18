//! The `ReverseSequence`: definitions and rules.
#![allow(clippy::too_many_arguments)]
use crate::ops::util::prelude::*;

// The attributes, with their ONNX defaults (checked when the IR is built).
const BATCH_AXIS: IntAttr = IntAttr::new("batch_axis", AttrCheck::Any, 1);
const TIME_AXIS: IntAttr = IntAttr::new("time_axis", AttrCheck::Any, 0);

/// The `ReverseSequence` op.
pub static REVERSE_SEQUENCE: OpDef = OpDef {
    name: "ReverseSequence",
    module: module_path!(),
    inputs: Arity::range(2, 2),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 10, until: None },
    attrs: &[
        BATCH_AXIS.spec,
        TIME_AXIS.spec,
    ],
    shape: Some(same_shape),
    analysis: Analysis::Unknown("not written: a change reaching it is unknown"),
    gradient: Gradient::None("not written: an error on the gradient path"),
    kernel: Some(reverse_sequence_kernel),
    ..OpDef::BASE
};

fn reverse_sequence_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    // out[b, t] = x[b, len[b] - 1 - t] for t < len[b], else x[b, t]
    let x = ctx.input(0)?;
    let lens = ctx.input(1)?;
    let r = x.shape.len();
    let ba = super::map::axis(BATCH_AXIS.get(ctx.node), r, "batch_axis")?;
    let ta = super::map::axis(TIME_AXIS.get(ctx.node), r, "time_axis")?;
    if ba == ta || lens.elem != Elem::I32 || lens.numel() != x.shape[ba] {
        return Err(format!("batch_axis {ba}, time_axis {ta} and sequence_lens of shape {:?} do not fit an input of shape {:?}", lens.shape, x.shape));
    }
    let t = x.shape[ta];
    let mut body = format!("    let len = clamp(lens[c{ba}], 0, {t});\n    let tt = select(c{ta}, u32(len - 1 - i32(c{ta})), i32(c{ta}) < len);\n");
    let c: Vec<String> = (0..r).map(|d| if d == ta { "tt".to_string() } else { format!("c{d}") }).collect();
    body.push_str(&format!("    let src = {};", super::map::flat(&c, &x.shape)));
    super::map::gather(ctx, 0, &body, None, &[super::map::Arg::input(ctx, 1, "lens")?])
}
