//! Where a server's named users are kept: a file beside the database
//! ([`UsersFile`], the default), or a record of a store several server processes share
//! (so `user add` and `user revoke` through any of them hold for all). What is kept is
//! the sealed users list of `users.rs`, the same bytes wherever it lives.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use super::USERS_FILE;

/// Largest users list accepted (a damaged length cannot make us read without bound).
pub const USERS_BYTES_MAX: u64 = 64 << 20;

/// What an update makes of the list as it is now (`None`: none yet): the list to write,
/// or why not.
pub type UsersEdit<'a> = dyn FnMut(Option<&[u8]>) -> Result<Vec<u8>, String> + 'a;

/// A place that keeps one sealed users list.
///
/// Invariant: [`UsersPlace::write`] replaces the list atomically (a reader sees the
/// old or the new one, never a mix), and is durable when it returns.
pub trait UsersPlace: Send + Sync + std::fmt::Debug {
    /// For messages: `users file /path`, `the store's users`.
    fn describe(&self) -> String;
    /// The list, or `None` if none was written yet. Blocking.
    ///
    /// # Errors
    /// Why it could not be read.
    fn read(&self) -> Result<Option<Vec<u8>>, String>;
    /// Replaces the list. Blocking.
    ///
    /// # Errors
    /// Why it could not be written (the old list stays).
    fn write(&self, bytes: &[u8]) -> Result<(), String>;
    /// Replaces the list with what `f` makes of the current one (`None`: none yet), so
    /// that no concurrent update through this place is lost: in a store shared by
    /// several hosts, read and write in one transaction under its writer lock. `f` may
    /// run once; its error aborts the update. Blocking.
    ///
    /// # Errors
    /// `f`'s error, or why the place could not be read or written (the old list stays).
    fn update(&self, f: &mut UsersEdit<'_>) -> Result<(), String>;
    /// A value that differs whenever the list may have changed (equal: unchanged);
    /// the default is the list itself. Blocking.
    fn stamp(&self) -> Option<Vec<u8>> {
        self.read().ok().flatten()
    }
}

/// The users file of a database directory (`users.sealed`), written 0600 through a
/// temporary file, fsync, rename and fsync of the directory.
#[derive(Clone, Debug)]
pub struct UsersFile {
    path: PathBuf,
}

impl UsersFile {
    /// The file at `path`.
    #[must_use]
    pub fn new(path: &Path) -> UsersFile {
        UsersFile {
            path: path.to_owned(),
        }
    }
}

impl UsersPlace for UsersFile {
    fn describe(&self) -> String {
        format!("users file {}", self.path.display())
    }

    fn read(&self) -> Result<Option<Vec<u8>>, String> {
        use std::io::Read as _;
        let f = match std::fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.to_string()),
        };
        let mut bytes = Vec::new();
        f.take(USERS_BYTES_MAX + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| e.to_string())?;
        if bytes.len() as u64 > USERS_BYTES_MAX {
            return Err("larger than any users file".into());
        }
        Ok(Some(bytes))
    }

    fn write(&self, bytes: &[u8]) -> Result<(), String> {
        use std::os::unix::fs::OpenOptionsExt as _;
        let path = &self.path;
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let tmp = dir.join(format!(".{USERS_FILE}.tmp"));
        let io = |e: std::io::Error| e.to_string();
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io)?;
        f.write_all(bytes).map_err(io)?;
        f.sync_all().map_err(io)?;
        drop(f);
        std::fs::rename(&tmp, path).map_err(io)?;
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
        Ok(())
    }

    /// Read, changed and written back under an exclusive lock of `.users.sealed.lock`
    /// beside the file, so two `user` commands at once never lose one's change.
    fn update(&self, f: &mut UsersEdit<'_>) -> Result<(), String> {
        use std::os::unix::fs::OpenOptionsExt as _;
        let dir = self
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let lock = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(dir.join(format!(".{USERS_FILE}.lock")))
            .map_err(|e| format!("opening the lock file: {e}"))?;
        lock.lock().map_err(|e| format!("locking: {e}"))?;
        let current = self.read()?;
        let next = f(current.as_deref())?;
        // The lock ends when `lock` is closed, after the write.
        self.write(&next)
    }

    /// Length, modification time and inode: a change without reading the file.
    fn stamp(&self) -> Option<Vec<u8>> {
        use std::os::unix::fs::MetadataExt as _;
        let m = std::fs::metadata(&self.path).ok()?;
        let mut s = Vec::with_capacity(32);
        s.extend_from_slice(&m.len().to_le_bytes());
        s.extend_from_slice(&m.mtime().to_le_bytes());
        s.extend_from_slice(&m.mtime_nsec().to_le_bytes());
        s.extend_from_slice(&m.ino().to_le_bytes());
        Some(s)
    }
}
