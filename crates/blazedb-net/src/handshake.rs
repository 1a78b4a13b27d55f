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
//! see `blazedb_crypto::auth`. Invariants:
//! - The server sends nothing but `ServerHello` and a refusal before the client's proofs
//!   verify, and reads nothing but the two handshake frames: an unauthenticated peer
//!   reads no data and writes none.
//! - Every proof the server requires must verify; a missing one is a failure, not a
//!   skip. Comparisons are constant-time.
//! - The whole handshake runs under one deadline (the caller's), and its frames are
//!   limited to [`HANDSHAKE_FRAME_MAX`](crate::frame::HANDSHAKE_FRAME_MAX).

use blazedb_crypto::auth::{CredentialKey, ProofRole, Transcript};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::{Framed, LengthDelimitedCodec};
use zeroize::Zeroizing;

use crate::error::NetError;
use crate::frame::{Bytes32, FRAME_MAX, Frame, MAGIC, NET_VERSION, RefuseCode, codec};

/// Capabilities this build knows (none yet beyond the base protocol; the field lets
/// later versions negotiate features without a version bump).
pub const CAPS: &[&str] = &[];

/// What a client proves it knows.
#[derive(Clone, Default)]
pub struct Credentials {
    pub token: Option<Zeroizing<String>>,
    pub secret: Option<Zeroizing<String>>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("token", &self.token.as_ref().map(|_| ".."))
            .field("secret", &self.secret.as_ref().map(|_| ".."))
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
}

/// What a server requires of its clients, for one database.
pub(crate) struct ServerAuth {
    pub database: String,
    pub token: Option<CredentialKey>,
    pub secret: Option<CredentialKey>,
}

impl ServerAuth {
    pub(crate) fn new(database: &str, token: Option<&str>, secret: Option<&str>) -> ServerAuth {
        ServerAuth {
            database: database.to_owned(),
            token: token.map(CredentialKey::from_token),
            secret: secret.map(|s| CredentialKey::from_secret(s, database)),
        }
    }
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

/// Sends a refusal on a connection no handshake has run on (at the connection limit,
/// or shutting down), then closes it.
pub(crate) async fn refuse_raw<S: AsyncRead + AsyncWrite + Unpin>(
    io: S,
    code: RefuseCode,
    message: &str,
) {
    let mut c = Framed::new(io, codec());
    let _ = refuse(&mut c, code, message).await;
}

/// Runs the server side. On success the connection's frame limit is raised to
/// [`FRAME_MAX`]. Every failure has already been answered with a `Refused` frame where
/// the client can still read one.
pub(crate) async fn server<S: AsyncRead + AsyncWrite + Unpin>(
    io: S,
    channel: Option<Bytes32>,
    auth: &ServerAuth,
) -> Result<Conn<S>, NetError> {
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
    if magic != MAGIC || lo > NET_VERSION || hi < lo {
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
            wants_token: auth.token.is_some(),
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
        token_proof,
        secret_proof,
    } = proofs
    else {
        return Err(refuse(&mut c, RefuseCode::Protocol, "expected the client's proofs").await);
    };
    let ok = |key: &Option<CredentialKey>, proof: Option<Bytes32>, role| match key {
        None => true,
        Some(k) => proof.is_some_and(|p| k.verify(role, &transcript, &p)),
    };
    // Both checks always run, so timing does not tell which credential failed.
    let token_ok = ok(&auth.token, token_proof, ProofRole::ClientToken);
    let secret_ok = ok(&auth.secret, secret_proof, ProofRole::ClientSecret);
    if !(token_ok & secret_ok) {
        return Err(refuse(&mut c, RefuseCode::Auth, "authentication failed").await);
    }
    let server_proof = auth
        .secret
        .as_ref()
        .map(|k| k.prove(ProofRole::ServerSecret, &transcript));
    send(&mut c, &Frame::Welcome { server_proof }).await?;
    c.codec_mut().set_max_frame_length(FRAME_MAX);
    Ok(c)
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
    let (version, server_nonce, wants_token, wants_secret) =
        match recv(&mut c, "the server hello").await? {
            Frame::ServerHello {
                version,
                nonce,
                wants_token,
                wants_secret,
                ..
            } if version == NET_VERSION => (version, nonce, wants_token, wants_secret),
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
        wants_token && creds.token.is_none(),
        wants_secret && creds.secret.is_none(),
    ) {
        (true, true) => Some("the server requires an auth token and a shared secret"),
        (true, false) => Some("the server requires an auth token"),
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
    let token_proof = creds
        .token
        .as_ref()
        .filter(|_| wants_token)
        .map(|t| CredentialKey::from_token(t).prove(ProofRole::ClientToken, &transcript));
    let secret_proof = secret_key
        .as_ref()
        .filter(|_| wants_secret)
        .map(|k| k.prove(ProofRole::ClientSecret, &transcript));
    send(
        &mut c,
        &Frame::Auth {
            token_proof,
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
