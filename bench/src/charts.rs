//! SVG charts of the per-second timeline, written next to `result.json`:
//! `latency.svg` (p50 and p99 of each second) and `throughput.svg`
//! (responses per second), one series per run.
//!
//! Drawn by plotters' SVG backend only: text becomes `<text>` elements (its
//! size estimated, not measured), so no font library or system fonts are
//! needed.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use plotters::prelude::*;

use crate::stats::Second;

/// One run's timeline and its label in the legend.
pub(crate) struct Series<'a> {
    pub(crate) label: String,
    pub(crate) timeline: &'a [Second],
}

const SIZE: (u32, u32) = (960, 540);

/// Writes `latency.svg` and `throughput.svg` into `dir`; returns their paths
/// (none when no run has a timeline).
pub(crate) fn write(dir: &Path, title: &str, runs: &[Series<'_>]) -> anyhow::Result<Vec<PathBuf>> {
    if runs.iter().all(|r| r.timeline.is_empty()) {
        return Ok(Vec::new());
    }
    let latency = dir.join("latency.svg");
    let throughput = dir.join("throughput.svg");
    draw(
        &latency,
        &format!("{title}: latency per second"),
        "latency (us)",
        runs,
        &[("p99", 2, |s| s.p99_us), ("p50", 1, |s| s.p50_us)],
    )
    .with_context(|| format!("drawing {}", latency.display()))?;
    draw(
        &throughput,
        &format!("{title}: throughput per second"),
        "responses per second",
        runs,
        &[("req/s", 2, |s| s.throughput_rps)],
    )
    .with_context(|| format!("drawing {}", throughput.display()))?;
    Ok(vec![latency, throughput])
}

/// A value of a second to plot: (suffix in the legend, stroke width, value).
type Metric = (&'static str, u32, fn(&Second) -> f64);

fn draw(
    path: &Path,
    caption: &str,
    y_desc: &str,
    runs: &[Series<'_>],
    metrics: &[Metric],
) -> anyhow::Result<()> {
    let err = |e: &dyn std::fmt::Display| anyhow::anyhow!("{e}");
    let points = || runs.iter().flat_map(|r| r.timeline.iter());
    // Each second is plotted at its end (the last one may be shorter).
    let x_of = |s: &Second| f64::from(s.second) + s.interval_s;
    let x_max = points().map(x_of).fold(1.0, f64::max);
    let y_max = points()
        .flat_map(|s| metrics.iter().map(move |m| (m.2)(s)))
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max);
    let y_max = if y_max > 0.0 { y_max * 1.1 } else { 1.0 };

    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("seconds since the end of the warm-up")
        .y_desc(y_desc)
        .draw()
        .map_err(|e| err(&e))?;
    for (i, run) in runs.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        for &(suffix, width, value) in metrics {
            let style = if width > 1 {
                color.stroke_width(width)
            } else {
                color.mix(0.6).stroke_width(width)
            };
            chart
                .draw_series(LineSeries::new(
                    run.timeline.iter().map(|s| (x_of(s), value(s))),
                    style,
                ))
                .map_err(|e| err(&e))?
                .label(format!("{} {suffix}", run.label))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn second(i: u32, rps: f64, p50: f64, p99: f64) -> Second {
        Second {
            second: i,
            interval_s: 1.0,
            count: rps as u64,
            throughput_rps: rps,
            p50_us: p50,
            p99_us: p99,
            max_us: p99 * 2.0,
            errors: 0,
        }
    }

    fn assert_svg(path: &Path, needles: &[&str]) {
        let text = std::fs::read_to_string(path).unwrap();
        assert!(text.trim_start().starts_with("<svg"), "{text:.200}");
        assert!(text.trim_end().ends_with("</svg>"), "{path:?}");
        assert!(text.contains("<polyline"), "no line in {path:?}");
        for n in needles {
            assert!(text.contains(n), "{n:?} missing from {path:?}");
        }
    }

    #[test]
    fn charts_are_svg() {
        let dir = tempfile::tempdir().unwrap();
        let a: Vec<Second> = (0..5)
            .map(|i| second(i, 1000.0 + f64::from(i), 40.0, 90.0 + f64::from(i)))
            .collect();
        let b: Vec<Second> = (0..5).map(|i| second(i, 800.0, 50.0, 120.0)).collect();
        let runs = [
            Series {
                label: "rayltics#1".into(),
                timeline: &a,
            },
            Series {
                label: "hyper#1".into(),
                timeline: &b,
            },
        ];
        let files = write(dir.path(), "healthz", &runs).unwrap();
        assert_eq!(files.len(), 2);
        assert_svg(
            &dir.path().join("latency.svg"),
            &["rayltics#1 p99", "hyper#1 p50", "latency (us)", "<text"],
        );
        assert_svg(
            &dir.path().join("throughput.svg"),
            &["rayltics#1 req/s", "responses per second"],
        );
    }

    #[test]
    fn no_timeline_no_chart() {
        let dir = tempfile::tempdir().unwrap();
        let runs = [Series {
            label: "x".into(),
            timeline: &[],
        }];
        assert!(write(dir.path(), "t", &runs).unwrap().is_empty());
        assert!(!dir.path().join("latency.svg").exists());
    }
}
