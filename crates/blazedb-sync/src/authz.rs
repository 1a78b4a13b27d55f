//! What a peer may send, checked against its [`Grant`] before a session acts on a
//! message (the hub's side of docs/security.md, "Every message a client can send").
//!
//! Invariant: a message refused here changes nothing — the session answers with a
//! typed `Error` (fatal for what only a hostile or broken peer sends, not fatal for a
//! permission an honest client may lack, so it keeps pulling) and applies nothing.

use crate::clock::{NodeId, Role};
use crate::grant::Grant;
use crate::peer::PeerInfo;
use crate::position::LogPos;
use crate::proto::{BATCH_WRITES_MAX, ErrorCode, Msg};
use crate::record::Item;

/// Why a message is refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub code: ErrorCode,
    pub message: String,
    /// The session ends (a message no honest peer of this grant sends).
    pub fatal: bool,
}

fn refuse(code: ErrorCode, fatal: bool, message: String) -> Result<(), Refusal> {
    Err(Refusal {
        code,
        message,
        fatal,
    })
}

/// Checks `msg` from the peer of a session under `grant`. `peer` is the peer once its
/// hello arrived; `log_last` reads this node's newest log position (only asked for
/// the positions a client names).
pub(crate) fn check_inbound(
    grant: &Grant,
    peer: Option<PeerInfo>,
    msg: &Msg,
    log_last: &mut dyn FnMut() -> Result<LogPos, String>,
) -> Result<(), Refusal> {
    let who = grant.who();
    // A client names positions of our log only as far as we have sent it: anything
    // beyond is forged (or this node lost writes it had sent; either way nothing the
    // session could act on correctly).
    let mut within_log = |what: &str, pos: LogPos| -> Result<(), Refusal> {
        if grant.relay {
            return Ok(());
        }
        let last = log_last().map_err(|e| Refusal {
            code: ErrorCode::ApplyFailed,
            message: e,
            fatal: true,
        })?;
        if pos > last {
            return refuse(
                ErrorCode::Protocol,
                true,
                format!(
                    "{what} {pos} is beyond the end of this server's log ({last}): this \
                     client database belongs to another server, or the server lost \
                     writes it had sent; re-create the client database"
                ),
            );
        }
        Ok(())
    };
    match msg {
        Msg::Hello {
            role, want_after, ..
        } => {
            if *role > grant.role {
                return refuse(
                    ErrorCode::Forbidden,
                    true,
                    format!(
                        "{who} may sync only as a {}, but this database syncs as a {role}",
                        grant.role
                    ),
                );
            }
            within_log("the position asked for", *want_after)
        }
        Msg::Batch { items, users, .. } => {
            // Counting the nodes named costs a set per batch: only a list over the usual
            // bound needs it.
            let too_many_users = users.len() > BATCH_WRITES_MAX
                && users.len()
                    > users_max(named_nodes(items.iter().flat_map(
                        |item| -> Box<dyn Iterator<Item = NodeId> + '_> {
                            match item {
                                Item::Write(w) => Box::new(std::iter::once(w.stamp.node())),
                                Item::State(d) => Box::new(crate::record::state_nodes(&d.state)),
                            }
                        },
                    )));
            if items.len() > BATCH_WRITES_MAX || too_many_users {
                return refuse(ErrorCode::Protocol, true, "oversized batch".into());
            }
            check_items(grant, peer.map(|p| (p.node, p.role)), items)
        }
        Msg::Snapshot { .. } if !grant.relay => refuse(
            ErrorCode::Forbidden,
            true,
            format!("{who} may not send a snapshot: a client never bootstraps this server"),
        ),
        Msg::Snapshot { docs, users, .. } => {
            let too_many_users = users.len() > BATCH_WRITES_MAX
                && users.len()
                    > users_max(named_nodes(
                        docs.iter()
                            .flat_map(|d| crate::record::state_nodes(&d.state)),
                    ));
            if docs.len() > BATCH_WRITES_MAX || too_many_users {
                return refuse(ErrorCode::Protocol, true, "oversized snapshot page".into());
            }
            Ok(())
        }
        Msg::Ack { upto, .. } => within_log("the acknowledged position", *upto),
        Msg::Want { after } => within_log("the position asked for", *after),
        Msg::SnapshotAck { .. } | Msg::Ping { .. } | Msg::Pong { .. } | Msg::Error { .. } => Ok(()),
    }
}

/// How many distinct writer nodes `nodes` holds.
fn named_nodes(nodes: impl Iterator<Item = NodeId>) -> usize {
    nodes.collect::<std::collections::BTreeSet<_>>().len()
}

/// Most principals a message whose items name `named` distinct writer nodes may carry:
/// [`BATCH_WRITES_MAX`], or one per node named plus the receiver's own when that is
/// more. Senders keep a message within [`BATCH_WRITES_MAX`] by ending it early
/// (`proto::NodesNamed`), but one document whose state retains more writers than that
/// (a thousand users each setting their own field of it) cannot be split; refusing it
/// would stop every snapshot or relay of that document for good. The list stays bounded
/// by what the items carry, which the frame bounds.
fn users_max(named: usize) -> usize {
    BATCH_WRITES_MAX.max(named.saturating_add(1))
}

/// The items of a batch from `peer` (node, role), if its hello arrived.
fn check_items(grant: &Grant, peer: Option<(NodeId, Role)>, items: &[Item]) -> Result<(), Refusal> {
    if items.is_empty() {
        return Ok(());
    }
    let who = grant.who();
    if !grant.write {
        return refuse(
            ErrorCode::Forbidden,
            false,
            format!("{who} may not write (read-only); nothing was applied"),
        );
    }
    if grant.relay && grant.collections.is_none() {
        return Ok(());
    }
    for item in items {
        match item {
            Item::State(_) if !grant.relay => {
                return refuse(
                    ErrorCode::Forbidden,
                    true,
                    format!("{who} may not send merge states"),
                );
            }
            Item::Write(w) if !grant.relay && peer.is_some_and(|(n, _)| w.stamp.node() != n) => {
                return refuse(
                    ErrorCode::Forbidden,
                    true,
                    format!(
                        "{who} may send only its own writes, not write {} of node {}",
                        w.stamp.dot,
                        w.stamp.node()
                    ),
                );
            }
            _ => {}
        }
        if !grant.covers(item.collection()) {
            return refuse(
                ErrorCode::Forbidden,
                false,
                format!(
                    "{who} may not write collection {:?}; nothing was applied",
                    item.collection()
                ),
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Hlc;
    use crate::vv::{Dot, Vv};
    use crate::write::{Op, Stamp, Write};
    use blazedb_core::DocId;

    fn write(node: u64, collection: &str) -> Item {
        Item::Write(Write {
            collection: collection.into(),
            id: DocId::from_bytes([1; 16]),
            stamp: Stamp {
                dot: Dot {
                    node: NodeId(node),
                    counter: 1,
                },
                hlc: Hlc::default(),
                role: Role::Client,
            },
            ctx: Vv::new(),
            op: Op::Delete,
        })
    }

    fn batch(items: Vec<Item>) -> Msg {
        Msg::Batch {
            after: LogPos::ZERO,
            upto: LogPos::from(1),
            items,
            users: Vec::new(),
        }
    }

    fn peer(node: u64) -> Option<PeerInfo> {
        Some(PeerInfo {
            node: NodeId(node),
            role: Role::Client,
            we_send: true,
            we_accept: true,
        })
    }

    fn check(g: &Grant, msg: &Msg) -> Result<(), Refusal> {
        check_inbound(g, peer(7), msg, &mut || Ok(LogPos::from(10)))
    }

    #[test]
    fn a_client_may_send_only_its_own_writes_in_permitted_collections() {
        let g = Grant::client("alice").collections(["notes"]);
        assert_eq!(check(&g, &batch(vec![write(7, "notes")])), Ok(()));
        let other = check(&g, &batch(vec![write(8, "notes")])).expect_err("forged origin");
        assert!(other.fatal && other.code == ErrorCode::Forbidden);
        let coll = check(&g, &batch(vec![write(7, "secret")])).expect_err("collection");
        assert!(!coll.fatal && coll.code == ErrorCode::Forbidden);
        let ro = check(
            &Grant::client("bob").read_only(),
            &batch(vec![write(7, "notes")]),
        )
        .expect_err("read-only");
        assert!(!ro.fatal, "a read-only client keeps pulling");
        assert_eq!(
            check(&Grant::client("bob").read_only(), &batch(Vec::new())),
            Ok(()),
            "a batch that only moves the cursor is no write"
        );
    }

    #[test]
    fn a_client_never_relays_states_snapshots_or_attributions() {
        let g = Grant::client("alice");
        let snap = Msg::Snapshot {
            at: LogPos::from(1000),
            after_slot: 0,
            upto_slot: 0,
            docs: Vec::new(),
            done: true,
            collected: true,
            users: Vec::new(),
        };
        assert!(check(&g, &snap).expect_err("snapshot").fatal);
        assert_eq!(check(&Grant::peer(), &snap), Ok(()));
        // Attributions a client passes on are not refused, only never recorded (see
        // `Session::on_message`): an honest client forwards what its server told it.
        let users = Msg::Batch {
            after: LogPos::ZERO,
            upto: LogPos::ZERO,
            items: Vec::new(),
            users: vec![(NodeId(7), "root".into())],
        };
        assert_eq!(check(&g, &users), Ok(()));
    }

    #[test]
    fn a_client_claims_no_server_role_and_no_position_beyond_the_log() {
        let g = Grant::client("alice");
        let hello = |role, want_after: u64| Msg::Hello {
            version: crate::proto::PROTOCOL_VERSION,
            node: NodeId(7),
            role,
            want_after: LogPos::from(want_after),
            accept: true,
            send: true,
            now_us: 0,
            have_yours: false,
            log_last: LogPos::ZERO,
            resume: None,
        };
        assert_eq!(check(&g, &hello(Role::Client, 10)), Ok(()));
        let r = check(&g, &hello(Role::Server, 0)).expect_err("server role");
        assert!(r.fatal && r.code == ErrorCode::Forbidden);
        assert!(check(&g, &hello(Role::Client, 11)).is_err());
        assert!(
            check(
                &g,
                &Msg::Ack {
                    upto: LogPos::from(11),
                    log_last: LogPos::ZERO
                }
            )
            .is_err()
        );
        assert!(
            check(
                &g,
                &Msg::Want {
                    after: LogPos::from(11)
                }
            )
            .is_err()
        );
        assert_eq!(check(&Grant::peer(), &hello(Role::Server, 99)), Ok(()));
    }
}
