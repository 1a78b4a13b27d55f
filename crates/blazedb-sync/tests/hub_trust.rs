//! A hub facing an authenticated but hostile client: arbitrary message sequences on a
//! session with a client grant (forged roles, other nodes' writes, merge states,
//! unrequested snapshots that claim collected history, positions beyond the log,
//! attributions, malformed batches, in any order). Property: the hub's documents change
//! only by valid writes of the client's own node stamped with the client role —
//! every merge state holds only the hub's writes and such writes, every document no
//! such write touched is exactly as it was, and the hub's log holds nothing from the
//! client but its own client-role writes.
//!
//! `PROPTEST_CASES` sets the number of sequences (default 96).

use std::collections::BTreeMap;

use blazedb_core::{DocId, Document, Fields, Value};
use blazedb_engine::{Database, KdfParams};
use blazedb_sync::{
    DocState, Dot, Grant, Hlc, Item, LogPos, Msg, NodeId, Op, Role, Session, SessionConfig,
    SnapDoc, Stamp, SyncConfig, SyncNode, Vv, Write,
};
use proptest::prelude::*;

const SEEDED: usize = 4;
const ATTACKER: NodeId = NodeId(0xA77A_C4E2);
const OTHER: NodeId = NodeId(0x0B0B);
const COLL: &str = "notes";

fn doc_id(i: usize) -> DocId {
    let mut b = [0u8; 16];
    b[0] = 0x10;
    b[15] = u8::try_from(i).expect("small");
    DocId::from_bytes(b)
}

/// Who a generated write claims to come from.
#[derive(Clone, Copy, Debug)]
enum Origin {
    Attacker,
    Other,
    Hub,
}

#[derive(Clone, Debug)]
enum GenItem {
    Write {
        origin: Origin,
        role: Role,
        counter: u64,
        doc: usize,
        /// Whether the write claims to have seen the hub's writes of the document.
        saw: bool,
        op: u8,
        value: i64,
    },
    /// A merge state of a document: empty, or a delete by the hub that "killed" it.
    State { doc: usize, wipe: bool },
}

#[derive(Clone, Debug)]
enum GenMsg {
    Hello {
        origin: Origin,
        role: Role,
        want_after: u64,
    },
    Batch {
        after: u64,
        upto: u64,
        items: Vec<GenItem>,
        users: bool,
    },
    Snapshot {
        at: u64,
        after_slot: u64,
        docs: Vec<GenItem>,
        done: bool,
        collected: bool,
    },
    Ack {
        upto: u64,
    },
    Want {
        after: u64,
    },
    SnapshotAck {
        at: u64,
        upto_slot: u64,
    },
    Ping,
    Error {
        fatal: bool,
    },
}

fn origin() -> impl Strategy<Value = Origin> {
    prop_oneof![
        6 => Just(Origin::Attacker),
        1 => Just(Origin::Other),
        1 => Just(Origin::Hub),
    ]
}

fn role() -> impl Strategy<Value = Role> {
    prop_oneof![4 => Just(Role::Client), 1 => Just(Role::Server)]
}

fn item() -> impl Strategy<Value = GenItem> {
    prop_oneof![
        6 => (origin(), role(), 1..8u64, 0..SEEDED + 2, any::<bool>(), 0..3u8, -5..5i64).prop_map(
            |(origin, role, counter, doc, saw, op, value)| GenItem::Write {
                origin,
                role,
                counter,
                doc,
                saw,
                op,
                value
            }
        ),
        1 => (0..SEEDED + 2, any::<bool>()).prop_map(|(doc, wipe)| GenItem::State { doc, wipe }),
    ]
}

fn message() -> impl Strategy<Value = GenMsg> {
    prop_oneof![
        2 => (origin(), role(), 0..40u64).prop_map(|(origin, role, want_after)| GenMsg::Hello {
            origin,
            role,
            want_after
        }),
        6 => (0..12u64, 0..12u64, prop::collection::vec(item(), 0..4), any::<bool>()).prop_map(
            |(after, len, items, users)| GenMsg::Batch {
                after,
                upto: after + len,
                items,
                users
            }
        ),
        1 => (0..2000u64, 0..3u64, prop::collection::vec(item(), 0..3), any::<bool>(), any::<bool>())
            .prop_map(|(at, after_slot, docs, done, collected)| GenMsg::Snapshot {
                at,
                after_slot,
                docs,
                done,
                collected
            }),
        1 => (0..60u64).prop_map(|upto| GenMsg::Ack { upto }),
        1 => (0..60u64).prop_map(|after| GenMsg::Want { after }),
        1 => (0..60u64, 0..10u64).prop_map(|(at, upto_slot)| GenMsg::SnapshotAck { at, upto_slot }),
        1 => Just(GenMsg::Ping),
        1 => any::<bool>().prop_map(|fatal| GenMsg::Error { fatal }),
    ]
}

struct Hub {
    _dir: tempfile::TempDir,
    db: Database,
    node: SyncNode,
    /// The hub's own write of each seeded document.
    seeded: Vec<Stamp>,
    before: BTreeMap<DocId, Document>,
}

fn hub() -> Hub {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Database::builder()
        .kdf(KdfParams::INSECURE_FAST)
        .open(dir.path(), "hub", "pw")
        .expect("open");
    let node = SyncNode::enable(&db, Role::Server, &SyncConfig::default()).expect("enable");
    for i in 0..SEEDED {
        db.collection(COLL)
            .put(
                Document::with_id(doc_id(i))
                    .with("n", i64::try_from(i).expect("small"))
                    .with("owner", "hub"),
            )
            .expect("put");
    }
    node.absorb().expect("absorb");
    let seeded = (0..SEEDED)
        .map(|i| node.doc_state(COLL, doc_id(i)).expect("state").recs[0].stamp)
        .collect();
    let before = db
        .collection(COLL)
        .all()
        .expect("all")
        .into_iter()
        .map(|d| (d.id, d))
        .collect();
    Hub {
        _dir: dir,
        db,
        node,
        seeded,
        before,
    }
}

impl Hub {
    fn node_of(&self, o: Origin) -> NodeId {
        match o {
            Origin::Attacker => ATTACKER,
            Origin::Other => OTHER,
            Origin::Hub => self.node.node_id(),
        }
    }

    fn item(&self, g: &GenItem) -> Item {
        match g {
            GenItem::Write {
                origin,
                role,
                counter,
                doc,
                saw,
                op,
                value,
            } => {
                let mut ctx = Vv::new();
                if *saw && *doc < SEEDED {
                    ctx.raise(self.seeded[*doc].dot);
                }
                let mut fields = Fields::new();
                fields.insert("v".into(), Value::Int(*value));
                Item::Write(Write {
                    collection: COLL.into(),
                    id: doc_id(*doc),
                    stamp: Stamp {
                        dot: Dot {
                            node: self.node_of(*origin),
                            counter: *counter,
                        },
                        hlc: Hlc {
                            wall_us: blazedb_sync::clock::wall_now_us(),
                            logical: 0,
                        },
                        role: *role,
                    },
                    ctx,
                    op: match op {
                        0 => Op::Put { fields },
                        1 => Op::Patch {
                            set: fields,
                            unset: vec!["owner".into()],
                        },
                        _ => Op::Delete,
                    },
                })
            }
            GenItem::State { doc, wipe } => {
                let mut state = DocState::default();
                if *wipe && *doc < SEEDED {
                    // A state claiming the document's history was collected away.
                    state.vv.raise(self.seeded[*doc].dot);
                    state.horizon.raise(self.seeded[*doc].dot);
                }
                Item::State(SnapDoc {
                    collection: COLL.into(),
                    id: doc_id(*doc),
                    state,
                })
            }
        }
    }

    fn msg(&self, g: &GenMsg) -> Msg {
        match g {
            GenMsg::Hello {
                origin,
                role,
                want_after,
            } => Msg::Hello {
                version: blazedb_sync::proto::PROTOCOL_VERSION,
                node: self.node_of(*origin),
                role: *role,
                want_after: LogPos::from(*want_after),
                accept: true,
                send: true,
                now_us: blazedb_sync::clock::wall_now_us(),
                have_yours: false,
                log_last: LogPos::ZERO,
                resume: None,
            },
            GenMsg::Batch {
                after,
                upto,
                items,
                users,
            } => Msg::Batch {
                after: LogPos::from(*after),
                upto: LogPos::from(*upto),
                items: items.iter().map(|i| self.item(i)).collect(),
                users: if *users {
                    vec![
                        (self.node.node_id(), "mallory".into()),
                        (OTHER, "root".into()),
                    ]
                } else {
                    Vec::new()
                },
            },
            GenMsg::Snapshot {
                at,
                after_slot,
                docs,
                done,
                collected,
            } => Msg::Snapshot {
                at: LogPos::from(*at),
                after_slot: *after_slot,
                upto_slot: after_slot + docs.len() as u64,
                docs: docs
                    .iter()
                    .filter_map(|d| match self.item(d) {
                        Item::State(s) => Some(s),
                        Item::Write(_) => None,
                    })
                    .collect(),
                done: *done,
                collected: *collected,
                users: Vec::new(),
            },
            GenMsg::Ack { upto } => Msg::Ack {
                upto: LogPos::from(*upto),
                log_last: LogPos::ZERO,
            },
            GenMsg::Want { after } => Msg::Want {
                after: LogPos::from(*after),
            },
            GenMsg::SnapshotAck { at, upto_slot } => Msg::SnapshotAck {
                at: LogPos::from(*at),
                upto_slot: *upto_slot,
            },
            GenMsg::Ping => Msg::Ping { token: 1 },
            GenMsg::Error { fatal } => Msg::Error {
                code: blazedb_sync::proto::ErrorCode::Protocol,
                message: "hostile".into(),
                fatal: *fatal,
            },
        }
    }

    /// Checks the property after the attack.
    fn check(&self) -> Result<(), TestCaseError> {
        let hub = self.node.node_id();
        let mut touched = std::collections::BTreeSet::new();
        for i in 0..SEEDED + 2 {
            let state = self.node.doc_state(COLL, doc_id(i)).expect("state");
            for r in &state.recs {
                let ok = (r.stamp.node() == hub && r.stamp.role == Role::Server)
                    || (r.stamp.node() == ATTACKER && r.stamp.role == Role::Client);
                prop_assert!(ok, "doc {i} retains a write it must not: {:?}", r.stamp);
                if r.stamp.node() == ATTACKER {
                    touched.insert(doc_id(i));
                }
            }
            for d in &state.defeated {
                prop_assert!(
                    d.loser.node() == ATTACKER && d.loser.role == Role::Client,
                    "a defeat of a write the hub must not hold: {:?}",
                    d.loser
                );
                touched.insert(doc_id(i));
            }
            // Every client write the hub took is in its version vector; a forged one
            // (another origin, or the server role) never is.
            prop_assert_eq!(state.vv.get(OTHER), 0, "doc {}: another node's write", i);
            if state.vv.get(ATTACKER) > 0 {
                touched.insert(doc_id(i));
            }
        }
        let now: BTreeMap<DocId, Document> = self
            .db
            .collection(COLL)
            .all()
            .expect("all")
            .into_iter()
            .map(|d| (d.id, d))
            .collect();
        for (id, doc) in &self.before {
            if !touched.contains(id) {
                prop_assert_eq!(now.get(id), Some(doc), "untouched document {} changed", id);
            }
        }
        for id in now.keys() {
            prop_assert!(
                self.before.contains_key(id) || touched.contains(id),
                "document {} appeared without a client write",
                id
            );
        }
        for e in self.node.log_writes().expect("log") {
            if e.via.is_some() {
                prop_assert_eq!(e.via, Some(ATTACKER));
                match &e.item {
                    Item::Write(w) => {
                        prop_assert_eq!(w.stamp.node(), ATTACKER);
                        prop_assert_eq!(w.stamp.role, Role::Client);
                    }
                    Item::State(_) => prop_assert!(false, "a state from the client was logged"),
                }
            }
        }
        prop_assert!(
            self.node.principal_of(OTHER).expect("principal").is_none()
                && self
                    .node
                    .principal_of(self.node.node_id())
                    .expect("principal")
                    .is_none(),
            "a client's attributions were recorded"
        );
        prop_assert!(self.node.bootstrapped_from().expect("meta").is_none());
        Ok(())
    }
}

/// The hub's session with the attacker, under a client grant, its hello sent.
fn attacker(h: &Hub) -> (Session, u64) {
    let mut s = Session::new(
        h.node.clone(),
        SessionConfig {
            grant: Grant::client("mallory"),
            ..SessionConfig::default()
        },
    );
    let t0 = blazedb_sync::clock::wall_now_us();
    s.hello(None, t0).expect("hello");
    (s, t0)
}

/// Every sequence starts with the attacker's hello (so its messages are acted on).
fn attack() -> impl Strategy<Value = Vec<GenMsg>> {
    (role(), prop::collection::vec(message(), 1..24)).prop_map(|(role, mut rest)| {
        rest.insert(
            0,
            GenMsg::Hello {
                origin: Origin::Attacker,
                role,
                want_after: 0,
            },
        );
        rest
    })
}

/// An attack that opens with a chain of batches each continuing the one before (so
/// delivered together they form one run), then goes on as [`attack`].
fn chained_attack() -> impl Strategy<Value = Vec<GenMsg>> {
    (
        attack(),
        prop::collection::vec(
            (1..4u64, prop::collection::vec(item(), 1..4), any::<bool>()),
            2..8,
        ),
    )
        .prop_map(|(mut seq, chain)| {
            let mut at = 0;
            let batches: Vec<GenMsg> = chain
                .into_iter()
                .map(|(len, items, users)| {
                    let b = GenMsg::Batch {
                        after: at,
                        upto: at + len,
                        items,
                        users,
                    };
                    at += len;
                    b
                })
                .collect();
            seq.splice(1..1, batches);
            seq
        })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(96),
        // Failures are kept beside this file (`hub_trust.proptest-regressions`) and
        // replayed first.
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::WithSource("proptest-regressions"),
        )),
        .. ProptestConfig::default()
    })]

    #[test]
    fn a_client_changes_the_hub_only_by_its_own_client_role_writes(seq in attack()) {
        let h = hub();
        let (mut s, t0) = attacker(&h);
        for (i, g) in seq.iter().enumerate() {
            if s.on_message(h.msg(g), t0 + i as u64 * 1_000).is_err() {
                break;
            }
            if s.poll(t0 + i as u64 * 1_000).is_err() {
                break;
            }
        }
        h.check()?;
    }

    #[test]
    fn a_client_changes_the_hub_only_by_its_own_writes_when_its_messages_arrive_together(
        seq in chained_attack(),
        chunk in 2usize..=8,
    ) {
        // A transport hands over what it has queued at once (`Session::on_messages`:
        // batches that continue one another are applied in one transaction).
        let h = hub();
        let (mut s, t0) = attacker(&h);
        for (i, group) in seq.chunks(chunk).enumerate() {
            let now = t0 + i as u64 * 1_000;
            if s.on_messages(group.iter().map(|g| h.msg(g)).collect(), now).is_err() {
                break;
            }
            if s.poll(now).is_err() {
                break;
            }
        }
        h.check()?;
    }
}

#[test]
fn the_three_frame_wipe_is_refused_and_changes_nothing() {
    // The attack found against the real server: hello, an empty batch that sets a
    // cursor, then an unrequested snapshot claiming collected history.
    let h = hub();
    let (mut s, t0) = attacker(&h);
    for g in [
        GenMsg::Hello {
            origin: Origin::Attacker,
            role: Role::Client,
            want_after: 0,
        },
        GenMsg::Batch {
            after: 0,
            upto: 3,
            items: Vec::new(),
            users: false,
        },
    ] {
        s.on_message(h.msg(&g), t0).expect("accepted");
    }
    let out = s
        .on_message(
            h.msg(&GenMsg::Snapshot {
                at: 1000,
                after_slot: 0,
                docs: Vec::new(),
                done: true,
                collected: true,
            }),
            t0,
        )
        .expect("answered");
    assert!(
        out.iter().any(|m| matches!(
            m,
            Msg::Error {
                code: blazedb_sync::proto::ErrorCode::Forbidden,
                fatal: true,
                ..
            }
        )),
        "{out:?}"
    );
    assert!(s.closed().is_some(), "the session ends");
    assert_eq!(h.db.collection(COLL).count().expect("count"), SEEDED as u64);
    h.check().expect("nothing changed");
}

#[test]
fn a_client_claiming_the_server_role_is_refused_before_anything_is_applied() {
    let h = hub();
    let (mut s, t0) = attacker(&h);
    let out = s
        .on_message(
            h.msg(&GenMsg::Hello {
                origin: Origin::Attacker,
                role: Role::Server,
                want_after: 0,
            }),
            t0,
        )
        .expect("answered");
    assert!(
        out.iter().any(|m| matches!(
            m,
            Msg::Error {
                code: blazedb_sync::proto::ErrorCode::Forbidden,
                fatal: true,
                ..
            }
        )),
        "{out:?}"
    );
    assert!(s.peer().is_none(), "never accepted as a peer");
    h.check().expect("nothing changed");
}
