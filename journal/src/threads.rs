//! Where the journal's helper threads run.
//!
//! A thread inherits its creator's CPU affinity, so a thread a shard spawns
//! (the writer, a snapshot writer or builder) would be pinned to the shard's
//! core and take CPU time from the shard's requests. [`leave_shard_core`]
//! lets it run on any core of the process instead, and [`run_in_background`]
//! also drops it to the lowest priority, for work that can wait (snapshots,
//! spare segments): it then runs in idle time and gets only a small share
//! of a busy core.

/// Lets the calling thread run on every CPU the process may use (the main
/// thread's affinity) instead of the single core its creator was pinned to.
pub fn leave_shard_core() {
    // SAFETY: `cpu_set_t` is plain data, valid when zeroed; both calls get a
    // pointer to it and its exact size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        let size = std::mem::size_of::<libc::cpu_set_t>();
        if libc::sched_getaffinity(libc::getpid(), size, &mut set) == 0 {
            libc::sched_setaffinity(0, size, &set);
        }
    }
}

/// [`leave_shard_core`], then the lowest scheduling priority (nice 19) for
/// the calling thread only.
pub fn run_in_background() {
    leave_shard_core();
    // SAFETY: plain syscalls on the calling thread; on Linux a thread id is a
    // valid PRIO_PROCESS target and affects that thread alone.
    let rc = unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, 19)
    };
    if rc != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "cannot lower a helper thread's priority");
    }
}
