//! Command-line interface: `analyze`, `plan`, `bench`, `rewrite`.
mod table;

use crate::analysis::Analysis;
use crate::plan::{Hyperparameters, Optimizer, Plan};
use crate::rewrite::{Loss, Options};
use crate::runtime::{Algorithm, Detect, Hyper};
use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

/// Static scale-invariance analysis for AdamP/SGDP.
#[derive(Debug, Parser)]
#[command(name = "adamp-graph", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Output formats of `analyze`.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Format {
    /// Aligned table for people.
    Table,
    /// One JSON object.
    Json,
}

/// Output formats of `plan`.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum PlanFormat {
    /// The versioned JSON plan.
    Json,
    /// Aligned table for people.
    Table,
    /// Python parameter groups for PyTorch optimizers.
    Torch,
}

/// Optimizer hyperparameters (defaults: the official adamp 0.3.0 package).
#[derive(Debug, Clone, clap::Args)]
pub struct HyperArgs {
    /// Learning rate [default: 1e-3 for adamp, adam, adamw; 0.1 for sgdp, sgd].
    #[arg(long)]
    pub lr: Option<f64>,
    /// Adam betas as B1,B2 [default: 0.9,0.999].
    #[arg(long, value_parser = parse_betas)]
    pub betas: Option<(f64, f64)>,
    /// Epsilon [default: 1e-8].
    #[arg(long)]
    pub eps: Option<f64>,
    /// Weight decay [default: 0; adamw 1e-2].
    #[arg(long)]
    pub weight_decay: Option<f64>,
    /// SGD momentum [default: 0].
    #[arg(long)]
    pub momentum: Option<f64>,
    /// SGD dampening [default: 0].
    #[arg(long)]
    pub dampening: Option<f64>,
    /// Nesterov momentum.
    #[arg(long)]
    pub nesterov: bool,
    /// Cosine-test threshold of the runtime fallback [default: 0.1].
    #[arg(long)]
    pub delta: Option<f64>,
    /// Weight-decay multiplier for projected tensors [default: 0.1].
    #[arg(long)]
    pub wd_ratio: Option<f64>,
}

fn parse_betas(s: &str) -> Result<(f64, f64), String> {
    let parts: Vec<&str> = s.split(',').collect();
    match parts.as_slice() {
        [a, b] => Ok((a.trim().parse().map_err(|e| format!("beta1: {e}"))?, b.trim().parse().map_err(|e| format!("beta2: {e}"))?)),
        _ => Err("expected B1,B2 (e.g. 0.9,0.999)".into()),
    }
}

impl HyperArgs {
    /// Resolves against the optimizer's defaults and validates ranges (the plan's form).
    pub fn resolve(&self, opt: Optimizer) -> anyhow::Result<Hyperparameters> {
        let algo = match opt {
            Optimizer::Adamp => Algorithm::Adamp,
            Optimizer::Sgdp => Algorithm::Sgdp,
        };
        let h = self.resolve_for(algo)?;
        let adam = opt == Optimizer::Adamp;
        Ok(Hyperparameters {
            lr: h.lr,
            betas: adam.then_some((h.beta1, h.beta2)),
            momentum: (!adam).then_some(h.momentum),
            dampening: (!adam).then_some(h.dampening),
            eps: h.eps,
            weight_decay: h.weight_decay,
            delta: h.delta,
            wd_ratio: h.wd_ratio,
            nesterov: h.nesterov,
        })
    }
}

impl HyperArgs {
    /// Resolves against an optimizer's reference defaults (torch.optim for
    /// Adam, AdamW and SGD) and validates the combination.
    pub fn resolve_for(&self, algo: Algorithm) -> anyhow::Result<Hyper> {
        let mut hp = Hyper::defaults(algo);
        let adam = algo.is_adam_family();
        if adam && (self.momentum.is_some() || self.dampening.is_some()) {
            anyhow::bail!("--momentum and --dampening are SGD-family options; {} takes --betas", algo.name());
        }
        if !adam && self.betas.is_some() {
            anyhow::bail!("--betas is an Adam-family option; {} takes --momentum and --dampening", algo.name());
        }
        if !algo.projects() && (self.delta.is_some() || self.wd_ratio.is_some()) {
            anyhow::bail!("--delta and --wd-ratio apply to adamp and sgdp only");
        }
        if self.nesterov && matches!(algo, Algorithm::Adam | Algorithm::Adamw) {
            anyhow::bail!("--nesterov is not an option of torch.optim.{}", if algo == Algorithm::Adam { "Adam" } else { "AdamW" });
        }
        let set = |dst: &mut f64, v: Option<f64>| {
            if let Some(v) = v {
                *dst = v;
            }
        };
        set(&mut hp.lr, self.lr);
        set(&mut hp.eps, self.eps);
        set(&mut hp.weight_decay, self.weight_decay);
        set(&mut hp.delta, self.delta);
        set(&mut hp.wd_ratio, self.wd_ratio);
        set(&mut hp.momentum, self.momentum);
        set(&mut hp.dampening, self.dampening);
        if let Some((b1, b2)) = self.betas {
            (hp.beta1, hp.beta2) = (b1, b2);
        }
        hp.nesterov = self.nesterov;
        let check = |name: &str, v: f64, ok: bool| -> anyhow::Result<()> {
            if !v.is_finite() || !ok {
                anyhow::bail!("invalid {name}: {v}");
            }
            Ok(())
        };
        check("--lr", hp.lr, hp.lr >= 0.0)?;
        check("--eps", hp.eps, hp.eps >= 0.0)?;
        check("--weight-decay", hp.weight_decay, hp.weight_decay >= 0.0)?;
        check("--delta", hp.delta, hp.delta >= 0.0)?;
        check("--wd-ratio", hp.wd_ratio, hp.wd_ratio >= 0.0)?;
        check("beta1", hp.beta1, (0.0..1.0).contains(&hp.beta1))?;
        check("beta2", hp.beta2, (0.0..1.0).contains(&hp.beta2))?;
        check("--momentum", hp.momentum, (0.0..1.0).contains(&hp.momentum))?;
        check("--dampening", hp.dampening, (0.0..=1.0).contains(&hp.dampening))?;
        if self.nesterov && !adam && (hp.momentum <= 0.0 || hp.dampening != 0.0) {
            anyhow::bail!("nesterov needs a momentum > 0 and zero dampening");
        }
        Ok(hp)
    }
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Which parameters are scale-invariant, along which axis, and why.
    Analyze {
        /// The ONNX model (`.onnx`, or gzip-compressed).
        model: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// The optimizer-state plan: projection, weight-decay multiplier and state per tensor.
    Plan {
        /// The ONNX model.
        model: PathBuf,
        /// Write the plan here (atomically) instead of standard output.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Optimizer.
        #[arg(long, value_enum, default_value_t = Optimizer::Adamp)]
        optimizer: Optimizer,
        /// Output format.
        #[arg(long, value_enum, default_value_t = PlanFormat::Json)]
        format: PlanFormat,
        /// Hyperparameters.
        #[command(flatten)]
        hyper: HyperArgs,
    },
    /// Times optimizer steps over the model's trainable tensors on the GPU.
    Bench {
        /// The ONNX model.
        model: PathBuf,
        /// Optimizer.
        #[arg(long, value_enum, default_value_t = Algorithm::Adamp)]
        optimizer: Algorithm,
        /// Which tensors are projected.
        #[arg(long, value_enum, default_value_t = Detect::Auto)]
        detect: Detect,
        /// Timed steps (the median is reported).
        #[arg(long, default_value_t = 20)]
        steps: usize,
        /// Untimed steps first.
        #[arg(long, default_value_t = 3)]
        warmup: usize,
        /// A plan file (`adamp-graph plan -o`) instead of analysing the model.
        #[arg(long)]
        plan: Option<PathBuf>,
        /// Adapter: a substring of its name, or a backend/type (overrides $ADAMP_GRAPH_ADAPTER).
        #[arg(long)]
        adapter: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Writes one ONNX training step: forward, loss, gradients and the optimizer update.
    Rewrite {
        /// The ONNX model (exported in training mode to keep BatchNormalization).
        model: PathBuf,
        /// Loss on the model's first output.
        #[arg(long, value_enum)]
        loss: Loss,
        /// Optimizer.
        #[arg(long, value_enum, default_value_t = Algorithm::Adamp)]
        optimizer: Algorithm,
        /// Which tensors are projected: the plan (static), the in-graph cosine test (runtime), or both (auto).
        #[arg(long, value_enum, default_value_t = Detect::Auto)]
        detect: Detect,
        /// A plan file (`adamp-graph plan -o`) instead of analysing the model.
        #[arg(long)]
        plan: Option<PathBuf>,
        /// Also output `<param>.grad` for every parameter.
        #[arg(long)]
        gradients: bool,
        /// The step graph to write (atomically).
        #[arg(short, long)]
        output: PathBuf,
        /// Hyperparameters (`--lr` is the default of the `lr` input).
        #[command(flatten)]
        hyper: HyperArgs,
    },
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Library errors already name their cause; `{:#}` would repeat it.
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Analyze { model, format } => {
            let analysis = crate::analyze_file(&model)?;
            print!("{}", render_analysis(&analysis, format));
        }
        Command::Plan { model, output, optimizer, format, hyper } => {
            let hp = hyper.resolve(optimizer)?;
            let analysis = crate::analyze_file(&model)?;
            let plan = crate::plan::build(&analysis, optimizer, hp);
            let text = render_plan(&plan, format);
            match output {
                Some(path) => crate::onnx::write_atomic(&path, text.as_bytes())?,
                None => print!("{text}"),
            }
        }
        Command::Bench { model, optimizer, detect, steps, warmup, plan, adapter, format } => {
            let analysis = crate::analyze_file(&model)?;
            let specs = match plan {
                Some(p) => crate::runtime::bench::specs_from_plan(&analysis, &crate::plan::read(&p)?)?,
                None => crate::runtime::bench::specs_from_analysis(&analysis),
            };
            let gpu = crate::runtime::Gpu::open(adapter.as_deref())?;
            let report = crate::runtime::bench::run(&gpu, &specs, optimizer, detect, warmup, steps)?;
            match format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
                Format::Table => print!("{}", table::bench_table(&report)),
            }
        }
        Command::Rewrite { model, loss, optimizer, detect, plan, gradients, output, hyper } => {
            let hyper = hyper.resolve_for(optimizer)?;
            if output.exists() && std::fs::canonicalize(&output).ok() == std::fs::canonicalize(&model).ok() {
                anyhow::bail!("{}: the output would overwrite the input model", output.display());
            }
            let plan = plan.map(|p| crate::plan::read(&p)).transpose()?;
            let loaded = crate::onnx::load_model(&model)?;
            let opts = Options { loss, algorithm: optimizer, detect, hyper, plan, gradients };
            let step = crate::rewrite::rewrite(&loaded, &opts)?;
            step.save(&output)?;
            println!(
                "{}: {} parameters, {} state tensors, {} buffers; {} {} detection",
                output.display(),
                step.params.len(),
                step.state.len(),
                step.buffers.len(),
                optimizer.name(),
                detect_name(detect)
            );
        }
    }
    Ok(())
}

fn detect_name(d: Detect) -> &'static str {
    match d {
        Detect::Runtime => "runtime",
        Detect::Static => "static",
        Detect::Auto => "auto",
    }
}

/// Renders a plan in a format (what `plan` prints).
pub fn render_plan(plan: &Plan, format: PlanFormat) -> String {
    match format {
        PlanFormat::Json => {
            let mut s = serde_json::to_string_pretty(plan).unwrap_or_default();
            s.push('\n');
            s
        }
        PlanFormat::Table => table::plan_table(plan),
        PlanFormat::Torch => crate::plan::torch_groups(plan),
    }
}

/// Renders an analysis in a format (what `analyze` prints).
pub fn render_analysis(a: &Analysis, format: Format) -> String {
    match format {
        Format::Json => {
            let mut s = serde_json::to_string_pretty(a).unwrap_or_default();
            s.push('\n');
            s
        }
        Format::Table => table::analysis_table(a),
    }
}
