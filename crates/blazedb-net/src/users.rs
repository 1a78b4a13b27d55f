//! Named users of a sync server: each with its own token, permissions (read-write or
//! read-only, all collections or some), revocable. Kept in one sealed file beside the
//! database (`users.sealed` in its directory) or in a store several server processes
//! share (`users/place.rs`), so `blazedb-server user add` works while
//! the server runs and the running server picks changes up.
//!
//! File format (docs/format.md, "Users file"):
//!
//! ```text
//! magic "BLZUSRS\x01" (8) ‖ Argon2id memory KiB, passes, lanes (u32 BE each, 12)
//! ‖ salt (16) ‖ XChaCha20-Poly1305 sealed postcard(UsersDoc), associated data = the
//! 36 bytes before it
//! ```
//!
//! Invariants:
//! - A user's token is never stored: only the key its proofs are made with
//!   (`CredentialKey::from_user_token`), sealed under a key derived from the database
//!   password. The file is written 0600, atomically (temporary file, fsync, rename,
//!   fsync of the directory), so a crash leaves the old or the new file, never a mix.
//! - Revoking a user removes its record; a running server rereads the file when it
//!   changes (checked at every user handshake and every [`USERS_POLL`]) and closes the
//!   revoked user's sessions. Re-adding a name gives it a new record id, so sessions of
//!   the old record end too.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use blazedb_crypto::auth::CredentialKey;
use blazedb_crypto::{KdfParams, SealKey};
use blazedb_sync::grant::{Grant, check_principal};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use zeroize::Zeroizing;

use crate::error::NetError;

mod place;

pub use place::{USERS_BYTES_MAX, UsersEdit, UsersFile, UsersPlace};

/// How often a running server checks the users file for changes.
pub const USERS_POLL: Duration = Duration::from_secs(1);
/// Most users one file holds.
pub const USERS_MAX: usize = 10_000;
/// Most collections one user's permission names.
pub const USER_COLLECTIONS_MAX: usize = 256;
/// The users file's name in a database's directory.
pub const USERS_FILE: &str = "users.sealed";

const MAGIC: [u8; 8] = *b"BLZUSRS\x01";
const HEADER_LEN: usize = 8 + 12 + 16;
/// Prefix of generated tokens (recognisable in logs and secret scanners).
const TOKEN_PREFIX: &str = "bdbu_";

/// What a user may do.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Permissions {
    /// Read-only when false.
    pub write: bool,
    /// The collections it may read and write (`None`: all).
    pub collections: Option<Vec<String>>,
}

impl Permissions {
    /// Read-write on every collection.
    #[must_use]
    pub fn read_write() -> Permissions {
        Permissions {
            write: true,
            collections: None,
        }
    }
}

/// One user as the file keeps it.
#[derive(Clone, Serialize, Deserialize)]
struct UserRecord {
    name: String,
    /// The key the user's proofs verify with (never the token).
    key: [u8; 32],
    perms: Permissions,
    created_us: u64,
    /// Distinguishes a re-added name from the record it replaced.
    id: u64,
}

impl Drop for UserRecord {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.key);
    }
}

/// A user as listed (no key material).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserInfo {
    pub name: String,
    pub perms: Permissions,
    /// When it was added (µs since the epoch).
    pub created_us: u64,
}

#[derive(Serialize, Deserialize)]
struct UsersDoc {
    version: u32,
    users: Vec<UserRecord>,
}

const DOC_VERSION: u32 = 1;

fn bad(at: &dyn UsersPlace, why: impl std::fmt::Display) -> NetError {
    NetError::Config(format!("{}: {why}", at.describe()))
}

fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

fn random<const N: usize>() -> Result<[u8; N], NetError> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|e| NetError::Config(format!("random source: {e}")))?;
    Ok(b)
}

/// The users file of a database served from `db_dir` (the database's own directory).
#[must_use]
pub fn users_path(db_dir: &Path) -> PathBuf {
    db_dir.join(USERS_FILE)
}

/// The users file, opened with the database password.
pub struct UserFile {
    at: Arc<dyn UsersPlace>,
    kdf: KdfParams,
    salt: [u8; 16],
    key: Zeroizing<[u8; 32]>,
    users: Vec<UserRecord>,
}

impl std::fmt::Debug for UserFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserFile")
            .field("at", &self.at.describe())
            .field("users", &self.users.len())
            .finish_non_exhaustive()
    }
}

impl UserFile {
    /// Opens the file at `path`, or starts an empty one (written by [`UserFile::save`])
    /// if there is none.
    ///
    /// # Errors
    /// [`NetError::Config`]: a file that does not open with `password`, is damaged, or
    /// cannot be read.
    pub fn open_or_new(path: &Path, password: &[u8], kdf: KdfParams) -> Result<UserFile, NetError> {
        Self::open_or_new_at(Arc::new(UsersFile::new(path)), password, kdf)
    }

    /// As [`UserFile::open_or_new`], for the list kept at `at`.
    ///
    /// # Errors
    /// As [`UserFile::open_or_new`].
    pub fn open_or_new_at(
        at: Arc<dyn UsersPlace>,
        password: &[u8],
        kdf: KdfParams,
    ) -> Result<UserFile, NetError> {
        match Self::open_at(Arc::clone(&at), password)? {
            Some(f) => Ok(f),
            None => {
                let salt = random::<16>()?;
                let key = kdf
                    .derive(password, &salt)
                    .map_err(|e| bad(&*at, format!("key derivation: {e}")))?;
                Ok(UserFile {
                    at,
                    kdf,
                    salt,
                    key,
                    users: Vec::new(),
                })
            }
        }
    }

    /// Opens the file at `path`; `None` if there is none.
    ///
    /// # Errors
    /// As [`UserFile::open_or_new`].
    pub fn open(path: &Path, password: &[u8]) -> Result<Option<UserFile>, NetError> {
        Self::open_at(Arc::new(UsersFile::new(path)), password)
    }

    /// As [`UserFile::open`], for the list kept at `at`.
    ///
    /// # Errors
    /// As [`UserFile::open_or_new`].
    pub fn open_at(at: Arc<dyn UsersPlace>, password: &[u8]) -> Result<Option<UserFile>, NetError> {
        let Some(bytes) = at.read().map_err(|e| bad(&*at, e))? else {
            return Ok(None);
        };
        let (kdf, salt) = parse_header(&*at, &bytes)?;
        let key = kdf
            .derive(password, &salt)
            .map_err(|e| bad(&*at, format!("key derivation: {e}")))?;
        let users = unseal(&*at, &key, &bytes)?;
        Ok(Some(UserFile {
            at,
            kdf,
            salt,
            key,
            users,
        }))
    }

    /// The users `bytes` (the list as read now) hold, if they are sealed under this
    /// file's key (same salt and cost); `Ok(None)` if the list was re-created under
    /// another salt. No list at all is no users.
    fn users_in(&self, bytes: Option<&[u8]>) -> Result<Option<Vec<UserRecord>>, NetError> {
        let Some(bytes) = bytes else {
            return Ok(Some(Vec::new()));
        };
        let (kdf, salt) = parse_header(&*self.at, bytes)?;
        if kdf != self.kdf || salt != self.salt {
            return Ok(None);
        }
        unseal(&*self.at, &self.key, bytes).map(Some)
    }

    /// Runs `op` on the list as it is now where it is kept and writes the result, as
    /// one update of that place: a concurrent change through another program or host is
    /// never lost (each `op` sees the other's result). Returns what `op` returns;
    /// writes nothing if it fails.
    ///
    /// # Errors
    /// `op`'s error; the place's errors; the list re-created under another salt since
    /// this file was opened (run the command again).
    pub fn modify<T>(
        &mut self,
        mut op: impl FnMut(&mut UserFile) -> Result<T, NetError>,
    ) -> Result<T, NetError> {
        let at = Arc::clone(&self.at);
        let mut out = None;
        let mut failed = None;
        let r = at.update(&mut |current| {
            let step = (|| {
                self.users = self.users_in(current)?.ok_or_else(|| {
                    bad(
                        &*self.at,
                        "re-created by another program meanwhile: run the command again",
                    )
                })?;
                out = Some(op(self)?);
                self.sealed()
            })();
            step.map_err(|e| {
                let text = e.to_string();
                failed = Some(e);
                text
            })
        });
        match (r, failed, out) {
            (Ok(()), _, Some(v)) => Ok(v),
            (Err(_), Some(e), _) => Err(e),
            (Err(e), None, _) => Err(bad(&*at, e)),
            (Ok(()), _, None) => Err(bad(&*at, "the update did not run")),
        }
    }

    /// Adds user `name` with `perms`; returns its token (shown once: only its key is
    /// kept).
    ///
    /// # Errors
    /// [`NetError::Config`]: a bad name or collection, a name in use, too many users.
    pub fn add(&mut self, name: &str, perms: Permissions) -> Result<Zeroizing<String>, NetError> {
        check_principal(name).map_err(NetError::Config)?;
        if name.starts_with('@') {
            return Err(NetError::Config(format!(
                "user names starting with '@' are reserved: {name:?}"
            )));
        }
        if self.users.iter().any(|u| u.name == name) {
            return Err(NetError::Config(format!(
                "user {name:?} exists; revoke it first to give it a new token"
            )));
        }
        if self.users.len() >= USERS_MAX {
            return Err(NetError::Config(format!("at most {USERS_MAX} users")));
        }
        if let Some(c) = &perms.collections {
            if c.is_empty() || c.len() > USER_COLLECTIONS_MAX {
                return Err(NetError::Config(format!(
                    "a user's collections list has 1 to {USER_COLLECTIONS_MAX} names"
                )));
            }
            for name in c {
                blazedb_core::name::check_name(blazedb_core::NameKind::Collection, name)
                    .map_err(|e| NetError::Config(e.to_string()))?;
            }
        }
        let raw = random::<32>()?;
        let token = Zeroizing::new(format!(
            "{TOKEN_PREFIX}{}",
            raw.iter().map(|b| format!("{b:02x}")).collect::<String>()
        ));
        let key = CredentialKey::from_user_token(name, &token).to_bytes();
        self.users.push(UserRecord {
            name: name.to_owned(),
            key: *key,
            perms,
            created_us: now_us(),
            id: u64::from_le_bytes(random::<8>()?),
        });
        Ok(token)
    }

    /// Removes user `name`; whether it existed.
    pub fn revoke(&mut self, name: &str) -> bool {
        let before = self.users.len();
        self.users.retain(|u| u.name != name);
        self.users.len() != before
    }

    /// The users, sorted by name.
    #[must_use]
    pub fn list(&self) -> Vec<UserInfo> {
        let mut out: Vec<UserInfo> = self
            .users
            .iter()
            .map(|u| UserInfo {
                name: u.name.clone(),
                perms: u.perms.clone(),
                created_us: u.created_us,
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Writes the list as this file holds it, replacing what is kept (for a list that
    /// one program changes; [`UserFile::modify`] when several may).
    ///
    /// # Errors
    /// I/O errors.
    pub fn save(&self) -> Result<(), NetError> {
        let bytes = self.sealed()?;
        self.at.write(&bytes).map_err(|e| bad(&*self.at, e))
    }

    /// The list sealed as it is kept (header, then the sealed document).
    fn sealed(&self) -> Result<Vec<u8>, NetError> {
        let doc = UsersDoc {
            version: DOC_VERSION,
            users: self.users.clone(),
        };
        let plain = Zeroizing::new(
            postcard::to_allocvec(&doc).map_err(|e| bad(&*self.at, format!("encoding: {e}")))?,
        );
        let header = header(self.kdf, &self.salt);
        let sealed = SealKey::new(&self.key).seal(&header, &plain);
        let mut bytes = header.to_vec();
        bytes.extend_from_slice(&sealed);
        Ok(bytes)
    }
}

fn header(kdf: KdfParams, salt: &[u8; 16]) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(&MAGIC);
    h[8..12].copy_from_slice(&kdf.memory_kib.to_be_bytes());
    h[12..16].copy_from_slice(&kdf.iterations.to_be_bytes());
    h[16..20].copy_from_slice(&kdf.parallelism.to_be_bytes());
    h[20..].copy_from_slice(salt);
    h
}

fn parse_header(path: &dyn UsersPlace, bytes: &[u8]) -> Result<(KdfParams, [u8; 16]), NetError> {
    if bytes.len() < HEADER_LEN || bytes[..8] != MAGIC {
        return Err(bad(path, "not a BlazeDB users file (or damaged)"));
    }
    let u32_at =
        |i: usize| u32::from_be_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
    let kdf = KdfParams {
        memory_kib: u32_at(8),
        iterations: u32_at(12),
        parallelism: u32_at(16),
    };
    kdf.validate()
        .map_err(|e| bad(path, format!("damaged header: {e}")))?;
    let mut salt = [0u8; 16];
    salt.copy_from_slice(&bytes[20..HEADER_LEN]);
    Ok((kdf, salt))
}

fn unseal(
    path: &dyn UsersPlace,
    key: &[u8; 32],
    bytes: &[u8],
) -> Result<Vec<UserRecord>, NetError> {
    let plain = Zeroizing::new(
        SealKey::new(key)
            .open(&bytes[..HEADER_LEN], &bytes[HEADER_LEN..])
            .map_err(|_| {
                bad(
                    path,
                    "does not open with this database password (wrong password, or damaged)",
                )
            })?,
    );
    let doc: UsersDoc =
        postcard::from_bytes(&plain).map_err(|e| bad(path, format!("damaged: {e}")))?;
    if doc.version != DOC_VERSION {
        return Err(bad(
            path,
            format!(
                "format version {} (this build reads {DOC_VERSION})",
                doc.version
            ),
        ));
    }
    Ok(doc.users)
}

/// A user the server knows, for one handshake.
pub(crate) struct KnownUser {
    pub key: CredentialKey,
    pub grant: Grant,
    pub id: u64,
}

/// The users a running server accepts, kept current with the file.
pub struct UserDirectory {
    password: Zeroizing<Vec<u8>>,
    state: Mutex<(UserFile, Option<Vec<u8>>)>,
    changed: watch::Sender<u64>,
}

impl std::fmt::Debug for UserDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserDirectory").finish_non_exhaustive()
    }
}

impl UserDirectory {
    /// The users of the file at `path` (none yet if it does not exist; users added
    /// later are picked up).
    ///
    /// # Errors
    /// As [`UserFile::open_or_new`].
    pub fn open(path: &Path, password: &[u8]) -> Result<Arc<UserDirectory>, NetError> {
        Self::open_at(Arc::new(UsersFile::new(path)), password)
    }

    /// The users of the list kept at `at`, as [`UserDirectory::open`].
    ///
    /// # Errors
    /// As [`UserFile::open_or_new`].
    pub fn open_at(
        at: Arc<dyn UsersPlace>,
        password: &[u8],
    ) -> Result<Arc<UserDirectory>, NetError> {
        let st = at.stamp();
        let file = UserFile::open_or_new_at(at, password, KdfParams::DEFAULT)?;
        Ok(Arc::new(UserDirectory {
            password: Zeroizing::new(password.to_vec()),
            state: Mutex::new((file, st)),
            changed: watch::channel(0).0,
        }))
    }

    /// Rereads the list if it changed since the last look; whether it did. Blocking
    /// (I/O, and a key derivation if the list was re-created), but never while holding
    /// the lock that handshakes and sessions take on async threads: they go on with
    /// the users known so far meanwhile.
    ///
    /// # Errors
    /// The list no longer reads or opens; the users known before stay in force.
    pub fn refresh(&self) -> Result<bool, NetError> {
        let (at, seen) = {
            let st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            (Arc::clone(&st.0.at), st.1.clone())
        };
        let now = at.stamp();
        if now == seen {
            return Ok(false);
        }
        // Read after the stamp: if the list changes in between, the stamp kept is older
        // than the list and the next look reads it again.
        let bytes = at.read().map_err(|e| bad(&*at, e))?;
        let users = {
            let st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            st.0.users_in(bytes.as_deref())?
        };
        let reopened = match users {
            Some(_) => None,
            None => Some(UserFile::open_or_new_at(
                Arc::clone(&at),
                &self.password,
                KdfParams::DEFAULT,
            )?),
        };
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        match (users, reopened) {
            (Some(users), _) => st.0.users = users,
            (None, Some(file)) => st.0 = file,
            (None, None) => {}
        }
        st.1 = now;
        drop(st);
        self.changed.send_modify(|g| *g = g.wrapping_add(1));
        Ok(true)
    }

    /// Changes of the users (a session checks its user is still current on each).
    #[must_use]
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// User `name`, if it exists now.
    pub(crate) fn lookup(&self, name: &str) -> Option<KnownUser> {
        let st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let u = st.0.users.iter().find(|u| u.name == name)?;
        let mut grant = Grant::client(name);
        grant.write = u.perms.write;
        grant.collections = u
            .perms
            .collections
            .as_ref()
            .map(|c| c.iter().cloned().collect::<BTreeSet<String>>());
        Some(KnownUser {
            key: CredentialKey::from_bytes(&u.key),
            grant,
            id: u.id,
        })
    }

    /// Whether the record `id` of user `name` is still in force.
    #[must_use]
    pub fn is_current(&self, name: &str, id: u64) -> bool {
        let st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        st.0.users.iter().any(|u| u.name == name && u.id == id)
    }

    /// How many users are in force.
    #[must_use]
    pub fn len(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .0
            .users
            .len()
    }

    /// Whether no user is in force.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests;
