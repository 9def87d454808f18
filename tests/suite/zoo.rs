//! Scores the analysis of every zoo model against measured ground truth
//! (`scripts/gen_zoo.py` scales each parameter in float64 and compares outputs).
//!
//! - Zero false positives: every channel/layer/dead/joint claim must hold in the truth.
//! - Recall ≥ 99% over the zoo: every parameter the truth finds dead, channel-wise
//!   (some axis) or layer-wise must get that class (and one of the true axes).
use crate::common;

use adamp_graph::analysis::ScaleClass;
use serde_json::Value;

#[derive(Default)]
struct Score {
    expected: usize,
    correct: usize,
    joint_expected: usize,
    joint_found: usize,
    misses: Vec<String>,
    false_positives: Vec<String>,
}

fn truth_claims(t: &Value) -> (Vec<u64>, bool, bool) {
    let axes = t["channel_axes"].as_array().map(|a| a.iter().filter_map(Value::as_u64).collect()).unwrap_or_default();
    (axes, t["layer"].as_bool().unwrap_or(false), t["dead"].as_bool().unwrap_or(false))
}

fn score_model(name: &str, model: &std::path::Path, truth_path: &std::path::Path, score: &mut Score) {
    let truth: Value = serde_json::from_str(&std::fs::read_to_string(truth_path).unwrap()).unwrap();
    let analysis = adamp_graph::analyze_file(model).unwrap_or_else(|e| panic!("{name}: {e}"));
    let params = truth["params"].as_object().expect("params");
    let checked = truth["groups_checked"].as_object().cloned().unwrap_or_default();
    for p in &analysis.parameters {
        let Some(t) = params.get(&p.name) else { continue };
        let (axes, layer, dead) = truth_claims(t);
        let ok = match &p.class {
            ScaleClass::Channel { axis } => axes.contains(&(*axis as u64)),
            ScaleClass::Layer => layer,
            ScaleClass::Dead => dead,
            ScaleClass::Joint { group } => {
                let key = group.join(",");
                checked.get(&key).and_then(Value::as_bool).unwrap_or(false)
                    || t["joint"].as_array().is_some_and(|gs| gs.iter().any(|g| g.as_array().is_some_and(|g| g.iter().filter_map(Value::as_str).eq(group.iter().map(String::as_str)))))
            }
            ScaleClass::None | ScaleClass::Unknown => true,
        };
        if !ok {
            score.false_positives.push(format!("{name}: {} claimed {:?}, truth {t}", p.name, p.class));
        }
    }
    for (pname, t) in params {
        let (axes, layer, dead) = truth_claims(t);
        if !(dead || layer || !axes.is_empty()) {
            // Only jointly invariant: the analysis should find a (verified) group.
            if t["joint"].as_array().is_some_and(|g| !g.is_empty()) {
                score.joint_expected += 1;
                if matches!(analysis.param(pname).map(|p| &p.class), Some(ScaleClass::Joint { .. })) {
                    score.joint_found += 1;
                } else {
                    score.misses.push(format!("{name}: {pname} is only jointly invariant, got {:?}", analysis.param(pname).map(|p| &p.class)));
                }
            }
            continue;
        }
        score.expected += 1;
        let got = analysis.param(pname).map(|p| p.class.clone());
        let right = match &got {
            Some(ScaleClass::Dead) => dead,
            Some(ScaleClass::Channel { axis }) => !dead && axes.contains(&(*axis as u64)),
            Some(ScaleClass::Layer) => !dead && axes.is_empty() && layer,
            _ => false,
        };
        if right {
            score.correct += 1;
        } else {
            score.misses.push(format!("{name}: {pname} got {got:?}, truth {t}"));
        }
    }
}

#[test]
fn zoo_matches_ground_truth() {
    let mut score = Score::default();
    for (name, model, truth) in common::zoo() {
        score_model(&name, &model, &truth, &mut score);
    }
    eprintln!(
        "zoo: {} invariant parameters in the truth, {} found with the right class and axis; {} only jointly invariant, {} found in a joint group",
        score.expected, score.correct, score.joint_expected, score.joint_found
    );
    assert!(score.false_positives.is_empty(), "false positives:\n{}", score.false_positives.join("\n"));
    let recall = score.correct as f64 / score.expected.max(1) as f64;
    assert!(score.expected > 200, "too few invariant parameters in the zoo: {}", score.expected);
    assert!(recall >= 0.99, "recall {recall:.4} ({} of {}); misses:\n{}", score.correct, score.expected, score.misses.join("\n"));
    let joint_recall = score.joint_found as f64 / score.joint_expected.max(1) as f64;
    assert!(joint_recall >= 0.99, "joint recall {joint_recall:.4}; misses:\n{}", score.misses.join("\n"));
    let undeclared = adamp_graph::ops::undeclared_reads();
    assert!(undeclared.is_empty(), "rules read attributes their ops do not declare: {undeclared:?}");
}

#[test]
fn paper_fractions_for_resnets() {
    let zoo = common::fixtures().join("zoo");
    let r18 = adamp_graph::analyze_file(&zoo.join("resnet18.onnx.gz")).unwrap();
    let r50 = adamp_graph::analyze_file(&zoo.join("resnet50.onnx.gz")).unwrap();
    assert_eq!(format!("{:.1}", 100.0 * r18.summary.fraction_scale_invariant), "95.5");
    assert_eq!(format!("{:.1}", 100.0 * r50.summary.fraction_scale_invariant), "91.8");
}

#[test]
fn eval_mode_exports_warn_and_claim_nothing_before_batchnorm() {
    let zoo = common::fixtures().join("zoo");
    for (file, code) in [
        ("resnet18_eval_trap.onnx.gz", "folded-normalization"),
        ("resnet18_dynamo_trap.onnx.gz", "folded-normalization"),
        ("bn1d_mlp_eval_bn_trap.onnx", "eval-batchnorm"),
    ] {
        let a = adamp_graph::analyze_file(&zoo.join(file)).unwrap();
        let w = a.warnings.iter().find(|w| w.code == code).unwrap_or_else(|| panic!("{file}: no {code} warning: {:?}", a.warnings));
        assert!(w.message.contains("training=torch.onnx.TrainingMode.TRAINING"), "{file}: warning lacks the recipe");
        assert_eq!(a.summary.elements_scale_invariant, 0, "{file}: claims invariance without live normalization");
    }
}
