//! `adamp-graph train`: trains an exported model on the wgpu adapter and
//! writes it back with its trained initializers.
use super::HyperArgs;
use crate::data::npz;
use crate::optim::{Algorithm, Detect};
use crate::rewrite::{Loss, Options};
use crate::train::run::{fit, Event, LoopOptions, Stop};
use crate::train::schedule::{Schedule, ScheduleKind};
use crate::train::step::{Array, ArrayData, TrainError, Trainer};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The arguments of `train`.
#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// The ONNX model (exported in training mode to keep BatchNormalization).
    pub model: PathBuf,
    /// The data: a NumPy .npz with one array per model input, under its name, and `labels`.
    #[arg(long)]
    pub data: PathBuf,
    /// Loss on the model's first output.
    #[arg(long, value_enum)]
    pub loss: Loss,
    /// Optimizer.
    #[arg(long, value_enum, default_value_t = Algorithm::Adamp)]
    pub optimizer: Algorithm,
    /// Which tensors are projected: the plan (static), the cosine test (runtime), or both (auto).
    #[arg(long, value_enum, default_value_t = Detect::Auto)]
    pub detect: Detect,
    /// A plan file (`adamp-graph plan -o`) instead of analysing the model.
    #[arg(long)]
    pub plan: Option<PathBuf>,
    /// Samples per step (the last batch of an epoch keeps the rest).
    #[arg(long)]
    pub batch_size: usize,
    /// Passes over the data.
    #[arg(long, conflicts_with = "steps", required_unless_present = "steps")]
    pub epochs: Option<usize>,
    /// Steps to take.
    #[arg(long)]
    pub steps: Option<usize>,
    /// Shuffle the samples every epoch (seeded by --seed).
    #[arg(long)]
    pub shuffle: bool,
    /// Seed of the shuffle and of Dropout.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Learning-rate schedule.
    #[arg(long, value_enum, default_value_t = ScheduleKind::Constant)]
    pub lr_schedule: ScheduleKind,
    /// Linear warmup steps before the schedule.
    #[arg(long, default_value_t = 0)]
    pub warmup_steps: u64,
    /// Step schedule: steps between decays.
    #[arg(long, default_value_t = 1000)]
    pub step_size: u64,
    /// Step schedule: the factor of each decay.
    #[arg(long, default_value_t = 0.1)]
    pub gamma: f64,
    /// The trained model to write (atomically).
    #[arg(long)]
    pub out: PathBuf,
    /// One JSON object per step.
    #[arg(long)]
    pub log: Option<PathBuf>,
    /// The wgpu adapter: a substring of its name, backend or type.
    #[arg(long)]
    pub adapter: Option<String>,
    /// Print only the summary (no progress bar or epoch lines).
    #[arg(long)]
    pub quiet: bool,
    /// Validation data (.npz, the same arrays as --data), evaluated every epoch.
    #[arg(long, conflicts_with = "val_split")]
    pub val_data: Option<PathBuf>,
    /// Hold out this fraction of --data for validation (a split seeded by --seed).
    #[arg(long)]
    pub val_split: Option<f64>,
    /// Record each scale-invariant tensor's norm and effective step every K steps (in the log).
    #[arg(long)]
    pub metrics_every: Option<u64>,
    /// Where checkpoints go.
    #[arg(long)]
    pub checkpoint_dir: Option<PathBuf>,
    /// Write a checkpoint every K steps (and at the end).
    #[arg(long, requires = "checkpoint_dir")]
    pub checkpoint_every: Option<u64>,
    /// Checkpoints to keep.
    #[arg(long, default_value_t = 3)]
    pub keep_checkpoints: usize,
    /// Continue the run saved in this checkpoint folder.
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Before training, time one forward-and-backward pass on the first batch
    /// launch by launch (one submission each) and print the time per op type.
    #[arg(long)]
    pub profile: bool,
    /// Hyperparameters.
    #[command(flatten)]
    pub hyper: HyperArgs,
}

/// The arrays of an .npz, each converted to the type of the model input it feeds.
pub fn dataset(path: &Path, trainer: &Trainer) -> anyhow::Result<Vec<Array>> {
    let archive = npz::read_npz(path)?;
    let g = &trainer.gradient_graph().graph;
    let mut out = Vec::new();
    for a in &archive.arrays {
        let v = g.value_by_name(&a.name).filter(|v| g.inputs.contains(v));
        let Some(v) = v else {
            let names: Vec<&str> = trainer.model_inputs().iter().map(String::as_str).chain(std::iter::once("labels")).collect();
            anyhow::bail!("{}: array '{}' is not an input of the model (its inputs: {})", path.display(), a.name, names.join(", "));
        };
        let float = g.values[v].dtype.is_some_and(|d| d.is_float());
        let data = if float { ArrayData::F32(a.to_f32()?) } else { ArrayData::I64(a.to_i64()?) };
        out.push(Array { name: a.name.clone(), dims: a.shape.clone(), data });
    }
    Ok(out)
}

/// A JSONL log written beside its final path and renamed into place when the
/// run ends, so an earlier log is replaced only by a finished one.
struct Log {
    tmp: tempfile::NamedTempFile,
    path: PathBuf,
}

impl Log {
    fn create(path: &Path) -> anyhow::Result<Log> {
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let tmp = tempfile::Builder::new().prefix(".adamp-graph-log-").tempfile_in(dir).map_err(|e| anyhow::anyhow!("{}: cannot write the log: {e}", path.display()))?;
        Ok(Log { tmp, path: path.to_path_buf() })
    }

    fn line(&mut self, v: &serde_json::Value) -> anyhow::Result<()> {
        writeln!(self.tmp, "{v}").map_err(|e| anyhow::anyhow!("{}: cannot write the log: {e}", self.path.display()))?;
        self.tmp.flush().map_err(|e| anyhow::anyhow!("{}: {e}", self.path.display()))
    }

    fn finish(self) -> anyhow::Result<()> {
        self.tmp.as_file().sync_all().map_err(|e| anyhow::anyhow!("{}: {e}", self.path.display()))?;
        self.tmp.persist(&self.path).map_err(|e| anyhow::anyhow!("{}: cannot write the log: {}", self.path.display(), e.error))?;
        Ok(())
    }
}

/// Set by SIGINT: the loop finishes its step, checkpoints and stops.
static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// Exit code of a run stopped by Ctrl-C (128 + SIGINT).
pub const INTERRUPTED_EXIT: u8 = 130;

/// A run stopped by Ctrl-C after writing a checkpoint.
#[derive(Debug, thiserror::Error)]
#[error("interrupted at step {step}: checkpoint written to {dir}; continue with the same command and --resume {dir}")]
pub struct Interrupted {
    /// Steps done.
    pub step: u64,
    /// The checkpoint folder.
    pub dir: String,
}

/// What a checkpoint's manifest records of the run, checked on resume.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
struct RunState {
    config: crate::optim::Config,
    detect: Detect,
    loss: String,
    batch_size: usize,
    seed: u64,
    shuffle: bool,
    samples: usize,
    /// The data order: epoch `step / steps_per_epoch` is shuffled with seed + epoch.
    steps_per_epoch: u64,
    /// The Dropout streams' counter (the step).
    dropout_counter: u64,
    /// Steps each runtime-tested tensor was projected, and steps counted.
    projected: Vec<(String, u64)>,
    projected_steps: u64,
}

fn save_checkpoint(trainer: &Trainer, dir: &Path, keep: usize, run: &RunState, epoch: u64) -> anyhow::Result<PathBuf> {
    use crate::data::npz::Array as NpArray;
    let mut tensors = Vec::new();
    let params = trainer.params()?;
    let state = trainer.state()?;
    for (t, s) in trainer.specs().iter().enumerate() {
        tensors.push(NpArray::from_f32(s.name.clone(), s.shape.clone(), &params[&s.name])?);
        for (k, st) in state[t].iter().enumerate() {
            tensors.push(NpArray::from_f32(format!("{}.state{k}", s.name), s.shape.clone(), st)?);
        }
    }
    let mut buffers: Vec<(String, Vec<f32>)> = trainer.buffers()?.into_iter().collect();
    buffers.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, v) in buffers {
        let n = v.len();
        tensors.push(NpArray::from_f32(format!("{name}.buffer"), vec![n], &v)?);
    }
    let ck = crate::train::Checkpoint { step: trainer.steps(), epoch, tensors, manifest: serde_json::to_value(run)? };
    Ok(crate::train::checkpoint::save(dir, &ck, keep)?)
}

fn restore_checkpoint(trainer: &mut Trainer, dir: &Path, run: &RunState) -> anyhow::Result<RunState> {
    let ck = crate::train::checkpoint::load_latest(dir)?;
    let saved: RunState = serde_json::from_value(ck.manifest.clone()).map_err(|e| anyhow::anyhow!("{}: the checkpoint's manifest is not a train run's: {e}", dir.display()))?;
    let same = |what: &str, a: String, b: String| -> anyhow::Result<()> {
        if a != b {
            anyhow::bail!("{}: the checkpoint was made with {what} {a}; this run has {b}: resume with the same options", dir.display());
        }
        Ok(())
    };
    same("optimizer configuration", serde_json::to_string(&saved.config)?, serde_json::to_string(&run.config)?)?;
    same("--detect", saved.detect.name().into(), run.detect.name().into())?;
    same("--loss", saved.loss.clone(), run.loss.clone())?;
    same("--batch-size", saved.batch_size.to_string(), run.batch_size.to_string())?;
    same("--seed", saved.seed.to_string(), run.seed.to_string())?;
    same("--shuffle", saved.shuffle.to_string(), run.shuffle.to_string())?;
    same("a data set of samples", saved.samples.to_string(), run.samples.to_string())?;
    let get = |name: &str| -> anyhow::Result<Vec<f32>> {
        let a = ck.tensor(name).ok_or_else(|| anyhow::anyhow!("{}: the checkpoint lacks '{name}'", dir.display()))?;
        Ok(a.to_f32()?)
    };
    let mut params = std::collections::HashMap::new();
    let mut state = Vec::new();
    let state_count = run.config.algorithm().state_names().len();
    for s in trainer.specs() {
        params.insert(s.name.clone(), get(&s.name)?);
        state.push((0..state_count).map(|k| get(&format!("{}.state{k}", s.name))).collect::<anyhow::Result<Vec<_>>>()?);
    }
    let mut buffers = std::collections::HashMap::new();
    for b in trainer.gradient_graph().buffers.clone() {
        buffers.insert(b.clone(), get(&format!("{b}.buffer"))?);
    }
    trainer.restore(&params, &state, &buffers, ck.step)?;
    Ok(saved)
}

/// Runs `train`.
pub fn run(args: TrainArgs) -> anyhow::Result<()> {
    let config = args.hyper.config(args.optimizer)?;
    let loaded = crate::onnx::load_model(&args.model)?;
    let mut inputs = loaded.input_files().to_vec();
    inputs.push(args.data.clone());
    inputs.extend(args.plan.clone());
    crate::onnx::check_output(&args.out, &inputs)?;
    if let Some(log) = &args.log {
        inputs.push(args.out.clone());
        crate::onnx::check_output(log, &inputs)?;
    }
    crate::onnx::open_input(&args.data)?;
    let plan = args.plan.as_deref().map(super::read_plan).transpose()?;
    let opts = Options { loss: args.loss, config: config.clone(), detect: args.detect, plan, gradients: false };
    let gpu = crate::runtime::Gpu::open(args.adapter.as_deref())?;
    let mut trainer = Trainer::new(&gpu, &loaded, &opts, args.seed)?;
    let mut data = dataset(&args.data, &trainer)?;
    let mut validation = match &args.val_data {
        Some(v) => {
            crate::onnx::open_input(v)?;
            Some(dataset(v, &trainer)?)
        }
        None => None,
    };
    if let Some(f) = args.val_split {
        if !(f > 0.0 && f < 1.0) {
            anyhow::bail!("--val-split {f}: give a fraction between 0 and 1");
        }
        let n = crate::train::run::samples(&data)?;
        let held = ((n as f64 * f).round() as usize).clamp(1, n.saturating_sub(1).max(1));
        let order = crate::train::run::permutation(n, args.seed ^ 0x5eed_5eed);
        let (val_idx, train_idx) = order.split_at(held);
        let (mut v, mut t) = (val_idx.to_vec(), train_idx.to_vec());
        v.sort_unstable();
        t.sort_unstable();
        validation = Some(crate::train::run::gather(&data, &v));
        data = crate::train::run::gather(&data, &t);
    }
    let samples = crate::train::run::samples(&data)?;
    let stop = match (args.epochs, args.steps) {
        (_, Some(k)) => Stop::Steps(k),
        (Some(e), None) => Stop::Epochs(e),
        (None, None) => anyhow::bail!("give --epochs or --steps"),
    };
    if args.batch_size == 0 {
        anyhow::bail!("--batch-size must be at least 1");
    }
    let per_epoch = samples.div_ceil(args.batch_size) as u64;
    let total = match stop {
        Stop::Steps(k) => k as u64,
        Stop::Epochs(e) => e as u64 * per_epoch,
    };
    let schedule = Schedule::from_flags(args.lr_schedule, args.warmup_steps, Some(total), args.step_size, args.gamma)?;
    let base_lr = config.lr();
    let measured: Vec<String> = trainer.measured().iter().map(|s| s.to_string()).collect();
    let mut run_state = RunState {
        config: config.clone(),
        detect: args.detect,
        loss: format!("{:?}", args.loss),
        batch_size: args.batch_size,
        seed: args.seed,
        shuffle: args.shuffle,
        samples,
        steps_per_epoch: per_epoch,
        dropout_counter: 0,
        projected: measured.iter().map(|m| (m.clone(), 0)).collect(),
        projected_steps: 0,
    };
    if let Some(dir) = &args.resume {
        let saved = restore_checkpoint(&mut trainer, dir, &run_state)?;
        run_state.projected = saved.projected;
        run_state.projected_steps = saved.projected_steps;
        if !args.quiet {
            println!("resumed from {} at step {}", dir.display(), trainer.steps());
        }
    }
    let mut log = args.log.as_deref().map(Log::create).transpose()?;
    if let Some(l) = log.as_mut() {
        let label = args.optimizer.name();
        l.line(&serde_json::json!({"run": {"model": args.model.file_name().map(|f| f.to_string_lossy().into_owned()), "optimizer": label, "detect": args.detect.name(), "label": label, "samples": samples, "batch_size": args.batch_size, "adapter": gpu.describe(), "resumed_at": trainer.steps()}}))?;
    }
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stdout());
    if !args.quiet {
        println!(
            "training {} on {}: {} samples, batch {}, {} steps ({} per epoch), {} {}",
            args.model.display(),
            gpu.describe(),
            samples,
            args.batch_size,
            total,
            per_epoch,
            args.optimizer.name(),
            args.detect.name()
        );
    }
    if !args.quiet {
        let first: Vec<usize> = (0..args.batch_size.min(samples)).collect();
        let m = trainer.memory(&crate::train::run::gather(&data, &first))?;
        let mib = |b: u64| b as f64 / (1 << 20) as f64;
        println!(
            "device memory: {:.1} MiB at peak: program {:.1} MiB{} ({:.1} resident, {:.1} shared by {:.1} MiB of activations), optimizer {:.1} MiB, statistics {:.2} MiB",
            mib(m.peak()),
            mib(m.arena),
            if m.arena_pages > 1 { format!(" in {} buffers", m.arena_pages) } else { String::new() },
            mib(m.resident),
            mib(m.transient),
            mib(m.unshared),
            mib(m.optimizer),
            mib(m.buffers)
        );
    }
    if args.profile {
        let first: Vec<usize> = (0..args.batch_size.min(samples)).collect();
        let times = trainer.profile(&crate::train::run::gather(&data, &first))?;
        let total_s: f64 = times.iter().map(|t| t.seconds).sum();
        let launches: usize = times.iter().map(|t| t.launches).sum();
        println!("profile of one forward-and-backward pass ({launches} launches, {:.1} ms, each launch submitted and waited for alone):", 1e3 * total_s);
        println!("{:<24} {:>8} {:>10} {:>6}", "op", "launches", "ms", "%");
        for t in &times {
            println!("{:<24} {:>8} {:>10.2} {:>5.1}%", t.op, t.launches, 1e3 * t.seconds, 100.0 * t.seconds / total_s.max(1e-12));
        }
    }
    let bar = (terminal && !args.quiet).then(|| {
        let b = indicatif::ProgressBar::new(total);
        b.set_style(indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} epoch {prefix} {msg} eta {eta}").unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()));
        b.set_position(trainer.steps());
        b
    });
    // Ctrl-C: finish the step, checkpoint, stop.
    INTERRUPTED.store(false, std::sync::atomic::Ordering::SeqCst);
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, on_sigint as extern "C" fn(libc::c_int) as libc::sighandler_t);
    }
    let checkpoint_dir = args.checkpoint_dir.clone().unwrap_or_else(|| {
        let mut p = args.out.clone().into_os_string();
        p.push(".checkpoints");
        PathBuf::from(p)
    });
    let lopts = LoopOptions { batch_size: args.batch_size, stop, shuffle: args.shuffle, seed: args.seed, metrics_every: args.metrics_every };
    let quiet = args.quiet;
    let mut failure: Option<anyhow::Error> = None;
    let mut interrupted: Option<Interrupted> = None;
    let mut on_event = |trainer: &mut Trainer, e: Event| -> Result<bool, TrainError> {
        let mut go = || -> anyhow::Result<bool> {
            match e {
                Event::Step { record, metrics } => {
                    run_state.dropout_counter = record.step;
                    for m in metrics.iter() {
                        if let (Some(p), Some(slot)) = (m.projected, run_state.projected.iter_mut().find(|(n, _)| *n == m.name)) {
                            slot.1 += u64::from(p);
                        }
                    }
                    if metrics.iter().any(|m| m.projected.is_some()) {
                        run_state.projected_steps += 1;
                    }
                    if let Some(l) = log.as_mut() {
                        l.line(&serde_json::to_value(record)?)?;
                        if metrics.iter().any(|m| m.norm.is_finite()) {
                            let mut map = serde_json::Map::new();
                            for m in metrics.iter() {
                                let frac = m.projected.map(|_| {
                                    let c = run_state.projected.iter().find(|(n, _)| *n == m.name).map(|x| x.1).unwrap_or(0);
                                    c as f64 / run_state.projected_steps.max(1) as f64
                                });
                                map.insert(m.name.clone(), serde_json::json!({"norm": m.norm, "effective_step": m.effective_step, "projected_fraction": frac}));
                            }
                            l.line(&serde_json::json!({"step": record.step, "metrics": map}))?;
                        }
                    }
                    if let Some(b) = &bar {
                        b.set_position(record.step);
                        b.set_prefix(record.epoch.to_string());
                        let acc = record.accuracy.map(|a| format!(" acc {a:.3}")).unwrap_or_default();
                        b.set_message(format!("loss {:.4}{acc} {} samples/s", record.loss, rate(record.samples_per_s)));
                    }
                    let every = args.checkpoint_every.is_some_and(|k| k > 0 && record.step % k == 0);
                    let stop = INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst);
                    if every || stop || (args.checkpoint_dir.is_some() && record.step == total) {
                        save_checkpoint(trainer, &checkpoint_dir, args.keep_checkpoints, &run_state, record.epoch)?;
                    }
                    if stop {
                        interrupted = Some(Interrupted { step: record.step, dir: checkpoint_dir.display().to_string() });
                        return Ok(false);
                    }
                    Ok(true)
                }
                Event::Epoch { epoch, step, validation } => {
                    if let (Some(l), Some((vl, va))) = (log.as_mut(), validation) {
                        l.line(&serde_json::json!({"epoch": epoch, "step": step, "val_loss": vl, "val_accuracy": va}))?;
                    }
                    if !quiet {
                        let v = validation.map(|(vl, va)| format!(", validation loss {vl:.5}{}", va.map(|a| format!(" accuracy {a:.3}")).unwrap_or_default())).unwrap_or_default();
                        let line = format!("epoch {epoch} (step {step}){v}");
                        match &bar {
                            Some(b) => b.println(line),
                            None => println!("{line}"),
                        }
                    }
                    Ok(true)
                }
            }
        };
        match go() {
            Ok(c) => Ok(c),
            Err(e) => {
                failure = Some(e);
                Ok(false)
            }
        }
    };
    let result = fit(&mut trainer, &data, validation.as_deref(), &lopts, &|step| schedule.lr_at(base_lr, step), &mut on_event);
    // SAFETY: restores the default disposition.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_DFL);
    }
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    if let Some(e) = failure {
        return Err(e);
    }
    let summary = match result {
        Ok(s) => s,
        Err(e @ TrainError::NonFinite { .. }) => {
            if let Some(l) = log {
                l.finish()?;
            }
            anyhow::bail!("{e}; {} was not written, and earlier checkpoints are unchanged", args.out.display());
        }
        Err(e) => return Err(e.into()),
    };
    if let Some(l) = log {
        l.finish()?;
    }
    if let Some(i) = interrupted {
        return Err(i.into());
    }
    let mut values = trainer.params()?;
    values.extend(trainer.buffers()?);
    let trained = loaded.with_initializers(&values)?;
    trained.save(&args.out)?;
    let acc = summary.epoch_accuracy.map(|a| format!(", accuracy {a:.3}")).unwrap_or_default();
    let val = summary.validation.map(|(vl, va)| format!("; validation loss {vl:.5}{}", va.map(|a| format!(", accuracy {a:.3}")).unwrap_or_default())).unwrap_or_default();
    println!(
        "{}: {} steps, last epoch's loss {:.5}{acc}{val}; {} samples/s",
        args.out.display(),
        summary.steps,
        summary.epoch_loss,
        rate(summary.samples_per_s)
    );
    Ok(())
}

/// A rate for people: whole numbers from 10 on, two decimals below (a large
/// model on a CPU adapter trains a fraction of a sample per second).
fn rate(per_s: f64) -> String {
    if per_s >= 10.0 {
        format!("{per_s:.0}")
    } else {
        format!("{per_s:.2}")
    }
}
