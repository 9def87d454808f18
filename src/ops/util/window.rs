//! The windows of convolutions and pools: the attributes (strides,
//! dilations, pads, auto_pad) read once with their defaults, and the output
//! sizes they give.
#![allow(clippy::too_many_arguments)]
use crate::ops::util::prelude::*;

/// The padding modes of `auto_pad`.
const PAD_MODES: AttrCheck = AttrCheck::OneOf(&["NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"]);
// The window attributes of convolutions and pools, with their ONNX defaults
// (the lists' defaults depend on the input's rank: one per spatial axis).
pub(crate) const AUTO_PAD: StrAttr = StrAttr::new("auto_pad", PAD_MODES, "NOTSET");
pub(crate) const STRIDES: IntsAttr = IntsAttr::new("strides", AttrCheck::AtLeast(1));
pub(crate) const DILATIONS: IntsAttr = IntsAttr::new("dilations", AttrCheck::AtLeast(1));
pub(crate) const PADS: IntsAttr = IntsAttr::new("pads", AttrCheck::AtLeast(0));
/// Optional for convolutions (the weight's spatial shape), required for pools.
pub(crate) const KERNEL_SHAPE: IntsAttr = IntsAttr::new("kernel_shape", AttrCheck::AtLeast(1));
/// Required by the pools that have no weight to take it from.
pub(crate) const POOL_KERNEL_SHAPE: IntsAttr = IntsAttr::required("kernel_shape", AttrCheck::AtLeast(1));
pub(crate) const GROUP: IntAttr = IntAttr::new("group", AttrCheck::AtLeast(1), 1);
pub(crate) const OUTPUT_PADDING: IntsAttr = IntsAttr::new("output_padding", AttrCheck::AtLeast(0));
pub(crate) const OUTPUT_SHAPE: IntsAttr = IntsAttr::new("output_shape", AttrCheck::Any);
pub(crate) const CEIL_MODE: IntAttr = IntAttr::flag("ceil_mode", false);
pub(crate) const COUNT_INCLUDE_PAD: IntAttr = IntAttr::flag("count_include_pad", false);
pub(crate) const STORAGE_ORDER: IntAttr = IntAttr::flag("storage_order", false);

/// Conv's, ConvInteger's and QLinearConv's attributes (ConvTranspose extends them).
pub(crate) const CONV_ATTRS: &[AttrSpec] = &[AUTO_PAD.spec, DILATIONS.spec, KERNEL_SHAPE.spec, PADS.spec, STRIDES.spec, GROUP.spec];
/// The windowed pools' shared attributes (MaxPool, AveragePool, LpPool), but
/// kernel_shape (LpPool-1 does not require it; the others do).
pub(crate) const POOL_ATTRS: &[AttrSpec] = &[AUTO_PAD.spec, DILATIONS.spec, PADS.spec, STRIDES.spec, CEIL_MODE.spec];

/// A window's attributes with the ONNX defaults (strides and dilations 1, pads 0, `NOTSET`).
pub(crate) struct Window {
    pub strides: Vec<i64>,
    pub dilations: Vec<i64>,
    pub pads: Vec<i64>,
    pub auto_pad: String,
}

impl Window {
    /// The window of node `n` over `spatial` axes.
    pub(crate) fn of(n: &Node, spatial: usize) -> Window {
        Window {
            strides: STRIDES.get(n).map(<[i64]>::to_vec).unwrap_or_else(|| vec![1; spatial]),
            // MaxUnpool has no dilations, DeformConv no auto_pad
            dilations: DILATIONS.get_if_declared(n).map(<[i64]>::to_vec).unwrap_or_else(|| vec![1; spatial]),
            pads: PADS.get(n).map(<[i64]>::to_vec).unwrap_or_else(|| vec![0; 2 * spatial]),
            auto_pad: AUTO_PAD.get_if_declared(n).to_string(),
        }
    }
}


pub(crate) fn conv_shape(g: &Graph, n: &Node) -> Vec<Out> {
    let (x, w) = (shape_of(g, n, 0), shape_of(g, n, 1));
    // The op's definition: input, weight and output all have the weight's rank.
    let x = x.or_else(|| w.as_ref().map(|w| vec![Dim::Unknown; w.len()]));
    let (Some(x), Some(w)) = (x, w) else {
        return vec![(shape_of(g, n, 0).map(|s| vec![Dim::Unknown; s.len()]), None, None, first_dtype(g, n))];
    };
    if x.len() < 2 || x.len() != w.len() {
        return vec![(Some(vec![Dim::Unknown; x.len()]), None, None, first_dtype(g, n))];
    }
    let spatial = x.len().saturating_sub(2);
    let transpose = n.is(&CONV_TRANSPOSE);
    let group = GROUP.get(n).max(1);
    let channels = if transpose { arith(w.get(1).copied().unwrap_or(Dim::Unknown), Dim::Known(group), Arith::Mul) } else { w.first().copied().unwrap_or(Dim::Unknown) };
    let mut out = vec![x.first().copied().unwrap_or(Dim::Unknown), channels];
    let Window { strides, dilations: dil, pads, auto_pad } = Window::of(n, spatial);
    let auto_pad = auto_pad.as_str();
    for i in 0..spatial {
        let d = match (x.get(2 + i).and_then(|d| d.known()), w.get(2 + i).and_then(|d| d.known())) {
            (Some(xi), Some(k)) if strides.len() == spatial && dil.len() == spatial && pads.len() == 2 * spatial && strides[i] > 0 => {
                // Checked: hostile attributes give an unknown dim, never an overflow.
                let (s, p0, p1) = (strides[i], pads[i], pads[i + spatial]);
                let ek = dil[i].checked_mul(k - 1).and_then(|v| v.checked_add(1));
                let size = ek.and_then(|ek| {
                    if transpose {
                        let op = OUTPUT_PADDING.get(n).and_then(|p| p.get(i).copied()).unwrap_or(0);
                        if auto_pad == "NOTSET" {
                            s.checked_mul(xi - 1)?.checked_add(op)?.checked_add(ek)?.checked_sub(p0)?.checked_sub(p1)
                        } else {
                            xi.checked_mul(s)
                        }
                    } else if auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER" {
                        Some(xi.checked_add(s - 1)? / s)
                    } else if auto_pad == "VALID" {
                        Some(xi.checked_sub(ek)? / s + 1)
                    } else {
                        Some(xi.checked_add(p0)?.checked_add(p1)?.checked_sub(ek)? / s + 1)
                    }
                });
                size.filter(|&v| v >= 0).map_or(Dim::Unknown, Dim::Known)
            }
            _ => Dim::Unknown,
        };
        out.push(d);
    }
    // An explicit output_shape fixes ConvTranspose's spatial dims (pads follow from it).
    if let Some(os) = transpose.then(|| OUTPUT_SHAPE.get(n)).flatten() {
        let tail = if os.len() >= spatial { &os[os.len() - spatial..] } else { &[][..] };
        for (i, &d) in tail.iter().enumerate() {
            out[2 + i] = if d >= 0 { Dim::Known(d) } else { Dim::Unknown };
        }
    }
    vec![(Some(out), None, None, first_dtype(g, n))]
}

pub(crate) fn pool_shape(g: &Graph, n: &Node) -> Vec<Out> {
    let kernel = KERNEL_SHAPE.get(n).map(<[i64]>::to_vec).unwrap_or_default();
    // The op's definition: the input has the kernel's rank plus batch and channel.
    let x = shape_of(g, n, 0).or_else(|| (!kernel.is_empty() && kernel.len() < 62).then(|| vec![Dim::Unknown; kernel.len() + 2]));
    let Some(x) = x else { return Vec::new() };
    if x.len() < 2 {
        // An invalid model (a pool needs batch and channel axes): no shape.
        return Vec::new();
    }
    let spatial = x.len() - 2;
    let Window { strides, dilations: dil, pads, auto_pad } = Window::of(n, spatial);
    let ceil = CEIL_MODE.get_if_declared(n) != 0;
    let auto_pad = auto_pad.as_str();
    let mut out = vec![x[0], x.get(1).copied().unwrap_or(Dim::Unknown)];
    for i in 0..spatial {
        let d = match x.get(2 + i).and_then(|d| d.known()) {
            Some(xi) if kernel.len() == spatial && strides.len() == spatial && pads.len() == 2 * spatial && dil.len() == spatial && strides[i] > 0 => {
                let st = strides[i];
                let size = (|| {
                    if auto_pad.starts_with("SAME") {
                        return Some(xi.checked_add(st - 1)? / st);
                    }
                    let ek = dil[i].checked_mul(kernel[i] - 1)?.checked_add(1)?;
                    let num = xi.checked_add(pads[i])?.checked_add(pads[i + spatial])?.checked_sub(ek)?;
                    let mut o = if ceil { num.checked_add(st - 1)?.div_euclid(st) + 1 } else { num.div_euclid(st) + 1 };
                    if ceil && (o - 1).checked_mul(st)? >= xi.checked_add(pads[i])? {
                        o -= 1;
                    }
                    Some(o)
                })();
                size.filter(|&v| v >= 0).map_or(Dim::Unknown, Dim::Known)
            }
            _ => Dim::Unknown,
        };
        out.push(d);
    }
    let s = Some(out);
    vec![(s.clone(), None, None, first_dtype(g, n)), (s, None, None, Some(DType::I64))]
}
