//! `analyze --format json` for every zoo model, pinned with insta.
use crate::common;

use adamp_graph::cli::{render_analysis, Format};

#[test]
fn analyze_json_per_zoo_model() {
    for (name, model, _) in common::zoo() {
        let analysis = adamp_graph::analyze_file(&model).unwrap_or_else(|e| panic!("{name}: {e}"));
        let json = render_analysis(&analysis, Format::Json);
        let parsed: serde_json::Value = serde_json::from_str(&json).expect("one JSON object");
        assert!(parsed.is_object());
        insta::assert_snapshot!(format!("analyze_{name}"), json);
    }
}

#[test]
fn analyze_table_resnet18() {
    let analysis = adamp_graph::analyze_file(&common::fixtures().join("zoo/resnet18.onnx.gz")).unwrap();
    insta::assert_snapshot!(render_analysis(&analysis, Format::Table));
}

#[test]
fn plan_outputs() {
    use adamp_graph::cli::{render_plan, PlanFormat};
    use adamp_graph::optim::{Algorithm, Config, SgdpConfig};
    use adamp_graph::plan::build;
    let zoo = common::fixtures().join("zoo");
    let bn = adamp_graph::analyze_file(&zoo.join("bn1d_mlp.onnx")).unwrap();
    let adamp = build(&bn, &Config::defaults(Algorithm::Adamp)).unwrap();
    insta::assert_snapshot!("plan_bn1d_mlp_adamp_json", render_plan(&adamp, PlanFormat::Json));
    let sgdp_hp = Config::Sgdp(SgdpConfig { momentum: 0.9, weight_decay: 1e-4, ..SgdpConfig::default() });
    let sgdp = build(&bn, &sgdp_hp).unwrap();
    insta::assert_snapshot!("plan_bn1d_mlp_sgdp_torch", render_plan(&sgdp, PlanFormat::Torch));
    let r18 = adamp_graph::analyze_file(&zoo.join("resnet18.onnx.gz")).unwrap();
    let plan = build(&r18, &Config::defaults(Algorithm::Adamp)).unwrap();
    insta::assert_snapshot!("plan_resnet18_table", render_plan(&plan, PlanFormat::Table));
    // The JSON plan reads back as the same plan.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("plan.json");
    std::fs::write(&p, render_plan(&plan, PlanFormat::Json)).unwrap();
    assert_eq!(adamp_graph::plan::read(&p).unwrap(), plan);
    assert_eq!(plan.totals.state_bytes, 2 * 4 * plan.totals.elements);
}
