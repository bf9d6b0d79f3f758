//! Helpers shared by the stages benches (included with `#[path]`).

/// This process's peak resident memory so far, MiB.
pub fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

/// uinfo's allocator, so the benches place buffers (cache-line aligned) as `uinfo` does: with
/// the system allocator a large buffer starts 16 bytes past a line and every vector load from
/// it splits across two lines.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
