//! Messages that arrived together, handled together: a run of batches that continue
//! one another is applied in one transaction ([`SyncNode::apply_batches`]) and
//! acknowledged once, instead of one durable commit per batch.
//!
//! Invariants:
//! - The outcome equals handling the messages one by one with
//!   [`Session::on_message`]: a batch joins a run only if, handled alone after the
//!   batches before it, it would be checked the same way (its grant allows it, the
//!   peer said hello and its writes are accepted, no snapshot is being sent, it is
//!   well formed) and applied (it starts at or before the run's cursor and ends
//!   beyond it). Everything else is handled alone, in arrival order, after the run
//!   before it.
//! - If the run's transaction fails, nothing of it was applied, and its batches are
//!   handled one by one, so every good batch before the bad one is still applied and
//!   the failure is answered for the batch that caused it.
//! - The acknowledgment covers the run's last position (acks are cumulative), and is
//!   sent only after the transaction is durable.

use crate::authz;
use crate::proto::{BATCH_WRITES_MAX, Msg};
use crate::record::Item;

use super::{Closed, Session};

/// Most batches applied in one transaction (with `BATCH_BYTES_MAX` per batch, a
/// transaction of at most ~8 MiB of writes).
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

    /// Applies `run` (batches [`Session::continues_run`] accepted): alone as
    /// [`Session::on_message`] would, or together in one transaction.
    fn flush_run(&mut self, run: Vec<Msg>, now_us: u64, out: &mut Vec<Msg>) -> Result<(), Closed> {
        if run.len() <= 1 {
            for msg in run {
                out.extend(self.on_message(msg, now_us)?);
            }
            return Ok(());
        }
        let Some(peer) = self.peer else {
            return Ok(());
        };
        let mut batches: Vec<(&[Item], crate::position::LogPos)> = Vec::with_capacity(run.len());
        let mut learned = true;
        for msg in &run {
            let Msg::Batch {
                upto, items, users, ..
            } = msg
            else {
                unreachable!("continues_run takes batches only");
            };
            if self.cfg.grant.relay && self.node.learn_principals(users).is_err() {
                // Handled alone below, which answers the refusal for this batch.
                learned = false;
                break;
            }
            batches.push((items, *upto));
        }
        let applied = if learned {
            self.node.apply_batches(peer.node, peer.role, &batches).ok()
        } else {
            None
        };
        let Some(report) = applied else {
            drop(batches);
            for msg in run {
                out.extend(self.on_message(msg, now_us)?);
            }
            return Ok(());
        };
        let upto = batches.last().map_or(self.cursor, |b| b.1);
        drop(batches);
        for msg in &run {
            self.stats.bytes_received += msg.encoded_len() as u64;
        }
        let ack = self.applied(&report, upto, now_us)?;
        self.stats.bytes_sent += ack.encoded_len() as u64;
        out.push(ack);
        Ok(())
    }
}
