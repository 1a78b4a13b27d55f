//! Live queries: subscriptions to a collection or a query, per database.
//!
//! Invariants:
//! - Each committed write is delivered once to each matching subscriber, in commit
//!   order. A commit takes a ticket while it still holds the writer lock (so ticket order
//!   is commit order); a sequencer delivers tickets strictly in order, whatever order
//!   the committing threads return in. Every ticket is published exactly once (empty for
//!   a failed commit), so delivery never stalls.
//! - Writers never wait for subscribers: each subscriber has a bounded mailbox. When it
//!   is full the subscription is closed as lagged: the subscriber still receives every
//!   event queued before the overflow, then [`SubscriptionError::Lagged`]; it should
//!   re-read and subscribe again.
//! - Remote changes applied by the sync layer are delivered like local ones.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use blazedb_core::name::check_name;
use blazedb_core::{DocId, Document, Error, NameKind, Result};

use crate::query::Filter;

/// Default mailbox capacity (events).
pub const MAILBOX_DEFAULT: usize = 1024;
/// Largest mailbox capacity accepted.
pub const MAILBOX_MAX: usize = 1 << 20;
/// Most live subscriptions on one database at once.
pub const SUBSCRIPTIONS_MAX: usize = 4096;

/// How a document's membership changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// It entered the collection (or the query's results).
    Added,
    /// It changed and is still in the collection (or results).
    Changed,
    /// It left the collection (deleted) or the query's results.
    Removed,
}

/// One delivered change.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// The commit's position in this database handle's commit order (from 1).
    pub commit: u64,
    pub collection: String,
    pub id: DocId,
    pub kind: EventKind,
    /// The document after the change (`None` for `Removed`).
    pub doc: Option<Document>,
}

/// Why a subscription yields no more events.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SubscriptionError {
    /// The mailbox overflowed after commit `after_commit`; later events were dropped.
    #[error("subscriber lagged: mailbox overflowed after commit {after_commit}")]
    Lagged { after_commit: u64 },
    /// The database was closed.
    #[error("the database was closed")]
    Closed,
    /// No event arrived within the timeout (the subscription is still live).
    #[error("no event within the timeout")]
    Timeout,
}

/// A write as seen by subscribers: the document before and after.
pub(crate) struct Written {
    pub collection: String,
    pub id: DocId,
    pub old: Option<Document>,
    pub new: Option<Document>,
}

struct MailState {
    events: VecDeque<Event>,
    closed: Option<SubscriptionError>,
}

struct Mailbox {
    state: Mutex<MailState>,
    cv: Condvar,
    capacity: usize,
}

impl Mailbox {
    fn lock(&self) -> MutexGuard<'_, MailState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues an event; returns false once the mailbox is closed (overflowed).
    fn push(&self, e: Event) -> bool {
        let mut s = self.lock();
        if s.closed.is_some() {
            return false;
        }
        if s.events.len() >= self.capacity {
            s.closed = Some(SubscriptionError::Lagged {
                after_commit: e.commit.saturating_sub(1),
            });
            self.cv.notify_all();
            return false;
        }
        s.events.push_back(e);
        self.cv.notify_all();
        true
    }

    fn close(&self) {
        let mut s = self.lock();
        s.closed.get_or_insert(SubscriptionError::Closed);
        self.cv.notify_all();
    }
}

struct Sub {
    id: u64,
    collection: String,
    filter: Option<Filter>,
    mailbox: Arc<Mailbox>,
}

#[derive(Default)]
struct Sequencer {
    next_ticket: u64,
    next_to_deliver: u64,
    pending: BTreeMap<u64, Vec<Written>>,
}

/// The per-database subscription registry and delivery sequencer.
#[derive(Default)]
pub(crate) struct Hub {
    subs: Mutex<Vec<Sub>>,
    active: AtomicUsize,
    next_id: AtomicUsize,
    seq: Mutex<Sequencer>,
}

impl Hub {
    /// Whether any subscription is live (writers skip event capture otherwise).
    pub(crate) fn has_subscribers(&self) -> bool {
        self.active.load(Ordering::Acquire) > 0
    }

    /// Takes the next commit ticket. Call while holding the writer lock.
    pub(crate) fn ticket(&self) -> u64 {
        let mut s = self.seq.lock().unwrap_or_else(PoisonError::into_inner);
        s.next_ticket += 1;
        s.next_ticket
    }

    /// Publishes a ticket's writes (empty for a failed commit) and delivers every
    /// ticket that is now next in order.
    pub(crate) fn publish(&self, ticket: u64, writes: Vec<Written>) {
        let mut s = self.seq.lock().unwrap_or_else(PoisonError::into_inner);
        if s.next_to_deliver == 0 {
            s.next_to_deliver = 1;
        }
        s.pending.insert(ticket, writes);
        while let Some(writes) = {
            let next = s.next_to_deliver;
            s.pending.remove(&next)
        } {
            let commit = s.next_to_deliver;
            s.next_to_deliver += 1;
            if !writes.is_empty() {
                self.deliver(commit, &writes);
            }
        }
    }

    fn deliver(&self, commit: u64, writes: &[Written]) {
        let subs = self.subs.lock().unwrap_or_else(PoisonError::into_inner);
        for sub in subs.iter() {
            for w in writes.iter().filter(|w| w.collection == sub.collection) {
                let (before, after) = match &sub.filter {
                    None => (w.old.is_some(), w.new.is_some()),
                    Some(f) => (
                        w.old.as_ref().is_some_and(|d| f.matches(d)),
                        w.new.as_ref().is_some_and(|d| f.matches(d)),
                    ),
                };
                let kind = match (before, after) {
                    (false, true) => EventKind::Added,
                    (true, true) => EventKind::Changed,
                    (true, false) => EventKind::Removed,
                    (false, false) => continue,
                };
                let doc = if kind == EventKind::Removed {
                    None
                } else {
                    w.new.clone()
                };
                let event = Event {
                    commit,
                    collection: w.collection.clone(),
                    id: w.id,
                    kind,
                    doc,
                };
                if !sub.mailbox.push(event) {
                    break;
                }
            }
        }
    }

    fn remove(&self, id: u64) {
        let mut subs = self.subs.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(pos) = subs.iter().position(|s| s.id == id) {
            subs.remove(pos);
            self.active.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Closes every subscription (the database is closing).
    pub(crate) fn close_all(&self) {
        let subs = self.subs.lock().unwrap_or_else(PoisonError::into_inner);
        for s in subs.iter() {
            s.mailbox.close();
        }
    }
}

/// A live subscription. Dropping it unsubscribes.
pub struct Subscription {
    hub: Arc<Hub>,
    id: u64,
    mailbox: Arc<Mailbox>,
}

impl Subscription {
    /// Waits for the next event.
    ///
    /// # Errors
    /// [`SubscriptionError::Lagged`] after an overflow (once queued events are taken);
    /// [`SubscriptionError::Closed`] once the database is closed.
    pub fn recv(&self) -> Result<Event, SubscriptionError> {
        self.wait(None)
    }

    /// Waits at most `timeout` for the next event.
    ///
    /// # Errors
    /// As [`Subscription::recv`], plus [`SubscriptionError::Timeout`].
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Event, SubscriptionError> {
        self.wait(Some(timeout))
    }

    /// The next event if one is queued.
    ///
    /// # Errors
    /// As [`Subscription::recv`]; [`SubscriptionError::Timeout`] when none is queued.
    pub fn try_recv(&self) -> Result<Event, SubscriptionError> {
        self.wait(Some(Duration::ZERO))
    }

    fn wait(&self, timeout: Option<Duration>) -> Result<Event, SubscriptionError> {
        let deadline = timeout.map(|t| std::time::Instant::now() + t);
        let mut s = self.mailbox.lock();
        loop {
            if let Some(e) = s.events.pop_front() {
                return Ok(e);
            }
            if let Some(reason) = &s.closed {
                return Err(reason.clone());
            }
            s = match deadline {
                None => self
                    .mailbox
                    .cv
                    .wait(s)
                    .unwrap_or_else(PoisonError::into_inner),
                Some(d) => {
                    let left = d.saturating_duration_since(std::time::Instant::now());
                    if left.is_zero() {
                        return Err(SubscriptionError::Timeout);
                    }
                    self.mailbox
                        .cv
                        .wait_timeout(s, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.remove(self.id);
    }
}

impl crate::Database {
    /// Subscribes to every change of `collection`, with a mailbox of `capacity` events
    /// (see [`MAILBOX_DEFAULT`]).
    ///
    ///
    /// ```
    /// # fn main() -> blazedb::Result<()> {
    /// use blazedb::{Database, Document, EventKind, KdfParams};
    ///
    /// let dir = tempfile::tempdir().expect("tempdir");
    /// let db = Database::builder()
    ///     .kdf(KdfParams::INSECURE_FAST)
    ///     .open(dir.path(), "notes", "password")?;
    /// let events = db.subscribe("todo", 64)?;
    /// let id = db.collection("todo").insert(Document::new().with("title", "x"))?;
    /// let ev = events.try_recv().expect("delivered at commit");
    /// assert_eq!((ev.id, ev.kind), (id, EventKind::Added));
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidName`]; [`Error::InvalidValue`] for a capacity of 0 or above
    /// [`MAILBOX_MAX`]; [`Error::TooLarge`] beyond [`SUBSCRIPTIONS_MAX`] subscriptions.
    pub fn subscribe(&self, collection: &str, capacity: usize) -> Result<Subscription> {
        self.add_subscription(collection, None, capacity)
    }

    /// Subscribes to a query's results: `Added` when a document starts matching,
    /// `Changed` when a matching document changes and still matches, `Removed` when it
    /// stops matching or is deleted. Only the filter is used (not sort or limit).
    ///
    /// # Errors
    /// As [`crate::Database::subscribe`], plus invalid queries.
    pub fn subscribe_query(&self, query: &crate::Query, capacity: usize) -> Result<Subscription> {
        query.validate()?;
        self.add_subscription(query.collection(), query.filter.clone(), capacity)
    }

    fn add_subscription(
        &self,
        collection: &str,
        filter: Option<Filter>,
        capacity: usize,
    ) -> Result<Subscription> {
        check_name(NameKind::Collection, collection)?;
        if capacity == 0 || capacity > MAILBOX_MAX {
            return Err(Error::InvalidValue {
                reason: format!("mailbox capacity must be 1..={MAILBOX_MAX}"),
            });
        }
        let hub = Arc::clone(&self.inner.hub);
        let mut subs = hub.subs.lock().unwrap_or_else(PoisonError::into_inner);
        if subs.len() >= SUBSCRIPTIONS_MAX {
            return Err(Error::TooLarge {
                what: "number of subscriptions",
                size: subs.len() + 1,
                max: SUBSCRIPTIONS_MAX,
            });
        }
        let id = hub.next_id.fetch_add(1, Ordering::Relaxed) as u64;
        let mailbox = Arc::new(Mailbox {
            state: Mutex::new(MailState {
                events: VecDeque::new(),
                closed: None,
            }),
            cv: Condvar::new(),
            capacity,
        });
        subs.push(Sub {
            id,
            collection: collection.to_owned(),
            filter,
            mailbox: Arc::clone(&mailbox),
        });
        hub.active.fetch_add(1, Ordering::AcqRel);
        drop(subs);
        Ok(Subscription { hub, id, mailbox })
    }
}
