//! `blazedb-server user add|list|revoke`: the named users of a served database, kept in
//! its sealed users file, or with `--store` in the store, one list for every server
//! process (see `blazedb_net::users`). Works whether or not the servers run: a running
//! server rereads the list when it changes, so a new user can connect at once and a
//! revoked one is disconnected within a second.

use std::io::Write as _;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use blazedb::net::Permissions;
use blazedb::net::{UserFile, UsersFile, UsersPlace, users_path};

use crate::config::{Settings, UserAction};
use crate::served::{StoreUsers, open_store};

/// Runs one `user` subcommand.
///
/// # Errors
/// Bad settings, a wrong password, a bad user name, I/O.
pub fn run(settings: &Settings, action: UserAction) -> Result<()> {
    for w in &settings.warnings {
        eprintln!("warning: {w}");
    }
    let password = settings.password()?;
    let at: Arc<dyn UsersPlace> = if let Some(store) = &settings.store {
        let pg = open_store(store, &settings.database, &password, false).map_err(|e| {
            if matches!(
                e.downcast_ref::<blazedb::Error>(),
                Some(blazedb::Error::DatabaseNotFound { .. })
            ) {
                anyhow::anyhow!(
                    "no database {:?} in the store: start a server once to create it",
                    settings.database
                )
            } else {
                e
            }
        })?;
        Arc::new(StoreUsers(pg))
    } else {
        let db_dir = blazedb::database_path(&settings.data_dir, &settings.database);
        if !db_dir.is_dir() {
            bail!(
                "no database {:?} in {}: start the server once to create it",
                settings.database,
                settings.data_dir.display()
            );
        }
        Arc::new(UsersFile::new(&users_path(&db_dir)))
    };
    let mut file = UserFile::open_or_new_at(at, password.as_bytes(), blazedb::KdfParams::DEFAULT)?;
    match action {
        UserAction::Add {
            name,
            read_only,
            collections,
        } => {
            let perms = Permissions {
                write: !read_only,
                collections,
            };
            let token = file.modify(|f| f.add(&name, perms.clone()))?;
            eprintln!(
                "added user {name:?}; its token follows on stdout and is shown only this once \
                 (clients: blazedb sync --user {name} with the token in --token-file or \
                 BLAZEDB_AUTH_TOKEN)"
            );
            let mut out = std::io::stdout();
            writeln!(out, "{}", token.as_str()).context("printing the token")?;
        }
        UserAction::List => {
            let mut out = std::io::stdout();
            for u in file.list() {
                let collections = u
                    .perms
                    .collections
                    .map_or_else(|| "*".to_owned(), |c| c.join(","));
                writeln!(
                    out,
                    "{}\t{}\tcollections={collections}",
                    u.name,
                    if u.perms.write {
                        "read-write"
                    } else {
                        "read-only"
                    }
                )?;
            }
        }
        UserAction::Revoke { name } => {
            if !file.modify(|f| Ok(f.revoke(&name)))? {
                bail!("no user {name:?}");
            }
            eprintln!("revoked user {name:?}: its sessions end within a second");
        }
    }
    Ok(())
}
