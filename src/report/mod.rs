//! Training reports: reads the JSONL logs that `train --log` writes and draws
//! loss, accuracy, weight-norm growth and effective step size against steps,
//! several runs overlaid (`adamp-graph report`).
//!
//! The log has one JSON object per line; a record's kind is told by its keys,
//! and keys this reader does not know are ignored:
//! - header (first line): `{"run": {"model", "optimizer", "detect", "label"}}`;
//! - training step: `{"step", "epoch", "loss", "lr", "samples_per_s", "accuracy"?}`;
//! - validation at an epoch's end: `{"epoch", "step", "val_loss", "val_accuracy"?}`;
//! - metrics every K steps: `{"step", "metrics": {tensor: {"norm", "effective_step", "projected_fraction"?}}}`,
//!   where `norm` is ‖w_t‖ and `effective_step` ‖ŵ_{t+1} − ŵ_t‖ with ŵ = w/‖w‖ (paper eq. 5).
//!
//! [`read_run`] parses one log, [`series`] turns runs into the plotted data (a
//! pure function, pinned by a snapshot), [`render_svg`] / [`render_html`] draw it.
mod render;

pub use render::{render_html, render_svg};

use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Why a report could not be made; each names the file (and line) at fault.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// Reading a log failed.
    #[error("{path}: {source}")]
    Read {
        /// The log.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A line is not a JSON object, or a known key has the wrong type.
    #[error("{path}:{line}: {detail}")]
    Line {
        /// The log.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        detail: String,
    },
    /// A log holds no training records at all.
    #[error("{path}: no training records (no line with \"step\" and \"loss\", and no metrics); is it a `train --log` file?")]
    Empty {
        /// The log.
        path: PathBuf,
    },
    /// The output's extension names no format.
    #[error("{path}: unknown report format; the output must end in .svg or .html")]
    Format {
        /// The output path.
        path: PathBuf,
    },
    /// The plotting library failed.
    #[error("drawing the report: {0}")]
    Draw(String),
    /// Opening an input or writing the output.
    #[error(transparent)]
    Io(#[from] crate::onnx::OnnxError),
}

/// The header line of a log: what was trained, and the run's name in the legend.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RunHeader {
    /// The model file trained.
    pub model: Option<String>,
    /// The optimizer.
    pub optimizer: Option<String>,
    /// How projected tensors were chosen.
    pub detect: Option<String>,
    /// The legend name (default: the optimizer, else the log's file stem).
    pub label: Option<String>,
}

/// One training step's record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepRecord {
    /// 1-based step.
    pub step: u64,
    /// 1-based epoch.
    pub epoch: Option<u64>,
    /// The batch's loss (`None` when the log has null, e.g. a non-finite loss).
    pub loss: Option<f64>,
    /// The learning rate fed to the step.
    pub lr: Option<f64>,
    /// Throughput.
    pub samples_per_s: Option<f64>,
    /// The batch's accuracy (cross-entropy only).
    pub accuracy: Option<f64>,
}

/// One validation record (at an epoch's end).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvalRecord {
    /// The step after which validation ran.
    pub step: u64,
    /// 1-based epoch.
    pub epoch: Option<u64>,
    /// Validation loss.
    pub val_loss: Option<f64>,
    /// Validation accuracy (cross-entropy only).
    pub val_accuracy: Option<f64>,
}

/// One tensor's metrics at a step.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TensorMetrics {
    /// ‖w_t‖.
    pub norm: Option<f64>,
    /// ‖ŵ_{t+1} − ŵ_t‖ (paper eq. 5).
    pub effective_step: Option<f64>,
    /// Fraction of steps the runtime cosine test projected (runtime/auto tensors).
    pub projected_fraction: Option<f64>,
}

/// The metrics of every recorded tensor at one step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricsRecord {
    /// The step.
    pub step: u64,
    /// Per tensor, by name.
    pub tensors: BTreeMap<String, TensorMetrics>,
}

/// One parsed log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Run {
    /// The log file, as given.
    pub source: String,
    /// Its header (empty when the log has none).
    pub header: RunHeader,
    /// Training steps, in step order.
    pub steps: Vec<StepRecord>,
    /// Validation records, in step order.
    pub evals: Vec<EvalRecord>,
    /// Metrics records, in step order.
    pub metrics: Vec<MetricsRecord>,
    /// Lines that were JSON objects of no known kind (future records), skipped.
    pub skipped_lines: usize,
}

impl Run {
    /// The legend name: the header's label, else its optimizer, else the file stem.
    pub fn label(&self) -> String {
        self.header
            .label
            .clone()
            .or_else(|| self.header.optimizer.clone())
            .unwrap_or_else(|| Path::new(&self.source).file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default())
    }
}

/// Reads one `train --log` file.
pub fn read_run(path: &Path) -> Result<Run, ReportError> {
    use std::io::Read;
    // Refuses a FIFO or directory before reading (a FIFO would block).
    let (mut file, _) = crate::onnx::open_input(path)?;
    let mut text = String::new();
    file.read_to_string(&mut text).map_err(|source| ReportError::Read { path: path.to_path_buf(), source })?;
    parse_run(path, &text)
}

/// Parses the text of a log; `path` names it in errors.
pub fn parse_run(path: &Path, text: &str) -> Result<Run, ReportError> {
    let mut run = Run {
        source: path.display().to_string(),
        header: RunHeader::default(),
        steps: Vec::new(),
        evals: Vec::new(),
        metrics: Vec::new(),
        skipped_lines: 0,
    };
    let mut seen_record = false;
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let raw = raw.trim();
        if raw.is_empty() {
            continue;
        }
        let bad = |detail: String| ReportError::Line { path: path.to_path_buf(), line, detail };
        let value: Value = serde_json::from_str(raw).map_err(|e| bad(format!("not JSON: {e}")))?;
        let Value::Object(obj) = value else {
            return Err(bad(format!("expected a JSON object, found {}", kind(&value))));
        };
        let field = Fields { obj: &obj, bad: &bad };
        if let Some(header) = obj.get("run") {
            // A resumed run may append a second header; the first one names the run.
            if !seen_record && run.header == RunHeader::default() {
                run.header = parse_header(header).map_err(bad)?;
            }
            continue;
        }
        seen_record = true;
        // The kinds are told by their keys and are not exclusive: a writer may
        // put a step's metrics on the step's own line.
        let mut known = false;
        if let Some(metrics) = obj.get("metrics") {
            known = true;
            let step = field.step()?;
            let Value::Object(tensors) = metrics else {
                return Err(bad(format!("\"metrics\" must be an object of tensors, found {}", kind(metrics))));
            };
            let mut parsed = BTreeMap::new();
            for (name, m) in tensors {
                let Value::Object(m) = m else {
                    return Err(bad(format!("metrics of tensor '{name}' must be an object, found {}", kind(m))));
                };
                let f = Fields { obj: m, bad: &bad };
                let key = |k: &str| format!("\"{k}\" of tensor '{name}'");
                parsed.insert(
                    name.clone(),
                    TensorMetrics {
                        norm: f.number_named("norm", &key("norm"))?,
                        effective_step: f.number_named("effective_step", &key("effective_step"))?,
                        projected_fraction: f.number_named("projected_fraction", &key("projected_fraction"))?,
                    },
                );
            }
            rewind(&mut run.metrics, step, |r| r.step);
            run.metrics.push(MetricsRecord { step, tensors: parsed });
        }
        if obj.contains_key("val_loss") || obj.contains_key("val_accuracy") {
            known = true;
            let step = field.step()?;
            rewind(&mut run.evals, step, |r| r.step);
            run.evals.push(EvalRecord {
                step,
                epoch: field.count("epoch")?,
                val_loss: field.number("val_loss")?,
                val_accuracy: field.number("val_accuracy")?,
            });
        }
        if obj.contains_key("loss") {
            known = true;
            let step = field.step()?;
            // A resumed run continues from its checkpoint and logs those steps
            // again: the later records replace the ones after the checkpoint.
            rewind(&mut run.steps, step, |r| r.step);
            run.steps.push(StepRecord {
                step,
                epoch: field.count("epoch")?,
                loss: field.number("loss")?,
                lr: field.number("lr")?,
                samples_per_s: field.number("samples_per_s")?,
                accuracy: field.number("accuracy")?,
            });
        }
        if !known {
            run.skipped_lines += 1;
        }
    }
    if run.steps.is_empty() && run.metrics.is_empty() {
        return Err(ReportError::Empty { path: path.to_path_buf() });
    }
    Ok(run)
}

/// Drops the records at or after `step` (a resume logs them again).
fn rewind<T>(records: &mut Vec<T>, step: u64, step_of: impl Fn(&T) -> u64) {
    while records.last().is_some_and(|r| step_of(r) >= step) {
        records.pop();
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn parse_header(v: &Value) -> Result<RunHeader, String> {
    let Value::Object(obj) = v else { return Err(format!("\"run\" must be an object, found {}", kind(v))) };
    let text = |k: &str| -> Result<Option<String>, String> {
        match obj.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(format!("\"run\".\"{k}\" must be a string, found {}", kind(other))),
        }
    };
    Ok(RunHeader { model: text("model")?, optimizer: text("optimizer")?, detect: text("detect")?, label: text("label")? })
}

/// Typed access to a record's keys, with errors that name the line.
struct Fields<'a, F: Fn(String) -> ReportError> {
    obj: &'a Map<String, Value>,
    bad: &'a F,
}

impl<F: Fn(String) -> ReportError> Fields<'_, F> {
    /// A number, absent or null as `None`.
    fn number(&self, key: &str) -> Result<Option<f64>, ReportError> {
        self.number_named(key, &format!("\"{key}\""))
    }

    fn number_named(&self, key: &str, what: &str) -> Result<Option<f64>, ReportError> {
        match self.obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => Ok(n.as_f64()),
            Some(other) => Err((self.bad)(format!("{what} must be a number, found {}", kind(other)))),
        }
    }

    /// A 1-based count (step, epoch), absent or null as `None`.
    fn count(&self, key: &str) -> Result<Option<u64>, ReportError> {
        match self.obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => match n.as_u64() {
                Some(c) if c >= 1 => Ok(Some(c)),
                _ => Err((self.bad)(format!("\"{key}\" must be an integer of at least 1, found {n}"))),
            },
            Some(other) => Err((self.bad)(format!("\"{key}\" must be an integer, found {}", kind(other)))),
        }
    }

    /// The record's step, which every record but the header needs.
    fn step(&self) -> Result<u64, ReportError> {
        self.count("step")?.ok_or_else(|| (self.bad)("the record has no \"step\"".into()))
    }
}

/// A point of a series: (step, value).
pub type Point = (u64, f64);

/// One tensor's curve.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TensorSeries {
    /// The tensor.
    pub name: String,
    /// Its points.
    pub points: Vec<Point>,
}

/// The last values of a run, for the HTML table.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Finals {
    /// The last step logged.
    pub step: Option<u64>,
    /// The last finite training loss.
    pub loss: Option<f64>,
    /// The last validation loss.
    pub val_loss: Option<f64>,
    /// The last validation accuracy.
    pub val_accuracy: Option<f64>,
    /// The last mean norm ratio ‖w_t‖/‖w_0‖.
    pub norm_ratio_mean: Option<f64>,
    /// The last mean effective step.
    pub effective_step_mean: Option<f64>,
    /// The last mean projected fraction over tensors under the runtime test.
    pub projected_fraction_mean: Option<f64>,
}

/// What is plotted for one run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunSeries {
    /// The legend name.
    pub label: String,
    /// The log file.
    pub source: String,
    /// The log's header.
    pub header: RunHeader,
    /// Training loss per step.
    pub loss: Vec<Point>,
    /// Training accuracy per step.
    pub accuracy: Vec<Point>,
    /// Validation loss at epoch ends.
    pub val_loss: Vec<Point>,
    /// Validation accuracy at epoch ends.
    pub val_accuracy: Vec<Point>,
    /// How many tensors the metrics cover.
    pub tensors: usize,
    /// Mean over tensors of ‖w_t‖/‖w_0‖ (w_0: the tensor's first record).
    pub norm_ratio_mean: Vec<Point>,
    /// Mean over tensors of the effective step.
    pub effective_step_mean: Vec<Point>,
    /// ‖w_t‖/‖w_0‖ of the report's top-k tensors (those this run recorded).
    pub top_norm_ratio: Vec<TensorSeries>,
    /// Effective step of the report's top-k tensors.
    pub top_effective_step: Vec<TensorSeries>,
    /// The last values.
    pub finals: Finals,
}

/// Everything a report draws: a pure function of the runs ([`series`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReportData {
    /// The top-k tensors by norm growth (largest final ‖w_t‖/‖w_0‖ in any run), shown in every run.
    pub top_tensors: Vec<String>,
    /// One entry per run, in the order given.
    pub runs: Vec<RunSeries>,
}

/// Default number of tensors drawn individually.
pub const DEFAULT_TOP_K: usize = 5;

/// The plotted data of several runs, with the `top_k` tensors of largest norm growth.
pub fn series(runs: &[Run], top_k: usize) -> ReportData {
    let ratios: Vec<BTreeMap<String, Vec<Point>>> = runs.iter().map(norm_ratios).collect();
    let steps: Vec<BTreeMap<String, Vec<Point>>> = runs.iter().map(effective_steps).collect();
    // The same tensors in every run, so AdamP and AdamW can be compared line by line.
    let mut growth: BTreeMap<&str, f64> = BTreeMap::new();
    for per_run in &ratios {
        for (name, points) in per_run {
            if let Some(&(_, last)) = points.last() {
                let g = growth.entry(name.as_str()).or_insert(f64::NEG_INFINITY);
                *g = g.max(last);
            }
        }
    }
    let mut ranked: Vec<(&str, f64)> = growth.into_iter().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    let top_tensors: Vec<String> = ranked.into_iter().take(top_k).map(|(n, _)| n.to_string()).collect();
    let pick = |per_run: &BTreeMap<String, Vec<Point>>| -> Vec<TensorSeries> {
        top_tensors
            .iter()
            .filter_map(|n| per_run.get(n).map(|p| TensorSeries { name: n.clone(), points: p.clone() }))
            .collect()
    };
    let labels = unique_labels(runs);
    let runs = runs
        .iter()
        .zip(labels)
        .zip(ratios.iter().zip(&steps))
        .map(|((run, label), (ratio, step))| {
            let norm_ratio_mean = mean_over_tensors(ratio);
            let effective_step_mean = mean_over_tensors(step);
            let loss = finite(run.steps.iter().map(|s| (s.step, s.loss)));
            let val_loss = finite(run.evals.iter().map(|e| (e.step, e.val_loss)));
            let val_accuracy = finite(run.evals.iter().map(|e| (e.step, e.val_accuracy)));
            let finals = Finals {
                step: run.steps.iter().map(|s| s.step).chain(run.metrics.iter().map(|m| m.step)).max(),
                loss: loss.last().map(|p| p.1),
                val_loss: val_loss.last().map(|p| p.1),
                val_accuracy: val_accuracy.last().map(|p| p.1),
                norm_ratio_mean: norm_ratio_mean.last().map(|p| p.1),
                effective_step_mean: effective_step_mean.last().map(|p| p.1),
                projected_fraction_mean: last_projected_fraction(run),
            };
            RunSeries {
                label,
                source: run.source.clone(),
                header: run.header.clone(),
                accuracy: finite(run.steps.iter().map(|s| (s.step, s.accuracy))),
                loss,
                val_loss,
                val_accuracy,
                tensors: run.metrics.iter().flat_map(|m| m.tensors.keys()).collect::<BTreeSet<_>>().len(),
                norm_ratio_mean,
                effective_step_mean,
                top_norm_ratio: pick(ratio),
                top_effective_step: pick(step),
                finals,
            }
        })
        .collect();
    ReportData { top_tensors, runs }
}

/// The runs' legend names; a name used by several runs gets its log's file name
/// appended, so that two AdamP runs with different settings stay apart.
fn unique_labels(runs: &[Run]) -> Vec<String> {
    let labels: Vec<String> = runs.iter().map(Run::label).collect();
    labels
        .iter()
        .zip(runs)
        .map(|(label, run)| {
            if labels.iter().filter(|l| *l == label).count() > 1 {
                let file = Path::new(&run.source).file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
                format!("{label} ({file})")
            } else {
                label.clone()
            }
        })
        .collect()
}

fn finite(points: impl Iterator<Item = (u64, Option<f64>)>) -> Vec<Point> {
    points.filter_map(|(s, v)| v.filter(|v| v.is_finite()).map(|v| (s, v))).collect()
}

/// Per tensor: ‖w_t‖/‖w_0‖, w_0 being its first record with a finite, positive norm.
fn norm_ratios(run: &Run) -> BTreeMap<String, Vec<Point>> {
    let mut first: BTreeMap<&str, f64> = BTreeMap::new();
    let mut out: BTreeMap<String, Vec<Point>> = BTreeMap::new();
    for record in &run.metrics {
        for (name, m) in &record.tensors {
            let Some(norm) = m.norm.filter(|n| n.is_finite()) else { continue };
            let base = match first.get(name.as_str()) {
                Some(&b) => b,
                None if norm > 0.0 => *first.entry(name).or_insert(norm),
                None => continue,
            };
            out.entry(name.clone()).or_default().push((record.step, norm / base));
        }
    }
    out
}

fn effective_steps(run: &Run) -> BTreeMap<String, Vec<Point>> {
    let mut out: BTreeMap<String, Vec<Point>> = BTreeMap::new();
    for record in &run.metrics {
        for (name, m) in &record.tensors {
            if let Some(v) = m.effective_step.filter(|v| v.is_finite()) {
                out.entry(name.clone()).or_default().push((record.step, v));
            }
        }
    }
    out
}

/// At each step, the mean over the tensors that have a value there.
fn mean_over_tensors(per_tensor: &BTreeMap<String, Vec<Point>>) -> Vec<Point> {
    let mut sums: BTreeMap<u64, (f64, usize)> = BTreeMap::new();
    for points in per_tensor.values() {
        for &(step, v) in points {
            let e = sums.entry(step).or_insert((0.0, 0));
            e.0 += v;
            e.1 += 1;
        }
    }
    sums.into_iter().map(|(step, (sum, n))| (step, sum / n as f64)).collect()
}

fn last_projected_fraction(run: &Run) -> Option<f64> {
    // Each tensor's latest value, then the mean: tensors need not all appear in the last record.
    let mut last: BTreeMap<&str, f64> = BTreeMap::new();
    for record in &run.metrics {
        for (name, m) in &record.tensors {
            if let Some(f) = m.projected_fraction.filter(|f| f.is_finite()) {
                last.insert(name, f);
            }
        }
    }
    (!last.is_empty()).then(|| last.values().sum::<f64>() / last.len() as f64)
}

/// What `report` writes, chosen by the output's extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// A standalone SVG picture.
    Svg,
    /// An HTML page with the picture and a table of final figures.
    Html,
}

impl OutputFormat {
    /// The format an output path asks for (`.svg` or `.html`/`.htm`).
    pub fn of(path: &Path) -> Result<OutputFormat, ReportError> {
        match path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase()).as_deref() {
            Some("svg") => Ok(OutputFormat::Svg),
            Some("html" | "htm") => Ok(OutputFormat::Html),
            _ => Err(ReportError::Format { path: path.to_path_buf() }),
        }
    }
}

/// Reads the logs, draws the report and writes it atomically to `output`.
pub fn write_report(logs: &[PathBuf], output: &Path, top_k: usize) -> Result<ReportData, ReportError> {
    let format = OutputFormat::of(output)?;
    crate::onnx::check_output(output, logs)?;
    let runs = logs.iter().map(|p| read_run(p)).collect::<Result<Vec<_>, _>>()?;
    let data = series(&runs, top_k);
    let text = match format {
        OutputFormat::Svg => render_svg(&data)?,
        OutputFormat::Html => render_html(&data)?,
    };
    crate::onnx::write_atomic(output, text.as_bytes())?;
    Ok(data)
}

#[cfg(test)]
mod tests;
