//! Name validation. Names are checked before anything touches storage, so an invalid
//! name never modifies a database.

use crate::error::{Error, NameKind};
use crate::limits::{FIELD_NAME_LEN_MAX, NAME_LEN_MAX};

/// Checks a database or collection name: 1..=64 bytes of ASCII letters, digits, `_`, `-`
/// and `.`, starting with a letter or digit. Such names are safe as file names on every
/// platform and unambiguous in the CLI.
///
/// # Errors
/// [`Error::InvalidName`] saying which rule the name breaks.
pub fn check_name(kind: NameKind, name: &str) -> Result<(), Error> {
    let fail = |reason: &'static str| {
        Err(Error::InvalidName {
            kind,
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return fail("must not be empty");
    }
    if name.len() > NAME_LEN_MAX {
        return fail("must be at most 64 bytes");
    }
    if !name.as_bytes()[0].is_ascii_alphanumeric() {
        return fail("must start with an ASCII letter or digit");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    {
        return fail("may contain only ASCII letters, digits, '_', '-' and '.'");
    }
    Ok(())
}

/// Checks a field name: 1..=256 bytes, no `.` (reserved for nested paths), not starting
/// with `$` (reserved for tagged values in JSON), and no control characters.
///
/// # Errors
/// [`Error::InvalidName`] saying which rule the name breaks.
pub fn check_field_name(name: &str) -> Result<(), Error> {
    let fail = |reason: &'static str| {
        Err(Error::InvalidName {
            kind: NameKind::Field,
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return fail("must not be empty");
    }
    if name.len() > FIELD_NAME_LEN_MAX {
        return fail("must be at most 256 bytes");
    }
    // Every stored field name is checked again when it is decoded: one pass over the
    // bytes decides the common case (printable ASCII without '.'), the rules below
    // explain a refusal or judge the rest.
    if name.as_bytes()[0] != b'$' && name.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'.') {
        return Ok(());
    }
    if name.contains('.') {
        return fail("must not contain '.' (it separates nested paths)");
    }
    if name.starts_with('$') {
        return fail("must not start with '$' (reserved)");
    }
    if name.chars().any(char::is_control) {
        return fail("must not contain control characters");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collection_names_accept_safe_ascii_and_reject_the_rest() {
        for ok in ["bugs", "a", "Team-1.x_y", &"a".repeat(64)] {
            assert!(check_name(NameKind::Collection, ok).is_ok(), "{ok}");
        }
        for bad in ["", "_x", ".x", "a/b", "a b", "ü", &"a".repeat(65), "../x"] {
            assert!(check_name(NameKind::Collection, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn field_names_reject_dots_dollars_and_control_characters() {
        assert!(check_field_name("title").is_ok());
        assert!(check_field_name("Ünïcode ok").is_ok());
        assert!(check_field_name("a$ ~").is_ok());
        assert!(check_field_name(&"f".repeat(256)).is_ok());
        for bad in [
            "",
            "a.b",
            "$x",
            "a\nb",
            "\u{7f}",
            "ü\u{85}",
            "ü.x",
            "$ü",
            &"f".repeat(257),
        ] {
            assert!(check_field_name(bad).is_err(), "{bad:?}");
        }
    }
}
