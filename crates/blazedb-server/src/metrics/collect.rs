//! What `/metrics` reports, read from the running server at each scrape and written in
//! the OpenMetrics text format by `prometheus-client`. Counters (`*_total`) only grow
//! for the life of the process: the session counters include sessions that ended
//! (`Server::session_totals`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use blazedb::net::Server;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use super::process;

/// Every metric of the server, ready to encode.
pub fn registry(server: Arc<Server>) -> Registry {
    let mut r = Registry::default();
    r.register(
        "blazedb_build",
        "The release and commit this server was built from.",
        Info::new(vec![
            ("version", env!("CARGO_PKG_VERSION").to_owned()),
            ("commit", blazedb_cmd::COMMIT.to_owned()),
        ]),
    );
    r.register_collector(Box::new(ServerMetrics(server)));
    r.register_collector(Box::new(process::ProcessMetrics));
    r
}

/// The sync listener's and sessions' figures.
#[derive(Debug)]
struct ServerMetrics(Arc<Server>);

fn counter(e: &mut DescriptorEncoder<'_>, name: &str, help: &str, v: u64) -> std::fmt::Result {
    let c = ConstCounter::new(v);
    c.encode(e.encode_descriptor(name, help, None, c.metric_type())?)
}

fn gauge(e: &mut DescriptorEncoder<'_>, name: &str, help: &str, v: u64) -> std::fmt::Result {
    let g = ConstGauge::new(v);
    g.encode(e.encode_descriptor(name, help, None, g.metric_type())?)
}

impl Collector for ServerMetrics {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> std::fmt::Result {
        let server = &self.0;
        if let Some(st) = server.stats() {
            let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
            gauge(
                &mut e,
                "blazedb_connections_open",
                "Connections open now, handshaking ones included.",
                load(&st.open),
            )?;
            gauge(
                &mut e,
                "blazedb_connections_handshaking",
                "Connections in TLS or the handshake now (they hold no client slot).",
                load(&st.handshaking),
            )?;
            counter(
                &mut e,
                "blazedb_connections_accepted",
                "Connections that authenticated.",
                load(&st.accepted),
            )?;
            counter(
                &mut e,
                "blazedb_connections_refused_auth",
                "Connections refused for wrong or missing credentials.",
                load(&st.refused_auth),
            )?;
            counter(
                &mut e,
                "blazedb_connections_refused_busy",
                "Connections refused at the connection limit.",
                load(&st.refused_busy),
            )?;
            counter(
                &mut e,
                "blazedb_handshakes_failed",
                "Connections that failed TLS or the handshake otherwise.",
                load(&st.handshake_failed),
            )?;
        }
        if let Some(c) = server.control() {
            gauge(
                &mut e,
                "blazedb_read_budget_free_bytes",
                "Bytes of the budget for received messages free now.",
                c.read_budget_available() as u64,
            )?;
            gauge(
                &mut e,
                "blazedb_send_budget_free_bytes",
                "Bytes of the budget for messages to send free now.",
                c.send_budget_available() as u64,
            )?;
        }
        // The sessions' own figures: no read of the node's state per client.
        let conns = server.sessions();
        gauge(
            &mut e,
            "blazedb_sessions",
            "Sync sessions running.",
            conns.len() as u64,
        )?;
        if let Some(t) = server.session_totals() {
            for (name, help, v) in [
                (
                    "blazedb_writes_received",
                    "Writes received from clients.",
                    t.writes_received,
                ),
                (
                    "blazedb_writes_rejected",
                    "Writes received that lost a conflict here on arrival.",
                    t.writes_rejected,
                ),
                (
                    "blazedb_writes_sent",
                    "Writes sent to clients.",
                    t.writes_sent,
                ),
                (
                    "blazedb_bytes_received",
                    "Bytes of sync messages received.",
                    t.bytes_received,
                ),
                (
                    "blazedb_bytes_sent",
                    "Bytes of sync messages sent.",
                    t.bytes_sent,
                ),
                (
                    "blazedb_conflicts",
                    "Conflicts recorded through sessions.",
                    t.conflicts,
                ),
            ] {
                counter(&mut e, name, help, v)?;
            }
        }
        let last = server
            .store()
            .and_then(|n| n.log_last().ok())
            .unwrap_or_default();
        let lag = ConstGauge::new(0u64);
        let mut family = e.encode_descriptor(
            "blazedb_client_lag_writes",
            "Log positions of this server a client has not confirmed.",
            None,
            lag.metric_type(),
        )?;
        for s in &conns {
            let client = s
                .peer
                .as_ref()
                .map_or_else(|| "unknown".to_owned(), |p| p.node.to_string());
            let labels = [("client", client)];
            ConstGauge::new(last.entries_since(s.acked)).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}
