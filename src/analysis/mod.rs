//! Static scale-invariance analysis.
//!
//! For each trainable parameter the analysis *hypothesises* a change — an
//! arbitrary additive perturbation (dead?), one positive factor for the whole
//! tensor (layer-wise?), one positive factor per slice along an axis
//! (channel-wise?), one common factor for a group of tensors (joint?) — and
//! propagates it forward through the graph with the per-op rules in
//! [`rules`]. The hypothesis holds when every change is removed by a
//! normalization (or never reaches an output) before it can reach a graph
//! output. A rule that cannot prove how a change passes answers `Variant` or
//! `Unknown`, so an invariance is only claimed when it is proven.
//!
//! Propagation only visits the region where the change survives, usually a
//! few nodes up to the next normalization, so the whole analysis is close to
//! linear in the graph size.

pub mod effect;
pub mod rules;

use crate::ir::{Dim, Graph, NodeId, ValueId};
use effect::{mask, Affine, Flow, Scale, Shift};
use serde::Serialize;
use crate::ir::Node;
use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap};

/// The most axes a value may have for the analysis to reason about it (the
/// width of an axis mask).
const MAX_RANK: usize = 64;

/// How a parameter may be rescaled without changing the model's outputs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "class", rename_all = "lowercase")]
pub enum ScaleClass {
    /// Each slice along `axis` may be scaled by its own positive factor.
    Channel {
        /// The axis whose slices are independent.
        axis: usize,
    },
    /// Only one positive factor for the whole tensor.
    Layer,
    /// Invariant only when scaled together with the other tensors of `group`.
    Joint {
        /// All members (this tensor included), sorted.
        group: Vec<String>,
    },
    /// No influence on any output (e.g. a bias removed by a later normalization).
    Dead,
    /// Proven to influence the outputs under scaling.
    None,
    /// Undecided statically (unsupported op on the path); use the runtime test.
    Unknown,
}

impl ScaleClass {
    /// The class name used in reports.
    pub fn name(&self) -> &'static str {
        match self {
            ScaleClass::Channel { .. } => "channel",
            ScaleClass::Layer => "layer",
            ScaleClass::Joint { .. } => "joint",
            ScaleClass::Dead => "dead",
            ScaleClass::None => "none",
            ScaleClass::Unknown => "unknown",
        }
    }

    /// True for channel and layer: the classes AdamP/SGDP project on their own.
    pub fn is_scale_invariant(&self) -> bool {
        matches!(self, ScaleClass::Channel { .. } | ScaleClass::Layer)
    }
}

/// Why a parameter got its class.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Evidence {
    /// Normalization nodes that remove the change (`name (OpType)`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub normalizers: Vec<String>,
    /// Nodes from the parameter to the first normalizer (or to where it failed).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub path: Vec<String>,
    /// For none/unknown (and trivial dead): what decided it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The analysis result for one trainable parameter.
#[derive(Debug, Clone, Serialize)]
pub struct ParamReport {
    /// Initializer name.
    pub name: String,
    /// Dimensions.
    pub shape: Vec<i64>,
    /// Element type name.
    pub dtype: String,
    /// Number of elements.
    pub elements: u64,
    /// The class.
    #[serde(flatten)]
    pub class: ScaleClass,
    /// Why.
    pub evidence: Evidence,
}

/// A problem with the export that hides or destroys invariance evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Warning {
    /// Stable identifier (`folded-normalization`, `eval-batchnorm`, `shape-conflict`, `unsupported-ops`).
    pub code: String,
    /// What happened and what to do.
    pub message: String,
}

/// Totals over all trainable parameters.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Trainable tensors.
    pub tensors: usize,
    /// Trainable elements.
    pub elements: u64,
    /// Elements of channel- and layer-wise invariant tensors.
    pub elements_scale_invariant: u64,
    /// `elements_scale_invariant / elements`.
    pub fraction_scale_invariant: f64,
    /// Tensors per class.
    pub classes: std::collections::BTreeMap<String, usize>,
}

/// The whole analysis of one model.
#[derive(Debug, Clone, Serialize)]
pub struct Analysis {
    /// Model file name.
    pub model: String,
    /// One entry per trainable parameter, in initializer order.
    pub parameters: Vec<ParamReport>,
    /// Totals.
    pub summary: Summary,
    /// Export problems.
    pub warnings: Vec<Warning>,
}

impl Analysis {
    /// The report for a parameter by name.
    pub fn param(&self, name: &str) -> Option<&ParamReport> {
        self.parameters.iter().find(|p| p.name == name)
    }
}

/// The re-export recipe every warning points to.
pub const EXPORT_RECIPE: &str = "torch.onnx.export(model, args, f, dynamo=False, \
training=torch.onnx.TrainingMode.TRAINING, do_constant_folding=False)";


/// Most nodes one hypothesis may visit before it gives up with `unknown`.
const VISIT_LIMIT: usize = 1 << 18;

/// Input slots every rule may read (ops have at most this many fixed inputs).
const MIN_SLOTS: usize = 8;

/// Analyses a graph: a class with evidence for every trainable parameter.
pub fn analyze(g: &Graph) -> Analysis {
    analyze_with(g, true)
}

/// [`analyze`], optionally without reusing continuations (the tests compare both).
fn analyze_with(g: &Graph, reuse_tails: bool) -> Analysis {
    let params = trainable_params(g);
    let const_params = const_param_sources(g, &params);
    let reaches = reaches_output(g);
    let mut engine = Engine {
        g,
        const_params: &const_params,
        reaches: &reaches,
        next_token: 1,
        unsupported: BTreeSet::new(),
        tails: HashMap::new(),
        reuse_tails,
    };

    let mut classes: Vec<(ScaleClass, Evidence)> = Vec::with_capacity(params.len());
    let mut joint_candidates: Vec<(usize, Vec<ValueId>)> = Vec::new();
    for (i, &p) in params.iter().enumerate() {
        let (class, evidence, culprits) = engine.classify(p);
        if matches!(class, ScaleClass::None) && !culprits.is_empty() {
            joint_candidates.push((i, culprits));
        }
        classes.push((class, evidence));
    }

    // Joint groups: scale a failed parameter together with the parameters whose
    // unchanged values broke its invariance (a bias next to a weight, beta next to
    // gamma). Each tensor keeps the group found from its own search; a tensor
    // without one takes the first group it belongs to.
    let index: HashMap<ValueId, usize> = params.iter().enumerate().map(|(i, &p)| (p, i)).collect();
    let mut found: Vec<(Vec<ValueId>, Evidence)> = Vec::new();
    let mut own: HashMap<usize, usize> = HashMap::new();
    for (i, culprits) in joint_candidates {
        if let Some((group, evidence)) = engine.joint(params[i], culprits) {
            let members_ok = group.iter().all(|v| index.get(v).is_some_and(|&k| matches!(classes[k].0, ScaleClass::None)));
            if members_ok {
                own.insert(i, found.len());
                found.push((group, evidence));
            }
        }
    }
    let names = |group: &[ValueId]| -> Vec<String> {
        let mut n: Vec<String> = group.iter().map(|&v| g.values[v].name.clone()).collect();
        n.sort();
        n
    };
    let mut first_group: HashMap<ValueId, usize> = HashMap::new();
    for (f, (group, _)) in found.iter().enumerate() {
        for &v in group {
            first_group.entry(v).or_insert(f);
        }
    }
    for (k, class) in classes.iter_mut().enumerate() {
        let pick = own.get(&k).copied().or_else(|| first_group.get(&params[k]).copied());
        if let Some(f) = pick {
            let (group, evidence) = &found[f];
            *class = (ScaleClass::Joint { group: names(group) }, evidence.clone());
        }
    }

    let parameters: Vec<ParamReport> = params
        .iter()
        .zip(classes)
        .map(|(&p, (class, evidence))| {
            let t = g.initializer_of(p).map(|t| (t.dims.clone(), t.dtype, t.elements())).unwrap_or_default();
            ParamReport { name: g.values[p].name.clone(), shape: t.0, dtype: t.1.name(), elements: t.2, class, evidence }
        })
        .collect();
    let summary = summarize(&parameters);
    let warnings = warnings(g, &parameters, &engine.unsupported);
    let model = g.model_path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_else(|| g.model_path.display().to_string());
    Analysis { model, parameters, summary, warnings }
}

fn summarize(parameters: &[ParamReport]) -> Summary {
    let elements: u64 = parameters.iter().map(|p| p.elements).sum();
    let inv: u64 = parameters.iter().filter(|p| p.class.is_scale_invariant()).map(|p| p.elements).sum();
    let mut classes = std::collections::BTreeMap::new();
    for p in parameters {
        *classes.entry(p.class.name().to_string()).or_insert(0) += 1;
    }
    Summary {
        tensors: parameters.len(),
        elements,
        elements_scale_invariant: inv,
        fraction_scale_invariant: if elements == 0 { 0.0 } else { inv as f64 / elements as f64 },
        classes,
    }
}


/// Float initializers that training updates: not running statistics, not
/// shape/index constants, not scalars the exporter inlined.
pub fn trainable_params(g: &Graph) -> Vec<ValueId> {
    g.initializers
        .iter()
        .filter(|init| {
            let v = &g.values[init.value];
            init.tensor.dtype.is_float()
                && !init.tensor.dims.is_empty()
                && !v.consumers.is_empty()
                && v.consumers.iter().any(|&(n, slot)| slot == usize::MAX || !g.nodes[n].def.is_some_and(|d| d.arg_slots.contains(slot)))
        })
        .map(|init| init.value)
        .collect()
}

/// For each constant value: the trainable parameters it is computed from.
fn const_param_sources(g: &Graph, params: &[ValueId]) -> Vec<Vec<ValueId>> {
    let mut out = vec![Vec::new(); g.values.len()];
    for &p in params {
        out[p].push(p);
    }
    for n in &g.nodes {
        if !n.outputs.iter().flatten().all(|&o| g.values[o].is_const) {
            continue;
        }
        let mut src: Vec<ValueId> = n.inputs.iter().flatten().flat_map(|&v| out[v].iter().copied()).collect();
        src.sort_unstable();
        src.dedup();
        src.truncate(8);
        for &o in n.outputs.iter().flatten() {
            out[o] = src.clone();
        }
    }
    out
}

/// True for statistics outputs (running mean/var, saved mean/inv-std) that the
/// training output does not depend on.
fn is_statistics_output(g: &Graph, v: ValueId) -> bool {
    g.values[v].producer.is_some_and(|n| {
        let node = &g.nodes[n];
        node.def.is_some_and(|d| d.statistics_outputs) && node.output(0) != Some(v)
    })
}

/// Values whose change can reach a model output (statistics outputs excluded).
fn reaches_output(g: &Graph) -> Vec<bool> {
    let mut reach = vec![false; g.values.len()];
    for &o in &g.outputs {
        reach[o] = !is_statistics_output(g, o);
    }
    for n in g.nodes.iter().rev() {
        if n.def.is_some_and(|d| d.shape_only) {
            continue;
        }
        if n.outputs.iter().flatten().any(|&o| reach[o]) {
            for &v in n.inputs.iter().flatten().chain(&n.implicit_inputs) {
                reach[v] = true;
            }
        }
    }
    reach
}

/// The outcome of propagating one hypothesis.
#[derive(Debug, Default)]
struct Outcome {
    normalizers: Vec<NodeId>,
    first_path: Vec<NodeId>,
    variant: Option<(NodeId, String)>,
    culprits: Vec<ValueId>,
    unknown: Option<(NodeId, String)>,
}

struct Engine<'a> {
    g: &'a Graph,
    const_params: &'a [Vec<ValueId>],
    reaches: &'a [bool],
    next_token: u32,
    unsupported: BTreeSet<String>,
    /// Continuations of runs from a single changed value (see [`Engine::run`]).
    tails: HashMap<TailKey, Tail>,
    /// Whether `tails` are used.
    reuse_tails: bool,
}

/// A changed value and its effect, where that effect's tokens are the
/// hypotheses' own (which every run uses alike), never fresh ones.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct TailKey {
    value: ValueId,
    scale: Option<(effect::Mask, u32, u64)>,
    shift: Option<(effect::Mask, u32, Vec<ValueId>)>,
}

impl TailKey {
    fn of(value: ValueId, e: &Affine) -> Option<TailKey> {
        // Tokens a run makes fresh differ between runs: no later run meets them.
        let shared = |t: u32| t == 0 || t >= u32::MAX - 1;
        if e.scale.as_ref().is_some_and(|s| !shared(s.token)) || e.shift.as_ref().is_some_and(|t| !shared(t.token)) {
            return None;
        }
        Some(TailKey {
            value,
            scale: e.scale.as_ref().map(|s| (s.mask, s.token, s.exp.to_bits())),
            shift: e.shift.as_ref().map(|t| (t.mask, t.token, t.sources.clone())),
        })
    }
}

/// What a run did from a checkpoint on: enough to finish another run that
/// reaches the same changed value with the same effect.
#[derive(Debug)]
struct Tail {
    /// Normalizers found after the checkpoint, in order.
    normalizers: Vec<NodeId>,
    /// The path's part after the checkpoint to the first of them.
    norm_path: Vec<NodeId>,
    variant: Option<(NodeId, String)>,
    /// The path's part after the checkpoint to the proof of variance.
    variant_path: Vec<NodeId>,
    culprits: Vec<ValueId>,
    unknown: Option<(NodeId, String)>,
    /// Nodes visited after the checkpoint.
    visits: usize,
}

/// A point of a run where one changed value carries the whole change.
struct Checkpoint {
    key: TailKey,
    /// The next node to visit.
    at: NodeId,
    /// Normalizers found before it.
    normalizers: usize,
    visits: usize,
}

impl Engine<'_> {
    fn node_label(&self, n: NodeId) -> String {
        let node = &self.g.nodes[n];
        format!("{} ({})", node.name, node.op_type)
    }

    /// Axes with more than one entry.
    fn non_unit_mask(&self, v: ValueId) -> Option<effect::Mask> {
        let dims = self.g.values[v].shape.as_ref()?;
        Some(dims.iter().enumerate().fold(0, |m, (i, d)| if *d == Dim::Known(1) { m } else { m | mask::bit(i) }))
    }

    /// Propagates the seeds' changes; stops at the first proof of variance.
    ///
    /// Where a single changed value `v` carries all that is left of the change
    /// (every other changed value has no consumer left), the rest of the run
    /// depends on `v` and its effect only: such continuations are remembered
    /// ([`Tail`]) and reused by later runs, so a chain that every parameter's
    /// change travels to the end is walked once, not once per parameter.
    fn run(&mut self, seeds: &[(ValueId, Affine)]) -> Outcome {
        let g = self.g;
        let mut out = Outcome::default();
        let mut effects: HashMap<ValueId, Affine> = HashMap::new();
        let mut pred: HashMap<ValueId, (NodeId, ValueId)> = HashMap::new();
        let mut queue: BTreeSet<NodeId> = BTreeSet::new();
        // Changed inputs of queued nodes, as (slot, value): a node's inputs are
        // never scanned, so a node reading 10^5 values costs what changed.
        let mut pending: HashMap<NodeId, Vec<(usize, ValueId)>> = HashMap::new();
        // Changed values by their last consumer: those still live.
        let mut live: BinaryHeap<Reverse<(NodeId, ValueId)>> = BinaryHeap::new();
        let mut checkpoints: Vec<Checkpoint> = Vec::new();
        // The path to each normalizer when it was first found (for the tails).
        let mut norm_paths: Vec<Vec<NodeId>> = Vec::new();
        let mut limit_hit = false;
        let enqueue = |v: ValueId, queue: &mut BTreeSet<NodeId>, pending: &mut HashMap<NodeId, Vec<(usize, ValueId)>>, live: &mut BinaryHeap<Reverse<(NodeId, ValueId)>>| {
            let mut last = None;
            for &(n, slot) in &g.values[v].consumers {
                queue.insert(n);
                if slot != usize::MAX {
                    pending.entry(n).or_default().push((slot, v));
                }
                last = last.max(Some(n));
            }
            if let Some(last) = last {
                live.push(Reverse((last, v)));
            }
        };
        for (v, a) in seeds {
            effects.insert(*v, a.clone());
            if g.values[*v].is_output {
                out.variant = Some((usize::MAX, format!("'{}' is itself a graph output", g.values[*v].name)));
                return out;
            }
            enqueue(*v, &mut queue, &mut pending, &mut live);
        }
        let mut visits = 0usize;
        'nodes: while let Some(id) = queue.pop_first() {
            while live.peek().is_some_and(|Reverse((last, _))| *last < id) {
                live.pop();
            }
            if let (1, Some(Reverse((_, v)))) = (live.len(), live.peek()) {
                let v = *v;
                if let Some(key) = effects.get(&v).and_then(|e| TailKey::of(v, e)) {
                    if let Some(tail) = self.tails.get(&key).filter(|t| self.reuse_tails && visits + t.visits <= VISIT_LIMIT) {
                        let prefix = chain_to(&pred, v);
                        for (k, &n) in tail.normalizers.iter().enumerate() {
                            if k == 0 && out.normalizers.is_empty() {
                                out.first_path = join_paths(&prefix, &tail.norm_path);
                                norm_paths.push(out.first_path.clone());
                            }
                            if !out.normalizers.contains(&n) {
                                out.normalizers.push(n);
                                if k > 0 || norm_paths.len() < out.normalizers.len() {
                                    norm_paths.push(join_paths(&prefix, if k == 0 { &tail.norm_path } else { &[] }));
                                }
                            }
                        }
                        if out.unknown.is_none() {
                            out.unknown = tail.unknown.clone();
                        }
                        if let Some(variant) = &tail.variant {
                            out.variant = Some(variant.clone());
                            out.first_path = join_paths(&prefix, &tail.variant_path);
                            out.culprits = tail.culprits.clone();
                        }
                        visits += tail.visits;
                        break 'nodes;
                    }
                    // A parameter is only ever a seed, never met again: no checkpoint.
                    if out.unknown.is_none() && g.values[v].producer.is_some() {
                        checkpoints.push(Checkpoint { key, at: id, normalizers: out.normalizers.len(), visits });
                    }
                }
            }
            visits += 1;
            if visits > VISIT_LIMIT {
                out.unknown = Some((id, "the change spreads over too many nodes to follow".into()));
                limit_hit = true;
                break;
            }
            let node = &g.nodes[id];
            let changed_slots = pending.remove(&id).unwrap_or_default();
            // Concat's rule depends on which inputs changed only through their
            // number: a node of thousands of inputs is shown with its changed
            // inputs and one unchanged representative.
            let compact;
            let (node, changed_slots) = if node.is(&crate::ops::CONCAT) && node.inputs.len() > MIN_SLOTS {
                let mut slots: Vec<usize> = changed_slots.iter().map(|&(s, _)| s).collect();
                slots.sort_unstable();
                slots.dedup();
                let unchanged = node.inputs.iter().enumerate().find(|(i, v)| slots.binary_search(i).is_err() || v.is_none()).map(|(_, v)| *v);
                let mut inputs: Vec<Option<ValueId>> = slots.iter().map(|&s| node.inputs[s]).collect();
                let renumbered: Vec<(usize, ValueId)> = slots.iter().enumerate().filter_map(|(k, &s)| node.inputs[s].map(|v| (k, v))).collect();
                inputs.extend(unchanged);
                // (field by field: cloning the node would copy all its inputs)
                compact = Node {
                    name: node.name.clone(),
                    op_type: node.op_type.clone(),
                    def: node.def,
                    domain: node.domain.clone(),
                    inputs,
                    outputs: node.outputs.clone(),
                    implicit_inputs: node.implicit_inputs.clone(),
                    attrs: node.attrs.clone(),
                    source: node.source,
                };
                (&compact, renumbered)
            } else {
                (node, changed_slots)
            };
            // Rules index inputs by slot: a malformed node with fewer inputs
            // reads absent (unchanged) ones instead of panicking.
            let mut inputs: Vec<Option<Affine>> = vec![None; node.inputs.len().max(MIN_SLOTS)];
            for &(slot, v) in &changed_slots {
                if let Some(e) = effects.get(&v) {
                    inputs[slot] = Some(e.clone());
                }
            }
            let implicit_changed = node.implicit_inputs.iter().any(|v| effects.contains_key(v));
            let flows = if node.outputs.is_empty() {
                Vec::new()
            } else if implicit_changed {
                vec![Flow::Unknown(format!("{} reads the change inside a subgraph", node.op_type)); node.outputs.len()]
            } else if let Some(rank) = node.inputs.iter().chain(&node.outputs).flatten().filter_map(|&v| g.values[v].shape.as_ref().map(Vec::len)).find(|&r| r > MAX_RANK) {
                // Effects track axes in 64-bit masks: beyond them no claim is sound.
                vec![Flow::Unknown(format!("a value of rank {rank} (the analysis tracks at most {MAX_RANK} axes)")); node.outputs.len()]
            } else {
                match node.def.and_then(|d| d.analysis_rule()) {
                    Some(rule) => {
                        let mut ctx = rules::Ctx { g, next_token: self.next_token, const_params: self.const_params };
                        let f = rule(&mut ctx, node, &inputs);
                        self.next_token = ctx.next_token;
                        f
                    }
                    None => {
                        let op = if node.is_default_domain() { node.op_type.clone() } else { format!("{}::{}", node.domain, node.op_type) };
                        self.unsupported.insert(op.clone());
                        vec![Flow::Unknown(format!("no rule for op {op}")); node.outputs.len()]
                    }
                }
            };
            // The first changed input in slot order (then the subgraph reads).
            let from = changed_slots
                .iter()
                .min_by_key(|&&(slot, _)| slot)
                .map(|&(_, v)| v)
                .or_else(|| node.implicit_inputs.iter().copied().find(|v| effects.contains_key(v)));
            for (k, o) in node.outputs.iter().enumerate() {
                let Some(o) = *o else { continue };
                let mut flow = flows.get(k).cloned().unwrap_or(Flow::Same);
                if let Flow::Variant(_) = &flow {
                    // A constant (computed only from weights) changes by a data-independent amount.
                    if g.values[o].is_const {
                        flow = match self.non_unit_mask(o) {
                            Some(m) => {
                                self.next_token += 1;
                                Flow::Changed(Affine::shifted(Shift { mask: m, token: self.next_token, sources: Vec::new() }))
                            }
                            None => Flow::Unknown("rank of a computed constant unknown".into()),
                        };
                    }
                }
                match flow {
                    Flow::Same => {}
                    Flow::Normalized => {
                        if out.normalizers.is_empty() {
                            out.first_path = backtrack(&pred, from, id);
                        }
                        if !out.normalizers.contains(&id) {
                            out.normalizers.push(id);
                            norm_paths.push(backtrack(&pred, from, id));
                        }
                    }
                    Flow::Changed(a) if a.is_identity() => {}
                    Flow::Changed(a) => {
                        if let Some(f) = from {
                            pred.insert(o, (id, f));
                        }
                        if g.values[o].is_output && self.reaches[o] {
                            out.variant = Some((id, format!("the change reaches graph output '{}'", g.values[o].name)));
                            out.first_path = backtrack(&pred, from, id);
                            break 'nodes;
                        }
                        effects.insert(o, a);
                        enqueue(o, &mut queue, &mut pending, &mut live);
                    }
                    Flow::Variant(why) => {
                        if self.reaches[o] {
                            out.variant = Some((id, why));
                            out.first_path = backtrack(&pred, from, id);
                            let mut culprits: Vec<ValueId> = inputs.iter().flatten().flat_map(Affine::shift_sources).collect();
                            culprits.sort_unstable();
                            culprits.dedup();
                            out.culprits = culprits;
                            break 'nodes;
                        }
                    }
                    Flow::Unknown(why) => {
                        if self.reaches[o] && out.unknown.is_none() {
                            out.unknown = Some((id, why));
                        }
                    }
                }
            }
        }
        if !limit_hit {
            for cp in checkpoints {
                // Only what happened from the checkpoint on (nodes `at` and later).
                let after = |path: &[NodeId]| -> Vec<NodeId> { path.iter().copied().filter(|&n| n >= cp.at).collect() };
                let tail = Tail {
                    normalizers: out.normalizers[cp.normalizers..].to_vec(),
                    norm_path: norm_paths.get(cp.normalizers).map(|p| after(p)).unwrap_or_default(),
                    variant: out.variant.clone(),
                    variant_path: if out.variant.is_some() { after(&out.first_path) } else { Vec::new() },
                    culprits: if out.variant.is_some() { out.culprits.clone() } else { Vec::new() },
                    unknown: out.unknown.clone(),
                    visits: visits - cp.visits,
                };
                self.tails.entry(cp.key).or_insert(tail);
            }
        }
        out
    }

    fn evidence(&self, o: &Outcome) -> Evidence {
        let path = o.first_path.iter().map(|&n| self.g.nodes[n].name.clone()).collect();
        match (&o.variant, &o.unknown) {
            (Some((n, why)), _) | (None, Some((n, why))) => Evidence {
                normalizers: Vec::new(),
                path,
                reason: Some(if *n == usize::MAX { why.clone() } else { format!("{}: {why}", self.node_label(*n)) }),
            },
            (None, None) => Evidence {
                normalizers: o.normalizers.iter().map(|&n| self.node_label(n)).collect(),
                path,
                reason: o.normalizers.is_empty().then(|| "no path to any graph output".to_string()),
            },
        }
    }

    /// Tries dead, layer, then channel hypotheses for one parameter.
    fn classify(&mut self, p: ValueId) -> (ScaleClass, Evidence, Vec<ValueId>) {
        let Some(m) = self.non_unit_mask(p) else { return (ScaleClass::Unknown, Evidence::default(), Vec::new()) };
        let dead = self.run(&[(p, Affine::shifted(Shift { mask: m, token: 0, sources: Vec::new() }))]);
        if dead.variant.is_none() && dead.unknown.is_none() {
            return (ScaleClass::Dead, self.evidence(&dead), Vec::new());
        }
        let layer = self.run(&[(p, Affine::scaled(Scale { mask: 0, token: 0, exp: 1.0 }))]);
        if layer.variant.is_some() {
            return (ScaleClass::None, self.evidence(&layer), layer.culprits.clone());
        }
        if layer.unknown.is_some() {
            return (ScaleClass::Unknown, self.evidence(&layer), Vec::new());
        }
        for axis in self.axis_preference(p) {
            let o = self.run(&[(p, Affine::scaled(Scale { mask: mask::bit(axis), token: u32::MAX - 1, exp: 1.0 }))]);
            if o.variant.is_none() && o.unknown.is_none() {
                return (ScaleClass::Channel { axis }, self.evidence(&o), Vec::new());
            }
        }
        (ScaleClass::Layer, self.evidence(&layer), Vec::new())
    }

    /// Axes of size > 1, the consumer's output-channel axis first.
    fn axis_preference(&self, p: ValueId) -> Vec<usize> {
        let g = self.g;
        let dims = g.values[p].shape.clone().unwrap_or_default();
        let rank = dims.len();
        let mut axes: Vec<usize> = Vec::new();
        for &(n, slot) in &g.values[p].consumers {
            let node = &g.nodes[n];
            let preferred = node.def.and_then(|d| d.channel_axis).and_then(|axis| axis(node, slot, rank));
            if let Some(a) = preferred {
                if !axes.contains(&a) {
                    axes.push(a);
                }
            }
        }
        for a in 0..rank {
            if !axes.contains(&a) {
                axes.push(a);
            }
        }
        axes.retain(|&a| dims.get(a).is_some_and(|d| *d != Dim::Known(1)));
        axes
    }

    /// Grows a group from `p` and its culprits until one common scale is invariant.
    fn joint(&mut self, p: ValueId, culprits: Vec<ValueId>) -> Option<(Vec<ValueId>, Evidence)> {
        let mut group = vec![p];
        let mut next = culprits;
        for _ in 0..3 {
            let fresh: Vec<ValueId> = next.into_iter().filter(|v| !group.contains(v)).collect();
            if fresh.is_empty() {
                return None;
            }
            group.extend(fresh);
            let seeds: Vec<(ValueId, Affine)> = group.iter().map(|&v| (v, Affine::scaled(Scale { mask: 0, token: 0, exp: 1.0 }))).collect();
            let o = self.run(&seeds);
            if o.variant.is_none() && o.unknown.is_none() {
                group.sort_unstable();
                return Some((group, self.evidence(&o)));
            }
            o.variant.as_ref()?;
            next = o.culprits;
        }
        None
    }
}

/// Nodes up to `v`'s producer, following the first changed input backwards
/// (as [`backtrack`] does), at most as many as a path holds.
fn chain_to(pred: &HashMap<ValueId, (NodeId, ValueId)>, v: ValueId) -> Vec<NodeId> {
    let mut path = Vec::new();
    let mut cur = Some(v);
    while let Some(val) = cur {
        match pred.get(&val) {
            Some(&(n, prev)) if path.len() < PATH_LIMIT => {
                path.push(n);
                cur = Some(prev);
            }
            _ => break,
        }
    }
    path.reverse();
    path
}

/// A prefix and a tail of a path, cut to the last [`PATH_LIMIT`] nodes as [`backtrack`] does.
fn join_paths(prefix: &[NodeId], tail: &[NodeId]) -> Vec<NodeId> {
    let mut path: Vec<NodeId> = prefix.iter().chain(tail).copied().collect();
    if path.len() > PATH_LIMIT {
        path.drain(..path.len() - PATH_LIMIT);
    }
    path
}

/// Most nodes an evidence path lists (the last ones before the verdict).
const PATH_LIMIT: usize = 32;

/// Nodes from the seed to `last`, following the first changed input backwards.
fn backtrack(pred: &HashMap<ValueId, (NodeId, ValueId)>, from: Option<ValueId>, last: NodeId) -> Vec<NodeId> {
    let mut path = vec![last];
    let mut v = from;
    while let Some(val) = v {
        match pred.get(&val) {
            Some(&(n, prev)) if path.len() < PATH_LIMIT => {
                path.push(n);
                v = Some(prev);
            }
            _ => break,
        }
    }
    path.reverse();
    path
}

fn warnings(g: &Graph, params: &[ParamReport], unsupported: &BTreeSet<String>) -> Vec<Warning> {
    let mut out = Vec::new();
    let has_norm = g.nodes.iter().any(|n| n.def.is_some_and(|d| d.normalizer));
    let any_invariant = params.iter().any(|p| p.class.is_scale_invariant() || matches!(p.class, ScaleClass::Joint { .. } | ScaleClass::Dead));
    let convs = g.nodes.iter().filter(|n| n.is(&crate::ops::CONV)).count();
    let conv_with_bias = g.nodes.iter().filter(|n| n.is(&crate::ops::CONV) && n.input(2).is_some()).count();
    // Folding BatchNorm into Conv leaves every Conv with a bias; a model with
    // one Conv (a patch stem before MLPs) or with bias-free Convs never had it.
    let looks_folded = conv_with_bias >= 2 && conv_with_bias == convs;
    if !has_norm && !any_invariant && looks_folded {
        out.push(Warning {
            code: "folded-normalization".into(),
            message: format!(
                "no normalization node, yet {conv_with_bias} Conv node(s) carry a bias: BatchNorm was probably folded into Conv \
                 by an eval-mode export (or by dynamo=True), which destroys the scale-invariance evidence. Re-export with {EXPORT_RECIPE}"
            ),
        });
    }
    let eval_bn: Vec<&str> = g
        .nodes
        .iter()
        .filter(|n| n.is(&crate::ops::BATCH_NORMALIZATION))
        .filter(|n| !crate::ops::bn_training(g.opset, n))
        .map(|n| n.name.as_str())
        .collect();
    if !eval_bn.is_empty() {
        let shown: Vec<&str> = eval_bn.iter().take(3).copied().collect();
        out.push(Warning {
            code: "eval-batchnorm".into(),
            message: format!(
                "{} BatchNormalization node(s) use frozen running statistics (training_mode=0), e.g. {}: they normalize nothing, \
                 so the weights before them are not scale-invariant in this graph. Re-export in training mode with {EXPORT_RECIPE}",
                eval_bn.len(),
                shown.join(", ")
            ),
        });
    }
    if !g.shape_conflicts.is_empty() {
        let shown: Vec<String> = g
            .shape_conflicts
            .iter()
            .take(3)
            .map(|c| format!("'{}' declared {} but inferred {}", g.values[c.value].name, c.declared, c.inferred))
            .collect();
        out.push(Warning {
            code: "shape-conflict".into(),
            message: format!(
                "{} value_info declaration(s) contradict the shapes the op definitions imply, e.g. {}: the inferred shapes are used",
                g.shape_conflicts.len(),
                shown.join(", ")
            ),
        });
    }
    if !unsupported.is_empty() {
        let ops: Vec<&str> = unsupported.iter().map(String::as_str).collect();
        out.push(Warning {
            code: "unsupported-ops".into(),
            message: format!(
                "no analysis rule for {}: parameters whose change reaches them are 'unknown' (the runtime cosine test decides)",
                ops.join(", ")
            ),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::onnx::{load_model, load_model_bytes, Attr, GraphBuilder, TensorData};

    fn same_with_and_without_tails(g: &crate::ir::Graph, what: &str) {
        let with = serde_json::to_string(&super::analyze_with(g, true)).expect("serializes");
        let without = serde_json::to_string(&super::analyze_with(g, false)).expect("serializes");
        assert_eq!(with, without, "{what}: reusing continuations changed the analysis");
    }

    #[test]
    fn reusing_continuations_changes_no_result_on_the_zoo() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/zoo");
        let mut models = 0;
        for entry in std::fs::read_dir(&dir).expect("zoo") {
            let path = entry.expect("entry").path();
            let name = path.to_string_lossy().into_owned();
            if !(name.ends_with(".onnx") || name.ends_with(".onnx.gz")) {
                continue;
            }
            let g = crate::ir::from_model(&load_model(&path).expect("loads")).expect("builds");
            same_with_and_without_tails(&g, &name);
            models += 1;
        }
        assert!(models > 20, "only {models} zoo models");
    }

    #[test]
    fn reusing_continuations_changes_no_result_on_chains_and_branches() {
        // Chains of scaled values with residual adds, normalizations and a
        // two-way branch: continuations meet at many shared values.
        for width in [1usize, 3, 7] {
            let mut b = GraphBuilder::new("t", 17);
            b.input("x", &[-1, 4]);
            let mut prev = "x".to_string();
            for i in 0..40 {
                let (p, y) = (format!("p{i}"), format!("y{i}"));
                b.initializer(&p, &[4], TensorData::Zeros);
                b.node(if i % 5 == 4 { "Add" } else { "Mul" }, &[&prev, &p], &[&y], &[]);
                prev = y;
                if i % width == 0 {
                    let (g, bb, n) = (format!("g{i}"), format!("b{i}"), format!("n{i}"));
                    b.initializer(&g, &[4], TensorData::Zeros);
                    b.initializer(&bb, &[4], TensorData::Zeros);
                    b.node("LayerNormalization", &[&prev, &g, &bb], &[&n], &[("axis", Attr::Int(-1))]);
                    let r = format!("r{i}");
                    b.node("Add", &[&n, &prev], &[&r], &[]);
                    prev = r;
                }
            }
            b.output(&prev);
            let g = crate::ir::from_model(&load_model_bytes(b.to_bytes()).expect("decodes")).expect("builds");
            same_with_and_without_tails(&g, &format!("chain of width {width}"));
        }
    }
}
