//! `install` and `uninstall`: the exporter as a systemd service on a host
//! without a package.
//!
//! `install` writes the running binary, a config file, the unit generated
//! for that config (see [`super::unit`]), an `/etc/default` file, the man
//! page and the shell completions, creates the service's system user,
//! enables and starts the service. It records what it did in a manifest
//! (every file with the SHA-256 of what was written, the directories and
//! the user it created), and `uninstall` undoes exactly that:
//!
//! * a config file whose content changed since install was edited by
//!   someone, and is kept unless `--purge`;
//! * a directory is removed only if install created it and it is empty;
//! * the user is removed only if install created it.
//!
//! Both are idempotent: a second `install` without `--force` sees the
//! manifest, changes nothing and says so; `uninstall` without a manifest
//! has nothing to do and exits 0.
//!
//! `--root DIR` treats DIR as `/`: a staging tree for packagers (the Debian
//! package is built this way, with `--layout package`) and for tests. In a
//! staging root no user is created and systemd is not called, since
//! neither the host's users nor its service manager belong to that tree.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use clap_complete::Shell;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::dist;
use super::unit::{self, UnitPaths, SERVICE, USER};
use crate::config::{self, Config, Format};

/// `install` flags.
#[derive(Debug, clap::Args)]
pub struct InstallArgs {
    /// Treat DIR as / (a staging tree): no user is created, systemd is not touched
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
    /// Print what would change and change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Reinstall over an existing installation (a config file edited since is kept)
    #[arg(long)]
    pub force: bool,
    /// Install the unit but do not enable or start it
    #[arg(long)]
    pub no_service: bool,
    /// opt: /opt/herakles and /usr/local (a host without a package);
    /// package: /usr/bin, /lib/systemd/system, /usr/share (for building packages)
    #[arg(long, value_enum, default_value = "opt")]
    pub layout: LayoutName,
}

/// `uninstall` flags.
#[derive(Debug, clap::Args)]
pub struct UninstallArgs {
    /// The DIR given to `install --root`
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
    /// Print what would be removed and remove nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask for confirmation
    #[arg(short = 'y', long)]
    pub yes: bool,
    /// Also remove config files edited since install
    #[arg(long)]
    pub purge: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LayoutName {
    Opt,
    Package,
}

/// Where each installed file goes (absolute paths inside the root).
pub struct Layout {
    pub binary: &'static str,
    pub config: &'static str,
    pub defaults: &'static str,
    pub unit: &'static str,
    pub man: &'static str,
    /// The man page is gzip-compressed (Debian policy for packages).
    pub man_gz: bool,
    pub completions: [(Shell, &'static str); 3],
    /// `None` for a package: dpkg keeps the record.
    pub manifest: Option<&'static str>,
}

/// The layout the spec gives `install`: the program under `/opt/herakles`,
/// the rest where a locally installed program's files go.
pub const OPT: Layout = Layout {
    binary: "/opt/herakles/bin/herakles-node-exporter",
    config: "/etc/herakles/herakles-node-exporter.yaml",
    defaults: "/etc/default/herakles-node-exporter",
    unit: "/etc/systemd/system/herakles-node-exporter.service",
    man: "/usr/local/share/man/man1/herakles-node-exporter.1",
    man_gz: false,
    completions: [
        (
            Shell::Bash,
            "/usr/local/share/bash-completion/completions/herakles-node-exporter",
        ),
        (
            Shell::Zsh,
            "/usr/local/share/zsh/site-functions/_herakles-node-exporter",
        ),
        (
            Shell::Fish,
            "/usr/local/share/fish/vendor_completions.d/herakles-node-exporter.fish",
        ),
    ],
    manifest: Some("/var/lib/herakles/install-manifest.json"),
};

/// A distribution package's paths (Debian bookworm: units under `/lib`).
pub const PACKAGE: Layout = Layout {
    binary: "/usr/bin/herakles-node-exporter",
    config: "/etc/herakles/herakles-node-exporter.yaml",
    defaults: "/etc/default/herakles-node-exporter",
    unit: "/lib/systemd/system/herakles-node-exporter.service",
    man: "/usr/share/man/man1/herakles-node-exporter.1.gz",
    man_gz: true,
    completions: [
        (
            Shell::Bash,
            "/usr/share/bash-completion/completions/herakles-node-exporter",
        ),
        (
            Shell::Zsh,
            "/usr/share/zsh/vendor-completions/_herakles-node-exporter",
        ),
        (
            Shell::Fish,
            "/usr/share/fish/vendor_completions.d/herakles-node-exporter.fish",
        ),
    ],
    manifest: None,
};

impl LayoutName {
    pub fn layout(self) -> &'static Layout {
        match self {
            LayoutName::Opt => &OPT,
            LayoutName::Package => &PACKAGE,
        }
    }
}

/// What uninstall may do with a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Kind {
    /// Ours: removed whatever its content.
    Program,
    /// The operator's once written: kept when edited, unless `--purge`.
    Config,
}

#[derive(Debug, Serialize, Deserialize)]
struct Record {
    path: String,
    kind: Kind,
    /// Of what was written; config files only, the rest go whatever their
    /// content (hashing a 150 MB debug binary would cost seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sha256: Option<String>,
}

/// What `install` did, for `uninstall`.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Manifest {
    version: String,
    files: Vec<Record>,
    /// Directories install created, parents first.
    dirs: Vec<String>,
    /// Whether install created the service user.
    user_created: bool,
}

struct Planned {
    path: &'static str,
    kind: Kind,
    mode: u32,
    bytes: Vec<u8>,
}

/// Prints actions, prefixed with "would" in a dry run.
struct Out {
    dry_run: bool,
}

impl Out {
    fn say(&self, verb: &str, what: impl std::fmt::Display) {
        if self.dry_run {
            println!("would {verb} {what}");
        } else {
            println!("{verb} {what}");
        }
    }
}

fn under(root: &Path, abs: &str) -> PathBuf {
    root.join(abs.trim_start_matches('/'))
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn is_real_root(root: &Path) -> bool {
    root == Path::new("/")
}

/// systemd is the running service manager (sd_booted(3)).
fn systemd_running() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// `install`. `config_file` is `-c FILE`: installed as the config when
/// given, else the commented default config is. `cli` is the command line,
/// for the man page and the completions.
pub fn install(args: &InstallArgs, config_file: Option<&Path>, cli: &clap::Command) -> i32 {
    match try_install(args, config_file, cli) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

fn try_install(
    args: &InstallArgs,
    config_file: Option<&Path>,
    cli: &clap::Command,
) -> Result<(), String> {
    let root = &args.root;
    let layout = args.layout.layout();
    let real = is_real_root(root);
    if real && args.layout == LayoutName::Package {
        return Err("--layout package is for staging a package: give --root DIR".into());
    }
    if real && !args.dry_run && !nix::unistd::Uid::effective().is_root() {
        return Err("install needs root (or --root DIR to stage into a directory)".into());
    }
    if !root.is_dir() {
        return Err(format!("{}: not a directory", root.display()));
    }
    let out = Out {
        dry_run: args.dry_run,
    };

    let manifest_path = layout.manifest.map(|m| under(root, m));
    let previous = match &manifest_path {
        Some(p) => read_manifest(p)?,
        None => None,
    };
    if previous.is_some() && !args.force {
        println!(
            "already installed in {} (recorded in {}); nothing changed. \
             Use --force to reinstall.",
            root.display(),
            manifest_path
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        );
        return Ok(());
    }

    let (config_text, config) = installed_config(config_file)?;
    let files = planned_files(layout, &config_text, &config, cli)?;

    if previous.is_none() && !args.force {
        let existing: Vec<String> = files
            .iter()
            .filter(|f| under(root, f.path).exists())
            .map(|f| f.path.to_string())
            .collect();
        if !existing.is_empty() {
            return Err(format!(
                "{} already exist(s) and were not installed by `install` (a package?); \
                 nothing changed. Use --force to overwrite.",
                existing.join(", ")
            ));
        }
    }

    let mut manifest = Manifest {
        version: env!("CARGO_PKG_VERSION").to_string(),
        ..Manifest::default()
    };
    if let Some(prev) = &previous {
        manifest.dirs.clone_from(&prev.dirs);
        manifest.user_created = prev.user_created;
    }

    let mut dirs: Vec<&str> = files.iter().map(|f| f.path).collect();
    dirs.extend(layout.manifest);
    for path in dirs {
        create_parents(root, path, &mut manifest.dirs, &out)?;
    }

    for f in &files {
        let target = under(root, f.path);
        let written = (f.kind == Kind::Config).then(|| sha256(&f.bytes));
        if f.kind == Kind::Config && target.exists() && config_file.is_none() {
            let current = std::fs::read(&target).map(|b| sha256(&b)).ok();
            let recorded = previous
                .as_ref()
                .and_then(|m| m.files.iter().find(|r| r.path == f.path))
                .and_then(|r| r.sha256.clone());
            if current.is_some() && current != recorded {
                out.say(
                    "keep",
                    format!("{} (edited since install)", target.display()),
                );
                manifest.files.push(Record {
                    path: f.path.to_string(),
                    kind: f.kind,
                    sha256: recorded.or(written),
                });
                continue;
            }
        }
        out.say(
            "write",
            format!("{} ({} bytes)", target.display(), f.bytes.len()),
        );
        if !args.dry_run {
            write_atomic(&target, &f.bytes, f.mode)?;
        }
        manifest.files.push(Record {
            path: f.path.to_string(),
            kind: f.kind,
            sha256: written,
        });
    }

    if real {
        if nix::unistd::User::from_name(USER).ok().flatten().is_none() {
            out.say("create", format!("system user {USER}"));
            if !args.dry_run {
                run(Command::new("useradd").args([
                    "--system",
                    "--user-group",
                    "--no-create-home",
                    "--home-dir",
                    "/nonexistent",
                    "--shell",
                    "/usr/sbin/nologin",
                    "--comment",
                    "herakles-node-exporter",
                    USER,
                ]))?;
            }
            manifest.user_created = true;
        }
    } else {
        println!(
            "staging root {}: not creating user {USER}, not calling systemctl",
            root.display()
        );
    }

    if let (Some(path), false) = (&manifest_path, args.dry_run) {
        let text = serde_json::to_vec_pretty(&manifest).map_err(|e| e.to_string())?;
        write_atomic(path, &text, 0o644)?;
    }

    if real {
        services_after_install(args, &out)?;
    }
    Ok(())
}

/// The config text to install and what it parses to: `-c FILE` verbatim,
/// or the commented default.
fn installed_config(file: Option<&Path>) -> Result<(String, Config), String> {
    match file {
        Some(path) => {
            let loaded = config::load_file(path).map_err(|e| e.to_string())?;
            if loaded.format != Format::Yaml {
                return Err(format!(
                    "{}: install writes a YAML config; convert it with \
                     `--show-user-config --config-format yaml`",
                    path.display()
                ));
            }
            Ok((loaded.text, loaded.config))
        }
        None => Ok((config::commented_template(Format::Yaml)?, Config::default())),
    }
}

/// What install writes; `cli` is the command line the man page and the
/// completions describe.
fn planned_files(
    layout: &Layout,
    config_text: &str,
    config: &Config,
    cli: &clap::Command,
) -> Result<Vec<Planned>, String> {
    let exe = std::env::current_exe().map_err(|e| format!("finding our own binary: {e}"))?;
    let binary = std::fs::read(&exe).map_err(|e| format!("{}: {e}", exe.display()))?;
    let unit_text = unit::render(
        config,
        &UnitPaths {
            binary: layout.binary,
            config: layout.config,
            defaults: layout.defaults,
        },
    );
    let man = dist::man_page(cli);
    let man = if layout.man_gz { gzip(&man) } else { man };
    let mut files = vec![
        Planned {
            path: layout.binary,
            kind: Kind::Program,
            mode: 0o755,
            bytes: binary,
        },
        Planned {
            path: layout.config,
            kind: Kind::Config,
            mode: 0o644,
            bytes: config_text.as_bytes().to_vec(),
        },
        Planned {
            path: layout.defaults,
            kind: Kind::Config,
            mode: 0o644,
            bytes: unit::defaults_file().into_bytes(),
        },
        Planned {
            path: layout.unit,
            kind: Kind::Program,
            mode: 0o644,
            bytes: unit_text.into_bytes(),
        },
        Planned {
            path: layout.man,
            kind: Kind::Program,
            mode: 0o644,
            bytes: man,
        },
    ];
    for (shell, path) in layout.completions {
        files.push(Planned {
            path,
            kind: Kind::Program,
            mode: 0o644,
            bytes: dist::completions(cli, shell),
        });
    }
    Ok(files)
}

/// gzip with no name and no timestamp (reproducible, as `gzip -9n`).
fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::best());
    // Writing into a Vec cannot fail.
    let _ = enc.write_all(bytes);
    enc.finish().unwrap_or_default()
}

/// Create the missing parents of `abs` under `root`, recording each.
fn create_parents(
    root: &Path,
    abs: &str,
    created: &mut Vec<String>,
    out: &Out,
) -> Result<(), String> {
    let mut missing = Vec::new();
    let mut dir = Path::new(abs).parent();
    while let Some(d) = dir {
        if d == Path::new("/") || under(root, &d.to_string_lossy()).is_dir() {
            break;
        }
        missing.push(d.to_string_lossy().into_owned());
        dir = d.parent();
    }
    for d in missing.into_iter().rev() {
        if created.contains(&d) {
            continue;
        }
        let target = under(root, &d);
        out.say("create", format!("{}/", target.display()));
        if !out.dry_run {
            std::fs::create_dir(&target).map_err(|e| format!("{}: {e}", target.display()))?;
            set_mode(&target, 0o755)?;
        }
        created.push(d);
    }
    Ok(())
}

/// Write through a temporary file and a rename, so a reader (or a running
/// copy of the binary being replaced) never sees half a file.
fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), String> {
    let tmp = path.with_extension("herakles-new");
    let err = |e: std::io::Error| format!("{}: {e}", path.display());
    std::fs::write(&tmp, bytes).map_err(err)?;
    set_mode(&tmp, mode)?;
    std::fs::rename(&tmp, path).map_err(err)
}

fn set_mode(path: &Path, mode: u32) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn read_manifest(path: &Path) -> Result<Option<Manifest>, String> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let shown = format!("{cmd:?}").replace('"', "");
    let status = cmd.status().map_err(|e| format!("running {shown}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{shown} failed: {status}"))
    }
}

fn systemctl(out: &Out, args: &[&str]) -> Result<(), String> {
    out.say("run", format!("systemctl {}", args.join(" ")));
    if out.dry_run {
        return Ok(());
    }
    run(Command::new("systemctl").args(args))
}

fn services_after_install(args: &InstallArgs, out: &Out) -> Result<(), String> {
    let unit = format!("{SERVICE}.service");
    if !systemd_running() {
        println!(
            "systemd is not running here: the unit is installed but not enabled; \
             once it runs: systemctl enable --now {unit}"
        );
        return Ok(());
    }
    systemctl(out, &["daemon-reload"])?;
    if args.no_service {
        println!("not enabling the service (--no-service): systemctl enable --now {unit}");
        return Ok(());
    }
    systemctl(out, &["enable", &unit])?;
    // A reinstall replaces a running binary: restart it so the new one runs.
    systemctl(out, &[if args.force { "restart" } else { "start" }, &unit])
}

/// `uninstall`.
pub fn uninstall(args: &UninstallArgs) -> i32 {
    match try_uninstall(args) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

fn try_uninstall(args: &UninstallArgs) -> Result<(), String> {
    let root = &args.root;
    let real = is_real_root(root);
    let Some(manifest_abs) = OPT.manifest else {
        unreachable!("the opt layout has a manifest")
    };
    let manifest_path = under(root, manifest_abs);
    let Some(manifest) = read_manifest(&manifest_path)? else {
        println!(
            "nothing to uninstall: no install manifest at {}",
            manifest_path.display()
        );
        return Ok(());
    };
    if real && !args.dry_run && !nix::unistd::Uid::effective().is_root() {
        return Err("uninstall needs root".into());
    }
    if !args.yes && !args.dry_run && !confirm(root)? {
        return Err("aborted; nothing removed".into());
    }
    let out = Out {
        dry_run: args.dry_run,
    };
    let unit = format!("{SERVICE}.service");
    if real && systemd_running() {
        // Fails harmlessly if the unit was never enabled or started.
        let _ = systemctl(&out, &["disable", "--now", &unit]);
    }
    for r in manifest.files.iter().rev() {
        let target = under(root, &r.path);
        let Ok(bytes) = std::fs::read(&target) else {
            continue;
        };
        if r.kind == Kind::Config && Some(sha256(&bytes)) != r.sha256 && !args.purge {
            out.say(
                "keep",
                format!(
                    "{} (edited since install; --purge removes it)",
                    target.display()
                ),
            );
            continue;
        }
        out.say("remove", target.display());
        if !args.dry_run {
            std::fs::remove_file(&target).map_err(|e| format!("{}: {e}", target.display()))?;
        }
    }
    out.say("remove", manifest_path.display());
    if !args.dry_run {
        std::fs::remove_file(&manifest_path)
            .map_err(|e| format!("{}: {e}", manifest_path.display()))?;
    }
    for d in manifest.dirs.iter().rev() {
        let target = under(root, d);
        if args.dry_run {
            out.say("remove", format!("{}/ (if empty)", target.display()));
            continue;
        }
        match std::fs::remove_dir(&target) {
            Ok(()) => out.say("remove", format!("{}/", target.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(_) => println!("keep {}/ (not empty)", target.display()),
        }
    }
    if real {
        if systemd_running() {
            systemctl(&out, &["daemon-reload"])?;
        }
        if manifest.user_created && nix::unistd::User::from_name(USER).ok().flatten().is_some() {
            out.say("remove", format!("system user {USER}"));
            if !args.dry_run {
                run(Command::new("userdel").arg(USER))?;
            }
        }
    }
    Ok(())
}

fn confirm(root: &Path) -> Result<bool, String> {
    eprint!(
        "Remove herakles-node-exporter (service, binary, unit, config) from {}? [y/N] ",
        root.display()
    );
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| format!("reading the answer: {e}"))?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    /// `herakles-node-exporter --check-config` on a host set up by
    /// `install` or the package must check the file the service runs with,
    /// after the spec's own locations, which keep their precedence.
    #[test]
    fn the_installed_config_is_a_default_location_after_the_specs() {
        let found = crate::config::default_locations(Some(Path::new("/home/u")));
        let spec: Vec<PathBuf> = [
            "herakles-node-exporter.yaml",
            "/home/u/.config/herakles/config.yaml",
            "/etc/herakles/config.yaml",
        ]
        .iter()
        .map(PathBuf::from)
        .collect();
        assert_eq!(found[..3], spec[..]);
        for layout in [OPT, PACKAGE] {
            assert!(
                found[3..].contains(&PathBuf::from(layout.config)),
                "{} not searched: {found:?}",
                layout.config
            );
        }
    }
}
