//! Command-line interface: `analyze`, `plan`, `bench`, `rewrite`, `train`, `report`.
mod report;
mod table;
mod terminal;
#[cfg(feature = "gpu")]
pub mod train;

use crate::analysis::Analysis;
use crate::optim::{Algorithm, Config, Detect, Overrides};
use crate::plan::Plan;
use crate::rewrite::{Loss, Options};
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

/// The optimizers a plan is for (the projecting ones).
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum PlanOptimizer {
    /// AdamP.
    Adamp,
    /// SGDP.
    Sgdp,
}

impl From<PlanOptimizer> for Algorithm {
    fn from(o: PlanOptimizer) -> Algorithm {
        match o {
            PlanOptimizer::Adamp => Algorithm::Adamp,
            PlanOptimizer::Sgdp => Algorithm::Sgdp,
        }
    }
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

#[cfg(feature = "gpu")]
fn parse_steps(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("at least one timed step is needed to report a time".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

impl HyperArgs {
    /// The optimizer's configuration: its reference defaults with these values, validated.
    pub fn config(&self, algo: Algorithm) -> Result<Config, crate::optim::ConfigError> {
        let o = Overrides {
            lr: self.lr,
            betas: self.betas,
            eps: self.eps,
            weight_decay: self.weight_decay,
            momentum: self.momentum,
            dampening: self.dampening,
            nesterov: self.nesterov,
            delta: self.delta,
            wd_ratio: self.wd_ratio,
        };
        Config::with(algo, &o)
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
        #[arg(long, value_enum, default_value_t = PlanOptimizer::Adamp)]
        optimizer: PlanOptimizer,
        /// Output format.
        #[arg(long, value_enum, default_value_t = PlanFormat::Json)]
        format: PlanFormat,
        /// Hyperparameters.
        #[command(flatten)]
        hyper: HyperArgs,
    },
    /// Times optimizer steps over the model's trainable tensors on the GPU.
    #[cfg(feature = "gpu")]
    Bench {
        /// The ONNX model.
        model: PathBuf,
        /// Optimizer.
        #[arg(long, value_enum, default_value_t = Algorithm::Adamp)]
        optimizer: Algorithm,
        /// Which tensors are projected.
        #[arg(long, value_enum, default_value_t = Detect::Auto)]
        detect: Detect,
        /// Timed steps (the median is reported); at least 1.
        #[arg(long, default_value_t = 20, value_parser = parse_steps)]
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
        /// Kernels for projected rows [default: rows on CPU adapters, fused elsewhere].
        #[arg(long, value_enum)]
        variant: Option<crate::runtime::Variant>,
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
    /// Trains the model on the wgpu adapter (forward, backward and the optimizer as WGSL kernels)
    #[cfg(feature = "gpu")]
    Train(Box<train::TrainArgs>),
    /// Plots training logs: loss, accuracy, weight-norm growth and effective step size (SVG or HTML).
    Report(report::ReportArgs),
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    quiet_display_probe();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        #[cfg(feature = "gpu")]
        Err(e) if e.downcast_ref::<train::Interrupted>().is_some() => {
            eprintln!("{}", terminal::escape(&e.to_string()));
            ExitCode::from(train::INTERRUPTED_EXIT)
        }
        Err(e) => {
            // Library errors already name their cause; `{:#}` would repeat it.
            // Names in them come from the model file: escaped for the terminal.
            eprintln!("error: {}", terminal::escape(&e.to_string()));
            ExitCode::from(2)
        }
    }
}

/// The Vulkan loader's window-system probe prints "error: XDG_RUNTIME_DIR is
/// invalid or not set" when that variable is not an absolute path; no command
/// opens a window, so an absolute directory that exists is enough to keep it quiet.
fn quiet_display_probe() {
    let valid = std::env::var_os("XDG_RUNTIME_DIR").is_some_and(|d| std::path::Path::new(&d).is_absolute());
    if !valid {
        // SAFETY (edition 2021: safe): set before any thread starts.
        std::env::set_var("XDG_RUNTIME_DIR", std::env::temp_dir());
    }
}

/// Reads a plan file given with `--plan`, refusing a FIFO or directory first
/// (reading a FIFO would block).
fn read_plan(path: &std::path::Path) -> anyhow::Result<Plan> {
    crate::onnx::open_input(path)?;
    Ok(crate::plan::read(path)?)
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Analyze { model, format } => {
            let analysis = crate::analyze_file(&model)?;
            print!("{}", render_analysis(&analysis, format));
            if format == Format::Table {
                // Warnings are not table rows: standard error, so a pipe keeps only the table.
                eprint!("{}", table::analysis_warnings(&analysis));
            }
        }
        Command::Plan { model, output, optimizer, format, hyper } => {
            let config = hyper.config(optimizer.into())?;
            let loaded = crate::onnx::load_model(&model)?;
            if let Some(path) = &output {
                crate::onnx::check_output(path, loaded.input_files())?;
            }
            let analysis = crate::analysis::analyze(&crate::ir::from_model(&loaded)?);
            let plan = crate::plan::build(&analysis, &config)?;
            let text = render_plan(&plan, format);
            match output {
                Some(path) => crate::onnx::write_atomic(&path, text.as_bytes())?,
                None => print!("{text}"),
            }
        }
        #[cfg(feature = "gpu")]
        Command::Bench { model, optimizer, detect, steps, warmup, plan, adapter, variant, format } => {
            let analysis = crate::analyze_file(&model)?;
            let specs = match plan {
                Some(p) => crate::plan::specs_from_plan(&analysis, &read_plan(&p)?)?,
                None => crate::plan::specs_from_analysis(&analysis),
            };
            let gpu = crate::runtime::Gpu::open(adapter.as_deref())?;
            let report = crate::runtime::bench::run(&gpu, &specs, optimizer, detect, variant, warmup, steps)?;
            match format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
                Format::Table => print!("{}", table::bench_table(&report)),
            }
        }
        #[cfg(feature = "gpu")]
        Command::Train(args) => train::run(*args)?,
        Command::Rewrite { model, loss, optimizer, detect, plan, gradients, output, hyper } => {
            let config = hyper.config(optimizer)?;
            let loaded = crate::onnx::load_model(&model)?;
            let mut inputs = loaded.input_files().to_vec();
            inputs.extend(plan.clone());
            crate::onnx::check_output(&output, &inputs)?;
            let plan = plan.map(|p| read_plan(&p)).transpose()?;
            let opts = Options { loss, config, detect, plan, gradients };
            let step = crate::rewrite::rewrite(&loaded, &opts)?;
            step.save(&output)?;
            println!(
                "{}: {} parameters, {} state tensors, {} buffers; {} {} detection",
                terminal::escape(&output.display().to_string()),
                step.params.len(),
                step.state.len(),
                step.buffers.len(),
                optimizer.name(),
                detect.name()
            );
        }
        Command::Report(args) => report::run(args)?,
    }
    Ok(())
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
