//! `blazedb-bench`: runs BlazeDB and SQLite on the same documents in one run and prints
//! each figure with the ratio BlazeDB/SQLite and the goal it is held to.
//!
//! ```text
//! cargo run --release -p blazedb-bench -- engine            # full sizes
//! cargo run --release -p blazedb-bench -- engine --quick    # smoke check, < 30 s
//! cargo run --release -p blazedb-bench -- query             # indexed queries, latency vs size
//! cargo run --release -p blazedb-bench -- query --quick
//! ```

mod blaze;
mod blaze_idx;
mod child;
mod docgen;
mod indexed;
mod measure;
mod net_bench;
mod net_burst;
mod net_clients;
mod net_fanout;
mod net_store;
mod query;
mod report;
mod run;
mod scale;
mod sizes;
mod sqlite;
mod sqlite_idx;
mod sync_bench;
mod sync_peers;

use std::path::PathBuf;

use crate::measure::{fs_type, load_average};
use crate::run::{Selection, Sizes};
use anyhow::{Context, Result, bail};

const USAGE: &str = "\
usage: blazedb-bench engine [--quick] [--dir DIR] [--only LIST]
       blazedb-bench query [--quick] [--dir DIR] [--only LIST]
       blazedb-bench sync [--quick] [--dir DIR]
       blazedb-bench net [--quick] [--dir DIR] [--only LIST] [--clients N]
       blazedb-bench net --store postgres [--quick] [--dir DIR]

  engine        BlazeDB against SQLite: durable commits (1 and 8 writers), bulk insert,
                point gets, cold open. Prints each figure and the ratio BlazeDB/SQLite.
  query         BlazeDB against SQLite: indexed equality queries (~100 docs each), and
                per-operation latency (get, put, indexed query) at three sizes up to
                1M documents with its growth.
  sync          What sync costs: local writes with sync compiled in but disabled vs a
                build without the feature (same run), local writes taken over into
                the sync log, and the rate of applying remote writes.
  net           Sync over TLS on loopback: initial sync vs local bulk load (same run),
                change latency A -> server -> B (p50, p99), resync after 10 changes
                (bytes, time), 10 clients writing at once, 10,000 connected clients
                (server RSS per client and threads in a separate server process, time
                to fan one change out to all).
                With --store postgres: servers over PostgreSQL (a throwaway cluster
                this command starts; needs the `postgresql` package) against the
                embedded store, each server in its own process: initial sync, 10
                clients writing at once through 1 and 2 server processes, A -> B
                with A and B on different processes.
  --quick       small sizes (a smoke check that finishes in well under 30 s)
  --dir DIR     where to create the databases (default: a temporary directory under
                $TMPDIR or /tmp); it must be on the disk you want to measure, not tmpfs
  --only LIST   engine: comma-separated subset of: commit1, commit8, bulk, gets, open
                (gets and open also run bulk, which builds their database);
                query: subset of: indexed, latency;
                net: subset of: sync (figures 1-4), initial (figure 1 alone),
                fanout (figure 5); with --store postgres: initial, ingest, live
  --clients N   net: connected clients of figure 5 (default 10,000; 100 with --quick)";

/// The command to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Command {
    Engine,
    Query,
    Sync,
    Net,
}

struct Args {
    command: Command,
    quick: bool,
    dir: Option<PathBuf>,
    only: Selection,
    query_only: query::QuerySelection,
    /// `net --only`, as given (its names depend on `--store`).
    net_only: Option<String>,
    /// `net --clients`.
    net_clients: Option<usize>,
    /// `net --store postgres`: the PostgreSQL store against the embedded one.
    net_store_pg: bool,
}

fn parse_net_only(list: &str) -> Result<(bool, bool, bool)> {
    let mut sel = (false, false, false);
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        match name {
            "sync" => (sel.0, sel.1) = (true, true),
            "initial" => sel.0 = true,
            "fanout" => sel.2 = true,
            other => bail!("unknown net figure '{other}' in --only\n\n{USAGE}"),
        }
    }
    Ok(sel)
}

fn parse_query_only(list: &str) -> Result<query::QuerySelection> {
    let mut sel = query::QuerySelection {
        indexed: false,
        latency: false,
    };
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match item {
            "indexed" => sel.indexed = true,
            "latency" => sel.latency = true,
            other => bail!("unknown query figure '{other}' in --only\n\n{USAGE}"),
        }
    }
    Ok(sel)
}

fn parse_only(list: &str) -> Result<Selection> {
    let mut sel = Selection {
        commit1: false,
        commit8: false,
        bulk: false,
        gets: false,
        open: false,
    };
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match item {
            "commit1" => sel.commit1 = true,
            "commit8" => sel.commit8 = true,
            "bulk" => sel.bulk = true,
            "gets" => sel.gets = true,
            "open" => sel.open = true,
            other => bail!("unknown figure '{other}' in --only\n\n{USAGE}"),
        }
    }
    sel.bulk |= sel.gets || sel.open;
    Ok(sel)
}

fn parse_args() -> Result<Option<Args>> {
    let mut args = std::env::args().skip(1);
    let command = match args.next().as_deref() {
        Some("engine") => Command::Engine,
        Some("query") => Command::Query,
        Some("sync") => Command::Sync,
        Some("net") => Command::Net,
        Some("local-writes") => {
            // Child of `sync`: the same loop in a build without the sync feature.
            let n: usize = args.next().context("local-writes N DIR SEED")?.parse()?;
            let dir: PathBuf = args.next().context("local-writes N DIR SEED")?.into();
            let seed: u64 = args.next().context("local-writes N DIR SEED")?.parse()?;
            sync_bench::child(n, &dir, seed)?;
            return Ok(None);
        }
        Some("net-server") => {
            // Child of `net`: the sync server, in its own process so its memory can be
            // measured apart from the clients'. Serves until its stdin closes.
            let (mut dir, mut max) = (None::<PathBuf>, 2_048usize);
            while let Some(a) = args.next() {
                match a.as_str() {
                    "--dir" => dir = Some(args.next().context("--dir needs a path")?.into()),
                    "--max-connections" => {
                        max = args.next().context("--max-connections needs N")?.parse()?;
                    }
                    other => bail!("net-server: unknown argument '{other}'"),
                }
            }
            net_fanout::server_child(&dir.context("net-server needs --dir")?, max)?;
            return Ok(None);
        }
        Some("net-pg-server") => {
            // Child of `net --store postgres`: a server over the PostgreSQL store.
            net_store::pg_server_child(&args.collect::<Vec<_>>())?;
            return Ok(None);
        }
        Some("net-clients") => {
            // Child of `net`: figure 5's receiving clients (see `net_clients.rs`).
            net_clients::child(&args.collect::<Vec<_>>())?;
            return Ok(None);
        }
        Some("-h" | "--help") | None => {
            println!("{USAGE}");
            return Ok(None);
        }
        Some(other) => bail!("unknown command '{other}'\n\n{USAGE}"),
    };
    let mut out = Args {
        command,
        quick: false,
        dir: None,
        only: parse_only("commit1,commit8,bulk,gets,open")?,
        query_only: parse_query_only("indexed,latency")?,
        net_only: None,
        net_clients: None,
        net_store_pg: false,
    };
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => out.quick = true,
            "--dir" => out.dir = Some(args.next().context("--dir needs a path")?.into()),
            "--only" => {
                let list = args.next().context("--only needs a list")?;
                match command {
                    Command::Engine => out.only = parse_only(&list)?,
                    Command::Query => out.query_only = parse_query_only(&list)?,
                    Command::Sync => bail!("sync has no --only"),
                    Command::Net => out.net_only = Some(list),
                }
            }
            "--clients" if command == Command::Net => {
                let n: usize = args
                    .next()
                    .context("--clients needs a number")?
                    .parse()
                    .context("--clients needs a number")?;
                if n < 2 {
                    bail!("--clients needs at least 2 (one writes, the others receive)");
                }
                out.net_clients = Some(n);
            }
            "--store" if command == Command::Net => match args.next().as_deref() {
                Some("postgres") => out.net_store_pg = true,
                Some("embedded") => out.net_store_pg = false,
                other => bail!("--store takes postgres or embedded, not {other:?}"),
            },
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(None);
            }
            other => bail!("unknown argument '{other}'\n\n{USAGE}"),
        }
    }
    Ok(Some(out))
}

fn main() -> Result<()> {
    let Some(args) = parse_args()? else {
        return Ok(());
    };
    let tmp = match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            tempfile::Builder::new()
                .prefix("blazedb-bench-")
                .tempdir_in(d)?
        }
        None => tempfile::Builder::new()
            .prefix("blazedb-bench-")
            .tempdir()?,
    };
    let dir = tmp.path();
    let fs = fs_type(dir);
    println!(
        "blazedb-bench {} ({})",
        match args.command {
            Command::Engine => "engine",
            Command::Query => "query",
            Command::Sync => "sync",
            Command::Net => "net",
        },
        if args.quick { "quick" } else { "full" }
    );
    println!(
        "data directory: {} ({fs}); {} CPUs; SQLite {}",
        dir.display(),
        std::thread::available_parallelism().map_or(0, usize::from),
        rusqlite::version()
    );
    if fs == "tmpfs" || fs == "ramfs" {
        println!("WARNING: the data directory is in memory: fsync costs nothing there");
    }
    match args.command {
        Command::Engine => {
            let sizes = Sizes::new(args.quick);
            println!("{sizes:?}");
            println!("load average at start: {}", load_average());
            println!();
            run::run(dir, sizes, args.only)?;
        }
        Command::Query => {
            let sizes = sizes::QuerySizes::new(args.quick);
            println!("{sizes:?}");
            println!("load average at start: {}", load_average());
            println!();
            query::run(dir, &sizes, args.query_only)?;
        }
        Command::Sync => {
            let sizes = sync_bench::SyncSizes::new(args.quick);
            println!("{sizes:?}");
            println!("load average at start: {}", load_average());
            println!();
            sync_bench::run(dir, sizes)?;
        }
        Command::Net => {
            let mut sizes = net_bench::NetSizes::new(args.quick);
            if !args.net_store_pg {
                (sizes.sync_figures, sizes.later_figures, sizes.fanout_figure) =
                    parse_net_only(args.net_only.as_deref().unwrap_or("sync,fanout"))?;
            }
            if let Some(n) = args.net_clients {
                sizes.clients = n;
            }
            println!("{sizes:?}");
            println!("load average at start: {}", load_average());
            println!();
            if args.net_store_pg {
                if args.net_clients.is_some() {
                    bail!(
                        "--clients is for the fan-out figure, which --store postgres does not run"
                    );
                }
                let only = net_store::Only::parse(
                    args.net_only.as_deref().unwrap_or("initial,ingest,live"),
                )?;
                net_store::run(dir, sizes, only)?;
            } else {
                net_bench::run(dir, sizes)?;
            }
        }
    }
    println!("load average at end: {}", load_average());
    Ok(())
}
