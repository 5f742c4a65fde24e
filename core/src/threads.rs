//! How many worker threads to use by default: one per physical core. Hyper-threads share a
//! core's vector units and its bandwidth, so they add contention, not throughput, to matmuls.

/// Physical cores (Linux: distinct (package, core) pairs in sysfs), else the logical CPU count.
pub fn physical_cores() -> usize {
    let logical = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let mut cores = std::collections::HashSet::new();
        for cpu in 0..logical.max(1) * 2 {
            let base = format!("/sys/devices/system/cpu/cpu{cpu}/topology");
            let read = |f: &str| std::fs::read_to_string(format!("{base}/{f}")).ok().map(|s| s.trim().to_string());
            if let (Some(pkg), Some(core)) = (read("physical_package_id"), read("core_id")) {
                cores.insert((pkg, core));
            }
        }
        if !cores.is_empty() {
            return cores.len().min(logical);
        }
    }
    logical
}

/// A rayon pool of `n` threads (0 = the default), for running the engine with a set count.
pub fn pool(n: usize) -> Result<rayon::ThreadPool, crate::Error> {
    let n = if n == 0 { physical_cores() } else { n };
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .thread_name(|i| format!("pocketlm-{i}"))
        .build()
        .map_err(|e| crate::Error::InvalidArgument(format!("cannot start {n} threads: {e}")))
}
