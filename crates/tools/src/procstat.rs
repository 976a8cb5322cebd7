//! CPU time, memory and open files of a process, read from /proc (Linux only): the
//! server under test and the load generator itself are measured the same way
//! (`plaza-load`, `plaza-soak`, the churn test).

use std::fs;

/// Clock ticks per second of `utime`/`stime` in /proc/PID/stat. Linux has reported
/// USER_HZ = 100 to user space on every architecture for decades; reading it with
/// sysconf would need libc for one constant.
const TICKS_PER_SEC: f64 = 100.0;

#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    /// user + system CPU time, seconds.
    pub cpu_secs: f64,
    /// Resident set size, bytes.
    pub rss_bytes: u64,
    pub threads: u64,
}

/// Reads `/proc/<pid>/stat` and `/proc/<pid>/status`; `None` once the process is gone.
pub fn sample(pid: u32) -> Option<Sample> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    Some(Sample {
        cpu_secs: cpu_secs(&stat)?,
        rss_bytes: status_kib(&status, "VmRSS:")? * 1024,
        threads: status_kib(&status, "Threads:").unwrap_or(0),
    })
}

/// Open file descriptors: the entries of `/proc/<pid>/fd` (sockets, epoll, eventfds,
/// pipes, files). `None` once the process is gone.
pub fn open_fds(pid: u32) -> Option<usize> {
    Some(fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

/// The kinds of the open descriptors, counted: `udp`, `tcp`, `unix` and `socket` for
/// sockets (looked up by inode in `/proc/<pid>/net/*`), else what the link names
/// (`anon_inode:[eventfd]`, `pipe`, a path). For telling which kind a leak is.
pub fn fd_kinds(pid: u32) -> std::collections::BTreeMap<String, usize> {
    let mut proto = std::collections::HashMap::new();
    for (file, name) in [
        ("udp", "udp"),
        ("udp6", "udp"),
        ("tcp", "tcp"),
        ("tcp6", "tcp"),
        ("unix", "unix"),
    ] {
        let table = fs::read_to_string(format!("/proc/{pid}/net/{file}")).unwrap_or_default();
        // The inode is column 10 in the udp/tcp tables and column 7 in unix's.
        let column = if name == "unix" { 6 } else { 9 };
        for line in table.lines().skip(1) {
            if let Some(inode) = line.split_whitespace().nth(column) {
                proto.insert(inode.to_string(), name);
            }
        }
    }
    let mut kinds = std::collections::BTreeMap::new();
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return kinds;
    };
    for entry in dir.flatten() {
        let Ok(target) = fs::read_link(entry.path()) else {
            continue;
        };
        let target = target.display().to_string();
        let kind = match target
            .strip_prefix("socket:[")
            .and_then(|t| t.strip_suffix(']'))
        {
            Some(inode) => proto.get(inode).copied().unwrap_or("socket").to_string(),
            None if target.starts_with("pipe:") => "pipe".to_string(),
            None => target,
        };
        *kinds.entry(kind).or_insert(0) += 1;
    }
    kinds
}

pub fn self_pid() -> u32 {
    std::process::id()
}

/// utime + stime from a stat line. The command name (field 2) may contain spaces
/// and parentheses, so fields are counted after its closing parenthesis.
fn cpu_secs(stat: &str) -> Option<f64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is field 3 of the man page, so utime (14) and stime (15) are at
    // indices 11 and 12 here.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / TICKS_PER_SEC)
}

fn status_kib(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_stat_line_with_spaces_in_the_name() {
        let line = "1234 (my (odd) name) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 12 0";
        assert_eq!(cpu_secs(line), Some(3.0));
    }

    #[test]
    fn reads_its_own_process() {
        let s = sample(self_pid()).unwrap();
        assert!(s.rss_bytes > 0 && s.threads >= 1);
    }

    #[test]
    fn counts_open_files() {
        assert!(
            open_fds(self_pid()).unwrap() >= 3,
            "stdin, stdout, stderr at least"
        );
        assert_eq!(open_fds(u32::MAX), None, "no such process");
    }
}
