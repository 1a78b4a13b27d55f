//! Network relays, the dialing side: [`TcpRelay`] and [`UnixRelay`] produce the same
//! [`Wire`] the in-memory relay produces, so the sync engine runs unchanged over them.
//! The accepting side is `listener.rs`.
//!
//! Invariants:
//! - Plain TCP happens only when the configuration says so explicitly.
//! - The server a relay reaches is trusted as a peer (it was authenticated by TLS —
//!   a pinned fingerprint or CA roots — and, with a shared secret, by its proof).

use std::io;
#[cfg(unix)]
use std::path::{Path, PathBuf};
use std::time::Duration;

use blazedb_sync::Wire;
use blazedb_sync::relay::{BoxFuture, Relay};
use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::error::NetError;
use crate::frame::Frame;
use crate::handshake::{self, Conn, Credentials, HANDSHAKE_TIMEOUT_DEFAULT};
use crate::pump::{self, Liveness, PumpOptions};
use crate::tls::{EXPORTER_LABEL, ServerTrust, exporter};

/// How a TCP client secures its connection.
#[derive(Clone, Debug)]
pub enum Security {
    /// TLS 1.3, trusting the server as given.
    Tls(ServerTrust),
    /// No encryption: credentials are still never sent (only proofs), but the data is
    /// readable on the wire and the server is authenticated only by the shared secret.
    /// For loopback tests and trusted local links; must be asked for by name.
    PlainTcpInsecure,
}

/// Settings shared by the dialing relays.
#[derive(Clone, Debug)]
pub struct DialOptions {
    pub connect_timeout: Duration,
    pub handshake_timeout: Duration,
    pub liveness: Liveness,
}

impl Default for DialOptions {
    fn default() -> Self {
        DialOptions {
            connect_timeout: Duration::from_secs(10),
            handshake_timeout: HANDSHAKE_TIMEOUT_DEFAULT,
            liveness: Liveness::default(),
        }
    }
}

/// Dials a sync server over TCP (TLS unless explicitly not).
#[derive(Clone, Debug)]
pub struct TcpRelay {
    host: String,
    port: u16,
    database: String,
    creds: Credentials,
    security: Security,
    opts: DialOptions,
}

impl TcpRelay {
    /// A relay to `database` on `host:port`.
    #[must_use]
    pub fn new(
        host: &str,
        port: u16,
        database: &str,
        security: Security,
        creds: Credentials,
    ) -> TcpRelay {
        TcpRelay {
            host: host.to_owned(),
            port,
            database: database.to_owned(),
            creds,
            security,
            opts: DialOptions::default(),
        }
    }

    /// With other timeouts.
    #[must_use]
    pub fn options(mut self, opts: DialOptions) -> TcpRelay {
        self.opts = opts;
        self
    }

    /// TCP, TLS (unless plain TCP was asked for) and the handshake: an authenticated
    /// connection, and the peer's address.
    async fn dial_conn(&self) -> Result<(Conn<Box<dyn Io>>, String), NetError> {
        let addr = format!("{}:{}", self.host, self.port);
        let tcp = tokio::time::timeout(
            self.opts.connect_timeout,
            tokio::net::TcpStream::connect(&addr),
        )
        .await
        .map_err(|_| NetError::Timeout("the TCP connection"))??;
        tcp.set_nodelay(true)?;
        let peer = tcp
            .peer_addr()
            .map_or_else(|_| addr.clone(), |a| a.to_string());
        let work = async {
            match &self.security {
                Security::Tls(trust) => {
                    let cfg = trust.client_config()?;
                    // A pinned certificate is checked by hash, not name; roots check the
                    // name dialed.
                    let name = rustls::pki_types::ServerName::try_from(self.host.clone())
                        .map_err(|e| NetError::Config(format!("host name {:?}: {e}", self.host)))?;
                    let tls = tokio_rustls::TlsConnector::from(cfg)
                        .connect(name, tcp)
                        .await
                        .map_err(tls_error)?;
                    let channel = exporter(tls.get_ref().1.export_keying_material(
                        [0u8; 32],
                        EXPORTER_LABEL,
                        None,
                    ))?;
                    let io: Box<dyn Io> = Box::new(tls);
                    handshake::client(io, Some(channel), &self.database, &self.creds).await
                }
                Security::PlainTcpInsecure => {
                    let io: Box<dyn Io> = Box::new(tcp);
                    handshake::client(io, None, &self.database, &self.creds).await
                }
            }
        };
        let conn = tokio::time::timeout(self.opts.handshake_timeout, work)
            .await
            .map_err(|_| NetError::Timeout("the handshake"))??;
        Ok((conn, peer))
    }

    /// Connects once, with the typed reason when it fails (the sync layer's
    /// [`Relay::connect`] gets the same error as an [`io::Error`], for its retries).
    ///
    /// # Errors
    /// Refused (with the server's code), TLS, authentication, timeout, I/O.
    pub async fn dial(&self) -> Result<Wire, NetError> {
        let (conn, peer) = self.dial_conn().await?;
        Ok(pump::spawn(
            conn,
            peer,
            PumpOptions::dialer(self.opts.liveness),
            (),
        ))
    }

    /// Connects and authenticates, then hands over the connection as frames, without a
    /// sync session: for diagnostics, and for tests that play a misbehaving peer.
    ///
    /// # Errors
    /// As [`Relay::connect`].
    pub async fn connect_frames(&self) -> Result<FrameStream, NetError> {
        Ok(FrameStream {
            conn: self.dial_conn().await?.0,
        })
    }
}

/// A byte stream a connection runs over (TCP, TLS over TCP, a Unix socket).
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// An authenticated connection spoken to frame by frame (see
/// [`TcpRelay::connect_frames`]).
pub struct FrameStream {
    conn: Conn<Box<dyn Io>>,
}

impl std::fmt::Debug for FrameStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameStream").finish_non_exhaustive()
    }
}

impl FrameStream {
    /// Sends one frame.
    ///
    /// # Errors
    /// I/O errors.
    pub async fn send(&mut self, f: &Frame) -> Result<(), NetError> {
        handshake::send(&mut self.conn, f).await
    }

    /// Writes raw bytes (a partial or malformed frame, say).
    ///
    /// # Errors
    /// I/O errors.
    pub async fn send_bytes(&mut self, bytes: &[u8]) -> Result<(), NetError> {
        let io = self.conn.get_mut();
        io.write_all(bytes).await?;
        io.flush().await?;
        Ok(())
    }

    /// The next frame; `None` once the peer closed the connection.
    ///
    /// # Errors
    /// An undecodable or oversized frame; I/O errors.
    pub async fn recv(&mut self) -> Result<Option<Frame>, NetError> {
        match self.conn.next().await {
            None => Ok(None),
            Some(Err(e)) => Err(handshake::frame_error(e)),
            Some(Ok(body)) => Frame::decode(&body)
                .map(Some)
                .map_err(|e| NetError::Protocol(e.to_string())),
        }
    }
}

/// A TLS failure as the user should read it: a server that closes the connection
/// during TLS is unavailable (at its handshake limit, or stopping), not untrusted.
fn tls_error(e: io::Error) -> NetError {
    if e.kind() == io::ErrorKind::UnexpectedEof || e.kind() == io::ErrorKind::ConnectionReset {
        NetError::Unavailable(format!(
            "it closed the connection during TLS ({e}): busy or shutting down; try again later"
        ))
    } else {
        NetError::Tls(e.to_string())
    }
}

impl Relay for TcpRelay {
    fn connect(&self) -> BoxFuture<'_, io::Result<Wire>> {
        Box::pin(async move { self.dial().await.map_err(io::Error::from) })
    }

    fn describe(&self) -> String {
        let scheme = match self.security {
            Security::Tls(_) => "tls",
            Security::PlainTcpInsecure => "tcp",
        };
        format!("{scheme}://{}:{}/{}", self.host, self.port, self.database)
    }
}

/// Dials a sync server on a Unix-domain socket (local; no TLS, proofs as over TCP).
#[cfg(unix)]
#[derive(Clone, Debug)]
pub struct UnixRelay {
    path: PathBuf,
    database: String,
    creds: Credentials,
    opts: DialOptions,
}

#[cfg(unix)]
impl UnixRelay {
    #[must_use]
    pub fn new(path: &Path, database: &str, creds: Credentials) -> UnixRelay {
        UnixRelay {
            path: path.to_owned(),
            database: database.to_owned(),
            creds,
            opts: DialOptions::default(),
        }
    }

    /// Connects once, with the typed reason when it fails (the sync layer's
    /// [`Relay::connect`] gets the same error as an [`io::Error`], for its retries).
    ///
    /// # Errors
    /// Refused (with the server's code), TLS, authentication, timeout, I/O.
    pub async fn dial(&self) -> Result<Wire, NetError> {
        let work = async {
            let s = tokio::net::UnixStream::connect(&self.path).await?;
            let conn = handshake::client(s, None, &self.database, &self.creds).await?;
            Ok(pump::spawn(
                conn,
                format!("unix:{}", self.path.display()),
                PumpOptions::dialer(self.opts.liveness),
                (),
            ))
        };
        tokio::time::timeout(self.opts.handshake_timeout, work)
            .await
            .map_err(|_| NetError::Timeout("the handshake"))?
    }
}

#[cfg(unix)]
impl Relay for UnixRelay {
    fn connect(&self) -> BoxFuture<'_, io::Result<Wire>> {
        Box::pin(async move { self.dial().await.map_err(io::Error::from) })
    }

    fn describe(&self) -> String {
        format!("unix://{}/{}", self.path.display(), self.database)
    }
}
