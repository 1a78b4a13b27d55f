//! NDJSON export and import.
//!
//! One record per line: `{"collection": "...", "fields": {...}, "id": "<uuid>"}` with the
//! value mapping of [`crate::json`]. Export is deterministic: collections by name,
//! documents by id, keys sorted, so two replicas with equal contents export equal bytes.
//! Memory stays bounded: export holds only the ids of one collection (16 bytes each);
//! import reads one line at a time (at most [`LINE_BYTES_MAX`]).
//!
//! This room holds the two jobs, [`Database::export_ndjson`] and
//! [`Database::import_ndjson`], run over transactions; the record format, the options
//! and the reports are in `ndjson`, below the handle, so the handle's signatures name
//! nothing of this module and the modules import each other in no circle.

use std::io::{BufRead, Read, Write};
use std::ops::ControlFlow;

use blazedb_core::{DocId, Error, Result};

use crate::handle::Database;
pub use crate::ndjson::{ExportReport, ImportOptions, ImportReport, LINE_BYTES_MAX};
use crate::ndjson::{io, parse_record, record_line};

impl Database {
    /// Writes `collections` (all when `None`) as NDJSON from one consistent snapshot.
    ///
    ///
    /// ```
    /// # fn main() -> blazedb::Result<()> {
    /// use blazedb::{Database, Document, ImportOptions, KdfParams};
    ///
    /// let dir = tempfile::tempdir().expect("tempdir");
    /// let db = Database::builder()
    ///     .kdf(KdfParams::INSECURE_FAST)
    ///     .open(dir.path(), "notes", "password")?;
    /// db.collection("todo").insert(Document::new().with("title", "x"))?;
    /// let mut ndjson = Vec::new();
    /// let report = db.export_ndjson(&mut ndjson, None)?;
    /// assert_eq!(report.documents, 1);
    /// // Into another database: the same documents, ids included.
    /// let copy = Database::builder()
    ///     .kdf(KdfParams::INSECURE_FAST)
    ///     .open(dir.path(), "copy", "password")?;
    /// copy.import_ndjson(&mut ndjson.as_slice(), ImportOptions::default())?;
    /// assert_eq!(copy.collection("todo").count()?, 1);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// Name errors, corruption, and I/O errors of `out`.
    pub fn export_ndjson(
        &self,
        out: &mut dyn Write,
        collections: Option<&[&str]>,
    ) -> Result<ExportReport> {
        let r = self.begin_read()?;
        let names: Vec<String> = match collections {
            Some(list) => list.iter().map(|s| (*s).to_owned()).collect(),
            None => r.collections()?,
        };
        let mut report = ExportReport::default();
        for name in &names {
            let mut ids: Vec<DocId> = Vec::new();
            r.scan(name, |d| {
                ids.push(d.id);
                Ok(ControlFlow::Continue(()))
            })?;
            ids.sort_unstable();
            for id in ids {
                let doc = r.get(name, id)?.ok_or_else(|| {
                    Error::corrupt_record("docs", "document vanished from a snapshot")
                })?;
                let text = record_line(name, id, &doc.fields)?;
                out.write_all(&text).map_err(io("writing the export"))?;
                report.documents += 1;
                report.bytes += text.len() as u64;
            }
            report.collections += 1;
        }
        out.flush().map_err(io("writing the export"))?;
        Ok(report)
    }

    /// Imports NDJSON records in one transaction.
    ///
    /// # Errors
    /// [`Error::BadRecord`] naming the first bad line (nothing imported) unless
    /// `opts.partial`; I/O errors of `input`; storage errors.
    pub fn import_ndjson(
        &self,
        input: &mut dyn BufRead,
        opts: ImportOptions,
    ) -> Result<ImportReport> {
        let mut tx = self.begin_write()?;
        let mut report = ImportReport::default();
        let mut line_no = 0u64;
        let mut buf = Vec::new();
        loop {
            buf.clear();
            let n = input
                .take(LINE_BYTES_MAX as u64 + 1)
                .read_until(b'\n', &mut buf)
                .map_err(io("reading the import"))?;
            if n == 0 {
                break;
            }
            line_no += 1;
            if buf.len() > LINE_BYTES_MAX {
                return Err(Error::BadRecord {
                    line: line_no,
                    reason: format!("line longer than {LINE_BYTES_MAX} bytes"),
                });
            }
            if buf.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let outcome = parse_record(&buf).and_then(|(collection, doc)| {
                if opts.replace {
                    tx.put(&collection, doc).map(drop)
                } else {
                    tx.insert(&collection, doc).map(drop)
                }
            });
            match outcome {
                Ok(()) => report.imported += 1,
                // A storage failure poisons the transaction: never "skip" those.
                Err(e @ (Error::Failed { .. } | Error::Io { .. } | Error::Corruption { .. })) => {
                    return Err(e);
                }
                Err(e) if opts.partial => report.skipped.push((line_no, e.to_string())),
                // A record that conflicts with what is stored is not malformed: it
                // keeps its kind (the error names the document or index at fault).
                Err(e @ (Error::AlreadyExists { .. } | Error::UniqueViolation { .. })) => {
                    return Err(e);
                }
                Err(e) => {
                    return Err(Error::BadRecord {
                        line: line_no,
                        reason: e.to_string(),
                    });
                }
            }
        }
        tx.commit()?;
        Ok(report)
    }
}
