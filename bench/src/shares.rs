//! Pure arithmetic of the scheduling workloads: delivered shares against expected shares,
//! their largest deviation and Jain's fairness index, the error of an observed rate against a
//! configured one, and reading `VmRSS`/`VmHWM` from `/proc/PID/status` text.
//!
//! This file computes; it does not measure.

/// Each count's fraction of the total (all zeros when the total is 0).
pub fn shares(counts: &[u64]) -> Vec<f64> {
    let total: u64 = counts.iter().sum();
    counts
        .iter()
        .map(|&count| {
            if total == 0 {
                0.0
            } else {
                count as f64 / total as f64
            }
        })
        .collect()
}

/// The share DRR owes each key: `w / Σw` (all zeros when the weights sum to 0).
pub fn expected_shares(weights: &[u32]) -> Vec<f64> {
    let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
    weights
        .iter()
        .map(|&w| {
            if total == 0 {
                0.0
            } else {
                f64::from(w) / total as f64
            }
        })
        .collect()
}

/// The largest `|share − expected|` in percentage points (0 for empty input).
pub fn max_deviation_pp(shares: &[f64], expected: &[f64]) -> f64 {
    shares
        .iter()
        .zip(expected)
        .map(|(share, expected)| (share - expected).abs() * 100.0)
        .fold(0.0, f64::max)
}

/// Jain's fairness index of `x_i = share_i / expected_i`: `(Σx)² / (n·Σx²)`, 1 when every key
/// got exactly what it was owed, down to `1/n` when one key got everything. Keys with an
/// expected share of 0 are left out; 0 when nothing is left or nothing was delivered.
pub fn jain_index(shares: &[f64], expected: &[f64]) -> f64 {
    let ratios: Vec<f64> = shares
        .iter()
        .zip(expected)
        .filter(|(_, expected)| **expected > 0.0)
        .map(|(share, expected)| share / expected)
        .collect();
    let sum: f64 = ratios.iter().sum();
    let squares: f64 = ratios.iter().map(|x| x * x).sum();
    if ratios.is_empty() || squares == 0.0 {
        return 0.0;
    }
    sum * sum / (ratios.len() as f64 * squares)
}

/// `(observed − configured) / configured` in percent (0 when `configured` is not positive).
pub fn rate_error_pct(configured: f64, observed: f64) -> f64 {
    if configured <= 0.0 || !configured.is_finite() {
        return 0.0;
    }
    (observed - configured) / configured * 100.0
}

/// A `Name:   1234 kB` value of `/proc/PID/status` text, in KiB.
pub fn status_kib(status: &str, name: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// `VmRSS` and `VmHWM` of process `pid` in MiB, when `/proc` has them.
pub fn process_memory_mib(pid: u32) -> Option<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status_kib(&status, "VmRSS")?;
    let hwm = status_kib(&status, "VmHWM")?;
    Some((rss as f64 / 1024.0, hwm as f64 / 1024.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn shares_and_expected_shares() {
        assert_eq!(shares(&[1, 3]), [0.25, 0.75]);
        assert_eq!(shares(&[0, 0]), [0.0, 0.0]);
        assert!(shares(&[]).is_empty());
        let expected = expected_shares(&[1, 2, 3, 4, 5]);
        assert!(close(expected[0], 1.0 / 15.0), "{expected:?}");
        assert!(close(expected[4], 5.0 / 15.0), "{expected:?}");
        assert!(close(expected.iter().sum(), 1.0));
        assert_eq!(expected_shares(&[0, 0]), [0.0, 0.0]);
    }

    #[test]
    fn deviation_is_in_percentage_points() {
        assert!(close(max_deviation_pp(&[0.5, 0.5], &[0.5, 0.5]), 0.0));
        assert!(close(max_deviation_pp(&[0.3, 0.7], &[0.25, 0.75]), 5.0));
        assert!(close(max_deviation_pp(&[], &[]), 0.0));
    }

    #[test]
    fn jain_is_one_when_fair_and_one_over_n_when_one_key_gets_all() {
        let expected = expected_shares(&[1, 2, 3, 4, 5]);
        assert!(close(jain_index(&expected, &expected), 1.0));
        let one = [1.0, 0.0, 0.0, 0.0];
        assert!(close(jain_index(&one, &[0.25; 4]), 0.25));
        // Equal shares against weights 1 and 3: ratios 2 and 2/3, (8/3)² / (2 · 40/9) = 0.8.
        assert!(close(jain_index(&[0.5, 0.5], &[0.25, 0.75]), 0.8));
        assert!(close(jain_index(&[0.0, 0.0], &[0.5, 0.5]), 0.0));
        assert!(close(jain_index(&[1.0], &[0.0]), 0.0));
    }

    #[test]
    fn rate_error_is_signed_percent() {
        assert!(close(rate_error_pct(200.0, 190.0), -5.0));
        assert!(close(rate_error_pct(50.0, 55.0), 10.0));
        assert!(close(rate_error_pct(0.0, 5.0), 0.0));
    }

    #[test]
    fn proc_status_values() {
        let status = "Name:\tfila-server\nVmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\n";
        assert_eq!(status_kib(status, "VmRSS"), Some(102_400));
        assert_eq!(status_kib(status, "VmHWM"), Some(204_800));
        assert_eq!(status_kib(status, "VmSwap"), None);
    }
}
