//! Plain-text tables.
use crate::analysis::{Analysis, ScaleClass};
use crate::plan::{Plan, Projection};

/// Left-aligned columns separated by two spaces.
pub(crate) fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| -> String {
        let s: Vec<String> = cells.iter().enumerate().map(|(i, c)| format!("{c:<w$}", w = widths[i])).collect();
        s.join("  ").trim_end().to_string() + "\n"
    };
    let mut out = line(header.iter().map(|s| s.to_string()).collect());
    out += &line(widths.iter().map(|w| "-".repeat(*w)).collect());
    for r in rows {
        out += &line(r.clone());
    }
    out
}

pub(crate) fn analysis_table(a: &Analysis) -> String {
    let rows: Vec<Vec<String>> = a
        .parameters
        .iter()
        .map(|p| {
            let axis = match &p.class {
                ScaleClass::Channel { axis } => axis.to_string(),
                _ => "-".into(),
            };
            let normalizer = if let ScaleClass::Joint { group } = &p.class {
                format!("joint with {}", group.iter().filter(|g| **g != p.name).cloned().collect::<Vec<_>>().join(", "))
            } else if !p.evidence.normalizers.is_empty() {
                p.evidence.normalizers.join(", ")
            } else {
                p.evidence.reason.clone().unwrap_or_default()
            };
            vec![
                p.name.clone(),
                format!("{:?}", p.shape),
                p.elements.to_string(),
                p.class.name().into(),
                axis,
                normalizer,
            ]
        })
        .collect();
    let mut out = render(&["name", "shape", "elements", "class", "axis", "normalizer / reason"], &rows);
    let s = &a.summary;
    let invariant = a.parameters.iter().filter(|p| p.class.is_scale_invariant()).count();
    out += &format!(
        "\n{}: {} of {} tensors scale-invariant; {} of {} elements ({:.1}%)\n",
        a.model,
        invariant,
        s.tensors,
        s.elements_scale_invariant,
        s.elements,
        100.0 * s.fraction_scale_invariant
    );
    for w in &a.warnings {
        out += &format!("warning [{}]: {}\n", w.code, w.message);
    }
    out
}

pub(crate) fn plan_table(p: &Plan) -> String {
    let rows: Vec<Vec<String>> = p
        .tensors
        .iter()
        .map(|t| {
            let proj = match &t.projection {
                Projection::Channel { axis } => format!("channel (axis {axis})"),
                other => other.name().to_string(),
            };
            let state: Vec<String> = t.state.iter().map(|s| s.name.clone()).collect();
            vec![t.name.clone(), format!("{:?}", t.shape), t.class.clone(), proj, format!("{}", t.wd_multiplier), state.join("+"), t.state.iter().map(|s| s.bytes).sum::<u64>().to_string()]
        })
        .collect();
    let mut out = render(&["name", "shape", "class", "projection", "wd x", "state", "state bytes"], &rows);
    let tot = &p.totals;
    let kinds: Vec<String> = tot.projections.iter().map(|(k, v)| format!("{k} {v}")).collect();
    out += &format!(
        "\n{} ({}): {} tensors, {} elements, {} parameter bytes, {} state bytes; projections: {}\n",
        p.model, p.optimizer.name(), tot.tensors, tot.elements, tot.parameter_bytes, tot.state_bytes, kinds.join(", ")
    );
    out
}

pub(crate) fn bench_table(r: &crate::runtime::bench::BenchReport) -> String {
    let rows = vec![
        vec!["device".to_string(), r.device.clone()],
        vec!["tensors / elements".into(), format!("{} / {}", r.tensors, r.elements)],
        vec![format!("{} ({:?})", r.optimizer.name(), r.detect).to_lowercase(), format!("{:.3} ms/step", r.ms_per_step)],
        vec![format!("{} (baseline)", r.baseline.name()), format!("{:.3} ms/step", r.baseline_ms_per_step)],
        vec!["ratio".into(), format!("{:.3}", r.ratio)],
        vec!["bytes/step".into(), r.bytes_per_step.to_string()],
        vec!["bandwidth".into(), format!("{:.1} GB/s ({:.0}% of copy {:.1} GB/s)", r.gbps, 100.0 * r.gbps / r.copy_gbps.max(1e-9), r.copy_gbps)],
    ];
    render(&["what", "value"], &rows)
}
