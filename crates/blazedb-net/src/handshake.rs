//! The connection handshake, after TLS and before any sync message:
//!
//! ```text
//! client                                   server
//!   ClientHello{magic, versions, caps, database, client nonce}  ->
//!             <-  ServerHello{version, caps, server nonce, wants token/secret}
//!   Auth{token proof?, secret proof?}       ->
//!             <-  Welcome{server proof?}    (or Refused{code}, then close)
//! ```
//!
//! Proofs are made over the transcript (database, both nonces, the TLS exporter value),
//! see `blazedb_crypto::auth`. A client proves one identity — the shared auth token, a
//! named user's token, or the server-peer token — and the shared secret when the
//! server has one. The identity decides the session's [`Grant`]: the token and the
//! secret give a client (principal `@shared`), a user a client with that user's
//! permissions, the peer token a peer that may sync as a server. Invariants:
//! - The server sends nothing but `ServerHello` and a refusal before the client's proofs
//!   verify, and reads nothing but the two handshake frames: an unauthenticated peer
//!   reads no data and writes none.
//! - Every proof the server requires must verify; a missing one is a failure, not a
//!   skip. Comparisons are constant-time, and an unknown user name costs the same
//!   verification as a known one.
//! - A connection takes one of the server's authenticated slots only after its proofs
//!   verify: anonymous connections hold handshake slots only, and a client at the
//!   limit reads a typed `Busy` refusal inside TLS.
//! - The whole handshake runs under one deadline (the caller's), and its frames are
//!   limited to [`HANDSHAKE_FRAME_MAX`](crate::frame::HANDSHAKE_FRAME_MAX).

use std::sync::Arc;

use blazedb_crypto::auth::{CredentialKey, ProofRole, Transcript};
use blazedb_sync::Grant;
use blazedb_sync::grant::SHARED_PRINCIPAL;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::{Framed, LengthDelimitedCodec};
use zeroize::Zeroizing;

use crate::error::NetError;
use crate::frame::{
    Bytes32, FRAME_MAX, Frame, Identity, MAGIC, NET_VERSION, NET_VERSION_MIN, RefuseCode, codec,
};
use crate::users::UserDirectory;

/// Default time a connection has to finish TLS and authentication.
pub const HANDSHAKE_TIMEOUT_DEFAULT: std::time::Duration = std::time::Duration::from_secs(10);
/// Accepted range of the handshake timeout.
pub const HANDSHAKE_TIMEOUT_RANGE: std::ops::RangeInclusive<std::time::Duration> =
    std::time::Duration::from_millis(100)..=std::time::Duration::from_secs(600);

/// Capabilities this build knows (none yet beyond the base protocol; the field lets
/// later versions negotiate features without a version bump).
pub const CAPS: &[&str] = &[];

/// What a client proves it knows. Of the identities (`peer_token`, `user`, `token`)
/// the first one given is proven; the shared secret goes with any of them.
#[derive(Clone, Default)]
pub struct Credentials {
    /// The shared auth token.
    pub token: Option<Zeroizing<String>>,
    /// The shared secret.
    pub secret: Option<Zeroizing<String>>,
    /// A named user and that user's token.
    pub user: Option<(String, Zeroizing<String>)>,
    /// The server-to-server token (a server syncing with another as a peer).
    pub peer_token: Option<Zeroizing<String>>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("token", &self.token.as_ref().map(|_| ".."))
            .field("secret", &self.secret.as_ref().map(|_| ".."))
            .field("user", &self.user.as_ref().map(|(n, _)| n))
            .field("peer_token", &self.peer_token.as_ref().map(|_| ".."))
            .finish()
    }
}

impl Credentials {
    /// No credentials.
    #[must_use]
    pub fn none() -> Credentials {
        Credentials::default()
    }

    /// With an auth token.
    #[must_use]
    pub fn token(mut self, token: impl Into<String>) -> Credentials {
        self.token = Some(Zeroizing::new(token.into()));
        self
    }

    /// With a shared secret.
    #[must_use]
    pub fn secret(mut self, secret: impl Into<String>) -> Credentials {
        self.secret = Some(Zeroizing::new(secret.into()));
        self
    }

    /// As user `name` with that user's token.
    #[must_use]
    pub fn user(mut self, name: impl Into<String>, token: impl Into<String>) -> Credentials {
        self.user = Some((name.into(), Zeroizing::new(token.into())));
        self
    }

    /// As a server peer, with the server-to-server token.
    #[must_use]
    pub fn peer_token(mut self, token: impl Into<String>) -> Credentials {
        self.peer_token = Some(Zeroizing::new(token.into()));
        self
    }

    fn identity(&self, transcript: &[u8; 32]) -> Identity {
        if let Some(t) = &self.peer_token {
            return Identity::Peer(
                CredentialKey::from_peer_token(t).prove(ProofRole::ServerPeer, transcript),
            );
        }
        if let Some((name, t)) = &self.user {
            return Identity::User {
                name: name.clone(),
                proof: CredentialKey::from_user_token(name, t)
                    .prove(ProofRole::ClientUser, transcript),
            };
        }
        match &self.token {
            Some(t) => Identity::Token(
                CredentialKey::from_token(t).prove(ProofRole::ClientToken, transcript),
            ),
            None => Identity::None,
        }
    }

    fn has_identity(&self) -> bool {
        self.peer_token.is_some() || self.user.is_some() || self.token.is_some()
    }
}

/// What a server requires of its clients, for one database.
pub(crate) struct ServerAuth {
    pub database: String,
    pub token: Option<CredentialKey>,
    pub secret: Option<CredentialKey>,
    pub peer: Option<CredentialKey>,
    pub users: Option<Arc<UserDirectory>>,
}

impl ServerAuth {
    /// Whether a client must prove an identity: unless the shared secret alone is
    /// configured as the way in.
    fn wants_identity(&self) -> bool {
        self.token.is_some() || self.secret.is_none()
    }
}

/// Who the server let in.
pub(crate) struct Admitted {
    pub grant: Grant,
    /// The user and its record id, for a user (its sessions end when it is revoked).
    pub user: Option<(String, u64)>,
}

pub(crate) type Conn<S> = Framed<S, LengthDelimitedCodec>;

fn nonce() -> Result<Bytes32, NetError> {
    let mut n = [0u8; 32];
    getrandom::fill(&mut n).map_err(|e| NetError::Config(format!("random nonce: {e}")))?;
    Ok(n)
}

pub(crate) async fn send<S: AsyncWrite + Unpin>(
    c: &mut Conn<S>,
    f: &Frame,
) -> Result<(), NetError> {
    c.send(f.encode()).await.map_err(NetError::from)
}

/// The next frame; the end of the stream is an error here (the handshake is not done).
async fn recv<S: AsyncRead + Unpin>(
    c: &mut Conn<S>,
    what: &'static str,
) -> Result<Frame, NetError> {
    match c.next().await {
        None => Err(NetError::Io(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("connection closed while waiting for {what}"),
        ))),
        Some(Err(e)) => Err(frame_error(e)),
        Some(Ok(body)) => Frame::decode(&body).map_err(|e| NetError::Protocol(e.to_string())),
    }
}

/// A codec error: an over-long length prefix is a protocol violation, the rest is I/O.
pub(crate) fn frame_error(e: std::io::Error) -> NetError {
    if e.kind() == std::io::ErrorKind::InvalidData {
        NetError::Protocol(format!("frame: {e}"))
    } else {
        NetError::Io(e)
    }
}

async fn refuse<S: AsyncWrite + Unpin>(
    c: &mut Conn<S>,
    code: RefuseCode,
    message: &str,
) -> NetError {
    let _ = send(
        c,
        &Frame::Refused {
            code,
            message: message.to_owned(),
        },
    )
    .await;
    let _ = SinkExt::<Bytes>::close(c).await;
    NetError::Refused {
        code,
        message: message.to_owned(),
    }
}

/// Runs the server side. `take_slot` takes one of the server's authenticated slots
/// once the proofs verify (`None`: at the limit, answered `Busy`). On success the
/// connection's frame limit is raised to [`FRAME_MAX`]. Every failure has already been
/// answered with a `Refused` frame where the client can still read one.
pub(crate) async fn server<S: AsyncRead + AsyncWrite + Unpin, P>(
    io: S,
    channel: Option<Bytes32>,
    auth: &ServerAuth,
    take_slot: impl FnOnce() -> Option<P>,
) -> Result<(Conn<S>, Admitted, P), NetError> {
    let mut c = Framed::new(io, codec());
    let hello = match recv(&mut c, "the client hello").await {
        Ok(f) => f,
        Err(e @ NetError::Protocol(_)) => {
            return Err(refuse(&mut c, RefuseCode::Protocol, &e.to_string()).await);
        }
        Err(e) => return Err(e),
    };
    let Frame::ClientHello {
        magic,
        versions: (lo, hi),
        caps: _,
        database,
        nonce: client_nonce,
    } = hello
    else {
        return Err(refuse(&mut c, RefuseCode::Protocol, "expected a client hello").await);
    };
    if magic != MAGIC || lo > NET_VERSION || hi < lo || hi < NET_VERSION_MIN {
        return Err(refuse(
            &mut c,
            RefuseCode::Version,
            &format!("this server speaks network protocol version {NET_VERSION}"),
        )
        .await);
    }
    let version = hi.min(NET_VERSION);
    if database != auth.database {
        return Err(refuse(
            &mut c,
            RefuseCode::UnknownDatabase,
            &format!("this server does not serve database {database:?}"),
        )
        .await);
    }
    let server_nonce = nonce()?;
    send(
        &mut c,
        &Frame::ServerHello {
            version,
            caps: Vec::new(),
            nonce: server_nonce,
            wants_identity: auth.wants_identity(),
            wants_secret: auth.secret.is_some(),
        },
    )
    .await?;
    let transcript = Transcript {
        version,
        database: &auth.database,
        client_nonce: &client_nonce,
        server_nonce: &server_nonce,
        channel: channel.as_ref(),
    }
    .hash();
    let proofs = match recv(&mut c, "the client's proofs").await {
        Ok(f) => f,
        Err(e @ NetError::Protocol(_)) => {
            return Err(refuse(&mut c, RefuseCode::Protocol, &e.to_string()).await);
        }
        Err(e) => return Err(e),
    };
    let Frame::Auth {
        identity,
        secret_proof,
    } = proofs
    else {
        return Err(refuse(&mut c, RefuseCode::Protocol, "expected the client's proofs").await);
    };
    // Both checks always run, so timing does not tell which credential failed.
    let secret_ok = match &auth.secret {
        None => true,
        Some(k) => secret_proof.is_some_and(|p| k.verify(ProofRole::ClientSecret, &transcript, &p)),
    };
    let admitted = verify_identity(auth, identity, &transcript).await;
    let admitted = match admitted {
        Some(a) if secret_ok => a,
        _ => return Err(refuse(&mut c, RefuseCode::Auth, "authentication failed").await),
    };
    let Some(slot) = take_slot() else {
        return Err(refuse(
            &mut c,
            RefuseCode::Busy,
            "the server is at its connection limit; try again later",
        )
        .await);
    };
    let server_proof = auth
        .secret
        .as_ref()
        .map(|k| k.prove(ProofRole::ServerSecret, &transcript));
    send(&mut c, &Frame::Welcome { server_proof }).await?;
    c.codec_mut().set_max_frame_length(FRAME_MAX);
    Ok((c, admitted, slot))
}

/// Who `identity` proves to be, if its proof verifies.
async fn verify_identity(
    auth: &ServerAuth,
    identity: Identity,
    transcript: &[u8; 32],
) -> Option<Admitted> {
    let shared = || Admitted {
        grant: Grant::client(SHARED_PRINCIPAL),
        user: None,
    };
    match identity {
        Identity::None => (auth.token.is_none() && auth.secret.is_some()).then(shared),
        Identity::Token(p) => auth
            .token
            .as_ref()
            .is_some_and(|k| k.verify(ProofRole::ClientToken, transcript, &p))
            .then(shared),
        Identity::Peer(p) => auth
            .peer
            .as_ref()
            .is_some_and(|k| k.verify(ProofRole::ServerPeer, transcript, &p))
            .then(|| Admitted {
                grant: Grant::peer(),
                user: None,
            }),
        Identity::User { name, proof } => {
            let dir = auth.users.as_ref()?;
            // A revocation takes effect at the next handshake: look at the list now.
            let d = Arc::clone(dir);
            if let Ok(Err(e)) = tokio::task::spawn_blocking(move || d.refresh()).await {
                // Anyone may start a user handshake: at most one line a second.
                static LOG_USERS: blazedb_sync::log_limit::LogLimit =
                    blazedb_sync::log_limit::LogLimit::new();
                if let Some(left_out) = LOG_USERS.allow() {
                    tracing::warn!(error = %e, left_out, "the named users no longer read or open; the users read before stay in force");
                }
            }
            let user = dir.lookup(&name);
            // An unknown name is checked against a key no token has, so it costs the
            // same as a wrong token.
            let nobody = CredentialKey::from_bytes(&[0; 32]);
            let key = user.as_ref().map_or(&nobody, |u| &u.key);
            let ok = key.verify(ProofRole::ClientUser, transcript, &proof);
            let user = user.filter(|_| ok)?;
            Some(Admitted {
                grant: user.grant,
                user: Some((name, user.id)),
            })
        }
    }
}

/// Runs the client side. On success the connection's frame limit is raised to
/// [`FRAME_MAX`].
pub(crate) async fn client<S: AsyncRead + AsyncWrite + Unpin>(
    io: S,
    channel: Option<Bytes32>,
    database: &str,
    creds: &Credentials,
) -> Result<Conn<S>, NetError> {
    let mut c = Framed::new(io, codec());
    let client_nonce = nonce()?;
    send(
        &mut c,
        &Frame::ClientHello {
            magic: MAGIC,
            versions: (NET_VERSION, NET_VERSION),
            caps: CAPS.iter().map(|s| (*s).to_owned()).collect(),
            database: database.to_owned(),
            nonce: client_nonce,
        },
    )
    .await?;
    let (version, server_nonce, wants_identity, wants_secret) =
        match recv(&mut c, "the server hello").await? {
            Frame::ServerHello {
                version,
                nonce,
                wants_identity,
                wants_secret,
                ..
            } if version == NET_VERSION => (version, nonce, wants_identity, wants_secret),
            Frame::ServerHello { version, .. } => {
                return Err(NetError::Protocol(format!(
                    "the server chose unknown version {version}"
                )));
            }
            Frame::Refused { code, message } => return Err(NetError::Refused { code, message }),
            other => {
                return Err(NetError::Protocol(format!(
                    "expected the server hello, got {}",
                    other.kind()
                )));
            }
        };
    let missing = match (
        wants_identity && !creds.has_identity(),
        wants_secret && creds.secret.is_none(),
    ) {
        (true, true) => {
            Some("the server requires an auth token (or a user's token) and a shared secret")
        }
        (true, false) => Some("the server requires an auth token (or a user's token)"),
        (false, true) => Some("the server requires a shared secret"),
        (false, false) => None,
    };
    if let Some(m) = missing {
        let _ = SinkExt::<Bytes>::close(&mut c).await;
        return Err(NetError::Auth(format!("{m}; none configured")));
    }
    let transcript = Transcript {
        version,
        database,
        client_nonce: &client_nonce,
        server_nonce: &server_nonce,
        channel: channel.as_ref(),
    }
    .hash();
    let secret_key = creds
        .secret
        .as_ref()
        .map(|s| CredentialKey::from_secret(s, database));
    let identity = creds.identity(&transcript);
    let secret_proof = secret_key
        .as_ref()
        .filter(|_| wants_secret)
        .map(|k| k.prove(ProofRole::ClientSecret, &transcript));
    send(
        &mut c,
        &Frame::Auth {
            identity,
            secret_proof,
        },
    )
    .await?;
    match recv(&mut c, "the server's welcome").await? {
        Frame::Welcome { server_proof } => {
            // A client holding the secret insists the server proves it too: without
            // TLS this is what tells the real server from an impostor.
            if let Some(k) = &secret_key {
                let proven = server_proof
                    .is_some_and(|p| k.verify(ProofRole::ServerSecret, &transcript, &p));
                if !proven {
                    let _ = SinkExt::<Bytes>::close(&mut c).await;
                    return Err(NetError::Auth(
                        "the server could not prove it knows the shared secret".into(),
                    ));
                }
            }
        }
        Frame::Refused { code, message } => return Err(NetError::Refused { code, message }),
        other => {
            return Err(NetError::Protocol(format!(
                "expected the welcome, got {}",
                other.kind()
            )));
        }
    }
    c.codec_mut().set_max_frame_length(FRAME_MAX);
    Ok(c)
}

/// The bytes of an encoded frame (tests write hostile streams with it).
#[must_use]
pub fn encode_frame(f: &Frame) -> Bytes {
    let mut out = bytes::BytesMut::new();
    let body = f.encode();
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    out.freeze()
}
