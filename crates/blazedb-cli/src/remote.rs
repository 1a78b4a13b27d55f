//! The server `blazedb sync` remembers: after a successful sync, the server, the
//! database name on it, how it was trusted (pinned fingerprint, CA file, or plain TCP)
//! and the user, kept inside the encrypted database (`SyncNode::remember_remote`).
//! Never a token or a secret: those come from files or the environment every time.
//!
//! So `blazedb sync` alone syncs with the last server, and `--server` naming that same
//! server again reuses how it was trusted. A flag given always wins.

use std::path::PathBuf;

use blazedb::sync::SyncNode;
use serde_json::{Value as Json, json};

use crate::args::SyncArgs;
use crate::exit::{CliError, CliResult, Exit};

/// What is remembered of a server (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Remote {
    pub server: String,
    pub remote_db: String,
    pub fingerprint: Option<String>,
    pub ca: Option<PathBuf>,
    pub plain_tcp_insecure: bool,
    pub user: Option<String>,
}

impl Remote {
    /// As `status` and the stored record show it.
    #[must_use]
    pub fn to_json(&self) -> Json {
        json!({
            "server": self.server,
            "remote_db": self.remote_db,
            "fingerprint": self.fingerprint,
            "ca": self.ca.as_ref().map(|p| p.display().to_string()),
            "plain_tcp_insecure": self.plain_tcp_insecure,
            "user": self.user,
        })
    }

    fn from_json(j: &Json) -> Option<Remote> {
        let text = |k: &str| j.get(k).and_then(Json::as_str).map(str::to_owned);
        Some(Remote {
            server: text("server")?,
            remote_db: text("remote_db")?,
            fingerprint: text("fingerprint"),
            ca: text("ca").map(PathBuf::from),
            plain_tcp_insecure: j.get("plain_tcp_insecure")?.as_bool()?,
            user: text("user"),
        })
    }
}

/// The remote `node`'s database remembers, if any (an unreadable record is ignored:
/// the flags can always say it again).
///
/// # Errors
/// Database errors.
pub fn remembered(node: &SyncNode) -> CliResult<Option<Remote>> {
    Ok(node
        .remembered_remote()?
        .and_then(|b| serde_json::from_slice::<Json>(&b).ok())
        .and_then(|j| Remote::from_json(&j)))
}

/// Keeps `r` as the remote to sync with next time.
///
/// # Errors
/// Database errors.
pub fn remember(node: &SyncNode, r: &Remote) -> CliResult {
    Ok(node.remember_remote(r.to_json().to_string().as_bytes())?)
}

/// The arguments `a` with what they leave out taken from `last` (see the module docs),
/// and the remote they describe.
///
/// # Errors
/// [`Exit::Usage`] when no server is given and none is remembered.
pub fn resolve(a: &SyncArgs, last: Option<&Remote>) -> CliResult<(SyncArgs, Remote)> {
    let mut a = a.clone();
    let given_trust = a.fingerprint.is_some() || a.ca.is_some() || a.plain_tcp_insecure;
    let server = match (&a.server, last) {
        (Some(s), _) => s.clone(),
        (None, Some(r)) => r.server.clone(),
        (None, None) => {
            return Err(CliError::new(
                Exit::Usage,
                "no server given, and this database has not synced with one yet",
            )
            .hint("pass --server HOST:PORT --fingerprint SHA256 once; later `blazedb sync` alone uses them"));
        }
    };
    if let Some(r) = last.filter(|r| r.server == server) {
        if !given_trust {
            a.fingerprint.clone_from(&r.fingerprint);
            a.ca.clone_from(&r.ca);
            a.plain_tcp_insecure = r.plain_tcp_insecure;
        }
        if a.remote_db.is_none() {
            a.remote_db = Some(r.remote_db.clone());
        }
        if a.user.is_none() && std::env::var("BLAZEDB_USER").map_or(true, |u| u.is_empty()) {
            a.user.clone_from(&r.user);
        }
    }
    a.server = Some(server.clone());
    let remote = Remote {
        server,
        remote_db: a.remote_db.clone().unwrap_or_else(|| "main".to_owned()),
        fingerprint: a.fingerprint.clone(),
        ca: a
            .ca
            .as_ref()
            .map(|p| std::path::absolute(p).unwrap_or_else(|_| p.clone())),
        plain_tcp_insecure: a.plain_tcp_insecure,
        user: a.user.clone(),
    };
    Ok((a, remote))
}
