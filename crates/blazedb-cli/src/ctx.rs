//! The state a command runs against: the open database, the output, and (in the REPL)
//! an open transaction. Dispatches a [`Cmd`] to the module that implements it.

use blazedb::{Database, WriteTxn};

use crate::args::{Cmd, Global};
use crate::exit::{CliError, CliResult, Exit};
use crate::output::Out;
use crate::{admin, docs, syncing};

pub struct Ctx<'db> {
    pub db: &'db Database,
    pub global: Global,
    pub out: Out,
    /// The REPL's open transaction (`begin` .. `commit` / `rollback`): document writes
    /// and gets go through it; nothing is visible to others until it commits.
    pub tx: Option<WriteTxn<'db>>,
}

impl<'db> Ctx<'db> {
    #[must_use]
    pub fn new(db: &'db Database, global: Global) -> Ctx<'db> {
        let out = Out::new(global.format);
        Ctx {
            db,
            global,
            out,
            tx: None,
        }
    }

    /// Refuses a command that cannot run inside a transaction.
    ///
    /// # Errors
    /// [`Exit::Usage`] while a transaction is open.
    pub fn outside_tx(&self, what: &str) -> CliResult {
        if self.tx.is_some() {
            return Err(CliError::new(
                Exit::Usage,
                format!("{what} cannot run inside a transaction"),
            )
            .hint("`commit` or `rollback` first"));
        }
        Ok(())
    }

    /// Runs one command.
    ///
    /// # Errors
    /// The command's error, typed by its exit code.
    pub fn run(&mut self, cmd: Cmd) -> CliResult {
        match cmd {
            Cmd::Create { .. } => Err(CliError::new(
                Exit::Conflict,
                format!("{} is already open", self.db.path().display()),
            )),
            Cmd::Info => admin::info(self),
            Cmd::Collections => admin::collections(self),
            Cmd::Insert { collection, json } => docs::insert(self, &collection, &json),
            Cmd::Put {
                collection,
                id,
                json,
            } => docs::put(self, &collection, &id, &json),
            Cmd::Get {
                collection,
                id,
                meta,
            } => docs::get(self, &collection, &id, meta),
            Cmd::Patch {
                collection,
                id,
                json,
                unset,
            } => docs::patch(self, &collection, &id, &json, &unset),
            Cmd::Delete { collection, id } => docs::delete(self, &collection, &id),
            Cmd::Query(q) => docs::query(self, &q),
            Cmd::Count(q) => docs::count(self, &q),
            Cmd::Explain(q) => docs::explain(self, &q),
            Cmd::Index(i) => admin::index(self, i),
            Cmd::Export { collections, out } => admin::export(self, &collections, out.as_deref()),
            Cmd::Import {
                file,
                replace,
                partial,
            } => admin::import(self, file.as_deref(), replace, partial),
            Cmd::Backup { dest } => admin::backup(self, &dest),
            Cmd::Passwd { new_password_file } => admin::passwd(self, new_password_file.as_deref()),
            Cmd::Sync(a) => syncing::sync(self, &a),
            Cmd::Status => syncing::status(self),
            Cmd::Conflicts { after, limit } => syncing::conflicts(self, after, limit),
        }
    }
}
