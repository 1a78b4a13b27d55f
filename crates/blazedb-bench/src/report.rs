//! The results table: each figure for BlazeDB and SQLite, the ratio BlazeDB/SQLite, the
//! goal and whether it is met.

use std::fmt::Write as _;
use std::time::Duration;

/// Which direction of a figure is better.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Better {
    /// A throughput: more is better; the ratio is BlazeDB ÷ SQLite throughput.
    Higher,
    /// A time: less is better; the ratio is BlazeDB ÷ SQLite time (below 1 favours
    /// BlazeDB).
    Lower,
}

/// A figure's goal.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Goal {
    /// No goal: reported for information.
    None,
    /// BlazeDB ÷ SQLite (throughput) must be at least this.
    RatioAtLeast(f64),
    /// BlazeDB's own time must be at most this many milliseconds.
    BlazeAtMostMs(f64),
    /// BlazeDB ÷ SQLite (a time or a size) must be at most this.
    RatioAtMost(f64),
}

/// One line of the table.
#[derive(Clone, Debug)]
pub(crate) struct Row {
    pub figure: String,
    pub unit: &'static str,
    pub blaze: f64,
    pub sqlite: Option<f64>,
    pub better: Better,
    pub goal: Goal,
}

impl Row {
    /// A throughput row (`count` operations in `blaze` / `sqlite` time).
    pub(crate) fn rate(
        figure: impl Into<String>,
        unit: &'static str,
        count: usize,
        blaze: Duration,
        sqlite: Duration,
        goal: Goal,
    ) -> Row {
        Row {
            figure: figure.into(),
            unit,
            blaze: per_sec(count, blaze),
            sqlite: Some(per_sec(count, sqlite)),
            better: Better::Higher,
            goal,
        }
    }

    /// A time row in milliseconds; `sqlite` is `None` when SQLite has no counterpart.
    pub(crate) fn time(
        figure: impl Into<String>,
        blaze: Duration,
        sqlite: Option<Duration>,
        goal: Goal,
    ) -> Row {
        Row {
            figure: figure.into(),
            unit: "ms",
            blaze: ms(blaze),
            sqlite: sqlite.map(ms),
            better: Better::Lower,
            goal,
        }
    }

    /// A size row in MiB (less is better).
    pub(crate) fn size(figure: impl Into<String>, blaze: u64, sqlite: u64, goal: Goal) -> Row {
        Row {
            figure: figure.into(),
            unit: "MiB",
            blaze: blaze as f64 / 1_048_576.0,
            sqlite: Some(sqlite as f64 / 1_048_576.0),
            better: Better::Lower,
            goal,
        }
    }

    /// BlazeDB ÷ SQLite, when both figures exist.
    pub(crate) fn ratio(&self) -> Option<f64> {
        self.sqlite.filter(|s| *s > 0.0).map(|s| self.blaze / s)
    }

    /// Whether the goal is met; `None` when there is no goal.
    pub(crate) fn met(&self) -> Option<bool> {
        match self.goal {
            Goal::None => None,
            Goal::RatioAtLeast(g) => Some(self.ratio().is_some_and(|r| r >= g)),
            Goal::BlazeAtMostMs(g) => Some(self.blaze <= g),
            Goal::RatioAtMost(g) => Some(self.ratio().is_some_and(|r| r <= g)),
        }
    }
}

/// Milliseconds in a duration, as a float.
pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Operations per second.
pub(crate) fn per_sec(count: usize, d: Duration) -> f64 {
    let s = d.as_secs_f64();
    if s > 0.0 { count as f64 / s } else { 0.0 }
}

/// `v` with thousands separators and a precision suited to its size, then `unit`.
fn num(v: f64, unit: &str) -> String {
    let digits = if unit == "ms" {
        if v < 10.0 { 2 } else { 1 }
    } else if v < 100.0 {
        1
    } else {
        0
    };
    let s = format!("{v:.digits$}");
    // Thousands separators on the integer part.
    let (int, frac) = s.split_once('.').map_or((s.as_str(), ""), |(i, f)| (i, f));
    let mut grouped = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    if frac.is_empty() {
        format!("{grouped} {unit}")
    } else {
        format!("{grouped}.{frac} {unit}")
    }
}

/// Renders `rows` as a plain-text table.
pub(crate) fn table(rows: &[Row]) -> String {
    let header = [
        "Figure",
        "BlazeDB",
        "SQLite",
        "Blaze/SQLite",
        "Better",
        "Goal",
        "Met",
    ];
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let ratio = r.ratio().map_or("-".to_owned(), |x| format!("{x:.2}x"));
            let better = match (r.better, r.sqlite.is_some()) {
                (_, false) => "lower".to_owned(),
                (Better::Higher, true) => "higher ratio".to_owned(),
                (Better::Lower, true) => "lower ratio".to_owned(),
            };
            let goal = match r.goal {
                Goal::None => "-".to_owned(),
                Goal::RatioAtLeast(g) => format!(">= {g:.1}x"),
                Goal::BlazeAtMostMs(g) => format!("Blaze <= {g:.0} ms"),
                Goal::RatioAtMost(g) => format!("<= {g:.1}x"),
            };
            let met = match r.met() {
                None => "-",
                Some(true) => "yes",
                Some(false) => "NO",
            };
            vec![
                r.figure.clone(),
                num(r.blaze, r.unit),
                r.sqlite.map_or("-".to_owned(), |s| num(s, r.unit)),
                ratio,
                better,
                goal,
                met.to_owned(),
            ]
        })
        .collect();
    grid(&header, &cells, &[0, 4, 5, 6])
}

/// Renders a plain-text grid: the `header` line, a rule, then `cells` row by row. The
/// columns whose index is in `left` are left-aligned, the others right-aligned.
pub(crate) fn grid(header: &[&str], cells: &[Vec<String>], left: &[usize]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, row: &[String]| {
        let mut text = String::new();
        for (i, (c, w)) in row.iter().zip(&widths).enumerate() {
            let pad = " ".repeat(w.saturating_sub(c.chars().count()));
            if i > 0 {
                text.push_str(" | ");
            }
            let _ = if left.contains(&i) {
                write!(text, "{c}{pad}")
            } else {
                write!(text, "{pad}{c}")
            };
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    let head: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    line(&mut out, &head);
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    out.push_str(&rule.join("-+-"));
    out.push('\n');
    for row in cells {
        line(&mut out, row);
    }
    out
}

/// Per-operation latencies of one measured series: mean, median and 99th percentile.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Latency {
    pub mean: Duration,
    pub p50: Duration,
    pub p99: Duration,
}

impl Latency {
    /// The statistics of `times` (one entry per operation); zero when empty.
    pub(crate) fn of(times: &[Duration]) -> Latency {
        let mut sorted = times.to_vec();
        sorted.sort_unstable();
        let at = |q: usize| {
            sorted
                .get((sorted.len() * q / 100).min(sorted.len().saturating_sub(1)))
                .copied()
                .unwrap_or_default()
        };
        let total: Duration = sorted.iter().sum();
        let n = u32::try_from(sorted.len().max(1)).unwrap_or(u32::MAX);
        Latency {
            mean: total / n,
            p50: at(50),
            p99: at(99),
        }
    }
}

/// Microseconds in a duration, as a float.
pub(crate) fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
