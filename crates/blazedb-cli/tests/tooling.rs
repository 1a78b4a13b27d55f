//! What a user installs around the binary: shell completions, the manual page, and a
//! `--version` that says which build it is.

mod support;

use support::Scratch;

#[test]
fn completions_for_each_shell_and_the_man_page_cover_every_command() {
    let s = Scratch::new();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let r = s.run(&["completions", shell]);
        assert_eq!(r.code, 0, "{shell}: {}", r.stderr);
        for cmd in ["query", "import", "sync", "drop", "where"] {
            assert!(r.stdout.contains(cmd), "{shell} completes {cmd}");
        }
    }
    s.run(&["completions", "tcsh"]).fails(2, "invalid value");
    let man = s.run(&["man"]);
    assert_eq!(man.code, 0, "{}", man.stderr);
    assert!(man.stdout.starts_with(".ie"), "roff");
    assert!(man.stdout.contains(".TH blazedb 1"));
    for cmd in ["query", "export", "conflicts", "completions"] {
        assert!(man.stdout.contains(cmd), "the man page lists {cmd}");
    }
}

#[test]
fn version_names_the_release_the_commit_and_what_is_built_in() {
    let s = Scratch::new();
    let long = s.run(&["--version"]);
    assert_eq!(long.code, 0);
    let text = long.stdout.trim();
    assert!(
        text.starts_with(&format!("blazedb {} (commit ", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    assert!(text.contains("built in: sync"), "{text}");
    let short = s.run(&["-V"]);
    assert_eq!(
        short.stdout.trim(),
        format!("blazedb {}", env!("CARGO_PKG_VERSION"))
    );
}
