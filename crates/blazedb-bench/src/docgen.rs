//! Deterministic test documents, the same for both databases.
//!
//! Each document has a UUIDv7-shaped id (increasing millisecond prefix, random tail) and
//! six fields: `title` and `body` (strings), `n` (int), `score` (float), `tags` (array of
//! strings) and `done` (bool). As JSON it is about 200 bytes.

use blazedb_engine::{DocId, Document, Value};
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use serde_json::json;

const WORDS: [&str; 48] = [
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet",
    "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango",
    "uniform", "victor", "whiskey", "xray", "yankee", "zulu", "ship", "review", "draft", "merge",
    "deploy", "budget", "meeting", "invoice", "garden", "kitchen", "travel", "report", "summary",
    "backlog", "feature", "release", "design", "sprint", "call", "email", "notes", "plan",
];

const TAGS: [&str; 12] = [
    "work", "home", "urgent", "later", "errand", "idea", "family", "health", "money", "study",
    "music", "sport",
];

/// Milliseconds since the epoch of the first generated id (2025-01-01T00:00:00Z).
const BASE_MS: u64 = 1_735_689_600_000;

/// One generated document, in a neutral form both databases are fed from.
#[derive(Clone, Debug)]
pub(crate) struct DocSpec {
    pub id: DocId,
    pub title: String,
    pub body: String,
    pub n: i64,
    pub score: f64,
    pub tags: Vec<String>,
    pub done: bool,
}

impl DocSpec {
    /// The document as BlazeDB stores it.
    pub(crate) fn to_document(&self) -> Document {
        let tags: Vec<Value> = self.tags.iter().map(|t| Value::from(t.as_str())).collect();
        Document::with_id(self.id)
            .with("title", self.title.as_str())
            .with("body", self.body.as_str())
            .with("n", self.n)
            .with("score", self.score)
            .with("tags", tags)
            .with("done", self.done)
    }

    /// The document as a JSON value (what the SQLite side serialises to text).
    pub(crate) fn to_json(&self) -> serde_json::Value {
        json!({
            "title": self.title,
            "body": self.body,
            "n": self.n,
            "score": self.score,
            "tags": self.tags,
            "done": self.done,
        })
    }

    /// The document as BlazeDB stores it, with an extra integer field `group` (the
    /// indexed field of the `query` command).
    pub(crate) fn to_document_in(&self, group: i64) -> Document {
        self.to_document().with("group", group)
    }

    /// The JSON form with the extra integer field `group` (see [`DocSpec::to_document_in`]).
    pub(crate) fn to_json_in(&self, group: i64) -> serde_json::Value {
        let mut v = self.to_json();
        if let Some(map) = v.as_object_mut() {
            map.insert("group".to_owned(), group.into());
        }
        v
    }

    /// The id as SQLite stores it: the hyphenated UUID text.
    pub(crate) fn id_text(&self) -> String {
        self.id.to_string()
    }
}

/// A seeded, deterministic document generator.
pub(crate) struct DocGen {
    rng: Xoshiro256PlusPlus,
    seq: u64,
}

impl DocGen {
    /// A generator whose output depends only on `seed`.
    pub(crate) fn new(seed: u64) -> Self {
        Self {
            rng: Xoshiro256PlusPlus::seed_from_u64(seed),
            seq: 0,
        }
    }

    fn words(&mut self, lo: usize, hi: usize) -> String {
        let n = self.rng.random_range(lo..=hi);
        let mut out = String::new();
        for i in 0..n {
            if i > 0 {
                out.push(' ');
            }
            out.push_str(WORDS[self.rng.random_range(0..WORDS.len())]);
        }
        out
    }

    fn id(&mut self) -> DocId {
        // UUIDv7 layout: 48-bit milliseconds, version 7, variant 10, random rest.
        let ms = BASE_MS + self.seq;
        self.seq += 1;
        let mut b = [0u8; 16];
        b[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
        let tail: u128 = self.rng.random();
        b[6..].copy_from_slice(&tail.to_be_bytes()[6..]);
        b[6] = 0x70 | (b[6] & 0x0F);
        b[8] = 0x80 | (b[8] & 0x3F);
        DocId::from_bytes(b)
    }

    /// The next document.
    pub(crate) fn next_doc(&mut self) -> DocSpec {
        let id = self.id();
        let title = self.words(3, 5);
        let body = self.words(12, 16);
        let n = self.rng.random_range(0..1_000_000i64);
        // Two decimals, as an app would store a score.
        let score = f64::from(self.rng.random_range(0..10_000u32)) / 100.0;
        let ntags = self.rng.random_range(1..=3usize);
        let tags = (0..ntags)
            .map(|_| TAGS[self.rng.random_range(0..TAGS.len())].to_owned())
            .collect();
        let done = self.rng.random_bool(0.3);
        DocSpec {
            id,
            title,
            body,
            n,
            score,
            tags,
            done,
        }
    }

    /// `count` documents.
    pub(crate) fn take(&mut self, count: usize) -> Vec<DocSpec> {
        (0..count).map(|_| self.next_doc()).collect()
    }
}

/// Mean size in bytes of the documents serialised as JSON (the SQLite row's `doc`).
pub(crate) fn mean_json_len(docs: &[DocSpec]) -> anyhow::Result<f64> {
    if docs.is_empty() {
        return Ok(0.0);
    }
    let mut total = 0usize;
    for d in docs {
        total += serde_json::to_string(&d.to_json())?.len();
    }
    Ok(total as f64 / docs.len() as f64)
}
