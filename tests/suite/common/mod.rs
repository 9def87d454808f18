//! Helpers shared by the integration tests.
#![allow(dead_code)]
pub mod py;
pub mod random;

use std::path::{Path, PathBuf};

/// The repository's fixtures folder.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// Zoo models with their ground truth: (name, model path, truth path).
pub fn zoo() -> Vec<(String, PathBuf, PathBuf)> {
    let dir = fixtures().join("zoo");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("fixtures/zoo exists") {
        let path = entry.expect("readable entry").path();
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let Some(name) = file.strip_suffix(".truth.json") else { continue };
        let plain = dir.join(format!("{name}.onnx"));
        let model = if plain.exists() { plain } else { dir.join(format!("{name}.onnx.gz")) };
        assert!(model.exists(), "no model for truth file {file}");
        out.push((name.to_string(), model, path));
    }
    out.sort();
    assert!(out.len() >= 12, "the zoo must hold at least 12 models, found {}", out.len());
    out
}
