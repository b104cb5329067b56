//! The data plane before the bookkeeping. `keygate serve` runs the proxy
//! on its own threads (`keygate-proxy-N`) and everything else — the admin
//! port, the reloader, the usage flush, the quota and fleet syncs, the
//! SQLite workers — on the others. Those others run at a lower priority
//! (nice `BACKGROUND_NICE`): on a saturated core the scheduler gives the
//! proxy threads the CPU first. Background work still runs (a nice-10
//! thread gets about a tenth of a contended core, far more than it needs),
//! and on an idle core it runs at once. Threads started later by a lowered
//! thread inherit its priority.
//!
//! A priority does not shorten a wait, though: the kernel's scheduler
//! (EEVDF) lets a thread it has just picked finish its time slice before a
//! woken one runs, so a request arriving while a usage flush runs on the
//! proxy's core can wait up to ~2 ms (benches/README.md, "The
//! one-connection tail"). `SCHED_IDLE`, `SCHED_BATCH`, `sched_yield` or
//! short sleeps in the flush and in SQLite's progress handler, and a
//! shorter slice for the proxy threads, were measured and not kept: each
//! starves the background (and the admin plane) when the proxy saturates
//! its core, costs throughput, or did not help.

/// The name the proxy's threads start with.
pub const PROXY_THREAD: &str = "keygate-proxy-";

/// The nice value of the threads that are not the proxy's.
pub const BACKGROUND_NICE: i32 = 10;

/// Lowers every thread of this process but the proxy's to
/// `BACKGROUND_NICE` (never raising one already lower); returns how many
/// it lowered. Raising a nice value needs no privilege; where it is
/// refused anyway (a seccomp filter), threads keep their priority.
pub fn lower_background() -> usize {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return 0 };
    let mut lowered = 0;
    for task in tasks.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.starts_with(PROXY_THREAD) {
            continue;
        }
        let tid = task.file_name().to_str().and_then(|t| t.parse::<i32>().ok());
        let Some(pid) = tid.and_then(rustix::process::Pid::from_raw) else { continue };
        if rustix::process::getpriority_process(Some(pid)).is_ok_and(|nice| nice >= BACKGROUND_NICE) {
            continue;
        }
        if rustix::process::setpriority_process(Some(pid), BACKGROUND_NICE).is_ok() {
            lowered += 1;
        }
    }
    lowered
}
