//! The ramp plot: server CPU per forwarded packet and relay latency p99 against the
//! number of participants, one line per server.

use std::path::Path;

use anyhow::{anyhow, Context, Result};
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

use crate::measure::StepResult;

/// Fonts tried for the labels (plotters' `ab_glyph` needs one registered by hand).
const FONTS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
];

fn load_font() -> Result<()> {
    static DONE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let ok = *DONE.get_or_init(|| {
        FONTS.iter().any(|p| {
            std::fs::read(p).ok().is_some_and(|bytes| {
                // Registered once for the process: the leak is one font file.
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                register_font("sans-serif", FontStyle::Normal, bytes).is_ok()
            })
        })
    });
    ok.then_some(()).ok_or_else(|| {
        anyhow!("no TrueType font found for the plot (apt-get install fonts-dejavu-core)")
    })
}

const COLORS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
];

/// Writes a PNG with two panels. `series`: (server name, its ramp steps).
pub fn ramp(path: &Path, series: &[(String, Vec<StepResult>)]) -> Result<()> {
    load_font()?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let root = BitMapBackend::new(path, (1000, 760)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let (top, bottom) = root.split_vertically(380);
    let max_x = series
        .iter()
        .flat_map(|(_, s)| s.iter().map(|r| r.participants))
        .max()
        .unwrap_or(1) as f64;
    panel(
        &top,
        series,
        "Server CPU per forwarded packet (µs, log scale)",
        max_x,
        true,
        |r| r.cpu_us_per_pkt,
    )?;
    // Both span orders of magnitude once a server is overloaded: log scales.
    panel(
        &bottom,
        series,
        "Relay latency p99 (ms, log scale)",
        max_x,
        true,
        |r| r.latency_ms.map(|l| l.p99),
    )?;
    root.present()
        .map_err(|e| anyhow!("{e}"))
        .with_context(|| format!("writing {}", path.display()))
}

fn panel(
    area: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
    series: &[(String, Vec<StepResult>)],
    title: &str,
    max_x: f64,
    log: bool,
    value: impl Fn(&StepResult) -> Option<f64>,
) -> Result<()> {
    // On a log panel values are drawn as log10 and the labels turned back.
    let y = |r: &StepResult| value(r).map(|v| if log { v.max(1e-3).log10() } else { v });
    let values: Vec<f64> = series
        .iter()
        .flat_map(|(_, s)| s.iter().filter_map(y))
        .collect();
    let hi = values.iter().copied().fold(0.0f64, f64::max);
    let lo = values.iter().copied().fold(0.0f64, f64::min);
    let (min_y, max_y) = if log {
        (lo.floor() - 0.1, hi.ceil() + 0.1)
    } else {
        (0.0, hi.max(1e-3) * 1.15)
    };
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..max_x * 1.05, min_y..max_y)
        .map_err(|e| anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .x_desc("participants")
        .label_style(("sans-serif", 14))
        .y_label_formatter(&|v| {
            let x = if log { 10f64.powf(*v) } else { *v };
            if x < 1.0 {
                format!("{x:.2}")
            } else {
                format!("{x:.0}")
            }
        })
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    for (i, (name, steps)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let points: Vec<(f64, f64)> = steps
            .iter()
            .filter_map(|r| Some((r.participants as f64, y(r)?)))
            .collect();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
            .map_err(|e| anyhow!("{e}"))?
            .label(name.clone())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], color.stroke_width(2)));
        chart
            .draw_series(points.iter().map(|p| Circle::new(*p, 4, color.filled())))
            .map_err(|e| anyhow!("{e}"))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    Ok(())
}
