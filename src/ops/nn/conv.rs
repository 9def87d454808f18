//! The `Conv`, `ConvInteger`, `DeformConv`, `QLinearConv`: definitions and rules.
#![allow(clippy::too_many_arguments)]
use crate::ops::util::prelude::*;

// The attributes, with their ONNX defaults (checked when the IR is built).
const OFFSET_GROUP: IntAttr = IntAttr::new("offset_group", AttrCheck::AtLeast(1), 1);

/// The `Conv` op.
pub static CONV: OpDef = OpDef {
    name: "Conv",
    module: module_path!(),
    inputs: Arity::range(2, 3),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    attrs: CONV_ATTRS,
    shape: Some(conv_shape),
    constraints: Some(conv_constraints),
    analysis: Analysis::Rule(conv_rule),
    channel_axis: Some(conv_channel_axis),
    gradient: Gradient::Rule(conv_grad),
    reads: 2,
    kernel: Some(conv_kernel),
    ..OpDef::BASE
};

/// The `ConvInteger` op.
pub static CONV_INTEGER: OpDef = OpDef {
    name: "ConvInteger",
    module: module_path!(),
    inputs: Arity::range(2, 4),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 10, until: None },
    attrs: CONV_ATTRS,
    shape: Some(conv_shape),
    constraints: Some(conv_constraints),
    analysis: Analysis::Unknown("not written: a change reaching it is unknown"),
    gradient: Gradient::None("not written: an error on the gradient path"),
    ..OpDef::BASE
};

/// The `DeformConv` op.
pub static DEFORM_CONV: OpDef = OpDef {
    name: "DeformConv",
    module: module_path!(),
    inputs: Arity::range(3, 5),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 19, until: None },
    attrs: &[
        DILATIONS.spec,
        GROUP.spec,
        KERNEL_SHAPE.spec,
        OFFSET_GROUP.spec,
        PADS.spec,
        STRIDES.spec,
    ],
    shape: Some(conv_shape),
    analysis: Analysis::Unknown("not written: a change reaching it is unknown"),
    gradient: Gradient::None("not written: an error on the gradient path"),
    ..OpDef::BASE
};

/// The `QLinearConv` op.
pub static Q_LINEAR_CONV: OpDef = OpDef {
    name: "QLinearConv",
    module: module_path!(),
    inputs: Arity::range(8, 9),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 10, until: None },
    attrs: CONV_ATTRS,
    shape: Some(qlinear_conv_shape),
    analysis: Analysis::Unknown("not written: a change reaching it is unknown"),
    gradient: Gradient::None("not written: an error on the gradient path"),
    ..OpDef::BASE
};

pub(crate) fn conv_rule(c: &mut Ctx, n: &Node, e: &[Option<Affine>]) -> Vec<Flow> {
    let (ex, ew) = (e[0].as_ref(), e.get(1).and_then(Option::as_ref));
    let Some(r) = c.rank(n.input(0)).or(c.rank(n.output(0))) else { return one(unknown("Conv rank unknown")) };
    let spatial = mask::below(r) & !(mask::bit(0) | mask::bit(1));
    let group = GROUP.get(n).max(1);
    let cin = c.dims(n.input(0)).and_then(|d| d.get(1).copied()).and_then(Dim::known);
    let cout = c.dims(n.input(1)).and_then(|d| d.first().copied()).and_then(Dim::known);
    let mut scale: Option<Scale> = None;
    let mut shift: Option<Shift> = None;
    if let Some(x) = ex {
        if let Some(s) = &x.scale {
            if s.mask & spatial != 0 {
                return one(variant("Conv input scale varies over space"));
            }
            if s.mask & mask::bit(1) != 0 {
                // Only a depthwise conv keeps a per-channel input scale per channel.
                match (cin, cout) {
                    (Some(ci), Some(co)) if ci == group && co % ci == 0 => {
                        let token = if co == ci { s.token } else { c.fresh() };
                        scale = Some(Scale { token, ..s.clone() });
                    }
                    _ => return one(variant("Conv mixes input channels that scale differently")),
                }
            } else {
                scale = Some(s.clone());
            }
        }
        if let Some(t) = &x.shift {
            // conv_rule(T) is constant over space only without padding (borders see zeros).
            let pads = PADS.get(n).is_none_or(|p| p.iter().all(|&x| x == 0));
            let auto = matches!(AUTO_PAD.get(n), "NOTSET" | "VALID");
            if t.mask & spatial != 0 || !pads || !auto || ew.is_some() {
                return one(variant("Conv of a shifted input (padding or spatial shift)"));
            }
            shift = Some(Shift { mask: (t.mask & mask::bit(0)) | mask::bit(1), token: c.fresh(), sources: t.sources.clone() });
        }
    }
    if let Some(w) = ew {
        if w.shift.is_some() {
            return one(variant("Conv weight changes additively"));
        }
        if let Some(s) = &w.scale {
            // weight [C_out, C_in/group, k...]: axis 0 is the output channel
            let out = (s.mask & !mask::bit(0) == 0).then(|| if s.mask != 0 { mask::bit(1) } else { 0 });
            scale = match times_weight(c, scale, s, out, true, r, "Conv weight scale varies along input channels or space") {
                Ok(s) => s,
                Err(f) => return one(f),
            };
        }
    }
    with_bias(c, n, e, 2, r, Affine { scale, shift }, &|m| if m & 1 != 0 { mask::bit(1) } else { 0 })
}

pub(crate) fn conv_grad(ad: &mut Ad, n: &Node, dy: &[Option<String>], need: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    let dy = dy0!(n, dy);
    let r = ad.rank(n, 0)?;
    if r < 3 {
        return Err(Ad::err(n, "input of rank < 3"));
    }
    let sp = r - 2;
    let (strides, dil, pads, group) = conv_attrs(ad, n, sp)?;
    let w_dims = ad.static_dims(n, 1)?;
    let k = &w_dims[2..];
    // With static spatial dims the window arithmetic is checked here (and
    // gives dx's output padding).
    let x_sp: Option<Vec<i64>> = ad.dims(n.input(0)).and_then(|d| d[2..].iter().map(|d| d.known()).collect());
    let opad = x_sp.map(|x_sp| output_padding(n, &x_sp, k, &strides, &dil, &pads)).transpose()?;
    let mut out = Vec::new();
    if nd(need, 2) {
        let axes: Vec<i64> = std::iter::once(0).chain(2..r as i64).collect();
        out.push((2, ad.em.reduce(&REDUCE_SUM, &dy, Some(&axes), false)));
    }
    let (x, w) = (ad.name(n, 0), ad.name(n, 1));
    if nd(need, 0) {
        // dx = convT(dy, W). Rows past the last window get no gradient: with
        // static dims an output padding restores them, else a zero pad
        // computed from the runtime shapes.
        let attrs = |pads: &[i64]| vec![a_ints("strides", &strides), a_ints("dilations", &dil), a_ints("pads", pads), a_int("group", group), a_ints("kernel_shape", k)];
        match &opad {
            Some(opad) => {
                let mut a = attrs(&pads);
                a.push(a_ints("output_padding", opad));
                out.push((0, ad.em.op(&CONV_TRANSPOSE, &[&dy, &w], a)));
            }
            None => {
                let part = ad.em.op(&CONV_TRANSPOSE, &[&dy, &w], attrs(&begin_pads_only(&pads)));
                out.push((0, fit_to_input(ad, &part, &x, r)));
            }
        }
    }
    if nd(need, 1) {
        let g = ConvGeom { strides: &strides, dil: &dil, pads: &pads, group, k };
        out.push((1, weight_grad(ad, n, &x, &dy, w_dims[0], w_dims[1], &g)?));
    }
    Ok(grads(n, out))
}

pub(crate) fn conv_attrs(ad: &Ad, n: &Node, sp: usize) -> Result<ConvAttrs, RewriteError> {
    let w = ad.static_dims(n, 1)?;
    let group = GROUP.get(n);
    if w.len() != sp + 2 || group <= 0 || w[0] % group != 0 {
        return Err(Ad::err(n, format!("weight of shape {w:?} does not fit a {sp}-D convolution with {group} groups")));
    }
    let k = &w[2..];
    let Window { strides, dilations: dil, pads: explicit, auto_pad } = Window::of(n, sp);
    // Checked before SAME padding computes with them.
    check_window(n, k, &strides, &dil, &vec![0; 2 * sp])?;
    let pads = match auto_pad.as_str() {
        "NOTSET" => explicit,
        "VALID" => vec![0; 2 * sp],
        other => {
            // SAME_UPPER / SAME_LOWER: explicit pads from the static input size.
            let x = ad.static_dims(n, 0)?;
            let overflow = || Ad::err(n, "dimension arithmetic overflows");
            let mut pads = vec![0; 2 * sp];
            for i in 0..sp {
                let (h, s, d) = (x[2 + i], strides[i], dil[i]);
                let out = h.checked_add(s - 1).ok_or_else(overflow)? / s;
                let span = (out - 1).checked_mul(s).and_then(|v| v.checked_add((k[i] - 1).checked_mul(d)?)).ok_or_else(overflow)?;
                let total = (span + 1 - h).max(0);
                let (b, e) = if other == "SAME_LOWER" { (total - total / 2, total / 2) } else { (total / 2, total - total / 2) };
                pads[i] = b;
                pads[sp + i] = e;
            }
            pads
        }
    };
    check_window(n, k, &strides, &dil, &pads)?;
    if pads.iter().any(|&p| p > 1 << 32) {
        return Err(Ad::err(n, "pads beyond 2^32 are not supported"));
    }
    Ok((strides, dil, pads, group))
}

/// Kernel, strides, dilations and pads of matching lengths, positive and non-negative.
pub(crate) fn check_window(n: &Node, k: &[i64], strides: &[i64], dil: &[i64], pads: &[i64]) -> Result<(), RewriteError> {
    let sp = k.len();
    if strides.len() != sp || dil.len() != sp || pads.len() != 2 * sp {
        return Err(Ad::err(n, "kernel, strides, dilations and pads do not match the input rank"));
    }
    if strides.iter().chain(dil).chain(k).any(|&v| v <= 0) || pads.iter().any(|&p| p < 0) {
        return Err(Ad::err(n, "kernel, strides and dilations must be positive and pads non-negative"));
    }
    Ok(())
}

/// Output paddings that make a transposed convolution give back `x`'s spatial size.
pub(crate) fn output_padding(n: &Node, x: &[i64], k: &[i64], strides: &[i64], dil: &[i64], pads: &[i64]) -> Result<Vec<i64>, RewriteError> {
    let sp = k.len();
    if x.len() != sp {
        return Err(Ad::err(n, "the kernel does not match the input rank"));
    }
    check_window(n, k, strides, dil, pads)?;
    let overflow = || Ad::err(n, "dimension arithmetic overflows");
    (0..sp)
        .map(|i| {
            let padded = x[i].checked_add(pads[i]).and_then(|v| v.checked_add(pads[sp + i])).ok_or_else(overflow)?;
            let span = (k[i] - 1).checked_mul(dil[i]).and_then(|v| v.checked_add(1)).ok_or_else(overflow)?;
            if padded < span || strides[i] <= 0 {
                return Err(Ad::err(n, "the kernel is larger than the padded input"));
            }
            let out = (padded - span) / strides[i] + 1;
            let covered = (out - 1).checked_mul(strides[i]).and_then(|v| v.checked_add(span)).ok_or_else(overflow)?;
            Ok(padded - covered)
        })
        .collect()
}

/// A convolution's `(strides, dilations, pads, group)`, validated against its weight.
pub(crate) type ConvAttrs = (Vec<i64>, Vec<i64>, Vec<i64>, i64);

/// Convolution geometry shared by the weight-gradient helper.
pub(crate) struct ConvGeom<'a> {
    pub(crate) strides: &'a [i64],
    pub(crate) dil: &'a [i64],
    pub(crate) pads: &'a [i64],
    pub(crate) group: i64,
    pub(crate) k: &'a [i64],
}

/// `prefix` followed by the runtime dims of `t` from axis 2 on, as a shape.
pub(crate) fn shape_with_prefix(ad: &mut Ad, prefix: &[i64], t: &str) -> String {
    let p = ad.em.ints(prefix);
    let rest = ad.em.op(&SHAPE, &[t], vec![a_int("start", 2)]);
    ad.em.op(&CONCAT, &[&p, &rest], vec![a_int("axis", 0)])
}

/// The weight gradient of `y = conv_grad(x, W)` (W: `[m, cg, k...]`, `group` groups):
/// `dW[m, c, κ] = Σ_n Σ_o dy[n, m, o] · x_pad[n, c, o·s + κ·d]`. For each
/// kernel offset κ, a strided slice of the padded input against the
/// gradient is one batched matrix product over the groups
/// (`[G, cg, N·O] × [G, N·O, mg]`), so the work is a few large GEMMs.
/// Spatial dims are read at run time.
pub(crate) fn weight_grad(ad: &mut Ad, n: &Node, x: &str, dy: &str, m: i64, cg: i64, c: &ConvGeom) -> Result<String, RewriteError> {
    let (sp, group) = (c.k.len(), c.group);
    let mg = m / group;
    let rest: Vec<i64> = (0..sp as i64).collect();
    // x: [N, G·cg, S...] → padded → [G, cg, N, S'...]
    let xp = if c.pads.iter().any(|&p| p != 0) {
        let pads: Vec<i64> = [0, 0].into_iter().chain(c.pads[..sp].iter().copied()).chain([0, 0]).chain(c.pads[sp..].iter().copied()).collect();
        let pads = ad.em.ints(&pads);
        ad.em.op(&PAD, &[x, &pads], vec![])
    } else {
        x.to_string()
    };
    let shape = shape_with_prefix(ad, &[0, group, cg], &xp);
    let xr = ad.em.reshape(&xp, &shape);
    let perm: Vec<i64> = [1, 2, 0].into_iter().chain(rest.iter().map(|a| a + 3)).collect();
    let xt = ad.em.op(&TRANSPOSE, &[&xr], vec![a_ints("perm", &perm)]);
    // dy: [N, G·mg, O...] → [G, N·O, mg]
    let shape = shape_with_prefix(ad, &[0, group, mg], dy);
    let yr = ad.em.reshape(dy, &shape);
    let perm: Vec<i64> = [1, 0].into_iter().chain(rest.iter().map(|a| a + 3)).chain([2]).collect();
    let yt = ad.em.op(&TRANSPOSE, &[&yr], vec![a_ints("perm", &perm)]);
    let flat = ad.em.ints(&[group, -1, mg]);
    let ym = ad.em.reshape(&yt, &flat);
    let xflat = ad.em.ints(&[group, cg, -1]);
    let axes: Vec<i64> = rest.iter().map(|a| a + 3).collect();
    let axes = ad.em.ints(&axes);
    let steps = ad.em.ints(c.strides);
    // A window for offset κ spans κ·d .. κ·d + (O - 1)·s + 1 along each axis.
    let o = ad.em.op(&SHAPE, &[dy], vec![a_int("start", 2)]);
    let os = ad.em.mul(&o, &steps);
    let offsets: usize = c.k.iter().map(|&k| k as usize).product();
    let mut parts = Vec::with_capacity(offsets);
    for flat_off in 0..offsets {
        // The kernel offset κ (row-major over the kernel dims).
        let mut rem = flat_off;
        let mut kappa = vec![0i64; sp];
        for i in (0..sp).rev() {
            kappa[i] = (rem % c.k[i] as usize) as i64;
            rem /= c.k[i] as usize;
        }
        // Hostile dilations and strides overflow here: an error, not a wrap.
        let starts: Vec<i64> = (0..sp).map(|i| kappa[i].checked_mul(c.dil[i])).collect::<Option<_>>().ok_or_else(|| Ad::err(n, "dilations overflow the kernel's extent"))?;
        let shift: Vec<i64> = (0..sp).map(|i| starts[i].checked_sub(c.strides[i]).and_then(|v| v.checked_add(1))).collect::<Option<_>>().ok_or_else(|| Ad::err(n, "strides overflow the kernel's extent"))?;
        let (starts, shift) = (ad.em.ints(&starts), ad.em.ints(&shift));
        let ends = ad.em.add(&os, &shift);
        let window = ad.em.op(&SLICE, &[&xt, &starts, &ends, &axes, &steps], vec![]);
        let wm = ad.em.reshape(&window, &xflat);
        let prod = ad.em.op(&MAT_MUL, &[&wm, &ym], vec![]);
        parts.push(ad.em.unsqueeze(&prod, &[3]));
    }
    // [G, cg, mg, K] → [G, mg, cg, k...] → [m, cg, k...]
    let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
    let all = if refs.len() == 1 { parts[0].clone() } else { ad.em.op(&CONCAT, &refs, vec![a_int("axis", 3)]) };
    let shape: Vec<i64> = [group, cg, mg].into_iter().chain(c.k.iter().copied()).collect();
    let shape = ad.em.ints(&shape);
    let kr = ad.em.reshape(&all, &shape);
    let perm: Vec<i64> = [0, 2, 1].into_iter().chain(rest.iter().map(|a| a + 3)).collect();
    let kt = ad.em.op(&TRANSPOSE, &[&kr], vec![a_ints("perm", &perm)]);
    let shape: Vec<i64> = [m, cg].into_iter().chain(c.k.iter().copied()).collect();
    let shape = ad.em.ints(&shape);
    Ok(ad.em.reshape(&kt, &shape))
}

pub(crate) fn qlinear_conv_shape(g: &Graph, n: &Node) -> Vec<ShapeOut> {
    // x, x_scale, x_zp, w, ...: the conv of inputs 0 and 3
    let mut inner = n.clone();
    inner.inputs = vec![n.input(0), n.input(3)];
    inner.op_type = CONV.name.into();
    inner.def = Some(&CONV);
    let mut out = conv_shape(g, &inner);
    out.truncate(1);
    if let Some(o) = out.first_mut() {
        o.3 = val(g, n, 7).and_then(|v| v.dtype);
    }
    out
}

/// The data input has the weight's rank; its channels are the weight's input
/// channels times the groups (ConvTranspose: the weight's axis 0).
pub(crate) fn conv_constraints(g: &Graph, n: &Node) -> Vec<(usize, Vec<Dim>)> {
    let out0 = n.output(0).and_then(|v| g.values[v].shape.clone());
    let Some(w) = shape_of(g, n, 1) else { return Vec::new() };
    if w.len() < 2 {
        return Vec::new();
    }
    let mut hint = vec![Dim::Unknown; w.len()];
    hint[1] = if n.is(&CONV_TRANSPOSE) { w[0] } else { arith(w[1], Dim::Known(GROUP.get(n)), Arith::Mul) };
    if let Some(o) = out0.as_ref().filter(|o| o.len() == w.len()) {
        hint[0] = o[0];
    }
    vec![(0, hint)]
}

/// The weight's output channels: axis 0.
pub(crate) fn conv_channel_axis(_: &Node, slot: usize, _: usize) -> Option<usize> {
    (slot == 1).then_some(0)
}

fn conv_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    conv_lowering(ctx, false)
}

/// Output channels per group from which the tiled implicit GEMM pays off;
/// below it (depthwise convolutions) one invocation per output element.
const TILED_MIN_CHANNELS: usize = 8;

/// Conv (`transpose` false) or ConvTranspose as an implicit GEMM per batch
/// element and group: `Y[n, g·Mg + m, o] = Σ_k W'[g, m, k] · X'[n, g, k, o]`,
/// with k running over the group's input channels and the kernel taps, and
/// X' gathering the input element a tap reads (zero in the padding; for the
/// transposed form only taps the stride lands on).
pub(crate) fn conv_lowering(ctx: &KernelCtx, transpose: bool) -> Result<Lowered, String> {
    use super::window_kernel::{check_size, flatten, geometry, unflatten};
    use std::fmt::Write;
    let (x, w, y) = (ctx.input(0)?, ctx.input(1)?, ctx.output(0)?);
    for (what, t) in [("X", x), ("W", w), ("Y", y)] {
        check_size(what, t)?;
        if t.elem != Elem::F32 {
            return Err(format!("{what} is {:?}; the kernel computes float32", t.elem));
        }
    }
    let r = x.shape.len();
    if r < 3 || w.shape.len() != r || y.shape.len() != r {
        return Err(format!("X {:?}, W {:?} and Y {:?} must have one rank of 3 or more", x.shape, w.shape, y.shape));
    }
    let group = GROUP.get(ctx.node);
    if !(1..=1 << 24).contains(&group) {
        return Err(format!("group {group} must be positive"));
    }
    let g = group as usize;
    let (nb, c) = (x.shape[0], x.shape[1]);
    let (cg, mg) = if transpose {
        if w.shape[0] != c || c % g != 0 {
            return Err(format!("W {:?} does not fit X's {c} channels in {g} groups", w.shape));
        }
        (c / g, w.shape[1])
    } else {
        if c != w.shape[1] * g || w.shape[0] % g != 0 {
            return Err(format!("W {:?} does not fit X's {c} channels in {g} groups", w.shape));
        }
        (w.shape[1], w.shape[0] / g)
    };
    let mo = mg * g;
    if y.shape[0] != nb || y.shape[1] != mo {
        return Err(format!("Y {:?} does not have X's batch {nb} and {mo} channels", y.shape));
    }
    let ks = &w.shape[2..];
    let geo = geometry(ctx.node, &x.shape, &y.shape, ks, transpose)?;
    let mut binds = vec![("x".to_string(), Elem::F32, kern::Bind::Input(0)), ("w".to_string(), Elem::F32, kern::Bind::Input(1))];
    let bias = if ctx.has_input(2) {
        let b = ctx.input(2)?;
        if b.shape != [mo] || b.elem != Elem::F32 {
            return Err(format!("B of shape {:?} must be float32 [{mo}]", b.shape));
        }
        binds.push(("bias".into(), Elem::F32, kern::Bind::Input(2)));
        true
    } else {
        false
    };
    binds.push(("out".into(), Elem::F32, kern::Bind::Output(0)));
    let kt: usize = ks.iter().product();
    let p: usize = geo.output.iter().product();
    // The input element tap t of group gg's input channel ci reads for output position o.
    let mut gather = String::from("fn gather(nn: u32, gg: u32, ci: u32, t: u32, o: u32) -> f32 {\n");
    gather.push_str(&unflatten("t", "t", ks));
    gather.push_str(&unflatten("o", "o", &geo.output));
    let mut coords = Vec::new();
    for d in 0..ks.len() {
        let (s, dl, pb, len) = (geo.strides[d], geo.dilations[d], geo.begin[d], geo.input[d]);
        if transpose {
            let _ = writeln!(gather, "    let q{d} = i32(o{d}) + ({pb}) - i32(t{d} * {dl}u);");
            let _ = writeln!(gather, "    if (q{d} < 0 || q{d} % {s} != 0) {{ return 0.0; }}");
            let _ = writeln!(gather, "    let p{d} = q{d} / {s};");
            let _ = writeln!(gather, "    if (p{d} >= {len}) {{ return 0.0; }}");
        } else {
            let _ = writeln!(gather, "    let p{d} = i32(o{d} * {s}u + t{d} * {dl}u) - ({pb});");
            let _ = writeln!(gather, "    if (p{d} < 0 || p{d} >= {len}) {{ return 0.0; }}");
        }
        coords.push(format!("u32(p{d})"));
    }
    let _ = writeln!(gather, "    return x[{}];\n}}", flatten(&format!("nn * {c}u + gg * {cg}u + ci"), &coords, &geo.input));
    let weight = if transpose {
        format!("fn weight(gg: u32, m: u32, ci: u32, t: u32) -> f32 {{\n    return w[((gg * {cg}u + ci) * {mg}u + m) * {kt}u + t];\n}}\n")
    } else {
        format!("fn weight(gg: u32, m: u32, ci: u32, t: u32) -> f32 {{\n    return w[((gg * {mg}u + m) * {cg}u + ci) * {kt}u + t];\n}}\n")
    };
    let bias_of = |oc: &str| if bias { format!("bias[{oc}]") } else { "0.0".into() };
    let what = format!("{}-D, {g} groups, {mg}×{}×{p} per group", ks.len(), cg * kt);
    if mg >= TILED_MIN_CHANNELS {
        return super::tiled::TiledGemm {
            label: kern::label(ctx.node, &what),
            batch: nb * g,
            m: mg,
            n: p,
            k: cg * kt,
            binds,
            load_a: format!("    return weight(b % {g}u, m, k / {kt}u, k % {kt}u);"),
            load_b: format!("    return gather(b / {g}u, b % {g}u, k / {kt}u, k % {kt}u, n);"),
            epilogue: format!("    let oc = (b % {g}u) * {mg}u + m;\n    out[((b / {g}u) * {mo}u + oc) * {p}u + n] = v + {};", bias_of("oc")),
            helpers: format!("{gather}{weight}"),
        }
        .lower(&ctx.limits);
    }
    let total = nb * mo * p;
    let body = format!(
        "    let nn = i / {np}u;\n    let oc = (i / {p}u) % {mo}u;\n    let o = i % {p}u;\n    let gg = oc / {mg}u;\n    let m = oc % {mg}u;\n    var acc = {b};\n    for (var ci = 0u; ci < {cg}u; ci++) {{\n        for (var t = 0u; t < {kt}u; t++) {{\n            acc += weight(gg, m, ci, t) * gather(nn, gg, ci, t, o);\n        }}\n    }}\n    out[i] = acc;",
        np = mo * p,
        b = bias_of("oc")
    );
    let decls: Vec<(&str, Elem)> = binds.iter().map(|(n, e, _)| (n.as_str(), *e)).collect();
    let wgsl = format!("{}{gather}{weight}{}", kern::bindings(&decls), kern::elementwise_main(total, &body));
    Ok(Lowered::one(kern::Launch { label: kern::label(ctx.node, &what), wgsl, binds: binds.iter().map(|b| b.2).collect(), groups: kern::groups_for(total, &ctx.limits) }))
}

#[cfg(all(test, feature = "gpu"))]
mod tests {
    use crate::ir::AttrValue;
    use crate::ops::nn::tiled::testing::{assert_close, run_node_as, values};

    /// Coordinates of flat index `i` over `shape`.
    fn coords(mut i: usize, shape: &[usize]) -> Vec<usize> {
        let mut c = vec![0; shape.len()];
        for d in (0..shape.len()).rev() {
            c[d] = i % shape[d];
            i /= shape[d];
        }
        c
    }

    /// A direct convolution on the host: every output element sums its window.
    fn reference(x: &[f32], xs: &[usize], w: &[f32], ws: &[usize], bias: Option<&[f32]>, s: &[usize], d: &[usize], p: &[usize], group: usize, ys: &[usize]) -> Vec<f64> {
        let sp = xs.len() - 2;
        let (cg, mg) = (ws[1], ws[0] / group);
        let ks = &ws[2..];
        let kt: usize = ks.iter().product();
        let n_out: usize = ys.iter().product();
        (0..n_out)
            .map(|i| {
                let yc = coords(i, ys);
                let (n, oc) = (yc[0], yc[1]);
                let g = oc / mg;
                let mut acc = bias.map_or(0.0, |b| b[oc] as f64);
                for ci in 0..cg {
                    for t in 0..kt {
                        let tc = coords(t, ks);
                        let mut xi = n * xs[1] + g * cg + ci;
                        let mut inside = true;
                        for a in 0..sp {
                            let pos = (yc[2 + a] * s[a] + tc[a] * d[a]) as i64 - p[a] as i64;
                            inside &= pos >= 0 && pos < xs[2 + a] as i64;
                            xi = xi * xs[2 + a] + pos.max(0) as usize;
                        }
                        if inside {
                            acc += x[xi] as f64 * w[(oc * cg + ci) * kt + t] as f64;
                        }
                    }
                }
                acc
            })
            .collect()
    }

    fn check(xs: &[usize], ws: &[usize], group: usize, s: &[usize], d: &[usize], pads: &[usize], bias: bool) {
        let sp = xs.len() - 2;
        let mut ys = vec![xs[0], ws[0]];
        for a in 0..sp {
            ys.push((xs[2 + a] + pads[a] + pads[sp + a] - d[a] * (ws[2 + a] - 1) - 1) / s[a] + 1);
        }
        let x = values(xs.iter().product(), 7);
        let w = values(ws.iter().product(), 8);
        let b = values(ws[0], 9);
        let ints = |v: &[usize]| AttrValue::Ints(v.iter().map(|&x| x as i64).collect());
        let attrs = vec![("group", AttrValue::Int(group as i64)), ("strides", ints(s)), ("dilations", ints(d)), ("pads", ints(pads))];
        let bs = [ws[0]];
        let mut inputs = vec![Some((xs, &x[..])), Some((ws, &w[..]))];
        if bias {
            inputs.push(Some((&bs[..], &b[..])));
        }
        let want = reference(&x, xs, &w, ws, bias.then_some(&b[..]), s, d, pads, group, &ys);
        for cpu in [true, false] {
            let got = run_node_as(super::CONV.name, attrs.clone(), &inputs, 1, cpu).unwrap();
            assert_eq!(got[0].1, ys);
            assert_close(&got[0].0, &want, &format!("Conv x {xs:?} w {ws:?} group {group} (CPU kernel {cpu})"));
        }
    }

    #[test]
    fn tiled_grouped_strided_dilated_2d() {
        // 8 output channels per group: the implicit GEMM; uneven pads, strides and dilations
        check(&[2, 6, 9, 8], &[16, 3, 3, 3], 2, &[2, 1], &[1, 2], &[1, 0, 1, 2], true);
        // the zoo's 3x3 / stride 2 / pad 1 and 7x7 / stride 2 / pad 3 stems
        check(&[1, 3, 15, 15], &[8, 3, 7, 7], 1, &[2, 2], &[1, 1], &[3, 3, 3, 3], false);
        check(&[2, 8, 10, 10], &[16, 8, 3, 3], 1, &[2, 2], &[1, 1], &[1, 1, 1, 1], true);
    }

    #[test]
    fn depthwise_runs_per_element() {
        check(&[1, 4, 7, 7], &[4, 1, 5, 5], 4, &[2, 2], &[1, 1], &[2, 2, 2, 2], true);
        // a channel multiplier of 2 per group
        check(&[2, 3, 6, 5], &[6, 1, 3, 3], 3, &[1, 1], &[1, 1], &[1, 1, 1, 1], false);
    }

    #[test]
    fn one_and_three_spatial_axes() {
        check(&[3, 5, 20], &[12, 5, 4], 1, &[3], &[1], &[2, 1], true);
        check(&[1, 2, 5, 6, 4], &[8, 2, 3, 2, 2], 1, &[1, 2, 1], &[1, 1, 2], &[1, 0, 1, 1, 1, 1], true);
    }

    #[test]
    fn long_contraction_is_split() {
        // K = 64·9 over one output tile
        check(&[1, 64, 6, 6], &[8, 64, 3, 3], 1, &[1, 1], &[1, 1], &[1, 1, 1, 1], true);
    }
}
