//! The `MaxPool`, `AveragePool`, `LpPool`, `GlobalAveragePool`, `GlobalMaxPool`, `GlobalLpPool`, `MaxUnpool`: definitions and rules.
#![allow(clippy::too_many_arguments)]
use crate::ops::util::prelude::*;

// The windowed pools' shared attributes (util::window) and each one's own.
const MAX_POOL_ATTRS: [AttrSpec; 7] = extend(POOL_ATTRS, &[POOL_KERNEL_SHAPE.spec, STORAGE_ORDER.spec]);
const AVERAGE_POOL_ATTRS: [AttrSpec; 7] = extend(POOL_ATTRS, &[POOL_KERNEL_SHAPE.spec, COUNT_INCLUDE_PAD.spec]);
const LP_POOL_ATTRS: [AttrSpec; 6] = extend(POOL_ATTRS, &[KERNEL_SHAPE.spec]);

/// The `MaxPool` op.
pub static MAX_POOL: OpDef = OpDef {
    name: "MaxPool",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 2),
    opsets: Opsets { since: 1, until: None },
    attrs: &MAX_POOL_ATTRS,
    shape: Some(pool_shape),
    constraints: Some(pool_constraints),
    analysis: Analysis::Rule(pool_rule),
    gradient: Gradient::Rule(max_pool_grad),
    kernel: Some(max_pool_kernel),
    ..OpDef::BASE
};

/// The `AveragePool` op.
pub static AVERAGE_POOL: OpDef = OpDef {
    name: "AveragePool",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    attrs: &AVERAGE_POOL_ATTRS,
    shape: Some(pool_shape),
    constraints: Some(pool_constraints),
    analysis: Analysis::Rule(pool_rule),
    gradient: Gradient::Rule(average_pool_grad),
    kernel: Some(average_pool_kernel),
    ..OpDef::BASE
};

/// The `LpPool` op.
pub static LP_POOL: OpDef = OpDef {
    name: "LpPool",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    attrs: &LP_POOL_ATTRS,
    shape: Some(pool_shape),
    constraints: Some(pool_constraints),
    analysis: Analysis::Rule(pool_rule),
    gradient: Gradient::None("not written: an error on the gradient path"),
    ..OpDef::BASE
};

/// The `GlobalAveragePool` op.
pub static GLOBAL_AVERAGE_POOL: OpDef = OpDef {
    name: "GlobalAveragePool",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    shape: Some(global_pool_shape),
    analysis: Analysis::Rule(pool_rule),
    gradient: Gradient::Rule(global_average_pool_grad),
    kernel: Some(global_average_pool_kernel),
    ..OpDef::BASE
};

/// The `GlobalMaxPool` op.
pub static GLOBAL_MAX_POOL: OpDef = OpDef {
    name: "GlobalMaxPool",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    shape: Some(global_pool_shape),
    analysis: Analysis::Rule(pool_rule),
    gradient: Gradient::Rule(extremum_grad),
    kernel: Some(global_max_pool_kernel),
    ..OpDef::BASE
};

/// The `GlobalLpPool` op.
pub static GLOBAL_LP_POOL: OpDef = OpDef {
    name: "GlobalLpPool",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    shape: Some(global_pool_shape),
    analysis: Analysis::Rule(pool_rule),
    gradient: Gradient::None("not written: an error on the gradient path"),
    ..OpDef::BASE
};

/// The `MaxUnpool` op.
pub static MAX_UNPOOL: OpDef = OpDef {
    name: "MaxUnpool",
    module: module_path!(),
    inputs: Arity::range(2, 3),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 9, until: None },
    attrs: &[
        POOL_KERNEL_SHAPE.spec,
        PADS.spec,
        STRIDES.spec,
    ],
    shape: Some(max_unpool_shape),
    analysis: Analysis::Unknown("not written: a change reaching it is unknown"),
    gradient: Gradient::None("not written: an error on the gradient path"),
    ..OpDef::BASE
};

pub(crate) fn pool_rule(_: &mut Ctx, n: &Node, e: &[Option<Affine>]) -> Vec<Flow> {
    let x = match data_only(n, e) {
        Ok(Some(x)) => x,
        Ok(None) => return vec![Flow::Same; n.outputs.len().max(1)],
        Err(f) => return one(f),
    };
    let keep = mask::bit(0) | mask::bit(1);
    let mut flows = vec![Flow::Same; n.outputs.len().max(1)];
    if x.scale.as_ref().is_some_and(|s| !mask::within(s.mask, keep)) {
        flows[0] = variant("pooling over a scale that varies over space");
        return flows;
    }
    if let Some(t) = &x.shift {
        let ok = if n.is(&MAX_POOL) || n.is(&GLOBAL_MAX_POOL) || n.is(&GLOBAL_AVERAGE_POOL) {
            true
        } else if n.is(&AVERAGE_POOL) {
            let padded = PADS.get(n).is_some_and(|p| p.iter().any(|&x| x != 0)) || AUTO_PAD.get(n).starts_with("SAME");
            !padded || !COUNT_INCLUDE_PAD.on(n)
        } else {
            false
        };
        if !ok || !mask::within(t.mask, keep) {
            flows[0] = variant(format!("{} of a shifted value", n.op_type));
            return flows;
        }
    }
    flows[0] = changed(x.clone());
    // MaxPool indices are unchanged by per-channel positive scales and shifts.
    flows
}

pub(crate) fn max_pool_grad(ad: &mut Ad, n: &Node, dy: &[Option<String>], _: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    let dy = dy0!(n, dy);
    if STORAGE_ORDER.on(n) {
        return Err(Ad::err(n, "storage_order = 1 is not supported"));
    }
    let Some(idx) = n.output(1).map(|v| ad.g.values[v].name.clone()) else {
        return Err(Ad::err(n, "the Indices output is missing"));
    };
    // Indices address the flattened input; scatter-add the gradient there.
    let x = ad.name(n, 0);
    Ok(grads(n, vec![(0, scatter_flat(ad, &x, &idx, &dy, 0))]))
}

/// A tensor shaped like `x` (plus `extra` trailing slots) that receives `upd`
/// at the flat positions `idx` (both flattened), with addition.
pub(crate) fn scatter_flat(ad: &mut Ad, x: &str, idx: &str, upd: &str, extra: i64) -> String {
    let size = ad.em.op(&SIZE, &[x], vec![]);
    let flat = ad.em.ints(&[-1]);
    let len = ad.em.reshape(&size, &flat);
    let len = if extra > 0 {
        let e = ad.em.ints(&[extra]);
        ad.em.add(&len, &e)
    } else {
        len
    };
    let zeros = ad.em.zeros_of_shape(&len);
    let fi = ad.em.reshape(idx, &flat);
    let fu = ad.em.reshape(upd, &flat);
    let sc = ad.em.op(&SCATTER_ELEMENTS, &[&zeros, &fi, &fu], vec![a_int("axis", 0), a_str("reduction", "add")]);
    if extra > 0 {
        let start = ad.em.ints(&[extra]);
        let end = ad.em.ints(&[i64::MAX]);
        let cut = ad.em.op(&SLICE, &[&sc, &start, &end], vec![]);
        return ad.em.reshape_like(&cut, x);
    }
    ad.em.reshape_like(&sc, x)
}

/// The flat index of every element of `x`, shaped like `x`, plus `offset`.
pub(crate) fn index_map(ad: &mut Ad, x: &str, offset: i64) -> String {
    let size = ad.em.op(&SIZE, &[x], vec![]);
    let start = ad.em.scalar_of(offset as f64, INT64);
    let end = ad.em.add(&size, &start);
    let one = ad.em.scalar_of(1.0, INT64);
    let r = ad.em.op(&RANGE, &[&start, &end, &one], vec![]);
    ad.em.reshape_like(&r, x)
}

pub(crate) fn average_pool_grad(ad: &mut Ad, n: &Node, dy: &[Option<String>], _: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    let dy = dy0!(n, dy);
    let xd = ad.dims(n.input(0)).ok_or_else(|| Ad::err(n, "input shape unknown"))?;
    let r = xd.len();
    if r < 3 {
        return Err(Ad::err(n, "input of rank < 3"));
    }
    let sp = r - 2;
    let k = KERNEL_SHAPE.get(n).map(<[i64]>::to_vec).ok_or_else(|| Ad::err(n, "kernel_shape missing"))?;
    if k.len() != sp {
        return Err(Ad::err(n, "kernel_shape does not match the input rank"));
    }
    if DILATIONS.get(n).is_some_and(|d| d.iter().any(|&d| d != 1)) {
        return Err(Ad::err(n, "dilations other than 1 are not supported"));
    }
    let c = xd[1].known().ok_or_else(|| Ad::err(n, "the gradient needs a static channel count"))?;
    let Window { strides, pads: explicit, auto_pad, .. } = Window::of(n, sp);
    let mut pads = match auto_pad.as_str() {
        "NOTSET" => explicit,
        "VALID" => vec![0; 2 * sp],
        other => return Err(Ad::err(n, format!("auto_pad = {other} is not supported"))),
    };
    // Static spatial dims give an output padding; unknown ones a zero pad to
    // the input's runtime shape (as for Conv).
    let x_sp: Option<Vec<i64>> = xd[2..].iter().map(|d| d.known()).collect();
    let (ceil_mode, count_include_pad) = (CEIL_MODE.on(n), COUNT_INCLUDE_PAD.on(n));
    let padded_by_model = pads.iter().any(|&p| p != 0);
    if ceil_mode {
        // A partial last window (timm's DownsampleAvg, NFNet) reads past the end
        // padding: it is the floor-mode pool with that much more end padding, whose
        // divisor counts only the input's elements, so the gradient is the padded
        // pool's with the count divisor below.
        let actual = ad.dims(n.output(0)).and_then(|d| d[2..].iter().map(|d| d.known()).collect::<Option<Vec<i64>>>());
        let (Some(x_sp), Some(out)) = (&x_sp, actual) else {
            return Err(Ad::err(n, "ceil_mode = 1 needs static spatial dims"));
        };
        if pads.len() != 2 * sp || strides.len() != sp || out.len() != sp {
            return Err(Ad::err(n, "pads or strides do not match the input rank"));
        }
        for i in 0..sp {
            let extra = (out[i] - 1).checked_mul(strides[i]).and_then(|v| v.checked_add(k[i] - x_sp[i] - pads[i] - pads[sp + i]));
            match extra {
                Some(0) => {}
                Some(e) if e > 0 && e < k[i] => {
                    if count_include_pad && padded_by_model {
                        return Err(Ad::err(n, "ceil_mode = 1 with a partial last window and count_include_pad = 1 over pads is not supported"));
                    }
                    pads[sp + i] += e;
                }
                _ => return Err(Ad::err(n, "ceil_mode = 1: the output dims do not match the input's")),
            }
        }
    }
    let ones = vec![1; sp];
    let opad = match &x_sp {
        Some(x_sp) => Some(output_padding(n, x_sp, &k, &strides, &ones, &pads)?),
        None => {
            check_window(n, &k, &strides, &ones, &pads)?;
            None
        }
    };
    let area = k.iter().try_fold(1i64, |a, &b| a.checked_mul(b)).ok_or_else(|| Ad::err(n, "kernel size overflows"))?;
    let wdims: Vec<i64> = [c, 1].into_iter().chain(k.iter().copied()).collect();
    let count = wdims.iter().try_fold(1i64, |a, &b| a.checked_mul(b)).filter(|&v| v <= 1 << 24).ok_or_else(|| Ad::err(n, "kernel too large"))?;
    let w = ad.em.constant(crate::rewrite::emit::tensor_f(ad.em.float, &wdims, &vec![1.0; count as usize]));
    let conv_attrs = |transposed: bool| {
        let p = if transposed && opad.is_none() { begin_pads_only(&pads) } else { pads.clone() };
        let mut a = vec![a_ints("strides", &strides), a_ints("pads", &p), a_int("group", c), a_ints("kernel_shape", &k)];
        if let (true, Some(op)) = (transposed, &opad) {
            a.push(a_ints("output_padding", op));
        }
        a
    };
    let x = ad.name(n, 0);
    let padded = pads.iter().any(|&p| p != 0);
    // With count_include_pad the model's own pads count, and a partial window's
    // overflow only arises above without them: then the divisor counts real elements.
    let scaled = if (count_include_pad && padded_by_model) || !padded {
        ad.em.mul_scalar(&dy, 1.0 / area as f64)
    } else {
        // The divisor is the number of real (unpadded) elements under each window.
        let s = ad.em.shape(&x);
        let zeros = ad.em.zeros_of_shape(&s);
        let one = ad.em.scalar(1.0);
        let ones_x = ad.em.add(&zeros, &one);
        let cnt = ad.em.op(&CONV, &[&ones_x, &w], conv_attrs(false));
        ad.em.div(&dy, &cnt)
    };
    let g = ad.em.op(&CONV_TRANSPOSE, &[&scaled, &w], conv_attrs(true));
    Ok(grads(n, vec![(0, if opad.is_some() { g } else { fit_to_input(ad, &g, &x, r) })]))
}

/// Pads with zeros at the begin and end of the spatial dims, for a transposed
/// convolution that crops only at the begin (its end is cut by [`fit_to_input`]).
pub(crate) fn begin_pads_only(pads: &[i64]) -> Vec<i64> {
    let sp = pads.len() / 2;
    pads[..sp].iter().copied().chain(std::iter::repeat_n(0, sp)).collect()
}

/// Cuts or zero-pads the trailing spatial dims of `part` to the runtime shape
/// of `like`. `part` is a transposed convolution cropped only at the begin:
/// its rows past `like`'s end are the forward's end padding, and rows it lacks
/// lie past the last window and get no gradient.
pub(crate) fn fit_to_input(ad: &mut Ad, part: &str, like: &str, rank: usize) -> String {
    let want = ad.em.op(&SHAPE, &[like], vec![a_int("start", 2)]);
    let starts = ad.em.ints(&vec![0; rank - 2]);
    let axes: Vec<i64> = (2..rank as i64).collect();
    let axes = ad.em.ints(&axes);
    let cut = ad.em.op(&SLICE, &[part, &starts, &want, &axes], vec![]);
    let got = ad.em.op(&SHAPE, &[&cut], vec![a_int("start", 2)]);
    let missing = ad.em.sub(&want, &got);
    let lead = ad.em.ints(&vec![0; rank + 2]);
    let pads = ad.em.op(&CONCAT, &[&lead, &missing], vec![a_int("axis", 0)]);
    ad.em.op(&PAD, &[&cut, &pads], vec![])
}

pub(crate) fn global_average_pool_grad(ad: &mut Ad, n: &Node, dy: &[Option<String>], _: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    let dy = dy0!(n, dy);
    let (x, y) = (ad.name(n, 0), ad.out(n, 0));
    let s = ad.em.shape(&x);
    let e = ad.em.op(&EXPAND, &[&dy, &s], vec![]);
    let count = size_ratio(ad, &x, &y);
    Ok(grads(n, vec![(0, ad.em.div(&e, &count))]))
}

/// `size(x) / size(y)` in the float type: elements reduced into each output.
pub(crate) fn size_ratio(ad: &mut Ad, x: &str, y: &str) -> String {
    let sx = ad.em.op(&SIZE, &[x], vec![]);
    let sy = ad.em.op(&SIZE, &[y], vec![]);
    let q = ad.em.div(&sx, &sy);
    ad.em.cast(&q, ad.em.float)
}

pub(crate) fn global_pool_shape(g: &Graph, n: &Node) -> Vec<ShapeOut> {
    let s = shape_of(g, n, 0).map(|s| s.iter().enumerate().map(|(i, d)| if i < 2 { *d } else { Dim::Known(1) }).collect());
    vec![(s, None, None, first_dtype(g, n))]
}

pub(crate) fn max_unpool_shape(g: &Graph, n: &Node) -> Vec<ShapeOut> {
    let s = shape_of(g, n, 0).filter(|x| x.len() >= 2).map(|x| {
        if let Some(z) = ints_of(g, n, 2).filter(|z| z.len() == x.len()) {
            return z.into_iter().map(Dim::Known).collect();
        }
        let spatial = x.len() - 2;
        let kernel = KERNEL_SHAPE.get(n).map(<[i64]>::to_vec).unwrap_or_default();
        let Window { strides, pads, .. } = Window::of(n, spatial);
        let mut out = x[..2].to_vec();
        for i in 0..spatial {
            let d = match (x[2 + i], kernel.get(i), strides.get(i), pads.get(i), pads.get(i + spatial)) {
                (Dim::Known(d), Some(&k), Some(&st), Some(&p0), Some(&p1)) => (d - 1)
                    .checked_mul(st)
                    .and_then(|v| v.checked_add(k))
                    .and_then(|v| v.checked_sub(p0))
                    .and_then(|v| v.checked_sub(p1))
                    .filter(|&v| v >= 0)
                    .map_or(Dim::Unknown, Dim::Known),
                _ => Dim::Unknown,
            };
            out.push(d);
        }
        out
    });
    vec![(s, None, None, first_dtype(g, n))]
}

/// The input has the kernel's rank plus batch and channel.
pub(crate) fn pool_constraints(g: &Graph, n: &Node) -> Vec<(usize, Vec<Dim>)> {
    let out0 = n.output(0).and_then(|v| g.values[v].shape.clone());
    match KERNEL_SHAPE.get(n) {
        Some(k) if !k.is_empty() && k.len() < 62 => {
            let mut hint = vec![Dim::Unknown; k.len() + 2];
            if let Some(o) = out0.as_ref().filter(|o| o.len() == hint.len()) {
                hint[0] = o[0];
                hint[1] = o[1];
            }
            vec![(0, hint)]
        }
        _ => Vec::new(),
    }
}

fn max_pool_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    pool_lowering(ctx, true)
}

fn average_pool_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    pool_lowering(ctx, false)
}

/// MaxPool (`max`) or AveragePool: one invocation per output element over its
/// window. MaxPool's Indices address the flattened input (row-major, or with
/// `storage_order = 1` column-major over the spatial axes), taking the first
/// maximum; padding never wins. AveragePool divides by the window's input
/// elements, or with `count_include_pad` by those inside the padded input.
fn pool_lowering(ctx: &KernelCtx, max: bool) -> Result<Lowered, String> {
    use super::window_kernel::{check_size, flatten, geometry, unflatten};
    use std::fmt::Write;
    let (x, y) = (ctx.input(0)?, ctx.output(0)?);
    for (what, t) in [("X", x), ("Y", y)] {
        check_size(what, t)?;
        if t.elem != Elem::F32 {
            return Err(format!("{what} is {:?}; the kernel computes float32", t.elem));
        }
    }
    let r = x.shape.len();
    if r < 3 {
        return Err(format!("X of shape {:?}: a pool needs batch, channel and spatial axes", x.shape));
    }
    let k: Vec<usize> = match KERNEL_SHAPE.get(ctx.node) {
        Some(k) if k.len() == r - 2 && k.iter().all(|&v| (1..=1 << 20).contains(&v)) => k.iter().map(|&v| v as usize).collect(),
        other => return Err(format!("kernel_shape {other:?} must hold {} values in 1..=2^20", r - 2)),
    };
    if y.shape.len() != r || y.shape[..2] != x.shape[..2] {
        return Err(format!("Y of shape {:?} does not keep X's {:?} batch and channels", y.shape, x.shape));
    }
    let geo = geometry(ctx.node, &x.shape, &y.shape, &k, false)?;
    let indices = match ctx.outputs.get(1).and_then(Option::as_ref) {
        Some(t) if max => {
            if t.shape != y.shape || t.elem != Elem::I32 {
                return Err(format!("Indices of shape {:?} must be integers shaped like Y {:?}", t.shape, y.shape));
            }
            true
        }
        _ => false,
    };
    // MaxPool has storage_order, AveragePool count_include_pad
    let (column_major, include_pad) = (STORAGE_ORDER.get_if_declared(ctx.node) != 0, COUNT_INCLUDE_PAD.get_if_declared(ctx.node) != 0);
    let p: usize = geo.output.iter().product();
    let s_in: usize = geo.input.iter().product();
    let kt: usize = k.iter().product();
    let mut body = String::new();
    let _ = writeln!(body, "    let nc = i / {p}u;\n    let o = i % {p}u;");
    body.push_str(&unflatten("o", "o", &geo.output));
    if max {
        let _ = writeln!(body, "    var best = 0.0;\n    var at = 0u;\n    var found = false;");
    } else {
        let _ = writeln!(body, "    var sum = 0.0;\n    var count = 0u;\n    var padded = 0u;");
    }
    let _ = writeln!(body, "    for (var t = 0u; t < {kt}u; t++) {{");
    body.push_str(&unflatten("t", "t", &k));
    let (mut inside, mut in_pad, mut coords) = (Vec::new(), Vec::new(), Vec::new());
    for d in 0..k.len() {
        let (s, dl, pb, pe, len) = (geo.strides[d], geo.dilations[d], geo.begin[d], geo.end[d], geo.input[d]);
        let _ = writeln!(body, "        let p{d} = i32(o{d} * {s}u + t{d} * {dl}u) - ({pb});");
        inside.push(format!("p{d} >= 0 && p{d} < {len}"));
        in_pad.push(format!("p{d} < {}", len as i64 + pe));
        coords.push(format!("u32(p{d})"));
    }
    let _ = writeln!(body, "        if ({}) {{", inside.join(" && "));
    let _ = writeln!(body, "            let v = x[{}];", flatten("nc", &coords, &geo.input));
    if max {
        let flat = if column_major {
            let rev: Vec<String> = coords.iter().rev().cloned().collect();
            let dims: Vec<usize> = geo.input.iter().rev().copied().collect();
            format!("nc * {s_in}u + {}", flatten("0u", &rev, &dims))
        } else {
            flatten("nc", &coords, &geo.input)
        };
        let _ = writeln!(body, "            if (!found || v > best) {{ best = v; at = {flat}; found = true; }}");
    } else {
        let _ = writeln!(body, "            sum += v;\n            count += 1u;");
    }
    body.push_str("        }\n");
    if !max && include_pad {
        let _ = writeln!(body, "        if ({}) {{ padded += 1u; }}", in_pad.join(" && "));
    }
    body.push_str("    }\n");
    if max {
        body.push_str("    out[i] = best;\n");
        if indices {
            body.push_str("    out_indices[i] = i32(at);\n");
        }
    } else {
        let _ = writeln!(body, "    out[i] = sum / f32({});", if include_pad { "padded" } else { "count" });
    }
    let mut decls = vec![("x", Elem::F32), ("out", Elem::F32)];
    let mut binds = vec![kern::Bind::Input(0), kern::Bind::Output(0)];
    if indices {
        decls.push(("out_indices", Elem::I32));
        binds.push(kern::Bind::Output(1));
    }
    let total = y.numel();
    let wgsl = format!("{}{}", kern::bindings(&decls), kern::elementwise_main(total, &body));
    Ok(Lowered::one(kern::Launch { label: kern::label(ctx.node, ""), wgsl, binds, groups: kern::groups_for(total, &ctx.limits) }))
}

fn global_average_pool_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    global_pool_lowering(ctx, false)
}

fn global_max_pool_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    global_pool_lowering(ctx, true)
}

/// One invocation per batch element and channel, over all spatial positions.
fn global_pool_lowering(ctx: &KernelCtx, max: bool) -> Result<Lowered, String> {
    let (x, y) = (ctx.input(0)?, ctx.output(0)?);
    super::window_kernel::check_size("X", x)?;
    if x.elem != Elem::F32 || y.elem != Elem::F32 {
        return Err(format!("X is {:?}; the kernel computes float32", x.elem));
    }
    if x.shape.len() < 2 {
        return Err(format!("X of shape {:?} has no batch and channel axes", x.shape));
    }
    let nc = x.shape[0] * x.shape[1];
    if y.numel() != nc {
        return Err(format!("Y of shape {:?} for X of shape {:?}", y.shape, x.shape));
    }
    let s: usize = x.shape[2..].iter().product();
    let body = if max {
        format!("    var m = x[i * {s}u];\n    for (var j = 1u; j < {s}u; j++) {{ m = max(m, x[i * {s}u + j]); }}\n    out[i] = m;")
    } else {
        format!("    var sum = 0.0;\n    for (var j = 0u; j < {s}u; j++) {{ sum += x[i * {s}u + j]; }}\n    out[i] = sum / {};", kern::f32_literal(s as f32))
    };
    if s == 0 {
        return Err(format!("X of shape {:?} has no spatial elements", x.shape));
    }
    let wgsl = format!("{}{}", kern::bindings(&[("x", Elem::F32), ("out", Elem::F32)]), kern::elementwise_main(nc, &body));
    Ok(Lowered::one(kern::Launch { label: kern::label(ctx.node, ""), wgsl, binds: vec![kern::Bind::Input(0), kern::Bind::Output(0)], groups: kern::groups_for(nc, &ctx.limits) }))
}

#[cfg(all(test, feature = "gpu"))]
mod tests {
    use crate::ir::AttrValue;
    use crate::ops::nn::tiled::testing::{run_node, values};

    #[test]
    fn max_pool_indices_of_the_resnet_stem() {
        // 3x3 / stride 2 / pad 1 with Indices, as the step graph's gradient reads them
        let (n, c, h, w) = (2, 3, 7, 6);
        let x = values(n * c * h * w, 21);
        let attrs = vec![("kernel_shape", AttrValue::Ints(vec![3, 3])), ("strides", AttrValue::Ints(vec![2, 2])), ("pads", AttrValue::Ints(vec![1, 1, 1, 1]))];
        let xs = [n, c, h, w];
        let got = run_node(super::MAX_POOL.name, attrs, &[Some((&xs[..], &x[..]))], 2).unwrap();
        let (oh, ow) = (4, 3);
        assert_eq!(got[0].1, [n, c, oh, ow]);
        for nc in 0..n * c {
            for i in 0..oh {
                for j in 0..ow {
                    let mut best = (f32::NEG_INFINITY, 0usize);
                    for a in 0..3 {
                        for b in 0..3 {
                            let (y, z) = ((i * 2 + a) as i64 - 1, (j * 2 + b) as i64 - 1);
                            if y >= 0 && y < h as i64 && z >= 0 && z < w as i64 {
                                let at = nc * h * w + y as usize * w + z as usize;
                                if x[at] > best.0 {
                                    best = (x[at], at);
                                }
                            }
                        }
                    }
                    let o = (nc * oh + i) * ow + j;
                    assert_eq!(got[0].0[o], best.0, "max at {o}");
                    assert_eq!(got[1].0[o] as usize, best.1, "index at {o}");
                }
            }
        }
    }

    #[test]
    fn average_pool_ceil_mode_counts_only_the_input() {
        // NFNet's 2x2 / stride 2 / ceil_mode: the last window is partial
        let x = values(2 * 5 * 5, 22);
        let attrs = vec![("kernel_shape", AttrValue::Ints(vec![2, 2])), ("strides", AttrValue::Ints(vec![2, 2])), ("ceil_mode", AttrValue::Int(1))];
        let xs = [1, 2, 5, 5];
        let got = run_node(super::AVERAGE_POOL.name, attrs, &[Some((&xs[..], &x[..]))], 1).unwrap();
        assert_eq!(got[0].1, [1, 2, 3, 3]);
        for c in 0..2 {
            for i in 0..3 {
                for j in 0..3 {
                    let mut s = 0.0f64;
                    let mut k = 0;
                    for a in 0..2 {
                        for b in 0..2 {
                            let (y, z) = (i * 2 + a, j * 2 + b);
                            if y < 5 && z < 5 {
                                s += x[c * 25 + y * 5 + z] as f64;
                                k += 1;
                            }
                        }
                    }
                    let g = got[0].0[(c * 3 + i) * 3 + j] as f64;
                    assert!((g - s / k as f64).abs() < 1e-5, "({c}, {i}, {j}): {g} vs {}", s / k as f64);
                }
            }
        }
    }
}
