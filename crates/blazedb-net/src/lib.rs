//! BlazeDB's network transports for sync.
//!
//! - [`frame`]: the length-delimited, postcard-encoded frames and their limits.
//! - [`handshake`]: version and capability negotiation, and authentication by proofs
//!   of an auth token and/or a per-database shared secret, bound to the TLS session.
//! - [`tls`]: TLS 1.3 identities (self-signed and kept, or supplied) and client trust
//!   (pinned fingerprint or CA roots).
//! - [`pump`]: an authenticated connection turned into the sync layer's bounded
//!   [`blazedb_sync::Wire`], with heartbeats and an idle timeout.
//! - [`dial`]: the dialing side: TCP (TLS, or plain by explicit opt-in) and
//!   Unix-socket relays.
//! - [`listener`]: the accepting side: its options, limits and budgets; `admit.rs` runs
//!   each socket through the handshake pools, TLS and the handshake, and hands on the
//!   grant of each peer.
//! - [`users`]: named users with their own tokens and permissions, kept sealed.
//! - [`server`]: [`Server`], [`ServerConfig`] / [`start`], [`RemoteNode`] and
//!   [`ConnectRemote`] for topologies.
//!
//! Invariant: this crate moves sync messages and checks who may send them; it never
//! interprets them. The sync engine behaves the same over every transport.

#![forbid(unsafe_code)]

mod admit;
pub mod dial;
mod error;
pub mod frame;
pub mod handshake;
pub mod listener;
pub mod pump;
pub mod server;
pub mod tls;
pub mod users;

pub use admit::ListenerStats;
#[cfg(unix)]
pub use dial::UnixRelay;
pub use dial::{DialOptions, FrameStream, Security, TcpRelay};
pub use error::NetError;
pub use frame::{Frame, Identity, RefuseCode};
pub use handshake::Credentials;
pub use listener::{ListenOptions, ListenerControl, NetListener};
pub use pump::Liveness;
pub use server::{ConnectRemote, RemoteNode, Server, ServerConfig, TlsSetup, start};
pub use tls::{Fingerprint, ServerIdentity, ServerTrust};
pub use users::{Permissions, UserDirectory, UserFile, UsersEdit, UsersFile, UsersPlace};
