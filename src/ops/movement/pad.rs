//! The `Pad`, `CenterCropPad`: definitions and rules.
#![allow(clippy::too_many_arguments)]
use crate::ops::util::prelude::*;

// The attributes, with their ONNX defaults (checked when the IR is built).
const MODE: StrAttr = StrAttr::new("mode", AttrCheck::OneOf(&["constant", "reflect", "edge", "wrap"]), "constant");
const PADS: IntsAttr = IntsAttr::new("pads", AttrCheck::Any);
const VALUE: FloatAttr = FloatAttr::new("value", 0.0);
const CROP_AXES: IntsAttr = IntsAttr::new("axes", AttrCheck::Any);

/// The `Pad` op.
pub static PAD: OpDef = OpDef {
    name: "Pad",
    module: module_path!(),
    inputs: Arity::range(2, 4),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    attrs: &[
        MODE.spec,
        PADS.spec,
        VALUE.spec,
    ],
    shape: Some(pad_shape),
    analysis: Analysis::Rule(pad_rule),
    arg_slots: ArgSlots::From(1),
    gradient: Gradient::Rule(pad_grad),
    reads: 2,
    kernel: Some(pad_kernel),
    ..OpDef::BASE
};

/// The `CenterCropPad` op.
pub static CENTER_CROP_PAD: OpDef = OpDef {
    name: "CenterCropPad",
    module: module_path!(),
    inputs: Arity::range(2, 2),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 18, until: None },
    attrs: &[
        CROP_AXES.spec,
    ],
    shape: Some(center_crop_pad_shape),
    analysis: Analysis::Unknown("not written: a change reaching it is unknown"),
    gradient: Gradient::None("not written: an error on the gradient path"),
    kernel: Some(center_crop_pad_kernel),
    ..OpDef::BASE
};

pub(crate) fn pad_rule(c: &mut Ctx, n: &Node, e: &[Option<Affine>]) -> Vec<Flow> {
    if e.iter().skip(1).any(Option::is_some) {
        return one(variant("Pad parameters change"));
    }
    let Some(x) = e.first().and_then(Option::as_ref) else { return one(Flow::Same) };
    let mode = MODE.get(n);
    let Some(r) = c.rank(n.input(0)) else { return one(unknown("Pad rank unknown")) };
    let pads = n.input(1).and_then(|v| c.g.values[v].ints.clone()).and_then(|d| d.iter().map(|x| x.known()).collect::<Option<Vec<i64>>>()).or(PADS.get(n).map(<[i64]>::to_vec));
    let Some(pads) = pads.filter(|p| p.len() == 2 * r || n.input(3).is_some()) else { return one(unknown("Pad amounts unknown")) };
    let padded: Mask = if n.input(3).is_some() { mask::below(r) } else { (0..r).filter(|&a| pads[a] != 0 || pads[a + r] != 0).fold(0, |m, a| m | mask::bit(a)) };
    if mode == "constant" {
        let value_zero = n.input(2).is_none_or(|v| c.g.values[v].scalar == Some(0.0)) && VALUE.get(n) == 0.0;
        if !value_zero && x.scale.is_some() {
            return one(variant("Pad with a non-zero constant"));
        }
        if x.shift.is_some() && padded != 0 {
            return one(variant("zero Pad of a shifted value"));
        }
    } else if x.shift.as_ref().is_some_and(|t| t.mask & padded != 0) {
        return one(variant("Pad of a shift varying along a padded axis"));
    }
    one(remap_effect(c, x, &|m| Some((m, m & padded == 0))))
}

pub(crate) fn pad_grad(ad: &mut Ad, n: &Node, dy: &[Option<String>], need: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    // Pad the input's index map (shifted by one; constant padding reads slot 0)
    // with the same mode; scatter-add the gradient through it.
    let dy = dy0!(n, dy);
    if need.iter().skip(1).any(|&b| b) {
        return Err(Ad::err(n, "the gradient with respect to the pad value is not supported"));
    }
    let x = ad.name(n, 0);
    let idx = index_map(ad, &x, 1);
    let zero = ad.em.scalar_of(0.0, INT64);
    let mut ins = vec![idx, ad.name(n, 1), zero];
    if n.inputs.len() > 3 && n.input(3).is_some() {
        ins.push(ad.name(n, 3));
    }
    let refs: Vec<&str> = ins.iter().map(String::as_str).collect();
    let mode = MODE.get(n).to_string();
    let padded = ad.em.op(&PAD, &refs, vec![a_str("mode", &mode)]);
    Ok(grads(n, vec![(0, scatter_flat(ad, &x, &padded, &dy, 1))]))
}

pub(crate) fn pad_shape(g: &Graph, n: &Node) -> Vec<ShapeOut> {
    let s = shape_of(g, n, 0).map(|s| {
        let r = s.len();
        let pads = ints_of(g, n, 1).or_else(|| PADS.get(n).map(<[i64]>::to_vec));
        // opset 18: pads for the listed axes only
        let axes: Option<Vec<usize>> = match n.input(3) {
            Some(_) => ints_of(g, n, 3).and_then(|a| a.iter().map(|&a| norm_axis(a, r)).collect()),
            None => Some((0..r).collect()),
        };
        let mut out = s.clone();
        match (pads, axes) {
            (Some(p), Some(axes)) if p.len() == 2 * axes.len() => {
                for (k, &a) in axes.iter().enumerate() {
                    out[a] = match s[a] {
                        Dim::Known(x) => x.checked_add(p[k]).and_then(|v| v.checked_add(p[k + axes.len()])).filter(|&v| v >= 0).map_or(Dim::Unknown, Dim::Known),
                        other if p[k] == 0 && p[k + axes.len()] == 0 => other,
                        _ => Dim::Unknown,
                    };
                }
                out
            }
            _ => vec![Dim::Unknown; r],
        }
    });
    vec![(s, None, None, first_dtype(g, n))]
}

pub(crate) fn center_crop_pad_shape(g: &Graph, n: &Node) -> Vec<ShapeOut> {
    let s = match (shape_of(g, n, 0), val(g, n, 1).and_then(|v| v.ints.clone())) {
        (Some(x), Some(z)) => {
            let axes: Option<Vec<usize>> = match CROP_AXES.get(n) {
                Some(a) => a.iter().map(|&a| norm_axis(a, x.len())).collect(),
                None => Some((0..x.len()).collect()),
            };
            axes.filter(|a| a.len() == z.len()).map(|axes| {
                let mut out = x.clone();
                for (a, d) in axes.iter().zip(&z) {
                    out[*a] = *d;
                }
                out
            })
        }
        _ => None,
    };
    vec![(s, None, None, first_dtype(g, n))]
}

fn pad_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    use super::map::Arg;
    let x = ctx.input(0)?;
    let out = ctx.output(0)?;
    let r = x.shape.len();
    let mode = MODE.get(ctx.node);
    // opset 1-10 give pads and value as attributes, later opsets as inputs
    let pads = if ctx.has_input(1) { ctx.host_ints(1)? } else { PADS.get(ctx.node).map(<[i64]>::to_vec).ok_or("pads are missing")? };
    let axes: Vec<usize> = if ctx.has_input(3) {
        ctx.host_ints(3)?.iter().map(|&a| super::map::axis(a, r, "axis")).collect::<Result<_, _>>()?
    } else {
        (0..r).collect()
    };
    if pads.len() != 2 * axes.len() {
        return Err(format!("{} pads for {} axes", pads.len(), axes.len()));
    }
    let mut begin = vec![0i64; r];
    let mut end = vec![0i64; r];
    for (k, &a) in axes.iter().enumerate() {
        begin[a] = pads[k];
        end[a] = pads[k + axes.len()];
    }
    if out.shape.len() != r || (0..r).any(|d| x.shape[d] as i64 + begin[d] + end[d] != out.shape[d] as i64) {
        return Err(format!("pads {pads:?} on {:?} do not give the output's {:?}", x.shape, out.shape));
    }
    let mut extra = Vec::new();
    let fill = if ctx.has_input(2) {
        match ctx.host_scalar(2) {
            Ok(v) => out.elem.literal(v),
            Err(_) => {
                extra.push(Arg::input(ctx, 2, "value")?);
                "value[0]".to_string()
            }
        }
    } else {
        out.elem.literal(VALUE.get(ctx.node) as f64)
    };
    let mut body = String::new();
    let mut ok = Vec::new();
    for d in 0..r {
        let n = x.shape[d] as i64;
        let j = format!("j{d}");
        body.push_str(&format!("    var {j} = i32(c{d}) - {};\n", begin[d]));
        let padded = begin[d] > 0 || end[d] > 0;
        if padded && n == 0 && mode != "constant" {
            return Err(format!("{mode} padding of an empty axis {d}"));
        }
        match mode {
            _ if !padded => {}
            "constant" => ok.push(format!("{j} >= 0 && {j} < {n}")),
            "edge" => body.push_str(&format!("    {j} = clamp({j}, 0, {});\n", n - 1)),
            "wrap" => body.push_str(&format!("    {j} = (({j} % {n}) + {n}) % {n};\n")),
            "reflect" if n == 1 => body.push_str(&format!("    {j} = 0;\n")),
            "reflect" => {
                // a triangle wave of period 2(n-1): numpy's reflect, repeated past one reflection
                let p = 2 * (n - 1);
                body.push_str(&format!("    {j} = (({j} % {p}) + {p}) % {p};\n    {j} = select({j}, {p} - {j}, {j} >= {n});\n"));
            }
            m => return Err(format!("mode '{m}' is not one of constant, reflect, edge, wrap")),
        }
    }
    let guard = if ok.is_empty() { "true".to_string() } else { ok.join(" && ") };
    // out-of-range coordinates are clamped before the load so it stays in bounds
    let cs: Vec<String> = (0..r).map(|d| format!("u32(clamp(j{d}, 0, {}))", (x.shape[d] as i64 - 1).max(0))).collect();
    body.push_str(&format!("    let ok = {guard};\n    let src = {};", super::map::flat(&cs, &x.shape)));
    if x.numel() == 0 {
        // nothing to read: every element is the fill
        let mut args = extra;
        args.push(Arg::output(ctx, 0, "out")?);
        let n = out.numel();
        if n == 0 {
            return Ok(Lowered::default());
        }
        return Ok(Lowered::one(super::map::launch(ctx, "", &args, n, "", &format!("    out[i] = {fill};"))?));
    }
    super::map::gather(ctx, 0, &body, Some(&fill), &extra)
}

fn center_crop_pad_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    // The output's static shape gives the target; each axis is cropped or
    // zero-padded about its centre (the start rounds down on both).
    let x = ctx.input(0)?;
    let out = ctx.output(0)?;
    let r = x.shape.len();
    if out.shape.len() != r {
        return Err(format!("the output's rank {} differs from the input's {r}", out.shape.len()));
    }
    let mut body = String::new();
    let mut ok = vec!["true".to_string()];
    let mut cs = Vec::new();
    for d in 0..r {
        let (i, o) = (x.shape[d] as i64, out.shape[d] as i64);
        let shift = if i > o { (i - o) / 2 } else { -((o - i) / 2) };
        body.push_str(&format!("    let j{d} = i32(c{d}) + {shift};\n"));
        if o > i {
            ok.push(format!("j{d} >= 0 && j{d} < {i}"));
        }
        cs.push(format!("u32(clamp(j{d}, 0, {}))", (i - 1).max(0)));
    }
    if x.numel() == 0 && out.numel() > 0 {
        return Err("padding an empty input".into());
    }
    body.push_str(&format!("    let ok = {};\n    let src = {};", ok.join(" && "), super::map::flat(&cs, &x.shape)));
    super::map::gather(ctx, 0, &body, Some(&out.elem.literal(0.0)), &[])
}
