//! The `Trilu`: definitions and rules.
#![allow(clippy::too_many_arguments)]
use crate::ops::util::prelude::*;

// The attributes, with their ONNX defaults (checked when the IR is built).
const UPPER: IntAttr = IntAttr::flag("upper", true);

/// The `Trilu` op.
pub static TRILU: OpDef = OpDef {
    name: "Trilu",
    module: module_path!(),
    inputs: Arity::range(1, 2),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 14, until: None },
    attrs: &[
        UPPER.spec,
    ],
    shape: Some(same_shape),
    analysis: Analysis::Unknown("not written: a change reaching it is unknown"),
    gradient: Gradient::Rule(trilu_grad),
    kernel: Some(trilu_kernel),
    ..OpDef::BASE
};

pub(crate) fn trilu_grad(ad: &mut Ad, n: &Node, dy: &[Option<String>], _: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    // The same triangle of the gradient.
    let dy = dy0!(n, dy);
    let mut ins = vec![dy];
    if n.input(1).is_some() {
        ins.push(ad.name(n, 1));
    }
    let refs: Vec<&str> = ins.iter().map(String::as_str).collect();
    let g = ad.em.op(&TRILU, &refs, vec![a_int("upper", UPPER.get(n))]);
    Ok(grads(n, vec![(0, g)]))
}

fn trilu_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    let x = ctx.input(0)?;
    let r = x.shape.len();
    if r < 2 {
        return Err(format!("an input of rank {r}; Trilu needs at least 2"));
    }
    let mut extra = Vec::new();
    let k = if ctx.has_input(1) {
        match ctx.host_scalar(1) {
            // past the matrix every k keeps all or nothing: clamp to fit i32
            Ok(k) => format!("{}", (k as i64).clamp(-(x.shape[r - 2] as i64) - 1, x.shape[r - 1] as i64 + 1)),
            Err(_) => {
                if ctx.input(1)?.elem != Elem::I32 || ctx.input(1)?.numel() != 1 {
                    return Err("k must be one integer".into());
                }
                extra.push(super::map::Arg::input(ctx, 1, "kk")?);
                "kk[0]".to_string()
            }
        }
    } else {
        "0".to_string()
    };
    let keep = if UPPER.on(ctx.node) { ">=" } else { "<=" };
    let body = format!("    let src = i;\n    let ok = i32(c{}) - i32(c{}) {keep} {k};", r - 1, r - 2);
    let mut l = super::map::gather(ctx, 0, &body, Some(&x.elem.literal(0.0)), &extra)?;
    l.in_place = vec![0];
    Ok(l)
}
