//! Printing results: canonical JSON (one value per line, keys sorted) for scripts, and
//! human tables when the output is a terminal (or `--format table`).

use std::collections::BTreeSet;
use std::io::{IsTerminal, Write};

use blazedb::Document;
use blazedb::json::fields_to_json;
use comfy_table::{ContentArrangement, Table};
use serde_json::{Value as Json, json};

use crate::args::Format;
use crate::exit::{CliError, CliResult, Exit};

/// Where results go and in which form.
pub struct Out {
    table: bool,
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
        let table = match format {
            Format::Json => false,
            Format::Table => true,
            Format::Auto => std::io::stdout().is_terminal(),
        };
        Out { table }
    }

    /// Whether results are human tables.
    #[must_use]
    pub fn is_table(&self) -> bool {
        self.table
    }

    fn line(&self, text: &str) -> CliResult {
        let mut o = std::io::stdout().lock();
        writeln!(o, "{text}").map_err(|e| write_err(&e))
    }

    /// One value: compact JSON, or pretty JSON on a terminal.
    pub fn value(&self, v: &Json) -> CliResult {
        if self.table {
            let text = serde_json::to_string_pretty(v)
                .map_err(|e| CliError::new(Exit::Failure, e.to_string()))?;
            self.line(&text)
        } else {
            self.line(&v.to_string())
        }
    }

    /// A list of objects: NDJSON, or a table with one column per key.
    pub fn rows(&self, rows: &[Json]) -> CliResult {
        if !self.table {
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
        self.table_of(
            keys.into_iter().map(str::to_owned).collect(),
            |k, r| r.get(k).map(cell).unwrap_or_default(),
            rows,
        )
    }

    /// Documents: NDJSON of [`doc_json`], or a table with the id and one column per
    /// top-level field.
    pub fn docs(&self, docs: &[Document]) -> CliResult {
        if !self.table {
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
        self.table_of(
            headers,
            |k, r| {
                if k == "id" {
                    r.get("id").map(cell).unwrap_or_default()
                } else {
                    r.get("fields")
                        .and_then(|f| f.get(k))
                        .map(cell)
                        .unwrap_or_default()
                }
            },
            &rows,
        )
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
