//! Dispatch: a parsed [`Cmd`] handed to the module that implements it. Kept apart
//! from [`Ctx`] (the state commands run against) so that the command modules, which
//! take a `Ctx`, and the dispatcher, which names them, do not import each other.

use crate::args::Cmd;
use crate::ctx::Ctx;
use crate::exit::{CliError, CliResult, Exit};
use crate::{admin, documents, syncing};

/// Runs one command.
///
/// # Errors
/// The command's error, typed by its exit code.
pub fn run(ctx: &mut Ctx<'_>, cmd: Cmd) -> CliResult {
    match cmd {
        Cmd::Create { .. } => Err(CliError::new(
            Exit::Conflict,
            format!("{} is already open", ctx.db.path().display()),
        )),
        Cmd::Info => admin::info(ctx),
        Cmd::Collections => admin::collections(ctx),
        Cmd::Insert {
            collection,
            json,
            ids,
        } => documents::insert(ctx, &collection, &json, ids),
        Cmd::Put {
            collection,
            id,
            json,
        } => documents::put(ctx, &collection, &id, &json),
        Cmd::Get {
            collection,
            id,
            meta,
        } => documents::get(ctx, &collection, &id, meta),
        Cmd::Patch {
            collection,
            id,
            json,
            unset,
        } => documents::patch(ctx, &collection, &id, &json, &unset),
        Cmd::Delete { collection, id } => documents::delete(ctx, &collection, &id),
        Cmd::Drop { collection } => documents::drop_collection(ctx, &collection),
        Cmd::Query(q) => documents::query(ctx, &q),
        Cmd::Count(q) => documents::count(ctx, &q),
        Cmd::Explain(q) => documents::explain(ctx, &q),
        Cmd::Index(i) => admin::index(ctx, i),
        Cmd::Export { collections, out } => admin::export(ctx, &collections, out.as_deref()),
        Cmd::Import {
            file,
            replace,
            partial,
            csv: _,
            collection,
        } => admin::import(
            ctx,
            file.as_deref(),
            replace,
            partial,
            collection.as_deref(),
        ),
        Cmd::Backup { dest } => admin::backup(ctx, &dest),
        // Compaction needs the only handle on the database; the shell holds one for
        // its whole session (a one-shot `blazedb compact` is run in `main`).
        Cmd::Compact => Err(CliError::new(
            Exit::Usage,
            "compact cannot run inside the shell, which holds the database open",
        )
        .hint("quit the shell and run `blazedb compact`")),
        Cmd::Passwd { new_password_file } => admin::passwd(ctx, new_password_file.as_deref()),
        Cmd::Sync(a) => syncing::sync(ctx, &a),
        Cmd::Status => syncing::status(ctx),
        Cmd::Conflicts { after, limit } => syncing::conflicts(ctx, after, limit),
    }
}
