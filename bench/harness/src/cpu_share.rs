//! A 128 MB function's share of a CPU, enforced by the kernel: a cgroup
//! whose CPU bandwidth is 128/1769 of one CPU, into which a cold-start
//! process is moved when its init ends.
//!
//! Why: Lambda runs init at full speed, then gives an invocation of a
//! 128 MB function about 7.2 % of a vCPU, in slices: a CPU-bound loop at
//! 128 MB, measured on AWS (github.com/pwrdrvr/lambda-throttling, its
//! published 128 MB timeline), runs about 1.45 ms and is then paused for
//! 20, 40, 60 or 80 ms, i.e. CFS bandwidth control with a 20 ms period.
//! The same limit here turns the model (CPU time × 1769/128) into a
//! measurement, with the slices' granularity and any overlap of CPU work
//! with network waits that a model cannot see.
//!
//! cgroup v2 (`cpu.max`) or v1 (`cpu.cfs_quota_us`, `cpu.cfs_period_us`),
//! whichever the machine mounts with its `cpu` controller; creating one
//! needs root. Without either, the bench says so and skips the round.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::report::{CPU_SHARE_AT_128_MB as SHARE, round};

/// The period Lambda's slices were measured at (see the module's comment).
pub const DEFAULT_PERIOD_US: u64 = 20_000;

/// The kernel's smallest quota.
const MIN_QUOTA_US: u64 = 1_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    V1,
    V2,
}

#[derive(Debug)]
pub struct CpuShare {
    dir: PathBuf,
    version: Version,
    period_us: u64,
    quota_us: u64,
}

impl CpuShare {
    /// Creates the cgroup under whichever hierarchy has the `cpu` controller.
    pub fn create(period_us: u64) -> Result<CpuShare, String> {
        let quota_us = quota_for(period_us);
        if quota_us < MIN_QUOTA_US {
            let shortest = (MIN_QUOTA_US as f64 / SHARE).ceil();
            return Err(format!(
                "a {period_us} µs period gives a {quota_us} µs quota, under the kernel's \
                 {MIN_QUOTA_US} µs: use a period of at least {shortest} µs"
            ));
        }
        let name = format!("phone-auth-bench-{}", std::process::id());
        let (dir, version) = if has_cpu_controller("/sys/fs/cgroup/cgroup.controllers") {
            // v2: the root must hand the controller down to its children.
            let _ = std::fs::write("/sys/fs/cgroup/cgroup.subtree_control", "+cpu");
            (Path::new("/sys/fs/cgroup").join(name), Version::V2)
        } else if Path::new("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").is_file() {
            (Path::new("/sys/fs/cgroup/cpu").join(name), Version::V1)
        } else {
            return Err("no cgroup with the cpu controller is mounted".into());
        };
        std::fs::create_dir(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let share = CpuShare {
            dir,
            version,
            period_us,
            quota_us,
        };
        let limited = match version {
            Version::V2 => share.write("cpu.max", &format!("{quota_us} {period_us}")),
            Version::V1 => share
                .write("cpu.cfs_period_us", &period_us.to_string())
                .and_then(|()| share.write("cpu.cfs_quota_us", &quota_us.to_string())),
        };
        // On error, `share` is dropped here, and its directory removed.
        limited.map(|()| share)
    }

    fn write(&self, file: &str, value: &str) -> Result<(), String> {
        std::fs::write(self.dir.join(file), value).map_err(|e| {
            format!(
                "cannot write {value:?} to {}: {e}",
                self.dir.join(file).display()
            )
        })
    }

    /// Moves process `pid`, every thread of it, into the share.
    pub fn admit(&self, pid: u32) -> Result<(), String> {
        self.write("cgroup.procs", &pid.to_string())
    }

    /// The share's settings, and how often the kernel held its processes
    /// back and for how long in all: a round never held back measured nothing.
    pub fn to_json(&self) -> Value {
        let stat = std::fs::read_to_string(self.dir.join("cpu.stat")).unwrap_or_default();
        let field = |key: &str| {
            stat.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let throttled_ms = match self.version {
            Version::V1 => field("throttled_time") as f64 / 1e6,
            Version::V2 => field("throttled_usec") as f64 / 1e3,
        };
        json!({
            "period_us": self.period_us,
            "quota_us": self.quota_us,
            "throttled_periods": field("nr_throttled"),
            "throttled_ms": round(throttled_ms, 1),
        })
    }

    pub fn describe(&self) -> String {
        let version = match self.version {
            Version::V1 => "v1",
            Version::V2 => "v2",
        };
        format!(
            "{} µs of CPU per {} µs (cgroup {version}, {})",
            self.quota_us,
            self.period_us,
            self.dir.display()
        )
    }
}

impl Drop for CpuShare {
    /// The processes moved in have all exited by now (each cold start stops its own).
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// 128/1769 of `period_us`, in whole microseconds.
fn quota_for(period_us: u64) -> u64 {
    (period_us as f64 * SHARE).round() as u64
}

/// A v2 hierarchy's controllers file lists `cpu` (not only `cpuset`).
fn has_cpu_controller(path: &str) -> bool {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .split_whitespace()
        .any(|c| c == "cpu")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_quota_is_128_mb_of_1769_per_cpu() {
        // Creating a cgroup needs root; only the arithmetic is checked here.
        assert_eq!(quota_for(DEFAULT_PERIOD_US), 1447);
        assert!(
            CpuShare::create(10_000)
                .unwrap_err()
                .contains("at least 13821 µs")
        );
    }
}
