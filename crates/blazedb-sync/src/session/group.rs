//! Messages that arrived together, handled together: a run of batches that continue
//! one another is applied in one transaction (with other sessions' runs:
//! [`SyncNode::apply_combined`]) and acknowledged once, instead of one durable commit
//! per batch.
//!
//! Invariants:
//! - The outcome equals handling the messages one by one with
//!   [`Session::on_message`]: a batch joins a run only if, handled alone after the
//!   batches before it, it would be checked the same way (its grant allows it, the
//!   peer said hello and its writes are accepted, no snapshot is being sent, it is
//!   well formed) and applied (it starts at or before the run's cursor and ends
//!   beyond it). Everything else is handled alone, in arrival order, after the run
//!   before it.
//! - If the run was not applied (its transaction failed), nothing of it was, and its
//!   batches are handled one by one, so every good batch before the bad one is still applied and
//!   the failure is answered for the batch that caused it.
//! - The acknowledgment covers the run's last position (acks are cumulative), and is
//!   sent only after the transaction is durable.

use crate::authz;
use crate::node::Part;
use crate::proto::{BATCH_WRITES_MAX, Msg};

use super::{Closed, Session};

/// Most batches of one session's run (with `BATCH_BYTES_MAX` per batch, at most ~8 MiB
/// of writes; a transaction that combines several sessions' runs holds at most
/// `node::combine::ROUND_BATCHES_MAX` batches beyond its leader's run).
pub const GROUP_BATCHES_MAX: usize = 8;

impl Session {
    /// Handles messages that arrived together, in order (see the module docs).
    ///
    /// # Errors
    /// [`Closed`] as [`Session::on_message`].
    pub fn on_messages(&mut self, msgs: Vec<Msg>, now_us: u64) -> Result<Vec<Msg>, Closed> {
        let mut out = Vec::new();
        let mut run: Vec<Msg> = Vec::new();
        for msg in msgs {
            if run.len() < GROUP_BATCHES_MAX && self.continues_run(&run, &msg) {
                run.push(msg);
                continue;
            }
            self.flush_run(std::mem::take(&mut run), now_us, &mut out)?;
            if self.continues_run(&run, &msg) {
                run.push(msg);
            } else {
                out.extend(self.on_message(msg, now_us)?);
            }
        }
        self.flush_run(run, now_us, &mut out)?;
        Ok(out)
    }

    /// Whether `msg` is a batch that, after the batches of `run` were applied, would
    /// itself be applied when handled alone.
    fn continues_run(&self, run: &[Msg], msg: &Msg) -> bool {
        let Msg::Batch {
            after, upto, items, ..
        } = msg
        else {
            return false;
        };
        let cursor = match run.last() {
            Some(Msg::Batch { upto, .. }) => *upto,
            _ => self.cursor,
        };
        let Some(peer) = self.peer else {
            return false;
        };
        if self.closed.is_some()
            || !peer.we_accept
            || self.snap_send.is_some()
            || items.is_empty()
            || items.len() > BATCH_WRITES_MAX
            || *after > cursor
            || *upto <= cursor
        {
            return false;
        }
        let node = self.node.clone();
        let mut log_last = || node.log_last().map_err(|e| e.to_string());
        authz::check_inbound(&self.cfg.grant, self.peer, msg, &mut log_last).is_ok()
    }

    /// Applies `run` (batches [`Session::continues_run`] accepted) in one transaction,
    /// possibly with other sessions' batches (`node/combine.rs`); if that did not
    /// apply them, handles them one by one as [`Session::on_message`].
    fn flush_run(&mut self, run: Vec<Msg>, now_us: u64, out: &mut Vec<Msg>) -> Result<(), Closed> {
        let Some(peer) = self.peer.filter(|_| !run.is_empty()) else {
            return self.one_by_one(run, now_us, out);
        };
        let mut bytes = 0;
        for msg in &run {
            let Msg::Batch { users, .. } = msg else {
                unreachable!("continues_run takes batches only");
            };
            if self.cfg.grant.relay && self.node.learn_principals(users).is_err() {
                // Handled alone, which answers the refusal for this batch.
                return self.one_by_one(run, now_us, out);
            }
            let len = msg.encoded_len();
            bytes += len as u64;
            tracing::debug!(peer = %peer.node, msg = %msg.summary(), bytes = len, "received");
        }
        let mut rest = Vec::with_capacity(run.len());
        let mut batches = Vec::with_capacity(run.len());
        for msg in run {
            let Msg::Batch {
                after,
                upto,
                items,
                users,
            } = msg
            else {
                unreachable!("continues_run takes batches only");
            };
            rest.push((after, users));
            batches.push((items, upto));
        }
        let (part, report) = self.node.apply_combined(Part {
            peer: peer.node,
            role: peer.role,
            batches,
        });
        let Some(report) = report else {
            let run = part
                .batches
                .into_iter()
                .zip(rest)
                .map(|((items, upto), (after, users))| Msg::Batch {
                    after,
                    upto,
                    items,
                    users,
                })
                .collect();
            return self.one_by_one(run, now_us, out);
        };
        let upto = part.batches.last().map_or(self.cursor, |b| b.1);
        self.stats.bytes_received += bytes;
        let ack = self.applied(&report, upto, now_us)?;
        self.stats.bytes_sent += ack.encoded_len() as u64;
        out.push(ack);
        Ok(())
    }

    fn one_by_one(&mut self, run: Vec<Msg>, now_us: u64, out: &mut Vec<Msg>) -> Result<(), Closed> {
        for msg in run {
            out.extend(self.on_message(msg, now_us)?);
        }
        Ok(())
    }
}
