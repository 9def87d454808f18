//! One definition per ONNX op: arity and opset range, the shape rule, the
//! scale-invariance rule, the gradient rule (or why there is none), the
//! lowering the rewrite writes it out with, and a slot for its WGSL kernel.
//!
//! Ops are grouped by family (`nn/`, `elementwise/`, `reduce/`, `shape/`,
//! `movement/`, `random/`, `control/`, `signal/`, `training/`); each file holds
//! the [`OpDef`] statics of its ops next to their rules. [`lookup`] is the one
//! registry from an op type to its definition; the IR node keeps the
//! definition it resolved to ([`crate::ir::Node::def`]). The shared arithmetic
//! (broadcasting, windows of convolutions and pools, reduction axes) lives in
//! [`util`], written once.
use crate::analysis::rules::Rule;
use crate::ir::{Dim, Graph, Node};
use crate::rewrite::{ExpandFn, GradFn};
use std::collections::HashMap;
use std::sync::OnceLock;

pub mod control;
pub mod elementwise;
pub mod ml;
pub mod movement;
pub mod nn;
pub mod random;
pub mod reduce;
pub mod shape;
pub mod signal;
pub mod text;
pub mod training;
pub(crate) mod util;
mod attr;

pub use attr::*;

pub use control::*;
pub use elementwise::*;
pub use ml::*;
pub use movement::*;
pub use nn::*;
pub use random::*;
pub use reduce::*;
pub use shape::*;
pub use signal::*;
pub use text::*;
pub use training::*;

/// What shape inference learns about one output: shape, the elements of a
/// small integer tensor, a one-element value, the element type.
pub type ShapeOut = (Option<Vec<Dim>>, Option<Vec<Dim>>, Option<f64>, Option<crate::ir::DType>);

/// A forward shape rule: one [`ShapeOut`] per output (fewer: the rest unknown).
pub type ShapeFn = fn(&Graph, &Node) -> Vec<ShapeOut>;

/// A backward rule: what the op's definition implies for the shapes of its
/// inputs, as `(slot, shape)` with `Dim::Unknown` where it says nothing.
pub type ConstraintFn = fn(&Graph, &Node) -> Vec<(usize, Vec<Dim>)>;

/// The weight axis that holds a consumer's output channels, by input slot and weight rank.
pub type ChannelAxisFn = fn(&Node, usize, usize) -> Option<usize>;

/// How many inputs or outputs an op takes (ONNX schema bounds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arity {
    /// Fewest.
    pub min: usize,
    /// Most ([`Arity::VARIADIC`] for no bound).
    pub max: usize,
}

impl Arity {
    /// The bound of a variadic list.
    pub const VARIADIC: usize = usize::MAX;

    /// `min..=max`.
    pub const fn range(min: usize, max: usize) -> Arity {
        Arity { min, max }
    }

    fn render(self) -> String {
        match (self.min, self.max) {
            (a, b) if a == b => a.to_string(),
            (a, Arity::VARIADIC) => format!("{a}+"),
            (a, b) => format!("{a}-{b}"),
        }
    }
}

/// The default-domain opsets a definition covers: `since..=until`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opsets {
    /// The first opset with the op.
    pub since: i64,
    /// The last opset before it was removed (`None`: still in the standard).
    pub until: Option<i64>,
}

/// The scale-invariance rule of an op, or why the analysis has none.
#[derive(Clone, Copy)]
pub enum Analysis {
    /// The rule.
    Rule(Rule),
    /// No rule: a change reaching the op makes the analysis answer `unknown`.
    Unknown(&'static str),
}

/// How the rewrite differentiates an op.
#[derive(Clone, Copy)]
pub(crate) enum Gradient {
    /// A gradient rule.
    Rule(GradFn),
    /// Written out in primitive ops by [`OpDef::lowering`]; their rules differentiate it.
    Lowered,
    /// Piecewise constant, or no floating-point inputs: it contributes no gradient.
    Zero(&'static str),
    /// Not differentiable by the rewrite (an error on the gradient path), and why.
    None(&'static str),
}

/// Inputs that carry shapes, indices, bounds or exponents, never trainable weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgSlots {
    /// Every input may be a weight.
    NoneOf,
    /// Inputs from this slot on are arguments.
    From(usize),
    /// Only this input is an argument.
    Only(usize),
    /// Every input is an argument.
    All,
}

impl ArgSlots {
    /// True when input `slot` is an argument, not a weight.
    pub fn contains(self, slot: usize) -> bool {
        match self {
            ArgSlots::NoneOf => false,
            ArgSlots::From(k) => slot >= k,
            ArgSlots::Only(k) => slot == k,
            ArgSlots::All => true,
        }
    }
}

/// Everything the crate knows about one ONNX op type.
pub struct OpDef {
    /// The op type (`Conv`).
    pub name: &'static str,
    /// The domain (`""` for the default ONNX domain).
    pub domain: &'static str,
    /// The module that defines it (`adamp_graph::ops::nn::conv`): its file.
    pub module: &'static str,
    /// Input count bounds.
    pub inputs: Arity,
    /// Output count bounds.
    pub outputs: Arity,
    /// Opsets covered.
    pub opsets: Opsets,
    /// The attributes the rules read, with their types and ranges.
    pub attrs: &'static [AttrSpec],
    /// The forward shape rule (`None`: outputs keep only declared shapes).
    pub shape: Option<ShapeFn>,
    /// The backward shape rule.
    pub constraints: Option<ConstraintFn>,
    /// Draws random numbers: never constant, whatever its inputs.
    pub random: bool,
    /// The output shape depends on the values of the data input.
    pub data_dependent: bool,
    /// The scale-invariance rule.
    pub analysis: Analysis,
    /// Inputs that are arguments, never weights.
    pub arg_slots: ArgSlots,
    /// Normalizes activations or weights (a source of invariance).
    pub normalizer: bool,
    /// Outputs after the first are statistics the training output does not read.
    pub statistics_outputs: bool,
    /// Reads only its input's shape, which no change of values alters.
    pub shape_only: bool,
    /// The weight axis holding the output channels.
    pub channel_axis: Option<ChannelAxisFn>,
    /// The gradient.
    pub(crate) gradient: Gradient,
    /// Leading inputs the gradient rule or the lowering reads; fewer is a malformed node.
    pub reads: usize,
    /// The expansion into primitive ops the rewrite's forward pass writes.
    pub(crate) lowering: Option<ExpandFn>,
    /// The WGSL kernel the executor launches for a node with static shapes.
    pub kernel: Option<crate::exec::kernel::KernelFn>,
}

impl OpDef {
    /// The fields every definition starts from (`..OpDef::BASE`).
    pub const BASE: OpDef = OpDef {
        name: "",
        domain: "",
        module: "",
        inputs: Arity::range(1, 1),
        outputs: Arity::range(1, 1),
        opsets: Opsets { since: 1, until: None },
        attrs: &[],
        shape: None,
        constraints: None,
        random: false,
        data_dependent: false,
        analysis: Analysis::Unknown("no rule written yet"),
        arg_slots: ArgSlots::NoneOf,
        normalizer: false,
        statistics_outputs: false,
        shape_only: false,
        channel_axis: None,
        gradient: Gradient::None("no rule written yet"),
        reads: 1,
        lowering: None,
        kernel: None,
    };

    /// The analysis rule, if there is one.
    pub fn analysis_rule(&self) -> Option<Rule> {
        match self.analysis {
            Analysis::Rule(r) => Some(r),
            Analysis::Unknown(_) => None,
        }
    }

    /// The source file, relative to the crate root (`src/ops/nn/conv.rs`).
    pub fn file(&self) -> String {
        let path = self.module.split("::").skip(1).collect::<Vec<_>>().join("/");
        format!("src/{path}.rs")
    }

    /// The family: the folder under `src/ops/`.
    pub fn family(&self) -> &'static str {
        self.module.split("::").nth(2).unwrap_or("")
    }
}

impl std::fmt::Debug for OpDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.domain.is_empty() {
            f.write_str(self.name)
        } else {
            write!(f, "{}::{}", self.domain, self.name)
        }
    }
}

impl PartialEq for OpDef {
    fn eq(&self, other: &OpDef) -> bool {
        std::ptr::eq(self, other)
    }
}

/// Every registered op, family by family.
pub fn all() -> impl Iterator<Item = &'static OpDef> {
    [control::OPS, elementwise::OPS, ml::OPS, movement::OPS, nn::OPS, random::OPS, reduce::OPS, shape::OPS, signal::OPS, text::OPS, training::OPS]
        .into_iter()
        .flat_map(|ops| ops.iter().copied())
}

/// The definition of an op type in a domain (`""` and `ai.onnx` are the default one).
pub fn lookup(domain: &str, op_type: &str) -> Option<&'static OpDef> {
    static BY_NAME: OnceLock<HashMap<(&'static str, &'static str), &'static OpDef>> = OnceLock::new();
    let map = BY_NAME.get_or_init(|| all().map(|d| ((d.domain, d.name), d)).collect());
    let domain = if domain == "ai.onnx" { "" } else { domain };
    map.get(&(domain, op_type)).copied()
}

/// One line per registered op: what it has, for the registry snapshot and the README.
pub fn table() -> String {
    let mut out = String::from("| op | file | inputs | outputs | opsets | attributes | shape | analysis | gradient | lowering | kernel |\n");
    out.push_str("|---|---|---|---|---|---|---|---|---|---|---|\n");
    let mut defs: Vec<&OpDef> = all().collect();
    defs.sort_by_key(|d| (d.domain, d.name));
    for d in defs {
        let yes = |b: bool| if b { "yes" } else { "-" };
        let opsets = match d.opsets.until {
            Some(u) => format!("{}-{u}", d.opsets.since),
            None => format!("{}+", d.opsets.since),
        };
        let analysis = match d.analysis {
            Analysis::Rule(_) => "rule".to_string(),
            Analysis::Unknown(why) => format!("none: {why}"),
        };
        let gradient = match d.gradient {
            Gradient::Rule(_) => "rule".to_string(),
            Gradient::Lowered => "lowered".to_string(),
            Gradient::Zero(why) => format!("zero: {why}"),
            Gradient::None(why) => format!("none: {why}"),
        };
        out.push_str(&format!(
            "| {:?} | {} | {} | {} | {opsets} | {} | {} | {analysis} | {gradient} | {} | {} |\n",
            d,
            d.file().trim_start_matches("src/ops/"),
            d.inputs.render(),
            d.outputs.render(),
            if d.attrs.is_empty() { "-".to_string() } else { d.attrs.iter().map(AttrSpec::render).collect::<Vec<_>>().join(" ") },
            yes(d.shape.is_some()),
            yes(d.lowering.is_some()),
            yes(d.kernel.is_some()),
        ));
    }
    out
}
