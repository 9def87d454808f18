//! The `ConvTranspose`: definitions and rules.
#![allow(clippy::too_many_arguments)]
use crate::ops::util::prelude::*;

/// The `ConvTranspose` op.
pub static CONV_TRANSPOSE: OpDef = OpDef {
    name: "ConvTranspose",
    module: module_path!(),
    inputs: Arity::range(2, 3),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    attrs: &[
        AttrSpec::string("auto_pad", AttrCheck::OneOf(&["NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"])),
        AttrSpec::ints("dilations", AttrCheck::AtLeast(1)),
        AttrSpec::ints("kernel_shape", AttrCheck::AtLeast(1)),
        AttrSpec::ints("pads", AttrCheck::AtLeast(0)),
        AttrSpec::ints("strides", AttrCheck::AtLeast(1)),
        AttrSpec::int("group", AttrCheck::AtLeast(1)),
        AttrSpec::ints("output_padding", AttrCheck::AtLeast(0)),
        AttrSpec::ints("output_shape", AttrCheck::Any),
    ],
    shape: Some(conv_shape),
    constraints: Some(conv_constraints),
    analysis: Analysis::Rule(conv_transpose_rule),
    channel_axis: Some(conv_transpose_channel_axis),
    gradient: Gradient::Rule(conv_transpose_grad),
    reads: 2,
    ..OpDef::BASE
};

pub(crate) fn conv_transpose_rule(c: &mut Ctx, n: &Node, e: &[Option<Affine>]) -> Vec<Flow> {
    let (ex, ew) = (e[0].as_ref(), e.get(1).and_then(Option::as_ref));
    let Some(r) = c.rank(n.input(0)).or(c.rank(n.output(0))) else { return one(unknown("ConvTranspose rank unknown")) };
    let group = n.attr_int("group", 1).max(1);
    let mut scale = None;
    if let Some(x) = ex {
        if x.shift.is_some() {
            return one(variant("ConvTranspose of a shifted input"));
        }
        if let Some(s) = &x.scale {
            if s.mask & !mask::bit(0) != 0 {
                return one(variant("ConvTranspose mixes input channels that scale differently"));
            }
            scale = Some(s.clone());
        }
    }
    if let Some(w) = ew {
        if w.shift.is_some() {
            return one(variant("ConvTranspose weight changes additively"));
        }
        if let Some(s) = &w.scale {
            // weight [C_in, C_out/group, k...]: axis 1 is the output channel
            let out = (s.mask & !mask::bit(1) == 0).then_some(s.mask);
            let why = "ConvTranspose weight scale varies along input channels or space";
            scale = match times_weight(c, scale, s, out, group == 1, r, why) {
                Ok(s) => s,
                Err(f) => return one(f),
            };
        }
    }
    with_bias(c, n, e, 2, r, Affine { scale, shift: None }, &|m| if m & 1 != 0 { mask::bit(1) } else { 0 })
}

pub(crate) fn conv_transpose_grad(ad: &mut Ad, n: &Node, dy: &[Option<String>], need: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    // y = convT(x, W) is the input gradient of a convolution: dx = conv_grad(dy, W),
    // and dW is a convolution's weight gradient with x and dy swapped.
    let dy = dy0!(n, dy);
    let r = ad.rank(n, 0)?;
    if r < 3 {
        return Err(Ad::err(n, "input of rank < 3"));
    }
    let sp = r - 2;
    if n.attr_ints("output_shape").is_some() || !matches!(n.attr_str("auto_pad").unwrap_or("NOTSET"), "NOTSET" | "VALID") {
        return Err(Ad::err(n, "output_shape and SAME auto_pad are not supported; give explicit pads"));
    }
    let (strides, dil, pads, group) = conv_attrs(ad, n, sp)?;
    let w_dims = ad.static_dims(n, 1)?;
    let k = &w_dims[2..];
    let mut out = Vec::new();
    if nd(need, 2) {
        let axes: Vec<i64> = std::iter::once(0).chain(2..r as i64).collect();
        out.push((2, ad.em.reduce(&REDUCE_SUM, &dy, Some(&axes), false)));
    }
    let (x, w) = (ad.name(n, 0), ad.name(n, 1));
    if nd(need, 0) {
        let attrs = vec![a_ints("strides", &strides), a_ints("dilations", &dil), a_ints("pads", &pads), a_int("group", group), a_ints("kernel_shape", k)];
        out.push((0, ad.em.op(&CONV, &[&dy, &w], attrs)));
    }
    if nd(need, 1) {
        // The forward's output_padding rows lie past every window of the
        // swapped convolution, so the slices never reach them.
        let g = ConvGeom { strides: &strides, dil: &dil, pads: &pads, group, k };
        out.push((1, weight_grad(ad, n, &dy, &x, w_dims[0], w_dims[1], &g)?));
    }
    Ok(grads(n, out))
}

/// The weight's output channels: axis 1.
pub(crate) fn conv_transpose_channel_axis(_: &Node, slot: usize, _: usize) -> Option<usize> {
    (slot == 1).then_some(1)
}
