//! Addresses given as `HOST:PORT` (flags and the TOML file): an IP literal or a host
//! name, resolved once at start.

use std::net::SocketAddr;

/// `HOST:PORT` as a socket address: an IP literal, or a host name resolved once at
/// start (`localhost:7447`), IPv4 first.
///
/// # Errors
/// The text is not `HOST:PORT`, or the name does not resolve.
pub fn resolve_addr(text: &str) -> std::result::Result<SocketAddr, String> {
    use std::net::ToSocketAddrs as _;
    if let Ok(a) = text.parse::<SocketAddr>() {
        return Ok(a);
    }
    let all: Vec<SocketAddr> = text
        .to_socket_addrs()
        .map_err(|e| format!("'{text}' is not HOST:PORT with a known host: {e}"))?
        .collect();
    all.iter()
        .find(|a| a.is_ipv4())
        .or_else(|| all.first())
        .copied()
        .ok_or_else(|| format!("'{text}' names no address"))
}

pub fn resolve_addr_opt<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<SocketAddr>, D::Error> {
    let text: Option<String> = serde::Deserialize::deserialize(d)?;
    text.map(|t| resolve_addr(&t).map_err(serde::de::Error::custom))
        .transpose()
}
