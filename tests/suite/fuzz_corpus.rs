//! The fuzz smoke run CI does without AFL: the committed corpus and every
//! crash found so far (`fuzz/regressions/`) go through the same targets the
//! AFL binaries run (`fuzz/src/targets.rs`), plus a fixed set of
//! structure-aware mutations of the zoo. See docs/fuzzing.md.
use crate::common;
use std::path::{Path, PathBuf};

#[allow(dead_code)]
#[path = "../../fuzz/src/targets.rs"]
mod targets;

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.') || n == "README.md") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

#[test]
fn corpus_and_regressions_replay_through_every_target() {
    let seeds = targets::zoo_seeds(&common::fixtures());
    let mut replayed = 0;
    for dir in ["corpus/load", "corpus/analyze", "corpus/plan", "corpus/rewrite", "regressions"] {
        for p in files_under(&fuzz_dir().join(dir)) {
            let bytes = std::fs::read(&p).unwrap();
            // A panic names the input that caused it.
            let result = std::panic::catch_unwind(|| targets::all(&bytes));
            assert!(result.is_ok(), "{} panics", p.display());
            replayed += 1;
        }
    }
    for p in files_under(&fuzz_dir().join("corpus/mutate")) {
        let bytes = std::fs::read(&p).unwrap();
        check_mutation(&seeds, &bytes, &p.display().to_string());
        replayed += 1;
    }
    // The seeds themselves are the first inputs a run starts from.
    for s in &seeds {
        targets::all(s);
    }
    assert!(replayed > 0 || std::env::var_os("ADAMP_GRAPH_EMPTY_CORPUS").is_some(), "no corpus under {}", fuzz_dir().display());
}

#[test]
fn structure_aware_mutations_of_the_zoo_never_panic() {
    let seeds = targets::zoo_seeds(&common::fixtures());
    assert!(seeds.len() >= 10, "zoo seeds: {}", seeds.len());
    // A fixed pseudo-random sample of mutation scripts (xorshift), the same on every run.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for case in 0..300 {
        let script: Vec<u8> = (0..48)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            })
            .collect();
        check_mutation(&seeds, &script, &format!("mutation script {case}"));
    }
}

/// Runs one mutation; on a panic, the mutated model is saved where the
/// message says, ready to become a file in `fuzz/regressions/`.
fn check_mutation(seeds: &[Vec<u8>], script: &[u8], what: &str) {
    let Some(model) = targets::mutated(seeds, script) else { return };
    if std::panic::catch_unwind(|| targets::all(&model)).is_err() {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz-failures");
        std::fs::create_dir_all(&dir).unwrap();
        let saved = dir.join(format!("{}.onnx", what.replace(['/', ' '], "_")));
        std::fs::write(&saved, &model).unwrap();
        panic!("{what} panics; the mutated model is {}", saved.display());
    }
}

