//! The `Gelu`: definitions and rules.
#![allow(clippy::too_many_arguments)]
use crate::ops::util::prelude::*;

// The attributes, with their ONNX defaults (checked when the IR is built).
const APPROXIMATE: StrAttr = StrAttr::new("approximate", AttrCheck::OneOf(&["none", "tanh"]), "none");

/// The `Gelu` op.
pub static GELU: OpDef = OpDef {
    name: "Gelu",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 20, until: None },
    attrs: &[
        APPROXIMATE.spec,
    ],
    shape: Some(same_shape),
    constraints: Some(same_shape_constraints),
    analysis: Analysis::Rule(nonlinear),
    gradient: Gradient::Lowered,
    lowering: Some(gelu_lower),
    ..OpDef::BASE
};

/// Gelu (opset 20): exact (erf) or tanh approximation.
pub(crate) fn gelu_lower(g: &Graph, n: &Node, em: &mut Emitter, _: &mut Vec<(String, String)>) -> Result<(), RewriteError> {
    let x = name(g, n, 0).unwrap_or_default();
    let inner = match APPROXIMATE.get(n) {
        "none" => {
            let s = em.mul_scalar(&x, std::f64::consts::FRAC_1_SQRT_2);
            em.op(&ERF, &[&s], vec![])
        }
        "tanh" => {
            let x2 = em.mul(&x, &x);
            let x3 = em.mul(&x2, &x);
            let c = em.mul_scalar(&x3, 0.044715);
            let s = em.add(&x, &c);
            let k = em.mul_scalar(&s, (2.0 / std::f64::consts::PI).sqrt());
            em.op(&TANH, &[&k], vec![])
        }
        other => return Err(RewriteError::Node { node: n.name.clone(), op: n.op_type.clone(), detail: format!("approximate = '{other}'") }),
    };
    let one = em.scalar(1.0);
    let p1 = em.add(&inner, &one);
    let h = em.mul_scalar(&x, 0.5);
    let y_out = out_name(g, n, 0).unwrap_or_else(|| em.fresh("gelu_y"));
    em.node(&MUL, &[&h, &p1], &[y_out], vec![]);
    Ok(())
}
