//! Python bindings: the analysis and the plan on ONNX bytes or a path, as JSON
//! documents (the same schemas the CLI prints), for `adamp_graph` in Python.
use adamp_graph::optim::{Algorithm, Config, Overrides};
use adamp_graph::plan;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};
use std::path::PathBuf;

pyo3::create_exception!(_native, ModelError, PyValueError, "The model could not be read or analysed; the message names the file, node or tensor.");

/// A model given as ONNX bytes (plain or gzip) or as a path.
enum Source {
    Bytes(Vec<u8>),
    Path(PathBuf),
}

impl Source {
    fn extract(model: &Bound<'_, PyAny>) -> PyResult<Source> {
        if let Ok(b) = model.cast::<PyBytes>() {
            return Ok(Source::Bytes(b.as_bytes().to_vec()));
        }
        if model.is_instance_of::<PyString>() || model.hasattr("__fspath__")? {
            return Ok(Source::Path(model.extract::<PathBuf>()?));
        }
        Err(PyTypeError::new_err(format!(
            "model must be ONNX bytes or a path, not {}",
            model.get_type().name()?
        )))
    }

    fn analyze(self) -> Result<adamp_graph::analysis::Analysis, adamp_graph::Error> {
        match self {
            Source::Bytes(b) => adamp_graph::analyze_bytes(b),
            Source::Path(p) => adamp_graph::analyze_file(&p),
        }
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> PyResult<String> {
    serde_json::to_string(value).map_err(|e| PyValueError::new_err(e.to_string()))
}

/// Analyses a model (bytes or path); returns the `analyze --format json` document.
#[pyfunction]
fn analyze_json(py: Python<'_>, model: &Bound<'_, PyAny>) -> PyResult<String> {
    let source = Source::extract(model)?;
    let analysis = py.detach(|| source.analyze()).map_err(|e| ModelError::new_err(e.to_string()))?;
    to_json(&analysis)
}

/// The plan (schema `adamp-graph/plan`) for a model; `hyperparameters` is a JSON
/// object of values overriding the optimizer's reference defaults (Python's
/// keyword names: `lr`, `betas`, `eps`, `weight_decay`, `momentum`, `dampening`,
/// `nesterov`, `delta`, `wd_ratio`), validated as the CLI validates its flags.
#[pyfunction]
#[pyo3(signature = (model, optimizer = "adamp", hyperparameters = None))]
fn plan_json(py: Python<'_>, model: &Bound<'_, PyAny>, optimizer: &str, hyperparameters: Option<&str>) -> PyResult<String> {
    let algo = match optimizer {
        "adamp" => Algorithm::Adamp,
        "sgdp" => Algorithm::Sgdp,
        other => return Err(PyValueError::new_err(format!("optimizer must be 'adamp' or 'sgdp', not {other:?}"))),
    };
    let overrides = match hyperparameters {
        Some(text) => overrides(text, algo)?,
        None => Overrides::default(),
    };
    let config = Config::with(algo, &overrides).map_err(|e| PyValueError::new_err(keyword_names(&e.to_string())))?;
    let source = Source::extract(model)?;
    let analysis = py.detach(|| source.analyze()).map_err(|e| ModelError::new_err(e.to_string()))?;
    let plan = plan::build(&analysis, &config).map_err(|e| PyValueError::new_err(e.to_string()))?;
    to_json(&plan)
}

/// A configuration error with the CLI's flags (`--weight-decay`) written as Python keywords (`weight_decay`).
fn keyword_names(message: &str) -> String {
    const FLAGS: [&str; 9] = ["lr", "betas", "eps", "weight-decay", "momentum", "dampening", "nesterov", "delta", "wd-ratio"];
    FLAGS.iter().fold(message.to_string(), |m, flag| m.replace(&format!("--{flag}"), &flag.replace('-', "_")))
}

/// The hyperparameter values of a JSON object, by their Python keyword names.
fn overrides(text: &str, algo: Algorithm) -> PyResult<Overrides> {
    let fields: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(text).map_err(|e| PyValueError::new_err(format!("hyperparameters: {e}")))?;
    let mut o = Overrides::default();
    for (key, value) in fields {
        let number = || value.as_f64().ok_or_else(|| PyValueError::new_err(format!("{key}: expected a number, got {value}")));
        match key.as_str() {
            "lr" => o.lr = Some(number()?),
            "eps" => o.eps = Some(number()?),
            "weight_decay" => o.weight_decay = Some(number()?),
            "momentum" => o.momentum = Some(number()?),
            "dampening" => o.dampening = Some(number()?),
            "delta" => o.delta = Some(number()?),
            "wd_ratio" => o.wd_ratio = Some(number()?),
            "nesterov" => {
                o.nesterov = value.as_bool().ok_or_else(|| PyValueError::new_err(format!("nesterov: expected a bool, got {value}")))?
            }
            "betas" => {
                let pair = value.as_array().and_then(|a| match a.as_slice() {
                    [b1, b2] => Some((b1.as_f64()?, b2.as_f64()?)),
                    _ => None,
                });
                o.betas = Some(pair.ok_or_else(|| PyValueError::new_err(format!("betas: expected two numbers, got {value}")))?);
            }
            _ => return Err(PyValueError::new_err(format!("{key:?} is not a hyperparameter of {}", algo.name()))),
        }
    }
    Ok(o)
}

/// One tensor's view for [`row_dots`] and [`row_update`]: rows are the slices along
/// the middle dim of `[outer, rows, inner]` (channel along axis k: outer = the dims
/// before k, inner = the dims after; a whole tensor: `[1, 1, numel]`).
type RowLayout = (usize, usize, usize);

/// Tensors given by address, one per layout. The caller (`adamp_graph.torch`)
/// checks that each is a contiguous float32 CPU tensor with its layout's element
/// count, and keeps it alive during the call.
type Addresses = Vec<usize>;

/// Runs `work(tensor, row, output row)` for every row of every tensor, on
/// `threads` threads, in work items of about 64k elements.
fn for_each_row(layouts: &[RowLayout], threads: usize, work: impl Fn(usize, usize, usize) + Sync) {
    const CHUNK: usize = 1 << 16;
    let mut items = Vec::new();
    let mut first_out = 0;
    for (t, &(outer, n, inner)) in layouts.iter().enumerate() {
        let per_item = (CHUNK / (outer * inner).max(1)).max(1);
        let mut r = 0;
        while r < n {
            let end = (r + per_item).min(n);
            items.push((t, r, end, first_out));
            r = end;
        }
        first_out += n;
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let worker = || loop {
        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let Some(&(t, r0, r1, first)) = items.get(i) else { break };
        for r in r0..r1 {
            work(t, r, first + r);
        }
    };
    std::thread::scope(|s| {
        for _ in 1..threads.max(1) {
            s.spawn(worker);
        }
        worker();
    });
}

/// The `[start, start + inner)` pieces of row `r` of a `[outer, n, inner]` tensor.
fn row_pieces((outer, n, inner): RowLayout, r: usize) -> impl Iterator<Item = usize> {
    // An empty tensor (an empty shard) may have a null address: no pieces of it.
    (0..if inner == 0 { 0 } else { outer }).map(move |o| (o * n + r) * inner)
}

/// Checks the lists against the layouts and the output's size.
fn check_lists(what: &str, lists: &[&Addresses], layouts: &[RowLayout], out_rows: usize) -> PyResult<()> {
    let rows: usize = layouts.iter().map(|l| l.1).sum();
    if rows > out_rows || lists.iter().any(|l| l.len() != layouts.len()) {
        return Err(PyValueError::new_err(format!(
            "{what}: {} layouts with {rows} rows, lists of {:?} tensors, {out_rows} output rows",
            layouts.len(),
            lists.iter().map(|l| l.len()).collect::<Vec<_>>()
        )));
    }
    Ok(())
}

/// A float32 slice of `len` values at `address + start` values.
///
/// # Safety
/// `address` must hold at least `start + len` float32 values that outlive the slice.
unsafe fn floats<'a>(address: usize, start: usize, len: usize) -> &'a [f32] {
    std::slice::from_raw_parts((address as *const f32).add(start), len)
}

/// Per-row dot products of float32 tensors in host memory, several in one pass:
/// for every tensor `t`, row `r` and term `k`, `out[(first_row(t) + r) * stride + k]
/// = Σ a_k · b_k` over the row, or `Σ a_k · (b_k / c_k)` where the term has a
/// divisor list. Accumulated in float32 lanes per block of 4096 and in float64
/// across blocks. This is the fused reduction of the projection: one call per
/// parameter group per step.
#[pyfunction]
#[allow(clippy::type_complexity)]
fn row_dots(
    py: Python<'_>,
    terms: Vec<(Addresses, Addresses, Option<Addresses>)>,
    layouts: Vec<RowLayout>,
    out: usize,
    out_rows: usize,
    stride: usize,
    threads: usize,
) -> PyResult<()> {
    for (a, b, c) in &terms {
        check_lists("row_dots", &[a, b], &layouts, out_rows)?;
        if let Some(c) = c {
            check_lists("row_dots", &[c], &layouts, out_rows)?;
        }
    }
    if terms.len() > stride {
        return Err(PyValueError::new_err(format!("row_dots: {} terms in rows of {stride}", terms.len())));
    }
    py.detach(|| {
        for_each_row(&layouts, threads, |t, r, o| {
            let layout = layouts[t];
            for (k, (a, b, c)) in terms.iter().enumerate() {
                let mut total = 0f64;
                for start in row_pieces(layout, r) {
                    // SAFETY: the caller's tensors hold outer·n·inner values each (see
                    // `Addresses`); start + inner is within that.
                    let (x, y) = unsafe { (floats(a[t], start, layout.2), floats(b[t], start, layout.2)) };
                    total += match c {
                        None => dot(x, y, |_, v| v),
                        Some(c) => {
                            let z = unsafe { floats(c[t], start, layout.2) };
                            dot(x, y, |i, v| v / z[i])
                        }
                    };
                }
                // SAFETY: each (row, term) is written by one work item; o < out_rows
                // and k < stride were checked above.
                unsafe { *(out as *mut f32).add(o * stride + k) = total as f32 };
            }
        })
    });
    Ok(())
}

/// Σ x[i]·f(i, y[i]), in float32 lanes over blocks of 4096 and float64 across blocks.
fn dot(x: &[f32], y: &[f32], f: impl Fn(usize, f32) -> f32) -> f64 {
    let mut total = 0f64;
    for (block, (xb, yb)) in x.chunks(4096).zip(y.chunks(4096)).enumerate() {
        let base = block * 4096;
        let mut lanes = [0f32; 16];
        let whole = xb.len() / 16 * 16;
        for j in (0..whole).step_by(16) {
            for l in 0..16 {
                lanes[l] += xb[j + l] * f(base + j + l, yb[j + l]);
            }
        }
        let tail: f32 = (whole..xb.len()).map(|j| xb[j] * f(base + j, yb[j])).sum();
        total += lanes.iter().map(|&v| v as f64).sum::<f64>() + tail as f64;
    }
    total
}

/// The projected update of float32 tensors in host memory, one pass per row:
/// `x = u / d` (or `u` without divisors); `x -= p · c[row]` stored back into `u`
/// when `c` is given (SGDP projects its momentum buffer in place, as the
/// reference); then `p = p · f[row] − alpha · x`. `c` and `f` are float32 row
/// vectors (addresses, `out_rows` long) in the layouts' row order.
#[pyfunction]
#[pyo3(signature = (p, u, d, layouts, c, f, rows, alpha, threads))]
#[allow(clippy::too_many_arguments)]
fn row_update(
    py: Python<'_>,
    p: Addresses,
    u: Addresses,
    d: Option<Addresses>,
    layouts: Vec<RowLayout>,
    c: Option<usize>,
    f: usize,
    rows: usize,
    alpha: f32,
    threads: usize,
) -> PyResult<()> {
    check_lists("row_update", &[&p, &u], &layouts, rows)?;
    if let Some(d) = &d {
        check_lists("row_update", &[d], &layouts, rows)?;
    }
    py.detach(|| {
        for_each_row(&layouts, threads, |t, r, o| {
            let layout = layouts[t];
            // SAFETY: o < rows was checked; the row vectors hold `rows` values.
            let factor = unsafe { *(f as *const f32).add(o) };
            let coef = c.map(|c| unsafe { *(c as *const f32).add(o) });
            for start in row_pieces(layout, r) {
                let len = layout.2;
                // SAFETY: as in `row_dots`; each row is updated by one work item only,
                // so the mutable slices never alias another thread's.
                let (pv, uv) = unsafe {
                    (
                        std::slice::from_raw_parts_mut((p[t] as *mut f32).add(start), len),
                        std::slice::from_raw_parts_mut((u[t] as *mut f32).add(start), len),
                    )
                };
                let dv = d.as_ref().map(|d| unsafe { floats(d[t], start, len) });
                for i in 0..len {
                    let mut x = match dv {
                        Some(dv) => uv[i] / dv[i],
                        None => uv[i],
                    };
                    if let Some(coef) = coef {
                        x -= pv[i] * coef;
                        uv[i] = x;
                    }
                    pv[i] = pv[i] * factor - alpha * x;
                }
            }
        })
    });
    Ok(())
}

/// The native part of `adamp_graph`.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(analyze_json, m)?)?;
    m.add_function(wrap_pyfunction!(plan_json, m)?)?;
    m.add_function(wrap_pyfunction!(row_dots, m)?)?;
    m.add_function(wrap_pyfunction!(row_update, m)?)?;
    m.add("ModelError", m.py().get_type::<ModelError>())?;
    m.add("PLAN_SCHEMA", plan::SCHEMA)?;
    m.add("PLAN_VERSION", plan::VERSION)?;
    Ok(())
}
