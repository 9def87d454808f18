//! The `Mean`: definitions and rules.
#![allow(clippy::too_many_arguments)]
use crate::ops::util::prelude::*;

/// The `Mean` op.
pub static MEAN: OpDef = OpDef {
    name: "Mean",
    module: module_path!(),
    inputs: Arity::range(1, Arity::VARIADIC),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    shape: Some(binary_shape),
    analysis: Analysis::Unknown("not written: a change reaching it is unknown"),
    gradient: Gradient::Rule(mean_grad),
    ..OpDef::BASE
};

pub(crate) fn mean_grad(ad: &mut Ad, n: &Node, dy: &[Option<String>], need: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    let dy = dy0!(n, dy);
    let share = ad.em.mul_scalar(&dy, 1.0 / n.inputs.len().max(1) as f64);
    let mut out = Vec::new();
    for (i, &nd) in need.iter().enumerate() {
        if nd {
            out.push((i, ad.unb(n, i, &share)?));
        }
    }
    Ok(grads(n, out))
}
