//! Database-wide commands: info, collections, indexes, export, import, backup, passwd.

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::Path;

use blazedb::sync::SyncNode;
use blazedb::{ImportOptions, IndexInfo, IndexSpec};
use serde_json::{Value as Json, json};

use crate::args::IndexCmd;
use crate::ctx::Ctx;
use crate::exit::{CliError, CliResult, Exit};
use crate::open::{new_secret_from, split_db_path};

fn index_json(i: &IndexInfo) -> Json {
    json!({
        "name": i.spec.name,
        "collection": i.spec.collection,
        "fields": i.spec.fields,
        "unique": i.spec.unique,
        "entries": i.entries,
    })
}

fn index_rows(ctx: &Ctx<'_>) -> CliResult<Vec<Json>> {
    Ok(ctx
        .db
        .begin_read()?
        .indexes()?
        .iter()
        .map(index_json)
        .collect())
}

fn collection_rows(ctx: &Ctx<'_>) -> CliResult<Vec<Json>> {
    let r = ctx.db.begin_read()?;
    r.collections()?
        .into_iter()
        .map(|c| {
            let n = r.count(&c)?;
            Ok(json!({"collection": c, "documents": n}))
        })
        .collect()
}

pub fn info(ctx: &mut Ctx<'_>) -> CliResult {
    ctx.outside_tx("info")?;
    let (role, node) = match SyncNode::stored_role(ctx.db)? {
        Some(role) => {
            let n = SyncNode::enable(ctx.db, role, &blazedb::sync::SyncConfig::default())?;
            (json!(role.to_string()), json!(n.node_id().to_string()))
        }
        None => (Json::Null, Json::Null),
    };
    let indexes = index_rows(ctx)?;
    let collections: serde_json::Map<String, Json> = collection_rows(ctx)?
        .into_iter()
        .filter_map(|r| Some((r["collection"].as_str()?.to_owned(), r["documents"].clone())))
        .collect();
    // What `compact` would give back: the file bytes no table uses.
    let space = ctx.db.space()?;
    ctx.out.value(&json!({
        "path": ctx.db.path().display().to_string(),
        "name": ctx.db.name(),
        "role": role,
        "node": node,
        "collections": collections,
        "indexes": indexes,
        "file_bytes": space.file_bytes,
        "unused_bytes": space.unused_bytes(),
    }))
}

pub fn collections(ctx: &mut Ctx<'_>) -> CliResult {
    ctx.outside_tx("collections")?;
    let rows = collection_rows(ctx)?;
    ctx.out.rows(&rows)
}

pub fn index(ctx: &mut Ctx<'_>, cmd: IndexCmd) -> CliResult {
    ctx.outside_tx("index")?;
    match cmd {
        IndexCmd::Create {
            name,
            collection,
            fields,
            unique,
        } => {
            let refs: Vec<&str> = fields.iter().map(String::as_str).collect();
            let mut spec = IndexSpec::new(&name, &collection, &refs);
            if unique {
                spec = spec.unique();
            }
            let info = ctx.db.create_index(&spec)?;
            ctx.out.value(&index_json(&info))
        }
        IndexCmd::Drop { name } => {
            if !ctx.db.drop_index(&name)? {
                return Err(CliError::new(Exit::NotFound, format!("no index '{name}'"))
                    .hint("`blazedb index list` shows the indexes"));
            }
            ctx.out.value(&json!({"dropped": name}))
        }
        IndexCmd::List => {
            let rows = index_rows(ctx)?;
            ctx.out.rows(&rows)
        }
    }
}

/// A progress bar on stderr when it is a terminal, hidden otherwise (scripts and
/// pipes never see progress output).
pub fn export(ctx: &mut Ctx<'_>, collections: &[String], out: Option<&Path>) -> CliResult {
    ctx.outside_tx("export")?;
    let names: Vec<&str> = collections.iter().map(String::as_str).collect();
    let which = (!names.is_empty()).then_some(names.as_slice());
    let bar = crate::progress::bytes(None, "exporting");
    let report = match out {
        Some(path) => {
            // Only the owner may read the export: it holds the documents in the clear.
            let mut new_file = std::fs::OpenOptions::new();
            new_file.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut new_file, 0o600);
            let f = new_file.open(path).map_err(|e| {
                CliError::from(e).hint(format!("{} must not exist yet", path.display()))
            })?;
            let durable = f.try_clone()?;
            let mut w = bar.bar().wrap_write(BufWriter::new(f));
            let r = ctx.db.export_ndjson(&mut w, which)?;
            w.flush()?;
            durable.sync_all()?;
            r
        }
        None => {
            let mut w = bar
                .bar()
                .wrap_write(BufWriter::new(std::io::stdout().lock()));
            let r = ctx.db.export_ndjson(&mut w, which)?;
            w.flush()?;
            r
        }
    };
    drop(bar);
    let summary = json!({
        "collections": report.collections,
        "documents": report.documents,
        "bytes": report.bytes,
    });
    if out.is_some() {
        ctx.out.value(&summary)
    } else {
        // stdout holds the export itself: the summary goes to stderr, for people.
        eprintln!("{summary}");
        Ok(())
    }
}

/// `import`: NDJSON records, or with `csv_into` CSV rows into that collection
/// (`csv_import.rs`), in one transaction.
pub fn import(
    ctx: &mut Ctx<'_>,
    file: Option<&Path>,
    replace: bool,
    partial: bool,
    csv_into: Option<&str>,
) -> CliResult {
    ctx.outside_tx("import")?;
    let opts = ImportOptions { replace, partial };
    let (source, len): (Box<dyn std::io::Read>, Option<u64>) =
        match file.filter(|f| f.as_os_str() != "-") {
            Some(path) => {
                let f = File::open(path).map_err(|e| CliError {
                    message: format!("cannot open '{}': {e}", path.display()),
                    ..CliError::from(e)
                })?;
                let len = f.metadata().ok().map(|m| m.len());
                (Box::new(f), len)
            }
            None => (Box::new(std::io::stdin().lock()), None),
        };
    let bar = crate::progress::bytes(len, "importing");
    let counted = bar.bar().wrap_read(source);
    let (report, lines) = match csv_into {
        None => (
            ctx.db.import_ndjson(&mut BufReader::new(counted), opts),
            None,
        ),
        Some(collection) => {
            let (rows, lines) = crate::csv_import::CsvAsNdjson::new(counted, collection)
                .map_err(|e| CliError::bad_input(e.to_string()))?;
            (
                ctx.db.import_ndjson(&mut BufReader::new(rows), opts),
                Some(lines),
            )
        }
    };
    drop(bar);
    // Record numbers of the NDJSON the engine read, as lines of the CSV file.
    let line_of = |n: u64| -> u64 {
        lines.as_ref().map_or(n, |l| {
            usize::try_from(n)
                .ok()
                .and_then(|i| l.borrow().get(i.wrapping_sub(1)).copied())
                .unwrap_or(n)
        })
    };
    let report = report.map_err(|e| match e {
        blazedb::Error::BadRecord { line, reason } if lines.is_some() => {
            CliError::bad_input(format!("CSV line {}: {reason}", line_of(line)))
        }
        blazedb::Error::Io { source, .. } if source.kind() == std::io::ErrorKind::InvalidData => {
            CliError::bad_input(source.to_string())
        }
        other => CliError::from(other),
    })?;
    let skipped: Vec<Json> = report
        .skipped
        .iter()
        .map(|(line, reason)| json!({"line": line_of(*line), "reason": reason}))
        .collect();
    ctx.out
        .value(&json!({"imported": report.imported, "skipped": skipped}))
}

pub fn backup(ctx: &mut Ctx<'_>, dest: &Path) -> CliResult {
    ctx.outside_tx("backup")?;
    let (dir, name) = split_db_path(dest)?;
    // The engine creates `dir` and its missing parents (mode 0700) and the copy.
    ctx.db.backup_to(&dir, &name)?;
    ctx.out
        .value(&json!({"backup": dest.display().to_string()}))
}

pub fn passwd(ctx: &mut Ctx<'_>, new_file: Option<&Path>) -> CliResult {
    ctx.outside_tx("passwd")?;
    let new = new_secret_from(
        new_file,
        "BLAZEDB_NEW_PASSWORD",
        "new password: ",
        "new password",
        "--new-password-file",
    )?;
    ctx.db.change_password(new.as_bytes())?;
    ctx.out.value(&json!({"password": "changed"}))
}
