//! `config` (write a template), `--show-config`, `--show-user-config` and
//! `--check-config`.

use std::path::PathBuf;

use herakles_core::BuildContext;

use crate::config::{commented_template, Config, Format, LoadedFile};
use crate::exporter::build_collectors_in;
use crate::web::WebConfig;

/// `config`: a config file with every key at its default, commented or not,
/// to `output` or standard output.
pub fn write_template(format: Format, commented: bool, output: Option<&PathBuf>) -> i32 {
    let text = if commented {
        commented_template(format)
    } else {
        format.to_string(&Config::default())
    };
    let text = match text {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    match output {
        Some(path) => match std::fs::write(path, text) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("error: {}: {e}", path.display());
                1
            }
        },
        None => {
            print!("{text}");
            0
        }
    }
}

/// `--show-config`: any value (the effective config) in `format`.
pub fn print_formatted<T: serde::Serialize>(value: &T, format: Format) -> i32 {
    match format.to_string(value) {
        Ok(t) => {
            print!("{t}");
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

/// `--show-user-config`: the config file as loaded, re-encoded only when
/// another format is asked for.
pub fn show_user_config(file: Option<&LoadedFile>, format: Format) -> i32 {
    let Some(file) = file else {
        println!("# no config file loaded");
        return 0;
    };
    println!("# {}", file.path.display());
    if format == file.format {
        print!("{}", file.text);
        return 0;
    }
    // Re-encode only what the user wrote, not the defaults around it.
    let value: Result<serde_json::Value, String> = match file.format {
        Format::Yaml => serde_norway::from_str(&file.text).map_err(|e| e.to_string()),
        Format::Json => serde_json::from_str(&file.text).map_err(|e| e.to_string()),
        Format::Toml => toml::from_str(&file.text).map_err(|e| e.to_string()),
    };
    match value {
        Ok(v) => print_formatted(&v, format),
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

/// `--check-config`: load the web config (or the `enable_tls` files), build
/// every enabled collector, then release them.
pub fn check(ctx: &BuildContext, config: &Config) -> i32 {
    let web = match crate::web::configured(config) {
        Ok(web) => web,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    match build_collectors_in(ctx, config) {
        Ok(built) => {
            for (_, c) in &built {
                c.shutdown();
            }
            println!("configuration OK ({} collectors enabled)", built.len());
            if let Some(summary) = web_summary(&web) {
                println!("web configuration OK: {summary}");
            }
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            2
        }
    }
}

/// What a web configuration turns on, in a few words; `None` for plain
/// HTTP with nothing else.
fn web_summary(web: &WebConfig) -> Option<String> {
    let mut parts = Vec::new();
    if let Some(tls) = &web.tls {
        parts.push(format!(
            "HTTPS with {} ({}..{}), client certificates: {}",
            tls.cert_file.display(),
            tls.min_version.name(),
            tls.max_version.name(),
            tls.client_auth.name()
        ));
    }
    let users = web.users.names().count();
    if users > 0 {
        parts.push(format!("basic auth, {users} user(s)"));
    }
    if !web.headers.is_empty() {
        parts.push(format!("{} response header(s)", web.headers.iter().count()));
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}
