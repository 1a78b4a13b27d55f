//! What a peer may do on a session, decided by whoever authenticated it — never by what
//! the peer claims about itself (docs/security.md, "Who decides").
//!
//! A transport that authenticates peers (the network listener) hands each accepted
//! wire a [`Grant`]: a client credential gets [`Grant::client`], a server credential
//! [`Grant::peer`]. Peers reached in-process, and the server a node dials itself, are
//! trusted as peers.
//!
//! Invariants (kept by the session, `session/`, checked before anything is applied):
//! - A peer's `Hello` may not claim a role above `role`; its own writes carry the role
//!   it said hello with, so a client credential never yields server priority.
//! - A peer that may not `relay` sends only its own writes: never another node's write,
//!   never a merge state, never a snapshot; user attributions it passes on are never
//!   recorded.
//! - A peer that may not `write` has nothing applied; a peer limited to `collections`
//!   neither receives nor writes others.
//! - A `principal` owns the node ids it first said hello with on this node: another
//!   principal presenting one is refused (no impersonation of another user's writes).

use std::collections::BTreeSet;

use crate::clock::Role;

/// The principal of clients that authenticated with the shared auth token or shared
/// secret (they share one identity, so they can act for each other's node ids).
pub const SHARED_PRINCIPAL: &str = "@shared";

/// Longest principal (user) name, in bytes.
pub const PRINCIPAL_LEN_MAX: usize = 64;

/// The rights of the peer at the other end of one session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The highest role the peer may sync with.
    pub role: Role,
    /// Whether it may pass on what other nodes wrote (writes of other origins, merge
    /// states, snapshots, user attributions): only peers trusted like this node.
    pub relay: bool,
    /// Whether its writes are accepted at all.
    pub write: bool,
    /// The collections it may read and write (`None`: all).
    pub collections: Option<BTreeSet<String>>,
    /// Who it authenticated as (a user name, or [`SHARED_PRINCIPAL`]); `None` for a
    /// trusted peer. Writes of its node are attributed to it.
    pub principal: Option<String>,
}

impl Default for Grant {
    fn default() -> Self {
        Grant::peer()
    }
}

impl Grant {
    /// A peer trusted as this node trusts itself: any role, relaying allowed. For peers
    /// in the same process, the server a node dials, and peers that proved a server
    /// credential.
    #[must_use]
    pub fn peer() -> Grant {
        Grant {
            role: Role::Server,
            relay: true,
            write: true,
            collections: None,
            principal: None,
        }
    }

    /// A client authenticated as `principal`: client role, its own writes only, every
    /// collection, read-write.
    #[must_use]
    pub fn client(principal: impl Into<String>) -> Grant {
        Grant {
            role: Role::Client,
            relay: false,
            write: true,
            collections: None,
            principal: Some(principal.into()),
        }
    }

    /// Without the right to write.
    #[must_use]
    pub fn read_only(mut self) -> Grant {
        self.write = false;
        self
    }

    /// Limited to these collections.
    #[must_use]
    pub fn collections<S: Into<String>>(mut self, names: impl IntoIterator<Item = S>) -> Grant {
        self.collections = Some(names.into_iter().map(Into::into).collect());
        self
    }

    /// Whether collection `c` is within the grant.
    #[must_use]
    pub fn covers(&self, c: &str) -> bool {
        self.collections.as_ref().is_none_or(|s| s.contains(c))
    }

    /// How the grant reads in messages and logs.
    #[must_use]
    pub fn who(&self) -> &str {
        self.principal.as_deref().unwrap_or("a trusted peer")
    }
}

/// Checks a principal name: a user name (1 to 64 bytes of ASCII letters, digits, `.`,
/// `_`, `-`, not starting with `.` or `-`), or a built-in principal (the same after a
/// leading `@`).
///
/// # Errors
/// What is wrong with it.
pub fn check_principal(name: &str) -> Result<(), String> {
    let body = name.strip_prefix('@').unwrap_or(name);
    if body.is_empty() || name.len() > PRINCIPAL_LEN_MAX {
        return Err(format!(
            "a user name has 1 to {PRINCIPAL_LEN_MAX} bytes, not {}",
            name.len()
        ));
    }
    if body.starts_with(['.', '-']) {
        return Err(format!("user name {name:?} may not start with '.' or '-'"));
    }
    if let Some(c) = body
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "user name {name:?} holds {c:?}: use letters, digits, '.', '_' and '-'"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principal_names_are_short_plain_ascii() {
        for ok in [
            "alice",
            "a",
            "bob.smith",
            "svc_1-x",
            "@shared",
            &"x".repeat(64),
        ] {
            assert!(check_principal(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "@",
            "-x",
            ".x",
            "a b",
            "é",
            "a/b",
            "a\0",
            &"x".repeat(65),
        ] {
            assert!(check_principal(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_client_grant_never_relays_and_narrows_by_collection() {
        let g = Grant::client("alice").read_only().collections(["a"]);
        assert_eq!(g.role, Role::Client);
        assert!(!g.relay && !g.write);
        assert!(g.covers("a") && !g.covers("b"));
        assert!(Grant::peer().covers("anything"));
    }
}
