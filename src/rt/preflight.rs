//! Start-up checks of what glommio needs from the host (kernel ≥ 5.8 with io_uring enabled, a
//! memlock limit of at least 512 KiB, enough CPUs to pin to), so that a refusal is one clear
//! sentence instead of glommio's panic ("kernel too old") or its `MemLockLimit` error.
//! Facts are read from `/proc` once; the verdict is a pure function of them.

use std::path::Path;

/// glommio refuses to create an executor below this soft `RLIMIT_MEMLOCK`.
pub const MEMLOCK_MIN_BYTES: u64 = 512 * 1024;
/// Oldest kernel with the io_uring features glommio uses.
pub const KERNEL_MIN: (u32, u32) = (5, 8);

/// What the host offers, as read from `/proc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFacts {
    /// `/proc/sys/kernel/osrelease`, e.g. `6.1.0-18-amd64`.
    pub kernel_release: String,
    /// `/proc/sys/kernel/io_uring_disabled`: 0 on, 1 root/group only, 2 off; `None` if absent
    /// (kernels before 6.6 have no switch).
    pub io_uring_disabled: Option<u8>,
    /// Soft `RLIMIT_MEMLOCK` in bytes; `None` = unlimited.
    pub memlock_bytes: Option<u64>,
    /// CPUs this process may run on, from `Cpus_allowed_list`.
    pub cpus: Vec<usize>,
    /// Effective uid 0 (the memlock limit does not apply to pinned io buffers then).
    pub root: bool,
}

/// What the server is about to ask of the host.
#[derive(Debug, Clone, Copy)]
pub struct Demand {
    /// Executors to start.
    pub shards: usize,
    /// Whether each is pinned to its own CPU.
    pub pin_cores: bool,
    /// Bytes of io buffers each executor registers with each of its three rings.
    pub io_memory_bytes: u64,
}

/// A host that cannot run the server as configured.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PreflightError {
    /// Kernel older than 5.8.
    #[error("kernel {release} is too old: fila-server needs Linux 5.8 or newer (io_uring)")]
    KernelTooOld {
        /// The release string.
        release: String,
    },
    /// io_uring switched off by sysctl.
    #[error(
        "io_uring is disabled on this host (/proc/sys/kernel/io_uring_disabled = {value}); \
         fila-server needs it: set the sysctl kernel.io_uring_disabled=0{hint}"
    )]
    IoUringDisabled {
        /// The sysctl value.
        value: u8,
        /// Extra advice for value 1.
        hint: &'static str,
    },
    /// Memlock limit below glommio's minimum.
    #[error(
        "the locked-memory limit (RLIMIT_MEMLOCK) is {have} KiB; fila-server needs at least \
         {need} KiB for io_uring: raise it (`ulimit -l 65536`, LimitMEMLOCK=64M in a systemd \
         unit, `--ulimit memlock=-1` for docker run)"
    )]
    MemlockTooLow {
        /// Current soft limit in KiB.
        have: u64,
        /// Required KiB.
        need: u64,
    },
    /// More pinned shards than usable CPUs.
    #[error(
        "cannot pin {shards} shards: this process may run on {cpus} CPU(s); \
         use --shards {cpus} or set [server] pin_cores = false"
    )]
    TooFewCpus {
        /// Shards asked for.
        shards: usize,
        /// CPUs available.
        cpus: usize,
    },
}

impl HostFacts {
    /// Reads the facts of the running host. Missing files degrade to "unknown", never to errors:
    /// glommio's own check still stands behind this one.
    pub fn read() -> HostFacts {
        let proc = |path: &str| std::fs::read_to_string(Path::new(path)).unwrap_or_default();
        let status = proc("/proc/self/status");
        HostFacts {
            kernel_release: proc("/proc/sys/kernel/osrelease").trim().to_owned(),
            io_uring_disabled: proc("/proc/sys/kernel/io_uring_disabled")
                .trim()
                .parse()
                .ok(),
            memlock_bytes: parse_memlock(&proc("/proc/self/limits")),
            cpus: status_field(&status, "Cpus_allowed_list")
                .and_then(parse_cpu_list)
                .filter(|cpus| !cpus.is_empty())
                .unwrap_or_else(fallback_cpus),
            root: status_field(&status, "Uid")
                .and_then(|uids| uids.split_whitespace().nth(1))
                .is_some_and(|euid| euid == "0"),
        }
    }

    /// Checks the facts against the demand; `Ok` carries warnings worth logging.
    pub fn check(&self, demand: Demand) -> Result<Vec<String>, PreflightError> {
        if parse_kernel_version(&self.kernel_release).is_some_and(|version| version < KERNEL_MIN) {
            return Err(PreflightError::KernelTooOld {
                release: self.kernel_release.clone(),
            });
        }
        match self.io_uring_disabled {
            Some(2) => return Err(PreflightError::IoUringDisabled { value: 2, hint: "" }),
            Some(1) if !self.root => {
                let hint = " (value 1 allows only root and the io_uring_group group)";
                return Err(PreflightError::IoUringDisabled { value: 1, hint });
            }
            _ => {}
        }
        let mut warnings = Vec::new();
        if let Some(memlock) = self.memlock_bytes {
            if memlock < MEMLOCK_MIN_BYTES {
                let (have, need) = (memlock / 1024, MEMLOCK_MIN_BYTES / 1024);
                return Err(PreflightError::MemlockTooLow { have, need });
            }
            let wanted = demand
                .io_memory_bytes
                .saturating_mul(3 * demand.shards as u64);
            if !self.root && memlock < wanted {
                warnings.push(format!(
                    "locked-memory limit {} KiB is below the {} KiB of io buffers for {} shards; \
                     io_uring will run with unregistered buffers (slower disk I/O, still correct)",
                    memlock / 1024,
                    wanted / 1024,
                    demand.shards
                ));
            }
        }
        if demand.pin_cores && demand.shards > self.cpus.len() {
            return Err(PreflightError::TooFewCpus {
                shards: demand.shards,
                cpus: self.cpus.len(),
            });
        }
        Ok(warnings)
    }

    /// One line for the log: what was found.
    pub fn summary(&self) -> String {
        let memlock = self.memlock_bytes.map_or("unlimited".to_owned(), |bytes| {
            format!("{} KiB", bytes / 1024)
        });
        let io_uring = self
            .io_uring_disabled
            .map_or("no switch".to_owned(), |value| value.to_string());
        format!(
            "kernel {}, io_uring_disabled {}, memlock {}, {} usable CPU(s), root {}",
            self.kernel_release,
            io_uring,
            memlock,
            self.cpus.len(),
            self.root
        )
    }
}

fn fallback_cpus() -> Vec<usize> {
    let count = std::thread::available_parallelism().map_or(1, |count| count.get());
    (0..count).collect()
}

fn status_field<'a>(status: &'a str, name: &str) -> Option<&'a str> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
}

/// `6.18.44-fc-v1252` → `(6, 18)`.
pub fn parse_kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// The soft limit from the `Max locked memory` line of `/proc/self/limits`; `None` = unlimited
/// or unknown.
pub fn parse_memlock(limits: &str) -> Option<u64> {
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max locked memory"))?;
    line.trim_start_matches("Max locked memory")
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// `0-3,5,7-8` → `[0, 1, 2, 3, 5, 7, 8]`.
pub fn parse_cpu_list(list: &str) -> Option<Vec<usize>> {
    let mut cpus = Vec::new();
    for part in list.trim().split(',').filter(|part| !part.is_empty()) {
        match part.split_once('-') {
            Some((first, last)) => cpus.extend(first.parse::<usize>().ok()?..=last.parse().ok()?),
            None => cpus.push(part.parse().ok()?),
        }
    }
    Some(cpus)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> HostFacts {
        HostFacts {
            kernel_release: "6.1.0-18-amd64".to_owned(),
            io_uring_disabled: Some(0),
            memlock_bytes: Some(8 * 1024 * 1024),
            cpus: vec![0, 1],
            root: false,
        }
    }

    const DEMAND: Demand = Demand {
        shards: 2,
        pin_cores: true,
        io_memory_bytes: 256 * 1024,
    };

    #[test]
    fn parsers() {
        assert_eq!(parse_kernel_version("6.18.44-fc-v1252"), Some((6, 18)));
        assert_eq!(parse_kernel_version("5.4"), Some((5, 4)));
        assert_eq!(parse_kernel_version("garbage"), None);
        assert_eq!(parse_cpu_list("0-3,5,7-8"), Some(vec![0, 1, 2, 3, 5, 7, 8]));
        assert_eq!(parse_cpu_list("x"), None);
        let limits = "Max open files  1024 4096 files\nMax locked memory  8388608 8388608 bytes\n";
        assert_eq!(parse_memlock(limits), Some(8_388_608));
        assert_eq!(
            parse_memlock("Max locked memory unlimited unlimited bytes"),
            None
        );
    }

    #[test]
    fn a_good_host_passes() {
        assert_eq!(host().check(DEMAND), Ok(vec![]));
    }

    #[test]
    fn each_refusal_says_what_to_change() {
        let cases = [
            (
                HostFacts {
                    kernel_release: "5.4.0".to_owned(),
                    ..host()
                },
                "needs Linux 5.8",
            ),
            (
                HostFacts {
                    io_uring_disabled: Some(2),
                    ..host()
                },
                "io_uring_disabled = 2",
            ),
            (
                HostFacts {
                    io_uring_disabled: Some(1),
                    ..host()
                },
                "io_uring_group",
            ),
            (
                HostFacts {
                    memlock_bytes: Some(64 * 1024),
                    ..host()
                },
                "is 64 KiB; fila-server needs at least 512 KiB",
            ),
            (
                HostFacts {
                    cpus: vec![0],
                    ..host()
                },
                "cannot pin 2 shards: this process may run on 1 CPU(s)",
            ),
        ];
        for (facts, expected) in cases {
            let message = facts.check(DEMAND).unwrap_err().to_string();
            assert!(message.contains(expected), "{message}");
        }
    }

    #[test]
    fn unpinned_shards_may_outnumber_cpus_and_root_ignores_io_uring_restriction() {
        let demand = Demand {
            shards: 8,
            pin_cores: false,
            ..DEMAND
        };
        assert!(host().check(demand).is_ok());
        let root = HostFacts {
            io_uring_disabled: Some(1),
            root: true,
            ..host()
        };
        assert!(root.check(DEMAND).is_ok());
    }

    #[test]
    fn small_memlock_for_many_shards_only_warns() {
        let facts = HostFacts {
            memlock_bytes: Some(1024 * 1024),
            ..host()
        };
        let warnings = facts
            .check(Demand {
                shards: 2,
                ..DEMAND
            })
            .unwrap();
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("unregistered buffers"));
    }

    #[test]
    fn reading_this_host_works() {
        let facts = HostFacts::read();
        assert!(!facts.cpus.is_empty());
        assert!(facts.summary().starts_with("kernel "));
    }
}
