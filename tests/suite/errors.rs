//! Bad input: a clear error naming the file and the problem, never a panic.
use adamp_graph::onnx::{Attr, GraphBuilder, TensorData};
use std::path::Path;

fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn err_of(path: &Path) -> String {
    match adamp_graph::analyze_file(path) {
        Ok(_) => panic!("{} loaded, expected an error", path.display()),
        Err(e) => e.to_string(),
    }
}

fn small_model() -> GraphBuilder {
    let mut b = GraphBuilder::new("t", 17);
    b.input("x", &[-1, 4]);
    b.initializer("W", &[4, 4], TensorData::Zeros);
    b.node("MatMul", &["x", "W"], &["y"], &[]);
    b.output("y");
    b
}

#[test]
fn missing_and_empty_files() {
    let dir = tempfile::tempdir().unwrap();
    let e = err_of(&dir.path().join("nope.onnx"));
    assert!(e.contains("nope.onnx") && e.contains("cannot read"), "{e}");
    let e = err_of(&write(dir.path(), "empty.onnx", b""));
    assert!(e.contains("empty.onnx") && e.contains("empty"), "{e}");
}

#[test]
fn truncated_and_corrupt_protobuf() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = small_model().to_bytes();
    for cut in [1, bytes.len() / 3, bytes.len() / 2, bytes.len() - 1] {
        let p = write(dir.path(), "cut.onnx", &bytes[..cut]);
        let e = err_of(&p);
        assert!(e.contains("cut.onnx"), "{e}");
    }
    let p = write(dir.path(), "garbage.onnx", &[0xff; 64]);
    assert!(err_of(&p).contains("not a valid ONNX model"));
    // A truncated gzip stream is reported as such.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &bytes).unwrap();
    let gz = gz.finish().unwrap();
    let p = write(dir.path(), "cut.onnx.gz", &gz[..gz.len() / 2]);
    let e = err_of(&p);
    assert!(e.contains("cut.onnx.gz") && e.contains("gzip"), "{e}");
}

#[test]
fn every_prefix_and_byte_flip_is_an_error_or_a_model_never_a_panic() {
    let bytes = small_model().to_bytes();
    for cut in 0..bytes.len() {
        let _ = adamp_graph::analyze_bytes(bytes[..cut].to_vec());
    }
    for i in 0..bytes.len() {
        for flip in [0x01u8, 0x80, 0xff] {
            let mut b = bytes.clone();
            b[i] ^= flip;
            let _ = adamp_graph::analyze_bytes(b);
        }
    }
}

#[test]
fn empty_graph() {
    let dir = tempfile::tempdir().unwrap();
    let b = GraphBuilder::new("t", 17);
    let e = err_of(&write(dir.path(), "nograph.onnx", &b.to_bytes()));
    assert!(e.contains("nograph.onnx") && e.contains("empty graph"), "{e}");
}

#[test]
fn cycles_and_undefined_values() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = GraphBuilder::new("t", 17);
    b.input("x", &[2]);
    b.node("Add", &["x", "b"], &["a"], &[]);
    b.node("Relu", &["a"], &["b"], &[]);
    b.output("b");
    let e = err_of(&write(dir.path(), "cycle.onnx", &b.to_bytes()));
    assert!(e.contains("cycle.onnx") && e.contains("cycle"), "{e}");

    let mut b = GraphBuilder::new("t", 17);
    b.input("x", &[2]);
    b.node("Add", &["x", "ghost"], &["y"], &[]);
    b.output("y");
    let e = err_of(&write(dir.path(), "undef.onnx", &b.to_bytes()));
    assert!(e.contains("ghost") && e.contains("Add_0"), "{e}");

    let mut b = GraphBuilder::new("t", 17);
    b.input("x", &[2]);
    b.node("Relu", &["x"], &["y"], &[]);
    b.node("Relu", &["x"], &["y"], &[]);
    b.output("y");
    let e = err_of(&write(dir.path(), "twice.onnx", &b.to_bytes()));
    assert!(e.contains("defined twice") && e.contains("'y'"), "{e}");
}

#[test]
fn hostile_dims() {
    let dir = tempfile::tempdir().unwrap();
    // dims whose product overflows: rejected before any allocation
    let mut b = GraphBuilder::new("t", 17);
    b.input("x", &[-1, 4]);
    b.initializer("W", &[1 << 40, 1 << 40], TensorData::F32(vec![]));
    b.node("MatMul", &["x", "W"], &["y"], &[]);
    b.output("y");
    let e = err_of(&write(dir.path(), "huge.onnx", &b.to_bytes()));
    assert!(e.contains("huge.onnx") && e.contains("'W'") && e.contains("overflow"), "{e}");

    let mut b = GraphBuilder::new("t", 17);
    b.input("x", &[-1, 4]);
    b.initializer("W", &[4, -3], TensorData::F32(vec![]));
    b.node("MatMul", &["x", "W"], &["y"], &[]);
    b.output("y");
    let e = err_of(&write(dir.path(), "neg.onnx", &b.to_bytes()));
    assert!(e.contains("negative dimension"), "{e}");

    // data that does not match the dims
    let mut b = GraphBuilder::new("t", 17);
    b.input("x", &[-1, 4]);
    b.initializer("W", &[4, 4], TensorData::F32(vec![1.0; 3]));
    b.node("MatMul", &["x", "W"], &["y"], &[]);
    b.output("y");
    let e = err_of(&write(dir.path(), "short.onnx", &b.to_bytes()));
    assert!(e.contains("'W'") && e.contains("12 bytes"), "{e}");

    // A reshape to absurd sizes is only shape arithmetic: no error, no allocation.
    let mut b = GraphBuilder::new("t", 17);
    b.input("x", &[-1, 4]);
    b.initializer("s", &[3], TensorData::I64(vec![i64::MAX, i64::MAX, 2]));
    b.initializer("W", &[4, 4], TensorData::Zeros);
    b.node("MatMul", &["x", "W"], &["h"], &[]);
    b.node("Reshape", &["h", "s"], &["y"], &[]);
    b.output("y");
    adamp_graph::analyze_bytes(b.to_bytes()).expect("analysis survives absurd reshape targets");
}

#[test]
fn external_data_resolves_and_refuses_escapes() {
    let dir = tempfile::tempdir().unwrap();
    let floats: Vec<u8> = (0..16).flat_map(|i| (i as f32).to_le_bytes()).collect();
    let mut data = vec![0u8; 8];
    data.extend(&floats);
    std::fs::write(dir.path().join("weights.bin"), &data).unwrap();

    let model = |location: &str, offset: u64, length: u64| {
        let mut b = GraphBuilder::new("t", 17);
        b.input("x", &[-1, 4]);
        b.external_initializer("W", &[4, 4], location, offset, length);
        b.initializer("g", &[4], TensorData::Zeros);
        b.initializer("beta", &[4], TensorData::Zeros);
        b.node("MatMul", &["x", "W"], &["h"], &[]);
        b.node("LayerNormalization", &["h", "g", "beta"], &["y"], &[("axis", Attr::Int(-1))]);
        b.output("y");
        b.to_bytes()
    };
    let ok = write(dir.path(), "ok.onnx", &model("weights.bin", 8, 64));
    let before = std::fs::read(&ok).unwrap();
    let a = adamp_graph::analyze_file(&ok).expect("external data loads");
    assert_eq!(a.param("W").unwrap().class.name(), "layer");
    assert_eq!(std::fs::read(&ok).unwrap(), before, "input file untouched");
    let g = adamp_graph::load_graph(&ok).unwrap();
    let t = g.initializer_of(g.value_by_name("W").unwrap()).unwrap();
    assert_eq!(&t.data[..], &floats[..], "external bytes are the tensor's");

    let e = err_of(&write(dir.path(), "missing.onnx", &model("nothere.bin", 0, 64)));
    assert!(e.contains("missing.onnx") && e.contains("'W'") && e.contains("nothere.bin"), "{e}");
    let e = err_of(&write(dir.path(), "escape.onnx", &model("../weights.bin", 0, 64)));
    assert!(e.contains("escapes"), "{e}");
    let e = err_of(&write(dir.path(), "abs.onnx", &model("/etc/passwd", 0, 64)));
    assert!(e.contains("relative"), "{e}");
    let e = err_of(&write(dir.path(), "range.onnx", &model("weights.bin", 40, 64)));
    assert!(e.contains("holds 72 bytes"), "{e}");
    let e = err_of(&write(dir.path(), "wrap.onnx", &model("weights.bin", u64::MAX, 2)));
    assert!(e.contains("overflow"), "{e}");
    #[cfg(unix)]
    {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret.bin"), &data).unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret.bin"), dir.path().join("link.bin")).unwrap();
        let e = err_of(&write(dir.path(), "link.onnx", &model("link.bin", 8, 64)));
        assert!(e.contains("outside the model's folder"), "{e}");
    }
}

#[test]
fn external_data_beyond_4_gib_offsets() {
    // A sparse 5 GiB data file: the tensor sits past 2^32, as in models over 2 GiB.
    let dir = tempfile::tempdir().unwrap();
    let offset: u64 = 5 << 30;
    let floats: Vec<u8> = (0..16).flat_map(|i| (i as f32 * 0.5).to_le_bytes()).collect();
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::File::create(dir.path().join("big.bin")).unwrap();
        f.set_len(offset + 64).unwrap();
        f.seek(SeekFrom::Start(offset)).unwrap();
        f.write_all(&floats).unwrap();
    }
    let mut b = GraphBuilder::new("t", 17);
    b.input("x", &[-1, 4]);
    b.external_initializer("W", &[4, 4], "big.bin", offset, 64);
    b.node("MatMul", &["x", "W"], &["y"], &[]);
    b.output("y");
    let p = write(dir.path(), "big.onnx", &b.to_bytes());
    let g = adamp_graph::load_graph(&p).expect("offsets past 4 GiB load");
    let t = g.initializer_of(g.value_by_name("W").unwrap()).unwrap();
    assert_eq!(&t.data[..], &floats[..]);
}

#[test]
fn decode_encode_round_trip() {
    let zoo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/zoo");
    let dir = tempfile::tempdir().unwrap();
    for name in ["resnet18.onnx.gz", "layernorm_mlp_op11.onnx", "helper_native_norms.onnx"] {
        let model = adamp_graph::onnx::load_model(&zoo.join(name)).unwrap();
        let bytes = model.encode().unwrap();
        let out = dir.path().join("copy.onnx");
        model.save(&out).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), bytes);
        let again = adamp_graph::onnx::load_model(&out).unwrap();
        assert_eq!(again.encode().unwrap(), bytes, "{name}: encode(decode(encode(m))) differs");
        let (a, b) = (adamp_graph::analyze_file(&zoo.join(name)).unwrap(), adamp_graph::analyze_file(&out).unwrap());
        assert_eq!(serde_json::to_value(&a.parameters).unwrap(), serde_json::to_value(&b.parameters).unwrap());
    }
    // External data is inlined on encode.
    let floats: Vec<u8> = (0..16).flat_map(|i| (i as f32).to_le_bytes()).collect();
    std::fs::write(dir.path().join("w.bin"), &floats).unwrap();
    let mut b = GraphBuilder::new("t", 17);
    b.input("x", &[-1, 4]);
    b.external_initializer("W", &[4, 4], "w.bin", 0, 64);
    b.node("MatMul", &["x", "W"], &["y"], &[]);
    b.output("y");
    let p = write(dir.path(), "ext.onnx", &b.to_bytes());
    let inlined = adamp_graph::onnx::load_model(&p).unwrap().encode().unwrap();
    let g = adamp_graph::ir::from_model(&adamp_graph::onnx::load_model_bytes(inlined).unwrap()).unwrap();
    assert_eq!(&g.initializer_of(g.value_by_name("W").unwrap()).unwrap().data[..], &floats[..]);
}

#[test]
fn cli_reports_errors_with_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "bad.onnx", b"\x0a\xff\xff\xff\xff\x0f");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_adamp-graph")).arg("analyze").arg(&p).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.onnx") && err.starts_with("error:"), "{err}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_adamp-graph"))
        .args(["plan", "x.onnx", "--optimizer", "adamp", "--momentum", "0.9"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--momentum") && err.contains("SGD-family option") && err.contains("adamp takes --betas"), "{err}");
}
