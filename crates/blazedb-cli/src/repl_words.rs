//! A REPL line into words: shell-style (quotes group, backslashes escape), except that
//! a word starting with `{` or `[` is JSON typed as-is and runs to its matching
//! bracket, so `insert todo {"title": "a b"}` works without quoting the JSON again.
//! A word starting with `#` begins a comment. Also the dot commands users know from `sqlite3` (`.tables`, `.schema`, `.help`,
//! `.quit`), as the REPL's own words.

use crate::exit::{CliError, Exit};

/// The REPL line a dot command stands for, if `text` is one.
pub fn dot_command(text: &str) -> Option<&'static str> {
    Some(match text.trim() {
        ".tables" | ".collections" => "collections",
        ".schema" | ".indexes" => "index list",
        ".help" => "help",
        ".quit" | ".exit" => "exit",
        _ => return None,
    })
}

/// `sync start|now|stop …` as the REPL's grammar names them (`sync-start …`): the
/// background sync's commands read as the `sync` command's actions.
#[must_use]
pub fn sync_action(mut words: Vec<String>) -> Vec<String> {
    if words.len() >= 2
        && words[0] == "sync"
        && matches!(words[1].as_str(), "start" | "now" | "stop")
    {
        let action = words.remove(1);
        words[0] = format!("sync-{action}");
    }
    words
}

/// Where the JSON value starting at `text` (with `{` or `[`) ends: the byte after its
/// matching bracket, brackets inside strings not counted.
fn json_end(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '{' | '[' => depth += 1,
            '}' | ']' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
    }
    None
}

/// Where the shell-style word starting at `text` ends (at whitespace outside quotes).
fn word_end(text: &str) -> usize {
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match (quote, c) {
            (Some('\''), '\'') | (Some('"'), '"') => quote = None,
            (Some('"') | None, '\\') => escaped = true,
            (None, '\'' | '"') => quote = Some(c),
            (None, c) if c.is_whitespace() => return i,
            _ => {}
        }
    }
    text.len()
}

/// The words of a REPL line.
///
/// # Errors
/// [`Exit::Usage`] for unbalanced quotes or brackets.
pub fn split(line: &str) -> Result<Vec<String>, CliError> {
    let mut words = Vec::new();
    let mut rest = line.trim_start();
    while !rest.is_empty() {
        if rest.starts_with('#') {
            break; // a comment, as in a shell
        }
        if rest.starts_with(['{', '[']) {
            let end = json_end(rest).ok_or_else(|| {
                CliError::new(Exit::Usage, "unbalanced brackets in the JSON value")
                    .hint("close every { and [ (quotes inside strings do not count)")
            })?;
            words.push(rest[..end].to_owned());
            rest = rest[end..].trim_start();
            continue;
        }
        let end = word_end(rest);
        let word = shlex::split(&rest[..end])
            .ok_or_else(|| CliError::new(Exit::Usage, "unbalanced quotes"))?;
        words.extend(word);
        rest = rest[end..].trim_start();
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_typed_as_is_is_one_word_and_quotes_still_group() {
        assert_eq!(
            split(r#"insert todo {"title": "a b", "tags": ["x}"]}"#).expect("split"),
            ["insert", "todo", r#"{"title": "a b", "tags": ["x}"]}"#]
        );
        assert_eq!(
            split(r#"query todo --where 'n=1 or n=2' --limit 3"#).expect("split"),
            ["query", "todo", "--where", "n=1 or n=2", "--limit", "3"]
        );
        assert_eq!(
            split(r#"insert todo '{"title": "x"}'"#).expect("split"),
            ["insert", "todo", r#"{"title": "x"}"#],
            "quoted JSON as before"
        );
        assert_eq!(
            split(r#"query t -w title="a b""#).expect("split"),
            ["query", "t", "-w", "title=a b"]
        );
        assert_eq!(
            split(r#"put t ID {"s": "\"}"}"#).expect("split"),
            ["put", "t", "ID", r#"{"s": "\"}"}"#]
        );
    }

    #[test]
    fn unbalanced_json_or_quotes_are_usage_errors() {
        for line in [r#"insert t {"a": 1"#, "query t -w 'n=1", "insert t [1, [2]"] {
            let e = split(line).expect_err(line);
            assert_eq!(e.exit, Exit::Usage, "{line}");
        }
    }

    #[test]
    fn dot_commands_stand_for_repl_commands() {
        assert_eq!(dot_command(".tables"), Some("collections"));
        assert_eq!(dot_command(".schema"), Some("index list"));
        assert_eq!(dot_command(" .quit "), Some("exit"));
        assert_eq!(dot_command(".nope"), None);
        assert_eq!(dot_command("tables"), None);
    }
}
