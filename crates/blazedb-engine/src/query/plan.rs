//! The planner: picks an index when one applies, else a full scan.
//!
//! An index on fields `(f1, …, fk)` applies to a conjunction of filters that has
//! equality on `f1 … fn` (n ≥ 0) and, optionally, a range (`<`, `<=`, `>`, `>=`) on
//! `f(n+1)`; or, with no usable filter, to a query with a limit whose sort is the
//! index's fields in ascending order. Preference: more equality fields, then a range,
//! then index order matching the sort. The full filter is always re-checked on every
//! document read, so an index only narrows what is read, never what matches.

use std::ops::{Bound, ControlFlow};

use blazedb_core::{Document, Error, Result, Value};
use blazedb_storage::prefix_upper;

use super::filter::{Cmp, FieldPath, Filter};
use super::keyenc::encode;
use super::order::rank;
use super::{Access, Order, Plan, Query};
use crate::index::btree::Tree;
use crate::index::{IndexRecord, TRUNCATED_VALUES_BYTES, index_tag, is_truncated, key_id};
use crate::raw::{Raw, get_doc};
use crate::vault::Vault;

/// One side of a range: the operator and its value.
type RangeSide<'q> = Option<(Cmp, &'q Value)>;
/// How good a candidate is: (equality fields, has a range, yields the sort order).
type Score = (usize, bool, bool);

/// A chosen index access.
pub(crate) struct IndexPlan {
    rec: IndexRecord,
    lo: Bound<Vec<u8>>,
    hi: Bound<Vec<u8>>,
    /// Index order equals the query's result order (read backwards if `reverse`): a
    /// limit can stop the scan early.
    ordered: bool,
    /// The query sorts every key descending: the index is read from its end.
    reverse: bool,
    describe: String,
}

fn upper_or_unbounded(prefix: &[u8]) -> Bound<Vec<u8>> {
    prefix_upper(prefix).map_or(Bound::Unbounded, Bound::Excluded)
}

/// A lower bound cut to the values of a cut key (see
/// [`crate::index::TRUNCATED_KEY_BYTES`]): lower, so every key in the range is still
/// in it, and so is the cut key of any document whose whole key is.
fn cut_lower(b: Bound<Vec<u8>>) -> Bound<Vec<u8>> {
    match b {
        Bound::Included(k) | Bound::Excluded(k) if k.len() > TRUNCATED_VALUES_BYTES => {
            Bound::Included(k[..TRUNCATED_VALUES_BYTES].to_vec())
        }
        b => b,
    }
}

/// An upper bound cut likewise (higher).
fn cut_upper(b: Bound<Vec<u8>>) -> Bound<Vec<u8>> {
    match b {
        Bound::Included(k) | Bound::Excluded(k) if k.len() > TRUNCATED_VALUES_BYTES => {
            upper_or_unbounded(&k[..TRUNCATED_VALUES_BYTES])
        }
        b => b,
    }
}

fn conjuncts(q: &Query) -> Vec<&Filter> {
    match &q.filter {
        Some(Filter::And(fs)) => fs.iter().collect(),
        Some(f) => vec![f],
        None => Vec::new(),
    }
}

fn eq_value<'q>(conj: &[&'q Filter], path: &FieldPath) -> Option<&'q Value> {
    conj.iter().find_map(|f| match f {
        Filter::Compare(p, Cmp::Eq, v) if p == path => Some(v),
        _ => None,
    })
}

fn range_on<'q>(conj: &[&'q Filter], path: &FieldPath) -> (RangeSide<'q>, RangeSide<'q>) {
    let mut lower = None;
    let mut upper = None;
    for f in conj {
        if let Filter::Compare(p, op, v) = f
            && p == path
        {
            match op {
                Cmp::Gt | Cmp::Ge if lower.is_none() => lower = Some((*op, v)),
                Cmp::Lt | Cmp::Le if upper.is_none() => upper = Some((*op, v)),
                _ => {}
            }
        }
    }
    (lower, upper)
}

fn candidate(q: &Query, conj: &[&Filter], rec: &IndexRecord) -> Result<Option<(Score, IndexPlan)>> {
    let paths = rec.paths()?;
    let mut prefix = Vec::new();
    let mut n = 0;
    let mut described = Vec::new();
    while n < paths.len() {
        let Some(v) = eq_value(conj, &paths[n]) else {
            break;
        };
        encode(&mut prefix, v);
        described.push(format!("{} = {}", paths[n], crate::json::to_json(v)));
        n += 1;
    }
    let (lower, upper) = if n < paths.len() {
        range_on(conj, &paths[n])
    } else {
        (None, None)
    };
    let has_range = lower.is_some() || upper.is_some();
    // One direction for every key: the index read forwards, or backwards.
    let direction = q.sort.first().map(|(_, o)| *o);
    let ordered = !q.sort.is_empty()
        && q.sort.iter().all(|(_, o)| Some(*o) == direction)
        && q.sort.iter().map(|(p, _)| p).eq(paths[n..].iter());
    let reverse = ordered && direction == Some(Order::Desc);
    if n == 0 && !has_range && !(ordered && q.limit.is_some()) {
        return Ok(None);
    }
    let (lo, hi) = if has_range {
        let with = |v: &Value| {
            let mut k = prefix.clone();
            encode(&mut k, v);
            k
        };
        let kind = |v: &Value| {
            let mut k = prefix.clone();
            k.push(rank(Some(v)));
            k
        };
        // Range filters match only values of the same kind, so the scan stays within it.
        let lo = match (lower, upper) {
            // Just above every key that starts with enc(v): the first greater value.
            (Some((Cmp::Gt, v)), _) => {
                prefix_upper(&with(v)).map_or(Bound::Unbounded, Bound::Included)
            }
            (Some((_, v)), _) => Bound::Included(with(v)),
            (None, Some((_, v))) => Bound::Included(kind(v)),
            (None, None) => Bound::Unbounded,
        };
        let hi = match (upper, lower) {
            (Some((Cmp::Lt, v)), _) => Bound::Excluded(with(v)),
            (Some((_, v)), _) => upper_or_unbounded(&with(v)),
            (None, Some((_, v))) => {
                let mut k = prefix.clone();
                k.push(rank(Some(v)) + 1);
                Bound::Excluded(k)
            }
            (None, None) => Bound::Unbounded,
        };
        if let Some((op, v)) = lower {
            described.push(format!(
                "{} {} {}",
                paths[n],
                if op == Cmp::Gt { ">" } else { ">=" },
                crate::json::to_json(v)
            ));
        }
        if let Some((op, v)) = upper {
            described.push(format!(
                "{} {} {}",
                paths[n],
                if op == Cmp::Lt { "<" } else { "<=" },
                crate::json::to_json(v)
            ));
        }
        (lo, hi)
    } else if prefix.is_empty() {
        (Bound::Unbounded, Bound::Unbounded)
    } else {
        (Bound::Included(prefix.clone()), upper_or_unbounded(&prefix))
    };
    let (lo, hi) = (cut_lower(lo), cut_upper(hi));
    let describe = if described.is_empty() {
        "in index order".to_owned()
    } else {
        described.join(" and ")
    };
    Ok(Some((
        (n, has_range, ordered),
        IndexPlan {
            rec: rec.clone(),
            lo,
            hi,
            ordered,
            reverse,
            describe,
        },
    )))
}

/// The best index for `q`, if any applies.
pub(crate) fn choose(q: &Query, dir: &[IndexRecord]) -> Result<Option<IndexPlan>> {
    let conj = conjuncts(q);
    let mut best: Option<(Score, IndexPlan)> = None;
    for rec in dir.iter().filter(|r| r.collection == q.collection) {
        if let Some(c) = candidate(q, &conj, rec)?
            && best.as_ref().is_none_or(|b| c.0 > b.0)
        {
            best = Some(c);
        }
    }
    Ok(best.map(|(_, p)| p))
}

fn bounds(plan: &IndexPlan) -> (Bound<&[u8]>, Bound<&[u8]>) {
    (
        plan.lo.as_ref().map(Vec::as_slice),
        plan.hi.as_ref().map(Vec::as_slice),
    )
}

/// Runs `q` through `plan`.
pub(crate) fn run_index(
    raw: &mut impl Raw,
    vault: &Vault,
    q: &Query,
    plan: &IndexPlan,
    path: &std::path::Path,
) -> Result<Vec<Document>> {
    let tree = Tree {
        tag: index_tag(vault, &plan.rec.name),
        meta: plan.rec.tree,
        vault,
    };
    let coll = vault.coll_tag(&q.collection);
    let want = q.limit.map(|l| l.saturating_add(q.offset));
    // Cut keys are in range but not in value order among themselves: then the results
    // are sorted in memory (`finish`), never cut short in index order.
    let mut cut = false;
    let (lo, hi) = bounds(plan);
    let mut ids = Vec::new();
    // Read backwards (`reverse`), documents with equal values come in descending id
    // order, but the result orders them by ascending id: once enough are found, the
    // rest of the last value's documents are still read (`finish` keeps the right
    // ones). So a backwards read keeps each key's values too.
    let mut values: Vec<Vec<u8>> = Vec::new();
    tree.scan(raw, lo, hi, &mut |k| {
        cut |= is_truncated(k);
        ids.push(key_id(k)?);
        if plan.reverse {
            values.push(k[..k.len().saturating_sub(16)].to_vec());
        }
        Ok(ControlFlow::Continue(()))
    })?;
    let n = ids.len();
    let mut hits = Vec::new();
    let mut last_value: Option<&[u8]> = None;
    for i in 0..n {
        let at = if plan.reverse { n - 1 - i } else { i };
        if last_value.is_some_and(|v| v != values[at].as_slice()) {
            break;
        }
        let doc = get_doc(raw, vault, &coll, ids[at], path)?.ok_or_else(|| {
            Error::corrupt_record(
                "index",
                format!("index '{}' names a missing document", plan.rec.name),
            )
        })?;
        if q.matches(&doc) {
            hits.push(doc);
            if plan.ordered && !cut && last_value.is_none() && want.is_some_and(|w| hits.len() >= w)
            {
                if !plan.reverse {
                    break;
                }
                last_value = Some(values[at].as_slice());
            }
        }
    }
    Ok(q.finish(hits))
}

/// The plan for `q` and its estimate: keys in the index range, or documents in the
/// collection for a full scan.
pub(crate) fn explain(
    raw: &mut impl Raw,
    vault: &Vault,
    q: &Query,
    plan: Option<&IndexPlan>,
    collection_size: u64,
) -> Result<Plan> {
    let Some(plan) = plan else {
        return Ok(Plan {
            collection: q.collection.clone(),
            access: Access::FullScan,
            estimated_reads: collection_size,
            sort_in_memory: !q.sort.is_empty(),
        });
    };
    let tree = Tree {
        tag: index_tag(vault, &plan.rec.name),
        meta: plan.rec.tree,
        vault,
    };
    let mut n = 0u64;
    let (lo, hi) = bounds(plan);
    tree.scan(raw, lo, hi, &mut |_| {
        n += 1;
        Ok(ControlFlow::Continue(()))
    })?;
    if plan.ordered
        && let Some(l) = q.limit
    {
        n = n.min(l.saturating_add(q.offset) as u64);
    }
    Ok(Plan {
        collection: q.collection.clone(),
        access: Access::Index {
            name: plan.rec.name.clone(),
            bounds: plan.describe.clone(),
        },
        estimated_reads: n,
        sort_in_memory: !plan.ordered && !q.sort.is_empty(),
    })
}
