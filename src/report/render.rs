//! Drawing a [`ReportData`] with plotters (SVG backend), and the HTML page around it.
use super::{Point, ReportData, ReportError, RunSeries};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// Picture size in pixels: four panels in a 2 × 2 grid under a title line.
const WIDTH: u32 = 1280;
const HEIGHT: u32 = 960;
const TITLE_HEIGHT: u32 = 44;
const FONT: &str = "sans-serif";

/// One colour per run, told apart also by colour-blind readers (Okabe–Ito).
const COLOURS: [RGBColor; 7] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(0, 0, 0),
];

fn colour(run: usize) -> RGBColor {
    COLOURS[run % COLOURS.len()]
}

fn draw_err(e: impl std::fmt::Display) -> ReportError {
    ReportError::Draw(e.to_string())
}

/// How a curve is drawn.
#[derive(Clone, Copy, PartialEq)]
enum Style {
    /// Thick solid line: a run's main curve.
    Main,
    /// Dashed line with a dot at each point: sparse validation records.
    Validation,
    /// Thin faint line: one of the top-k tensors.
    Tensor,
}

struct Curve<'a> {
    points: &'a [Point],
    colour: RGBColor,
    style: Style,
    legend: Option<String>,
}

/// How the y axis maps values.
#[derive(Clone, Copy, PartialEq)]
enum Scale {
    /// Values as they are.
    Linear,
    /// log10 of the values, labelled with the values: for curves spanning decades.
    Log,
    /// Fixed [0, 1]: accuracies.
    Unit,
}

struct Panel<'a> {
    title: String,
    y_desc: &'a str,
    curves: Vec<Curve<'a>>,
    scale: Scale,
    /// Said in the empty panel when no curve has a point.
    empty: &'a str,
}

/// The report as a standalone SVG document.
pub fn render_svg(data: &ReportData) -> Result<String, ReportError> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        let (title, body) = root.split_vertically(TITLE_HEIGHT);
        let labels: Vec<String> = data.runs.iter().map(|r| r.label.clone()).collect();
        let mut heading = format!("Training report: {}", labels.join(" vs "));
        if heading.chars().count() > 90 {
            // The legends name the runs; a title wider than the picture would be cut off.
            heading = format!("Training report: {} runs", labels.len());
        }
        title
            .draw_text(
                &heading,
                &(FONT, 24).into_font().style(FontStyle::Bold).color(&BLACK),
                (16, 12),
            )
            .map_err(draw_err)?;
        let areas = body.split_evenly((2, 2));
        for (area, panel) in areas.iter().zip(panels(data)) {
            draw_panel(area, &panel)?;
        }
        root.present().map_err(draw_err)?;
    }
    Ok(svg)
}

fn panels(data: &ReportData) -> Vec<Panel<'_>> {
    let runs = &data.runs;
    let many = runs.len() > 1;
    let name = |r: &RunSeries, what: &str| if many { format!("{} {what}", r.label) } else { what.to_string() };
    let mut loss = Vec::new();
    let mut accuracy = Vec::new();
    let mut norm = Vec::new();
    let mut step = Vec::new();
    for (i, r) in runs.iter().enumerate() {
        let c = colour(i);
        loss.push(Curve { points: &r.loss, colour: c, style: Style::Main, legend: Some(name(r, "train")) });
        loss.push(Curve { points: &r.val_loss, colour: c, style: Style::Validation, legend: Some(name(r, "validation")) });
        accuracy.push(Curve { points: &r.accuracy, colour: c, style: Style::Main, legend: Some(name(r, "train")) });
        accuracy.push(Curve { points: &r.val_accuracy, colour: c, style: Style::Validation, legend: Some(name(r, "validation")) });
        // Thin tensor lines first, so the mean is drawn over them.
        norm.extend(r.top_norm_ratio.iter().map(|t| Curve { points: &t.points, colour: c, style: Style::Tensor, legend: None }));
        step.extend(r.top_effective_step.iter().map(|t| Curve { points: &t.points, colour: c, style: Style::Tensor, legend: None }));
        let mean = format!("{} (mean of {} tensor{})", r.label, r.tensors, if r.tensors == 1 { "" } else { "s" });
        norm.push(Curve { points: &r.norm_ratio_mean, colour: c, style: Style::Main, legend: Some(mean.clone()) });
        step.push(Curve { points: &r.effective_step_mean, colour: c, style: Style::Main, legend: Some(mean) });
    }
    let top = match data.top_tensors.len() {
        0 => String::new(),
        k => format!("; thin: top {k} by growth"),
    };
    vec![
        Panel {
            title: "Loss (solid: train, dashed: validation)".into(),
            y_desc: "loss",
            scale: auto_scale(&loss),
            curves: loss,
            empty: "no loss in these logs",
        },
        Panel {
            title: "Accuracy (solid: train, dashed: validation)".into(),
            y_desc: "accuracy",
            scale: Scale::Unit,
            curves: accuracy,
            empty: "no accuracy in these logs (only cross-entropy logs it)",
        },
        Panel {
            title: format!("Weight norm growth ‖w_t‖ / ‖w_0‖ (thick: mean{top})"),
            y_desc: "norm ratio",
            scale: auto_scale(&norm),
            curves: norm,
            empty: "no metrics in these logs (train --metrics-every K)",
        },
        Panel {
            title: format!("Effective step ‖ŵ_t+1 − ŵ_t‖ (thick: mean{top})"),
            y_desc: "effective step",
            scale: auto_scale(&step),
            curves: step,
            empty: "no metrics in these logs (train --metrics-every K)",
        },
    ]
}

/// Log scale when the positive values span more than a factor 30 (zeros, e.g.
/// an effective step that float32 rounds away, are drawn at the axis' floor).
fn auto_scale(curves: &[Curve]) -> Scale {
    let values = || curves.iter().flat_map(|c| c.points.iter().map(|p| p.1));
    let (lo, hi) = values().filter(|&v| v > 0.0).fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if values().all(|v| v >= 0.0) && lo > 0.0 && hi / lo > 30.0 {
        Scale::Log
    } else {
        Scale::Linear
    }
}

fn transform(scale: Scale, v: f64) -> f64 {
    match scale {
        Scale::Log => v.log10(),
        Scale::Linear | Scale::Unit => v,
    }
}

/// A tick label: short, in the value's own units (the log axis is labelled with values, not exponents).
fn tick(scale: Scale, t: f64) -> String {
    let v = match scale {
        Scale::Log => 10f64.powf(t),
        Scale::Linear | Scale::Unit => t,
    };
    let a = v.abs();
    if scale == Scale::Log && (t - t.round()).abs() > 1e-9 {
        // Between decades: two significant digits (3.2, not 3.1623).
        let digits = (1 - a.log10().floor() as i32).max(0) as usize;
        return if a >= 1e-3 { format!("{v:.digits$}") } else { format!("{v:.1e}") };
    }
    if a == 0.0 {
        "0".into()
    } else if !(1e-3..1e5).contains(&a) {
        format!("{v:.0e}")
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else {
        // Enough digits to tell neighbouring ticks apart, trailing zeros trimmed.
        let s = format!("{v:.4}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        s.to_string()
    }
}

/// How many y ticks to ask for: on a log axis one per decade where the span
/// allows, so that the ticks fall on powers of ten.
fn y_ticks(scale: Scale, span: f64) -> usize {
    match scale {
        Scale::Log => (span.floor() as usize + 1).clamp(3, 8),
        Scale::Linear | Scale::Unit => 6,
    }
}

fn draw_panel(area: &DrawingArea<SVGBackend<'_>, Shift>, panel: &Panel) -> Result<(), ReportError> {
    let points = || panel.curves.iter().flat_map(|c| c.points.iter());
    let (x_lo, x_hi) = points().fold((u64::MAX, 0), |(lo, hi), p| (lo.min(p.0), hi.max(p.0)));
    let caption = (FONT, 18).into_font();
    if x_lo > x_hi {
        // No point at all: a caption and a sentence, not empty axes.
        let mut chart = ChartBuilder::on(area).caption(&panel.title, caption).margin(16).build_cartesian_2d(0f64..1f64, 0f64..1f64).map_err(draw_err)?;
        chart
            .draw_series(std::iter::once(Text::new(panel.empty.to_string(), (0.5, 0.5), (FONT, 16).into_font().color(&RGBColor(110, 110, 110)).pos(Pos::new(HPos::Center, VPos::Center)))))
            .map_err(draw_err)?;
        return Ok(());
    }
    let (x_lo, x_hi) = if x_lo == x_hi { (x_lo.saturating_sub(1) as f64, x_hi as f64 + 1.0) } else { (x_lo as f64, x_hi as f64) };
    let (y_lo, mut y_hi) = match panel.scale {
        Scale::Unit => (0.0, 1.0),
        scale => {
            let (lo, hi) = points()
                .map(|p| transform(scale, p.1))
                .filter(|v| v.is_finite())
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
            let pad = if hi > lo { (hi - lo) * 0.06 } else { lo.abs().max(1e-12) * 0.1 };
            (lo - pad, hi + pad)
        }
    };
    let scale = panel.scale;
    let (mut corner, hidden) = legend_corner(panel, scale, (x_lo, x_hi), (y_lo, y_hi));
    if hidden > 0 {
        // Every corner would hide part of a curve: raise the top of the axis
        // by the legend's height, so the legend sits above the curves.
        let height = legend_height(panel);
        y_hi += (y_hi - y_lo) * height / (1.0 - height).max(0.2);
        corner = legend_corner(panel, scale, (x_lo, x_hi), (y_lo, y_hi)).0;
    }
    let floor = y_lo;
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.title, caption)
        .margin(12)
        .margin_right(24)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(x_lo..x_hi, y_lo..y_hi)
        .map_err(draw_err)?;
    let zeros = scale == Scale::Log && points().any(|p| p.1 <= 0.0);
    let y_desc = match (scale, zeros) {
        (Scale::Log, true) => format!("{} (log scale; 0 at the bottom)", panel.y_desc),
        (Scale::Log, false) => format!("{} (log scale)", panel.y_desc),
        _ => panel.y_desc.to_string(),
    };
    chart
        .configure_mesh()
        .x_desc("step")
        .y_desc(y_desc)
        // Integer steps: no more ticks than steps, so no tick falls between two.
        .x_labels(((x_hi - x_lo) as usize + 1).clamp(2, 6))
        .y_labels(y_ticks(scale, y_hi - y_lo))
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| tick(scale, *y))
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 14))
        .light_line_style(RGBColor(238, 238, 238))
        .bold_line_style(RGBColor(215, 215, 215))
        .draw()
        .map_err(draw_err)?;
    let mut labelled = false;
    for curve in &panel.curves {
        // On a log axis a zero has no place: it is drawn on the floor.
        let place = |v: f64| if scale == Scale::Log && v <= 0.0 { floor } else { transform(scale, v) };
        let pts: Vec<(f64, f64)> = curve.points.iter().map(|p| (p.0 as f64, place(p.1))).filter(|p| p.1.is_finite()).collect();
        if pts.is_empty() {
            continue;
        }
        let c = curve.colour;
        let drawn = match curve.style {
            Style::Main => chart.draw_series(LineSeries::new(pts, c.stroke_width(2))).map_err(draw_err)?,
            Style::Tensor => chart.draw_series(LineSeries::new(pts, c.mix(0.35).stroke_width(1))).map_err(draw_err)?,
            Style::Validation => {
                chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, c.filled()))).map_err(draw_err)?;
                chart.draw_series(DashedLineSeries::new(pts, 6, 4, c.stroke_width(2))).map_err(draw_err)?
            }
        };
        if let Some(label) = &curve.legend {
            labelled = true;
            let style = curve.style;
            // Two segments with a gap for a dashed curve, touching for a solid one.
            let gap = if style == Style::Validation { 4 } else { 0 };
            drawn.label(label.as_str()).legend(move |(x, y)| {
                EmptyElement::at((x, y))
                    + PathElement::new(vec![(0, 0), (8 - gap, 0)], c.stroke_width(2))
                    + PathElement::new(vec![(8 + gap, 0), (20, 0)], c.stroke_width(2))
            });
        }
    }
    if labelled {
        chart
            .configure_series_labels()
            .position(corner)
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(180, 180, 180))
            .label_font((FONT, 13))
            .draw()
            .map_err(draw_err)?;
    }
    Ok(())
}

/// The corner of the plot whose legend box would hide the fewest curve points.
///
/// Curves are sampled along their segments, so a line crossing a corner between
/// two sparse points counts too. Ties keep the first corner in reading order.
fn legend_corner(panel: &Panel, scale: Scale, x: (f64, f64), y: (f64, f64)) -> (SeriesLabelPosition, usize) {
    let longest = panel.curves.iter().filter_map(|c| c.legend.as_ref()).map(|l| l.chars().count()).max().unwrap_or(0);
    // The legend's size as a fraction of the plot (about 7 px a character in a ~540 px wide plot).
    let width = ((longest as f64 * 7.0 + 50.0) / 540.0).min(1.0);
    let height = legend_height(panel);
    let norm = |p: (f64, f64)| ((p.0 - x.0) / (x.1 - x.0), (p.1 - y.0) / (y.1 - y.0));
    let mut samples = Vec::new();
    for curve in &panel.curves {
        let place = |v: f64| if scale == Scale::Log && v <= 0.0 { y.0 } else { transform(scale, v) };
        let pts: Vec<(f64, f64)> = curve.points.iter().map(|p| norm((p.0 as f64, place(p.1)))).filter(|p| p.1.is_finite()).collect();
        samples.extend(pts.first().copied());
        for pair in pts.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            samples.extend((1..=8).map(|k| {
                let t = k as f64 / 8.0;
                (a.0 + (b.0 - a.0) * t, a.1 + (b.1 - a.1) * t)
            }));
        }
    }
    let corners = [
        (SeriesLabelPosition::UpperRight, 1.0 - width, 1.0 - height),
        (SeriesLabelPosition::UpperLeft, 0.0, 1.0 - height),
        (SeriesLabelPosition::LowerRight, 1.0 - width, 0.0),
        (SeriesLabelPosition::LowerLeft, 0.0, 0.0),
    ];
    let hidden = |&(_, x0, y0): &(SeriesLabelPosition, f64, f64)| {
        samples.iter().filter(|p| p.0 >= x0 && p.0 <= x0 + width && p.1 >= y0 && p.1 <= y0 + height).count()
    };
    let mut best = 0;
    for i in 1..corners.len() {
        if hidden(&corners[i]) < hidden(&corners[best]) {
            best = i;
        }
    }
    let hidden_there = hidden(&corners[best]);
    (corners[best].0.clone(), hidden_there)
}

/// The legend's height as a fraction of the plot (17 px a row in a ~360 px high plot).
fn legend_height(panel: &Panel) -> f64 {
    let entries = panel.curves.iter().filter(|c| c.legend.is_some() && !c.points.is_empty()).count();
    ((entries as f64 * 17.0 + 14.0) / 360.0).min(0.8)
}

/// The report as an HTML page: the SVG picture and a table of each run's final figures.
pub fn render_html(data: &ReportData) -> Result<String, ReportError> {
    let svg = render_svg(data)?;
    let mut rows = String::new();
    for (i, r) in data.runs.iter().enumerate() {
        let RGBColor(red, green, blue) = colour(i);
        let f = &r.finals;
        let cells = [
            format!("<span class=\"swatch\" style=\"background:rgb({red},{green},{blue})\"></span>{}", escape(&r.label)),
            escape(&r.source),
            escape(r.header.model.as_deref().unwrap_or("-")),
            escape(r.header.optimizer.as_deref().unwrap_or("-")),
            escape(r.header.detect.as_deref().unwrap_or("-")),
            f.step.map_or("-".into(), |s| s.to_string()),
            number(f.loss),
            number(f.val_loss),
            f.val_accuracy.map_or("-".into(), |a| format!("{:.2}%", a * 100.0)),
            number(f.norm_ratio_mean),
            number(f.effective_step_mean),
            f.projected_fraction_mean.map_or("-".into(), |p| format!("{:.1}%", p * 100.0)),
        ];
        rows.push_str("<tr>");
        for c in cells {
            rows.push_str(&format!("<td>{c}</td>"));
        }
        rows.push_str("</tr>\n");
    }
    let top = if data.top_tensors.is_empty() {
        String::new()
    } else {
        let names: Vec<String> = data.top_tensors.iter().map(|t| format!("<code>{}</code>", escape(t))).collect();
        format!("<p>Top tensors by norm growth (thin lines): {}.</p>\n", names.join(", "))
    };
    Ok(format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>adamp-graph training report</title>\n<style>\n\
         body {{ font-family: sans-serif; margin: 24px; color: #222; }}\n\
         table {{ border-collapse: collapse; margin: 16px 0; }}\n\
         th, td {{ border: 1px solid #ccc; padding: 4px 10px; text-align: right; }}\n\
         th:nth-child(-n+5), td:nth-child(-n+5) {{ text-align: left; }}\n\
         .swatch {{ display: inline-block; width: 12px; height: 12px; margin-right: 6px; vertical-align: middle; }}\n\
         </style>\n</head>\n<body>\n<h1>Training report</h1>\n<table>\n\
         <tr><th>run</th><th>log</th><th>model</th><th>optimizer</th><th>detect</th><th>last step</th><th>final loss</th>\
         <th>final val loss</th><th>final val accuracy</th><th>final mean ‖w_t‖/‖w_0‖</th><th>final mean effective step</th>\
         <th>projected (runtime test)</th></tr>\n{rows}</table>\n{top}\
         <p>Norm ratios are relative to each tensor's first metrics record; means are over the tensors each log records.</p>\n\
         <div>\n{svg}\n</div>\n</body>\n</html>\n"
    ))
}

fn number(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(v) if v != 0.0 && !(1e-3..1e5).contains(&v.abs()) => format!("{v:.3e}"),
        Some(v) => format!("{v:.4}"),
    }
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
