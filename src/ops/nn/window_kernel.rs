//! Window geometry for the convolution and pooling kernels: the attributes
//! checked against the static shapes, and the begin pads the output size and
//! `auto_pad` imply (the shape rule already chose the output size; the kernel
//! only needs where each window starts).
use crate::exec::kernel::TensorInfo;
use crate::ir::Node;
use crate::ops::IntsAttr;
use crate::ops::util::window::{AUTO_PAD, DILATIONS, KERNEL_SHAPE, OUTPUT_PADDING, OUTPUT_SHAPE, PADS, STRIDES};
use std::fmt::Write;

/// A window's resolved geometry over the spatial axes.
#[derive(Debug, Clone)]
pub(crate) struct Geometry {
    /// Input spatial dims.
    pub input: Vec<usize>,
    /// Output spatial dims.
    pub output: Vec<usize>,
    /// Strides.
    pub strides: Vec<usize>,
    /// Dilations.
    pub dilations: Vec<usize>,
    /// Padding before each axis (negative: the window starts inside; ConvTranspose's output_shape).
    pub begin: Vec<i64>,
    /// Padding after each axis.
    pub end: Vec<i64>,
}

/// An ints attribute of `len` positive values (1 each when absent).
fn positive(node: &Node, attr: &IntsAttr, len: usize) -> Result<Vec<usize>, String> {
    match attr.get(node) {
        None => Ok(vec![1; len]),
        Some(v) if v.len() == len && v.iter().all(|&x| (1..=1 << 20).contains(&x)) => Ok(v.iter().map(|&x| x as usize).collect()),
        Some(v) => Err(format!("{} {v:?} must hold {len} values in 1..=2^20", attr.spec.name)),
    }
}

/// The largest element count a kernel indexes with u32 arithmetic.
pub(crate) const MAX_ELEMENTS: usize = 1 << 31;

/// Errs when a tensor is too large for the kernels' 32-bit index arithmetic.
pub(crate) fn check_size(what: &str, t: &TensorInfo) -> Result<(), String> {
    let n = t.shape.iter().try_fold(1usize, |a, &b| a.checked_mul(b));
    match n {
        Some(n) if n < MAX_ELEMENTS => Ok(()),
        _ => Err(format!("{what} of shape {:?} has 2^31 elements or more; the kernels index with 32 bits", t.shape)),
    }
}

/// The geometry of a convolution or pool (`transpose`: ConvTranspose, whose
/// output grows by the strides). `x` and `y` are the data input's and the
/// output's full shapes (batch and channel first), `kernel` the window.
pub(crate) fn geometry(node: &Node, x: &[usize], y: &[usize], kernel: &[usize], transpose: bool) -> Result<Geometry, String> {
    let sp = kernel.len();
    if x.len() != sp + 2 || y.len() != sp + 2 {
        return Err(format!("input {x:?} and output {y:?} do not have the window's {sp} spatial axes plus batch and channel"));
    }
    if let Some(k) = KERNEL_SHAPE.get(node) {
        if k.len() != sp || k.iter().zip(kernel).any(|(&a, &b)| a != b as i64) {
            return Err(format!("kernel_shape {k:?} does not match the window {kernel:?}"));
        }
    }
    if kernel.contains(&0) {
        return Err(format!("the window {kernel:?} is empty"));
    }
    let strides = positive(node, &STRIDES, sp)?;
    let dilations = positive(node, &DILATIONS, sp)?;
    let (input, output) = (x[2..].to_vec(), y[2..].to_vec());
    let auto_pad = AUTO_PAD.get(node);
    let explicit = match PADS.get(node) {
        None => vec![0; 2 * sp],
        Some(p) if p.len() == 2 * sp && p.iter().all(|&v| (0..=1 << 24).contains(&v)) => p.to_vec(),
        Some(p) => Err(format!("pads {p:?} must hold {} values in 0..=2^24", 2 * sp))?,
    };
    let mut begin = vec![0i64; sp];
    let mut end = vec![0i64; sp];
    for d in 0..sp {
        let ek = (dilations[d] * (kernel[d] - 1) + 1) as i64;
        let (s, i, o) = (strides[d] as i64, input[d] as i64, output[d] as i64);
        if transpose {
            let op = match OUTPUT_PADDING.get(node) {
                None => 0,
                Some(p) if p.len() == sp && p[d] >= 0 => p[d],
                Some(p) => return Err(format!("output_padding {p:?} must hold {sp} non-negative values")),
            };
            // The full transposed output is s·(i-1) + op + ek; pads cut it to o.
            let total = s * (i - 1) + op + ek - o;
            if OUTPUT_SHAPE.get(node).is_some() || auto_pad.starts_with("SAME") {
                // Floor halves, as the ONNX reference: a negative total (output_shape
                // beyond the full output) leaves the extra rows at the end.
                let half = total.div_euclid(2);
                let (b, e) = if auto_pad == "SAME_UPPER" { (half, total - half) } else { (total - half, half) };
                begin[d] = b;
                end[d] = e;
            } else if auto_pad == "NOTSET" {
                begin[d] = explicit[d];
                end[d] = explicit[sp + d];
            }
        } else {
            match auto_pad {
                "NOTSET" => {
                    begin[d] = explicit[d];
                    end[d] = explicit[sp + d];
                }
                "VALID" => {}
                _ => {
                    let total = ((o - 1) * s + ek - i).max(0);
                    let b = if auto_pad == "SAME_UPPER" { total / 2 } else { total - total / 2 };
                    begin[d] = b;
                    end[d] = total - b;
                }
            }
        }
    }
    Ok(Geometry { input, output, strides, dilations, begin, end })
}

/// WGSL declaring `{prefix}0`, `{prefix}1`, ... (u32) from the flat index
/// `index` over `shape`, row-major.
pub(crate) fn unflatten(prefix: &str, index: &str, shape: &[usize]) -> String {
    let strides = crate::exec::kernel::strides(shape);
    let mut s = String::new();
    for (d, (&st, &len)) in strides.iter().zip(shape).enumerate() {
        if d == 0 {
            let _ = writeln!(s, "    let {prefix}{d} = {index} / {st}u;");
        } else {
            let _ = writeln!(s, "    let {prefix}{d} = ({index} / {st}u) % {len}u;");
        }
    }
    s
}

/// WGSL for the flat row-major offset of coordinates `{prefix}d` (u32
/// expressions) over `shape`, after `base` (already in units of the first axis).
pub(crate) fn flatten(base: &str, coords: &[String], shape: &[usize]) -> String {
    let mut e = base.to_string();
    for (c, &len) in coords.iter().zip(shape) {
        e = format!("({e}) * {len}u + {c}");
    }
    e
}
