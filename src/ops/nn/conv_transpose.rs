//! The `ConvTranspose`: definitions and rules.
#![allow(clippy::too_many_arguments)]
use crate::ops::util::prelude::*;

// The convolutions' shared attributes (util::window) and the transpose's own.
const CONV_TRANSPOSE_ATTRS: [AttrSpec; 8] = extend(CONV_ATTRS, &[OUTPUT_PADDING.spec, OUTPUT_SHAPE.spec]);

/// The `ConvTranspose` op.
pub static CONV_TRANSPOSE: OpDef = OpDef {
    name: "ConvTranspose",
    module: module_path!(),
    inputs: Arity::range(2, 3),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    attrs: &CONV_TRANSPOSE_ATTRS,
    shape: Some(conv_shape),
    constraints: Some(conv_constraints),
    analysis: Analysis::Rule(conv_transpose_rule),
    channel_axis: Some(conv_transpose_channel_axis),
    gradient: Gradient::Rule(conv_transpose_grad),
    reads: 2,
    kernel: Some(conv_transpose_kernel),
    ..OpDef::BASE
};

pub(crate) fn conv_transpose_rule(c: &mut Ctx, n: &Node, e: &[Option<Affine>]) -> Vec<Flow> {
    let (ex, ew) = (e[0].as_ref(), e.get(1).and_then(Option::as_ref));
    let Some(r) = c.rank(n.input(0)).or(c.rank(n.output(0))) else { return one(unknown("ConvTranspose rank unknown")) };
    let group = GROUP.get(n).max(1);
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
    if OUTPUT_SHAPE.get(n).is_some() || !matches!(AUTO_PAD.get(n), "NOTSET" | "VALID") {
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

fn conv_transpose_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    super::conv::conv_lowering(ctx, true)
}

#[cfg(all(test, feature = "gpu"))]
mod tests {
    use crate::ir::AttrValue;
    use crate::ops::nn::tiled::testing::{assert_close, run_node_as, values};

    fn coords(mut i: usize, shape: &[usize]) -> Vec<usize> {
        let mut c = vec![0; shape.len()];
        for d in (0..shape.len()).rev() {
            c[d] = i % shape[d];
            i /= shape[d];
        }
        c
    }

    /// The transposed convolution on the host as a scatter: every input
    /// element adds its weighted kernel into the output.
    fn reference(x: &[f32], xs: &[usize], w: &[f32], ws: &[usize], bias: Option<&[f32]>, s: &[usize], d: &[usize], pb: &[usize], group: usize, ys: &[usize]) -> Vec<f64> {
        let sp = xs.len() - 2;
        let (cg, mg) = (xs[1] / group, ws[1]);
        let ks = &ws[2..];
        let kt: usize = ks.iter().product();
        let n_out: usize = ys.iter().product();
        let per: usize = ys[2..].iter().product();
        let mut y = vec![0.0f64; n_out];
        for (i, yv) in y.iter_mut().enumerate() {
            *yv = bias.map_or(0.0, |b| b[(i / per) % ys[1]] as f64);
        }
        for (i, &xv) in x.iter().enumerate() {
            let xc = coords(i, xs);
            let (n, c) = (xc[0], xc[1]);
            let g = c / cg;
            for m in 0..mg {
                for t in 0..kt {
                    let tc = coords(t, ks);
                    let mut yi = n * ys[1] + g * mg + m;
                    let mut inside = true;
                    for a in 0..sp {
                        let pos = (xc[2 + a] * s[a] + tc[a] * d[a]) as i64 - pb[a] as i64;
                        inside &= pos >= 0 && pos < ys[2 + a] as i64;
                        yi = yi * ys[2 + a] + pos.max(0) as usize;
                    }
                    if inside {
                        y[yi] += xv as f64 * w[(c * mg + m) * kt + t] as f64;
                    }
                }
            }
        }
        y
    }

    fn check(xs: &[usize], ws: &[usize], group: usize, s: &[usize], d: &[usize], pads: &[usize], opad: &[usize], bias: bool) {
        let sp = xs.len() - 2;
        let mut ys = vec![xs[0], ws[1] * group];
        for a in 0..sp {
            ys.push(s[a] * (xs[2 + a] - 1) + opad[a] + d[a] * (ws[2 + a] - 1) + 1 - pads[a] - pads[sp + a]);
        }
        let x = values(xs.iter().product(), 11);
        let w = values(ws.iter().product(), 12);
        let b = values(ys[1], 13);
        let ints = |v: &[usize]| AttrValue::Ints(v.iter().map(|&x| x as i64).collect());
        let attrs = vec![("group", AttrValue::Int(group as i64)), ("strides", ints(s)), ("dilations", ints(d)), ("pads", ints(pads)), ("output_padding", ints(opad))];
        let bs = [ys[1]];
        let mut inputs = vec![Some((xs, &x[..])), Some((ws, &w[..]))];
        if bias {
            inputs.push(Some((&bs[..], &b[..])));
        }
        let want = reference(&x, xs, &w, ws, bias.then_some(&b[..]), s, d, &pads[..sp], group, &ys);
        for cpu in [true, false] {
            let got = run_node_as(super::CONV_TRANSPOSE.name, attrs.clone(), &inputs, 1, cpu).unwrap();
            assert_eq!(got[0].1, ys);
            assert_close(&got[0].0, &want, &format!("ConvTranspose x {xs:?} w {ws:?} group {group} (CPU kernel {cpu})"));
        }
    }

    #[test]
    fn conv_input_gradients_of_the_zoo() {
        // 3x3 / stride 2 / pad 1 with output_padding 1 (ResNet's downsampling), tiled
        check(&[2, 4, 5, 5], &[4, 8, 3, 3], 1, &[2, 2], &[1, 1], &[1, 1, 1, 1], &[1, 1], true);
        // 1x1 / stride 2 with output_padding 1 (the projection shortcut)
        check(&[1, 16, 4, 4], &[16, 8, 1, 1], 1, &[2, 2], &[1, 1], &[0, 0, 0, 0], &[1, 1], false);
        // grouped, stride 2, no pads (NFNet)
        check(&[1, 6, 4, 4], &[6, 8, 3, 3], 2, &[2, 2], &[1, 1], &[0, 0, 0, 0], &[0, 0], false);
    }

    #[test]
    fn depthwise_and_pool_gradients() {
        // AveragePool's gradient: group = channels, a 2x2 kernel of stride 2
        check(&[1, 3, 4, 4], &[3, 1, 2, 2], 3, &[2, 2], &[1, 1], &[0, 0, 0, 0], &[0, 0], false);
        // depthwise 5x5 / stride 2 / pad 2 with output_padding 1 (EfficientNet)
        check(&[2, 4, 3, 3], &[4, 1, 5, 5], 4, &[2, 2], &[1, 1], &[2, 2, 2, 2], &[1, 1], true);
    }

    #[test]
    fn dilated_one_and_three_axes() {
        check(&[2, 3, 7], &[3, 9, 3], 1, &[3], &[2], &[1, 2], &[2], true);
        check(&[1, 2, 3, 2, 3], &[2, 8, 2, 3, 2], 1, &[2, 1, 2], &[1, 2, 1], &[0, 1, 1, 1, 0, 0], &[1, 0, 0], false);
    }
}
