//! The results of a bench invocation: figures (median, min and max over runs), the machine and
//! the configuration they were measured with; written as JSON (for `compare`) and as a
//! Markdown report with a headline table.
//!
//! This file shapes and renders results; it does not measure.

use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{BenchError, Result};
use crate::summary::Summary;

/// Which direction of change is an improvement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Better {
    /// Throughput: more is better.
    Higher,
    /// Latency, losses: less is better.
    Lower,
}

/// One reported number, e.g. workload "enqueue 64 B", metric "msg/s".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Figure {
    /// The workload and its parameters.
    pub workload: String,
    /// What was measured, with its unit.
    pub metric: String,
    /// The direction of improvement.
    pub better: Better,
    /// Median over the runs.
    pub median: f64,
    /// Smallest run.
    pub min: f64,
    /// Largest run.
    pub max: f64,
    /// Every run's value, in run order.
    pub runs: Vec<f64>,
}

impl Figure {
    /// A figure from per-run values; `None` when there are none.
    pub fn from_runs(
        workload: &str,
        metric: &str,
        better: Better,
        runs: Vec<f64>,
    ) -> Option<Figure> {
        let summary = Summary::of(&runs)?;
        Some(Figure {
            workload: workload.to_owned(),
            metric: metric.to_owned(),
            better,
            median: summary.median,
            min: summary.min,
            max: summary.max,
            runs,
        })
    }

    /// The key `compare` matches figures by.
    pub fn key(&self) -> String {
        format!("{} / {}", self.workload, self.metric)
    }
}

/// Facts about the machine the figures were measured on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// CPUs this process may run on.
    pub nproc: usize,
    /// `model name` from /proc/cpuinfo, when readable.
    pub cpu_model: Option<String>,
    /// `MemTotal` from /proc/meminfo in MiB, when readable.
    pub memory_mib: Option<u64>,
    /// Whether the load generator ran on the same machine as the server (always true: the
    /// bench only talks to 127.0.0.1).
    pub load_generator_on_server_machine: bool,
}

/// Everything one invocation measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// `fila-bench` version.
    pub bench_version: String,
    /// `git rev-parse HEAD` of the working directory, when available.
    pub commit: Option<String>,
    /// When the report was made, Unix seconds.
    pub unix_time_s: u64,
    /// The machine.
    pub machine: Machine,
    /// The command-line configuration, as given and as resolved.
    pub config: serde_json::Value,
    /// The figures, in measurement order.
    pub figures: Vec<Figure>,
    /// Warnings from the runs (errors the server returned, messages not delivered, ...).
    pub notes: Vec<String>,
}

impl Report {
    /// Writes the report as pretty JSON.
    pub fn write_json(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(|source| BenchError::Json {
            path: path.to_owned(),
            source,
        })?;
        write_file(path, &(text + "\n"))
    }

    /// Reads a report written by [`Report::write_json`].
    pub fn read_json(path: &Path) -> Result<Report> {
        let text = std::fs::read_to_string(path).map_err(|source| BenchError::File {
            doing: "read",
            path: path.to_owned(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| BenchError::Json {
            path: path.to_owned(),
            source,
        })
    }

    /// The Markdown report: context lines, then the headline table, then notes.
    pub fn to_markdown(&self) -> String {
        let mut out = String::from("# fila-bench report\n\n");
        let commit = self.commit.as_deref().unwrap_or("unknown");
        let cpu = self.machine.cpu_model.as_deref().unwrap_or("unknown CPU");
        let _ = writeln!(out, "- commit: `{commit}`");
        let _ = writeln!(out, "- machine: {} CPUs, {cpu}", self.machine.nproc);
        if let Some(mib) = self.machine.memory_mib {
            let _ = writeln!(out, "- memory: {:.1} GiB", mib as f64 / 1024.0);
        }
        if self.machine.load_generator_on_server_machine {
            out.push_str(
                "- the load generator ran on the same machine as the server and shared its CPUs\n",
            );
        }
        if let Some(config) = self.config.as_object() {
            let _ = writeln!(out, "- config: {}", config_line(config));
            for (key, value) in config {
                if let Some(nested) = value.as_object() {
                    let _ = writeln!(out, "- {key}: {}", config_line(nested));
                }
            }
        }
        out.push('\n');
        out.push_str(&markdown_table(&self.figures));
        if !self.notes.is_empty() {
            out.push_str("\n## Notes\n\n");
            for note in &self.notes {
                let _ = writeln!(out, "- {note}");
            }
        }
        out
    }
}

/// `key=value` pairs of the scalar and list entries (nested objects are flattened one level).
fn config_line(config: &serde_json::Map<String, serde_json::Value>) -> String {
    let mut pairs = Vec::new();
    for (key, value) in config {
        match value {
            serde_json::Value::Null => {}
            serde_json::Value::Object(nested) if key == "settings" => {
                pairs.push(config_line(nested))
            }
            serde_json::Value::Object(_) => {}
            other => pairs.push(format!("{key}={other}")),
        }
    }
    pairs.join(", ")
}

/// The headline table: one row per figure, median then the min–max range over runs.
pub fn markdown_table(figures: &[Figure]) -> String {
    let mut out = String::from("| Workload | Figure | Median | Min–max | Runs |\n");
    out.push_str("|---|---|---:|---:|---:|\n");
    for figure in figures {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {}–{} | {} |",
            figure.workload,
            figure.metric,
            format_number(figure.median),
            format_number(figure.min),
            format_number(figure.max),
            figure.runs.len()
        );
    }
    out
}

/// A number for people: thousands separators from 1,000 up, three significant digits below.
pub fn format_number(value: f64) -> String {
    if !value.is_finite() {
        return value.to_string();
    }
    if value.abs() >= 1_000.0 {
        let rounded = value.round() as i64;
        let digits = rounded.unsigned_abs().to_string();
        let mut grouped = String::new();
        for (i, digit) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                grouped.push(',');
            }
            grouped.push(digit);
        }
        if rounded < 0 {
            grouped.insert(0, '-');
        }
        grouped
    } else if value.abs() >= 100.0 {
        format!("{value:.0}")
    } else if value.abs() >= 10.0 {
        format!("{value:.1}")
    } else if value == 0.0 {
        "0".to_owned()
    } else {
        format!("{value:.2}")
    }
}

/// Writes `text` to `path`.
pub fn write_file(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|source| BenchError::File {
        doing: "write",
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        Report {
            bench_version: "0.1.0".into(),
            commit: Some("abc123".into()),
            unix_time_s: 1,
            machine: Machine {
                nproc: 2,
                cpu_model: Some("Test CPU".into()),
                memory_mib: Some(24 * 1024),
                load_generator_on_server_machine: true,
            },
            config: serde_json::json!({"shards": 2, "durability": "process", "addr": null}),
            figures: vec![
                Figure::from_runs("enqueue 64 B", "msg/s", Better::Higher, vec![3e5, 1e5, 2e5])
                    .unwrap(),
                Figure::from_runs("rtt 64 B", "p99 µs", Better::Lower, vec![87.26]).unwrap(),
            ],
            notes: vec!["2 messages were not delivered".into()],
        }
    }

    #[test]
    fn numbers_are_readable() {
        let cases = [
            (0.0, "0"),
            (1.234, "1.23"),
            (12.34, "12.3"),
            (123.4, "123"),
            (1_234.5, "1,235"),
            (1_234_567.0, "1,234,567"),
            (-12_345.0, "-12,345"),
        ];
        for (value, text) in cases {
            assert_eq!(format_number(value), text, "{value}");
        }
    }

    #[test]
    fn markdown_has_context_headline_table_and_notes() {
        let text = report().to_markdown();
        assert!(text.contains("- commit: `abc123`"), "{text}");
        assert!(text.contains("- machine: 2 CPUs, Test CPU"), "{text}");
        assert!(text.contains("same machine as the server"), "{text}");
        assert!(text.contains("durability=\"process\""), "{text}");
        assert!(!text.contains("addr=null"), "{text}");
        assert!(
            text.contains("| enqueue 64 B | msg/s | 200,000 | 100,000–300,000 | 3 |"),
            "{text}"
        );
        assert!(
            text.contains("| rtt 64 B | p99 µs | 87.3 | 87.3–87.3 | 1 |"),
            "{text}"
        );
        assert!(
            text.contains("## Notes\n\n- 2 messages were not delivered"),
            "{text}"
        );
    }

    #[test]
    fn json_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.json");
        let original = report();
        original.write_json(&path).unwrap();
        assert_eq!(Report::read_json(&path).unwrap(), original);
        std::fs::write(&path, "{}").unwrap();
        let error = Report::read_json(&path).unwrap_err().to_string();
        assert!(error.contains("not a fila-bench JSON report"), "{error}");
    }
}
