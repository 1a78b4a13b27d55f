//! The command line (clap). The REPL parses its lines with the same [`Cmd`], so both
//! speak one language.

use std::path::PathBuf;

use blazedb::OpenMode;
use clap::{Args as ClapArgs, Parser, Subcommand, ValueEnum};

/// `--version`: the release, the commit built from, and what is built in.
static LONG_VERSION: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "{} (commit {}; built in: sync, network sync over TCP/TLS (rustls, ring) and Unix \
         sockets, LZ4 record compression)",
        env!("CARGO_PKG_VERSION"),
        blazedb_cmd::COMMIT
    )
});

/// BlazeDB: an embedded, password-encrypted document database with sync.
///
/// Run without a command (`blazedb --db PATH`) to open the interactive REPL.
/// Exit codes: 0 ok, 1 failure, 2 usage, 3 not found, 4 wrong password or refused
/// credentials, 5 database in use, 6 conflict (id exists, unique index, index name
/// taken, sync role), 7 bad input, 8 sync failed, 9 damaged data.
#[derive(Debug, Parser)]
#[command(name = "blazedb", version, long_version = LONG_VERSION.as_str(), propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub cmd: Option<TopCmd>,
}

/// Options every command takes.
#[derive(Clone, Debug, ClapArgs)]
pub struct Global {
    /// The database: a directory and a name, `DIR/NAME` (the server's `--data-dir DIR
    /// --database NAME` is `--db DIR/NAME`).
    #[arg(long, short = 'd', env = "BLAZEDB_DB", global = true)]
    pub db: Option<PathBuf>,
    /// Read the password from this file (first line). Otherwise BLAZEDB_PASSWORD,
    /// otherwise a prompt on the terminal.
    #[arg(long, global = true, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// Output: JSON (NDJSON for lists), human tables, CSV, or tables only on a terminal.
    #[arg(long, value_enum, default_value_t = Format::Auto, global = true)]
    pub format: Format,
    /// Log events (on stderr) as text or JSON lines; the filter is BLAZEDB_LOG
    /// (default `warn`; e.g. `info`, `debug,rustyline=warn`).
    #[arg(long, value_enum, env = "BLAZEDB_LOG_FORMAT", default_value_t = blazedb_cmd::log::LogFormat::Text, global = true)]
    pub log_format: blazedb_cmd::log::LogFormat,
    /// Use a fast, weak key derivation for a NEW database (tests and demos only: the
    /// password is then easy to brute-force).
    #[arg(long, global = true, hide = true)]
    pub insecure_fast_kdf: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Auto,
    Json,
    Table,
    /// Comma-separated values with a header row (for spreadsheets): text as is,
    /// other values as JSON.
    Csv,
}

/// The commands of the command line: the database commands plus those that only make
/// sense outside the REPL.
#[derive(Debug, Subcommand)]
pub enum TopCmd {
    #[command(flatten)]
    Db(Cmd),
    /// Open the interactive REPL on the database (the default without a command).
    Repl,
    /// Start a real sync server and clients in a temporary directory, play the conflict
    /// situations, and print who holds what and who won each conflict and why.
    Demo(DemoArgs),
    /// Print a shell completion script: `blazedb completions bash > /etc/bash_completion.d/blazedb`
    /// (also zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
    /// Print the manual page (roff): `blazedb man > blazedb.1; man ./blazedb.1`.
    Man,
}

#[derive(Clone, Debug, ClapArgs)]
pub struct DemoArgs {
    /// Keep the demo's databases in this directory instead of a temporary one.
    #[arg(long, value_name = "DIR")]
    pub keep: Option<PathBuf>,
}

/// Roles a database can take for sync.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RoleArg {
    Client,
    Server,
}

/// The database commands (command line and REPL).
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Create a new database (fails if one exists); `--role` keeps its sync role.
    Create {
        #[arg(long, value_enum)]
        role: Option<RoleArg>,
    },
    /// Path, sync role and node, collections with counts, indexes.
    Info,
    /// Collections and their document counts.
    Collections,
    /// Insert a new document (fields as a JSON object) and print its id. `-` reads
    /// NDJSON from stdin, one document per line, in one transaction, and prints how
    /// many were inserted (with progress on a terminal); `--ids` prints each id instead.
    Insert {
        collection: String,
        json: String,
        /// With `-`: print every new id (NDJSON, one per document, in input order).
        #[arg(long)]
        ids: bool,
    },
    /// Create or replace the document with this id.
    Put {
        collection: String,
        id: String,
        json: String,
    },
    /// Print a document; `--meta` adds each field's sync stamp and origin.
    Get {
        collection: String,
        id: String,
        #[arg(long)]
        meta: bool,
    },
    /// Set fields (a JSON object) and remove fields (`--unset NAME`) of a document.
    Patch {
        collection: String,
        id: String,
        /// Fields to set, as a JSON object.
        #[arg(default_value = "{}")]
        json: String,
        #[arg(long, value_name = "FIELD")]
        unset: Vec<String>,
    },
    /// Delete a document.
    Delete { collection: String, id: String },
    /// Drop a collection: delete every document in it (in one transaction; with sync,
    /// each deletion syncs like any other) and forget its name. Its indexes stay,
    /// empty, until `index drop`.
    Drop { collection: String },
    /// Documents matching filters, as NDJSON (a table on a terminal).
    Query(QueryArgs),
    /// How many documents match.
    Count(QueryArgs),
    /// The plan a query would use.
    Explain(QueryArgs),
    /// Secondary indexes.
    #[command(subcommand)]
    Index(IndexCmd),
    /// Write documents as NDJSON (sorted, canonical: equal replicas give equal bytes).
    Export {
        /// Collections to export (all when none).
        collections: Vec<String>,
        /// Write here instead of stdout.
        #[arg(long, short = 'o', value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Read NDJSON records (as `export` writes them) in one transaction.
    Import {
        /// The file (stdin when absent or `-`).
        file: Option<PathBuf>,
        /// Replace documents whose id exists.
        #[arg(long)]
        replace: bool,
        /// Import the good records and report the bad ones.
        #[arg(long)]
        partial: bool,
        /// The file is CSV with a header row (into `--collection`): a column `id` is
        /// the document id, every other column a field; a cell is JSON when it parses
        /// as JSON (`12`, `true`, `"007"`), else text; an empty cell leaves the field out.
        #[arg(long, requires = "collection")]
        csv: bool,
        /// The collection CSV rows go into.
        #[arg(long, value_name = "NAME", requires = "csv")]
        collection: Option<String>,
    },
    /// Copy the database, consistent and encrypted as it is, to DIR/NAME.
    Backup {
        /// Destination `DIR/NAME` (must not exist).
        dest: PathBuf,
    },
    /// Rewrite the data file without unused space (freed by deletes, replaces and
    /// imports); prints its size before and after. Needs the database to itself. Also
    /// moves a database made by an earlier release to the current format.
    Compact,
    /// Change the password (new one from --new-password-file, BLAZEDB_NEW_PASSWORD or
    /// a prompt).
    Passwd {
        #[arg(long, value_name = "FILE")]
        new_password_file: Option<PathBuf>,
    },
    /// Sync with a server (once, or continuously with --watch), or with another local
    /// database (--peer).
    Sync(Box<SyncArgs>),
    /// This database's sync state: role, node, pending writes, the servers it syncs with.
    Status,
    /// The conflict log: writes made here that lost, what won, and why.
    Conflicts {
        /// Entries after this position.
        #[arg(long, default_value_t = 0)]
        after: u64,
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
}

impl Cmd {
    /// How the command opens its database: read-only when it only reads, so it never
    /// modifies a file of the database and can run beside other readers (see
    /// [`OpenMode::ReadOnly`]). `get --meta` is read-only too; it reopens read-write only
    /// when local writes wait for their sync stamps (`documents::needs_stamping`).
    #[must_use]
    pub fn open_mode(&self) -> OpenMode {
        match self {
            Cmd::Info
            | Cmd::Collections
            | Cmd::Get { .. }
            | Cmd::Query(_)
            | Cmd::Count(_)
            | Cmd::Explain(_)
            | Cmd::Index(IndexCmd::List)
            | Cmd::Export { .. }
            | Cmd::Backup { .. }
            | Cmd::Status
            | Cmd::Conflicts { .. } => OpenMode::ReadOnly,
            Cmd::Create { .. }
            | Cmd::Insert { .. }
            | Cmd::Put { .. }
            | Cmd::Patch { .. }
            | Cmd::Delete { .. }
            | Cmd::Drop { .. }
            | Cmd::Index(IndexCmd::Create { .. } | IndexCmd::Drop { .. })
            | Cmd::Import { .. }
            | Cmd::Compact
            | Cmd::Passwd { .. }
            | Cmd::Sync(_) => OpenMode::OpenExisting,
        }
    }
}

#[derive(Clone, Debug, ClapArgs)]
pub struct QueryArgs {
    pub collection: String,
    /// A condition, repeatable (all must hold): `field=value`, `!=`, `<`, `<=`, `>`,
    /// `>=`, `field~value` or `field contains value` (array or string contains),
    /// `field?` or `field exists`, `!field?`, `field in [v1,v2]`, combined with `and`,
    /// `or`, `not` and parentheses: `'n=1 or (n>5 and not done=true)'`. Values are JSON
    /// (`age>=30`, `done=true`, `title="a b"`), or a word of text (`status=open`). A
    /// condition that does not parse exits 7 naming the column.
    #[arg(long = "where", short = 'w', value_name = "COND")]
    pub conditions: Vec<String>,
    /// Print only these fields of each document (and its id): `--select title,due` or
    /// repeated; a dotted path (`address.city`) keeps that part of a map.
    #[arg(long, value_delimiter = ',', value_name = "FIELDS")]
    pub select: Vec<String>,
    /// Sort by a field, `field`, `field:asc` or `field:desc` (any case); repeatable.
    #[arg(long, value_name = "FIELD[:desc]")]
    pub sort: Vec<String>,
    #[arg(long)]
    pub limit: Option<usize>,
    #[arg(long)]
    pub offset: Option<usize>,
}

#[derive(Debug, Subcommand)]
pub enum IndexCmd {
    /// Create an index on fields of a collection (built from the existing documents).
    Create {
        name: String,
        collection: String,
        #[arg(required = true)]
        fields: Vec<String>,
        #[arg(long)]
        unique: bool,
    },
    /// Drop an index.
    Drop { name: String },
    /// List indexes.
    List,
}

#[derive(Clone, Debug, ClapArgs)]
pub struct SyncArgs {
    /// The server, `HOST:PORT`. Remembered after a successful sync, with
    /// `--remote-db`, how the server was trusted and `--user` (never a token): later,
    /// `blazedb sync` alone syncs with it again.
    #[arg(long, value_name = "HOST:PORT", conflicts_with = "peer")]
    pub server: Option<String>,
    /// The database name the server serves (default: the remembered one, else `main`).
    #[arg(long, value_name = "NAME")]
    pub remote_db: Option<String>,
    /// The server certificate's SHA-256 fingerprint (as blazedb-server prints it).
    #[arg(long, value_name = "SHA256")]
    pub fingerprint: Option<String>,
    /// Trust server certificates signed by these CA roots (PEM) instead of a pin.
    #[arg(long, value_name = "FILE", conflicts_with = "fingerprint")]
    pub ca: Option<PathBuf>,
    /// Plain TCP without TLS (loopback tests only: anyone on the path can read it).
    #[arg(long)]
    pub plain_tcp_insecure: bool,
    /// The auth token from this file (otherwise BLAZEDB_AUTH_TOKEN); with --user, that
    /// user's token.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Sync as this named user (its token from --token-file or BLAZEDB_AUTH_TOKEN;
    /// otherwise BLAZEDB_USER names the user).
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// The server-to-server token from this file (otherwise BLAZEDB_PEER_TOKEN): for a
    /// server-role database syncing with another server as its peer.
    #[arg(long, value_name = "FILE")]
    pub peer_token_file: Option<PathBuf>,
    /// The shared secret from this file (otherwise BLAZEDB_SHARED_SECRET).
    #[arg(long, value_name = "FILE")]
    pub secret_file: Option<PathBuf>,
    /// The sync role; kept with the database the first time (default: the kept role,
    /// else client).
    #[arg(long, value_enum)]
    pub role: Option<RoleArg>,
    /// Keep syncing (live) until interrupted, printing a line each time the status
    /// changes (on a terminal: the time and a summary; otherwise the status as JSON
    /// with its `time`). With a server only: `--peer` syncs once.
    #[arg(long, conflicts_with = "peer")]
    pub watch: bool,
    /// Give up a one-shot sync after this many seconds.
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    pub timeout: u64,
    /// Sync directly with another local database `DIR/NAME` (peer to peer).
    #[arg(long, value_name = "DIR/NAME")]
    pub peer: Option<PathBuf>,
    /// The peer database's password file (otherwise BLAZEDB_PEER_PASSWORD, otherwise
    /// this database's password).
    #[arg(long, value_name = "FILE", requires = "peer")]
    pub peer_password_file: Option<PathBuf>,
}
