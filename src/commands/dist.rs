//! Files generated from the command-line definition: the man page and the
//! shell completions.
//!
//! They are rendered from the `clap::Command` the binary parses its
//! arguments with (`crate::cli` hands it over), at the moment they are asked
//! for, so they cannot describe flags this binary does not have. `install`,
//! the Debian package and the `man` / `completions` commands all come
//! through here.

use clap_complete::Shell;

/// The man page of `cli`, section 1, in roff.
pub fn man_page(cli: &clap::Command) -> Vec<u8> {
    let mut out = Vec::new();
    // Rendering into a Vec cannot fail.
    let _ = clap_mangen::Man::new(cli.clone())
        .section("1")
        .manual("herakles-node-exporter manual")
        .source(concat!(
            "herakles-node-exporter ",
            env!("CARGO_PKG_VERSION")
        ))
        .render(&mut out);
    out
}

/// The completion script of `cli` for `shell`.
pub fn completions(cli: &clap::Command, shell: Shell) -> Vec<u8> {
    let mut cmd = cli.clone();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "herakles-node-exporter", &mut out);
    out
}

/// `man`: the man page on standard output.
pub fn print_man(cli: &clap::Command) -> i32 {
    write_stdout(&man_page(cli))
}

/// `completions SHELL`: the completion script on standard output.
pub fn print_completions(cli: &clap::Command, shell: Shell) -> i32 {
    write_stdout(&completions(cli, shell))
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
