//! The training-graph rewrite: model + loss + reverse-mode gradients + the
//! optimizer update (driven by the static plan) as one standard ONNX graph.
//!
//! I/O contract of the step graph:
//! - inputs: the model's inputs (same names), `labels`, `step` (int64 scalar,
//!   1-based), `lr` (float32 scalar), every trainable parameter, the optimizer
//!   state (`<p>.exp_avg`, `<p>.exp_avg_sq` for the Adam family, `<p>.momentum`
//!   for the SGD family), and every buffer the forward pass updates
//!   (BatchNormalization running mean and variance);
//! - each parameter, state and buffer input (and `lr`) also has an initializer
//!   of the same name holding its initial value, so the graph runs stand-alone;
//! - outputs: `loss` (float32 scalar, this forward pass's loss) and
//!   `<name>.new` for every parameter, state and buffer input (and
//!   `<p>.grad` per parameter when asked). Feeding each `<name>.new` back as
//!   `<name>` runs the next step.
//!
//! Pipeline: [`lower`] copies the forward nodes (normalizations written out in
//! primitive ops, If branches with a known condition inlined from the IR's
//! subgraphs) and attaches the loss; the IR of that graph is differentiated
//! by [`grad::backward`] (one rule table); [`update`] emits the optimizer
//! step; unused nodes are pruned, and the IR of the whole step graph goes to
//! the ONNX writer (`crate::onnx::write_model`).
pub(crate) mod emit;
pub(crate) mod grad;
pub(crate) mod lower;
mod update;

pub(crate) use grad::{ExpandFn, GradFn};

use crate::ir::{self, AttrValue, DType, Parts, Tensor, TypeDecl};
use crate::ops;
use crate::onnx::{LoadedModel, ModelInfo, OnnxError};
use crate::plan::Plan;
use crate::optim::{Config, Detect};
use crate::plan::PlanMismatch;
use emit::{decl, tensor_f, Emitter, DOUBLE, FLOAT, INT64};
use std::collections::HashSet;

/// The loss attached to the model's first output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Loss {
    /// Mean over the batch of `-log softmax(output)[label]`; labels are int64 `[N]`.
    CrossEntropy,
    /// Mean squared error over all elements; labels are float, shaped like the output.
    Mse,
}

/// What to build.
#[derive(Debug, Clone)]
pub struct Options {
    /// The loss.
    pub loss: Loss,
    /// The optimizer and its hyperparameters (`lr` is the default of the `lr` input).
    pub config: Config,
    /// How projected tensors are chosen.
    pub detect: Detect,
    /// A plan to follow instead of analysing the model.
    pub plan: Option<Plan>,
    /// Also output `<p>.grad` for every parameter.
    pub gradients: bool,
}

/// Errors of the rewrite; each names the file and the node or tensor.
#[derive(Debug, thiserror::Error)]
pub enum RewriteError {
    /// An op on the gradient path without a gradient rule.
    #[error("node '{node}' ({op}) has no gradient rule. Supported ops: {supported}")]
    Unsupported {
        /// The node.
        node: String,
        /// Its op type.
        op: String,
        /// Every supported op, by family.
        supported: String,
    },
    /// A node the rewrite cannot handle as given.
    #[error("node '{node}' ({op}): {detail}")]
    Node {
        /// The node.
        node: String,
        /// Its op type.
        op: String,
        /// What is wrong.
        detail: String,
    },
    /// A model-level problem (opset, outputs, names).
    #[error("{detail}")]
    Model {
        /// What is wrong.
        detail: String,
    },
    /// Any of the above, with the model file.
    #[error("{path}: {inner}")]
    In {
        /// The model file.
        path: String,
        /// The error.
        inner: Box<RewriteError>,
    },
    /// Reading the model.
    #[error(transparent)]
    Onnx(#[from] OnnxError),
    /// Building the IR.
    #[error(transparent)]
    Ir(#[from] ir::IrError),
    /// A plan for another model.
    #[error(transparent)]
    Plan(#[from] PlanMismatch),
}

/// The step graph.
#[derive(Debug)]
pub struct Rewritten {
    /// The model (encode or save it).
    pub model: LoadedModel,
    /// Trainable parameters, in input order.
    pub params: Vec<String>,
    /// Optimizer state inputs, in input order.
    pub state: Vec<String>,
    /// Buffers the forward pass updates, in input order.
    pub buffers: Vec<String>,
    /// The graph's inputs with their dims (`None`: symbolic or unknown).
    inputs: Vec<(String, Vec<Option<i64>>)>,
    /// The graph's outputs.
    outputs: Vec<String>,
    /// The initializers' names.
    initializers: Vec<String>,
    /// The nodes' op types.
    ops: Vec<String>,
    /// Default-domain opset.
    opset: i64,
}

impl Rewritten {
    /// The written model of a step graph, and what the accessors report of it.
    fn new(g: &ir::Graph, info: &ModelInfo, params: Vec<String>, state: Vec<String>, buffers: Vec<String>) -> Result<Rewritten, RewriteError> {
        let dims = |d: &Option<TypeDecl>| -> Vec<Option<i64>> {
            d.as_ref().and_then(|d| d.shape.as_ref()).map(|s| s.iter().map(|d| d.known()).collect()).unwrap_or_default()
        };
        Ok(Rewritten {
            model: crate::onnx::write_model(g, info)?,
            params,
            state,
            buffers,
            inputs: g.input_decls.iter().map(|(v, d)| (g.values[*v].name.clone(), dims(d))).collect(),
            outputs: g.outputs.iter().map(|&v| g.values[v].name.clone()).collect(),
            initializers: g.initializers.iter().map(|i| g.values[i.value].name.clone()).collect(),
            ops: g.nodes.iter().map(|n| n.op_type.clone()).collect(),
            opset: g.opset,
        })
    }

    /// Encodes the model.
    pub fn encode(&self) -> Result<Vec<u8>, OnnxError> {
        self.model.encode()
    }

    /// Writes the model atomically.
    pub fn save(&self, path: &std::path::Path) -> Result<(), OnnxError> {
        self.model.save(path)
    }

    /// The graph's inputs, in order, with their shapes (`None`: a symbolic or
    /// unknown dim; an absent shape gives an empty list).
    pub fn inputs(&self) -> Vec<(String, Vec<Option<i64>>)> {
        self.inputs.clone()
    }

    /// The graph's outputs, in order.
    pub fn outputs(&self) -> Vec<String> {
        self.outputs.clone()
    }

    /// The initializers' names, in order.
    pub fn initializers(&self) -> Vec<String> {
        self.initializers.clone()
    }

    /// The op types of the nodes, in order.
    pub fn ops(&self) -> Vec<String> {
        self.ops.clone()
    }

    /// The default-domain opset of the step graph.
    pub fn opset(&self) -> i64 {
        self.opset
    }
}

/// The ops with a gradient rule (or written out in ops that have one).
pub fn differentiable_ops() -> Vec<&'static str> {
    grad::differentiable_ops()
}

/// Lowest and highest model opsets the rewrite reads.
pub const OPSETS: (i64, i64) = (11, 23);

/// Builds the training-step graph of a model.
pub fn rewrite(model: &LoadedModel, opts: &Options) -> Result<Rewritten, RewriteError> {
    let built = build(model, opts, true).map_err(|e| in_file(model, e))?;
    Rewritten::new(&built.graph, &built.info, built.params, built.state, built.buffers)
}

/// The forward-and-backward graph of a model without the optimizer update,
/// for an executor that runs the update itself (the WGSL optimizer).
///
/// Inputs: the model's inputs, `labels`, every trainable parameter and every
/// buffer the forward pass updates; outputs: `loss` (float32 scalar), the
/// model's first output ([`GradientGraph::output`]), then
/// `<p>.grad` per parameter in [`GradientGraph::specs`] order (zeros where the
/// loss does not depend on it), then `<b>.new` per buffer.
pub fn gradient_graph(model: &LoadedModel, opts: &Options) -> Result<GradientGraph, RewriteError> {
    let built = build(model, opts, false).map_err(|e| in_file(model, e))?;
    let output = built.graph.outputs.get(1).map(|&v| built.graph.values[v].name.clone()).unwrap_or_default();
    Ok(GradientGraph { graph: built.graph, specs: built.specs, buffers: built.buffers, model_inputs: built.model_inputs, output })
}

/// What [`gradient_graph`] builds.
#[derive(Debug)]
pub struct GradientGraph {
    /// The graph (IR), shapes symbolic as the model declares them.
    pub graph: ir::Graph,
    /// The trainable parameters with their projection labels, in output order.
    pub specs: Vec<crate::optim::TensorSpec>,
    /// Buffers the forward pass updates (BatchNormalization running statistics).
    pub buffers: Vec<String>,
    /// The model's own inputs (the data), in order.
    pub model_inputs: Vec<String>,
    /// The model's first output (logits, predictions).
    pub output: String,
}

fn in_file(model: &LoadedModel, e: RewriteError) -> RewriteError {
    match e {
        e @ (RewriteError::Onnx(_) | RewriteError::Ir(_) | RewriteError::Plan(_) | RewriteError::In { .. }) => e,
        e => RewriteError::In { path: model.path.display().to_string(), inner: Box::new(e) },
    }
}

/// A built step or gradient graph and its names.
struct Built {
    graph: ir::Graph,
    info: ModelInfo,
    params: Vec<String>,
    state: Vec<String>,
    buffers: Vec<String>,
    specs: Vec<crate::optim::TensorSpec>,
    model_inputs: Vec<String>,
}

fn model_err(detail: impl Into<String>) -> RewriteError {
    RewriteError::Model { detail: detail.into() }
}

/// A declaration with known dims.
fn value_info(name: &str, elem: i32, dims: &[i64]) -> (String, Option<TypeDecl>) {
    let dims: Vec<ir::Dim> = dims.iter().map(|&d| ir::Dim::Known(d)).collect();
    decl(name, elem, Some(&dims))
}

/// How the rewrite resolves its graphs into IR.
fn resolving(path: &std::path::Path, opset: i64, infer: bool) -> ir::Resolve {
    ir::Resolve { path: path.to_path_buf(), opset, producer: PRODUCER.into(), body: false, keep_order: true, infer }
}

/// The producer the step graph records.
const PRODUCER: &str = "adamp-graph";

fn build(model: &LoadedModel, opts: &Options, update: bool) -> Result<Built, RewriteError> {
    let g0 = ir::from_model(model)?;
    if !(OPSETS.0..=OPSETS.1).contains(&g0.opset) {
        return Err(model_err(format!(
            "opset {} is not supported by the rewrite (it reads opsets {} to {}; re-export the model)",
            g0.opset, OPSETS.0, OPSETS.1
        )));
    }
    let out0 = *g0.outputs.first().ok_or_else(|| model_err("the model has no outputs"))?;
    let (float, dtype) = match g0.values[out0].dtype {
        Some(DType::F32) => (FLOAT, DType::F32),
        Some(DType::F64) => (DOUBLE, DType::F64),
        other => {
            return Err(model_err(format!(
                "the first output '{}' is {}; the rewrite trains float32 and float64 models",
                g0.values[out0].name,
                other.map(|d| d.name()).unwrap_or_else(|| "of unknown type".into())
            )))
        }
    };
    // Only the specs are kept: the analysis is as large as the graph.
    let specs = {
        let analysis = crate::analysis::analyze(&g0);
        match &opts.plan {
            Some(p) => crate::plan::specs_from_plan(&analysis, p)?,
            None => crate::plan::specs_from_analysis(&analysis),
        }
    };
    for s in &specs {
        let v = g0.value_by_name(&s.name).ok_or_else(|| model_err(format!("parameter '{}' is not in the model", s.name)))?;
        if g0.values[v].dtype != Some(dtype) {
            return Err(model_err(format!(
                "parameter '{}' is {} but the model computes in {}; mixed precision is not supported",
                s.name,
                g0.values[v].dtype.map(|d| d.name()).unwrap_or_default(),
                dtype.name()
            )));
        }
    }
    let state_names: &[&str] = opts.config.algorithm().state_names();

    // Names the contract reserves must be free.
    let taken: HashSet<&str> = g0.values.iter().map(|v| v.name.as_str()).collect();
    let mut reserved: Vec<String> = ["loss", "labels", "step", "lr"].iter().map(|s| s.to_string()).collect();
    for s in &specs {
        reserved.push(format!("{}.new", s.name));
        reserved.push(format!("{}.grad", s.name));
        for st in state_names {
            reserved.push(format!("{}.{st}", s.name));
            reserved.push(format!("{}.{st}.new", s.name));
        }
    }
    if let Some(r) = reserved.iter().find(|r| taken.contains(r.as_str())) {
        return Err(model_err(format!("the model already has a value named '{r}', which the step graph's I/O contract reserves")));
    }
    let prefix = (0..)
        .map(|k| if k == 0 { "adamp_graph/".to_string() } else { format!("adamp_graph{k}/") })
        .find(|p| !g0.values.iter().any(|v| v.name.starts_with(p.as_str())))
        .unwrap_or_default();

    let opset = g0.opset.max(17);
    let mut em = Emitter::new(prefix, opset, float);
    let buffers = lower::forward(&g0, &mut em)?;
    for (i, (b, _)) in buffers.iter().enumerate() {
        if taken.contains(format!("{b}.new").as_str()) {
            return Err(model_err(format!("the model already has a value named '{b}.new'")));
        }
        if buffers[..i].iter().any(|(c, _)| c == b) {
            return Err(model_err(format!("buffer '{b}' is updated by two BatchNormalization nodes")));
        }
        // Both would be written as `<name>.new`: the step graph would define it twice.
        if specs.iter().any(|s| s.name == *b) {
            return Err(model_err(format!(
                "'{b}' is a BatchNormalization running statistic, which the forward pass updates, and also a trainable \
                 parameter of another node; give that node its own initializer"
            )));
        }
    }
    let (loss_t, labels) = lower::loss(&g0, out0, opts.loss, &mut em)?;
    // What is still needed of the model's IR, so that it is freed before the
    // forward graph's IR is built: two IRs of a large graph at once would
    // double the peak memory.
    let out_name = g0.values[out0].name.clone();
    let buffer_decls: Vec<(String, i32, Vec<i64>)> = buffers
        .iter()
        .map(|(b, _)| {
            let t = g0.value_by_name(b).and_then(|v| g0.initializer_of(v)).ok_or_else(|| model_err(format!("buffer '{b}' is not an initializer")))?;
            Ok((b.clone(), t.dtype.onnx_code(), t.dims.clone()))
        })
        .collect::<Result<_, RewriteError>>()?;
    // The model's inputs that are not initializers (those become constants of the step graph).
    let model_inputs: Vec<(String, Option<TypeDecl>)> =
        g0.input_decls.iter().filter(|(v, _)| g0.values[*v].initializer.is_none()).map(|(v, d)| (g0.values[*v].name.clone(), d.clone())).collect();
    let source_initializers: Vec<(String, Tensor)> = g0.initializers.iter().map(|i| (g0.values[i.value].name.clone(), i.tensor.clone())).collect();
    let declarations: Vec<(String, TypeDecl)> = g0.value_info.iter().map(|(v, d)| (g0.values[*v].name.clone(), d.clone())).collect();
    let graph_name = g0.name.clone();
    let symbols = g0.symbols.clone();
    drop(taken);
    drop(g0);

    // The forward graph with the loss as its output, for differentiation.
    let mut info = model.info();
    info.ir_version = info.ir_version.max(8);
    match info.opsets.iter_mut().find(|(domain, _)| domain.is_empty() || domain == "ai.onnx") {
        Some(o) => o.1 = opset,
        None => info.opsets.push((String::new(), opset)),
    }
    info.producer_name = PRODUCER.into();
    info.producer_version = env!("CARGO_PKG_VERSION").into();
    info.metadata.clear();
    let forward_nodes = std::mem::take(&mut em.nodes);
    let forward = Parts {
        name: graph_name.clone(),
        symbols,
        initializers: source_initializers.clone(),
        inputs: model_inputs.iter().cloned().chain(std::iter::once(labels.clone())).collect(),
        outputs: vec![value_info(&loss_t, float, &[])],
        value_info: declarations.clone(),
        nodes: forward_nodes.clone(),
    };
    let g1 = ir::resolve(forward, &resolving(&model.path, opset, true))?;
    let loss_id = g1.value_by_name(&loss_t).ok_or_else(|| model_err("internal: the loss value is missing"))?;
    let param_ids: Vec<usize> = specs.iter().filter_map(|s| g1.value_by_name(&s.name)).collect();
    if param_ids.len() != specs.len() {
        return Err(model_err("internal: a parameter vanished in lowering"));
    }
    let grads = grad::backward(&g1, &mut em, loss_id, &param_ids)?;
    // MSE labels are shaped like the output; lowering (an inlined If) may have revealed it.
    let mut labels = labels;
    let unshaped = labels.1.as_ref().is_some_and(|d| d.shape.is_none());
    if unshaped {
        let shape = g1.value_by_name(&out_name).and_then(|v| g1.values[v].shape.clone()).ok_or_else(|| {
            model_err(format!("the rank of the first output '{out_name}' is unknown; the labels input needs it"))
        })?;
        labels = decl("labels", float, Some(&shape));
    }
    let symbols = g1.symbols.clone();
    drop(g1);

    // The update, and the outputs.
    let mut outputs = vec![value_info("loss", FLOAT, &[])];
    if !update {
        // The model's output, for metrics (accuracy) computed beside the loss.
        outputs.push((out_name.clone(), None));
    }
    let model_input_names: Vec<String> = model_inputs.iter().map(|i| i.0.clone()).collect();
    let mut inputs = model_inputs;
    inputs.push(labels);
    let mut initializers = source_initializers;
    if update {
        inputs.push(value_info("step", INT64, &[]));
        inputs.push(value_info("lr", FLOAT, &[]));
        initializers.push(("lr".into(), tensor_f(FLOAT, &[], &[opts.config.lr()])));
    }
    let bind = |em: &mut Emitter, from: &str, to: &str| em.node(&ops::IDENTITY, &[from], &[to.to_string()], vec![]);
    if float == FLOAT {
        bind(&mut em, &loss_t, "loss");
    } else {
        em.node(&ops::CAST, &[&loss_t], &["loss".to_string()], vec![emit::a_int("to", FLOAT as i64)]);
    }
    let shared = update.then(|| update::shared(&mut em, &opts.config));
    let state_names: &[&str] = if update { state_names } else { &[] };
    let mut state_inputs = Vec::new();
    let mut state_outputs = Vec::new();
    let mut grad_outputs = Vec::new();
    for (spec, grad) in specs.iter().zip(&grads) {
        let dims: Vec<i64> = spec.shape.iter().map(|&d| d as i64).collect();
        let numel: u64 = spec.shape.iter().map(|&d| d as u64).product();
        let state: Vec<String> = state_names.iter().map(|s| format!("{}.{s}", spec.name)).collect();
        for s in &state {
            state_inputs.push(value_info(s, float, &dims));
            initializers.push((s.clone(), zeros(s, float, &dims, numel)?));
        }
        inputs.push(value_info(&spec.name, float, &dims));
        match (grad, &shared) {
            _ if !update => {}
            (Some(gr), Some(shared)) if numel > 0 => {
                outputs.push(value_info(&format!("{}.new", spec.name), float, &dims));
                let slot = update::Slot { param: &spec.name, grad: gr, state: &state, dims: &dims };
                let (p, st) = update::emit(&mut em, shared, &opts.config, opts.detect, spec, &slot);
                bind(&mut em, &p, &format!("{}.new", spec.name));
                for (s, new) in state.iter().zip(st) {
                    bind(&mut em, &new, &format!("{s}.new"));
                }
            }
            _ => {
                outputs.push(value_info(&format!("{}.new", spec.name), float, &dims));
                // The loss does not depend on it: the reference skips it (no decay either).
                bind(&mut em, &spec.name, &format!("{}.new", spec.name));
                for s in &state {
                    bind(&mut em, s, &format!("{s}.new"));
                }
            }
        }
        for s in &state {
            state_outputs.push(value_info(&format!("{s}.new"), float, &dims));
        }
        if opts.gradients || !update {
            let out = format!("{}.grad", spec.name);
            match grad {
                Some(gr) => bind(&mut em, gr, &out),
                None => {
                    let z = em.zeros_like(&spec.name);
                    bind(&mut em, &z, &out);
                }
            }
            grad_outputs.push(value_info(&out, float, &dims));
        }
    }
    inputs.extend(state_inputs);
    outputs.extend(state_outputs);
    let mut buffer_names = Vec::new();
    for ((b, new), (_, elem, dims)) in buffers.iter().zip(&buffer_decls) {
        inputs.push(value_info(b, *elem, dims));
        outputs.push(value_info(&format!("{b}.new"), *elem, dims));
        bind(&mut em, new, &format!("{b}.new"));
        buffer_names.push(b.clone());
    }
    outputs.extend(grad_outputs);

    let mut nodes = forward_nodes;
    nodes.append(&mut em.nodes);
    let mut step = Parts { name: graph_name, symbols, initializers, inputs, outputs, value_info: declarations, nodes };
    prune(&mut step);
    let graph = ir::resolve(step, &resolving(&model.path, opset, false))?;
    let params = specs.iter().map(|s| s.name.clone()).collect();
    let state = specs.iter().flat_map(|s| state_names.iter().map(move |st| format!("{}.{st}", s.name))).collect();
    Ok(Built { graph, info, params, state, buffers: buffer_names, specs, model_inputs: model_input_names })
}

/// A zero initializer (bounded: it is materialized in the file).
fn zeros(name: &str, elem: i32, dims: &[i64], numel: u64) -> Result<Tensor, RewriteError> {
    let bytes = numel.checked_mul(if elem == DOUBLE { 8 } else { 4 }).filter(|&b| b < (1u64 << 31));
    let bytes = bytes.ok_or_else(|| model_err(format!("state '{name}' would need more than 2 GiB")))?;
    Ok(Tensor { dtype: DType::from_onnx(elem), dims: dims.to_vec(), data: vec![0u8; bytes as usize].into() })
}

/// Removes nodes whose outputs nothing reads, and declarations of values that
/// no longer exist.
fn prune(graph: &mut Parts) {
    let mut needed: HashSet<String> = graph.outputs.iter().map(|o| o.0.clone()).collect();
    let mut keep = vec![false; graph.nodes.len()];
    for (i, n) in graph.nodes.iter().enumerate().rev() {
        if n.outputs.iter().any(|o| needed.contains(o)) {
            keep[i] = true;
            needed.extend(n.inputs.iter().filter(|s| !s.is_empty()).cloned());
            // What its subgraphs read of the enclosing scope.
            let subgraphs = n.attrs.iter().flat_map(|(_, a)| AttrValue::subgraphs(a));
            needed.extend(subgraphs.flat_map(|sub| sub.captures.iter().map(|&c| sub.values[c].name.clone())));
        }
    }
    let mut k = keep.into_iter();
    graph.nodes.retain(|_| k.next().unwrap_or(false));
    let produced: HashSet<&str> = graph.nodes.iter().flat_map(|n| n.outputs.iter().map(String::as_str)).collect();
    let vi: Vec<(String, TypeDecl)> = graph.value_info.iter().filter(|v| produced.contains(v.0.as_str())).cloned().collect();
    graph.value_info = vi;
    let inputs: HashSet<String> = graph.inputs.iter().map(|i| i.0.clone()).collect();
    graph.initializers.retain(|t| needed.contains(&t.0) || inputs.contains(&t.0));
}

/// The optimizer update alone as an ONNX graph: the ONNX backend of
/// [`crate::optim`], for replaying optimizer traces in any runtime.
///
/// Inputs: `step` (int64 scalar, 1-based), `lr` (float32 scalar), and per
/// tensor `<name>` (the parameter), `<name>.grad` and its state
/// (`<name>.exp_avg`, `<name>.exp_avg_sq`, or `<name>.momentum`); outputs:
/// `<name>.new` and `<state>.new`, per tensor in order. float32.
pub fn update_graph(specs: &[crate::optim::TensorSpec], config: &Config, detect: Detect) -> Result<Rewritten, RewriteError> {
    config.validate().map_err(|e| model_err(e.to_string()))?;
    let state_names = config.algorithm().state_names();
    let mut em = Emitter::new("update/".into(), 17, FLOAT);
    let mut inputs = vec![value_info("step", INT64, &[]), value_info("lr", FLOAT, &[])];
    let mut outputs = Vec::new();
    let shared = update::shared(&mut em, config);
    let mut state_all = Vec::new();
    for spec in specs {
        let dims: Vec<i64> = spec.shape.iter().map(|&d| i64::try_from(d).unwrap_or(i64::MAX)).collect();
        let grad = format!("{}.grad", spec.name);
        let state: Vec<String> = state_names.iter().map(|s| format!("{}.{s}", spec.name)).collect();
        inputs.push(value_info(&spec.name, FLOAT, &dims));
        inputs.push(value_info(&grad, FLOAT, &dims));
        for s in &state {
            inputs.push(value_info(s, FLOAT, &dims));
        }
        let (p, st) = if spec.numel() == 0 {
            (spec.name.clone(), state.clone())
        } else {
            let slot = update::Slot { param: &spec.name, grad: &grad, state: &state, dims: &dims };
            update::emit(&mut em, &shared, config, detect, spec, &slot)
        };
        let new = format!("{}.new", spec.name);
        em.node(&ops::IDENTITY, &[&p], std::slice::from_ref(&new), vec![]);
        outputs.push(value_info(&new, FLOAT, &dims));
        for (s, v) in state.iter().zip(st) {
            let new = format!("{s}.new");
            em.node(&ops::IDENTITY, &[&v], std::slice::from_ref(&new), vec![]);
            outputs.push(value_info(&new, FLOAT, &dims));
        }
        state_all.extend(state);
    }
    let mut graph = Parts { name: "update".into(), nodes: std::mem::take(&mut em.nodes), inputs, outputs, ..Default::default() };
    prune(&mut graph);
    let path = std::path::Path::new("<update>");
    let graph = ir::resolve(graph, &resolving(path, 17, false))?;
    let info = ModelInfo {
        path: path.to_path_buf(),
        input_files: Vec::new(),
        ir_version: 8,
        opsets: vec![(String::new(), 17)],
        producer_name: PRODUCER.into(),
        producer_version: String::new(),
        metadata: Vec::new(),
    };
    Rewritten::new(&graph, &info, specs.iter().map(|s| s.name.clone()).collect(), state_all, Vec::new())
}
