//! What the generator reads about the node and the machine from `/proc`:
//! the node's resident memory and CPU time (per thread), the kernel's TCP
//! buffer memory; and the generator's own file-descriptor limit.

use std::path::Path;

use serde::Serialize;

/// `VmRSS` of process `pid`, bytes.
pub(crate) fn rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path)
        .map_err(|e| anyhow::anyhow!("reading {path} (is --node-pid right?): {e}"))?;
    vm_rss(&status).ok_or_else(|| anyhow::anyhow!("no VmRSS line in {path}"))
}

fn vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut parts = line.split_whitespace().skip(1);
    let kib: u64 = parts.next()?.parse().ok()?;
    Some(kib * 1024)
}

/// Memory of the kernel's TCP sockets (all of them, both ends of loopback
/// connections included), bytes: `TCP: ... mem N` of `/proc/net/sockstat`
/// (pages).
pub(crate) fn kernel_tcp_mem_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/net/sockstat").ok()?;
    let pages = sockstat_tcp_pages(&s)?;
    // SAFETY: sysconf reads a system constant.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).unwrap_or(4096))
}

fn sockstat_tcp_pages(s: &str) -> Option<u64> {
    let line = s.lines().find(|l| l.starts_with("TCP:"))?;
    let mut it = line.split_whitespace();
    while let Some(w) = it.next() {
        if w == "mem" {
            return it.next()?.parse().ok();
        }
    }
    None
}

/// CPU time of each thread of a process, seconds: (thread name, tid, user +
/// system).
pub(crate) fn thread_cpu(pid: u32) -> Vec<(String, u32, f64)> {
    let hz = clock_ticks();
    let dir = format!("/proc/{pid}/task");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let Some(tid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if let Some((name, ticks)) = stat_ticks(&e.path().join("stat")) {
            out.push((name, tid, ticks as f64 / hz));
        }
    }
    out.sort_by_key(|t| t.1);
    out
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf reads a system constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 { hz as f64 } else { 100.0 }
}

/// (comm, utime + stime in ticks) of a `stat` file.
fn stat_ticks(path: &Path) -> Option<(String, u64)> {
    parse_stat(&std::fs::read_to_string(path).ok()?)
}

fn parse_stat(s: &str) -> Option<(String, u64)> {
    // `pid (comm) state ...`: comm may hold spaces and parentheses.
    let open = s.find('(')?;
    let close = s.rfind(')')?;
    let name = s.get(open + 1..close)?.to_string();
    let fields: Vec<&str> = s.get(close + 2..)?.split_whitespace().collect();
    // Fields 14 and 15 (1-based, utime and stime) are 11 and 12 after `state`.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((name, utime + stime))
}

/// The node's CPU use over a window (JSON `websocket.node_cpu`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct NodeCpu {
    pub(crate) pid: u32,
    /// CPU seconds of all its threads over the window / the window: 1.0 = one
    /// core fully busy.
    pub(crate) cpu_fraction: f64,
    /// Threads that used at least 1 % of a core, busiest first.
    pub(crate) threads: Vec<ThreadCpu>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct ThreadCpu {
    pub(crate) name: String,
    pub(crate) tid: u32,
    pub(crate) cpu_fraction: f64,
}

/// A snapshot of a process's threads' CPU time.
#[derive(Debug, Clone)]
pub(crate) struct CpuSnapshot {
    pid: u32,
    at: std::time::Instant,
    threads: Vec<(String, u32, f64)>,
}

impl CpuSnapshot {
    pub(crate) fn take(pid: u32) -> Self {
        Self {
            pid,
            at: std::time::Instant::now(),
            threads: thread_cpu(pid),
        }
    }

    /// The use between `self` and now.
    pub(crate) fn until_now(&self) -> NodeCpu {
        self.until(&CpuSnapshot::take(self.pid))
    }

    /// The use between `self` and a later snapshot.
    pub(crate) fn until(&self, later: &CpuSnapshot) -> NodeCpu {
        let wall = later.at.duration_since(self.at).as_secs_f64().max(1e-9);
        let mut threads: Vec<ThreadCpu> = later
            .threads
            .iter()
            .map(|(name, tid, secs)| {
                let before = self
                    .threads
                    .iter()
                    .find(|t| t.1 == *tid)
                    .map_or(0.0, |t| t.2);
                ThreadCpu {
                    name: name.clone(),
                    tid: *tid,
                    cpu_fraction: crate::stats::round3((secs - before).max(0.0) / wall),
                }
            })
            .collect();
        let total: f64 = threads.iter().map(|t| t.cpu_fraction).sum();
        threads.retain(|t| t.cpu_fraction >= 0.01);
        threads.sort_by(|a, b| b.cpu_fraction.total_cmp(&a.cpu_fraction));
        NodeCpu {
            pid: self.pid,
            cpu_fraction: crate::stats::round3(total),
            threads,
        }
    }
}

/// Raises this process's soft `RLIMIT_NOFILE` to the hard limit; returns the
/// new soft limit.
pub(crate) fn raise_nofile() -> u64 {
    // SAFETY: `rlimit` is plain data; get/setrlimit read and write it only.
    unsafe {
        let mut r: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 {
            return 0;
        }
        if r.rlim_cur < r.rlim_max {
            let want = libc::rlimit {
                rlim_cur: r.rlim_max,
                rlim_max: r.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                return want.rlim_cur;
            }
        }
        r.rlim_cur
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_proc_formats() {
        assert_eq!(
            vm_rss("Name:\trayltics\nVmPeak:\t  9 kB\nVmRSS:\t   12345 kB\nThreads: 4\n"),
            Some(12_345 * 1024)
        );
        assert_eq!(vm_rss("Name: x\n"), None);
        assert_eq!(
            sockstat_tcp_pages(
                "sockets: used 300\nTCP: inuse 20 orphan 0 tw 3 alloc 25 mem 17\nUDP: inuse 1 mem 2\n"
            ),
            Some(17)
        );
        let stat =
            "4242 (shard 0 (x)) S 1 4242 4242 0 -1 4194368 100 0 0 0 250 75 0 0 20 0 3 0 100 0 0";
        assert_eq!(parse_stat(stat), Some(("shard 0 (x)".to_string(), 325)));
    }

    #[test]
    fn reads_this_process() {
        let pid = std::process::id();
        assert!(rss_bytes(pid).unwrap() > 0);
        let a = CpuSnapshot::take(pid);
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        std::hint::black_box(x);
        let b = CpuSnapshot::take(pid);
        let cpu = a.until(&b);
        assert_eq!(cpu.pid, pid);
        assert!(cpu.cpu_fraction >= 0.0);
        assert!(raise_nofile() > 0);
        assert!(rss_bytes(u32::MAX).is_err());
    }
}
