//! Figure 3b of `blazedb-bench sync`: one node applying the logs of several peers at
//! once, each peer's batches on its own thread as its session would hand them in: one
//! transaction per batch (`SyncNode::apply_batch`) against batches handed in together
//! (`SyncNode::apply_combined`, which applies the batches that meet in one
//! transaction), alternating in the same run.

#![cfg_attr(not(feature = "sync"), allow(unused_imports, dead_code))]

use std::time::{Duration, Instant};

use anyhow::{Result, bail};

/// Peers whose logs are applied at once.
pub(crate) const PEERS: usize = 8;
/// Writes per batch: what a writer committing 100 documents at a time pushes.
pub(crate) const BATCH: usize = 100;
/// Rounds of each way, alternating.
const ROUNDS: usize = 2;

/// The time to apply `per_peer` writes of each of [`PEERS`] peers, summed over the
/// rounds: (one transaction per batch, combined).
#[cfg(feature = "sync")]
pub(crate) fn run(
    open: impl Fn(&str) -> Result<blazedb_engine::Database>,
    per_peer: usize,
) -> Result<(Duration, Duration)> {
    use blazedb_sync::{LogPos, Part, Role, SyncConfig, SyncNode};

    use crate::docgen::DocGen;

    let mut logs = Vec::with_capacity(PEERS);
    for k in 0..PEERS {
        let db = open(&format!("peer{k}"))?;
        let node = SyncNode::enable(&db, Role::Client, &SyncConfig::default())?;
        let docs = DocGen::new(100 + k as u64).take(per_peer);
        for chunk in docs.chunks(BATCH) {
            let mut tx = db.begin_write()?;
            for d in chunk {
                tx.insert("docs", d.to_document())?;
            }
            tx.commit()?;
        }
        node.absorb()?;
        let mut batches = Vec::new();
        let mut after = LogPos::ZERO;
        loop {
            // Read for a node that is none of the receivers below: nothing is
            // filtered out for either.
            let (items, upto) =
                node.read_log(blazedb_sync::NodeId(u64::MAX), after, BATCH, &|_| true)?;
            if upto <= after {
                break;
            }
            batches.push((items, upto));
            after = upto;
        }
        logs.push((node.node_id(), batches));
    }
    let (mut each, mut combined) = (Duration::ZERO, Duration::ZERO);
    for round in 0..ROUNDS {
        for together in [false, true] {
            let db = open(&format!("receiver{round}-{together}"))?;
            let node = SyncNode::enable(&db, Role::Server, &SyncConfig::default())?;
            let t = Instant::now();
            std::thread::scope(|s| -> Result<()> {
                let threads: Vec<_> = logs
                    .iter()
                    .map(|(peer, batches)| {
                        let node = &node;
                        s.spawn(move || -> Result<()> {
                            for (items, upto) in batches {
                                if together {
                                    let part = Part {
                                        peer: *peer,
                                        role: Role::Client,
                                        batches: vec![(items.clone(), *upto)],
                                    };
                                    if node.apply_combined(part).1.is_none() {
                                        bail!("a combined batch of {peer} was not applied");
                                    }
                                } else {
                                    // The same copy of the batch as the combined way makes.
                                    let items = items.clone();
                                    node.apply_batch(*peer, Role::Client, &items, *upto)?;
                                }
                            }
                            Ok(())
                        })
                    })
                    .collect();
                for t in threads {
                    t.join()
                        .map_err(|_| anyhow::anyhow!("an applying thread panicked"))??;
                }
                Ok(())
            })?;
            let took = t.elapsed();
            let held = db.collection("docs").count()? as usize;
            crate::measure::check_found("the receiving node", held, PEERS * per_peer)?;
            if together {
                combined += took;
            } else {
                each += took;
            }
        }
    }
    Ok((each, combined))
}
