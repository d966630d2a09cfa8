//! Running a command end to end: resolve settings, start (or reach) the server, run the
//! workload(s), then print the headline table and write the JSON and Markdown reports.
//! `all` runs every workload with its defaults, each against a freshly started server.

use crate::client::Endpoint;
use std::path::{Path, PathBuf};

use crate::cli::{Command, Common, Rate, parse_bytes};
use crate::compare;
use crate::error::{BenchError, Result};
use crate::machine;
use crate::report::{Report, markdown_table, write_file};
use crate::workloads::{
    Outcome, Target, brief, depth, enqueue, fairness, keys, latency, lifecycle, lua, rtt, shards,
    storm, throttle,
};

/// Where `all` writes its reports when `--json` / `--report` are not given.
const ALL_JSON_DEFAULT: &str = "target/fila-bench/report.json";
const ALL_REPORT_DEFAULT: &str = "target/fila-bench/report.md";

/// Runs one parsed command.
pub fn run(command: Command) -> Result<()> {
    match command {
        Command::Enqueue { common, payload } => {
            let settings = common.settings(enqueue::DEFAULTS)?;
            let outcome = on_server(&common, |addr| enqueue::run(addr, &settings, &payload))?;
            finish(
                &common,
                serde_json::json!({"workload": "enqueue", "payload": payload, "settings": settings}),
                outcome,
                None,
            )
        }
        Command::Lifecycle { common, payload } => {
            let settings = common.settings(lifecycle::DEFAULTS)?;
            let outcome = on_server(&common, |addr| lifecycle::run(addr, &settings, &payload))?;
            finish(
                &common,
                serde_json::json!({"workload": "lifecycle", "payload": payload, "settings": settings}),
                outcome,
                None,
            )
        }
        Command::Latency {
            common,
            payload,
            rates,
        } => {
            let settings = common.settings(latency::DEFAULTS)?;
            let outcome = on_server(&common, |addr| {
                latency::run(addr, &settings, &payload, &rates)
            })?;
            finish(
                &common,
                serde_json::json!({"workload": "latency", "payload": payload, "rates": rates, "settings": settings}),
                outcome,
                None,
            )
        }
        Command::Rtt { common, payload } => {
            let settings = common.settings(rtt::DEFAULTS)?;
            let outcome = on_server(&common, |addr| rtt::run(addr, &settings, &payload))?;
            finish(
                &common,
                serde_json::json!({"workload": "rtt", "payload": payload, "settings": settings}),
                outcome,
                None,
            )
        }
        Command::Fairness {
            common,
            weights,
            backlog,
        } => {
            let settings = common.settings(fairness::DEFAULTS)?;
            check_list("--weights", &weights, |w| *w >= 1 && *w <= 1_000)?;
            check_list("--backlog", &[backlog], |b| *b >= 1 && *b <= 10_000_000)?;
            let outcome = on_server(&common, |addr| {
                fairness::run(addr, &settings, &weights, backlog)
            })?;
            finish(
                &common,
                serde_json::json!({"workload": "fairness", "weights": weights, "backlog": backlog, "settings": settings}),
                outcome,
                None,
            )
        }
        Command::Throttle {
            common,
            rates,
            burst,
        } => {
            let settings = common.settings(throttle::DEFAULTS)?;
            check_throttle(&rates, burst)?;
            let outcome = on_server(&common, |addr| {
                throttle::run(addr, &settings, &rates, burst)
            })?;
            finish(
                &common,
                serde_json::json!({"workload": "throttle", "rates": rates, "burst": burst, "settings": settings}),
                outcome,
                None,
            )
        }
        Command::Storm {
            common,
            storm_threads,
        } => {
            let settings = common.settings(storm::DEFAULTS)?;
            check_list("--storm-threads", &[storm_threads], |n| *n >= 1 && *n <= 64)?;
            let outcome = on_server(&common, |addr| storm::run(addr, &settings, storm_threads))?;
            finish(
                &common,
                serde_json::json!({"workload": "storm", "storm_threads": storm_threads, "settings": settings}),
                outcome,
                None,
            )
        }
        Command::Lua { common, payload } => {
            let settings = common.settings(lua::DEFAULTS)?;
            let outcome = on_server(&common, |addr| lua::run(addr, &settings, &payload))?;
            finish(
                &common,
                serde_json::json!({"workload": "lua", "payload": payload, "settings": settings}),
                outcome,
                None,
            )
        }
        Command::Keys { common, key_counts } => {
            let settings = common.settings(keys::DEFAULTS)?;
            check_list("--key-counts", &key_counts, |k| *k >= 1 && *k <= 1_000_000)?;
            let outcome = on_server(&common, |addr| keys::run(addr, &settings, &key_counts))?;
            finish(
                &common,
                serde_json::json!({"workload": "keys", "key_counts": key_counts, "settings": settings}),
                outcome,
                None,
            )
        }
        Command::Shards {
            common,
            shard_counts,
        } => {
            let settings = common.settings(shards::DEFAULTS)?;
            check_list("--shard-counts", &shard_counts, |n| *n >= 1 && *n <= 1_024)?;
            let outcome = shards::run(&common, &settings, &shard_counts)?;
            finish(
                &common,
                serde_json::json!({"workload": "shards", "shard_counts": shard_counts, "settings": settings}),
                outcome,
                None,
            )
        }
        Command::Depth { common, depth } => {
            let settings = common.settings(depth::DEFAULTS)?;
            check_list("--depth", &[depth], |d| *d >= 1 && *d <= 100_000_000)?;
            let outcome = on_target(&common, |target| depth::run(target, &settings, depth))?;
            finish(
                &common,
                serde_json::json!({"workload": "depth", "depth": depth, "settings": settings}),
                outcome,
                None,
            )
        }
        Command::All { common } => all(&common),
        Command::Compare {
            old,
            new,
            threshold,
        } => compare_files(&old, &new, threshold),
    }
}

/// Runs `workload` against a server started for it (or `--addr`); the server stops after.
fn on_server<T>(common: &Common, workload: impl FnOnce(Endpoint) -> Result<T>) -> Result<T> {
    on_target(common, |target| workload(target.addr))
}

/// Like [`on_server`], for workloads that need the target itself (its process id).
fn on_target<T>(common: &Common, workload: impl FnOnce(&Target) -> Result<T>) -> Result<T> {
    let target = Target::new(common)?;
    let result = workload(&target);
    if result.is_err() {
        let log = target.server_log();
        if !log.is_empty() {
            eprintln!("fila-bench: the server's last stderr lines:\n{log}");
        }
    }
    result
}

/// Fails with `flag` when `values` is empty or any value is outside what `ok` allows.
fn check_list<T: std::fmt::Debug>(flag: &str, values: &[T], ok: impl Fn(&T) -> bool) -> Result<()> {
    match values.iter().find(|value| !ok(value)) {
        _ if values.is_empty() => Err(BenchError::InvalidArgument(format!("{flag}: empty"))),
        Some(bad) => Err(BenchError::InvalidArgument(format!(
            "{flag} {bad:?}: out of range"
        ))),
        None => Ok(()),
    }
}

fn check_throttle(rates: &[f64], burst: f64) -> Result<()> {
    check_list("--rates", rates, |r| r.is_finite() && *r > 0.0 && *r <= 1e6)?;
    check_list("--burst", &[burst], |b| {
        b.is_finite() && *b >= 1.0 && *b <= 1e6
    })
}

fn sizes(texts: &[&str]) -> Result<Vec<usize>> {
    texts
        .iter()
        .map(|text| parse_bytes(text).map_err(BenchError::InvalidArgument))
        .collect()
}

/// Every workload with its default sizes, connections, window and batch.
fn all(common: &Common) -> Result<()> {
    let mut outcome = Outcome::default();
    let enqueue_settings = common.settings(enqueue::DEFAULTS)?;
    let lifecycle_settings = common.settings(lifecycle::DEFAULTS)?;
    let latency_settings = common.settings(latency::DEFAULTS)?;
    let rtt_settings = common.settings(rtt::DEFAULTS)?;
    let enqueue_sizes = sizes(&["64", "1KiB", "64KiB"])?;
    let lifecycle_sizes = sizes(&["64", "1KiB"])?;
    let latency_sizes = sizes(&["1KiB"])?;
    let rtt_sizes = sizes(&["64"])?;
    let rates = [Rate::PerSecond(10_000.0)];
    // A failing workload (for example a server that stops answering) is recorded and the
    // others still run; the reports are written and the exit status says what failed.
    let mut failed = Vec::new();
    let mut keep = |name: &str, result: Result<Outcome>| match result {
        Ok(part) => outcome.extend(part),
        Err(error) => {
            eprintln!("fila-bench: {name} failed: {error}");
            outcome.notes.push(format!("{name} failed: {error}"));
            failed.push(name.to_owned());
        }
    };
    keep(
        "enqueue",
        on_server(common, |addr| {
            enqueue::run(addr, &enqueue_settings, &enqueue_sizes)
        }),
    );
    keep(
        "lifecycle",
        on_server(common, |addr| {
            lifecycle::run(addr, &lifecycle_settings, &lifecycle_sizes)
        }),
    );
    keep(
        "latency",
        on_server(common, |addr| {
            latency::run(addr, &latency_settings, &latency_sizes, &rates)
        }),
    );
    keep(
        "rtt",
        on_server(common, |addr| rtt::run(addr, &rtt_settings, &rtt_sizes)),
    );
    // The scheduling and scale workloads run briefly in `all` (one run of at most 5 s).
    let fairness_settings = brief(&common.settings(fairness::DEFAULTS)?);
    let throttle_settings = brief(&common.settings(throttle::DEFAULTS)?);
    let lua_settings = brief(&common.settings(lua::DEFAULTS)?);
    let keys_settings = brief(&common.settings(keys::DEFAULTS)?);
    let shards_settings = brief(&common.settings(shards::DEFAULTS)?);
    let depth_settings = brief(&common.settings(depth::DEFAULTS)?);
    let weights = [1, 2, 3, 4, 5];
    let backlog = 40_000;
    let throttle_rates = [50.0, 200.0, 1_000.0];
    let burst = 10.0;
    let lua_sizes = sizes(&["64"])?;
    let key_counts = [10, 1_000, 100_000];
    let shard_counts = [1, 2];
    let backlog_depth = 200_000;
    keep(
        "fairness",
        on_server(common, |addr| {
            fairness::run(addr, &fairness_settings, &weights, backlog)
        }),
    );
    keep(
        "throttle",
        on_server(common, |addr| {
            throttle::run(addr, &throttle_settings, &throttle_rates, burst)
        }),
    );
    keep(
        "lua",
        on_server(common, |addr| lua::run(addr, &lua_settings, &lua_sizes)),
    );
    keep(
        "keys",
        on_server(common, |addr| keys::run(addr, &keys_settings, &key_counts)),
    );
    keep(
        "shards",
        shards::run(common, &shards_settings, &shard_counts),
    );
    keep(
        "depth",
        on_target(common, |target| {
            depth::run(target, &depth_settings, backlog_depth)
        }),
    );
    let config = serde_json::json!({
        "workload": "all",
        "enqueue": {"payload": enqueue_sizes, "settings": enqueue_settings},
        "lifecycle": {"payload": lifecycle_sizes, "settings": lifecycle_settings},
        "latency": {"payload": latency_sizes, "rates": rates, "settings": latency_settings},
        "rtt": {"payload": rtt_sizes, "settings": rtt_settings},
        "fairness": {"weights": weights, "backlog": backlog, "settings": fairness_settings},
        "throttle": {"rates": throttle_rates, "burst": burst, "settings": throttle_settings},
        "lua": {"payload": lua_sizes, "settings": lua_settings},
        "keys": {"key_counts": key_counts, "settings": keys_settings},
        "shards": {"shard_counts": shard_counts, "settings": shards_settings},
        "depth": {"depth": backlog_depth, "settings": depth_settings},
    });
    let defaults = (
        PathBuf::from(ALL_JSON_DEFAULT),
        PathBuf::from(ALL_REPORT_DEFAULT),
    );
    finish(common, config, outcome, Some(defaults))?;
    if failed.is_empty() {
        Ok(())
    } else {
        Err(BenchError::WorkloadsFailed(failed.join(", ")))
    }
}

/// Builds the report, prints the headline table and writes the requested files.
fn finish(
    common: &Common,
    workload_config: serde_json::Value,
    outcome: Outcome,
    default_paths: Option<(PathBuf, PathBuf)>,
) -> Result<()> {
    let mut config = serde_json::to_value(common).unwrap_or(serde_json::Value::Null);
    if let (Some(map), serde_json::Value::Object(extra)) = (config.as_object_mut(), workload_config)
    {
        map.extend(extra);
    }
    let report = Report {
        bench_version: env!("CARGO_PKG_VERSION").to_owned(),
        commit: machine::git_commit(),
        unix_time_s: crate::clock::unix_time_s(),
        machine: machine::this_machine(),
        config,
        figures: outcome.figures,
        notes: outcome.notes,
    };
    println!("{}", markdown_table(&report.figures));
    for note in &report.notes {
        println!("note: {note}");
    }
    let (json_default, report_default) = match default_paths {
        Some((json, markdown)) => (Some(json), Some(markdown)),
        None => (None, None),
    };
    if let Some(path) = common.json.clone().or(json_default) {
        ensure_parent(&path)?;
        report.write_json(&path)?;
        eprintln!("fila-bench: wrote {}", path.display());
    }
    if let Some(path) = common.report.clone().or(report_default) {
        ensure_parent(&path)?;
        let mut markdown = report.to_markdown();
        markdown.push_str(&write_charts(&report.figures, &path));
        write_file(&path, &markdown)?;
        eprintln!("fila-bench: wrote {}", path.display());
    }
    Ok(())
}

/// Writes the SVG charts next to the Markdown report at `report` and returns the Markdown
/// section linking them (empty when no chart applies). A chart that fails is reported in the
/// section instead of failing the run.
fn write_charts(figures: &[crate::report::Figure], report: &Path) -> String {
    let charts = crate::charts::charts(figures);
    if charts.is_empty() {
        return String::new();
    }
    let stem = report
        .file_stem()
        .map_or_else(|| "report".to_owned(), |s| s.to_string_lossy().into_owned());
    let dir = report.parent().unwrap_or(Path::new(""));
    let mut out = String::from("\n## Charts\n\n");
    for chart in &charts {
        let file = format!("{stem}-{}.svg", chart.name);
        match crate::charts::render_svg(chart, &dir.join(&file)) {
            Ok(()) => {
                out.push_str(&format!("![{}]({file})\n\n", chart.title));
                eprintln!("fila-bench: wrote {}", dir.join(&file).display());
            }
            Err(error) => out.push_str(&format!("- {error}\n")),
        }
    }
    out
}

fn ensure_parent(path: &Path) -> Result<()> {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => {
            std::fs::create_dir_all(parent).map_err(|source| BenchError::File {
                doing: "create the directory of",
                path: path.to_owned(),
                source,
            })
        }
        _ => Ok(()),
    }
}

fn compare_files(old: &Path, new: &Path, threshold: f64) -> Result<()> {
    if !(threshold.is_finite() && (0.0..1.0).contains(&threshold)) {
        return Err(BenchError::InvalidArgument(format!(
            "--threshold {threshold}: must be at least 0 and below 1"
        )));
    }
    let old_report = Report::read_json(old)?;
    let new_report = Report::read_json(new)?;
    let comparison = compare::compare(&old_report, &new_report, threshold);
    print!("{}", compare::render(&comparison));
    match comparison.regressions() {
        0 => Ok(()),
        count => Err(BenchError::Regressions {
            count,
            threshold_pct: threshold * 100.0,
        }),
    }
}
