//! Files generated from the command-line definition: the man page and the
//! shell completions.
//!
//! They are rendered from the same `clap::Command` the binary parses its
//! arguments with, at the moment they are asked for, so they cannot describe
//! flags this binary does not have. `install`, the Debian package and the
//! `man` / `completions` commands all come through here.

use clap_complete::Shell;

/// The man page, section 1, in roff.
pub fn man_page() -> Vec<u8> {
    let cmd = crate::cli::command();
    let mut out = Vec::new();
    // Rendering into a Vec cannot fail.
    let _ = clap_mangen::Man::new(cmd)
        .section("1")
        .manual("herakles-node-exporter manual")
        .source(concat!(
            "herakles-node-exporter ",
            env!("CARGO_PKG_VERSION")
        ))
        .render(&mut out);
    out
}

/// The completion script for `shell`.
pub fn completions(shell: Shell) -> Vec<u8> {
    let mut cmd = crate::cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "herakles-node-exporter", &mut out);
    out
}

/// `man`: the man page on standard output.
pub fn print_man() -> i32 {
    write_stdout(&man_page())
}

/// `completions SHELL`: the completion script on standard output.
pub fn print_completions(shell: Shell) -> i32 {
    write_stdout(&completions(shell))
}

fn write_stdout(bytes: &[u8]) -> i32 {
    use std::io::Write;
    match std::io::stdout().write_all(bytes) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: writing to standard output: {e}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn man_page_documents_every_visible_flag_and_subcommand() {
        let man = String::from_utf8(man_page()).unwrap();
        assert!(man.starts_with(".ie"), "{}", &man[..80]);
        let cmd = crate::cli::command();
        for arg in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
            if let Some(long) = arg.get_long() {
                // roff escapes '-' as '\-'.
                let escaped = format!("\\-\\-{}", long.replace('-', "\\-"));
                assert!(man.contains(&escaped), "--{long} missing from the man page");
            }
        }
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            assert!(
                man.contains(&sub.get_name().replace('-', "\\-")),
                "{} missing",
                sub.get_name()
            );
        }
    }

    #[test]
    fn completions_offer_subcommands_and_flags() {
        let bash = String::from_utf8(completions(Shell::Bash)).unwrap();
        for word in [
            "install",
            "uninstall",
            "generate-testdata",
            "--test-data-file",
        ] {
            assert!(bash.contains(word), "{word} missing from bash completions");
        }
        let zsh = String::from_utf8(completions(Shell::Zsh)).unwrap();
        assert!(zsh.starts_with("#compdef herakles-node-exporter"));
        let fish = String::from_utf8(completions(Shell::Fish)).unwrap();
        assert!(fish.contains("-l test-data-file"), "{fish}");
    }
}
