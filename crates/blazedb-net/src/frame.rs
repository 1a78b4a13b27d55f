//! The network protocol's frames: a 4-byte big-endian length, then one postcard-encoded
//! [`Frame`]. Handshake frames open a connection; after it, [`Frame::Sync`] carries the
//! sync layer's messages unchanged. `docs/protocol.md` specifies every frame.
//!
//! Invariants:
//! - A frame's length is checked before its body is read: at most [`HANDSHAKE_FRAME_MAX`]
//!   until the peer is authenticated, at most [`FRAME_MAX`] after, so an unauthenticated
//!   peer can make the server hold no more than one small buffer.
//! - Decoding never panics and never allocates more than the frame holds (postcard reads
//!   lengths from the input; document fields decode depth-bounded).
//! - Variants and fields are appended, never reordered: the version in the hello says
//!   which ones a peer knows.

use blazedb_sync::Msg;
use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use tokio_util::codec::LengthDelimitedCodec;

/// The network protocol version spoken by this build (2: identities in `Auth`, named
/// users and server peers; `Beat` liveness with echoes).
pub const NET_VERSION: u16 = 2;
/// The oldest network protocol version this build accepts.
pub const NET_VERSION_MIN: u16 = 2;
/// Bytes that open every client hello: a peer speaking something else fails fast.
pub const MAGIC: [u8; 8] = *b"BLAZEDB\x01";
/// Largest frame before authentication (hellos and proofs are a few hundred bytes).
pub const HANDSHAKE_FRAME_MAX: usize = 4 * 1024;
/// Largest frame after authentication: a full batch (about 1 MiB) plus one maximal
/// document (16 MiB) that pushed it over, plus headroom for the envelope.
pub const FRAME_MAX: usize = blazedb_core::limits::DOCUMENT_BYTES_MAX + (2 << 20);
/// Largest frame from a sender trusted to relay (the server a client dialed, a server
/// peer): a document's merge state (in a snapshot page, or a `State` log item) can
/// outgrow one document — several concurrent versions of it — up to what storage keeps
/// in one record. Clients' frames stay within [`FRAME_MAX`] (they send only their own
/// writes), so a server holds no more than that for one of them.
pub const TRUSTED_FRAME_MAX: usize = blazedb_core::limits::AUX_RECORD_BYTES_MAX + (2 << 20);
/// Longest capability name and most capabilities in a hello.
pub const CAP_LEN_MAX: usize = 64;
pub const CAPS_MAX: usize = 32;

/// A 32-byte value (nonces, proofs).
pub type Bytes32 = [u8; 32];

/// One frame of the network protocol.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Frame {
    /// Client → server, first frame.
    ClientHello {
        magic: [u8; 8],
        /// Network protocol versions the client speaks (inclusive range).
        versions: (u16, u16),
        /// Capabilities the client would use.
        caps: Vec<String>,
        /// The database the client wants to sync with.
        database: String,
        nonce: Bytes32,
    },
    /// Server → client: the version and capabilities chosen, the server's nonce, and
    /// which credentials it requires: an identity (the auth token, a user's token or
    /// the server-peer token) and/or the shared secret.
    ServerHello {
        version: u16,
        caps: Vec<String>,
        nonce: Bytes32,
        wants_identity: bool,
        wants_secret: bool,
    },
    /// Client → server: proofs of the credentials (never the credentials themselves).
    Auth {
        identity: Identity,
        secret_proof: Option<Bytes32>,
    },
    /// Server → client: authenticated. With a shared secret the server proves it knows
    /// the secret too, so a client can tell a real server from an impostor even
    /// without TLS.
    Welcome { server_proof: Option<Bytes32> },
    /// Either side: the connection is refused or ends for a typed reason, then closes.
    Refused { code: RefuseCode, message: String },
    /// A sync-layer message (after authentication only).
    Sync(Msg),
    /// Liveness. Each side sends one every heartbeat interval with a fresh nonzero
    /// `nonce`; the other side answers at once with `nonce: 0` (an answer is not
    /// answered) and `echo` = that nonce. An echo of one of our nonces proves the peer
    /// has read everything we sent before it; a connection whose peer proves nothing
    /// for the idle timeout is closed, however much else it sends.
    Beat { nonce: u64, echo: u64 },
}

/// Who a client proves it is (with the proof; never the credential itself).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Identity {
    /// No identity (a server that requires only the shared secret).
    None,
    /// The shared auth token.
    Token(Bytes32),
    /// A named user (the user's own token).
    User { name: String, proof: Bytes32 },
    /// A server peer (the server-to-server token): may sync as a server and relay.
    Peer(Bytes32),
}

/// Why a connection was refused or closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RefuseCode {
    /// No common protocol version (or not a BlazeDB peer at all).
    Version,
    /// This server does not serve the database asked for.
    UnknownDatabase,
    /// Credentials missing or wrong. Deliberately says no more than that.
    Auth,
    /// The server is at its connection limit; try again later.
    Busy,
    /// A frame broke the protocol (undecodable, out of order, too large).
    Protocol,
    /// Nothing arrived for too long.
    Timeout,
    /// The server is shutting down.
    ShuttingDown,
}

impl RefuseCode {
    /// A stable, short name (logs, metrics, CLI messages).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            RefuseCode::Version => "version",
            RefuseCode::UnknownDatabase => "unknown-database",
            RefuseCode::Auth => "auth",
            RefuseCode::Busy => "busy",
            RefuseCode::Protocol => "protocol",
            RefuseCode::Timeout => "timeout",
            RefuseCode::ShuttingDown => "shutting-down",
        }
    }
}

/// A frame that could not be decoded.
#[derive(Debug, thiserror::Error)]
#[error("undecodable frame: {0}")]
pub struct DecodeError(String);

impl Frame {
    /// The frame's bytes (without the length prefix).
    #[must_use]
    pub fn encode(&self) -> Bytes {
        // Encoding a value of these types into a Vec cannot fail.
        Bytes::from(postcard::to_allocvec(self).unwrap_or_default())
    }

    /// The frame as it goes on the wire: the 4-byte big-endian length, then the body,
    /// in one buffer (written in one piece, so TLS sends one record, not two).
    #[must_use]
    pub fn encode_prefixed(&self) -> Vec<u8> {
        // Encoding a value of these types into a Vec cannot fail.
        let mut out = postcard::to_extend(self, vec![0u8; 4]).unwrap_or_default();
        let len = u32::try_from(out.len().saturating_sub(4)).unwrap_or(u32::MAX);
        if let Some(prefix) = out.get_mut(..4) {
            prefix.copy_from_slice(&len.to_be_bytes());
        }
        out
    }

    /// Decodes one frame body. Trailing bytes are an error: a frame is exactly one value.
    ///
    /// # Errors
    /// [`DecodeError`] for anything that is not exactly one valid frame.
    pub fn decode(body: &[u8]) -> Result<Frame, DecodeError> {
        let (f, rest) =
            postcard::take_from_bytes::<Frame>(body).map_err(|e| DecodeError(e.to_string()))?;
        if !rest.is_empty() {
            return Err(DecodeError(format!("{} bytes after the frame", rest.len())));
        }
        f.check()?;
        Ok(f)
    }

    /// Limits postcard cannot express.
    fn check(&self) -> Result<(), DecodeError> {
        if let Frame::ClientHello { caps, .. } | Frame::ServerHello { caps, .. } = self
            && (caps.len() > CAPS_MAX || caps.iter().any(|c| c.len() > CAP_LEN_MAX))
        {
            return Err(DecodeError("too many or too long capabilities".into()));
        }
        if let Frame::Auth {
            identity: Identity::User { name, .. },
            ..
        } = self
            && name.len() > blazedb_sync::grant::PRINCIPAL_LEN_MAX
        {
            return Err(DecodeError("too long a user name".into()));
        }
        Ok(())
    }

    /// A short name for logs.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Frame::ClientHello { .. } => "client-hello",
            Frame::ServerHello { .. } => "server-hello",
            Frame::Auth { .. } => "auth",
            Frame::Welcome { .. } => "welcome",
            Frame::Refused { .. } => "refused",
            Frame::Sync(m) => m.kind(),
            Frame::Beat { .. } => "beat",
        }
    }
}

/// The length-prefix codec, limited to handshake frames (raise it with
/// [`LengthDelimitedCodec::set_max_frame_length`] once authenticated).
#[must_use]
pub fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_type::<u32>()
        .max_frame_length(HANDSHAKE_FRAME_MAX)
        .new_codec()
}

/// Decodes a whole byte stream as frames (the fuzz target and tests use this): every
/// complete frame in order, then the first error if any.
///
/// # Errors
/// The first frame too large for `max` or undecodable.
pub fn decode_stream(bytes: &[u8], max: usize) -> Result<Vec<Frame>, DecodeError> {
    use tokio_util::codec::Decoder;
    let mut c = codec();
    c.set_max_frame_length(max);
    let mut buf = BytesMut::from(bytes);
    let mut out = Vec::new();
    loop {
        match c.decode(&mut buf) {
            Ok(Some(body)) => out.push(Frame::decode(&body)?),
            Ok(None) => return Ok(out),
            Err(e) => return Err(DecodeError(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_frame_kind_round_trips() {
        let frames = [
            Frame::ClientHello {
                magic: MAGIC,
                versions: (1, 1),
                caps: vec!["x".into()],
                database: "db".into(),
                nonce: [7; 32],
            },
            Frame::ServerHello {
                version: 1,
                caps: vec![],
                nonce: [1; 32],
                wants_identity: true,
                wants_secret: false,
            },
            Frame::Auth {
                identity: Identity::Token([2; 32]),
                secret_proof: None,
            },
            Frame::Auth {
                identity: Identity::User {
                    name: "alice".into(),
                    proof: [3; 32],
                },
                secret_proof: Some([4; 32]),
            },
            Frame::Welcome { server_proof: None },
            Frame::Refused {
                code: RefuseCode::Busy,
                message: "full".into(),
            },
            Frame::Sync(Msg::Ping { token: 9 }),
            Frame::Beat { nonce: 5, echo: 6 },
        ];
        for f in frames {
            assert_eq!(Frame::decode(&f.encode()).expect("decodes"), f);
            let stream = decode_stream(&f.encode_prefixed(), FRAME_MAX).expect("a stream");
            assert_eq!(
                stream,
                vec![f],
                "the prefixed encoding is one frame on the wire"
            );
        }
    }

    #[test]
    fn trailing_bytes_and_truncation_are_decode_errors() {
        let mut b = Frame::Beat { nonce: 1, echo: 2 }.encode().to_vec();
        b.push(0);
        assert!(Frame::decode(&b).is_err());
        let hello = Frame::ClientHello {
            magic: MAGIC,
            versions: (1, 1),
            caps: vec![],
            database: "db".into(),
            nonce: [0; 32],
        }
        .encode();
        for cut in 0..hello.len() {
            assert!(Frame::decode(&hello[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn a_length_prefix_over_the_limit_is_refused_before_the_body_arrives() {
        let mut b = ((HANDSHAKE_FRAME_MAX + 1) as u32).to_be_bytes().to_vec();
        b.extend_from_slice(&[0; 16]);
        assert!(decode_stream(&b, HANDSHAKE_FRAME_MAX).is_err());
    }

    #[test]
    fn too_many_capabilities_are_refused() {
        let f = Frame::ServerHello {
            version: 1,
            caps: vec!["c".into(); CAPS_MAX + 1],
            nonce: [0; 32],
            wants_identity: false,
            wants_secret: false,
        };
        assert!(Frame::decode(&f.encode()).is_err());
    }
}
