//! The clock skew a session reports: a hello handled late (queued behind a large push)
//! or sent again does not make one clock look behind the other.

use blazedb_engine::{Database, KdfParams};
use blazedb_sync::{Msg, Role, Session, SessionConfig, SyncConfig, SyncNode};

fn node(dir: &std::path::Path, name: &str, role: Role) -> SyncNode {
    let db: Database = Database::builder()
        .kdf(KdfParams::INSECURE_FAST)
        .open(dir, name, "pw")
        .expect("open");
    SyncNode::enable(&db, role, &SyncConfig::default()).expect("enable")
}

#[test]
fn a_hello_handled_late_does_not_make_the_peers_clock_look_behind() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t0 = blazedb_sync::clock::wall_now_us();
    let mut server = Session::new(
        node(dir.path(), "s", Role::Server),
        SessionConfig::default(),
    );
    let mut client = Session::new(
        node(dir.path(), "c", Role::Client),
        SessionConfig::default(),
    );
    server.hello(None, t0).expect("hello");
    let from_client = client.hello(None, t0).expect("hello");
    // Handled 1 ms after it was made: the best reading of two equal clocks.
    server
        .on_message(from_client.clone(), t0 + 1_000)
        .expect("hello");
    assert_eq!(server.stats().skew_us, Some(-1_000));
    // The same hello handled again 800 ms later (queued behind a large push): still
    // the closest reading.
    server.on_message(from_client, t0 + 800_000).expect("hello");
    assert_eq!(server.stats().skew_us, Some(-1_000));
}

#[test]
fn a_hello_sent_again_carries_the_time_it_is_sent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t0 = blazedb_sync::clock::wall_now_us();
    let cfg = SessionConfig::default();
    let later = t0 + cfg.resend_after_us + 1;
    let mut client = Session::new(node(dir.path(), "c", Role::Client), cfg);
    client.hello(None, t0).expect("hello");
    let again = client.poll(later).expect("poll");
    match again.as_slice() {
        [Msg::Hello { now_us, .. }] => assert_eq!(*now_us, later),
        other => panic!("expected the hello again, got {other:?}"),
    }
}
