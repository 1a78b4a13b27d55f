//! Problem sizes of the `query` command's figures (1: indexed queries, in `query.rs`;
//! 2: latency as the database grows, in `scale.rs`), and its progress line. Apart from
//! both figures so that neither imports the other's module.

/// Problem sizes of one `query` run.
#[derive(Clone, Debug)]
pub(crate) struct QuerySizes {
    /// Figure 1: documents in the collection.
    pub docs: usize,
    /// Figure 1: distinct `group` values (docs / groups documents match each query).
    pub groups: i64,
    /// Figure 1: measured queries per variant.
    pub queries: usize,
    /// Figure 1: alternating BlazeDB/SQLite rounds the queries are split into.
    pub rounds: usize,
    /// Figure 2: collection sizes (smallest first); each has docs / 10 groups.
    pub scale: Vec<usize>,
    /// Figure 2: measured point gets per size and engine.
    pub lat_gets: usize,
    /// Figure 2: measured indexed queries per size and engine.
    pub lat_queries: usize,
    /// Figure 2: measured durable puts per size and engine.
    pub lat_puts: usize,
}

impl QuerySizes {
    /// Full sizes, or small ones for a quick smoke run.
    pub(crate) fn new(quick: bool) -> Self {
        if quick {
            QuerySizes {
                docs: 10_000,
                groups: 100,
                queries: 1_000,
                rounds: 2,
                scale: vec![1_000, 10_000, 100_000],
                lat_gets: 5_000,
                lat_queries: 2_000,
                lat_puts: 200,
            }
        } else {
            QuerySizes {
                docs: 100_000,
                groups: 1_000,
                queries: 5_000,
                rounds: 4,
                scale: vec![1_000, 100_000, 1_000_000],
                lat_gets: 20_000,
                lat_queries: 5_000,
                lat_puts: 1_000,
            }
        }
    }
}

/// Prints what is running now to stderr (the results go to stdout).
pub(crate) fn progress(what: &str) {
    eprintln!("  running: {what}");
}
