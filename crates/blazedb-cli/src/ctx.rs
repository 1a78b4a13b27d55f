//! The state a command runs against: the open database, the output, and (in the REPL)
//! an open transaction. Commands reach their implementation through `dispatch.rs`,
//! which imports this module (never the other way round).

use blazedb::{Database, WriteTxn};

use crate::args::Global;
use crate::exit::{CliError, CliResult, Exit};
use crate::output::Out;

pub struct Ctx<'db> {
    pub db: &'db Database,
    pub global: Global,
    pub out: Out,
    /// The REPL's open transaction (`begin` .. `commit` / `rollback`): document writes
    /// and gets go through it; nothing is visible to others until it commits.
    pub tx: Option<WriteTxn<'db>>,
    /// The REPL's background sync (`sync start` .. `sync stop`).
    pub live: Option<crate::live_sync::LiveSync>,
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
            live: None,
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
}
