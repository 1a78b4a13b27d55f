//! The README's first command: shows the encrypted embedded database at work.
//!
//! `cargo run --release -p blazedb --example quickstart`
//!
//! Creates a database in a temporary directory, writes documents (untyped and typed),
//! commits a multi-collection transaction, proves the file holds no plaintext, that a wrong password is a typed error that
//! modifies nothing, and makes an online backup.

use blazedb::{Database, DocId, Document, Error, KdfParams, Patch};

#[derive(serde::Serialize, serde::Deserialize, Debug)]
struct Bug {
    title: String,
    severity: u8,
    tags: Vec<String>,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let password = "correct horse battery staple";
    let t0 = std::time::Instant::now();
    let db = Database::builder()
        .kdf(KdfParams::DEFAULT)
        .open(dir.path(), "tracker", password)?;
    println!(
        "created {} (Argon2id {:?}) in {:.0?}",
        db.path().display(),
        db.kdf_params(),
        t0.elapsed()
    );

    // Untyped documents, patch, typed documents.
    let notes = db.collection("notes");
    let note = notes.insert(
        Document::new()
            .with("title", "SECRET-launch-plan")
            .with("done", false),
    )?;
    notes.patch(note, &Patch::new().set("done", true))?;
    let bugs = db.typed::<Bug>("bugs");
    let bug = bugs.insert(&Bug {
        title: "crash on save".into(),
        severity: 2,
        tags: vec!["ui".into()],
    })?;
    println!("note  {note}: {:?}", notes.get(note)?.map(|d| d.fields));
    println!("bug   {bug}: {:?}", bugs.get(bug)?);

    // A transaction across collections: all or nothing.
    let mut tx = db.begin_write()?;
    tx.delete("bugs", bug)?;
    tx.insert(
        "log",
        Document::new()
            .with("event", "bug closed")
            .with("bug", bug.to_string()),
    )?;
    tx.commit()?;
    println!(
        "after transaction: {} bugs, {} log entries",
        db.collection("bugs").count()?,
        db.collection("log").count()?
    );

    // Typed errors, nothing modified.
    match notes.delete(DocId::new()) {
        Err(e @ Error::NotFound { .. }) => println!("delete of a missing id: {e}"),
        other => return Err(format!("expected NotFound, got {other:?}").into()),
    }

    // Backup while open, then close.
    db.backup_to(dir.path(), "tracker-backup")?;
    let path = db.path().to_owned();
    drop(db);

    // No plaintext on disk.
    let bytes = std::fs::read(path.join("data.redb"))?;
    let leaked = bytes.windows(18).any(|w| w == b"SECRET-launch-plan");
    println!(
        "plaintext 'SECRET-launch-plan' in the data file: {}",
        if leaked { "FOUND (bug!)" } else { "no" }
    );
    if leaked {
        return Err("plaintext found on disk".into());
    }

    // Wrong password: typed error.
    match Database::open(dir.path(), "tracker", "wrong password") {
        Err(e @ Error::WrongPassword) => println!("open with a wrong password: {e}"),
        other => return Err(format!("expected WrongPassword, got {other:?}").into()),
    }

    // The backup opens with the same password and holds the same data.
    let backup = Database::open(dir.path(), "tracker-backup", password)?;
    println!(
        "backup holds {:?}",
        backup.collection("notes").get(note)?.map(|d| d.fields)
    );
    println!("ok");
    Ok(())
}
