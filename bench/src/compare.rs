//! `compare OLD.json NEW.json`: the ratio new/old of every figure's median, and which changes
//! are regressions beyond a threshold (lower throughput, higher latency).
//!
//! This file decides and renders; reading the files is `report.rs`'s job.

use std::fmt::Write as _;

use crate::report::{Better, Figure, Report, format_number};

/// How one figure changed between two reports.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// `workload / metric`.
    pub key: String,
    /// The old median.
    pub old: f64,
    /// The new median.
    pub new: f64,
    /// new / old; `None` when old is 0.
    pub ratio: Option<f64>,
    /// The verdict.
    pub verdict: Verdict,
}

/// Whether a change matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Within the threshold (or not comparable).
    Same,
    /// Better by more than the threshold.
    Improved,
    /// Worse by more than the threshold.
    Regressed,
}

/// The result of comparing two reports.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Comparison {
    /// Figures present in both, in the new report's order.
    pub changes: Vec<Change>,
    /// Keys present only in the old report.
    pub only_old: Vec<String>,
    /// Keys present only in the new report.
    pub only_new: Vec<String>,
}

impl Comparison {
    /// How many figures regressed.
    pub fn regressions(&self) -> usize {
        self.changes
            .iter()
            .filter(|change| change.verdict == Verdict::Regressed)
            .count()
    }
}

/// The verdict for a move from `old` to `new` where `better` says which way is good.
/// `threshold` is a fraction (0.1 = 10 %).
pub fn verdict(old: f64, new: f64, better: Better, threshold: f64) -> (Option<f64>, Verdict) {
    if old == 0.0 || !old.is_finite() || !new.is_finite() {
        return (None, Verdict::Same);
    }
    let ratio = new / old;
    let verdict = match better {
        Better::Higher if ratio < 1.0 - threshold => Verdict::Regressed,
        Better::Higher if ratio > 1.0 + threshold => Verdict::Improved,
        Better::Lower if ratio > 1.0 + threshold => Verdict::Regressed,
        Better::Lower if ratio < 1.0 - threshold => Verdict::Improved,
        _ => Verdict::Same,
    };
    (Some(ratio), verdict)
}

/// Compares the medians of `old` and `new`, figure by figure.
pub fn compare(old: &Report, new: &Report, threshold: f64) -> Comparison {
    let find = |figures: &[Figure], key: &str| -> Option<f64> {
        figures.iter().find(|f| f.key() == key).map(|f| f.median)
    };
    let mut comparison = Comparison::default();
    for figure in &new.figures {
        let key = figure.key();
        match find(&old.figures, &key) {
            Some(old_median) => {
                let (ratio, verdict) = verdict(old_median, figure.median, figure.better, threshold);
                comparison.changes.push(Change {
                    key,
                    old: old_median,
                    new: figure.median,
                    ratio,
                    verdict,
                });
            }
            None => comparison.only_new.push(key),
        }
    }
    for figure in &old.figures {
        let key = figure.key();
        if find(&new.figures, &key).is_none() {
            comparison.only_old.push(key);
        }
    }
    comparison
}

/// The comparison as a Markdown table plus the keys present on one side only.
pub fn render(comparison: &Comparison) -> String {
    let mut out = String::from("| Figure | Old | New | New/old | |\n|---|---:|---:|---:|---|\n");
    for change in &comparison.changes {
        let ratio = change
            .ratio
            .map_or_else(|| "n/a".to_owned(), |ratio| format!("{ratio:.3}"));
        let flag = match change.verdict {
            Verdict::Same => "",
            Verdict::Improved => "improved",
            Verdict::Regressed => "**REGRESSION**",
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {ratio} | {flag} |",
            change.key,
            format_number(change.old),
            format_number(change.new)
        );
    }
    for key in &comparison.only_old {
        let _ = writeln!(out, "\nonly in the old report: {key}");
    }
    for key in &comparison.only_new {
        let _ = writeln!(out, "\nonly in the new report: {key}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Machine;

    #[test]
    fn verdicts_follow_the_direction_and_the_threshold() {
        let cases = [
            // old, new, better, ratio, verdict
            (100.0, 100.0, Better::Higher, Some(1.0), Verdict::Same),
            (100.0, 95.0, Better::Higher, Some(0.95), Verdict::Same),
            (100.0, 85.0, Better::Higher, Some(0.85), Verdict::Regressed),
            (100.0, 120.0, Better::Higher, Some(1.2), Verdict::Improved),
            (100.0, 120.0, Better::Lower, Some(1.2), Verdict::Regressed),
            (100.0, 85.0, Better::Lower, Some(0.85), Verdict::Improved),
            (100.0, 109.0, Better::Lower, Some(1.09), Verdict::Same),
            (0.0, 5.0, Better::Higher, None, Verdict::Same),
        ];
        for (old, new, better, ratio, expected) in cases {
            let (got_ratio, got) = verdict(old, new, better, 0.1);
            assert_eq!(got, expected, "{old} -> {new} {better:?}");
            match (got_ratio, ratio) {
                (Some(a), Some(b)) => assert!((a - b).abs() < 1e-9, "{a} vs {b}"),
                (a, b) => assert_eq!(a, b),
            }
        }
    }

    fn report(figures: &[(&str, &str, Better, f64)]) -> Report {
        Report {
            bench_version: "0.1.0".into(),
            commit: None,
            unix_time_s: 0,
            machine: Machine {
                nproc: 2,
                cpu_model: None,
                memory_mib: None,
                load_generator_on_server_machine: true,
            },
            config: serde_json::Value::Null,
            figures: figures
                .iter()
                .map(|&(w, m, b, v)| Figure::from_runs(w, m, b, vec![v]).unwrap())
                .collect(),
            notes: vec![],
        }
    }

    #[test]
    fn reports_are_matched_by_workload_and_metric() {
        let old = report(&[
            ("enqueue 64 B", "msg/s", Better::Higher, 200_000.0),
            ("rtt 64 B", "p99 µs", Better::Lower, 100.0),
            ("gone", "msg/s", Better::Higher, 1.0),
        ]);
        let new = report(&[
            ("enqueue 64 B", "msg/s", Better::Higher, 150_000.0),
            ("rtt 64 B", "p99 µs", Better::Lower, 80.0),
            ("fresh", "msg/s", Better::Higher, 1.0),
        ]);
        let comparison = compare(&old, &new, 0.1);
        assert_eq!(comparison.regressions(), 1);
        let verdicts: Vec<(&str, Verdict)> = comparison
            .changes
            .iter()
            .map(|c| (c.key.as_str(), c.verdict))
            .collect();
        assert_eq!(
            verdicts,
            [
                ("enqueue 64 B / msg/s", Verdict::Regressed),
                ("rtt 64 B / p99 µs", Verdict::Improved)
            ]
        );
        assert_eq!(comparison.only_old, ["gone / msg/s"]);
        assert_eq!(comparison.only_new, ["fresh / msg/s"]);
        let text = render(&comparison);
        assert!(
            text.contains("| enqueue 64 B / msg/s | 200,000 | 150,000 | 0.750 | **REGRESSION** |"),
            "{text}"
        );
        assert!(
            text.contains("| rtt 64 B / p99 µs | 100 | 80.0 | 0.800 | improved |"),
            "{text}"
        );
        assert!(
            text.contains("only in the old report: gone / msg/s"),
            "{text}"
        );
    }
}
