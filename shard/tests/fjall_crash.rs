//! Crash and failure tests for FjallStorage with real processes (harness = false).
//!
//! The test binary re-executes itself as a child (`FILA_CRASH_CHILD=<dir>`) that opens the
//! storage and applies numbered batches in a loop, printing `ack <n>` (flushed) once `n` is
//! acknowledged. The parent reads acknowledgements, kills the child with SIGKILL, reopens the
//! directory and checks that every acknowledged batch is fully present and that no batch is
//! partially present. Modes: `process`, `fsync`, and `group` (apply_unsynced + SyncHandle).
//!
//! The write-failure test limits the child's file size with `prlimit --fsize` after open (root
//! is not exempt, so it works in CI), which makes journal writes fail with EFBIG — the same
//! error path as a full disk. The child must report an error, then `Poisoned` for every later
//! write and sync, never panic; the parent checks nothing acknowledged was lost or damaged.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};

use fila_shard::storage::fjall::{Durability, FjallOptions, FjallStorage};
use fila_shard::storage::{Keyspace, Storage, StorageError, WriteBatch};
use tempfile::TempDir;

const CHILD_DIR: &str = "FILA_CRASH_CHILD";
const CHILD_MODE: &str = "FILA_CRASH_MODE";
const CHILD_FSIZE: &str = "FILA_CRASH_FSIZE";
/// Puts per batch; with the value size below a batch is ~13 KiB, larger than fjall's
/// 8 KiB journal buffer, so a kill can land in the middle of a batch's write.
const ITEMS: u8 = 40;
const PADDING: usize = 300;
const GROUP: u64 = 8;

fn key(n: u64, item: u8) -> Vec<u8> {
    [n.to_be_bytes().as_slice(), &[item]].concat()
}

fn value(n: u64, item: u8) -> Vec<u8> {
    let mut value = [n.to_be_bytes().as_slice(), &[item]].concat();
    value.resize(9 + PADDING, n as u8);
    value
}

/// Batch `n`: puts (n, 0..ITEMS), deletes (n-1, 0), and records `last = n`.
fn batch(n: u64) -> WriteBatch {
    let mut batch = WriteBatch::new();
    for item in 0..ITEMS {
        batch.put(Keyspace::Messages, key(n, item), value(n, item));
    }
    if n > 0 {
        batch.delete(Keyspace::Messages, key(n - 1, 0));
    }
    batch.put(Keyspace::Meta, b"last".to_vec(), n.to_be_bytes().to_vec());
    batch
}

// ---------------------------------------------------------------- child side

fn child(dir: &str) {
    let mode = std::env::var(CHILD_MODE).unwrap();
    let group = mode == "group";
    let durability = if group {
        Durability::Fsync
    } else {
        mode.parse::<Durability>().unwrap()
    };
    let mut store = FjallStorage::open(
        dir,
        FjallOptions {
            durability,
            ..FjallOptions::default()
        },
    )
    .unwrap();
    if let Ok(limit) = std::env::var(CHILD_FSIZE) {
        let status = Command::new("prlimit")
            .arg(format!("--pid={}", std::process::id()))
            .arg(format!("--fsize={limit}"))
            .status()
            .expect("prlimit (util-linux) is needed for the write-failure test");
        assert!(status.success(), "prlimit failed: {status}");
    }
    let handle = store.sync_handle();
    // Continue after the last batch a previous child left.
    let first = store.get(Keyspace::Meta, b"last").unwrap().map_or(0, |v| {
        u64::from_be_bytes(v.as_slice().try_into().unwrap()) + 1
    });
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready {first}").unwrap();
    out.flush().unwrap();
    for n in first..first + 10_000_000 {
        let batch = batch(n);
        let result = if group {
            store.apply_unsynced(&batch).and_then(|()| {
                if n % GROUP == GROUP - 1 {
                    handle.sync()
                } else {
                    Ok(())
                }
            })
        } else {
            store.apply(&batch)
        };
        if let Err(error) = result {
            let kind = match &error {
                StorageError::Backend(_) => "backend",
                StorageError::Poisoned => "poisoned",
                StorageError::Corrupt { .. } => "corrupt",
            };
            writeln!(out, "error {kind}: {error}").unwrap();
            let again = store.apply(&batch);
            writeln!(out, "then {}", poison_word(&again)).unwrap();
            let again = store.apply_unsynced(&batch);
            writeln!(out, "then {}", poison_word(&again)).unwrap();
            writeln!(out, "sync {}", poison_word(&handle.sync())).unwrap();
            writeln!(out, "is_poisoned {}", store.is_poisoned()).unwrap();
            out.flush().unwrap();
            return;
        }
        let acked = if group {
            (n % GROUP == GROUP - 1).then(|| (n + 1 - GROUP).max(first)..=n)
        } else {
            Some(n..=n)
        };
        for a in acked.into_iter().flatten() {
            // The parent going away (broken pipe) ends the child.
            if writeln!(out, "ack {a}").is_err() || out.flush().is_err() {
                return;
            }
        }
    }
}

fn poison_word(result: &Result<(), StorageError>) -> &'static str {
    match result {
        Ok(()) => "ok",
        Err(StorageError::Poisoned) => "poisoned",
        Err(_) => "other-error",
    }
}

// ---------------------------------------------------------------- parent side

/// Kills the child on drop, so a failing assertion never leaves it running.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_child(dir: &Path, mode: &str, fsize: Option<u64>) -> (ChildGuard, BufReader<ChildStdout>) {
    let exe = std::env::current_exe().unwrap();
    let mut command = match fsize {
        // Ignore SIGXFSZ (the disposition survives exec) so a write over the file-size
        // limit fails with EFBIG instead of killing the child.
        Some(limit) => {
            let mut command = Command::new("sh");
            command
                .arg("-c")
                .arg("trap '' XFSZ; exec \"$0\"")
                .arg(&exe)
                .env(CHILD_FSIZE, limit.to_string());
            command
        }
        None => Command::new(&exe),
    };
    command
        .env(CHILD_DIR, dir)
        .env(CHILD_MODE, mode)
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    let mut child = command.spawn().unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    (ChildGuard(child), stdout)
}

fn next_line(stdout: &mut BufReader<ChildStdout>) -> Option<String> {
    let mut line = String::new();
    match stdout.read_line(&mut line).unwrap() {
        0 => None,
        _ => Some(line.trim_end().to_owned()),
    }
}

fn parse_ack(line: &str) -> u64 {
    line.strip_prefix("ack ")
        .unwrap_or_else(|| panic!("unexpected child line {line:?}"))
        .parse()
        .unwrap()
}

/// Reopens `dir` and checks that batches 0..=last are fully present, with last >= acked,
/// and that no later batch is partially present. Returns `last`.
fn verify(dir: &Path, acked: Option<u64>) -> Option<u64> {
    let store = FjallStorage::open(dir, FjallOptions::default()).unwrap();
    let mut by_batch: BTreeMap<u64, Vec<(u8, Vec<u8>)>> = BTreeMap::new();
    store
        .scan_prefix(Keyspace::Messages, b"", &mut |k, v| {
            assert_eq!(k.len(), 9, "unexpected key {k:?}");
            let n = u64::from_be_bytes(k[..8].try_into().unwrap());
            by_batch.entry(n).or_default().push((k[8], v.to_vec()));
            Ok(true)
        })
        .unwrap();
    let last_meta = store
        .get(Keyspace::Meta, b"last")
        .unwrap()
        .map(|v| u64::from_be_bytes(v.as_slice().try_into().unwrap()));
    let last = by_batch.keys().next_back().copied();
    assert_eq!(
        last, last_meta,
        "messages and meta disagree on the last batch"
    );
    if let Some(acked) = acked {
        let last = last.expect("acknowledged batches are missing");
        assert!(
            last >= acked,
            "acknowledged batch {acked} lost, last on disk {last}"
        );
    }
    if let Some(last) = last {
        assert_eq!(
            by_batch.len() as u64,
            last + 1,
            "a batch is missing entirely"
        );
        for (n, items) in &by_batch {
            let first = if *n == last { 0 } else { 1 };
            let expected: Vec<(u8, Vec<u8>)> =
                (first..ITEMS).map(|item| (item, value(*n, item))).collect();
            assert_eq!(
                items, &expected,
                "batch {n} is partially present (last {last})"
            );
        }
    }
    last
}

fn crash_test(mode: &str, acks_before_kill: u64) {
    let dir = TempDir::new().unwrap();
    for round in 0..2 {
        // Round 1 continues on the recovered directory from round 0.
        let before = verify(dir.path(), None);
        let (mut child, mut stdout) = spawn_child(dir.path(), mode, None);
        let first = before.map_or(0, |last| last + 1);
        assert_eq!(next_line(&mut stdout), Some(format!("ready {first}")));
        let mut acked = None;
        for _ in 0..acks_before_kill {
            let line = next_line(&mut stdout).expect("child ended early");
            acked = Some(parse_ack(&line));
        }
        child.0.kill().unwrap();
        child.0.wait().unwrap();
        // Lines already in the pipe were acknowledged too.
        while let Some(line) = next_line(&mut stdout) {
            acked = Some(parse_ack(&line));
        }
        let acked = acked.unwrap();
        let last = verify(dir.path(), Some(acked)).unwrap();
        println!(
            "  {mode} round {round}: started after batch {before:?}, acked up to {acked}, recovered up to {last}"
        );
        assert!(acked + 1 >= first + acks_before_kill);
    }
}

fn crash_in_process_mode_loses_nothing_acknowledged() {
    crash_test("process", 300);
}

fn crash_in_fsync_mode_loses_nothing_acknowledged() {
    crash_test("fsync", 60);
}

fn crash_with_group_commit_loses_nothing_acknowledged() {
    crash_test("group", 120);
}

fn a_failing_write_poisons_and_damages_nothing() {
    let dir = TempDir::new().unwrap();
    // 4 MiB: the fresh journal is written from offset 0, so roughly 300 batches fit.
    let (mut child, mut stdout) = spawn_child(dir.path(), "process", Some(4 * 1024 * 1024));
    assert_eq!(next_line(&mut stdout).as_deref(), Some("ready 0"));
    let mut acked = None;
    let mut tail = Vec::new();
    while let Some(line) = next_line(&mut stdout) {
        if tail.is_empty() && line.starts_with("ack ") {
            acked = Some(parse_ack(&line));
        } else {
            tail.push(line);
        }
    }
    let status = child.0.wait().unwrap();
    assert!(
        status.success(),
        "child failed: {status}, output tail {tail:?}"
    );
    let acked = acked.expect("no batch was acknowledged before the failure");
    assert!(acked > 10, "failed too early: {acked}");
    assert_eq!(tail.len(), 5, "{tail:?}");
    assert!(tail[0].starts_with("error backend: "), "{tail:?}");
    assert!(
        tail[0].contains("File too large") || tail[0].contains("FileTooLarge"),
        "{tail:?}"
    );
    assert_eq!(
        &tail[1..],
        [
            "then poisoned",
            "then poisoned",
            "sync poisoned",
            "is_poisoned true"
        ],
    );
    let last = verify(dir.path(), Some(acked)).unwrap();
    println!(
        "  write failure: {} ; acked up to {acked}, recovered up to {last}",
        tail[0]
    );
    // The recovered database accepts writes again.
    let mut store = FjallStorage::open(dir.path(), FjallOptions::default()).unwrap();
    store.apply(&batch(last + 1)).unwrap();
    drop(store);
    assert_eq!(verify(dir.path(), Some(last + 1)), Some(last + 1));
}

type Test = (&'static str, fn());

const TESTS: &[Test] = &[
    (
        "crash_in_process_mode_loses_nothing_acknowledged",
        crash_in_process_mode_loses_nothing_acknowledged,
    ),
    (
        "crash_in_fsync_mode_loses_nothing_acknowledged",
        crash_in_fsync_mode_loses_nothing_acknowledged,
    ),
    (
        "crash_with_group_commit_loses_nothing_acknowledged",
        crash_with_group_commit_loses_nothing_acknowledged,
    ),
    (
        "a_failing_write_poisons_and_damages_nothing",
        a_failing_write_poisons_and_damages_nothing,
    ),
];

fn main() {
    if let Ok(dir) = std::env::var(CHILD_DIR) {
        child(&dir);
        return;
    }
    // Honour a name filter like the libtest harness does; ignore its flags.
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let selected: Vec<&Test> = TESTS
        .iter()
        .filter(|(name, _)| filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str())))
        .collect();
    println!("running {} tests", selected.len());
    for (name, test) in &selected {
        println!("test {name} ...");
        test();
        println!("test {name} ... ok");
    }
    println!("test result: ok. {} passed", selected.len());
}
