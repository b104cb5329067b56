//! The data plane before the bookkeeping. `keygate serve` runs the proxy
//! on its own threads (`keygate-proxy-N`) and everything else — the admin
//! port, the reloader, the usage flush, the quota and fleet syncs, the
//! SQLite workers — on the others. Those others run at a lower priority
//! (nice `BACKGROUND_NICE`): on a saturated core the scheduler gives the
//! proxy threads the CPU first, so a flush's burst of SQL does not stall
//! requests for milliseconds. Background work still runs (a nice-10
//! thread gets about a tenth of a contended core, far more than it needs),
//! and on an idle core it runs at once. Threads started later by a lowered
//! thread inherit its priority.
//!
//! A lower priority is not enough for latency: the kernel's scheduler
//! (EEVDF) lets a thread it has just picked run on until the end of its
//! time slice (0.75–3 ms) before a thread woken meanwhile gets the core,
//! whatever their priorities. A usage flush runs for milliseconds, so a
//! request arriving during one waited up to a slice: at one connection,
//! p99 0.7–1.4 ms. So the long background loops (the flush, SQLite's
//! statements) call `offer_core` every few tens of microseconds.
//!
//! What was measured and not kept: `sched_yield` there cut the tail as
//! well but, on a saturated core, hands the core to the proxy for a whole
//! slice at every call, so background work crawled (an admin revocation
//! took 0.4–5 s instead of 30–80 ms); `SCHED_IDLE` or `SCHED_BATCH`
//! background threads starved the same way (1–3 s).

/// Lets a proxy thread waiting for this core have it: a sleep of a
/// microsecond (some 50 µs with the kernel's default timer slack). A
/// thread that sleeps, unlike one that calls `sched_yield`, keeps its
/// place in the scheduler's queue, so on a saturated core background work
/// still gets its share. For background loops that run for milliseconds,
/// every few tens of microseconds of their work; never on a proxy thread.
pub fn offer_core() {
    std::thread::sleep(std::time::Duration::from_micros(1));
}

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
