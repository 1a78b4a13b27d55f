//! Logging set-up shared by both programs: events go to stderr, filtered by
//! [`LOG_ENV`] (tracing's filter syntax, e.g. `warn`, `info,blazedb_sync=debug`), as
//! human-readable text or as one JSON object per line (`--log-format json`).

use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;

/// The one environment variable both programs read their log filter from.
pub const LOG_ENV: &str = "BLAZEDB_LOG";

/// How log events are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One line of text per event (colours only on a terminal).
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `fields`.
    Json,
}

/// Installs the global subscriber: `BLAZEDB_LOG` if set, else `default_filter` (the
/// program's own level). Returns a warning to show when `BLAZEDB_LOG` does not parse
/// (the default is used then), so a typo is not silently ignored.
#[must_use]
pub fn init(format: LogFormat, default_filter: &str) -> Option<String> {
    let (filter, warning) = match std::env::var(LOG_ENV) {
        Ok(v) if !v.trim().is_empty() => match EnvFilter::try_new(&v) {
            Ok(f) => (f, None),
            Err(e) => (
                EnvFilter::new(default_filter),
                Some(format!(
                    "{LOG_ENV}={v:?} is not a log filter ({e}): logging at {default_filter:?}"
                )),
            ),
        },
        _ => (EnvFilter::new(default_filter), None),
    };
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().with_ansi(false).init(),
    }
    warning
}
