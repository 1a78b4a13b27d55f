//! Measurement helpers every figure shares: the found-everything check, the best of
//! several timings, file sizes, and facts about the machine printed beside results.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// Fails unless an engine found every document it was asked for (a benchmark that
/// silently read less would report a false speed).
pub(crate) fn check_found(engine: &str, found: usize, wanted: usize) -> Result<()> {
    if found != wanted {
        bail!("{engine} found {found} of {wanted} documents");
    }
    Ok(())
}

/// The best (smallest) of `times`, zero when empty: the run least disturbed by other
/// processes, used for the short open/KDF timings.
pub(crate) fn best(times: &[Duration]) -> Duration {
    times.iter().min().copied().unwrap_or_default()
}

/// Total size in bytes of the regular files directly inside `dir`.
pub(crate) fn dir_size(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let meta = entry?.metadata()?;
        if meta.is_file() {
            total += meta.len();
        }
    }
    Ok(total)
}

/// Bytes the regular files directly inside `dir` occupy on disk (allocated blocks: a
/// file's length counts ranges never written, which take no space).
pub(crate) fn dir_disk_bytes(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let meta = entry?.metadata()?;
        if meta.is_file() {
            total += disk_bytes(&meta);
        }
    }
    Ok(total)
}

/// Bytes a file occupies on disk (its allocated blocks; its length where that is not
/// known).
pub(crate) fn disk_bytes(meta: &std::fs::Metadata) -> u64 {
    #[cfg(unix)]
    {
        std::os::unix::fs::MetadataExt::blocks(meta) * 512
    }
    #[cfg(not(unix))]
    {
        meta.len()
    }
}

/// The file-system type holding `dir` (best effort, from `/proc/mounts`).
pub(crate) fn fs_type(dir: &Path) -> String {
    let Ok(dir) = dir.canonicalize() else {
        return "unknown".into();
    };
    let Ok(mounts) = std::fs::read_to_string("/proc/mounts") else {
        return "unknown".into();
    };
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_dev, mnt, fs) = (f.next()?, f.next()?, f.next()?);
            dir.starts_with(mnt).then(|| (mnt.len(), fs.to_owned()))
        })
        .max_by_key(|(len, _)| *len)
        .map_or_else(|| "unknown".into(), |(_, fs)| fs)
}

/// The system load average (1, 5, 15 minutes), as `/proc/loadavg` reports it.
pub(crate) fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}
