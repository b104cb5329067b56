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
//! woken one runs, so a request arriving while the usage flush's SQL ran
//! on the proxy's core waited up to ~2 ms (benches/README.md, "The
//! one-connection tail"). So the flush writes through a connection of its
//! own whose thread is `SCHED_IDLE` (`idle_current_thread`,
//! `Store::for_background_writes`; the quota book's flushes of ordinary
//! spending share it): a woken proxy thread takes the core from it at
//! once. Only that thread: the admin port, the reloader and the
//! other SQLite workers on `SCHED_IDLE` (or `SCHED_BATCH`) starved when
//! the proxy saturated its core, and an admin revocation took 1–3 s.
//! `sched_yield`, short sleeps and a shorter slice for the proxy threads
//! were measured too and not kept.

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

/// Puts the calling thread on `SCHED_IDLE`: it runs only when no other
/// thread wants its core, and a woken proxy thread takes the core from it at
/// once. For work that may wait without end on a saturated core and holds
/// nothing the rest needs for long (the usage flush's and the quota
/// book's bulk writes, in small transactions). Returns whether the kernel
/// agreed. Threads this thread starts inherit the policy.
pub fn idle_current_thread() -> bool {
    scheduler::set_self_policy(scheduler::Policy::Idle, 0).is_ok()
}
