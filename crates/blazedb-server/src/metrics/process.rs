//! The process metrics Prometheus names (`process_*`), read from `/proc/self` at each
//! scrape (Linux). A figure that cannot be read is left out rather than reported as 0.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Clock ticks per second in `/proc/<pid>/stat` (`USER_HZ`): fixed at 100 by the
/// kernel's user-space ABI on every architecture Linux runs this server on.
const USER_HZ: f64 = 100.0;

#[derive(Debug)]
pub struct ProcessMetrics;

/// The figures of this process.
#[derive(Debug, Default, PartialEq)]
pub struct Figures {
    pub cpu_seconds: Option<f64>,
    pub start_time_seconds: Option<f64>,
    pub threads: Option<u64>,
    pub resident_bytes: Option<u64>,
    pub virtual_bytes: Option<u64>,
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
}

/// `/proc/self/stat` after the command name (which may hold spaces and parentheses):
/// fields from the 3rd (`state`) on.
fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().collect())
}

/// The value in kB of `key` in `/proc/self/status`, in bytes.
fn status_kb(status: &str, key: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    let kb: u64 = line[key.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// `btime` of `/proc/stat`: the boot time, in seconds since the epoch.
fn boot_time(stat: &str) -> Option<f64> {
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|v| v as f64)
}

/// The soft "Max open files" of `/proc/self/limits` (`None` when unlimited).
fn max_open_files(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

impl Figures {
    /// Reads the figures from the texts of `/proc/self/stat`, `/proc/self/status`,
    /// `/proc/stat` and `/proc/self/limits`, and the count of `/proc/self/fd`.
    #[must_use]
    pub fn parse(
        stat: Option<&str>,
        status: Option<&str>,
        system_stat: Option<&str>,
        limits: Option<&str>,
        open_fds: Option<u64>,
    ) -> Figures {
        let fields = stat.and_then(stat_fields).unwrap_or_default();
        // Field numbers of proc(5), counted from 1; `fields[0]` is field 3.
        let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<u64>().ok());
        let ticks = |n| field(n).map(|t| t as f64 / USER_HZ);
        Figures {
            cpu_seconds: ticks(14).zip(ticks(15)).map(|(u, s)| u + s),
            start_time_seconds: ticks(22)
                .zip(system_stat.and_then(boot_time))
                .map(|(t, boot)| boot + t),
            threads: field(20),
            resident_bytes: status.and_then(|s| status_kb(s, "VmRSS:")),
            virtual_bytes: status.and_then(|s| status_kb(s, "VmSize:")),
            open_fds,
            max_fds: limits.and_then(max_open_files),
        }
    }

    fn read() -> Figures {
        let text = |p: &str| std::fs::read_to_string(p).ok();
        let fds = std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|d| d.count() as u64);
        Figures::parse(
            text("/proc/self/stat").as_deref(),
            text("/proc/self/status").as_deref(),
            text("/proc/stat").as_deref(),
            text("/proc/self/limits").as_deref(),
            fds,
        )
    }
}

impl Collector for ProcessMetrics {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> std::fmt::Result {
        let f = Figures::read();
        if let Some(v) = f.cpu_seconds {
            let c = ConstCounter::new(v);
            c.encode(e.encode_descriptor(
                "process_cpu_seconds",
                "User and system CPU time spent, in seconds.",
                None,
                c.metric_type(),
            )?)?;
        }
        if let Some(v) = f.start_time_seconds {
            let g = ConstGauge::new(v);
            g.encode(e.encode_descriptor(
                "process_start_time_seconds",
                "Start time of the process since the Unix epoch, in seconds.",
                None,
                g.metric_type(),
            )?)?;
        }
        for (name, help, v) in [
            ("process_threads", "Threads of the process.", f.threads),
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                f.resident_bytes,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                f.virtual_bytes,
            ),
            ("process_open_fds", "Open file descriptors.", f.open_fds),
            (
                "process_max_fds",
                "Most open file descriptors allowed.",
                f.max_fds,
            ),
        ] {
            if let Some(v) = v {
                let g = ConstGauge::new(v);
                g.encode(e.encode_descriptor(name, help, None, g.metric_type())?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_figures_are_read_from_procfs_texts_whatever_the_command_name() {
        // A command name with spaces and a parenthesis, as proc(5) allows.
        let stat = "4242 (blaze d) b) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 \
                    7 0 12345 1000000 300 18446744073709551615";
        let status = "Name:\tblazedb-server\nVmSize:\t  204800 kB\nVmRSS:\t   10240 kB\n";
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 524288               files\n";
        let f = Figures::parse(
            Some(stat),
            Some(status),
            Some("cpu 1 2\nbtime 1700000000\n"),
            Some(limits),
            Some(12),
        );
        assert_eq!(f.cpu_seconds, Some(3.0), "utime 250 + stime 50 ticks");
        assert_eq!(f.threads, Some(7));
        assert_eq!(f.start_time_seconds, Some(1_700_000_000.0 + 123.45));
        assert_eq!(f.resident_bytes, Some(10_240 * 1024));
        assert_eq!(f.virtual_bytes, Some(204_800 * 1024));
        assert_eq!((f.open_fds, f.max_fds), (Some(12), Some(1024)));
        assert_eq!(
            Figures::parse(None, None, None, None, None),
            Figures::default()
        );
    }

    #[test]
    fn this_process_reports_its_own_figures() {
        let f = Figures::read();
        assert!(f.resident_bytes.is_some_and(|b| b > 0), "{f:?}");
        assert!(f.threads.is_some_and(|t| t >= 1), "{f:?}");
        assert!(f.open_fds.is_some_and(|n| n >= 3), "{f:?}");
        assert!(f.cpu_seconds.is_some(), "{f:?}");
    }
}
