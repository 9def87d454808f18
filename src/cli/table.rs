//! Plain-text tables.
use crate::analysis::{Analysis, ScaleClass};
use crate::plan::{Plan, Projection};
use super::terminal;

/// Left-aligned columns separated by two spaces. Cells are escaped for the
/// terminal first, so a name cannot forge rows; the padding is written by hand
/// because `format!`'s width argument is limited to 16 bits.
pub(crate) fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let escape_row = |cells: &[String]| -> Vec<String> { cells.iter().map(|c| terminal::escape(c).into_owned()).collect() };
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    let rows: Vec<Vec<String>> = rows.iter().map(|r| escape_row(r)).collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let line = |cells: &[String]| -> String {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i > 0 {
                s.push_str("  ");
            }
            s.push_str(c);
            let width = widths.get(i).copied().unwrap_or(0);
            s.extend(std::iter::repeat_n(' ', width.saturating_sub(c.chars().count())));
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(&header);
    out += &line(&widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>());
    for r in &rows {
        out += &line(r);
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
        terminal::escape(&a.model),
        invariant,
        s.tensors,
        s.elements_scale_invariant,
        s.elements,
        100.0 * s.fraction_scale_invariant
    );
    out
}

/// The analysis' warnings, one line each (the CLI prints them on standard error).
pub(crate) fn analysis_warnings(a: &Analysis) -> String {
    a.warnings.iter().map(|w| format!("warning [{}]: {}\n", w.code, terminal::escape(&w.message))).collect()
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
        terminal::escape(&p.model), p.config.algorithm().name(), tot.tensors, tot.elements, tot.parameter_bytes, tot.state_bytes, kinds.join(", ")
    );
    out
}

#[cfg(feature = "gpu")]
pub(crate) fn bench_table(r: &crate::runtime::bench::BenchReport) -> String {
    let rows = vec![
        vec!["device".to_string(), r.device.clone()],
        vec!["tensors / elements".into(), format!("{} / {}", r.tensors, r.elements)],
        vec![format!("{} ({:?})", r.optimizer.name(), r.detect).to_lowercase(), format!("{:.3} ms/step", r.ms_per_step)],
        vec![format!("{} (baseline)", r.baseline.name()), format!("{:.3} ms/step", r.baseline_ms_per_step)],
        vec!["ratio".into(), format!("{:.3}", r.ratio)],
        vec!["bytes/step".into(), r.bytes_per_step.to_string()],
        vec!["kernels".into(), format!("{:?}", r.variant).to_lowercase()],
        vec!["bandwidth".into(), format!("{:.1} GB/s ({:.0}% of copy {:.1} GB/s)", r.gbps, 100.0 * r.gbps / r.copy_gbps.max(1e-9), r.copy_gbps)],
        vec![
            "shader copy".into(),
            format!("{:.1} GB/s ({:.0}% of it reached)", r.shader_copy_gbps, 100.0 * r.gbps / r.shader_copy_gbps.max(1e-9)),
        ],
    ];
    render(&["what", "value"], &rows)
}
