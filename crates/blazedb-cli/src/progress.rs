//! Progress on the terminal (stderr) for the commands that take a while: nothing when
//! stderr is not a terminal, and always cleared when the work ends, however it ends
//! (an error or a panic unwinding through the caller too), so no spinner stays on the
//! screen.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

/// A progress display that clears itself when dropped.
pub struct Progress(ProgressBar);

impl Progress {
    fn styled(bar: ProgressBar, template: &str, what: &str) -> Progress {
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(what.to_owned());
        Progress(bar)
    }

    /// The bar itself (to wrap a reader or writer).
    #[must_use]
    pub fn bar(&self) -> &ProgressBar {
        &self.0
    }

    /// Counts `n` more items.
    pub fn inc(&self, n: u64) {
        self.0.inc(n);
    }

    /// Says what is being done now.
    pub fn set_message(&self, what: &str) {
        self.0.set_message(what.to_owned());
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}

fn on_terminal() -> bool {
    std::io::stderr().is_terminal()
}

/// Bytes moved, against `total` when known (a bar with an ETA), else a spinner.
#[must_use]
pub fn bytes(total: Option<u64>, what: &str) -> Progress {
    if !on_terminal() {
        return Progress(ProgressBar::hidden());
    }
    match total {
        Some(t) => Progress::styled(
            ProgressBar::new(t),
            "{msg} [{bar:40}] {bytes}/{total_bytes} ({eta})",
            what,
        ),
        None => Progress::styled(
            ProgressBar::new_spinner(),
            "{spinner} {msg} {bytes} ({bytes_per_sec})",
            what,
        ),
    }
}

/// Items counted as they come (a spinner with the count and the rate).
#[must_use]
pub fn counter(what: &str) -> Progress {
    if !on_terminal() {
        return Progress(ProgressBar::hidden());
    }
    let p = Progress::styled(
        ProgressBar::new_spinner(),
        "{spinner} {msg}: {human_pos} ({per_sec})",
        what,
    );
    p.0.enable_steady_tick(std::time::Duration::from_millis(120));
    p
}
