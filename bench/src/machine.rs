//! Facts about where a benchmark ran: CPU count and model, memory, and the git commit of the
//! working directory. Every fact is optional; a missing one is reported as unknown.

use std::process::Command;

use crate::report::Machine;

/// The machine this process runs on.
pub fn this_machine() -> Machine {
    Machine {
        nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
        cpu_model: std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|text| cpu_model(&text)),
        memory_mib: std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|text| memory_mib(&text)),
        load_generator_on_server_machine: true,
    }
}

/// `git rev-parse HEAD` in the current directory, when git and a repository are there.
pub fn git_commit() -> Option<String> {
    let output = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let commit = String::from_utf8(output.stdout).ok()?.trim().to_owned();
    (!commit.is_empty()).then_some(commit)
}

/// The first `model name` line of /proc/cpuinfo text.
fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo
        .lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(key, _)| key.trim() == "model name")
        .map(|(_, value)| value.trim().to_owned())
}

/// `MemTotal` of /proc/meminfo text, in MiB.
fn memory_mib(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|line| line.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_are_parsed() {
        let cpuinfo = "processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t: x\n";
        assert_eq!(cpu_model(cpuinfo).as_deref(), Some("AMD EPYC 7B13"));
        assert_eq!(cpu_model("processor : 0\n"), None);
        assert_eq!(memory_mib("MemTotal:       25165824 kB\n"), Some(24_576));
        assert_eq!(memory_mib("MemFree: 1 kB\n"), None);
    }
}
