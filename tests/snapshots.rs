//! `analyze --format json` for every zoo model, pinned with insta.
mod common;

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
