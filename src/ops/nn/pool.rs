//! The `MaxPool`, `AveragePool`, `LpPool`, `GlobalAveragePool`, `GlobalMaxPool`, `GlobalLpPool`, `MaxUnpool`: definitions and rules.
#![allow(clippy::too_many_arguments)]
use crate::ops::util::prelude::*;

/// The `MaxPool` op.
pub static MAX_POOL: OpDef = OpDef {
    name: "MaxPool",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 2),
    opsets: Opsets { since: 1, until: None },
    attrs: &[
        AttrSpec::string("auto_pad", AttrCheck::OneOf(&["NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"])),
        AttrSpec::ints("dilations", AttrCheck::AtLeast(1)),
        AttrSpec::ints("kernel_shape", AttrCheck::AtLeast(1)),
        AttrSpec::ints("pads", AttrCheck::AtLeast(0)),
        AttrSpec::ints("strides", AttrCheck::AtLeast(1)),
        AttrSpec::flag("ceil_mode"),
        AttrSpec::flag("storage_order"),
    ],
    shape: Some(pool_shape),
    constraints: Some(pool_constraints),
    analysis: Analysis::Rule(pool_rule),
    gradient: Gradient::Rule(max_pool_grad),
    ..OpDef::BASE
};

/// The `AveragePool` op.
pub static AVERAGE_POOL: OpDef = OpDef {
    name: "AveragePool",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    attrs: &[
        AttrSpec::string("auto_pad", AttrCheck::OneOf(&["NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"])),
        AttrSpec::ints("dilations", AttrCheck::AtLeast(1)),
        AttrSpec::ints("kernel_shape", AttrCheck::AtLeast(1)),
        AttrSpec::ints("pads", AttrCheck::AtLeast(0)),
        AttrSpec::ints("strides", AttrCheck::AtLeast(1)),
        AttrSpec::flag("ceil_mode"),
        AttrSpec::flag("count_include_pad"),
    ],
    shape: Some(pool_shape),
    constraints: Some(pool_constraints),
    analysis: Analysis::Rule(pool_rule),
    gradient: Gradient::Rule(average_pool_grad),
    ..OpDef::BASE
};

/// The `LpPool` op.
pub static LP_POOL: OpDef = OpDef {
    name: "LpPool",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    attrs: &[
        AttrSpec::string("auto_pad", AttrCheck::OneOf(&["NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"])),
        AttrSpec::ints("dilations", AttrCheck::AtLeast(1)),
        AttrSpec::ints("kernel_shape", AttrCheck::AtLeast(1)),
        AttrSpec::ints("pads", AttrCheck::AtLeast(0)),
        AttrSpec::ints("strides", AttrCheck::AtLeast(1)),
        AttrSpec::flag("ceil_mode"),
    ],
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
        AttrSpec::ints("kernel_shape", AttrCheck::AtLeast(1)),
        AttrSpec::ints("pads", AttrCheck::AtLeast(0)),
        AttrSpec::ints("strides", AttrCheck::AtLeast(1)),
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
        let padded = n.attr_ints("pads").is_some_and(|p| p.iter().any(|&x| x != 0)) || n.attr_str("auto_pad").is_some_and(|a| a.starts_with("SAME"));
        let ok = if n.is(&MAX_POOL) || n.is(&GLOBAL_MAX_POOL) || n.is(&GLOBAL_AVERAGE_POOL) {
            true
        } else if n.is(&AVERAGE_POOL) {
            !padded || n.attr_int("count_include_pad", 0) == 0
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
    if n.attr_int("storage_order", 0) != 0 {
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
    let k = n.attr_ints("kernel_shape").map(<[i64]>::to_vec).ok_or_else(|| Ad::err(n, "kernel_shape missing"))?;
    if k.len() != sp {
        return Err(Ad::err(n, "kernel_shape does not match the input rank"));
    }
    if n.attr_ints("dilations").is_some_and(|d| d.iter().any(|&d| d != 1)) {
        return Err(Ad::err(n, "dilations other than 1 are not supported"));
    }
    let c = xd[1].known().ok_or_else(|| Ad::err(n, "the gradient needs a static channel count"))?;
    let strides = n.attr_ints("strides").map(<[i64]>::to_vec).unwrap_or_else(|| vec![1; sp]);
    let mut pads = match n.attr_str("auto_pad").unwrap_or("NOTSET") {
        "NOTSET" => n.attr_ints("pads").map(<[i64]>::to_vec).unwrap_or_else(|| vec![0; 2 * sp]),
        "VALID" => vec![0; 2 * sp],
        other => return Err(Ad::err(n, format!("auto_pad = {other} is not supported"))),
    };
    // Static spatial dims give an output padding; unknown ones a zero pad to
    // the input's runtime shape (as for Conv).
    let x_sp: Option<Vec<i64>> = xd[2..].iter().map(|d| d.known()).collect();
    let count_include_pad = n.attr_int("count_include_pad", 0) != 0;
    let padded_by_model = pads.iter().any(|&p| p != 0);
    if n.attr_int("ceil_mode", 0) != 0 {
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
        let kernel = n.attr_ints("kernel_shape").map(<[i64]>::to_vec).unwrap_or_default();
        let strides = n.attr_ints("strides").map(<[i64]>::to_vec).unwrap_or_else(|| vec![1; spatial]);
        let pads = n.attr_ints("pads").map(<[i64]>::to_vec).unwrap_or_else(|| vec![0; 2 * spatial]);
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
    match n.attr_ints("kernel_shape") {
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
