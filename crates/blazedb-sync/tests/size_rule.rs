//! The size rule of the merge (`merge`'s module docs, rule 5) at the engine's real
//! document limit, case by case: the visible document always fits, the first writer
//! keeps its place, and the result is the same in every arrival order and whatever a
//! replica has collected. (`tests/merge_model.rs` checks the rule against the reference
//! model over random histories, at a scaled-down limit.)

use blazedb_core::limits::DOCUMENT_BYTES_MAX;
use blazedb_core::{DocId, Fields, Value};
use blazedb_engine::internal::serde_fields::document_bytes;
use blazedb_sync::merge::DocState;
use blazedb_sync::{Dot, Held, Hlc, LossReason, NodeId, Op, Role, Stamp, Vv, Write};

const MIB: usize = 1 << 20;

/// A write of node `node` (its `counter`-th), at `wall_us`, having seen `seen`.
fn write(node: u64, counter: u64, wall_us: u64, role: Role, seen: &[Dot], op: Op) -> Write {
    let mut ctx = Vv::new();
    for d in seen {
        ctx.raise(*d);
    }
    Write {
        collection: "c".into(),
        id: DocId::from_bytes([1; 16]),
        stamp: Stamp {
            dot: Dot {
                node: NodeId(node),
                counter,
            },
            hlc: Hlc {
                wall_us,
                logical: 0,
            },
            role,
        },
        ctx,
        op,
    }
}

fn set(field: &str, value: Value) -> Op {
    Op::Patch {
        set: Fields::from([(field.to_owned(), value)]),
        unset: Vec::new(),
    }
}

fn big(byte: u8) -> Value {
    Value::Bytes(vec![byte; 9 * MIB])
}

/// The state after applying `writes` in this order (each write's past first).
fn merged(writes: &[&Write]) -> DocState {
    let mut s = DocState::default();
    for w in writes {
        s.apply(w).expect("causal delivery");
    }
    s
}

/// A base document (node 1), then two clients that saw it patch a 9 MiB field each,
/// `a` first (at 10) and `b` later (at 20).
fn two_large_patches() -> (Write, Write, Write) {
    let base = write(
        1,
        1,
        1,
        Role::Client,
        &[],
        Op::Put {
            fields: Fields::from([("title".to_owned(), Value::from("t"))]),
        },
    );
    let seen = [base.stamp.dot];
    let a = write(2, 1, 10, Role::Client, &seen, set("a", big(1)));
    let b = write(3, 1, 20, Role::Client, &seen, set("b", big(2)));
    (base, a, b)
}

#[test]
fn of_two_concurrent_writes_that_do_not_fit_together_the_later_loses_as_too_large_in_any_arrival_order()
 {
    let (base, a, b) = two_large_patches();
    let ab = merged(&[&base, &a, &b]);
    let ba = merged(&[&base, &b, &a]);
    let doc = ab.eval().expect("exists");
    assert_eq!(
        ba.eval(),
        Some(doc.clone()),
        "arrival order changes nothing"
    );
    assert_eq!(
        doc.keys().collect::<Vec<_>>(),
        ["a", "title"],
        "the earlier write keeps its place, the later one's field is absent"
    );
    assert!(document_bytes(&doc) <= DOCUMENT_BYTES_MAX);
    for s in [&ab, &ba] {
        let lost = s.losses_of(b.stamp.node());
        assert_eq!(lost.len(), 1, "{:?}", lost.first().map(|l| &l.field));
        assert_eq!(lost[0].reason, LossReason::TooLarge);
        assert_eq!(lost[0].field.as_deref(), Some("b"));
        assert_eq!(lost[0].lost, Held::Value(big(2)));
        assert_eq!(lost[0].winner, None);
        assert!(s.losses_of(a.stamp.node()).is_empty());
    }
}

#[test]
fn a_server_write_is_admitted_before_client_writes_even_when_made_later() {
    let (base, a, _) = two_large_patches();
    let seen = [base.stamp.dot];
    let server = write(4, 1, 30, Role::Server, &seen, set("s", big(3)));
    let s = merged(&[&base, &a, &server]);
    let doc = s.eval().expect("exists");
    assert!(
        doc.contains_key("s") && !doc.contains_key("a"),
        "{:?}",
        doc.keys()
    );
    assert_eq!(s.losses_of(a.stamp.node())[0].reason, LossReason::TooLarge);
}

#[test]
fn a_small_write_after_a_left_out_large_one_still_takes_effect() {
    let (base, a, b) = two_large_patches();
    // Node 3 goes on writing a small field after its large one, still unaware of `a`.
    let small = write(3, 2, 21, Role::Client, &[base.stamp.dot, b.stamp.dot], {
        set("note", Value::from("small"))
    });
    let s = merged(&[&base, &b, &small, &a]);
    let doc = s.eval().expect("exists");
    assert_eq!(doc.keys().collect::<Vec<_>>(), ["a", "note", "title"]);
}

#[test]
fn a_left_out_field_is_absent_everywhere_even_where_its_older_losing_value_was_collected() {
    let (base, a, b) = two_large_patches();
    // An older, concurrent small value of `b` loses to the large one (later stamp).
    let old_b = write(5, 1, 5, Role::Client, &[base.stamp.dot], {
        set("b", Value::from("old"))
    });
    let all = [&base, &a, &old_b, &b];
    let kept = merged(&all);
    let mut collected = merged(&all);
    for w in all {
        collected.mark_stable(w.stamp.dot);
    }
    assert!(collected.collect(), "the losing value is collected there");
    let doc = kept.eval().expect("exists");
    assert!(
        !doc.contains_key("b"),
        "no fallback to a losing value: {:?}",
        doc.keys()
    );
    assert_eq!(collected.eval(), Some(doc));
}

#[test]
fn a_write_that_makes_room_without_having_seen_a_left_out_value_brings_it_back() {
    let (base, a, b) = two_large_patches();
    // Node 2 removes its own large field, having seen only the base and its write.
    let unset_a = write(2, 2, 30, Role::Client, &[base.stamp.dot, a.stamp.dot], {
        Op::Patch {
            set: Fields::new(),
            unset: vec!["a".into()],
        }
    });
    let s = merged(&[&base, &a, &b, &unset_a]);
    let doc = s.eval().expect("exists");
    assert_eq!(doc.keys().collect::<Vec<_>>(), ["b", "title"]);
    assert!(s.losses_of(b.stamp.node()).is_empty(), "no longer lost");
}

#[test]
fn a_write_that_saw_a_value_left_out_keeps_it_out_by_unsetting_it() {
    let (base, a, b) = two_large_patches();
    let s = merged(&[&base, &a, &b]);
    assert_eq!(s.excluded_fields_within(DOCUMENT_BYTES_MAX), ["b"]);
    // Node 2 removes `a` having seen everything; as its sync layer does, the patch also
    // unsets what it saw left out.
    let seen: Vec<Dot> = [&base, &a, &b].iter().map(|w| w.stamp.dot).collect();
    let unset = write(2, 2, 30, Role::Client, &seen, {
        Op::Patch {
            set: Fields::new(),
            unset: vec!["a".into(), "b".into()],
        }
    });
    let s = merged(&[&base, &a, &b, &unset]);
    assert_eq!(
        s.eval().expect("exists").keys().collect::<Vec<_>>(),
        ["title"]
    );
}
