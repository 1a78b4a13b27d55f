//! A conflict-log entry as a sentence a person reads: what lost, to whom, and the rule
//! that decided (docs/semantics.md). The demo prints these; `conflicts` gives each
//! entry one beside its fields.

use blazedb::sync::{ConflictEntry, Held, LossReason, NodeId};

/// A value as a person reads it: text as is, anything else as JSON.
#[must_use]
pub fn value_text(v: Option<&blazedb::Value>) -> String {
    match v {
        Some(blazedb::Value::String(s)) => s.clone(),
        Some(other) => blazedb::json::to_json(other).to_string(),
        None => "-".into(),
    }
}

/// What a write held, as a person reads it.
#[must_use]
pub fn held_text(h: Option<&Held>) -> String {
    match h {
        Some(Held::Value(v)) => value_text(Some(v)),
        Some(Held::Unset) => "(unset)".into(),
        Some(Held::Deleted) => "(deleted)".into(),
        Some(Held::Updated) => "(kept alive by an update)".into(),
        None => "-".into(),
    }
}

/// Why the rule decided as it did.
#[must_use]
pub fn reason_sentence(reason: LossReason) -> &'static str {
    match reason {
        LossReason::ServerPriority => {
            "server priority: the writes were concurrent and the server's wins"
        }
        LossReason::LaterTimestamp => {
            "same role: the concurrent write with the later timestamp wins"
        }
        LossReason::RetentionExpired => "the client was away longer than the server keeps history",
        LossReason::TooLarge => {
            "no room: with the concurrent writes kept before it, the document would exceed 16 MiB"
        }
    }
}

/// How a sentence shows values: as text (the demo's narration) or as JSON, so a
/// value's own quotes and apostrophes cannot blur the sentence (`conflicts`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Values {
    Text,
    Json,
}

fn shown(h: Option<&Held>, values: Values) -> String {
    match (h, values) {
        (Some(Held::Value(v)), Values::Json) => blazedb::json::to_json(v).to_string(),
        _ => held_text(h),
    }
}

/// `e` as a sentence whose subject is `owner` ("its", "this database's"), naming the
/// winner with `name_of`.
#[must_use]
pub fn sentence(
    e: &ConflictEntry,
    owner: &str,
    name_of: &dyn Fn(NodeId) -> String,
    values: Values,
) -> String {
    let winner = e
        .winner
        .map_or_else(|| "nobody".to_owned(), |w| name_of(w.node()));
    let what = e
        .field
        .as_deref()
        .map_or_else(|| "the document".to_owned(), |f| format!("field '{f}'"));
    let (mine, theirs) = match (&e.field, &e.lost, e.won.as_ref()) {
        (None, Held::Updated, Some(Held::Deleted)) => (
            format!("{owner} update of the document"),
            "delete".to_owned(),
        ),
        (None, Held::Deleted, _) => (
            format!("{owner} delete of the document"),
            "update (the document lives on)".to_owned(),
        ),
        _ => (
            format!("{owner} write of {what} = {}", shown(Some(&e.lost), values)),
            shown(e.won.as_ref(), values),
        ),
    };
    format!(
        "{mine} lost to {winner}'s {theirs} — {}",
        reason_sentence(e.reason)
    )
}
