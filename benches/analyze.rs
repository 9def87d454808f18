//! Parse + analyze speed: the largest zoo models (inflated to plain `.onnx`
//! files first, so the benchmark measures the memory-mapped load, not gzip) and
//! synthetic Conv-BatchNorm-Relu chains of growing size (linearity); and the
//! training-step rewrite of the two largest zoo models.
//!
//! `cargo bench --bench analyze`; set `ADAMP_BENCH_MODEL=path.onnx` to add a
//! model of your own (e.g. ResNet-50 with real weights, see README).
use adamp_graph::onnx::{Attr, GraphBuilder, TensorData};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn inflate(src: &Path, dir: &Path) -> PathBuf {
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(src).unwrap()).read_to_end(&mut bytes).unwrap();
    let name = src.file_stem().unwrap();
    let out = dir.join(name);
    std::fs::write(&out, bytes).unwrap();
    out
}

/// `blocks` Conv(1x1)-BatchNorm-Relu blocks: 3 nodes and 5 parameters each.
pub fn synthetic_chain(blocks: usize) -> Vec<u8> {
    let mut b = GraphBuilder::new("chain", 17);
    b.input("x", &[-1, 8, 4, 4]);
    let mut prev = "x".to_string();
    for i in 0..blocks {
        let (w, c, y, r) = (format!("w{i}"), format!("c{i}"), format!("y{i}"), format!("r{i}"));
        b.initializer(&w, &[8, 8, 1, 1], TensorData::Zeros);
        for s in ["g", "b", "m", "v"] {
            b.initializer(&format!("{s}{i}"), &[8], TensorData::Zeros);
        }
        b.node("Conv", &[&prev, &w], &[&c], &[]);
        let ins = [c.clone(), format!("g{i}"), format!("b{i}"), format!("m{i}"), format!("v{i}")];
        let ins: Vec<&str> = ins.iter().map(String::as_str).collect();
        b.node("BatchNormalization", &ins, &[&y], &[("training_mode", Attr::Int(1))]);
        b.node("Relu", &[&y], &[&r], &[]);
        prev = r;
    }
    b.output(&prev);
    b.to_bytes()
}

/// `x * p_0 * p_1 * ... * p_{n-1}`: every parameter's change travels the rest
/// of the chain to the output (the hostile case of issue 11: quadratic before).
pub fn mul_chain(params: usize) -> Vec<u8> {
    let mut b = GraphBuilder::new("mul-chain", 17);
    b.input("x", &[-1, 4]);
    let mut prev = "x".to_string();
    for i in 0..params {
        let (p, y) = (format!("p{i}"), format!("y{i}"));
        b.initializer(&p, &[4], TensorData::Zeros);
        b.node("Mul", &[&prev, &p], &[&y], &[]);
        prev = y;
    }
    b.output(&prev);
    b.to_bytes()
}

/// One Concat of `params` parameters, normalized: one node with a huge fan-in.
pub fn concat_params(params: usize) -> Vec<u8> {
    let mut b = GraphBuilder::new("concat", 17);
    let names: Vec<String> = (0..params).map(|i| format!("p{i}")).collect();
    for p in &names {
        b.initializer(p, &[2], TensorData::Zeros);
    }
    let ins: Vec<&str> = names.iter().map(String::as_str).collect();
    b.node("Concat", &ins, &["c"], &[("axis", Attr::Int(0))]);
    b.output("c");
    b.to_bytes()
}

/// `cargo bench` passes `--bench`; `cargo test --all-targets` runs each
/// benchmark once as a smoke test, in a debug build: there the synthetic and
/// hostile groups keep only their smallest size (scale is a benchmark's
/// question, not a test's).
fn full_sizes() -> bool {
    std::env::args().any(|a| a == "--bench")
}

fn bench(c: &mut Criterion) {
    let full = full_sizes();
    let dir = tempfile::tempdir().unwrap();
    let zoo = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/zoo");
    let models: Vec<PathBuf> = ["resnet50.onnx.gz", "shufflenet_v2.onnx.gz", "mobilenet_v3_small.onnx.gz"]
        .iter()
        .map(|m| inflate(&zoo.join(m), dir.path()))
        .collect();
    let extra = std::env::var("ADAMP_BENCH_MODEL").ok().map(PathBuf::from);
    let mut group = c.benchmark_group("parse+analyze");
    group.measurement_time(Duration::from_secs(5)).sample_size(20);
    for m in &models {
        let name = m.file_name().unwrap().to_string_lossy().into_owned();
        group.bench_function(format!("zoo/{name}"), |b| b.iter(|| adamp_graph::analyze_file(m).unwrap()));
    }
    if let Some(m) = &extra {
        let name = m.file_name().unwrap().to_string_lossy().into_owned();
        group.bench_function(format!("ADAMP_BENCH_MODEL/{name}"), |b| b.iter(|| adamp_graph::analyze_file(m).unwrap()));
    }
    group.finish();

    // The training-step rewrite (forward lowering, gradients, AdamP update,
    // pruning), in memory: the model is loaded once, encoding is not timed.
    let mut group = c.benchmark_group("rewrite");
    group.measurement_time(Duration::from_secs(10)).sample_size(10);
    let opts = adamp_graph::rewrite::Options {
        loss: adamp_graph::rewrite::Loss::CrossEntropy,
        config: adamp_graph::optim::Config::defaults(adamp_graph::optim::Algorithm::Adamp),
        detect: adamp_graph::optim::Detect::Auto,
        plan: None,
        gradients: false,
    };
    for m in &models[..2] {
        let loaded = adamp_graph::onnx::load_model(m).unwrap();
        let name = m.file_name().unwrap().to_string_lossy().into_owned();
        group.bench_function(format!("adamp/{name}"), |b| b.iter(|| adamp_graph::rewrite::rewrite(&loaded, &opts).unwrap()));
    }
    group.finish();

    let mut group = c.benchmark_group("synthetic-chain");
    group.measurement_time(Duration::from_secs(5)).sample_size(10);
    let sizes: &[usize] = if full { &[3_333, 10_000, 33_334] } else { &[3_333] };
    for &blocks in sizes {
        let bytes = synthetic_chain(blocks);
        let path = dir.path().join(format!("chain{blocks}.onnx"));
        std::fs::write(&path, &bytes).unwrap();
        group.throughput(Throughput::Elements(3 * blocks as u64));
        group.bench_function(format!("{}-nodes", 3 * blocks), |b| b.iter(|| adamp_graph::analyze_file(&path).unwrap()));
    }
    group.finish();

    // Hostile shapes at 10^5 parameters: a chain where every change reaches the
    // output, and one node reading all parameters.
    let mut group = c.benchmark_group("hostile");
    group.measurement_time(Duration::from_secs(10)).sample_size(10);
    for (name, bytes) in [("mul-chain", mul_chain as fn(usize) -> Vec<u8>), ("concat", concat_params)]
        .iter()
        .flat_map(|(name, f)| {
            let sizes: &[usize] = if full { &[10_000, 100_000] } else { &[10_000] };
            sizes.iter().map(move |&n| (format!("{name}/{n}-params"), f(n)))
        })
    {
        let path = dir.path().join(format!("{}.onnx", name.replace('/', "-")));
        std::fs::write(&path, &bytes).unwrap();
        group.bench_function(name, |b| b.iter(|| adamp_graph::analyze_file(&path).unwrap()));
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
