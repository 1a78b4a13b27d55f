//! `import --csv --collection NAME`: rows of a CSV file (with a header row) as documents,
//! handed to the engine's import as the NDJSON records it reads, one per row, so an
//! import keeps its one transaction, `--replace` and `--partial`.
//!
//! A column named `id` is the document's id; every other column is a field. A cell is
//! JSON when it parses as JSON (`12`, `true`, `null`, `[1, 2]`, `"007"` for text that
//! looks like a number), else text; an empty cell leaves the field out.

use std::cell::RefCell;
use std::io::{self, Read};
use std::rc::Rc;

use serde_json::{Map, Value as Json};

/// The CSV file line each NDJSON record came from (index = record number − 1), for
/// error messages that point into the CSV file.
pub type Lines = Rc<RefCell<Vec<u64>>>;

/// A CSV source read as NDJSON import records.
pub struct CsvAsNdjson<R: Read> {
    rows: csv::Reader<R>,
    headers: Vec<String>,
    id_col: Option<usize>,
    collection: String,
    record: csv::StringRecord,
    out: Vec<u8>,
    pos: usize,
    lines: Lines,
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

impl<R: Read> CsvAsNdjson<R> {
    /// Reads the header row of `source`.
    ///
    /// # Errors
    /// [`io::ErrorKind::InvalidData`] for a missing or repeated column name.
    pub fn new(source: R, collection: &str) -> io::Result<(Self, Lines)> {
        let mut rows = csv::ReaderBuilder::new()
            .has_headers(true)
            .from_reader(source);
        let headers: Vec<String> = rows
            .headers()
            .map_err(|e| invalid(format!("CSV header: {e}")))?
            .iter()
            .map(|h| h.trim().to_owned())
            .collect();
        if headers.is_empty() || headers.iter().any(String::is_empty) {
            return Err(invalid("CSV header: every column needs a name".into()));
        }
        for (i, h) in headers.iter().enumerate() {
            if headers[..i].contains(h) {
                return Err(invalid(format!("CSV header: column '{h}' appears twice")));
            }
        }
        let id_col = headers.iter().position(|h| h == "id");
        let lines = Lines::default();
        Ok((
            CsvAsNdjson {
                rows,
                headers,
                id_col,
                collection: collection.to_owned(),
                record: csv::StringRecord::new(),
                out: Vec::new(),
                pos: 0,
                lines: Rc::clone(&lines),
            },
            lines,
        ))
    }

    /// The next row as one NDJSON line in `out`; `false` at the end.
    fn next_line(&mut self) -> io::Result<bool> {
        let more = self.rows.read_record(&mut self.record).map_err(|e| {
            let at = e
                .position()
                .map_or_else(String::new, |p| format!(" at line {}", p.line()));
            invalid(format!("CSV{at}: {e}"))
        })?;
        if !more {
            return Ok(false);
        }
        let line = self.record.position().map_or(0, csv::Position::line);
        self.lines.borrow_mut().push(line);
        let mut fields = Map::new();
        let mut id = None;
        for (i, cell) in self.record.iter().enumerate() {
            if cell.is_empty() {
                continue;
            }
            if Some(i) == self.id_col {
                id = Some(cell.to_owned());
                continue;
            }
            let value =
                serde_json::from_str::<Json>(cell).unwrap_or_else(|_| Json::String(cell.into()));
            fields.insert(self.headers[i].clone(), value);
        }
        let mut rec = Map::new();
        rec.insert("collection".into(), Json::String(self.collection.clone()));
        if let Some(id) = id {
            rec.insert("id".into(), Json::String(id));
        }
        rec.insert("fields".into(), Json::Object(fields));
        self.out.clear();
        self.pos = 0;
        serde_json::to_writer(&mut self.out, &Json::Object(rec)).map_err(io::Error::other)?;
        self.out.push(b'\n');
        Ok(true)
    }
}

impl<R: Read> Read for CsvAsNdjson<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.out.len() && !self.next_line()? {
            return Ok(0);
        }
        let n = buf.len().min(self.out.len() - self.pos);
        buf[..n].copy_from_slice(&self.out[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
