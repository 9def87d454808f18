//! The optimizer-state plan: per trainable tensor, the projection AdamP/SGDP
//! apply, the weight-decay multiplier, and the state buffers the optimizer keeps.
//!
//! The plan is a versioned JSON document (schema below, and in the README);
//! the WGSL runtime and the training-graph rewrite read it.
use crate::analysis::{Analysis, ScaleClass};
use crate::optim::{Algorithm, Config, TensorSpec};
use serde::{Deserialize, Serialize};

/// Schema identifier written into every plan.
pub const SCHEMA: &str = "adamp-graph/plan";
/// Schema version; bump on any incompatible change.
pub const VERSION: u32 = 1;

/// How a tensor's update is projected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Projection {
    /// Per slice along `axis` (proven channel-wise invariant).
    Channel {
        /// The slice axis.
        axis: usize,
    },
    /// Over the whole tensor (proven layer-wise invariant).
    Layer,
    /// Never projected (proven variant, dead, or only jointly invariant).
    None,
    /// Undecided statically: the reference cosine test runs each step.
    Runtime,
}

impl Projection {
    /// The projection the static analysis allows for a class.
    pub fn from_class(class: &ScaleClass) -> Projection {
        match class {
            ScaleClass::Channel { axis } => Projection::Channel { axis: *axis },
            ScaleClass::Layer => Projection::Layer,
            // A member of a joint group is not invariant alone: projecting it would be wrong.
            ScaleClass::Joint { .. } | ScaleClass::Dead | ScaleClass::None => Projection::None,
            ScaleClass::Unknown => Projection::Runtime,
        }
    }

    /// Short name (`channel`, `layer`, `none`, `runtime`).
    pub fn name(&self) -> &'static str {
        match self {
            Projection::Channel { .. } => "channel",
            Projection::Layer => "layer",
            Projection::None => "none",
            Projection::Runtime => "runtime",
        }
    }
}

/// One optimizer state buffer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateBuffer {
    /// `exp_avg`, `exp_avg_sq` or `momentum`.
    pub name: String,
    /// Same shape as the parameter.
    pub shape: Vec<i64>,
    /// Element type (state is kept in float32).
    pub dtype: String,
    /// Size in bytes.
    pub bytes: u64,
}

/// The plan for one trainable tensor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TensorPlan {
    /// Initializer name (PyTorch's parameter name for TorchScript exports).
    pub name: String,
    /// Dimensions.
    pub shape: Vec<i64>,
    /// Element type of the parameter.
    pub dtype: String,
    /// Elements.
    pub elements: u64,
    /// The analysis class it came from.
    pub class: String,
    /// The projection.
    pub projection: Projection,
    /// Weight-decay multiplier applied every step (`wd_ratio` where statically
    /// projected, else 1; a runtime tensor uses `wd_ratio` on the steps its test projects).
    pub wd_multiplier: f64,
    /// State buffers.
    pub state: Vec<StateBuffer>,
}

/// Totals over the plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    /// Tensors.
    pub tensors: usize,
    /// Parameter elements.
    pub elements: u64,
    /// Bytes of parameters (their own dtype).
    pub parameter_bytes: u64,
    /// Bytes of optimizer state.
    pub state_bytes: u64,
    /// Tensors per projection kind.
    pub projections: std::collections::BTreeMap<String, usize>,
    /// Elements per projection kind.
    pub projected_elements: std::collections::BTreeMap<String, u64>,
}

/// The whole plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Always [`SCHEMA`].
    pub schema: String,
    /// Always [`VERSION`] for plans written by this build.
    pub version: u32,
    /// Model file name.
    pub model: String,
    /// The optimizer and its hyperparameters (`"optimizer"` and
    /// `"hyperparameters"` in the JSON): AdamP or SGDP.
    #[serde(flatten)]
    pub config: Config,
    /// Per tensor, in initializer order.
    pub tensors: Vec<TensorPlan>,
    /// Totals.
    pub totals: Totals,
}

/// Errors reading a plan.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// Not JSON, or not a plan of this schema.
    #[error("{path}: not an adamp-graph plan: {detail}")]
    Invalid {
        /// The plan file.
        path: String,
        /// What is wrong.
        detail: String,
    },
    /// A plan of another version.
    #[error("{path}: plan schema version {found} is not supported (this build reads version {VERSION})")]
    Version {
        /// The plan file.
        path: String,
        /// Its version.
        found: u32,
    },
    /// A plan is for a projecting optimizer.
    #[error("a plan is for adamp or sgdp, not {}: the others project nothing", .0.name())]
    Optimizer(Algorithm),
}

fn dtype_bytes(dtype: &str) -> u64 {
    match dtype {
        "float64" | "int64" => 8,
        "float16" | "bfloat16" => 2,
        _ => 4,
    }
}

/// Builds the plan from an analysis, for a projecting optimizer (AdamP or SGDP).
pub fn build(analysis: &Analysis, config: &Config) -> Result<Plan, PlanError> {
    let algo = config.algorithm();
    if !algo.projects() {
        return Err(PlanError::Optimizer(algo));
    }
    let buffers = algo.state_names();
    let wd_ratio = config.hyper().wd_ratio;
    let mut totals = Totals {
        tensors: 0,
        elements: 0,
        parameter_bytes: 0,
        state_bytes: 0,
        projections: Default::default(),
        projected_elements: Default::default(),
    };
    let tensors: Vec<TensorPlan> = analysis
        .parameters
        .iter()
        .map(|p| {
            let projection = Projection::from_class(&p.class);
            let wd_multiplier = match projection {
                Projection::Channel { .. } | Projection::Layer => wd_ratio,
                _ => 1.0,
            };
            let state: Vec<StateBuffer> = buffers
                .iter()
                .map(|b| StateBuffer { name: b.to_string(), shape: p.shape.clone(), dtype: "float32".into(), bytes: p.elements * 4 })
                .collect();
            totals.tensors += 1;
            totals.elements += p.elements;
            totals.parameter_bytes += p.elements * dtype_bytes(&p.dtype);
            totals.state_bytes += state.iter().map(|s| s.bytes).sum::<u64>();
            *totals.projections.entry(projection.name().into()).or_insert(0) += 1;
            *totals.projected_elements.entry(projection.name().into()).or_insert(0) += p.elements;
            TensorPlan {
                name: p.name.clone(),
                shape: p.shape.clone(),
                dtype: p.dtype.clone(),
                elements: p.elements,
                class: p.class.name().into(),
                projection,
                wd_multiplier,
                state,
            }
        })
        .collect();
    Ok(Plan { schema: SCHEMA.into(), version: VERSION, model: analysis.model.clone(), config: config.clone(), tensors, totals })
}

/// Reads and validates a plan file.
pub fn read(path: &std::path::Path) -> Result<Plan, PlanError> {
    let p = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| PlanError::Invalid { path: p.clone(), detail: e.to_string() })?;
    let raw: serde_json::Value = serde_json::from_str(&text).map_err(|e| PlanError::Invalid { path: p.clone(), detail: e.to_string() })?;
    if raw.get("schema").and_then(|s| s.as_str()) != Some(SCHEMA) {
        return Err(PlanError::Invalid { path: p, detail: format!("missing \"schema\": \"{SCHEMA}\"") });
    }
    let version = raw.get("version").and_then(|v| v.as_u64()).unwrap_or(0) as u32;
    if version != VERSION {
        return Err(PlanError::Version { path: p, found: version });
    }
    let plan: Plan = serde_json::from_value(raw).map_err(|e| PlanError::Invalid { path: p.clone(), detail: e.to_string() })?;
    if !plan.config.algorithm().projects() {
        return Err(PlanError::Invalid { path: p, detail: format!("optimizer '{}': a plan is for adamp or sgdp", plan.config.algorithm().name()) });
    }
    plan.config.validate().map_err(|e| PlanError::Invalid { path: p, detail: e.to_string() })?;
    Ok(plan)
}

/// `s` as the inside of a double-quoted Python string literal, in pure ASCII:
/// quotes, backslashes, controls and every non-ASCII character are escaped, so
/// any tensor name gives valid Python and no bidi mark reaches the source.
fn python_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            ' '..='~' => out.push(c),
            c if (c as u32) < 0x100 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out
}

/// Python parameter groups for `torch.optim`-style optimizers (official `adamp`).
///
/// Proven-variant tensors get `delta = 0`, which makes the reference cosine
/// test never project them (no misfires); proven-invariant and undecided
/// tensors keep the test. Every group also carries `projection`/`axis` for
/// optimizers that read the static plan.
pub fn torch_groups(plan: &Plan) -> String {
    let mut groups: std::collections::BTreeMap<String, (Vec<&str>, String)> = Default::default();
    for t in &plan.tensors {
        let (key, extra) = match &t.projection {
            Projection::Channel { axis } => (format!("channel_axis{axis}"), format!("\"projection\": \"channel\", \"axis\": {axis}")),
            Projection::Layer => ("layer".to_string(), "\"projection\": \"layer\"".to_string()),
            Projection::None => ("none".to_string(), "\"projection\": \"none\", \"delta\": 0.0".to_string()),
            Projection::Runtime => ("runtime".to_string(), "\"projection\": \"runtime\"".to_string()),
        };
        groups.entry(key).or_insert_with(|| (Vec::new(), extra)).0.push(&t.name);
    }
    let mut out = String::new();
    out += &format!("# Parameter groups for {} from adamp-graph plan (schema {SCHEMA} v{VERSION}).\n", python_escape(&plan.model));
    out += "# Usage: optimizer = adamp.AdamP(param_groups(model), lr=...)  # or adamp.SGDP\n";
    out += "GROUPS = [\n";
    for (names, extra) in groups.values() {
        let list: Vec<String> = names.iter().map(|n| format!("\"{}\"", python_escape(n))).collect();
        out += &format!("    {{\"names\": [{}], {extra}}},\n", list.join(", "));
    }
    out += "]\n\n\ndef param_groups(model):\n";
    out += "    \"\"\"Maps the plan's tensor names onto model.named_parameters().\"\"\"\n";
    out += "    named = dict(model.named_parameters())\n";
    out += "    missing = [n for g in GROUPS for n in g[\"names\"] if n not in named]\n";
    out += "    if missing:\n";
    out += "        raise KeyError(f\"plan names not in the model: {missing[:5]}\")\n";
    out += "    return [{**{k: v for k, v in g.items() if k != \"names\"}, \"params\": [named[n] for n in g[\"names\"]]} for g in GROUPS]\n";
    out
}

/// Errors matching a plan file to a model.
#[derive(Debug, thiserror::Error)]
pub enum PlanMismatch {
    /// The model has a tensor the plan lacks.
    #[error("plan does not match the model: tensor '{0}' of the model is not in the plan")]
    Missing(String),
    /// The plan lists a tensor the model lacks.
    #[error("plan does not match the model: plan tensor '{0}' is not a trainable tensor of the model")]
    Extra(String),
    /// Same name, other shape.
    #[error("plan does not match the model: tensor '{name}' has shape {model:?} in the model, {plan:?} in the plan")]
    Shape {
        /// Tensor.
        name: String,
        /// Model shape.
        model: Vec<i64>,
        /// Plan shape.
        plan: Vec<i64>,
    },
}

/// The model's trainable tensors with the plan's projections, checked name by name.
pub fn specs_from_plan(analysis: &Analysis, plan: &Plan) -> Result<Vec<TensorSpec>, PlanMismatch> {
    let by_name: std::collections::HashMap<&str, &TensorPlan> = plan.tensors.iter().map(|t| (t.name.as_str(), t)).collect();
    let model_names: std::collections::HashSet<&str> = analysis.parameters.iter().map(|p| p.name.as_str()).collect();
    if let Some(extra) = plan.tensors.iter().find(|t| !model_names.contains(t.name.as_str())) {
        return Err(PlanMismatch::Extra(extra.name.clone()));
    }
    analysis
        .parameters
        .iter()
        .map(|p| {
            let t = by_name.get(p.name.as_str()).ok_or_else(|| PlanMismatch::Missing(p.name.clone()))?;
            if t.shape != p.shape {
                return Err(PlanMismatch::Shape { name: p.name.clone(), model: p.shape.clone(), plan: t.shape.clone() });
            }
            Ok(TensorSpec { name: p.name.clone(), shape: p.shape.iter().map(|&d| d.max(0) as usize).collect(), projection: t.projection.clone() })
        })
        .collect()
}

/// The model's trainable tensors with the static analysis' projections.
pub fn specs_from_analysis(analysis: &Analysis) -> Vec<TensorSpec> {
    analysis
        .parameters
        .iter()
        .map(|p| TensorSpec {
            name: p.name.clone(),
            shape: p.shape.iter().map(|&d| d.max(0) as usize).collect(),
            projection: Projection::from_class(&p.class),
        })
        .collect()
}

