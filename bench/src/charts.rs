//! SVG charts of a report, written next to its Markdown file: latency percentiles against the
//! delivered rate (when `latency` ran at two or more rates), throughput against fairness keys,
//! throughput against shards, and fairness shares against the expected shares.
//!
//! [`charts`] picks the data out of the figures (pure, tested); [`render_svg`] draws one chart
//! with plotters' SVG backend.

use std::path::Path;

use plotters::prelude::*;

use crate::error::{BenchError, Result};
use crate::report::Figure;

/// One chart: named lines of (x, y) points.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    /// File-name part: `latency-1-KiB`, `keys`, `shards`, `fairness`.
    pub name: String,
    /// Title.
    pub title: String,
    /// X axis label.
    pub x_label: String,
    /// Y axis label.
    pub y_label: String,
    /// The lines, each with its points in x order.
    pub lines: Vec<(String, Vec<(f64, f64)>)>,
}

/// The median of `workload / metric`, if the report has it.
fn median(figures: &[Figure], workload: &str, metric: &str) -> Option<f64> {
    figures
        .iter()
        .find(|f| f.workload == workload && f.metric == metric)
        .map(|f| f.median)
}

/// Distinct workload labels starting with `prefix`, in report order.
fn workloads<'a>(figures: &'a [Figure], prefix: &str) -> Vec<&'a str> {
    let mut seen: Vec<&str> = Vec::new();
    for figure in figures {
        if figure.workload.starts_with(prefix) && !seen.contains(&figure.workload.as_str()) {
            seen.push(&figure.workload);
        }
    }
    seen
}

/// The number after `prefix` up to the first space, commas removed (`keys 1,000 (64 B)`).
fn number_after(label: &str, prefix: &str) -> Option<f64> {
    let rest = label.strip_prefix(prefix)?;
    rest.split_whitespace()
        .next()?
        .replace(',', "")
        .parse()
        .ok()
}

/// Every chart the figures support.
pub fn charts(figures: &[Figure]) -> Vec<Chart> {
    let mut out = Vec::new();
    // Latency: one chart per payload, x = delivered msg/s of each rate.
    let mut payloads: Vec<String> = Vec::new();
    for workload in workloads(figures, "latency ") {
        if let Some((payload, _)) = workload.split_once(" @ ")
            && !payloads.iter().any(|p| p == payload)
        {
            payloads.push(payload.to_owned());
        }
    }
    for payload in payloads {
        let points: Vec<&str> = workloads(figures, &format!("{payload} @ "));
        if points.len() < 2 {
            continue;
        }
        let lines = ["p50 µs", "p90 µs", "p99 µs", "p99.9 µs"]
            .iter()
            .map(|metric| {
                let mut line: Vec<(f64, f64)> = points
                    .iter()
                    .filter_map(|w| {
                        Some((
                            median(figures, w, "delivered msg/s")?,
                            median(figures, w, metric)?,
                        ))
                    })
                    .collect();
                line.sort_by(|a, b| a.0.total_cmp(&b.0));
                ((*metric).to_owned(), line)
            })
            .collect();
        out.push(Chart {
            name: payload.replace(' ', "-"),
            title: format!("{payload}: enqueue-to-delivery latency vs rate"),
            x_label: "delivered msg/s".to_owned(),
            y_label: "µs".to_owned(),
            lines,
        });
    }
    let sweep = |prefix: &str, log_x: bool| -> Vec<(String, Vec<(f64, f64)>)> {
        ["acked msg/s", "enqueued msg/s"]
            .iter()
            .map(|metric| {
                let line = workloads(figures, prefix)
                    .iter()
                    .filter_map(|w| {
                        let x = number_after(w, prefix)?;
                        let x = if log_x { x.log10() } else { x };
                        Some((x, median(figures, w, metric)?))
                    })
                    .collect();
                ((*metric).to_owned(), line)
            })
            .collect()
    };
    let keys = sweep("keys ", true);
    if keys.iter().any(|(_, line)| line.len() >= 2) {
        out.push(Chart {
            name: "keys".to_owned(),
            title: "lifecycle 64 B throughput vs fairness keys".to_owned(),
            x_label: "log10(fairness keys)".to_owned(),
            y_label: "msg/s".to_owned(),
            lines: keys,
        });
    }
    let shards = sweep("shards ", false);
    if shards.iter().any(|(_, line)| line.len() >= 2) {
        out.push(Chart {
            name: "shards".to_owned(),
            title: "lifecycle 64 B throughput vs shards".to_owned(),
            x_label: "shards".to_owned(),
            y_label: "msg/s".to_owned(),
            lines: shards,
        });
    }
    // Fairness: share % per key (x = key index) against the expected share in the metric name.
    for workload in workloads(figures, "fairness ") {
        let mut observed = Vec::new();
        let mut expected = Vec::new();
        for figure in figures.iter().filter(|f| f.workload == workload) {
            let Some(rest) = figure.metric.strip_prefix("share % ") else {
                continue;
            };
            let want = rest
                .split_once("(expected ")
                .and_then(|(_, tail)| tail.trim_end_matches(')').parse::<f64>().ok());
            let x = observed.len() as f64 + 1.0;
            observed.push((x, figure.median));
            if let Some(want) = want {
                expected.push((x, want));
            }
        }
        if !observed.is_empty() {
            out.push(Chart {
                name: "fairness".to_owned(),
                title: format!("{workload}: delivered share vs expected"),
                x_label: "key (by weight)".to_owned(),
                y_label: "share %".to_owned(),
                lines: vec![
                    ("delivered".to_owned(), observed),
                    ("expected w/Σw".to_owned(), expected),
                ],
            });
        }
    }
    out
}

/// Draws `chart` as an 800×500 SVG at `path`.
pub fn render_svg(chart: &Chart, path: &Path) -> Result<()> {
    let failed = |error: String| BenchError::Chart {
        path: path.to_owned(),
        detail: error,
    };
    let points = chart.lines.iter().flat_map(|(_, line)| line.iter());
    let (mut x_min, mut x_max, mut y_max) = (f64::MAX, f64::MIN, 0.0f64);
    for &(x, y) in points {
        x_min = x_min.min(x);
        x_max = x_max.max(x);
        y_max = y_max.max(y);
    }
    if x_min > x_max {
        return Err(failed("no points".to_owned()));
    }
    let pad = ((x_max - x_min) * 0.05).max(0.5);
    let root = SVGBackend::new(path, (800, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| failed(e.to_string()))?;
    let mut context = ChartBuilder::on(&root)
        .caption(&chart.title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d((x_min - pad)..(x_max + pad), 0.0..(y_max * 1.1).max(1.0))
        .map_err(|e| failed(e.to_string()))?;
    context
        .configure_mesh()
        .x_desc(chart.x_label.as_str())
        .y_desc(chart.y_label.as_str())
        .draw()
        .map_err(|e| failed(e.to_string()))?;
    for (index, (label, line)) in chart.lines.iter().enumerate() {
        let color = Palette99::pick(index).to_rgba();
        context
            .draw_series(LineSeries::new(line.iter().copied(), color.stroke_width(2)))
            .map_err(|e| failed(e.to_string()))?
            .label(label.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        context
            .draw_series(line.iter().map(|&p| Circle::new(p, 4, color.filled())))
            .map_err(|e| failed(e.to_string()))?;
    }
    context
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| failed(e.to_string()))?;
    root.present().map_err(|e| failed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Better;

    fn figure(workload: &str, metric: &str, value: f64) -> Figure {
        Figure::from_runs(workload, metric, Better::Higher, vec![value]).unwrap()
    }

    #[test]
    fn charts_come_from_sweeps_only() {
        let figures = vec![
            figure("keys 10 (64 B)", "acked msg/s", 100.0),
            figure("keys 1,000 (64 B)", "acked msg/s", 90.0),
            figure("shards 1 (lifecycle 64 B)", "acked msg/s", 50.0),
            figure("latency 1 KiB @ 1,000 msg/s", "p50 µs", 10.0),
            figure("latency 1 KiB @ 1,000 msg/s", "delivered msg/s", 1_000.0),
            figure(
                "fairness weights 1:3",
                "share % w1-0 (expected 25.00)",
                30.0,
            ),
            figure(
                "fairness weights 1:3",
                "share % w3-1 (expected 75.00)",
                70.0,
            ),
        ];
        let charts = charts(&figures);
        let names: Vec<&str> = charts.iter().map(|c| c.name.as_str()).collect();
        // One shard count and one latency rate are not sweeps.
        assert_eq!(names, ["keys", "fairness"]);
        assert_eq!(charts[0].lines[0].1, [(1.0, 100.0), (3.0, 90.0)]);
        assert_eq!(charts[1].lines[0].1, [(1.0, 30.0), (2.0, 70.0)]);
        assert_eq!(charts[1].lines[1].1, [(1.0, 25.0), (2.0, 75.0)]);
    }

    #[test]
    fn an_svg_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.svg");
        let chart = Chart {
            name: "shards".into(),
            title: "t".into(),
            x_label: "x".into(),
            y_label: "y".into(),
            lines: vec![("a".into(), vec![(1.0, 2.0), (2.0, 3.0)])],
        };
        render_svg(&chart, &path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("<svg"), "{text}");
    }
}
