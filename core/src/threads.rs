//! How many worker threads to use by default, and how much memory the machine has.
//!
//! Matmuls are split evenly across threads, so one slow thread sets the pace: on big.LITTLE
//! phones, work handed to an efficiency core makes everything wait for it. The default is
//! therefore one thread per *performance* core (detected from each core's maximum frequency in
//! sysfs: every core faster than the slowest cluster), never more than the physical cores
//! (hyper-threads share a core's vector units and add contention, not throughput).

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

/// Default worker count: performance cores, else physical cores, else logical CPUs.
pub fn default_threads() -> usize {
    let logical = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let sys = Path::new("/sys/devices/system/cpu");
    let physical = physical_cores(sys, logical).unwrap_or(logical);
    performance_cores(sys, logical).map_or(physical, |p| p.min(physical)).max(1)
}

/// Distinct (package, core) pairs in a Linux/Android sysfs cpu directory.
pub fn physical_cores(sys: &Path, logical: usize) -> Option<usize> {
    let mut cores = HashSet::new();
    for cpu in 0..logical.max(1) * 2 {
        let base = sys.join(format!("cpu{cpu}/topology"));
        let read = |f: &str| std::fs::read_to_string(base.join(f)).ok().map(|s| s.trim().to_string());
        if let (Some(pkg), Some(core)) = (read("physical_package_id"), read("core_id")) {
            cores.insert((pkg, core));
        }
    }
    (!cores.is_empty()).then_some(cores.len())
}

/// Cores faster than the slowest cluster, by `cpufreq/cpuinfo_max_freq`; all cores when every
/// core has the same maximum (a desktop or a single-cluster board). `None` without cpufreq.
pub fn performance_cores(sys: &Path, logical: usize) -> Option<usize> {
    let mut freqs: BTreeMap<usize, u64> = BTreeMap::new();
    for cpu in 0..logical.max(1) * 2 {
        let f = sys.join(format!("cpu{cpu}/cpufreq/cpuinfo_max_freq"));
        if let Some(khz) = std::fs::read_to_string(f).ok().and_then(|s| s.trim().parse::<u64>().ok()) {
            freqs.insert(cpu, khz);
        }
    }
    let slowest = *freqs.values().min()?;
    let fastest = *freqs.values().max()?;
    if slowest == fastest {
        return Some(freqs.len());
    }
    Some(freqs.values().filter(|&&f| f > slowest).count())
}

/// Most threads [`pool`] starts per logical CPU.
pub const MAX_THREADS_PER_CPU: usize = 4;

/// A rayon pool of `n` threads (0 = [`default_threads`]), for running the engine with a set
/// count.
pub fn pool(n: usize) -> Result<rayon::ThreadPool, crate::Error> {
    let n = if n == 0 { default_threads() } else { n };
    // Matmuls split rows evenly over threads: past a few per CPU they only add wake-ups (and
    // an absurd count would spend minutes creating threads), so refuse rather than hang.
    let logical = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let max = MAX_THREADS_PER_CPU * logical;
    if n > max {
        return Err(crate::Error::InvalidArgument(format!(
            "{n} threads: at most {max} ({MAX_THREADS_PER_CPU} per CPU on this machine's {logical})"
        )));
    }
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .thread_name(|i| format!("pocketlm-{i}"))
        .build()
        .map_err(|e| crate::Error::InvalidArgument(format!("cannot start {n} threads: {e}")))
}

/// Memory the system can give this process now (Linux/Android `MemAvailable`), in bytes;
/// `None` where the platform does not say (the caller then does not cap).
pub fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib.saturating_mul(1024))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_sysfs(freqs: &[u64], smt: usize) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (i, f) in freqs.iter().enumerate() {
            let cpu = dir.path().join(format!("cpu{i}"));
            std::fs::create_dir_all(cpu.join("cpufreq")).unwrap();
            std::fs::create_dir_all(cpu.join("topology")).unwrap();
            std::fs::write(cpu.join("cpufreq/cpuinfo_max_freq"), format!("{f}\n")).unwrap();
            std::fs::write(cpu.join("topology/physical_package_id"), "0\n").unwrap();
            std::fs::write(cpu.join("topology/core_id"), format!("{}\n", i / smt)).unwrap();
        }
        dir
    }

    #[test]
    fn big_little_phone_uses_the_big_cores() {
        // 4 x Cortex-A55 @ 1.8 GHz, 3 x A78 @ 2.4 GHz, 1 x X1 @ 2.8 GHz.
        let d =
            fake_sysfs(&[1_800_000, 1_800_000, 1_800_000, 1_800_000, 2_400_000, 2_400_000, 2_400_000, 2_800_000], 1);
        assert_eq!(performance_cores(d.path(), 8), Some(4));
        assert_eq!(physical_cores(d.path(), 8), Some(8));
    }

    #[test]
    fn uniform_cores_use_all_physical_cores() {
        let d = fake_sysfs(&[3_000_000; 4], 2); // 2 cores x 2 hyper-threads
        assert_eq!(performance_cores(d.path(), 4), Some(4));
        assert_eq!(physical_cores(d.path(), 4), Some(2));
    }

    #[test]
    fn missing_sysfs_falls_back() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(performance_cores(d.path(), 4), None);
        assert_eq!(physical_cores(d.path(), 4), None);
        assert!(default_threads() >= 1);
    }
}
