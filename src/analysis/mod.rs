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
use std::collections::{BTreeSet, HashMap};

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
    /// Stable identifier (`folded-normalization`, `eval-batchnorm`, `unsupported-ops`).
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

/// Ops that normalize activations or weights (sources of invariance).
pub const NORMALIZERS: &[&str] = &[
    "BatchNormalization",
    "InstanceNormalization",
    "LayerNormalization",
    "GroupNormalization",
    "LpNormalization",
    "RMSNormalization",
    "MeanVarianceNormalization",
];

/// Most nodes one hypothesis may visit before it gives up with `unknown`.
const VISIT_LIMIT: usize = 1 << 18;

/// Input slots every rule may read (ops have at most this many fixed inputs).
const MIN_SLOTS: usize = 8;

/// Analyses a graph: a class with evidence for every trainable parameter.
pub fn analyze(g: &Graph) -> Analysis {
    let params = trainable_params(g);
    let const_params = const_param_sources(g, &params);
    let reaches = reaches_output(g);
    let mut engine = Engine { g, const_params: &const_params, reaches: &reaches, next_token: 1, unsupported: BTreeSet::new() };

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

/// Input slots that take shapes, indices, bounds or exponents, never weights.
fn is_attribute_slot(op: &str, slot: usize) -> bool {
    match op {
        "Reshape" | "Expand" | "Tile" | "Squeeze" | "Unsqueeze" | "Upsample" | "Split" | "TopK" | "CumSum" => slot >= 1,
        "Slice" | "Pad" | "Resize" | "OneHot" | "Dropout" | "Clip" | "Range" => slot >= 1 || op == "Range",
        "ReduceMean" | "ReduceSum" | "ReduceMax" | "ReduceMin" | "ReduceL2" | "ReduceL1" | "ReduceProd" | "ReduceSumSquare"
        | "ReduceLogSum" | "ReduceLogSumExp" => slot >= 1,
        "Pow" => slot == 1,
        "ConstantOfShape" => true,
        "BatchNormalization" => slot >= 3,
        _ => false,
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
                && v.consumers.iter().any(|&(n, slot)| slot == usize::MAX || !is_attribute_slot(&g.nodes[n].op_type, slot))
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
        matches!(node.op_type.as_str(), "BatchNormalization" | "LayerNormalization" | "RMSNormalization") && node.output(0) != Some(v)
    })
}

/// Values whose change can reach a model output (statistics outputs excluded).
fn reaches_output(g: &Graph) -> Vec<bool> {
    let mut reach = vec![false; g.values.len()];
    for &o in &g.outputs {
        reach[o] = !is_statistics_output(g, o);
    }
    for n in g.nodes.iter().rev() {
        if matches!(n.op_type.as_str(), "Shape" | "Size") && n.is_default_domain() {
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
    fn run(&mut self, seeds: &[(ValueId, Affine)]) -> Outcome {
        let g = self.g;
        let mut out = Outcome::default();
        let mut effects: HashMap<ValueId, Affine> = HashMap::new();
        let mut pred: HashMap<ValueId, (NodeId, ValueId)> = HashMap::new();
        let mut queue: BTreeSet<NodeId> = BTreeSet::new();
        for (v, a) in seeds {
            effects.insert(*v, a.clone());
            if g.values[*v].is_output {
                out.variant = Some((usize::MAX, format!("'{}' is itself a graph output", g.values[*v].name)));
                return out;
            }
            queue.extend(g.values[*v].consumers.iter().map(|&(n, _)| n));
        }
        let mut visits = 0usize;
        while let Some(id) = queue.pop_first() {
            visits += 1;
            if visits > VISIT_LIMIT {
                out.unknown = Some((id, "the change spreads over too many nodes to follow".into()));
                return out;
            }
            let node = &g.nodes[id];
            let mut inputs: Vec<Option<Affine>> = node.inputs.iter().map(|v| v.and_then(|v| effects.get(&v).cloned())).collect();
            // Rules index inputs by slot: a malformed node with fewer inputs
            // reads absent (unchanged) ones instead of panicking.
            if inputs.len() < MIN_SLOTS {
                inputs.resize(MIN_SLOTS, None);
            }
            let implicit_changed = node.implicit_inputs.iter().any(|v| effects.contains_key(v));
            let flows = if node.outputs.is_empty() {
                Vec::new()
            } else if implicit_changed {
                vec![Flow::Unknown(format!("{} reads the change inside a subgraph", node.op_type)); node.outputs.len()]
            } else {
                match rules::rule_for(&node.op_type).filter(|_| node.is_default_domain()) {
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
            let from = node.inputs.iter().flatten().chain(&node.implicit_inputs).copied().find(|v| effects.contains_key(v));
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
                            return out;
                        }
                        queue.extend(g.values[o].consumers.iter().map(|&(n, _)| n));
                        effects.insert(o, a);
                    }
                    Flow::Variant(why) => {
                        if self.reaches[o] {
                            out.variant = Some((id, why));
                            out.first_path = backtrack(&pred, from, id);
                            let mut culprits: Vec<ValueId> = inputs.iter().flatten().flat_map(Affine::shift_sources).collect();
                            culprits.sort_unstable();
                            culprits.dedup();
                            out.culprits = culprits;
                            return out;
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
            let preferred = match (node.op_type.as_str(), slot) {
                ("Conv", 1) => Some(0),
                ("ConvTranspose", 1) => Some(1),
                ("Gemm", 1) => Some(if node.attr_int("transB", 0) != 0 { 0 } else { 1 }),
                ("Gemm", 0) => Some(if node.attr_int("transA", 0) != 0 { 1 } else { 0 }),
                ("MatMul", 1) if rank >= 1 => Some(rank - 1),
                ("MatMul", 0) if rank >= 2 => Some(rank - 2),
                _ => None,
            };
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

/// Nodes from the seed to `last`, following the first changed input backwards.
fn backtrack(pred: &HashMap<ValueId, (NodeId, ValueId)>, from: Option<ValueId>, last: NodeId) -> Vec<NodeId> {
    let mut path = vec![last];
    let mut v = from;
    while let Some(val) = v {
        match pred.get(&val) {
            Some(&(n, prev)) if path.len() < 32 => {
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
    let has_norm = g.nodes.iter().any(|n| NORMALIZERS.contains(&n.op_type.as_str()));
    let any_invariant = params.iter().any(|p| p.class.is_scale_invariant() || matches!(p.class, ScaleClass::Joint { .. } | ScaleClass::Dead));
    let conv_with_bias = g.nodes.iter().filter(|n| n.op_type == "Conv" && n.input(2).is_some()).count();
    if !has_norm && !any_invariant && conv_with_bias > 0 {
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
        .filter(|n| n.op_type == "BatchNormalization")
        .filter(|n| if g.opset >= 14 { n.attr_int("training_mode", 0) == 0 } else { n.outputs.iter().skip(1).all(Option::is_none) })
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
