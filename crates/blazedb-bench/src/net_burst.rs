//! Figure 4 of `blazedb-bench net`: 10 clients writing at once, until the server holds
//! every write (`burst`), and one writer's part of such a burst (`write_burst`, also
//! used by the PostgreSQL store's figure).

#![cfg_attr(not(feature = "net"), allow(unused_imports, dead_code))]

use std::time::{Duration, Instant};

use anyhow::{Result, bail};

/// Writer `k`'s part of a burst: `n` documents into `burst`, in transactions of 100 (the
/// figures are about sync, not local fsyncs). Returns the id of the last one written
/// (`None` for `n == 0`).
#[cfg(feature = "net")]
pub(crate) fn write_burst(
    db: &blazedb_engine::Database,
    k: usize,
    n: usize,
) -> blazedb_engine::Result<Option<blazedb_engine::DocId>> {
    let mut last = None;
    for chunk in 0..n.div_ceil(100) {
        let mut tx = db.begin_write()?;
        for i in chunk * 100..((chunk + 1) * 100).min(n) {
            last = Some(
                tx.insert(
                    "burst",
                    blazedb_engine::Document::new()
                        .with("k", k as i64)
                        .with("i", i as i64),
                )?,
            );
        }
        tx.commit()?;
    }
    Ok(last)
}

/// Figure 4: 10 clients each write `per_client` documents at once; the time until the
/// server holds every write. With `mode` [`ConnectionMode::Bidirectional`] the writers
/// also pull each other's writes meanwhile, as live clients do (on the same two cores
/// as the server); with `PushOnly` they only send, so the figure is the server's
/// ingest beside the writers' own local work.
///
/// [`ConnectionMode::Bidirectional`]: blazedb_sync::ConnectionMode::Bidirectional
#[cfg(feature = "net")]
pub(crate) async fn burst(
    remote: &blazedb_net::RemoteNode,
    open: impl Fn(&str) -> Result<blazedb_engine::Database>,
    server_db: &blazedb_engine::Database,
    per_client: usize,
    mode: blazedb_sync::ConnectionMode,
    timeout: Duration,
) -> Result<Duration> {
    use blazedb_sync::{EnableSync, Role, SyncConfig};
    let mut clients = Vec::new();
    for k in 0..10 {
        let db = open(&format!("w{k}-{mode:?}"))?;
        let h = db
            .enable_sync_with(
                remote.relay(),
                Role::Client,
                SyncConfig::default().mode(mode),
            )
            .await?;
        h.sync_now(timeout).await?;
        clients.push((db, h));
    }
    // The clock stops when the server holds every write (each commit at the server
    // signals; pulling writers are not waited for). The server applies each writer's
    // log in order, so it holds all of a writer's writes once it holds the last one:
    // ten point reads per commit decide it. (Counting the collection instead scanned
    // and decrypted every document at each of the server's commits, on the same two
    // cores: ~20 % of the machine during the burst, perf.) The count is checked once
    // the clock has stopped.
    let (signal, mut committed) = tokio::sync::watch::channel(0u64);
    let hook = server_db.on_commit(move |_| signal.send_modify(|n| *n += 1))?;
    let total = 10 * per_client + server_db.collection("burst").count()? as usize;
    let t = Instant::now();
    let mut tasks = Vec::new();
    for (k, (db, h)) in clients.into_iter().enumerate() {
        let n = per_client;
        tasks.push(tokio::spawn(async move {
            let db2 = db.clone();
            // Transactions of 100 writes: the figure is about sync, not local fsyncs.
            let last = tokio::task::spawn_blocking(move || write_burst(&db2, k, n)).await??;
            anyhow::Ok((h, last))
        }));
    }
    let mut handles = Vec::with_capacity(tasks.len());
    let mut lasts = Vec::with_capacity(tasks.len());
    for t in tasks {
        let (h, last) = t.await??;
        handles.push(h);
        lasts.extend(last);
    }
    let deadline = Instant::now() + timeout;
    let coll = server_db.collection("burst");
    loop {
        // Marked seen before reading, so a commit after the reads still wakes the wait.
        committed.borrow_and_update();
        if all_present(&coll, &lasts)? {
            break;
        }
        if Instant::now() > deadline {
            bail!("the server does not have every write of the burst after {timeout:?}");
        }
        tokio::time::timeout(timeout, committed.changed()).await??;
    }
    let burst = t.elapsed();
    drop(hook);
    let held = coll.count()?;
    if held != total as u64 {
        bail!("the server holds {held} documents of the burst's collection, not {total}");
    }
    for h in handles {
        h.stop().await;
    }
    Ok(burst)
}

/// Whether the collection holds every document of `ids`.
#[cfg(feature = "net")]
fn all_present(
    coll: &blazedb_engine::Collection<'_>,
    ids: &[blazedb_engine::DocId],
) -> Result<bool> {
    for id in ids {
        if coll.get(*id)?.is_none() {
            return Ok(false);
        }
    }
    Ok(true)
}
