//! The `Tile`: definitions and rules.
#![allow(clippy::too_many_arguments)]
use crate::ops::util::prelude::*;

/// The `Tile` op.
pub static TILE: OpDef = OpDef {
    name: "Tile",
    module: module_path!(),
    inputs: Arity::range(2, 2),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    shape: Some(tile_shape),
    analysis: Analysis::Rule(select),
    arg_slots: ArgSlots::From(1),
    gradient: Gradient::Rule(movement),
    kernel: Some(tile_kernel),
    ..OpDef::BASE
};

pub(crate) fn tile_shape(g: &Graph, n: &Node) -> Vec<ShapeOut> {
    let s = match (shape_of(g, n, 0), ints_of(g, n, 1)) {
        (Some(s), Some(r)) if r.len() == s.len() => Some(s.iter().zip(&r).map(|(d, &k)| arith(*d, Dim::Known(k), Arith::Mul)).collect()),
        (Some(s), _) => Some(vec![Dim::Unknown; s.len()]),
        _ => None,
    };
    vec![(s, None, None, first_dtype(g, n))]
}

fn tile_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    // The output's static shape gives the repeats.
    let x = ctx.input(0)?;
    let out = ctx.output(0)?;
    let r = x.shape.len();
    if out.shape.len() != r || (0..r).any(|d| if x.shape[d] == 0 { out.shape[d] != 0 } else { out.shape[d] % x.shape[d] != 0 }) {
        return Err(format!("the output {:?} is not a tiling of the input {:?}", out.shape, x.shape));
    }
    let c: Vec<String> = (0..r).map(|d| if out.shape[d] == x.shape[d] { format!("c{d}") } else { format!("c{d} % {}u", x.shape[d]) }).collect();
    super::map::gather(ctx, 0, &format!("    let src = {};", super::map::flat(&c, &x.shape)), None, &[])
}
