//! The NDJSON record format of export and import, and their options and reports.
//!
//! One record per line: `{"collection": "...", "fields": {...}, "id": "<uuid>"}` with the
//! value mapping of [`crate::json`]; keys sorted. Import reads at most
//! [`LINE_BYTES_MAX`] bytes per line.
//!
//! This room knows no database: it sits below the handle (whose `export_ndjson` and
//! `import_ndjson` name its types) and below `transfer` (which runs those jobs over
//! transactions), so the modules import each other in no circle.

use blazedb_core::{DocId, Document, Error, Fields, Result};
use serde_json::{Value as Json, json};

use crate::json::{fields_from_json, fields_to_json};

/// Longest accepted import line: the largest document plus room for its encoding.
pub const LINE_BYTES_MAX: usize = 64 * 1024 * 1024;

/// What an export wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExportReport {
    pub collections: u64,
    pub documents: u64,
    pub bytes: u64,
}

/// How to import.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ImportOptions {
    /// Replace documents whose id exists (default: such a record is an error).
    pub replace: bool,
    /// Import the good records and report the bad ones, instead of importing nothing
    /// when any record is bad.
    pub partial: bool,
}

/// What an import did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportReport {
    pub imported: u64,
    /// Bad records skipped (only with [`ImportOptions::partial`]): line and reason.
    pub skipped: Vec<(u64, String)>,
}

pub(crate) fn io(context: &'static str) -> impl FnOnce(std::io::Error) -> Error {
    Error::io(context)
}

/// One record line: document `id` with `fields` in collection `name`, newline included.
pub(crate) fn record_line(name: &str, id: DocId, fields: &Fields) -> Result<Vec<u8>> {
    let line = json!({"collection": name, "id": id.to_string(), "fields": fields_to_json(fields)});
    let mut text = serde_json::to_vec(&line).map_err(|e| Error::InvalidValue {
        reason: e.to_string(),
    })?;
    text.push(b'\n');
    Ok(text)
}

/// Parses one record line into its collection and document.
pub(crate) fn parse_record(line: &[u8]) -> Result<(String, Document)> {
    let v: Json = serde_json::from_slice(line).map_err(|e| Error::InvalidValue {
        reason: format!("not JSON: {e}"),
    })?;
    let Json::Object(m) = &v else {
        return Err(Error::InvalidValue {
            reason: "a record must be a JSON object".into(),
        });
    };
    if let Some(k) = m
        .keys()
        .find(|k| !matches!(k.as_str(), "collection" | "id" | "fields"))
    {
        return Err(Error::InvalidValue {
            reason: format!("unknown record key '{k}'"),
        });
    }
    let collection =
        m.get("collection")
            .and_then(Json::as_str)
            .ok_or_else(|| Error::InvalidValue {
                reason: "missing \"collection\" string".into(),
            })?;
    let id = match m.get("id") {
        Some(Json::String(s)) => s.parse::<DocId>()?,
        Some(_) => {
            return Err(Error::InvalidValue {
                reason: "\"id\" must be a UUID string".into(),
            });
        }
        None => DocId::new(),
    };
    let fields = fields_from_json(m.get("fields").ok_or_else(|| Error::InvalidValue {
        reason: "missing \"fields\" object".into(),
    })?)?;
    Ok((collection.to_owned(), Document { id, fields }))
}
