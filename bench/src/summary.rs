//! Summaries of measurements: the median with min and max over repeated runs, and latency
//! percentiles from an HdrHistogram.
//!
//! This file computes; it does not measure or print.

use hdrhistogram::Histogram;

use crate::error::{BenchError, Result};

/// Median, minimum and maximum of one figure over several runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// The middle value (the mean of the two middle values for an even count).
    pub median: f64,
    /// The smallest value.
    pub min: f64,
    /// The largest value.
    pub max: f64,
}

impl Summary {
    /// Summarizes `values`; `None` when there are none (or only NaNs).
    pub fn of(values: &[f64]) -> Option<Summary> {
        let mut sorted: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
        sorted.sort_by(f64::total_cmp);
        let min = *sorted.first()?;
        let max = *sorted.last()?;
        let middle = sorted.len() / 2;
        let upper = *sorted.get(middle)?;
        let median = if sorted.len() % 2 == 1 {
            upper
        } else {
            (*sorted.get(middle - 1)? + upper) / 2.0
        };
        Some(Summary { median, min, max })
    }
}

/// Latency quantiles reported for every latency figure, with their metric names.
pub const LATENCY_QUANTILES: [(&str, f64); 4] = [
    ("p50 µs", 0.50),
    ("p90 µs", 0.90),
    ("p99 µs", 0.99),
    ("p99.9 µs", 0.999),
];

/// Largest latency a histogram records: one minute in nanoseconds. Longer values are clamped.
pub const LATENCY_NS_MAX: u64 = 60_000_000_000;

/// A histogram of nanosecond latencies, 3 significant digits, 1 ns to [`LATENCY_NS_MAX`].
pub fn latency_histogram() -> Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, LATENCY_NS_MAX, 3)
        .map_err(|error| BenchError::Histogram(format!("{error:?}")))
}

/// Records `ns` (clamped into the histogram's range).
pub fn record_ns(histogram: &mut Histogram<u64>, ns: u64) {
    histogram.saturating_record(ns.clamp(1, LATENCY_NS_MAX));
}

/// The reported quantiles and the maximum of `histogram`, in microseconds, named as figures.
/// Empty when nothing was recorded.
pub fn latency_figures_us(histogram: &Histogram<u64>) -> Vec<(&'static str, f64)> {
    if histogram.is_empty() {
        return Vec::new();
    }
    let mut figures: Vec<(&'static str, f64)> = LATENCY_QUANTILES
        .iter()
        .map(|&(name, q)| (name, histogram.value_at_quantile(q) as f64 / 1_000.0))
        .collect();
    figures.push(("max µs", histogram.max() as f64 / 1_000.0));
    figures
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_with_min_and_max() {
        let check = |values: &[f64], expected: Option<(f64, f64, f64)>| {
            let got = Summary::of(values).map(|s| (s.median, s.min, s.max));
            assert_eq!(got, expected, "{values:?}");
        };
        check(&[], None);
        check(&[f64::NAN], None);
        check(&[5.0], Some((5.0, 5.0, 5.0)));
        check(&[3.0, 1.0, 2.0], Some((2.0, 1.0, 3.0)));
        check(&[4.0, 1.0, 3.0, 2.0], Some((2.5, 1.0, 4.0)));
        check(&[10.0, f64::NAN, 30.0, 20.0], Some((20.0, 10.0, 30.0)));
    }

    #[test]
    fn latency_figures_come_from_the_histogram_in_microseconds() {
        let mut histogram = latency_histogram().unwrap();
        assert!(latency_figures_us(&histogram).is_empty());
        for us in 1..=1_000u64 {
            record_ns(&mut histogram, us * 1_000);
        }
        record_ns(&mut histogram, u64::MAX); // clamped, not lost
        let figures = latency_figures_us(&histogram);
        let names: Vec<&str> = figures.iter().map(|(name, _)| *name).collect();
        assert_eq!(names, ["p50 µs", "p90 µs", "p99 µs", "p99.9 µs", "max µs"]);
        let value = |name: &str| figures.iter().find(|(n, _)| *n == name).unwrap().1;
        // 1,001 values (the clamped one included); three significant digits of precision.
        assert!((value("p50 µs") - 501.0).abs() <= 1.0, "{figures:?}");
        assert!((value("p99 µs") - 991.0).abs() <= 1.0, "{figures:?}");
        assert!(value("max µs") >= 59_000_000.0, "{figures:?}");
    }
}
