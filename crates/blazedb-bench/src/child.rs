//! A child process of the benchmark (this binary re-executed in another role: the
//! `net` server, the `net` clients) that runs until its stdin closes: the parent holds
//! the other end, so a child never outlives it, whatever way the parent ends.

#![cfg_attr(not(feature = "net"), allow(dead_code))]

use std::io::Write as _;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use anyhow::{Context, Result, bail};

/// A running child. Dropping it closes the child's stdin (which stops it) and waits
/// for it, so it is not left a zombie.
pub(crate) struct StdinChild {
    child: Child,
    stdin: Option<ChildStdin>,
    /// What it is, for messages ("the server process").
    what: &'static str,
}

impl StdinChild {
    /// Starts this binary with `args`, stdin and stdout piped (stdout is returned for
    /// the caller to read), stderr inherited.
    pub(crate) fn spawn(args: &[String], what: &'static str) -> Result<(StdinChild, ChildStdout)> {
        Self::spawn_env(args, &[], what)
    }

    /// As [`StdinChild::spawn`], with `env` added to the child's environment (secrets
    /// stay off its command line, which other users can read).
    pub(crate) fn spawn_env(
        args: &[String],
        env: &[(&str, &str)],
        what: &'static str,
    ) -> Result<(StdinChild, ChildStdout)> {
        let exe = std::env::current_exe().context("locating this benchmark's binary")?;
        let mut child = Command::new(exe)
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {what}"))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().context("the child's stdout")?;
        Ok((StdinChild { child, stdin, what }, stdout))
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends one line to the child's stdin.
    pub(crate) fn say(&mut self, line: &str) -> Result<()> {
        let stdin = self.stdin.as_mut().context("the child is stopping")?;
        writeln!(stdin, "{line}")?;
        stdin.flush()?;
        Ok(())
    }

    /// Kills the child at once (it failed to start as it should).
    pub(crate) fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.stdin = None;
    }

    /// Closes the child's stdin and waits for it to stop; fails unless it exits 0.
    pub(crate) fn stop(mut self) -> Result<()> {
        drop(self.stdin.take());
        let status = self.child.wait()?;
        if !status.success() {
            bail!("{} exited with {status}", self.what);
        }
        Ok(())
    }
}

impl Drop for StdinChild {
    fn drop(&mut self) {
        if self.stdin.take().is_some() {
            let _ = self.child.wait();
        }
    }
}
