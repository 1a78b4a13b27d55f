//! A sync connection's status as users of sync SDKs know it: a `state` (`connecting`,
//! `offline`, `downloading`, `uploading`, `synced`), whether it has synced and when,
//! what is left to download, and upload errors (the peer refuses this side's writes)
//! apart from the connection's. Shared by `sync`, `sync --watch` and the REPL's
//! background sync (`sync start`).

use std::time::Duration;

use blazedb::sync::{SyncHandle, SyncStatus};
use serde_json::{Value as Json, json};

use crate::exit::CliResult;
use crate::output::iso_time;

/// The state a sync SDK would show for `s`.
#[must_use]
pub fn state(s: &SyncStatus) -> &'static str {
    if !s.connected {
        return if s.last_error.is_some() {
            "offline"
        } else {
            "connecting"
        };
    }
    if download_remaining(s) > 0 {
        "downloading"
    } else if s.pending_local_writes > 0 && s.upload_refused.is_none() {
        "uploading"
    } else {
        "synced"
    }
}

/// Entries of the peer's log it told us of that are not applied here yet.
fn download_remaining(s: &SyncStatus) -> u64 {
    s.peer_log_last
        .map_or(0, |last| last.entries_since(s.cursor))
}

/// A connection's status as JSON.
#[must_use]
pub fn status_json(s: &SyncStatus) -> Json {
    // The connection's own error, when it is not the refusal of our writes.
    let download_error = s
        .last_error
        .as_ref()
        .filter(|e| s.upload_refused.as_ref() != Some(*e));
    json!({
        "state": state(s),
        "has_synced": s.last_sync.is_some(),
        "target": s.target,
        "node": s.node.to_string(),
        "role": s.role.to_string(),
        "connected": s.connected,
        "peer": s.peer.map(|p| json!({"node": p.node.to_string(), "role": p.role.to_string()})),
        "pending_local_writes": s.pending_local_writes,
        "download_remaining": download_remaining(s),
        "last_sync_us": s.last_sync.map(|t| t.0),
        "last_sync": s.last_sync.map(|t| iso_time(i128::from(t.0))),
        "cursor": s.cursor,
        "acked": s.acked,
        "writes_sent": s.writes_sent,
        "writes_received": s.writes_received,
        "writes_rejected": s.writes_rejected,
        "bytes_sent": s.bytes_sent,
        "bytes_received": s.bytes_received,
        "conflicts": s.conflicts,
        "last_error": s.last_error,
        "upload_error": s.upload_refused,
        "download_error": download_error,
        "clock_skew_us": s.clock_skew_us,
        "peer_log_last": s.peer_log_last,
    })
}

/// A status as one line: the state and peer, what moved each way, what waits.
#[must_use]
pub fn watch_line(s: &Json) -> String {
    let n = |k: &str| s.get(k).and_then(Json::as_u64).unwrap_or(0);
    let peer = format!(
        "{} ({})",
        s["peer"]["node"].as_str().unwrap_or("?"),
        s["peer"]["role"].as_str().unwrap_or("?")
    );
    let head = match s["state"].as_str().unwrap_or_default() {
        "connecting" => "connecting".to_owned(),
        "offline" => "offline, retrying".to_owned(),
        "downloading" => format!("downloading from {peer}: {} to go", n("download_remaining")),
        "uploading" => format!("uploading to {peer}"),
        _ => format!("synced with {peer}"),
    };
    let mut line = format!(
        "{head} · received {} · sent {} · pending {} · conflicts {}",
        n("writes_received"),
        n("writes_sent"),
        n("pending_local_writes"),
        n("conflicts")
    );
    if let Some(e) = s.get("upload_error").and_then(Json::as_str) {
        line.push_str(&format!(" · upload refused: {e}"));
    }
    if let Some(e) = s.get("download_error").and_then(Json::as_str) {
        line.push_str(&format!(" · last error: {e}"));
    }
    line
}

/// Turns statuses into lines, one each time something a person cares about changes
/// (the figures that move on every heartbeat are left out).
#[derive(Debug, Default)]
pub struct Changes {
    last: Option<Json>,
}

impl Changes {
    /// The line to print for `status`, if it differs from the last one: on a terminal
    /// the time and [`watch_line`], otherwise the status as JSON with its `time`.
    pub fn next(&mut self, status: &SyncStatus, table: bool) -> Option<String> {
        let mut s = status_json(status);
        if let Some(m) = s.as_object_mut() {
            m.remove("last_sync_us");
            m.remove("last_sync");
        }
        if self.last.as_ref() == Some(&s) {
            return None;
        }
        let now = iso_time(i128::from(blazedb::Timestamp::now().0));
        let line = if table {
            format!("{} {}", now.as_str().unwrap_or("-"), watch_line(&s))
        } else {
            let mut with_time = s.clone();
            if let Some(m) = with_time.as_object_mut() {
                m.insert("time".into(), now);
            }
            with_time.to_string()
        };
        self.last = Some(s);
        Some(line)
    }
}

/// How often a watched status is looked at.
pub const WATCH_EVERY: Duration = Duration::from_millis(500);

/// `sync --watch`: a line on stderr for each change, until Ctrl-C.
pub async fn watch_until_interrupted(handle: &SyncHandle, table: bool) -> CliResult {
    let mut changes = Changes::default();
    let mut tick = tokio::time::interval(WATCH_EVERY);
    let mut stop = std::pin::pin!(tokio::signal::ctrl_c());
    loop {
        tokio::select! {
            _ = &mut stop => return Ok(()),
            _ = tick.tick() => {
                if let Some(line) = changes.next(&handle.status(), table) {
                    eprintln!("{line}");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_watch_line_says_the_state_what_moved_and_what_waits() {
        let s = json!({
            "state": "uploading",
            "peer": {"node": "00ab", "role": "server"},
            "writes_received": 12,
            "writes_sent": 3,
            "pending_local_writes": 1,
            "conflicts": 2,
            "last_error": null,
        });
        assert_eq!(
            watch_line(&s),
            "uploading to 00ab (server) · received 12 · sent 3 · pending 1 · conflicts 2"
        );
        let off = json!({"state": "offline", "download_error": "refused"});
        assert_eq!(
            watch_line(&off),
            "offline, retrying · received 0 · sent 0 · pending 0 · conflicts 0 · last error: refused"
        );
        let down = json!({"state": "downloading", "peer": {"node": "1", "role": "server"},
            "download_remaining": 40, "upload_error": "read-only"});
        assert_eq!(
            watch_line(&down),
            "downloading from 1 (server): 40 to go · received 0 · sent 0 · pending 0 · \
             conflicts 0 · upload refused: read-only"
        );
    }
}
