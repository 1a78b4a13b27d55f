//! A bounded pool of blocking Postgres clients: at most [`PoolOptions::max`] open at
//! once (a caller past it waits for one to come back, at most
//! [`PoolOptions::wait`]), idle ones kept for reuse, broken ones dropped.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use blazedb_core::{Error, Result};

use crate::pg_error;
use crate::tls::StoreTls;

/// Longest a connection may sit inside a transaction without a statement (the node's
/// transactions run statement after statement; only a stalled process idles).
pub const IDLE_IN_TRANSACTION: Duration = Duration::from_secs(120);
/// Longest a write waits for the writer lock.
pub const LOCK_WAIT: Duration = Duration::from_secs(60);

/// How many connections, and how long to wait for one.
#[derive(Clone, Debug)]
pub struct PoolOptions {
    /// Most connections open at once (each write transaction and each read snapshot
    /// holds one while it runs).
    pub max: usize,
    /// Longest wait for a free connection before an error.
    pub wait: Duration,
    /// Longest time to establish a connection.
    pub connect_timeout: Duration,
    /// TLS to Postgres (off by default).
    pub tls: StoreTls,
}

impl Default for PoolOptions {
    fn default() -> Self {
        PoolOptions {
            // Each database worker (16) may hold a write transaction and a read at
            // once; more than that never waits on another's connection.
            max: 40,
            wait: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            tls: StoreTls::Off,
        }
    }
}

pub(crate) struct Pool {
    config: postgres::Config,
    opts: PoolOptions,
    state: Mutex<State>,
    freed: Condvar,
}

struct State {
    idle: Vec<Pooled>,
    /// Connections lent out or idle.
    open: usize,
}

/// A connection and the statements prepared on it. Each statement the store runs is
/// prepared once per connection and then only bound and executed: one round trip
/// instead of two (a `&str` query parses and describes first, then executes).
pub(crate) struct Pooled {
    client: postgres::Client,
    statements: HashMap<&'static str, postgres::Statement>,
}

/// A client lent by the pool; back to it when dropped (unless broken).
pub(crate) struct Lent<'p> {
    pool: &'p Pool,
    client: Option<Pooled>,
    /// It was idle in the pool (its connection may have broken since).
    reused: bool,
}

impl std::ops::Deref for Lent<'_> {
    type Target = postgres::Client;
    fn deref(&self) -> &postgres::Client {
        &self
            .client
            .as_ref()
            .expect("present until dropped or discarded")
            .client
    }
}

impl std::ops::DerefMut for Lent<'_> {
    fn deref_mut(&mut self) -> &mut postgres::Client {
        &mut self.client.as_mut().expect("present until dropped").client
    }
}

type Params<'a> = [&'a (dyn postgres::types::ToSql + Sync)];

impl Lent<'_> {
    /// `sql` prepared on this connection (once; then from its cache).
    fn statement(
        &mut self,
        sql: &'static str,
    ) -> std::result::Result<postgres::Statement, postgres::Error> {
        let p = self.client.as_mut().expect("present until dropped");
        if let Some(s) = p.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = p.client.prepare(sql)?;
        p.statements.insert(sql, s.clone());
        Ok(s)
    }

    /// The rows of `sql`, prepared once per connection.
    pub(crate) fn query(
        &mut self,
        sql: &'static str,
        params: &Params<'_>,
    ) -> std::result::Result<Vec<postgres::Row>, postgres::Error> {
        let s = self.statement(sql)?;
        std::ops::DerefMut::deref_mut(self).query(&s, params)
    }

    /// The row of `sql` if any, prepared once per connection.
    pub(crate) fn query_opt(
        &mut self,
        sql: &'static str,
        params: &Params<'_>,
    ) -> std::result::Result<Option<postgres::Row>, postgres::Error> {
        let s = self.statement(sql)?;
        std::ops::DerefMut::deref_mut(self).query_opt(&s, params)
    }

    /// Runs `sql`, prepared once per connection; the rows it changed.
    pub(crate) fn execute(
        &mut self,
        sql: &'static str,
        params: &Params<'_>,
    ) -> std::result::Result<u64, postgres::Error> {
        let s = self.statement(sql)?;
        std::ops::DerefMut::deref_mut(self).execute(&s, params)
    }

    /// Closes this client instead of giving it back (its state is unknown).
    pub(crate) fn discard(&mut self) {
        if let Some(c) = self.client.take() {
            let mut st = self
                .pool
                .state
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            st.open -= 1;
            drop(st);
            self.pool.freed.notify_one();
            close_elsewhere(vec![c]);
        }
    }
}

impl Drop for Lent<'_> {
    fn drop(&mut self) {
        let mut st = self
            .pool
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match self.client.take() {
            Some(c) if !c.client.is_closed() => st.idle.push(c),
            Some(broken) => {
                st.open -= 1;
                close_elsewhere(vec![broken]);
            }
            None => {} // discarded, counted then
        }
        self.pool.freed.notify_one();
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let st = self.state.get_mut().unwrap_or_else(PoisonError::into_inner);
        close_elsewhere(std::mem::take(&mut st.idle));
    }
}

/// Closes `clients` on a thread of their own: closing a blocking client blocks on its
/// connection, which must not happen on an async runtime's thread (the last handle on a
/// store may well be dropped there, e.g. when a server stops).
fn close_elsewhere(clients: Vec<Pooled>) {
    if clients.is_empty() {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("blazedb-pg-close".into())
        .spawn(move || drop(clients));
    if let Err(e) = spawned {
        // No thread could start (the process is out of them): the connections were
        // closed here instead, as the spawn dropped them.
        tracing::warn!(error = %e, "closing PostgreSQL connections on the caller's thread");
    }
}

/// Bounds on a connection's life: the connect timeout, and keepalives with
/// `tcp_user_timeout` so that a connection across a partition ends within about a
/// minute instead of hanging (the pool's, and the listener's, which otherwise waits
/// for notifications on a peer that is gone).
pub(crate) fn harden(config: &mut postgres::Config, opts: &PoolOptions) {
    config
        .connect_timeout(opts.connect_timeout)
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(20))
        .keepalives_interval(Duration::from_secs(5))
        .keepalives_retries(4)
        .tcp_user_timeout(Duration::from_secs(60));
}

impl Pool {
    pub(crate) fn new(mut config: postgres::Config, opts: PoolOptions) -> Pool {
        // A process that stops answering (a network partition, not a crash, which
        // Postgres notices at once) must not hold the writer lock for hours: the
        // connection's keepalives and `tcp_user_timeout` end it within about a
        // minute, a transaction left idle ends after `IDLE_IN_TRANSACTION`, and a
        // writer waits for the lock at most `LOCK_WAIT` before its work fails and is
        // retried by its session.
        harden(&mut config, &opts);
        let limits = format!(
            "-c idle_in_transaction_session_timeout={} -c lock_timeout={}",
            IDLE_IN_TRANSACTION.as_millis(),
            LOCK_WAIT.as_millis()
        );
        let options = match config.get_options() {
            Some(o) if !o.is_empty() => format!("{o} {limits}"),
            _ => limits,
        };
        config.options(&options);
        Pool {
            config,
            opts: PoolOptions {
                max: opts.max.max(1),
                ..opts
            },
            state: Mutex::new(State {
                idle: Vec::new(),
                open: 0,
            }),
            freed: Condvar::new(),
        }
    }

    /// A client on which `first` (the first statement of what the caller does)
    /// succeeded. An idle client whose connection broke meanwhile (Postgres restarted)
    /// is dropped and the next one tried, a fresh connection last: after a restart,
    /// callers get working clients instead of one failure per stale connection.
    pub(crate) fn get_with(&self, context: &'static str, first: &str) -> Result<Lent<'_>> {
        loop {
            let mut c = self.get()?;
            let was_idle = c.reused;
            match c.batch_execute(first) {
                Ok(()) => return Ok(c),
                Err(e) if was_idle && c.is_closed() => {
                    tracing::debug!(error = %e, "a pooled PostgreSQL connection broke: dropped");
                }
                Err(e) => {
                    // `first` may have begun a transaction before failing (a lock
                    // wait that timed out): the connection goes back only outside one.
                    if c.batch_execute("ROLLBACK").is_err() {
                        c.discard();
                    }
                    return Err(pg_error(context, e));
                }
            }
        }
    }

    /// A client: an idle one, a new one while fewer than `max` are open, or the next
    /// one given back.
    pub(crate) fn get(&self) -> Result<Lent<'_>> {
        let deadline = Instant::now() + self.opts.wait;
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(c) = st.idle.pop() {
                return Ok(Lent {
                    pool: self,
                    client: Some(c),
                    reused: true,
                });
            }
            if st.open < self.opts.max {
                st.open += 1;
                drop(st);
                return match self.opts.tls.connect(&self.config) {
                    Ok(client) => Ok(Lent {
                        pool: self,
                        client: Some(Pooled {
                            client,
                            statements: HashMap::new(),
                        }),
                        reused: false,
                    }),
                    Err(e) => {
                        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
                        st.open -= 1;
                        self.freed.notify_one();
                        Err(pg_error("connecting to PostgreSQL", e))
                    }
                };
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::Io {
                    context: "waiting for a PostgreSQL connection",
                    source: std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("all {} connections busy", self.opts.max),
                    ),
                });
            }
            st = self
                .freed
                .wait_timeout(st, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}
