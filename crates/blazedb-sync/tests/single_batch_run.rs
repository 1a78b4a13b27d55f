//! A run of one batch goes through `Session::on_messages` (`session/group.rs`) and
//! `SyncNode::apply_combined`, not straight to `on_message`: it must be answered and
//! counted exactly as `on_message` answers and counts it, applied or refused.

use std::sync::Arc;

use blazedb_engine::{Database, KdfParams};
use blazedb_sync::{LogPos, Msg, Role, Session, SessionConfig, SyncConfig, SyncNode};

fn open(
    dir: &std::path::Path,
    name: &str,
    role: Role,
    config: &SyncConfig,
) -> (Database, SyncNode) {
    let db: Database = Database::builder()
        .kdf(KdfParams::INSECURE_FAST)
        .open(dir, name, "pw")
        .expect("open");
    let node = SyncNode::enable(&db, role, config).expect("enable");
    (db, node)
}

/// Strips what differs between two servers for reasons other than the path taken:
/// the skew's size in an error message.
fn shape(out: &[Msg]) -> Vec<String> {
    out.iter()
        .map(|m| match m {
            Msg::Error { code, fatal, .. } => format!("Error {code:?} fatal={fatal}"),
            other => format!("{other:?}"),
        })
        .collect()
}

fn check(ahead_us: u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cconf = SyncConfig::default();
    cconf.advanced.clock = Arc::new(move || blazedb_sync::clock::wall_now_us() + ahead_us);
    cconf.advanced.stamp_with_write_time = false;
    let (cdb, client) = open(dir.path(), "c", Role::Client, &cconf);
    for i in 0..10i64 {
        cdb.collection("docs")
            .insert(blazedb_core::Document::new().with("i", i))
            .expect("insert");
    }
    client.absorb().expect("absorb");
    let (_a, a) = open(dir.path(), "a", Role::Server, &SyncConfig::default());
    let (_b, b) = open(dir.path(), "b", Role::Server, &SyncConfig::default());
    assert_eq!(a.log_last().expect("log"), b.log_last().expect("log"));
    let (items, upto) = client
        .read_log(a.node_id(), LogPos::ZERO, 256, &|_| true)
        .expect("read");
    assert!(!items.is_empty());
    let batch = Msg::Batch {
        after: LogPos::ZERO,
        upto,
        items,
        users: Vec::new(),
    };
    let t = blazedb_sync::clock::wall_now_us();
    let mut csession = Session::new(client.clone(), SessionConfig::default());
    let hello = csession.hello(None, t).expect("hello");
    let mut sa = Session::new(a, SessionConfig::default());
    let mut sb = Session::new(b, SessionConfig::default());
    sa.hello(None, t).expect("hello");
    sb.hello(None, t).expect("hello");
    sa.on_message(hello.clone(), t).expect("hello a");
    sb.on_message(hello, t).expect("hello b");
    let (sent_a, sent_b) = (sa.stats().bytes_sent, sb.stats().bytes_sent);
    let one = sa.on_message(batch.clone(), t).expect("on_message");
    let grouped = sb.on_messages(vec![batch], t).expect("on_messages");
    assert_eq!(shape(&one), shape(&grouped), "replies");
    let (mut x, mut y) = (sa.stats().clone(), sb.stats().clone());
    // The replies before the batch (the hellos: node ids of different lengths) and the
    // batch's own replies (the skew's size in an error message) aside.
    x.bytes_sent -= sent_a;
    y.bytes_sent -= sent_b;
    for (s, out) in [(&mut x, &one), (&mut y, &grouped)] {
        s.last_error = s.last_error.as_ref().map(|_| "set".into());
        s.bytes_sent -= out.iter().map(|m| m.encoded_len() as u64).sum::<u64>();
    }
    assert_eq!(x, y, "stats");
}

#[test]
fn a_run_of_one_batch_is_answered_and_counted_as_on_message() {
    check(0);
}

#[test]
fn a_run_of_one_skewed_batch_is_refused_and_counted_as_on_message() {
    check(3_600_000_000);
}
