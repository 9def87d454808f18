//! Files crafted as an attacker would (issue 11, point 6): each gets a clear
//! error or correct output, never a panic, an abort, a hang, runaway memory,
//! a replaced input or raw control characters on the terminal.
use adamp_graph::onnx::{Attr, GraphBuilder, LoadLimits, TensorData};
use crate::common::py::python;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_adamp-graph"));
    c.env_remove("ADAMP_GRAPH_ADAPTER");
    c
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut gz, bytes).unwrap();
    gz.finish().unwrap()
}

/// x → MatMul(W) → LayerNormalization(g, beta) → y, with the weight's name chosen.
fn named_model(weight: &str) -> GraphBuilder {
    let mut b = GraphBuilder::new("t", 17);
    b.input("x", &[-1, 4]);
    b.initializer(weight, &[4, 4], TensorData::Zeros);
    b.initializer("g", &[4], TensorData::Zeros);
    b.initializer("beta", &[4], TensorData::Zeros);
    b.node("MatMul", &["x", weight], &["h"], &[]);
    b.node("LayerNormalization", &["h", "g", "beta"], &["y"], &[("axis", Attr::Int(-1))]);
    b.output("y");
    b
}

fn small_model() -> GraphBuilder {
    named_model("W")
}

/// A model file holding nothing but `nodes` empty NodeProtos (two bytes each).
fn empty_nodes_model(nodes: usize) -> Vec<u8> {
    let graph: Vec<u8> = std::iter::repeat_n([0x0au8, 0x00], nodes).flatten().collect();
    let mut model = vec![0x3a]; // field 7 (graph), length-delimited
    let mut len = graph.len() as u64;
    loop {
        let byte = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            model.push(byte);
            break;
        }
        model.push(byte | 0x80);
    }
    model.extend(graph);
    model
}

// ---- panics -------------------------------------------------------------

#[test]
fn names_of_65536_characters_and_more_render_in_tables() {
    use adamp_graph::cli::{render_analysis, render_plan, Format, PlanFormat};
    for len in [65_535, 65_536, 100_000] {
        let name = "w".repeat(len);
        let a = adamp_graph::analyze_bytes(named_model(&name).to_bytes()).unwrap();
        let table = render_analysis(&a, Format::Table);
        assert!(table.contains(&name), "the name is shown whole");
        let header = table.lines().next().unwrap();
        assert!(header.starts_with("name") && header.len() > len, "the name column is as wide as the name");
        let plan = adamp_graph::plan::build(&a, &adamp_graph::optim::Config::defaults(adamp_graph::optim::Algorithm::Adamp)).unwrap();
        assert!(render_plan(&plan, PlanFormat::Table).contains(&name));
    }
}

#[test]
fn bench_of_a_huge_weight_without_data_is_an_error_not_an_abort() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = GraphBuilder::new("t", 17);
    b.input("x", &[-1, 4]);
    b.initializer("W", &[1 << 38, 4], TensorData::F32(vec![]));
    b.node("MatMul", &["W", "x"], &["y"], &[]);
    b.output("y");
    let p = write(dir.path(), "huge.onnx", &b.to_bytes());
    assert!(std::fs::metadata(&p).unwrap().len() < 1000);
    let out = run(&["bench", s(&p), "--steps", "1"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("huge.onnx") && err.contains("'W'") && err.contains("holds no data"), "{err}");
}

// ---- memory -------------------------------------------------------------

#[test]
fn twenty_million_empty_nodes_in_a_small_gzip_are_refused_before_decoding() {
    let dir = tempfile::tempdir().unwrap();
    let gz = gzip(&empty_nodes_model(20_000_000));
    assert!(gz.len() < 100_000, "the bomb is small: {} bytes", gz.len());
    let p = write(dir.path(), "nodes.onnx.gz", &gz);
    let e = adamp_graph::analyze_file(&p).unwrap_err().to_string();
    assert!(e.contains("nodes.onnx.gz") && e.contains("protobuf entries") && e.contains(&format!("{} bytes as stored", gz.len())), "{e}");
    // Uncompressed, two bytes an entry stay within two entries a byte: the
    // count is bounded by the file's size. The floor applies to every file.
    let limits = LoadLimits { entries_floor: 10, entries_per_byte: 0, ..LoadLimits::default() };
    let e = adamp_graph::onnx::load_model_bytes_with(empty_nodes_model(1000), &limits).map(drop).unwrap_err().to_string();
    assert!(e.contains("more than 10 protobuf entries"), "{e}");
    assert!(adamp_graph::onnx::load_model_bytes_with(empty_nodes_model(1000), &LoadLimits::default()).is_ok());
}

#[test]
fn inflating_stops_at_the_cap() {
    // A gzip of zeros is a bomb at any size; a small cap shows where it stops.
    let limits = LoadLimits { max_inflated_bytes: 1 << 20, ..LoadLimits::default() };
    let e = adamp_graph::onnx::load_model_bytes_with(gzip(&vec![0u8; 3 << 20]), &limits).unwrap_err().to_string();
    assert!(e.contains("inflates past 1048576 bytes"), "{e}");
    assert_eq!(LoadLimits::default().max_inflated_bytes, 2 << 30, "protobuf's 2 GiB message limit, not 8 GiB");
}

#[test]
fn a_parameter_without_data_is_refused_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = GraphBuilder::new("t", 17);
    b.input("x", &[-1]);
    b.initializer("W", &[1 << 27], TensorData::F32(vec![]));
    b.node("Mul", &["x", "W"], &["y"], &[]);
    b.output("y");
    let p = write(dir.path(), "nodata.onnx", &b.to_bytes());
    assert!(std::fs::metadata(&p).unwrap().len() < 200);
    let out_path = dir.path().join("step.onnx");
    for args in [
        vec!["analyze", s(&p)],
        vec!["plan", s(&p)],
        vec!["rewrite", s(&p), "--loss", "mse", "-o", s(&out_path)],
    ] {
        let out = run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = stderr(&out);
        assert!(err.contains("'W'") && err.contains("134217728 elements") && err.contains("holds no data"), "{args:?}: {err}");
    }
    assert!(!out_path.exists(), "no output written");
    // Fewer data entries than elements is refused as well.
    let mut b = GraphBuilder::new("t", 17);
    b.input("x", &[-1]);
    b.node("Constant", &[], &["c"], &[("value", Attr::Tensor(vec![1 << 20], TensorData::I64(vec![1])))]);
    b.node("Mul", &["x", "c"], &["y"], &[]);
    b.output("y");
    let e = adamp_graph::analyze_bytes(b.to_bytes()).unwrap_err().to_string();
    assert!(e.contains("1048576 elements") && e.contains("only 8 data entries"), "{e}");
}

// ---- files --------------------------------------------------------------

#[test]
fn no_output_replaces_an_input() {
    let dir = tempfile::tempdir().unwrap();
    let floats: Vec<u8> = (0..16).flat_map(|i| (i as f32).to_le_bytes()).collect();
    std::fs::write(dir.path().join("w.bin"), &floats).unwrap();
    let mut b = small_model();
    b.external_initializer("E", &[4, 4], "w.bin", 0, 64);
    b.node("MatMul", &["y", "E"], &["z"], &[]);
    b.output("z");
    let model = write(dir.path(), "m.onnx", &b.to_bytes());
    let before = std::fs::read(&model).unwrap();
    let link = dir.path().join("hardlink.onnx");
    std::fs::hard_link(&model, &link).unwrap();
    let plan = dir.path().join("plan.json");
    assert!(run(&["plan", s(&model), "-o", s(&plan)]).status.success());
    let plan_before = std::fs::read(&plan).unwrap();

    let data = dir.path().join("w.bin");
    let cases: Vec<Vec<&str>> = vec![
        vec!["plan", s(&model), "-o", s(&model)],
        vec!["plan", s(&model), "-o", s(&link)],
        vec!["plan", s(&model), "-o", "w.bin"],
        vec!["rewrite", s(&model), "--loss", "mse", "-o", s(&model)],
        vec!["rewrite", s(&model), "--loss", "mse", "-o", s(&link)],
        vec!["rewrite", s(&model), "--loss", "mse", "-o", s(&data)],
        vec!["rewrite", s(&model), "--loss", "mse", "--plan", s(&plan), "-o", s(&plan)],
    ];
    for args in &cases {
        let mut c = bin();
        let out = c.args(args).current_dir(dir.path()).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?} was accepted");
        let err = stderr(&out);
        assert!(err.contains("refusing to write") && err.contains("would overwrite the input"), "{args:?}: {err}");
    }
    assert_eq!(std::fs::read(&model).unwrap(), before, "model untouched");
    assert_eq!(std::fs::read(dir.path().join("w.bin")).unwrap(), floats, "external data untouched");
    assert_eq!(std::fs::read(&plan).unwrap(), plan_before, "plan untouched");
}

#[cfg(unix)]
#[test]
fn outputs_onto_devices_fifos_and_directories_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let model = write(dir.path(), "m.onnx", &small_model().to_bytes());
    let fifo = dir.path().join("fifo");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    // A null device of the test's own, never the system's /dev/null: a binary
    // without the check (as root) would replace whatever device it is given.
    let device = dir.path().join("null");
    let mut targets = vec![(s(&fifo).to_string(), "a FIFO"), (s(dir.path()).to_string(), "a directory")];
    if Command::new("mknod").arg(&device).args(["c", "1", "3"]).status().is_ok_and(|st| st.success()) {
        targets.push((s(&device).to_string(), "a device"));
    } else {
        // Without CAP_MKNOD no device can be made; CI runs as root and makes one.
        eprintln!("mknod not permitted: the device case runs where it is (CI)");
    }
    for (target, kind) in &targets {
        for cmd in ["plan", "rewrite"] {
            let mut args = vec![cmd, s(&model), "-o", target];
            if cmd == "rewrite" {
                args.extend(["--loss", "mse"]);
            }
            let out = run(&args);
            assert_eq!(out.status.code(), Some(2), "{args:?}");
            let err = stderr(&out);
            assert!(err.contains("refusing to write") && err.contains(kind), "{args:?}: {err}");
        }
    }
    if device.exists() {
        let meta = std::fs::symlink_metadata(&device).unwrap();
        assert!(std::os::unix::fs::FileTypeExt::is_char_device(&meta.file_type()), "the device is still a device");
    }
    assert!(std::os::unix::fs::FileTypeExt::is_fifo(&std::fs::symlink_metadata(&fifo).unwrap().file_type()));
}

#[cfg(unix)]
#[test]
fn temporary_names_are_unpredictable_and_planted_symlinks_never_followed() {
    let dir = tempfile::tempdir().unwrap();
    let victim = write(dir.path(), "victim.txt", b"precious");
    let out = dir.path().join("out.json");
    // The old scheme's name for this process, and names like it.
    for name in [format!(".out.json.tmp-{}", std::process::id()), ".out.json.tmp".into(), ".out.json.tmp-1".into()] {
        std::os::unix::fs::symlink(&victim, dir.path().join(name)).unwrap();
    }
    adamp_graph::onnx::write_atomic(&out, b"{}").unwrap();
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    assert_eq!(std::fs::read(&out).unwrap(), b"{}");
    // Nothing is left beside the output but what was there.
    let mut names: Vec<String> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert_eq!(names.len(), 5, "{names:?}");
    // A symlink at the output itself is replaced, not written through.
    let link_out = dir.path().join("link.json");
    std::os::unix::fs::symlink(&victim, &link_out).unwrap();
    adamp_graph::onnx::write_atomic(&link_out, b"[]").unwrap();
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    assert!(!std::fs::symlink_metadata(&link_out).unwrap().file_type().is_symlink());
}

#[test]
fn external_data_inside_a_tensors_attribute_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("w.bin"), vec![0u8; 64]).unwrap();
    let model = |location: &str| {
        let mut b = small_model();
        let ext = TensorData::External { location: location.into(), offset: 0, length: 64 };
        b.node_in_domain("custom", "Pack", &["y"], &["z"], &[("blobs", Attr::Tensors(vec![(vec![16], ext)]))]);
        b.output("z");
        b.to_bytes()
    };
    let e = adamp_graph::analyze_file(&write(dir.path(), "escape.onnx", &model("../../etc/passwd"))).unwrap_err().to_string();
    assert!(e.contains("escape.onnx") && e.contains("escapes the model's folder"), "{e}");
    // A valid reference is resolved into the tensor, so a rewrite output holds no reference.
    let ok = write(dir.path(), "ok.onnx", &model("w.bin"));
    let loaded = adamp_graph::onnx::load_model(&ok).unwrap();
    let inlined = loaded.encode().unwrap();
    assert!(!inlined.windows(5).any(|w| w == b"w.bin"), "no external reference survives the load");
    assert!(loaded.input_files().iter().any(|f| f.ends_with("w.bin")));
}

#[cfg(unix)]
#[test]
fn fifos_and_directories_as_inputs_fail_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("w.bin");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let mut b = small_model();
    b.external_initializer("E", &[4, 4], "w.bin", 0, 64);
    b.node("MatMul", &["y", "E"], &["z"], &[]);
    b.output("z");
    let model = write(dir.path(), "m.onnx", &b.to_bytes());
    let model_fifo = dir.path().join("model.onnx");
    assert!(Command::new("mkfifo").arg(&model_fifo).status().unwrap().success());
    let plan_fifo = dir.path().join("plan.json");
    assert!(Command::new("mkfifo").arg(&plan_fifo).status().unwrap().success());
    let plain = write(dir.path(), "plain.onnx", &small_model().to_bytes());
    // A hang would block the test: each check runs in a thread with a deadline.
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["analyze".into(), s(&model).into()], "'w.bin': is not a regular file"),
        (vec!["analyze".into(), s(&model_fifo).into()], "model.onnx: is not a regular file"),
        (vec!["analyze".into(), s(dir.path()).into()], "is a directory; give the path of a model file"),
        (vec!["rewrite".into(), s(&plain).into(), "--loss".into(), "mse".into(), "--plan".into(), s(&plan_fifo).into(), "-o".into(), s(&dir.path().join("o.onnx")).into()], "plan.json: is not a regular file"),
    ];
    for (args, want) in cases {
        let (tx, rx) = std::sync::mpsc::channel();
        let a = args.clone();
        std::thread::spawn(move || tx.send(bin().args(&a).output().unwrap()).unwrap());
        let out = rx.recv_timeout(std::time::Duration::from_secs(60)).unwrap_or_else(|_| panic!("{args:?} blocks"));
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = stderr(&out);
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(!err.contains("os error 19"), "{err}");
    }
}

// ---- terminal -----------------------------------------------------------

const HOSTILE: &str = "evil\u{1b}[2J\u{1b}]0;owned\u{7}\r\nforged  row\u{202e}txt.exe\u{0}";

#[test]
fn names_reach_tables_escaped_and_cannot_forge_rows() {
    use adamp_graph::cli::{render_analysis, render_plan, Format, PlanFormat};
    let a = adamp_graph::analyze_bytes(named_model(HOSTILE).to_bytes()).unwrap();
    let plan = adamp_graph::plan::build(&a, &adamp_graph::optim::Config::defaults(adamp_graph::optim::Algorithm::Adamp)).unwrap();
    for table in [render_analysis(&a, Format::Table), render_plan(&plan, PlanFormat::Table)] {
        assert!(!table.chars().any(|c| (c.is_control() && c != '\n') || ('\u{202a}'..='\u{202e}').contains(&c)), "{table:?}");
        assert!(table.contains("evil\\u{1b}[2J\\u{1b}]0;owned\\u{7}\\r\\nforged  row\\u{202e}txt.exe\\0"), "{table}");
        // header, rule, 3 rows, blank, summary: no forged line
        assert_eq!(table.lines().filter(|l| l.contains("forged")).count(), 1, "{table}");
    }
}

#[test]
fn names_reach_error_messages_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = GraphBuilder::new("t", 17);
    b.input("x", &[2]);
    b.node("Add", &["x", HOSTILE], &["y"], &[]);
    b.output("y");
    let p = write(dir.path(), "undef.onnx", &b.to_bytes());
    let out = run(&["analyze", s(&p)]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "one line: {err:?}");
    assert!(!err.trim_end().chars().any(|c| c.is_control() || c == '\u{202e}'), "{err:?}");
    assert!(err.contains("evil\\u{1b}[2J"), "{err}");
}

#[test]
fn torch_groups_are_valid_python_for_any_name() {
    use adamp_graph::cli::{render_plan, PlanFormat};
    let names = [HOSTILE, "quote\"and\\backslash", "tab\tand\u{85}next", "emoji 😀 日本", "trailing\\"];
    for name in names {
        let a = adamp_graph::analyze_bytes(named_model(name).to_bytes()).unwrap();
        let plan = adamp_graph::plan::build(&a, &adamp_graph::optim::Config::defaults(adamp_graph::optim::Algorithm::Adamp)).unwrap();
        let code = render_plan(&plan, PlanFormat::Torch);
        assert!(code.is_ascii(), "pure ASCII source");
        // The module compiles and GROUPS holds the names exactly.
        let check = "import sys, json\nns = {}\nexec(compile(sys.stdin.read(), 'plan.py', 'exec'), ns)\nprint(json.dumps(sorted(n for g in ns['GROUPS'] for n in g['names'])))";
        let mut child = Command::new(python())
            .args(["-c", check])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {} ({e}); set ADAMP_GRAPH_PYTHON", python()));
        std::io::Write::write_all(child.stdin.as_mut().unwrap(), code.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{name:?}: {}\n{code}", stderr(&out));
        let got: Vec<String> = serde_json::from_slice(&out.stdout).unwrap();
        let mut want = vec![name.to_string(), "g".into(), "beta".into()];
        want.sort();
        assert_eq!(got, want);
    }
}

// ---- messages -----------------------------------------------------------

#[test]
fn multi_member_gzip_loads() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = small_model().to_bytes();
    let (a, b) = bytes.split_at(bytes.len() / 2);
    let mut two = gzip(a);
    two.extend(gzip(b));
    let p = write(dir.path(), "two.onnx.gz", &two);
    let analysis = adamp_graph::analyze_file(&p).expect("both members are read");
    assert_eq!(analysis.param("W").unwrap().class.name(), "layer");
}

#[test]
fn bench_refuses_zero_steps() {
    let model = format!("{}/fixtures/zoo/bn1d_mlp.onnx", env!("CARGO_MANIFEST_DIR"));
    let out = run(&["bench", &model, "--steps", "0"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("--steps") && err.contains("at least one timed step"), "{err}");
}

#[test]
fn bench_prints_no_loader_noise_without_xdg_runtime_dir() {
    let model = format!("{}/fixtures/zoo/bn1d_mlp.onnx", env!("CARGO_MANIFEST_DIR"));
    for env in [None, Some(""), Some("relative/dir")] {
        let mut c = bin();
        c.args(["bench", &model, "--steps", "1", "--warmup", "0", "--format", "json"]);
        match env {
            None => c.env_remove("XDG_RUNTIME_DIR"),
            Some(v) => c.env("XDG_RUNTIME_DIR", v),
        };
        let out = c.output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(!stderr(&out).contains("XDG_RUNTIME_DIR"), "{env:?}: {}", stderr(&out));
    }
}

#[test]
fn table_mode_warnings_go_to_stderr() {
    let model = format!("{}/fixtures/zoo/bn1d_mlp_eval_bn_trap.onnx", env!("CARGO_MANIFEST_DIR"));
    let out = run(&["analyze", &model]);
    assert!(out.status.success());
    let (stdout, err) = (String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert!(!stdout.contains("warning"), "{stdout}");
    assert!(err.contains("warning [eval-batchnorm]"), "{err}");
    // JSON keeps them in the object, and standard error stays empty.
    let out = run(&["analyze", &model, "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(!v["warnings"].as_array().unwrap().is_empty());
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
}

// ---- rewrite size -------------------------------------------------------

#[test]
fn rewrite_of_a_long_chain_grows_by_a_few_nodes_per_node() {
    use adamp_graph::optim::{Algorithm, Config, Detect};
    use adamp_graph::rewrite::{rewrite, Loss, Options};
    let chain = 2_000;
    let mut b = GraphBuilder::new("t", 17);
    b.input("x", &[2, 4]);
    b.initializer("W", &[4, 4], TensorData::F32((0..16).map(|i| i as f32 * 0.1).collect()));
    b.node("MatMul", &["x", "W"], &["h0"], &[]);
    for i in 0..chain {
        b.node("Relu", &[&format!("h{i}")], &[&format!("h{}", i + 1)], &[]);
    }
    b.output(&format!("h{chain}"));
    let model = adamp_graph::onnx::load_model_bytes(b.to_bytes()).unwrap();
    let opts = Options { loss: Loss::Mse, config: Config::defaults(Algorithm::Adamp), detect: Detect::Auto, plan: None, gradients: false };
    let step = rewrite(&model, &opts).unwrap();
    let g = adamp_graph::ir::from_model(&step.model).unwrap();
    let count = |op: &str| g.nodes.iter().filter(|n| n.op_type == op).count();
    // Relu, and its gradient Greater + Where: the zero they compare with is one shared Constant.
    assert_eq!(count("Relu"), chain);
    assert_eq!(count("Where"), chain);
    assert!(count("Constant") < 40, "constants are shared, not one per node: {}", count("Constant"));
    assert!(g.nodes.len() < 3 * chain + 100, "{} nodes for a chain of {chain}", g.nodes.len());
}

#[test]
fn a_running_statistic_that_is_also_a_parameter_is_refused_by_the_rewrite() {
    // Found by the structure-aware fuzzer: `bn1.running_mean` also feeds a
    // Gemm as its bias, so the step graph defined `bn1.running_mean.new` twice.
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions/rewrite-buffer-also-a-parameter.onnx");
    let model = adamp_graph::onnx::load_model(&p).unwrap();
    let opts = adamp_graph::rewrite::Options {
        loss: adamp_graph::rewrite::Loss::Mse,
        config: adamp_graph::optim::Config::defaults(adamp_graph::optim::Algorithm::Adamp),
        detect: adamp_graph::optim::Detect::Auto,
        plan: None,
        gradients: false,
    };
    let e = adamp_graph::rewrite::rewrite(&model, &opts).map(drop).unwrap_err().to_string();
    assert!(e.contains("'bn1.running_mean' is a BatchNormalization running statistic") && e.contains("trainable"), "{e}");
}

#[test]
fn matmul_of_a_rank_0_input_is_an_error_in_the_rewrite() {
    // Found by the mutate fuzzer (a Div swapped for a MatMul of a scalar): the
    // gradient's index arithmetic underflowed.
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions/rewrite-matmul-rank-mismatch-1.onnx");
    let out = run(&["rewrite", s(&p), "--loss", "mse", "-o", s(&std::env::temp_dir().join("adamp-graph-never-written.onnx"))]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("node 'node_Div_1' (MatMul): an input has rank 0"), "{err}");
}
