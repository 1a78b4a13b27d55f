//! Proofs of sync credentials: a client proves it knows an auth token and/or a shared
//! secret without sending either, bound to one connection so a captured proof is
//! worthless on any other.
//!
//! - The token key is SHA-256 over a domain label and the token; a user's key is
//!   SHA-256 over another label, the user name and the user's token (so one user's
//!   proof never speaks for another name); a server-peer key is SHA-256 over a third
//!   label and the peer token; the secret key is HKDF-SHA256 over the shared secret
//!   with the database name as info, so each database a secret guards gets its own
//!   credential (a proof for one database says nothing about another).
//! - A proof is HMAC-SHA256(key, role label ‖ transcript). The transcript hashes,
//!   length-prefixed: the protocol label, the version, the database name, both peers'
//!   fresh random nonces and the TLS exporter value of the session (or a marker that
//!   there is none). A new connection has a new server nonce and a new exporter, so an
//!   old proof never verifies again.
//! - Verification is constant-time ([`hmac::Mac::verify_slice`]).
//!
//! Invariant: key material lives in [`Zeroizing`] buffers only.

use hkdf::Hkdf;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// What a proof speaks for (each has its own label, so one proof never stands in for
/// another).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProofRole {
    /// The client knows the auth token.
    ClientToken,
    /// The client knows the shared secret.
    ClientSecret,
    /// The server knows the shared secret (mutual authentication).
    ServerSecret,
    /// The client is the named user (knows that user's token).
    ClientUser,
    /// The dialing node is a server peer (knows the server-to-server token).
    ServerPeer,
}

impl ProofRole {
    fn label(self) -> &'static [u8] {
        match self {
            ProofRole::ClientToken => b"blazedb-auth/client-token",
            ProofRole::ClientSecret => b"blazedb-auth/client-secret",
            ProofRole::ServerSecret => b"blazedb-auth/server-secret",
            ProofRole::ClientUser => b"blazedb-auth/client-user",
            ProofRole::ServerPeer => b"blazedb-auth/server-peer",
        }
    }
}

/// A credential key a proof is made with. Zeroized on drop.
pub struct CredentialKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for CredentialKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CredentialKey(..)")
    }
}

impl CredentialKey {
    /// The key for an auth token.
    #[must_use]
    pub fn from_token(token: &str) -> CredentialKey {
        let mut h = Sha256::new();
        h.update(b"blazedb-auth/token-key/v1\0");
        h.update(token.as_bytes());
        let mut k = Zeroizing::new([0u8; 32]);
        k.copy_from_slice(&h.finalize());
        CredentialKey(k)
    }

    /// The key of user `name` with token `token`.
    #[must_use]
    pub fn from_user_token(name: &str, token: &str) -> CredentialKey {
        let mut h = Sha256::new();
        h.update(b"blazedb-auth/user-key/v1\0");
        h.update((name.len() as u64).to_be_bytes());
        h.update(name.as_bytes());
        h.update(token.as_bytes());
        let mut k = Zeroizing::new([0u8; 32]);
        k.copy_from_slice(&h.finalize());
        CredentialKey(k)
    }

    /// The key for a server-to-server (peer) token.
    #[must_use]
    pub fn from_peer_token(token: &str) -> CredentialKey {
        let mut h = Sha256::new();
        h.update(b"blazedb-auth/peer-key/v1\0");
        h.update(token.as_bytes());
        let mut k = Zeroizing::new([0u8; 32]);
        k.copy_from_slice(&h.finalize());
        CredentialKey(k)
    }

    /// A key kept as bytes (a server's record of a user's key).
    #[must_use]
    pub fn from_bytes(bytes: &[u8; 32]) -> CredentialKey {
        CredentialKey(Zeroizing::new(*bytes))
    }

    /// The key's bytes, to keep sealed (a server's record of a user's key).
    #[must_use]
    pub fn to_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(*self.0)
    }

    /// The per-database key for a shared secret.
    #[must_use]
    pub fn from_secret(secret: &str, database: &str) -> CredentialKey {
        let hk = Hkdf::<Sha256>::new(Some(b"blazedb-auth/shared-secret/v1"), secret.as_bytes());
        let mut k = Zeroizing::new([0u8; 32]);
        // 32 bytes is far below HKDF-SHA256's output limit.
        if hk.expand(database.as_bytes(), k.as_mut()).is_err() {
            unreachable!("HKDF refused a 32-byte output");
        }
        CredentialKey(k)
    }

    fn mac(&self, role: ProofRole, transcript: &[u8; 32]) -> Hmac<Sha256> {
        let mut m = match Hmac::<Sha256>::new_from_slice(self.0.as_ref()) {
            Ok(m) => m,
            Err(_) => unreachable!("HMAC accepts keys of any length"),
        };
        m.update(role.label());
        m.update(transcript);
        m
    }

    /// The proof of this key for `role` over `transcript`.
    #[must_use]
    pub fn prove(&self, role: ProofRole, transcript: &[u8; 32]) -> [u8; 32] {
        self.mac(role, transcript).finalize().into_bytes().into()
    }

    /// Whether `proof` is this key's proof for `role` over `transcript` (constant time).
    #[must_use]
    pub fn verify(&self, role: ProofRole, transcript: &[u8; 32], proof: &[u8; 32]) -> bool {
        self.mac(role, transcript).verify_slice(proof).is_ok()
    }
}

/// What one connection's proofs are bound to.
#[derive(Clone, Copy, Debug)]
pub struct Transcript<'a> {
    pub version: u16,
    pub database: &'a str,
    pub client_nonce: &'a [u8; 32],
    pub server_nonce: &'a [u8; 32],
    /// The TLS exporter value of the session; `None` without TLS.
    pub channel: Option<&'a [u8; 32]>,
}

impl Transcript<'_> {
    /// The transcript hash.
    #[must_use]
    pub fn hash(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        let mut part = |b: &[u8]| {
            h.update((b.len() as u64).to_be_bytes());
            h.update(b);
        };
        part(b"blazedb-auth/transcript/v1");
        part(&self.version.to_be_bytes());
        part(self.database.as_bytes());
        part(self.client_nonce);
        part(self.server_nonce);
        match self.channel {
            Some(c) => part(c),
            None => part(b"no-channel-binding"),
        }
        h.finalize().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t<'a>(
        db: &'a str,
        cn: &'a [u8; 32],
        sn: &'a [u8; 32],
        ch: Option<&'a [u8; 32]>,
    ) -> [u8; 32] {
        Transcript {
            version: 1,
            database: db,
            client_nonce: cn,
            server_nonce: sn,
            channel: ch,
        }
        .hash()
    }

    #[test]
    fn a_proof_verifies_only_for_its_key_role_and_transcript() {
        let k = CredentialKey::from_secret("s3cret", "db");
        let tr = t("db", &[1; 32], &[2; 32], Some(&[3; 32]));
        let p = k.prove(ProofRole::ClientSecret, &tr);
        assert!(k.verify(ProofRole::ClientSecret, &tr, &p));
        assert!(!k.verify(ProofRole::ServerSecret, &tr, &p), "role is bound");
        assert!(
            !CredentialKey::from_secret("s3cret", "other").verify(ProofRole::ClientSecret, &tr, &p),
            "database is bound"
        );
        assert!(!CredentialKey::from_secret("wrong", "db").verify(
            ProofRole::ClientSecret,
            &tr,
            &p
        ));
        for other in [
            t("db", &[1; 32], &[9; 32], Some(&[3; 32])),
            t("db", &[9; 32], &[2; 32], Some(&[3; 32])),
            t("db", &[1; 32], &[2; 32], Some(&[9; 32])),
            t("db", &[1; 32], &[2; 32], None),
            t("dc", &[1; 32], &[2; 32], Some(&[3; 32])),
        ] {
            assert!(
                !k.verify(ProofRole::ClientSecret, &other, &p),
                "a proof does not replay on another session"
            );
        }
        let mut bad = p;
        bad[31] ^= 1;
        assert!(!k.verify(ProofRole::ClientSecret, &tr, &bad));
    }

    #[test]
    fn a_user_proof_speaks_only_for_its_name() {
        let tr = t("db", &[1; 32], &[2; 32], None);
        let alice = CredentialKey::from_user_token("alice", "tok");
        let p = alice.prove(ProofRole::ClientUser, &tr);
        assert!(alice.verify(ProofRole::ClientUser, &tr, &p));
        assert!(!CredentialKey::from_user_token("bob", "tok").verify(
            ProofRole::ClientUser,
            &tr,
            &p
        ));
        assert!(!CredentialKey::from_token("tok").verify(ProofRole::ClientUser, &tr, &p));
        assert!(!CredentialKey::from_peer_token("tok").verify(ProofRole::ClientUser, &tr, &p));
        assert!(
            !alice.verify(ProofRole::ServerPeer, &tr, &p),
            "role is bound"
        );
        let kept = CredentialKey::from_bytes(&alice.to_bytes());
        assert!(kept.verify(ProofRole::ClientUser, &tr, &p));
    }

    #[test]
    fn token_and_secret_keys_differ_for_the_same_text() {
        let tr = t("db", &[1; 32], &[2; 32], None);
        let a = CredentialKey::from_token("x").prove(ProofRole::ClientToken, &tr);
        let b = CredentialKey::from_secret("x", "db").prove(ProofRole::ClientToken, &tr);
        assert_ne!(a, b);
    }
}
