//! `adamp-graph train` end to end on the wgpu adapter (lavapipe in CI): the
//! digits BatchNorm CNN learns, its output loads in onnxruntime; resuming is
//! bit-identical; Ctrl-C checkpoints; the paper's metrics equal a float64
//! computation; bad input is an error naming what to fix.
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(p: &str) -> String {
    root().join(p).to_string_lossy().into_owned()
}

fn train(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_adamp-graph")).arg("train").args(args).env("XDG_RUNTIME_DIR", std::env::temp_dir()).output().expect("run adamp-graph")
}

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "train failed ({:?}):\n{}\n{}", out.status, String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn log_lines(p: &Path) -> Vec<Value> {
    std::fs::read_to_string(p).expect("log").lines().map(|l| serde_json::from_str(l).expect("JSON line")).collect()
}

/// The float32 initializers of a model, by name, as bit patterns.
fn initializers(p: &Path) -> Vec<(String, Vec<u8>)> {
    let g = adamp_graph::load_graph(p).expect("model loads");
    let mut v: Vec<(String, Vec<u8>)> = g.initializers.iter().map(|i| (g.values[i.value].name.clone(), i.tensor.data.to_vec())).collect();
    v.sort();
    v
}

fn cnn_args<'a>(out: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec!["--loss", "cross-entropy", "--batch-size", "32", "--shuffle", "--seed", "3", "--out", out];
    a.extend_from_slice(extra);
    a
}

#[test]
fn digits_cnn_learns_and_its_output_loads_in_onnxruntime() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("trained.onnx");
    let log = dir.path().join("log.jsonl");
    let (o, l) = (out.to_string_lossy().into_owned(), log.to_string_lossy().into_owned());
    let model = fixture("fixtures/train/digits_cnn.onnx");
    let data = fixture("fixtures/data/digits_train.npz");
    let val = fixture("fixtures/data/digits_val.npz");
    let mut args = vec![model.as_str(), "--data", data.as_str(), "--val-data", val.as_str(), "--epochs", "3", "--log", l.as_str(), "--lr", "0.01"];
    args.extend(cnn_args(&o, &[]));
    let stdout = ok(&train(&args));
    let lines = log_lines(&log);
    assert!(lines[0]["run"]["optimizer"] == "adamp", "{:?}", lines[0]);
    let steps: Vec<&Value> = lines.iter().filter(|l| l.get("loss").is_some()).collect();
    assert_eq!(steps.len(), 3 * 1437usize.div_ceil(32), "one line per step");
    for (k, s) in steps.iter().enumerate() {
        assert_eq!(s["step"], k as u64 + 1);
        for key in ["epoch", "loss", "lr", "samples_per_s", "accuracy"] {
            assert!(s.get(key).is_some(), "step line lacks {key}: {s}");
        }
    }
    let vals: Vec<&Value> = lines.iter().filter(|l| l.get("val_loss").is_some()).collect();
    assert_eq!(vals.len(), 3, "validation every epoch");
    let first = steps[0]["loss"].as_f64().expect("loss");
    let last_val = vals[2]["val_accuracy"].as_f64().expect("val accuracy");
    assert!(first > 1.5, "the first loss is about ln 10: {first}");
    assert!(last_val > 0.8, "validation accuracy after 3 epochs: {last_val}\n{stdout}");
    // The trained model: same graph, new initializers, and onnxruntime runs it.
    let before = initializers(Path::new(&model));
    let after = initializers(&out);
    assert_eq!(before.iter().map(|x| &x.0).collect::<Vec<_>>(), after.iter().map(|x| &x.0).collect::<Vec<_>>());
    assert!(before.iter().zip(&after).filter(|(a, b)| a.1 != b.1).count() >= before.len() / 2, "most initializers changed");
    let out_s = out.to_string_lossy().into_owned();
    let check = crate::common::py::run("train_fixtures_check.py", &["accuracy", &out_s, &val, "64"]);
    assert_eq!(check["finite"], true, "onnxruntime's outputs of the trained model are finite");
    let acc = check["accuracy"].as_f64().expect("accuracy");
    // training-mode BatchNorm uses the batch's statistics in both runtimes
    assert!(acc > 0.7, "onnxruntime accuracy of the trained model: {acc}");
}

#[test]
fn resuming_is_bit_identical() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = |n: &str| dir.path().join(n).to_string_lossy().into_owned();
    let (model, data) = (fixture("fixtures/train/digits_cnn.onnx"), fixture("fixtures/data/digits_train.npz"));
    let (straight, half, resumed, ck) = (p("straight.onnx"), p("half.onnx"), p("resumed.onnx"), p("ck"));
    let base = |out: &str, steps: &str| -> Vec<String> {
        let mut a: Vec<String> = [model.as_str(), "--data", data.as_str(), "--steps", steps].iter().map(|s| s.to_string()).collect();
        a.extend(cnn_args(out, &[]).iter().map(|s| s.to_string()));
        a
    };
    let run = |a: Vec<String>| ok(&train(&a.iter().map(String::as_str).collect::<Vec<_>>()));
    run(base(&straight, "10"));
    let mut a = base(&half, "5");
    a.extend(["--checkpoint-dir".into(), ck.clone(), "--checkpoint-every".into(), "5".into()]);
    run(a);
    let mut a = base(&resumed, "10");
    a.extend(["--resume".into(), ck.clone()]);
    let stdout = run(a);
    assert!(stdout.contains("resumed from"), "{stdout}");
    assert_eq!(initializers(Path::new(&straight)), initializers(Path::new(&resumed)), "10 steps straight and 5 + resume + 5 differ");
    assert_ne!(initializers(Path::new(&straight)), initializers(Path::new(&half)));
}

#[test]
fn ctrl_c_checkpoints_and_says_how_to_resume() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("t.onnx");
    let ck = dir.path().join("ck");
    let mut child = Command::new(env!("CARGO_BIN_EXE_adamp-graph"))
        .arg("train")
        .args([fixture("fixtures/train/digits_cnn.onnx"), "--data".into(), fixture("fixtures/data/digits_train.npz")])
        .args(["--loss", "cross-entropy", "--batch-size", "16", "--epochs", "200", "--out"])
        .arg(&out)
        .arg("--checkpoint-dir")
        .arg(&ck)
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // Wait for the first epoch line: training is under way.
    let mut stdout = child.stdout.take().expect("stdout");
    let mut seen = String::new();
    let mut buf = [0u8; 256];
    while !seen.contains("epoch 1") {
        let n = std::io::Read::read(&mut stdout, &mut buf).expect("read");
        assert!(n > 0, "train ended before its first epoch: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    // SAFETY: signals our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let status = child.wait().expect("wait");
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut err).expect("stderr");
    assert_eq!(status.code(), Some(130), "exit status after SIGINT: {status:?}\n{err}");
    assert!(err.contains("--resume"), "the message says how to resume: {err}");
    assert!(!out.exists(), "no trained model is written on interrupt");
    let ckpt = adamp_graph::train::checkpoint::load_latest(&ck).expect("a checkpoint");
    assert!(ckpt.step > 90, "the checkpoint is after the first epoch: step {}", ckpt.step);
}

#[test]
fn metrics_equal_a_float64_computation() {
    // The scale-invariant Rosenbrock: one step, metrics every step; the norm
    // is ||w_0||, the effective step ||w_1/|w_1| - w_0/|w_0|||, from the
    // initial and trained models in float64.
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("r.onnx");
    let log = dir.path().join("r.jsonl");
    let model = fixture("fixtures/train/rosenbrock.onnx");
    let data = fixture("fixtures/data/rosenbrock.npz");
    // --profile first runs the pass launch by launch: it must leave the state as it was
    let printed = ok(&train(&[&model, "--data", &data, "--loss", "mse", "--batch-size", "64", "--steps", "1", "--metrics-every", "1", "--lr", "0.05", "--profile", "--out", out.to_str().unwrap_or_default(), "--log", log.to_str().unwrap_or_default()]));
    let table: Vec<&str> = printed.lines().skip_while(|l| !l.starts_with("profile of one forward-and-backward pass")).skip(2).take_while(|l| l.ends_with('%')).collect();
    assert!(!table.is_empty(), "a profile table: {printed}");
    let launches: usize = table.iter().map(|l| l.split_whitespace().nth(1).and_then(|n| n.parse::<usize>().ok()).expect("launch count")).sum();
    assert!(printed.contains(&format!("({launches} launches")), "the rows add up to the launches: {printed}");
    let lines = log_lines(&log);
    let m = lines.iter().find_map(|l| l.get("metrics")).expect("a metrics line");
    let (name, rec) = m.as_object().and_then(|o| o.iter().next()).expect("one tensor measured");
    let w = |p: &Path| -> Vec<f64> {
        let g = adamp_graph::load_graph(p).expect("loads");
        let v = g.value_by_name(name).expect("tensor");
        g.initializer_of(v).expect("initializer").data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64).collect()
    };
    let (w0, w1) = (w(Path::new(&model)), w(&out));
    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    let (n0, n1) = (norm(&w0), norm(&w1));
    let eff = w0.iter().zip(&w1).map(|(a, b)| (b / n1 - a / n0).powi(2)).sum::<f64>().sqrt();
    let got_norm = rec["norm"].as_f64().expect("norm");
    let got_eff = rec["effective_step"].as_f64().expect("effective step");
    assert!((got_norm - n0).abs() <= 1e-6 * n0, "norm {got_norm} vs {n0}");
    assert!(eff > 1e-4, "the step moved the direction: {eff}");
    // float32 sums of a^2, b^2, (a-b)^2 and (a-b)(a+b): no cancellation, 1e-4 relative
    assert!((got_eff - eff).abs() <= 1e-4 * eff, "effective step {got_eff} vs {eff}");
}

#[test]
fn bad_input_names_what_to_fix() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("o.onnx");
    let o = out.to_str().unwrap_or_default().to_string();
    let model = fixture("fixtures/train/digits_cnn.onnx");
    let err = |args: &[&str]| {
        let r = train(args);
        assert!(!r.status.success(), "{args:?} should fail");
        assert!(!out.exists(), "no output on failure");
        String::from_utf8_lossy(&r.stderr).into_owned()
    };
    // an array that is not an input
    let rosen = fixture("fixtures/data/rosenbrock.npz");
    let e = err(&[&model, "--data", &rosen, "--loss", "cross-entropy", "--batch-size", "8", "--steps", "1", "--out", &o]);
    assert!(e.contains("array 'x'") || e.contains("'x'"), "{e}");
    // truncated data
    let trunc = dir.path().join("t.npz");
    let bytes = std::fs::read(fixture("fixtures/data/digits_train.npz")).expect("npz");
    std::fs::write(&trunc, &bytes[..bytes.len() / 2]).expect("write");
    let e = err(&[&model, "--data", trunc.to_str().unwrap_or_default(), "--loss", "cross-entropy", "--batch-size", "8", "--steps", "1", "--out", &o]);
    assert!(e.contains("t.npz"), "names the file: {e}");
    // a non-finite loss stops training, naming the step
    let e = err(&[&model, "--data", &fixture("fixtures/data/digits_train.npz"), "--loss", "cross-entropy", "--batch-size", "64", "--steps", "30", "--optimizer", "sgd", "--lr", "1e30", "--out", &o]);
    assert!(e.contains("step ") && e.contains("not finite"), "{e}");
    // a checkpoint folder that cannot be written: an error naming it, earlier checkpoints intact
    let ck = dir.path().join("ck");
    ok(&train(&[&model, "--data", &fixture("fixtures/data/digits_train.npz"), "--loss", "cross-entropy", "--batch-size", "64", "--steps", "2", "--checkpoint-dir", ck.to_str().unwrap_or_default(), "--out", &o]));
    std::fs::remove_file(&out).expect("remove");
    let before = adamp_graph::train::checkpoint::load_latest(&ck).expect("checkpoint");
    let blocked = dir.path().join("file");
    std::fs::write(&blocked, b"not a folder").expect("write");
    let e = err(&[&model, "--data", &fixture("fixtures/data/digits_train.npz"), "--loss", "cross-entropy", "--batch-size", "64", "--steps", "2", "--checkpoint-dir", blocked.join("ck").to_str().unwrap_or_default(), "--out", &o]);
    assert!(e.contains("file"), "names the folder: {e}");
    assert_eq!(adamp_graph::train::checkpoint::load_latest(&ck).expect("still there").step, before.step);
}
