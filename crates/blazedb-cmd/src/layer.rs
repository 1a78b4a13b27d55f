//! One rule for where a setting comes from: **the command line, else the configuration
//! file, else the environment, else the default**. clap reads the command line, the
//! environment (`#[arg(env = ...)]`) and the defaults (`default_value_t`), so `--help`
//! shows all three; [`Layers`] puts the configuration file between them by asking clap
//! where each parsed value came from.

use std::fmt::Display;
use std::path::Path;

use clap::parser::ValueSource;
use clap::{ArgMatches, Command};

/// Where a setting's value came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    CommandLine,
    ConfigFile,
    Environment,
    Default,
}

/// A parsed command line, kept to know where each value came from.
#[derive(Clone, Debug)]
pub struct Layers {
    command: Command,
    matches: ArgMatches,
}

impl Layers {
    /// `matches` as `command` parsed them.
    #[must_use]
    pub fn new(command: Command, matches: ArgMatches) -> Layers {
        Layers { command, matches }
    }

    /// Where clap's value of argument `id` came from (`None`: no value at all).
    #[must_use]
    pub fn origin(&self, id: &str) -> Option<Origin> {
        match self.matches.try_get_raw(id).ok().flatten()?.len() {
            0 => None,
            _ => Some(match self.matches.value_source(id)? {
                ValueSource::CommandLine => Origin::CommandLine,
                ValueSource::EnvVariable => Origin::Environment,
                _ => Origin::Default,
            }),
        }
    }

    /// The setting `id`: clap's value (`parsed`) when the command line gave it, else the
    /// configuration file's (`file`), else clap's (from the environment or the default).
    #[must_use]
    pub fn pick<T>(&self, id: &str, parsed: Option<T>, file: Option<T>) -> Option<(T, Origin)> {
        let origin = self.origin(id).unwrap_or(Origin::Default);
        match (parsed, file) {
            (Some(v), _) if origin == Origin::CommandLine => Some((v, origin)),
            (_, Some(f)) => Some((f, Origin::ConfigFile)),
            (p, None) => p.map(|v| (v, origin)),
        }
    }

    /// The setting as the user gave it, for a message: `--max-connections 5`,
    /// `max_connections = 5 in server.toml`, `BLAZEDB_MAX_CONNECTIONS=5`, or
    /// `max_connections 5 (the default)`.
    #[must_use]
    pub fn describe(
        &self,
        id: &str,
        origin: Origin,
        value: &dyn Display,
        config: Option<&Path>,
    ) -> String {
        match origin {
            Origin::CommandLine => format!("--{} {value}", id.replace('_', "-")),
            Origin::ConfigFile => match config {
                Some(p) => format!("{id} = {value} in {}", p.display()),
                None => format!("{id} = {value}"),
            },
            Origin::Environment => match self.env_name(id) {
                Some(env) => format!("{env}={value}"),
                None => format!("{id} {value} (from the environment)"),
            },
            Origin::Default => format!("{id} {value} (the default)"),
        }
    }

    /// The environment variable argument `id` reads, if any.
    #[must_use]
    pub fn env_name(&self, id: &str) -> Option<String> {
        self.command
            .get_arguments()
            .find(|a| a.get_id() == id)?
            .get_env()
            .map(|e| e.to_string_lossy().into_owned())
    }

    /// The parsed command line.
    #[must_use]
    pub fn matches(&self) -> &ArgMatches {
        &self.matches
    }
}

#[cfg(test)]
mod tests {
    use clap::{Arg, ArgAction};

    use super::*;

    fn command() -> Command {
        Command::new("t")
            .arg(
                Arg::new("limit")
                    .long("limit")
                    .env("BLAZEDB_CMD_TEST_LIMIT")
                    .default_value("10")
                    .action(ArgAction::Set),
            )
            .arg(Arg::new("name").long("name").action(ArgAction::Set))
    }

    fn layers(argv: &[&str]) -> Layers {
        let cmd = command();
        let m = cmd
            .clone()
            .try_get_matches_from(std::iter::once("t").chain(argv.iter().copied()))
            .expect("parses");
        Layers::new(cmd, m)
    }

    fn limit(l: &Layers, file: Option<&str>) -> Option<(String, Origin)> {
        l.pick(
            "limit",
            l.matches().get_one::<String>("limit").cloned(),
            file.map(str::to_owned),
        )
    }

    #[test]
    fn the_command_line_wins_over_the_file_and_the_file_over_the_default() {
        let given = layers(&["--limit", "3"]);
        assert_eq!(
            limit(&given, Some("7")),
            Some(("3".into(), Origin::CommandLine))
        );
        let not_given = layers(&[]);
        assert_eq!(
            limit(&not_given, Some("7")),
            Some(("7".into(), Origin::ConfigFile))
        );
        assert_eq!(
            limit(&not_given, None),
            Some(("10".into(), Origin::Default))
        );
        assert_eq!(not_given.pick::<String>("name", None, None), None);
    }

    #[test]
    fn a_setting_is_described_as_the_user_gave_it() {
        let l = layers(&[]);
        let p = Path::new("s.toml");
        assert_eq!(
            l.describe("limit", Origin::CommandLine, &5, Some(p)),
            "--limit 5"
        );
        assert_eq!(
            l.describe("limit", Origin::ConfigFile, &5, Some(p)),
            "limit = 5 in s.toml"
        );
        assert_eq!(
            l.describe("limit", Origin::Environment, &5, None),
            "BLAZEDB_CMD_TEST_LIMIT=5"
        );
    }
}
