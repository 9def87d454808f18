//! The `Trilu`: definitions and rules.
#![allow(clippy::too_many_arguments)]
use crate::ops::util::prelude::*;

/// The `Trilu` op.
pub static TRILU: OpDef = OpDef {
    name: "Trilu",
    module: module_path!(),
    inputs: Arity::range(1, 2),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 14, until: None },
    attrs: &[
        AttrSpec::flag("upper"),
    ],
    shape: Some(same_shape),
    analysis: Analysis::Unknown("not written: a change reaching it is unknown"),
    gradient: Gradient::Rule(trilu_grad),
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
    let g = ad.em.op(&TRILU, &refs, vec![a_int("upper", n.attr_int("upper", 1))]);
    Ok(grads(n, vec![(0, g)]))
}
