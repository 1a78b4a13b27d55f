//! Printing results: canonical JSON (one value per line, keys sorted) for scripts,
//! human tables when the output is a terminal (or `--format table`), and CSV with a
//! header row (`--format csv`). Every command's result has one shape, written in
//! each form: an object is a row (a two-column table of its keys on a terminal), a
//! list of objects is rows, documents are rows of their id and top-level fields.

use std::collections::BTreeSet;
use std::io::{IsTerminal, Write};

use blazedb::Document;
use blazedb::json::fields_to_json;
use comfy_table::{ContentArrangement, Table};
use serde_json::{Value as Json, json};

use crate::args::Format;
use crate::exit::{CliError, CliResult, Exit};

/// The form results are written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Json,
    Table,
    Csv,
}

/// Where results go and in which form.
pub struct Out {
    mode: Mode,
}

/// Microseconds since the Unix epoch as an ISO 8601 (RFC 3339) UTC time, e.g.
/// `2026-12-05T05:30:00.123456Z`; `null` out of range.
#[must_use]
pub fn iso_time(us: i128) -> Json {
    time::OffsetDateTime::from_unix_timestamp_nanos(us.saturating_mul(1_000))
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .map_or(Json::Null, Json::String)
}

/// A document as the CLI prints it: `{"fields": {...}, "id": "<uuid>"}`.
#[must_use]
pub fn doc_json(d: &Document) -> Json {
    json!({"id": d.id.to_string(), "fields": fields_to_json(&d.fields)})
}

fn cell(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        Json::Null => String::new(),
        other => other.to_string(),
    }
}

fn write_err(e: &std::io::Error) -> CliError {
    CliError::new(Exit::Failure, format!("writing the output: {e}"))
}

impl Out {
    #[must_use]
    pub fn new(format: Format) -> Out {
        let mode = match format {
            Format::Json => Mode::Json,
            Format::Table => Mode::Table,
            Format::Csv => Mode::Csv,
            Format::Auto if std::io::stdout().is_terminal() => Mode::Table,
            Format::Auto => Mode::Json,
        };
        Out { mode }
    }

    /// Whether results are human tables.
    #[must_use]
    pub fn is_table(&self) -> bool {
        self.mode == Mode::Table
    }

    /// Whether results are rows (a table or CSV), not JSON.
    #[must_use]
    pub fn is_rows(&self) -> bool {
        self.mode != Mode::Json
    }

    /// `headers` and one line per row (each cell by `cell_of`) as CSV.
    fn csv_of(
        &self,
        headers: &[String],
        cell_of: impl Fn(&str, &Json) -> String,
        rows: &[Json],
    ) -> CliResult {
        let mut w = csv::Writer::from_writer(std::io::stdout().lock());
        let fail = |e: csv::Error| CliError::new(Exit::Failure, format!("writing the output: {e}"));
        w.write_record(headers).map_err(fail)?;
        for r in rows {
            w.write_record(headers.iter().map(|h| cell_of(h, r)))
                .map_err(fail)?;
        }
        w.flush().map_err(|e| write_err(&e))
    }

    fn line(&self, text: &str) -> CliResult {
        let mut o = std::io::stdout().lock();
        writeln!(o, "{text}").map_err(|e| write_err(&e))
    }

    /// One value: compact JSON; on a terminal an object is a table of its keys and
    /// values; in CSV an object is a header and one row.
    pub fn value(&self, v: &Json) -> CliResult {
        match (self.mode, v.as_object()) {
            (Mode::Json, _) => self.line(&v.to_string()),
            (Mode::Table, Some(m)) => {
                let rows: Vec<Json> = m
                    .iter()
                    .map(|(k, v)| json!({"key": k, "value": v}))
                    .collect();
                self.table_of(
                    vec!["key".to_owned(), "value".to_owned()],
                    |k, r| r.get(k).map(cell).unwrap_or_default(),
                    &rows,
                )
            }
            (Mode::Csv, Some(_)) => self.rows(std::slice::from_ref(v)),
            (Mode::Table | Mode::Csv, None) => self.line(&cell(v)),
        }
    }

    /// A list of objects: NDJSON, or a table with one column per key.
    pub fn rows(&self, rows: &[Json]) -> CliResult {
        if self.mode == Mode::Json {
            let mut o = std::io::stdout().lock();
            for r in rows {
                writeln!(o, "{r}").map_err(|e| write_err(&e))?;
            }
            return Ok(());
        }
        let keys: BTreeSet<&str> = rows
            .iter()
            .filter_map(Json::as_object)
            .flat_map(|m| m.keys().map(String::as_str))
            .collect();
        let headers: Vec<String> = keys.into_iter().map(str::to_owned).collect();
        let cell_of = |k: &str, r: &Json| r.get(k).map(cell).unwrap_or_default();
        if self.mode == Mode::Csv {
            return self.csv_of(&headers, cell_of, rows);
        }
        self.table_of(headers, cell_of, rows)
    }

    /// Documents: NDJSON of [`doc_json`], or a table with the id and one column per
    /// top-level field.
    pub fn docs(&self, docs: &[Document]) -> CliResult {
        if self.mode == Mode::Json {
            let rows: Vec<Json> = docs.iter().map(doc_json).collect();
            return self.rows(&rows);
        }
        let fields: BTreeSet<&str> = docs
            .iter()
            .flat_map(|d| d.fields.keys().map(String::as_str))
            .collect();
        let mut headers = vec!["id".to_owned()];
        headers.extend(fields.into_iter().map(str::to_owned));
        let rows: Vec<Json> = docs.iter().map(doc_json).collect();
        let cell_of = |k: &str, r: &Json| {
            if k == "id" {
                r.get("id").map(cell).unwrap_or_default()
            } else {
                r.get("fields")
                    .and_then(|f| f.get(k))
                    .map(cell)
                    .unwrap_or_default()
            }
        };
        if self.mode == Mode::Csv {
            return self.csv_of(&headers, cell_of, &rows);
        }
        self.table_of(headers, cell_of, &rows)
    }

    fn table_of(
        &self,
        headers: Vec<String>,
        cell_of: impl Fn(&str, &Json) -> String,
        rows: &[Json],
    ) -> CliResult {
        if rows.is_empty() {
            return self.line("(none)");
        }
        let mut t = Table::new();
        t.set_content_arrangement(ContentArrangement::Dynamic);
        t.set_header(headers.clone());
        for r in rows {
            t.add_row(headers.iter().map(|h| cell_of(h, r)).collect::<Vec<_>>());
        }
        self.line(&t.to_string())
    }
}
