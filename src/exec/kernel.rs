//! What an op's kernel is to the executor: a function of the node and its
//! static shapes that returns WGSL launches. No wgpu here: kernels are text
//! and dispatch sizes, so they build and are planned without a GPU stack.
//!
//! Every device element is one 32-bit word: float32 as `f32`, int64 and int32
//! as `i32` (the executor checks int64 values fit when it uploads them), bool
//! as `u32` 0/1. Every tensor is bound as its own `var<storage, read_write>`
//! array (read-write even when only read: all tensors share one buffer, and a
//! read-only and a read-write binding of one buffer may not meet in a dispatch).
use crate::ir::{DType, Node};
use std::fmt::Write;

/// A device element type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Elem {
    /// float32
    F32,
    /// int64 or int32, as i32 on the device
    I32,
    /// bool, as u32 0 or 1
    Bool,
}

impl Elem {
    /// The device type of an IR element type (`None`: not supported on the device).
    pub fn of(d: DType) -> Option<Elem> {
        match d {
            DType::F32 => Some(Elem::F32),
            DType::I64 | DType::I32 => Some(Elem::I32),
            DType::Bool => Some(Elem::Bool),
            _ => None,
        }
    }

    /// The WGSL scalar type.
    pub fn wgsl(self) -> &'static str {
        match self {
            Elem::F32 => "f32",
            Elem::I32 => "i32",
            Elem::Bool => "u32",
        }
    }

    /// The WGSL literal of a number in this type.
    pub fn literal(self, x: f64) -> String {
        match self {
            Elem::F32 => f32_literal(x as f32),
            Elem::I32 => format!("i32({})", x as i32),
            Elem::Bool => format!("{}u", u32::from(x != 0.0)),
        }
    }
}

/// A float32 WGSL literal that round-trips exactly (infinities and NaN by bit pattern).
pub fn f32_literal(x: f32) -> String {
    if x.is_finite() {
        format!("f32({x:?})")
    } else {
        format!("bitcast<f32>({}u)", x.to_bits())
    }
}

/// A device tensor's element type and static shape.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TensorInfo {
    /// Element type.
    pub elem: Elem,
    /// Dims.
    pub shape: Vec<usize>,
}

impl TensorInfo {
    /// Elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// A tensor the host knows at specialisation (shape arithmetic, constants).
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    /// Element type and shape.
    pub info: TensorInfo,
    /// The elements as f64 (exact for the integers and floats involved).
    pub values: Vec<f64>,
}

impl HostTensor {
    /// The elements as integers.
    pub fn ints(&self) -> Vec<i64> {
        self.values.iter().map(|&x| x as i64).collect()
    }

    /// The device words (f32 bits, i32 or 0/1).
    pub fn words(&self) -> Vec<u32> {
        self.values
            .iter()
            .map(|&x| match self.info.elem {
                Elem::F32 => (x as f32).to_bits(),
                Elem::I32 => (x as i64 as i32) as u32,
                Elem::Bool => u32::from(x != 0.0),
            })
            .collect()
    }
}

/// What the executor's adapter allows a kernel.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Workgroups per dispatch dimension.
    pub max_workgroups: u32,
    /// Storage buffers one shader may bind.
    pub max_bindings: u32,
    /// A CPU adapter (lavapipe): prefer one invocation per row, few barriers.
    pub cpu: bool,
    /// Bytes of one device buffer: the planner splits the arena into pages
    /// of this size, with no tensor across two (the adapter's
    /// `max_buffer_size`).
    pub max_buffer: u64,
    /// Bytes one storage binding may cover (the adapter's
    /// `max_storage_buffer_binding_size`): every tensor and scratch buffer.
    pub max_binding: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { max_workgroups: 65535, max_bindings: 8, cpu: false, max_buffer: 1 << 30, max_binding: 1 << 30 }
    }
}

/// The node a kernel is asked for, with its static shapes.
pub struct KernelCtx<'a> {
    /// The node (attributes by name).
    pub node: &'a Node,
    /// Per input slot: its element type and shape (`None`: absent).
    pub inputs: Vec<Option<TensorInfo>>,
    /// Per output slot.
    pub outputs: Vec<Option<TensorInfo>>,
    /// Per input slot: its value, when the host knows it.
    pub host: Vec<Option<HostTensor>>,
    /// The adapter's limits.
    pub limits: Limits,
    /// A number unique to the node in the program, for random streams.
    pub stream: u32,
    /// The graph's default-domain opset (ops whose semantics changed read it).
    pub opset: i64,
}

impl KernelCtx<'_> {
    /// Input `k`, which must be present.
    pub fn input(&self, k: usize) -> Result<&TensorInfo, String> {
        self.inputs.get(k).and_then(Option::as_ref).ok_or_else(|| format!("input {k} is missing"))
    }

    /// Output `k`, which must be present.
    pub fn output(&self, k: usize) -> Result<&TensorInfo, String> {
        self.outputs.get(k).and_then(Option::as_ref).ok_or_else(|| format!("output {k} is missing"))
    }

    /// True when input `k` is given.
    pub fn has_input(&self, k: usize) -> bool {
        self.inputs.get(k).is_some_and(Option::is_some)
    }

    /// Input `k`'s values, which the host must know (a shape, axes, bounds).
    pub fn host_ints(&self, k: usize) -> Result<Vec<i64>, String> {
        self.host.get(k).and_then(Option::as_ref).map(HostTensor::ints).ok_or_else(|| {
            format!("input {k} must be known before the step (a shape or index argument), but it is computed on the device")
        })
    }

    /// Input `k`'s one value, which the host must know.
    pub fn host_scalar(&self, k: usize) -> Result<f64, String> {
        match self.host.get(k).and_then(Option::as_ref) {
            Some(h) if h.values.len() == 1 => Ok(h.values[0]),
            Some(h) => Err(format!("input {k} has {} elements; one was expected", h.values.len())),
            None => Err(format!("input {k} must be known before the step, but it is computed on the device")),
        }
    }
}

/// A binding of a launch, in binding order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bind {
    /// The node's input slot.
    Input(usize),
    /// The node's output slot.
    Output(usize),
    /// A scratch buffer the kernel asked for ([`Lowered::scratch`]).
    Scratch(usize),
    /// The step counter (`array<u32>`: step, then the run's seed in two words), for random streams.
    Step,
}

/// One compute dispatch.
#[derive(Debug, Clone)]
pub struct Launch {
    /// What it computes, for errors and profiles.
    pub label: String,
    /// The whole WGSL module (entry point `main`).
    pub wgsl: String,
    /// Its bindings `@binding(0)`...
    pub binds: Vec<Bind>,
    /// Workgroups in x, y, z.
    pub groups: [u32; 3],
}

/// What a node is on the device.
#[derive(Debug, Clone, Default)]
pub struct Lowered {
    /// Dispatches, in order.
    pub launches: Vec<Launch>,
    /// Scratch buffers (element type, elements), live for the node only.
    pub scratch: Vec<(Elem, usize)>,
    /// Output 0 is input `k`'s data, unchanged (Reshape, Identity): no launch.
    pub alias: Option<usize>,
    /// Inputs whose storage output 0 may take over when nothing reads them
    /// later (an elementwise kernel that reads element i before writing it).
    pub in_place: Vec<usize>,
}

impl Lowered {
    /// Output 0 is input `k`.
    pub fn alias(k: usize) -> Lowered {
        Lowered { alias: Some(k), ..Default::default() }
    }

    /// One launch.
    pub fn one(launch: Launch) -> Lowered {
        Lowered { launches: vec![launch], ..Default::default() }
    }
}

/// An op's kernel: the launches for one node, or what it cannot do.
pub type KernelFn = fn(&KernelCtx) -> Result<Lowered, String>;

/// Invocations per workgroup of the one-dimensional kernels.
pub const WORKGROUP: u32 = 64;

/// Workgroups for `threads` invocations of [`WORKGROUP`], folded into y past the limit.
pub fn groups_for(threads: usize, limits: &Limits) -> [u32; 3] {
    let groups = threads.div_ceil(WORKGROUP as usize).max(1) as u64;
    let max = limits.max_workgroups.max(1) as u64;
    if groups <= max {
        [groups as u32, 1, 1]
    } else {
        [max as u32, groups.div_ceil(max) as u32, 1]
    }
}

/// The binding declarations: `(name, element type)` in binding order.
pub fn bindings(binds: &[(&str, Elem)]) -> String {
    let mut s = String::new();
    for (i, (name, elem)) in binds.iter().enumerate() {
        let _ = writeln!(s, "@group(0) @binding({i}) var<storage, read_write> {name}: array<{}>;", elem.wgsl());
    }
    s
}

/// A one-dimensional kernel: `body` runs with `i: u32` the element index, below `n`.
pub fn elementwise_main(n: usize, body: &str) -> String {
    format!(
        "@compute @workgroup_size({WORKGROUP})\n\
         fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {{\n\
         \x20   let i = gid.x + gid.y * nwg.x * {WORKGROUP}u;\n\
         \x20   if (i >= {n}u) {{ return; }}\n\
         {body}\n}}\n"
    )
}

/// Row-major strides.
pub fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1usize; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        s[d] = s[d + 1] * shape[d + 1];
    }
    s
}

/// WGSL that computes `var` (a `u32`), the offset into a tensor of shape `from`
/// broadcast (numpy rules) to `to`, for the flat index `index` into `to`.
pub fn broadcast_offset(var: &str, index: &str, from: &[usize], to: &[usize]) -> String {
    let rank = to.len();
    let pad = rank - from.len().min(rank);
    let from_strides = strides(from);
    let to_strides = strides(to);
    let mut terms = Vec::new();
    for d in 0..rank {
        if d < pad {
            continue;
        }
        let fd = d - pad;
        if from[fd] == 1 || to[d] == 1 {
            continue;
        }
        let coord = if d == 0 { format!("({index} / {}u)", to_strides[d]) } else { format!("(({index} / {}u) % {}u)", to_strides[d], to[d]) };
        terms.push(if from_strides[fd] == 1 { coord } else { format!("{coord} * {}u", from_strides[fd]) });
    }
    if from.iter().product::<usize>() == to.iter().product::<usize>() && from.len() <= to.len() && from.iter().rev().zip(to.iter().rev()).all(|(a, b)| a == b) {
        return format!("let {var} = {index};");
    }
    if terms.is_empty() {
        format!("let {var} = 0u;")
    } else {
        format!("let {var} = {};", terms.join(" + "))
    }
}

/// The launch label of a node.
pub fn label(node: &Node, what: &str) -> String {
    if what.is_empty() {
        format!("{} ({})", node.name, node.op_type)
    } else {
        format!("{} ({}: {what})", node.name, node.op_type)
    }
}

/// WGSL helper functions elementwise expressions may call.
pub const PRELUDE: &str = "
fn erf_f(x: f32) -> f32 {
    // Abramowitz and Stegun 7.1.26 refined: |error| < 1.5e-7
    let t = 1.0 / (1.0 + 0.3275911 * abs(x));
    let y = 1.0 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * exp(-x * x);
    return select(-y, y, x >= 0.0);
}
fn pow_f(a: f32, b: f32) -> f32 {
    // pow() is undefined for a < 0 in WGSL; integral exponents keep their sign
    if (b == 0.0) { return 1.0; }
    if (b == 1.0) { return a; }
    if (b == 2.0) { return a * a; }
    if (b == 0.5) { return sqrt(a); }
    if (a >= 0.0) { return pow(a, b); }
    if (b == floor(b)) {
        let m = pow(-a, b);
        return select(m, -m, (i32(b) & 1) == 1);
    }
    return bitcast<f32>(0x7fc00000u);
}
fn is_nan_f(x: f32) -> bool {
    let b = bitcast<u32>(x);
    return (b & 0x7f800000u) == 0x7f800000u && (b & 0x007fffffu) != 0u;
}
fn is_inf_f(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7fffffffu) == 0x7f800000u;
}
fn fmod_f(a: f32, b: f32) -> f32 {
    // C fmod: a finite dividend over an infinite divisor is the dividend
    if (is_inf_f(b) && !is_inf_f(a) && !is_nan_f(a)) { return a; }
    return a - b * trunc(a / b);
}
fn mod_f(a: f32, b: f32) -> f32 {
    // the sign of the divisor (numpy's mod)
    let r = fmod_f(a, b);
    return select(r, r + b, r != 0.0 && ((r < 0.0) != (b < 0.0)));
}
fn mod_i(a: i32, b: i32) -> i32 {
    // the sign of the divisor, as Python and ONNX Mod with fmod=0
    let r = a % b;
    return select(r, r + b, r != 0 && ((r < 0) != (b < 0)));
}
";

/// WGSL converting `e` of type `from` to `to` (ONNX Cast semantics: float to
/// int truncates, anything nonzero is true).
pub fn convert(from: Elem, to: Elem, e: &str) -> String {
    match (from, to) {
        (a, b) if a == b => e.to_string(),
        (Elem::F32, Elem::I32) => format!("i32(trunc({e}))"),
        (Elem::F32, Elem::Bool) => format!("select(0u, 1u, ({e}) != 0.0)"),
        (Elem::I32, Elem::F32) | (Elem::Bool, Elem::F32) => format!("f32({e})"),
        (Elem::I32, Elem::Bool) => format!("select(0u, 1u, ({e}) != 0)"),
        (Elem::Bool, Elem::I32) => format!("i32({e})"),
        _ => e.to_string(),
    }
}

/// An elementwise kernel over numpy-broadcast inputs. `expr` computes output
/// 0 in its element type from `x0`, `x1`, ... (the present inputs, in slot
/// order, each loaded in its own type). Inputs shaped like the output may be
/// overwritten in place.
pub fn elementwise(ctx: &KernelCtx, expr: &str) -> Result<Lowered, String> {
    let out = ctx.output(0)?.clone();
    let n = out.numel();
    let mut binds = Vec::new();
    let mut decls: Vec<(String, Elem)> = Vec::new();
    let mut body = String::new();
    let mut in_place = Vec::new();
    let mut k = 0;
    for (slot, info) in ctx.inputs.iter().enumerate() {
        let Some(info) = info else { continue };
        let name = format!("in{k}");
        if info.shape.len() > out.shape.len() || info.shape.iter().rev().zip(out.shape.iter().rev()).any(|(&a, &b)| a != b && a != 1) {
            return Err(format!("input {slot} of shape {:?} does not broadcast to the output's {:?}", info.shape, out.shape));
        }
        let _ = writeln!(body, "    {}", broadcast_offset(&format!("o{k}"), "i", &info.shape, &out.shape));
        let _ = writeln!(body, "    let x{k} = {name}[o{k}];");
        if info.shape == out.shape && info.elem == out.elem {
            in_place.push(slot);
        }
        decls.push((name, info.elem));
        binds.push(Bind::Input(slot));
        k += 1;
    }
    let _ = writeln!(body, "    out[i] = {expr};");
    decls.push(("out".into(), out.elem));
    binds.push(Bind::Output(0));
    let refs: Vec<(&str, Elem)> = decls.iter().map(|(a, b)| (a.as_str(), *b)).collect();
    let wgsl = format!("{}{PRELUDE}{}", bindings(&refs), elementwise_main(n, &body));
    Ok(Lowered { launches: vec![Launch { label: label(ctx.node, ""), wgsl, binds, groups: groups_for(n, &ctx.limits) }], in_place, ..Default::default() })
}

/// An elementwise kernel whose expression depends on input 0's type: `float`
/// for float32, `int` (when given) for integers; another type is an error.
pub fn typed(ctx: &KernelCtx, float: &str, int: Option<&str>) -> Result<Lowered, String> {
    match (ctx.input(0)?.elem, int) {
        (Elem::F32, _) => elementwise(ctx, float),
        (Elem::I32, Some(e)) => elementwise(ctx, e),
        (e, _) => Err(format!("the kernel computes float32{}; input 0 is {e:?}", if int.is_some() { " and integers" } else { "" })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_offsets() {
        assert_eq!(broadcast_offset("o", "i", &[2, 3], &[2, 3]), "let o = i;");
        assert_eq!(broadcast_offset("o", "i", &[3], &[2, 3]), "let o = ((i / 1u) % 3u);");
        assert_eq!(broadcast_offset("o", "i", &[2, 1], &[2, 3]), "let o = (i / 3u) * 1u;".replace(" * 1u", ""));
        assert_eq!(broadcast_offset("o", "i", &[1], &[4, 5]), "let o = 0u;");
    }

    #[test]
    fn groups_fold_into_y() {
        let l = Limits { max_workgroups: 10, ..Default::default() };
        assert_eq!(groups_for(64 * 25, &l), [10, 3, 1]);
        assert_eq!(groups_for(0, &l), [1, 1, 1]);
    }
}
