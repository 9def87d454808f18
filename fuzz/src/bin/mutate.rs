//! AFL target: structure-aware mutations of the small zoo models.
//!
//! `ADAMP_GRAPH_FUZZ_SAVE=model.onnx mutate < crash` writes the mutated model
//! a crash input makes instead of fuzzing: that model, not the script, goes
//! into `fuzz/regressions/` (a script means another model once the zoo changes).
#[allow(dead_code)]
#[path = "../targets.rs"]
mod targets;

fn main() {
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures");
    let seeds = targets::zoo_seeds(&fixtures);
    assert!(!seeds.is_empty(), "no seed models under {}", fixtures.display());
    if let Some(save) = std::env::var_os("ADAMP_GRAPH_FUZZ_SAVE") {
        let mut script = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut script).expect("reading the script from standard input");
        let model = targets::mutated(&seeds, &script).expect("the script picks no seed");
        std::fs::write(&save, model).expect("writing the mutated model");
        return;
    }
    afl::fuzz!(|data: &[u8]| targets::mutate(&seeds, data));
}
