//! Specialisation and memory planning: from a graph and concrete input shapes
//! to a program of WGSL launches over regions of one device arena.
//!
//! - **Specialisation.** The graph's inputs get the batch's shapes and shape
//!   inference runs again, so every dim is known and all shape arithmetic
//!   (`Shape`, `Gather` on shapes, `Concat`, `ConstantOfShape`'s shape, ...)
//!   is evaluated on the host, once. A node whose outputs the host knows is
//!   not launched; every other node gets static shapes from its op's kernel.
//! - **Memory.** Graph inputs, outputs and the constants a kernel reads are
//!   resident. Every other tensor lives from the launch that writes it to the
//!   last node that reads it; regions whose lifetimes do not overlap share
//!   storage (greedy, largest first). Reshape-like ops alias their input, and
//!   elementwise kernels write in place over an input nothing reads later.
use super::kernel::{Bind, Elem, HostTensor, KernelCtx, Launch, Limits, Lowered, TensorInfo};
use super::ExecError;
use crate::ir::{self, DType, Dim, Graph, Parts, Tensor, TypeDecl, ValueId};
use std::collections::HashMap;

/// Binding offsets are multiples of this (the WebGPU minimum for storage buffers).
pub const ALIGN: u64 = 256;

/// Where a region lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifetime {
    /// For the whole program (inputs, outputs, constants).
    Resident,
    /// From the launch of node `first` to node `last` (node indices).
    Between(usize, usize),
}

/// A range of the arena.
#[derive(Debug, Clone)]
pub struct Region {
    /// Byte offset (a multiple of [`ALIGN`]).
    pub offset: u64,
    /// Bytes (at least 4: a binding is never empty).
    pub bytes: u64,
    /// Its lifetime.
    pub life: Lifetime,
}

/// What the program knows of a value.
#[derive(Debug, Clone, Default)]
pub struct Slot {
    /// Element type and shape, when the value is a tensor the program handles.
    pub info: Option<TensorInfo>,
    /// Its elements, when the host knows them.
    pub host: Option<HostTensor>,
    /// Its storage, when it is on the device.
    pub region: Option<usize>,
}

/// One launch with its bindings resolved to regions (`None`: the step buffer).
#[derive(Debug, Clone)]
pub struct Step {
    /// The node it belongs to.
    pub node: usize,
    /// The launch.
    pub launch: Launch,
    /// Per binding: the region, or `None` for [`Bind::Step`].
    pub regions: Vec<Option<usize>>,
}

/// A specialised graph, ready for a device.
#[derive(Debug)]
pub struct Program {
    /// The specialised graph.
    pub graph: Graph,
    /// Per value.
    pub slots: Vec<Slot>,
    /// Storage.
    pub regions: Vec<Region>,
    /// Launches in order.
    pub steps: Vec<Step>,
    /// Host-known tensors to upload once: (region, words).
    pub constants: Vec<(usize, Vec<u32>)>,
    /// Bytes of resident storage (inputs, outputs, constants).
    pub resident_bytes: u64,
    /// Bytes of the shared transient storage.
    pub transient_bytes: u64,
    /// What the transient tensors would take without sharing.
    pub unshared_bytes: u64,
    /// Bytes of one page of the arena (one device buffer each; no region
    /// crosses a page boundary).
    pub page_bytes: u64,
    /// The binding limit every region was planned within.
    pub binding_bytes: u64,
}

impl Program {
    /// The slot of a named value.
    pub fn slot(&self, name: &str) -> Option<&Slot> {
        self.graph.value_by_name(name).map(|v| &self.slots[v])
    }

    /// The region of a named value on the device.
    pub fn region_of(&self, name: &str) -> Option<&Region> {
        self.slot(name).and_then(|s| s.region).map(|r| &self.regions[r])
    }

    /// Bytes of the whole arena.
    pub fn arena_bytes(&self) -> u64 {
        self.resident_bytes + self.transient_bytes
    }

    /// The bytes of each page of the arena: as many as it spans (at least one),
    /// each [`Program::page_bytes`] but the last.
    pub fn pages(&self) -> Vec<u64> {
        let total = self.arena_bytes();
        let n = total.div_ceil(self.page_bytes).max(1);
        (0..n).map(|k| (total - (k * self.page_bytes).min(total)).min(self.page_bytes)).collect()
    }

    /// The page and the offset in it of arena offset `offset`.
    pub fn location(&self, offset: u64) -> (usize, u64) {
        ((offset / self.page_bytes) as usize, offset % self.page_bytes)
    }
}

/// The graph with its inputs declared at these shapes, shapes inferred again.
pub fn specialize(g: &Graph, shapes: &HashMap<String, Vec<usize>>) -> Result<Graph, ExecError> {
    specialize_with(g, shapes, &HashMap::new())
}

/// [`specialize`], with some inputs bound to constant values (they become
/// initializers, so shape arithmetic on them is evaluated on the host).
pub fn specialize_with(g: &Graph, shapes: &HashMap<String, Vec<usize>>, constants: &HashMap<String, Tensor>) -> Result<Graph, ExecError> {
    let mut parts = Parts {
        name: g.name.clone(),
        symbols: g.symbols.clone(),
        initializers: g.initializers.iter().map(|i| (g.values[i.value].name.clone(), i.tensor.clone())).collect(),
        inputs: Vec::new(),
        outputs: g.outputs.iter().zip(&g.output_decls).map(|(&v, d)| (g.values[v].name.clone(), d.clone())).collect(),
        value_info: g.value_info.iter().map(|(v, d)| (g.values[*v].name.clone(), d.clone())).collect(),
        nodes: g.nodes.iter().map(|n| g.node_parts(n)).collect(),
    };
    for (v, decl) in &g.input_decls {
        let name = g.values[*v].name.clone();
        if let Some(t) = constants.get(&name) {
            if g.values[*v].initializer.is_none() {
                parts.initializers.push((name, t.clone()));
                continue;
            }
        }
        let decl = match shapes.get(&name) {
            Some(dims) => {
                let declared = decl.as_ref().and_then(|d| d.shape.as_ref());
                if let Some(want) = declared {
                    let fits = want.len() == dims.len() && want.iter().zip(dims).all(|(w, &d)| !matches!(w, Dim::Known(k) if *k as usize != d));
                    if !fits {
                        return Err(ExecError::InputShape { name, detail: format!("shape {dims:?} does not fit the declared {}", g.dims_string(Some(want))) });
                    }
                }
                let dtype = decl.as_ref().and_then(|d| d.dtype).or(g.values[*v].dtype);
                Some(TypeDecl { dtype, shape: Some(dims.iter().map(|&d| Dim::Known(d as i64)).collect()) })
            }
            None => decl.clone(),
        };
        parts.inputs.push((name, decl));
    }
    let how = ir::Resolve { path: g.model_path.clone(), opset: g.opset, producer: g.producer.clone(), body: false, keep_order: true, infer: true };
    Ok(ir::resolve(parts, &how)?)
}

/// The element type and static shape of a value.
fn info_of(g: &Graph, v: ValueId) -> Result<TensorInfo, String> {
    let val = &g.values[v];
    let dtype = val.dtype.ok_or_else(|| format!("the element type of '{}' is unknown", val.name))?;
    let elem = Elem::of(dtype).ok_or_else(|| format!("'{}' is {}, which the device does not compute in (float32, int64, int32, bool)", val.name, dtype.name()))?;
    let shape = val.shape.as_ref().ok_or_else(|| format!("the rank of '{}' is unknown after specialisation", val.name))?;
    let shape = shape
        .iter()
        .map(|d| match d {
            Dim::Known(k) if *k >= 0 => Ok(*k as usize),
            _ => Err(format!("'{}' has shape {} after specialisation; every dim must be known", val.name, g.shape_string(v))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(TensorInfo { elem, shape })
}

/// A float value of a type the device lacks (float64, float16), kept on the
/// host as float32 of the same shape when the host knows its elements.
fn host_only(g: &Graph, v: ValueId, node: &crate::ir::Node, slots: &[Slot]) -> Option<(TensorInfo, HostTensor)> {
    let val = &g.values[v];
    if !val.dtype.is_some_and(DType::is_float) {
        return None;
    }
    let shape: Option<Vec<usize>> = val.shape.as_ref()?.iter().map(|d| d.known().filter(|&k| k >= 0).map(|k| k as usize)).collect();
    let info = TensorInfo { elem: Elem::F32, shape: shape? };
    let host = host_of(g, v, &info).or_else(|| fold_on_host(node, slots, &info, true))?;
    Some((info, host))
}

/// Folds a small elementwise node whose inputs the host knows (an exporter's
/// float64 `Sqrt(Cast(Shape))` attention scale): the ops and types of shape
/// arithmetic, at most [`crate::ir::MAX_TRACKED_INTS`] elements, each input
/// of the output's size or a single element; `float64` keeps the value unrounded.
fn fold_on_host(node: &crate::ir::Node, slots: &[Slot], info: &TensorInfo, float64: bool) -> Option<HostTensor> {
    let n = info.numel();
    if n > crate::ir::MAX_TRACKED_INTS || node.outputs.len() != 1 {
        return None;
    }
    let args: Vec<&HostTensor> = node.inputs.iter().map(|i| i.and_then(|v| slots[v].host.as_ref())).collect::<Option<_>>()?;
    if args.iter().any(|a| a.values.len() != n && a.values.len() != 1) {
        return None;
    }
    let at = |a: &HostTensor, i: usize| if a.values.len() == 1 { a.values[0] } else { a.values[i] };
    use crate::ops;
    type Unary = (&'static crate::ops::OpDef, fn(f64) -> f64);
    type Binary = (&'static crate::ops::OpDef, fn(f64, f64) -> f64);
    let unary_ops: [Unary; 8] = [
        (&ops::SQRT, f64::sqrt),
        (&ops::RECIPROCAL, |x| 1.0 / x),
        (&ops::NEG, |x| -x),
        (&ops::ABS, f64::abs),
        (&ops::FLOOR, f64::floor),
        (&ops::CEIL, f64::ceil),
        (&ops::IDENTITY, |x| x),
        (&ops::CAST, |x| x),
    ];
    let binary_ops: [Binary; 5] =
        [(&ops::ADD, |a, b| a + b), (&ops::SUB, |a, b| a - b), (&ops::MUL, |a, b| a * b), (&ops::DIV, |a, b| a / b), (&ops::POW, f64::powf)];
    let unary = unary_ops.iter().find(|(d, _)| node.is(d)).map(|(_, f)| *f);
    // integer Div truncates: only a float Div folds here
    let binary = binary_ops.iter().find(|(d, _)| node.is(d) && (info.elem == Elem::F32 || !node.is(&ops::DIV))).map(|(_, f)| *f);
    if !node.is_default_domain() {
        return None;
    }
    let values: Vec<f64> = match (unary, binary, args.as_slice()) {
        (Some(f), _, [a]) => (0..n).map(|i| f(at(a, i))).collect(),
        (_, Some(f), [a, b]) => (0..n).map(|i| f(at(a, i), at(b, i))).collect(),
        _ => return None,
    };
    // rounded as the output's type holds it (a float64 value kept whole)
    let values = match info.elem {
        Elem::F32 if float64 => values,
        Elem::F32 => values.into_iter().map(|x| x as f32 as f64).collect(),
        Elem::I32 => values.into_iter().map(f64::trunc).collect(),
        Elem::Bool => values.into_iter().map(|x| f64::from(x != 0.0)).collect(),
    };
    Some(HostTensor { info: info.clone(), values })
}

/// What the host knows of a computed value (shape arithmetic, constants).
fn host_of(g: &Graph, v: ValueId, info: &TensorInfo) -> Option<HostTensor> {
    let val = &g.values[v];
    let n = info.numel();
    if let Some(p) = val.producer {
        let node = &g.nodes[p];
        if node.is(&crate::ops::CONSTANT) {
            if let Some(t) = crate::ops::CONSTANT_VALUE.get(node) {
                return t.values().filter(|x| x.len() == n).map(|values| HostTensor { info: info.clone(), values });
            }
        }
    }
    if let Some(ints) = &val.ints {
        if info.elem != Elem::F32 && ints.len() == n {
            let values: Option<Vec<f64>> = ints.iter().map(|d| d.known().map(|x| x as f64)).collect();
            if let Some(values) = values {
                return Some(HostTensor { info: info.clone(), values });
            }
        }
    }
    // The IR folds a one-element value only from known inputs (constants, or
    // shape arithmetic on static dims), so its scalar is the value.
    if n == 1 && !val.producer.is_some_and(|p| g.nodes[p].def.is_some_and(|d| d.random)) {
        if let Some(x) = val.scalar {
            return Some(HostTensor { info: info.clone(), values: vec![x] });
        }
    }
    None
}

/// Builds the program of a specialised graph. `kernel_of` is the registry's
/// kernel lookup (a test may pass another).
pub fn plan(graph: Graph, limits: Limits) -> Result<Program, ExecError> {
    let g = &graph;
    let mut slots: Vec<Slot> = vec![Slot::default(); g.values.len()];
    let mut regions: Vec<Region> = Vec::new();
    let mut constants: Vec<(usize, Vec<u32>)> = Vec::new();
    let mut steps: Vec<Step> = Vec::new();
    // The last node that reads each value (graph outputs live to the end).
    let end = g.nodes.len();
    let mut last_read: Vec<usize> = vec![0; g.values.len()];
    for (id, n) in g.nodes.iter().enumerate() {
        for &v in n.inputs.iter().flatten().chain(&n.implicit_inputs) {
            last_read[v] = last_read[v].max(id);
        }
    }
    // Per region: pinned for the whole program, and the last node that reads
    // any value stored in it (aliases and in-place outputs share regions).
    let mut pinned: Vec<bool> = Vec::new();
    let mut region_reads: Vec<usize> = Vec::new();
    // Scratch regions and the node that asked for each (for errors).
    let mut scratch_of: Vec<(usize, usize)> = Vec::new();

    let new_region = |regions: &mut Vec<Region>, pinned: &mut Vec<bool>, region_reads: &mut Vec<usize>, info: &TensorInfo, life: Lifetime| {
        regions.push(Region { offset: 0, bytes: (4 * info.numel() as u64).max(4), life });
        pinned.push(life == Lifetime::Resident);
        region_reads.push(0);
        regions.len() - 1
    };

    // Graph inputs (initializers that are inputs included): resident, fed by the caller.
    let is_output: Vec<bool> = (0..g.values.len()).map(|v| g.values[v].is_output).collect();
    for (v, _) in &g.input_decls {
        let info = info_of(g, *v).map_err(|detail| ExecError::InputShape { name: g.values[*v].name.clone(), detail })?;
        let r = new_region(&mut regions, &mut pinned, &mut region_reads, &info, Lifetime::Resident);
        slots[*v] = Slot { info: Some(info), host: None, region: Some(r) };
    }
    // Other initializers: constants the host knows.
    for init in &g.initializers {
        let v = init.value;
        if slots[v].region.is_some() {
            continue;
        }
        let info = info_of(g, v).ok().or_else(|| {
            let t = &init.tensor;
            t.dtype.is_float().then(|| TensorInfo { elem: Elem::F32, shape: t.dims.iter().map(|&d| d as usize).collect() })
        });
        if let (Some(info), Some(values)) = (info, init.tensor.values()) {
            slots[v] = Slot { host: Some(HostTensor { info: info.clone(), values }), info: Some(info), region: None };
        }
    }

    for (id, node) in g.nodes.iter().enumerate() {
        let err = |detail: String| ExecError::Node { node: node.name.clone(), op: node.op_type.clone(), detail };
        // Outputs the host knows need no launch.
        let mut out_infos = Vec::new();
        let mut all_host = true;
        for &o in &node.outputs {
            match o {
                None => out_infos.push(None),
                Some(o) => {
                    let (info, host) = match info_of(g, o) {
                        Ok(info) => {
                            let host = host_of(g, o, &info).or_else(|| fold_on_host(node, &slots, &info, false));
                            (info, host)
                        }
                        // A float64/float16 constant the host folds (an exporter's
                        // scale, cast to float32 before use): known, never launched.
                        Err(e) => match host_only(g, o, node, &slots) {
                            Some((info, host)) => (info, Some(host)),
                            None => return Err(err(e)),
                        },
                    };
                    all_host &= host.is_some();
                    slots[o] = Slot { info: Some(info.clone()), host, region: None };
                    out_infos.push(Some(info));
                }
            }
        }
        if all_host {
            continue;
        }
        if !node.implicit_inputs.is_empty() {
            return Err(err("a subgraph whose condition or trip count is not known before the step cannot run on the device".into()));
        }
        let kernel = node.def.and_then(|d| d.kernel).ok_or_else(|| ExecError::NoKernel { node: node.name.clone(), op: node.op_type.clone() })?;
        let mut inputs = Vec::new();
        let mut host = Vec::new();
        for &i in &node.inputs {
            match i {
                None => {
                    inputs.push(None);
                    host.push(None);
                }
                Some(i) => {
                    let s = &slots[i];
                    let info = s.info.clone().ok_or_else(|| err(format!("input '{}' is not a tensor the device holds", g.values[i].name)))?;
                    inputs.push(Some(info));
                    host.push(s.host.clone());
                }
            }
        }
        let ctx = KernelCtx { node, inputs, outputs: out_infos.clone(), host, limits, stream: id as u32, opset: g.opset };
        let lowered: Lowered = kernel(&ctx).map_err(err)?;

        // Storage of the inputs the launches read.
        let mut ensure = |v: ValueId, slots: &mut Vec<Slot>, regions: &mut Vec<Region>, pinned: &mut Vec<bool>, region_reads: &mut Vec<usize>| -> Result<usize, ExecError> {
            if let Some(r) = slots[v].region {
                return Ok(r);
            }
            let s = &slots[v];
            let (Some(info), Some(h)) = (s.info.clone(), s.host.clone()) else {
                return Err(err(format!("input '{}' is neither on the device nor known to the host", g.values[v].name)));
            };
            let r = new_region(regions, pinned, region_reads, &info, Lifetime::Resident);
            constants.push((r, h.words()));
            slots[v].region = Some(r);
            Ok(r)
        };
        let input_value = |k: usize| node.input(k).ok_or_else(|| err(format!("input {k} is absent")));
        let output_value = |k: usize| node.output(k).ok_or_else(|| err(format!("output {k} is absent")));

        // Output 0 as an alias of an input (Reshape), or in place over one.
        let mut taken: Option<(usize, usize)> = None; // (output slot 0, region)
        if let Some(k) = lowered.alias {
            let v = input_value(k)?;
            let r = ensure(v, &mut slots, &mut regions, &mut pinned, &mut region_reads)?;
            taken = Some((0, r));
        } else {
            for &k in &lowered.in_place {
                let Some(v) = node.input(k) else { continue };
                let Some(r) = slots[v].region else { continue };
                let same_size = slots[v].info.as_ref().map(TensorInfo::numel) == out_infos.first().cloned().flatten().map(|i| i.numel());
                if !pinned[r] && region_reads[r] <= id && same_size && node.inputs.iter().flatten().filter(|&&x| x == v).count() == 1 {
                    taken = Some((0, r));
                    break;
                }
            }
        }
        for (k, &o) in node.outputs.iter().enumerate() {
            let Some(o) = o else { continue };
            let Some(info) = slots[o].info.clone() else { continue };
            let r = match taken {
                Some((0, r)) if k == 0 => r,
                _ => new_region(&mut regions, &mut pinned, &mut region_reads, &info, Lifetime::Between(id, id)),
            };
            if is_output[o] {
                pinned[r] = true;
            }
            region_reads[r] = region_reads[r].max(last_read[o]);
            slots[o].region = Some(r);
        }
        let scratch: Vec<usize> = lowered
            .scratch
            .iter()
            .map(|(elem, n)| new_region(&mut regions, &mut pinned, &mut region_reads, &TensorInfo { elem: *elem, shape: vec![*n] }, Lifetime::Between(id, id)))
            .collect();
        scratch_of.extend(scratch.iter().map(|&r| (r, id)));
        for launch in lowered.launches {
            let mut rs = Vec::with_capacity(launch.binds.len());
            for b in &launch.binds {
                rs.push(match *b {
                    Bind::Input(k) => Some(ensure(input_value(k)?, &mut slots, &mut regions, &mut pinned, &mut region_reads)?),
                    Bind::Output(k) => Some(slots[output_value(k)?].region.ok_or_else(|| err(format!("output {k} has no storage")))?),
                    Bind::Scratch(k) => Some(*scratch.get(k).ok_or_else(|| err(format!("scratch buffer {k} was not requested")))?),
                    Bind::Step => None,
                });
            }
            if launch.binds.len() > limits.max_bindings as usize {
                return Err(err(format!("a launch binds {} buffers; the adapter allows {}", launch.binds.len(), limits.max_bindings)));
            }
            steps.push(Step { node: id, launch, regions: rs });
        }
    }

    // Every graph output must have storage (a host-known output is uploaded).
    for &o in &g.outputs {
        if slots[o].region.is_none() {
            let s = &slots[o];
            let (Some(info), Some(h)) = (s.info.clone(), s.host.clone()) else {
                return Err(ExecError::Node { node: "<outputs>".into(), op: String::new(), detail: format!("output '{}' is not computed", g.values[o].name) });
            };
            let r = new_region(&mut regions, &mut pinned, &mut region_reads, &info, Lifetime::Resident);
            constants.push((r, h.words()));
            slots[o].region = Some(r);
        }
    }

    // Lifetimes: from the writer to the last reader of any value in the region.
    for (v, s) in slots.iter().enumerate() {
        let Some(r) = s.region else { continue };
        if pinned[r] {
            regions[r].life = Lifetime::Resident;
            continue;
        }
        if let Lifetime::Between(first, last) = regions[r].life {
            let reads = if is_output[v] { end } else { last_read[v] };
            regions[r].life = Lifetime::Between(first, last.max(reads));
        }
    }
    // Pages: the adapter's largest buffer, whole ALIGN units. Every region
    // (a tensor, or a kernel's scratch) must fit in one, and in one binding.
    let page_bytes = (limits.max_buffer / ALIGN * ALIGN).max(ALIGN);
    let kib = |b: u64| format!("{:.1} KiB", b as f64 / 1024.0);
    let what = |r: usize| -> String {
        match slots.iter().position(|s| s.region == Some(r)) {
            Some(v) => format!("tensor '{}'", g.values[v].name),
            None => match scratch_of.iter().find(|s| s.0 == r) {
                Some(&(_, id)) => format!("the scratch buffer of node '{}' ({})", g.nodes[id].name, g.nodes[id].op_type),
                None => "a buffer".to_string(),
            },
        }
    };
    for (r, region) in regions.iter().enumerate() {
        if align(region.bytes) > page_bytes {
            return Err(ExecError::Device(format!("{} takes {}; the adapter's buffers hold at most {}", what(r), kib(region.bytes), kib(page_bytes))));
        }
        if region.bytes > limits.max_binding {
            return Err(ExecError::Device(format!(
                "{} takes {}; the adapter binds at most {} (tensors that large are not split yet)",
                what(r),
                kib(region.bytes),
                kib(limits.max_binding)
            )));
        }
    }
    let (resident_bytes, transient_bytes, unshared_bytes) = assign_offsets(&mut regions, page_bytes);
    Ok(Program { graph, slots, regions, steps, constants, resident_bytes, transient_bytes, unshared_bytes, page_bytes, binding_bytes: limits.max_binding })
}

fn align(x: u64) -> u64 {
    x.div_ceil(ALIGN) * ALIGN
}

/// Places resident regions first, then the transient ones by lifetime
/// (largest first, lowest free offset), none across a multiple of `page`
/// (each region is at most a page: checked by the caller). Returns
/// (resident, transient, unshared) bytes.
fn assign_offsets(regions: &mut [Region], page: u64) -> (u64, u64, u64) {
    // `at`, or the next page's start when [at, at + size) would cross into it
    let fit = |at: u64, size: u64| if size > 0 && at / page != (at + size - 1) / page { (at / page + 1) * page } else { at };
    let mut resident = 0u64;
    for r in regions.iter_mut().filter(|r| r.life == Lifetime::Resident) {
        let size = align(r.bytes);
        r.offset = fit(resident, size);
        resident = r.offset + size;
    }
    let mut order: Vec<usize> = (0..regions.len()).filter(|&i| regions[i].life != Lifetime::Resident).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(regions[i].bytes));
    let unshared: u64 = order.iter().map(|&i| align(regions[i].bytes)).sum();
    let mut placed: Vec<(u64, u64, usize, usize)> = Vec::new(); // offset, end, first, last
    let mut top = resident;
    for i in order {
        let Lifetime::Between(first, last) = regions[i].life else { continue };
        let size = align(regions[i].bytes);
        let mut busy: Vec<(u64, u64)> = placed.iter().filter(|p| p.2 <= last && first <= p.3).map(|p| (p.0, p.1)).collect();
        busy.sort();
        let mut at = fit(resident, size);
        for (lo, hi) in busy {
            if at + size <= lo {
                break;
            }
            at = fit(at.max(hi), size);
        }
        placed.push((at, at + size, first, last));
        top = top.max(at + size);
        regions[i].offset = at;
    }
    (resident, top - resident, unshared)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regions placed in pages: none crosses a page boundary, and two whose
    /// lifetimes overlap never share bytes; with one huge page the layout is
    /// the unpaged one (no padding).
    #[test]
    fn regions_fit_pages_and_never_overlap_while_both_live() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for page in [ALIGN, 4 * ALIGN, 16 * ALIGN, 1 << 40] {
            for _ in 0..50 {
                let mut regions: Vec<Region> = (0..40)
                    .map(|_| {
                        let bytes = 4 + next(page.min(8 * ALIGN) - 4);
                        let life = if next(4) == 0 {
                            Lifetime::Resident
                        } else {
                            let first = next(30) as usize;
                            Lifetime::Between(first, first + next(6) as usize)
                        };
                        Region { offset: 0, bytes, life }
                    })
                    .collect();
                let (resident, transient, unshared) = assign_offsets(&mut regions, page);
                let top = resident + transient;
                for (i, a) in regions.iter().enumerate() {
                    let end = a.offset + align(a.bytes);
                    assert_eq!(a.offset % ALIGN, 0);
                    assert!(end <= top, "region {i} ends past the arena");
                    assert_eq!(a.offset / page, (end - 1) / page, "region {i} ({} bytes at {}) crosses a {page}-byte page", a.bytes, a.offset);
                    for b in &regions[i + 1..] {
                        let live = |r: &Region| match r.life {
                            Lifetime::Resident => (0, usize::MAX),
                            Lifetime::Between(f, l) => (f, l),
                        };
                        let ((af, al), (bf, bl)) = (live(a), live(b));
                        if af <= bl && bf <= al {
                            assert!(end <= b.offset || b.offset + align(b.bytes) <= a.offset, "regions alive together overlap");
                        }
                    }
                }
                let sum: u64 = regions.iter().filter(|r| r.life == Lifetime::Resident).map(|r| align(r.bytes)).sum();
                if page == 1 << 40 {
                    assert_eq!(resident, sum, "one page: the resident regions back to back");
                    assert!(transient <= unshared, "sharing by lifetime never takes more than no sharing");
                }
            }
        }
    }
}
