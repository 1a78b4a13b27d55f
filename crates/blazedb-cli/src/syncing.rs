//! Sync commands: `sync` with a server (once or `--watch`) or a local peer, `status`,
//! `conflicts`.

use std::io::IsTerminal;
use std::path::Path;
use std::time::Duration;

use blazedb::OpenMode;
use blazedb::json::to_json;
use blazedb::sync::{
    ConflictEntry, ConnectionMode, Held, LogPos, Stamp, SyncConfig, SyncHandle, SyncMode, SyncNode,
    SyncProgress, Topology,
};
use serde_json::{Value as Json, json};

use crate::args::SyncArgs;
use crate::ctx::Ctx;
use crate::dial::{Dial, dial_for, enable, probe, role_for, runtime, sync_error};
use crate::exit::{CliError, CliResult, Exit};
use crate::open::{open_with, read_secret_file, secret_from};
use crate::output::iso_time;
use crate::remote;
use crate::sync_status::{status_json, watch_until_interrupted};

/// A stamp as JSON: origin node and role, hybrid-clock reading, origin write counter.
#[must_use]
pub fn stamp_json(s: &Stamp) -> Json {
    json!({
        "origin": s.node().to_string(),
        "role": s.role.to_string(),
        "hlc": s.hlc.to_string(),
        "time": iso_time(i128::from(s.hlc.wall_us)),
        "counter": s.dot.counter,
    })
}

fn held_json(h: &Held) -> Json {
    match h {
        Held::Value(v) => json!({"value": to_json(v)}),
        Held::Unset => json!("unset"),
        Held::Deleted => json!("deleted"),
        Held::Updated => json!("updated"),
    }
}

/// Who a node writes as, when this database knows it (see `SyncNode::principal_of`).
pub type UserOf<'a> = &'a dyn Fn(blazedb::sync::NodeId) -> Option<String>;

/// A stamp as JSON with the user its origin writes as.
fn stamp_with_user(s: &Stamp, user_of: UserOf<'_>) -> Json {
    let mut j = stamp_json(s);
    j["user"] = json!(user_of(s.node()));
    j
}

fn reason_text(e: &ConflictEntry) -> &'static str {
    match e.reason {
        blazedb::sync::LossReason::ServerPriority => "server-priority",
        blazedb::sync::LossReason::LaterTimestamp => "later-timestamp",
        blazedb::sync::LossReason::RetentionExpired => "retention-expired",
        blazedb::sync::LossReason::TooLarge => "too-large",
    }
}

/// A conflict-log entry as JSON (with the users of both writes, where known).
#[must_use]
pub fn conflict_json(e: &ConflictEntry, user_of: UserOf<'_>) -> Json {
    json!({
        "seq": e.seq,
        "collection": e.collection,
        "id": e.id.to_string(),
        "field": e.field,
        "lost": held_json(&e.lost),
        "loser": stamp_with_user(&e.loser, user_of),
        "won": e.won.as_ref().map(held_json),
        "winner": e.winner.as_ref().map(|w| stamp_with_user(w, user_of)),
        "reason": reason_text(e),
        "sentence": crate::conflict_text::sentence(
            e,
            "this database's",
            &|n| user_of(n).map_or_else(|| format!("node {n}"), |u| format!("user {u}")),
            crate::conflict_text::Values::Json,
        ),
        "detected_us": e.detected_us,
        "detected": iso_time(i128::from(e.detected_us)),
    })
}

pub fn sync(ctx: &mut Ctx<'_>, a: &SyncArgs) -> CliResult {
    ctx.outside_tx("sync")?;
    if ctx.live.is_some() {
        return Err(
            CliError::new(Exit::Usage, "sync runs in the background already")
                .hint("`sync status` shows it; `sync stop` ends it"),
        );
    }
    if let Some(peer) = &a.peer {
        return sync_peer(ctx, a, peer);
    }
    let Dial {
        role,
        relay,
        dialed,
        plain,
    } = dial_for(ctx.db, a)?;
    let db = ctx.db.clone();
    let timeout = Duration::from_secs(a.timeout);
    let watch = a.watch;
    let table = ctx.out.is_table();
    let rt = runtime()?;
    let status = rt.block_on(async move {
        probe(&relay, plain).await?;
        let handle = SyncHandle::enable(&db, relay, role, SyncConfig::default()).await?;
        let s = with_bootstrap_progress(&handle, handle.sync_now(timeout)).await;
        let s = s.map_err(sync_error)?;
        // Synced: next time `blazedb sync` alone dials the same way.
        remote::remember(&enable(&db, role)?, &dialed)?;
        if watch {
            watch_until_interrupted(&handle, table).await?;
        }
        let last = handle.status();
        handle.stop().await;
        db.flush()?;
        Ok::<_, CliError>(if watch { last } else { s })
    })?;
    ctx.out.value(&status_json(&status))
}

/// Runs `fut` (a sync), showing the bootstrap's progress on a terminal.
async fn with_bootstrap_progress<T>(
    handle: &SyncHandle,
    fut: impl std::future::Future<Output = T>,
) -> T {
    if !std::io::stderr().is_terminal() {
        return fut.await;
    }
    // A bar over the peer's log while it says how long it is; a spinner while a
    // snapshot arrives (its size is not known ahead: pages come until `done`).
    let bar = indicatif::ProgressBar::new_spinner();
    let spinner =
        indicatif::ProgressStyle::with_template("{spinner} receiving: {msg} ({elapsed})").ok();
    let over_log = indicatif::ProgressStyle::with_template(
        "{spinner} receiving: {pos}/{len} log entries ({percent}%), {msg}, {per_sec}, ETA {eta}",
    )
    .ok();
    let mut fut = std::pin::pin!(fut);
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let mut shown: Option<bool> = None;
    loop {
        tokio::select! {
            out = &mut fut => {
                bar.finish_and_clear();
                return out;
            }
            _ = tick.tick() => {
                let p = handle.progress();
                let snapshot = p
                    .peer
                    .and_then(|peer| handle.node().snapshot_progress(peer.node).ok().flatten())
                    .map(|s| s.slot);
                let (span, msg) = progress_line(&p, snapshot);
                let is_bar = span.is_some();
                if shown != Some(is_bar) {
                    if let Some(style) = if is_bar { &over_log } else { &spinner } {
                        bar.set_style(style.clone());
                    }
                    shown = Some(is_bar);
                }
                if let Some((pos, len)) = span {
                    bar.set_length(len);
                    bar.set_position(pos);
                }
                bar.set_message(msg);
                bar.tick();
            }
        }
    }
}

/// What a bootstrap's progress display shows: the span of the peer's log applied
/// (position, length) when the peer told its length and no snapshot is arriving, and
/// a line of what has arrived.
fn progress_line(p: &SyncProgress, snapshot_slot: Option<u64>) -> (Option<(u64, u64)>, String) {
    let got = format!(
        "{} documents, {:.1} MiB",
        p.writes_received,
        p.bytes_received as f64 / f64::from(1u32 << 20)
    );
    if let Some(slot) = snapshot_slot {
        return (None, format!("snapshot through slot {slot}, {got}"));
    }
    match p.peer_log_last {
        Some(last) if last.get() > 0 => {
            let len = last.get();
            (Some((p.cursor.get().min(len), len)), got)
        }
        _ if !p.connected => (None, "connecting".into()),
        _ => (None, got),
    }
}

/// Prints the status whenever it changes (a status line per change), until Ctrl-C.
fn sync_peer(ctx: &mut Ctx<'_>, a: &SyncArgs, peer: &Path) -> CliResult {
    let pw = match &a.peer_password_file {
        Some(f) => read_secret_file(f, "peer password")?,
        None => match std::env::var("BLAZEDB_PEER_PASSWORD") {
            Ok(p) if !p.is_empty() => zeroize::Zeroizing::new(p),
            _ => secret_from(
                ctx.global.password_file.as_deref(),
                "BLAZEDB_PASSWORD",
                "peer database password: ",
                "peer password",
                "--peer-password-file",
            )?,
        },
    };
    let other = open_with(peer, &pw, OpenMode::OpenExisting, false).map_err(|e| {
        if e.exit == Exit::Denied {
            CliError::new(
                Exit::Denied,
                format!("wrong password for the peer database {}", peer.display()),
            )
            .hint("give it with --peer-password-file FILE or BLAZEDB_PEER_PASSWORD")
        } else {
            e
        }
    })?;
    let (mine, theirs) = (role_for(ctx.db, a.role)?, role_for(&other, None)?);
    let db = ctx.db.clone();
    let timeout = Duration::from_secs(a.timeout);
    let rt = runtime()?;
    let (statuses, conflicts) = rt.block_on(async move {
        let mut topo = Topology::new();
        let me = topo.register(&db, "this", SyncMode::LocalAndRemote, mine)?;
        let them = topo.register(&other, "peer", SyncMode::LocalAndRemote, theirs)?;
        topo.connect_local(me, them, ConnectionMode::Bidirectional)?;
        let r = topo.sync_all(timeout).await;
        let statuses: Vec<Json> = topo
            .connections()
            .iter()
            .map(|(_, _, _, s)| status_json(s))
            .collect();
        topo.shutdown().await;
        r.map_err(|e| CliError::new(Exit::Sync, e.to_string()))?;
        db.flush()?;
        other.flush()?;
        let mine_conflicts = enable(&db, mine)?.conflicts(0, usize::MAX)?.len();
        Ok::<_, CliError>((statuses, mine_conflicts))
    })?;
    ctx.out.value(&json!({
        "peer": peer.display().to_string(),
        "connections": statuses,
        "conflicts_here": conflicts,
    }))
}

pub fn status(ctx: &mut Ctx<'_>) -> CliResult {
    ctx.outside_tx("status")?;
    let Some(role) = SyncNode::stored_role(ctx.db)? else {
        // Never synced: every document here uploads at the first sync (enabling sync
        // takes them over as this node's first writes).
        let mut pending = 0u64;
        for c in ctx.db.begin_read()?.collections()? {
            pending += ctx.db.collection(&c).count()?;
        }
        return ctx.out.value(&json!({
            "sync": false,
            "role": null,
            "pending_local_writes": pending,
            "servers": [],
        }));
    };
    let node = enable(ctx.db, role)?;
    let remembered = remote::remembered(&node)?.map(|r| r.to_json());
    let unabsorbed = node.unabsorbed()?;
    let mut servers = Vec::new();
    let mut pending = unabsorbed;
    // One entry per server node, however many names reached it (`localhost` and
    // `127.0.0.1` are one server).
    let mut by_peer: std::collections::BTreeMap<_, Vec<String>> = std::collections::BTreeMap::new();
    for (target, peer) in node.known_targets()? {
        by_peer.entry(peer).or_default().push(target.to_string());
    }
    for (peer, targets) in by_peer {
        let acked = node.acked_by(peer)?;
        let not_acked = node.own_writes_after(acked, usize::MAX)?;
        pending = pending.max(unabsorbed + not_acked);
        servers.push(json!({
            "target": targets.join(", "),
            "peer": peer.to_string(),
            "acked": acked,
            "cursor": node.recv_cursor(peer)?,
            "pending_local_writes": unabsorbed + not_acked,
        }));
    }
    if servers.is_empty() {
        pending += node.own_writes_after(LogPos::ZERO, usize::MAX)?;
    }
    let mut out = json!({
        "sync": true,
        "role": role.to_string(),
        "node": node.node_id().to_string(),
        "log_last": node.log_last()?,
        "pending_local_writes": pending,
        "conflicts": node.conflicts(0, usize::MAX)?.len(),
        "servers": servers,
        "remembered": remembered,
    });
    if let (Some(live), Some(m)) = (&ctx.live, out.as_object_mut()) {
        // The REPL's background sync, as it stands now.
        m.insert("live".into(), status_json(&live.status()));
    }
    ctx.out.value(&out)
}

pub fn conflicts(ctx: &mut Ctx<'_>, after: u64, limit: usize) -> CliResult {
    ctx.outside_tx("conflicts")?;
    let rows: Vec<Json> = match SyncNode::stored_role(ctx.db)? {
        Some(role) => {
            let node = enable(ctx.db, role)?;
            node.conflicts(after, limit)?
                .iter()
                .map(|e| conflict_json(e, &|n| node.principal_of(n).ok().flatten()))
                .collect()
        }
        None => Vec::new(),
    };
    ctx.out.rows(&rows)
}

#[cfg(test)]
mod tests {
    use blazedb::sync::{Dot, Hlc, LossReason, NodeId, Role};
    use blazedb::{DocId, Value};

    use super::*;

    #[test]
    fn the_bootstrap_display_spans_the_peers_log_and_says_what_arrived() {
        let mut p = SyncProgress {
            connected: true,
            peer: None,
            cursor: LogPos::new(250),
            peer_log_last: Some(LogPos::new(1_000)),
            writes_received: 240,
            bytes_received: 3 << 20,
        };
        assert_eq!(
            progress_line(&p, None),
            (Some((250, 1_000)), "240 documents, 3.0 MiB".into())
        );
        // A snapshot arriving: its length is unknown, its slot is shown.
        assert_eq!(
            progress_line(&p, Some(77)),
            (
                None,
                "snapshot through slot 77, 240 documents, 3.0 MiB".into()
            )
        );
        // Writes made while it ran move the cursor past the length first told.
        p.cursor = LogPos::new(1_010);
        assert_eq!(progress_line(&p, None).0, Some((1_000, 1_000)));
        // Before the peer's hello nothing tells how long its log is.
        p.peer_log_last = None;
        p.connected = false;
        assert_eq!(progress_line(&p, None), (None, "connecting".into()));
    }

    #[test]
    fn a_value_left_out_for_size_reads_too_large_with_its_value_and_no_winner() {
        let e = ConflictEntry {
            seq: 1,
            collection: "docs".into(),
            id: DocId::new(),
            field: Some("b".into()),
            loser: Stamp {
                dot: Dot {
                    node: NodeId(7),
                    counter: 2,
                },
                hlc: Hlc {
                    wall_us: 5,
                    logical: 0,
                },
                role: Role::Client,
            },
            lost: Held::Value(Value::from("large")),
            winner: None,
            won: None,
            reason: LossReason::TooLarge,
            detected_us: 9,
        };
        let j = conflict_json(&e, &|_| None);
        assert_eq!(j["reason"], "too-large");
        assert_eq!(j["lost"], json!({"value": "large"}));
        assert!(j["winner"].is_null() && j["won"].is_null());
    }
}
