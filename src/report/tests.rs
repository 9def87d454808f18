//! Report tests: the parsed logs, the series (an insta snapshot of the data,
//! not of pixels), the rendered documents and the errors.
use super::*;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/report").join(name)
}

fn fixture_runs() -> Vec<Run> {
    ["adamp.jsonl", "adamw.jsonl"].iter().map(|n| read_run(&fixture(n)).expect("fixture log parses")).collect()
}

/// Sources relative to the fixtures folder, so the snapshot holds no machine path.
fn relative(mut runs: Vec<Run>) -> Vec<Run> {
    for r in &mut runs {
        r.source = Path::new(&r.source).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    }
    runs
}

fn parse(text: &str) -> Result<Run, ReportError> {
    parse_run(Path::new("log.jsonl"), text)
}

fn line_error(text: &str) -> (usize, String) {
    match parse(text) {
        Err(ReportError::Line { line, detail, .. }) => (line, detail),
        other => panic!("expected a line error, got {other:?}"),
    }
}

#[test]
fn fixture_series_snapshot() {
    let data = series(&relative(fixture_runs()), 2);
    insta::assert_json_snapshot!("fixture_series", data);
}

#[test]
fn fixtures_parse_every_kind_of_record() {
    let runs = fixture_runs();
    let [adamp, adamw] = runs.as_slice() else { panic!("two runs") };
    assert_eq!(adamp.header.label.as_deref(), Some("adamp"));
    assert_eq!(adamw.header.optimizer.as_deref(), Some("adamw"));
    assert_eq!(adamp.steps.len(), 24);
    assert_eq!(adamp.evals.iter().map(|e| e.step).collect::<Vec<_>>(), vec![12, 24]);
    assert_eq!(adamp.metrics.len(), 7);
    assert_eq!(adamp.skipped_lines, 0);
    // adamw.jsonl has two checkpoint lines (a kind this reader does not know) and an unknown key.
    assert_eq!(adamw.skipped_lines, 2);
    assert_eq!(adamw.steps.len(), 24);
    let conv3 = &adamw.metrics[0].tensors["conv3.weight"];
    assert_eq!(conv3.projected_fraction, None);
    assert_eq!(adamp.metrics[0].tensors["conv3.weight"].projected_fraction, Some(0.51));
}

#[test]
fn norm_ratio_mean_and_finals_are_computed_from_the_records() {
    let text = r#"{"run": {"optimizer": "sgdp"}}
{"step": 1, "epoch": 1, "loss": 4.0, "lr": 0.1}
{"step": 1, "metrics": {"a": {"norm": 2.0, "effective_step": 0.5}, "b": {"norm": 10.0, "effective_step": 0.1, "projected_fraction": 1.0}}}
{"step": 2, "epoch": 1, "loss": 3.0, "lr": 0.1}
{"step": 2, "metrics": {"a": {"norm": 3.0, "effective_step": 0.25}, "b": {"norm": 11.0, "effective_step": 0.3, "projected_fraction": 0.5}}}
{"epoch": 1, "step": 2, "val_loss": 3.5, "val_accuracy": 0.25}
"#;
    let run = parse(text).unwrap();
    assert_eq!(run.label(), "sgdp");
    let data = series(std::slice::from_ref(&run), 1);
    let r = &data.runs[0];
    assert_eq!(r.loss, vec![(1, 4.0), (2, 3.0)]);
    assert_eq!(r.norm_ratio_mean, vec![(1, 1.0), (2, (1.5 + 1.1) / 2.0)]);
    assert_eq!(r.effective_step_mean, vec![(1, 0.3), (2, 0.275)]);
    // a grows by 1.5, b by 1.1: a is the top tensor.
    assert_eq!(data.top_tensors, vec!["a".to_string()]);
    assert_eq!(r.top_norm_ratio.len(), 1);
    assert_eq!(r.top_norm_ratio[0].points, vec![(1, 1.0), (2, 1.5)]);
    assert_eq!(r.finals.loss, Some(3.0));
    assert_eq!(r.finals.val_accuracy, Some(0.25));
    assert_eq!(r.finals.step, Some(2));
    assert_eq!(r.finals.projected_fraction_mean, Some(0.5));
    assert_eq!(r.accuracy, Vec::<Point>::new());
}

#[test]
fn top_tensors_are_chosen_over_all_runs() {
    let a = parse("{\"step\": 1, \"metrics\": {\"x\": {\"norm\": 1.0}, \"y\": {\"norm\": 1.0}}}\n{\"step\": 2, \"metrics\": {\"x\": {\"norm\": 1.2}, \"y\": {\"norm\": 1.1}}}").unwrap();
    let b = parse("{\"step\": 1, \"metrics\": {\"x\": {\"norm\": 1.0}, \"y\": {\"norm\": 1.0}}}\n{\"step\": 2, \"metrics\": {\"x\": {\"norm\": 1.0}, \"y\": {\"norm\": 3.0}}}").unwrap();
    let data = series(&[a, b], 1);
    assert_eq!(data.top_tensors, vec!["y".to_string()]);
    assert!(data.runs.iter().all(|r| r.top_norm_ratio.len() == 1 && r.top_norm_ratio[0].name == "y"));
    assert_eq!(series(&fixture_runs(), 0).top_tensors, Vec::<String>::new());
}

#[test]
fn a_resumed_log_replaces_the_steps_after_its_checkpoint() {
    let text = "{\"step\": 1, \"loss\": 5.0}\n{\"step\": 2, \"loss\": 4.0}\n{\"step\": 3, \"loss\": 3.0}\n\
                {\"run\": {\"label\": \"again\"}}\n{\"step\": 3, \"loss\": 2.5}\n{\"step\": 4, \"loss\": 2.0}\n";
    let run = parse(text).unwrap();
    assert_eq!(run.steps.iter().map(|s| (s.step, s.loss)).collect::<Vec<_>>(), vec![(1, Some(5.0)), (2, Some(4.0)), (3, Some(2.5)), (4, Some(2.0))]);
    // A header after records names nothing: the run keeps its file stem.
    assert_eq!(run.label(), "log");
}

#[test]
fn runs_with_the_same_label_are_told_apart_by_their_file() {
    let text = "{\"run\": {\"optimizer\": \"adamp\"}}\n{\"step\": 1, \"loss\": 1.0}\n";
    let a = parse_run(Path::new("runs/lr-0.01.jsonl"), text).unwrap();
    let b = parse_run(Path::new("runs/lr-0.1.jsonl"), text).unwrap();
    let c = parse_run(Path::new("runs/sgd.jsonl"), "{\"step\": 1, \"loss\": 1.0}\n").unwrap();
    let labels: Vec<String> = series(&[a, b, c], 1).runs.into_iter().map(|r| r.label).collect();
    assert_eq!(labels, vec!["adamp (lr-0.01.jsonl)", "adamp (lr-0.1.jsonl)", "sgd"]);
}

#[test]
fn a_line_may_hold_a_step_and_its_metrics() {
    let run = parse("{\"step\": 3, \"epoch\": 1, \"loss\": 0.5, \"metrics\": {\"w\": {\"norm\": 2.0}}}\n").unwrap();
    assert_eq!(run.steps.len(), 1);
    assert_eq!(run.steps[0].loss, Some(0.5));
    assert_eq!(run.metrics.len(), 1);
    assert_eq!(run.metrics[0].tensors["w"].norm, Some(2.0));
    assert!(run.evals.is_empty());
    assert_eq!(line_error("{\"loss\": 0.5}\n").1, "the record has no \"step\"");
}

#[test]
fn null_values_are_gaps_not_points() {
    let run = parse("{\"step\": 1, \"loss\": null}\n{\"step\": 2, \"loss\": 1.0, \"accuracy\": null}\n").unwrap();
    let data = series(&[run], 3);
    assert_eq!(data.runs[0].loss, vec![(2, 1.0)]);
    assert!(data.runs[0].accuracy.is_empty());
}

#[test]
fn bad_lines_name_the_file_and_line() {
    let err = parse("{\"step\": 1, \"loss\": 1.0}\n\n{\"step\": 2, \"loss\": 1.0\n").unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("log.jsonl:3: not JSON"), "{text}");
    assert_eq!(line_error("[1, 2]\n").1, "expected a JSON object, found an array");
    assert_eq!(line_error("{\"step\": 1, \"loss\": \"low\"}\n"), (1, "\"loss\" must be a number, found a string".into()));
    assert_eq!(line_error("{\"step\": 0, \"loss\": 1.0}\n").1, "\"step\" must be an integer of at least 1, found 0");
    assert_eq!(line_error("{\"step\": 1.5, \"loss\": 1.0}\n").1, "\"step\" must be an integer of at least 1, found 1.5");
    assert_eq!(line_error("{\"step\": 1, \"loss\": 1}\n{\"metrics\": {}}\n"), (2, "the record has no \"step\"".into()));
    assert_eq!(line_error("{\"step\": 1, \"metrics\": [1]}\n").1, "\"metrics\" must be an object of tensors, found an array");
    assert_eq!(
        line_error("{\"step\": 1, \"metrics\": {\"w\": {\"norm\": \"big\"}}}\n").1,
        "\"norm\" of tensor 'w' must be a number, found a string"
    );
    assert_eq!(line_error("{\"run\": {\"label\": 3}}\n").1, "\"run\".\"label\" must be a string, found a number");
    assert_eq!(line_error("{\"run\": []}\n").1, "\"run\" must be an object, found an array");
    assert_eq!(line_error("{\"epoch\": 1, \"val_loss\": 1.0}\n").1, "the record has no \"step\"");
}

#[test]
fn a_log_without_records_is_an_error() {
    for text in ["", "{\"run\": {\"label\": \"x\"}}\n", "{\"something\": 1}\n"] {
        let err = parse(text).unwrap_err();
        assert!(matches!(err, ReportError::Empty { .. }), "{err:?}");
        assert!(err.to_string().starts_with("log.jsonl: no training records"), "{err}");
    }
}

#[test]
fn svg_draws_every_run_and_panel() {
    let data = series(&relative(fixture_runs()), 2);
    let svg = render_svg(&data).unwrap();
    assert!(svg.starts_with("<svg"), "{}", &svg[..60.min(svg.len())]);
    for text in [
        "Training report: adamp vs adamw",
        "adamp train",
        "adamw validation",
        "adamp (mean of 3 tensors)",
        "Weight norm growth",
        "Effective step",
        "step",
    ] {
        assert!(svg.contains(text), "SVG lacks {text:?}");
    }
    // Each run's colour is used (Okabe-Ito blue and vermillion).
    assert!(svg.contains("#0072B2") && svg.contains("#D55E00"), "run colours missing");
}

#[test]
fn panels_without_data_say_so() {
    let run = parse("{\"run\": {\"label\": \"toy\"}}\n{\"step\": 1, \"loss\": 4.0}\n{\"step\": 2, \"loss\": 1.0}\n").unwrap();
    let svg = render_svg(&series(&[run], 5)).unwrap();
    assert!(svg.contains("no accuracy in these logs"));
    assert!(svg.contains("no metrics in these logs"));
}

#[test]
fn html_has_the_picture_and_a_table_of_final_figures() {
    let mut runs = relative(fixture_runs());
    runs[1].header.label = Some("adamw <wd=0>".into());
    let html = render_html(&series(&runs, 2)).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("<svg"));
    assert!(html.contains("adamw &lt;wd=0&gt;"), "label not escaped");
    assert!(!html.contains("adamw <wd=0>"));
    // adamp's final figures: loss 2.3 e^-3 + 0.1, val accuracy 0.9408, mean norm ratio (1.3 + 1.15 + 1.075) / 3.
    assert!(html.contains("<td>0.2145</td>"), "final loss");
    assert!(html.contains("<td>94.08%</td>"), "final val accuracy");
    assert!(html.contains("<td>1.1750</td>"), "final mean norm ratio");
    assert!(html.contains("<code>conv1.weight</code>"));
}

#[test]
fn write_report_writes_svg_or_html_atomically_and_refuses_bad_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let logs = vec![fixture("adamp.jsonl"), fixture("adamw.jsonl")];
    let svg = dir.path().join("report.svg");
    write_report(&logs, &svg, 3).unwrap();
    assert!(std::fs::read_to_string(&svg).unwrap().starts_with("<svg"));
    let html = dir.path().join("report.html");
    let data = write_report(&logs, &html, 3).unwrap();
    assert_eq!(data.runs.len(), 2);
    assert!(std::fs::read_to_string(&html).unwrap().contains("<table>"));
    // Only the two outputs: no temporary file left beside them.
    let mut names: Vec<String> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names, vec!["report.html", "report.svg"]);

    let png = dir.path().join("report.png");
    assert!(matches!(write_report(&logs, &png, 3), Err(ReportError::Format { .. })));
    assert!(!png.exists());

    // A bad log leaves an earlier report untouched.
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"step\": 1, \"loss\": 1.0}\nnot json\n").unwrap();
    let before = std::fs::read(&svg).unwrap();
    let err = write_report(std::slice::from_ref(&bad), &svg, 3).unwrap_err();
    assert!(err.to_string().contains("bad.jsonl:2: not JSON"), "{err}");
    assert_eq!(std::fs::read(&svg).unwrap(), before);

    // The output may not be one of the logs.
    let copy = dir.path().join("copy.html");
    std::fs::copy(fixture("adamp.jsonl"), &copy).unwrap();
    let err = write_report(std::slice::from_ref(&copy), &copy, 3).unwrap_err();
    assert!(err.to_string().contains("overwrite the input"), "{err}");

    // A directory given as a log is refused, not read.
    let err = write_report(&[dir.path().to_path_buf()], &svg, 3).unwrap_err();
    assert!(err.to_string().contains("directory"), "{err}");
    let missing = dir.path().join("missing.jsonl");
    let err = write_report(&[missing], &svg, 3).unwrap_err();
    assert!(err.to_string().contains("missing.jsonl"), "{err}");
}

#[test]
fn effective_steps_spanning_decades_use_a_log_axis_with_zeros_on_its_floor() {
    let mut text = String::from("{\"step\": 1, \"loss\": 1.0}\n");
    for (step, e) in [(1, 0.5), (2, 0.01), (3, 0.0), (4, 1e-4)] {
        text.push_str(&format!("{{\"step\": {step}, \"metrics\": {{\"w\": {{\"norm\": 1.0, \"effective_step\": {e}}}}}}}\n"));
    }
    let svg = render_svg(&series(&[parse(&text).unwrap()], 1)).unwrap();
    assert!(svg.contains("effective step (log scale; 0 at the bottom)"), "no log axis for the effective step");
    // The norm ratio stays 1: a linear axis.
    assert!(svg.contains("\nnorm ratio\n"), "norm axis label");
}
