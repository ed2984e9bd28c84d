//! A custom exporter binary: the stock exporter plus a collector of your own.
//!
//! A third party does not fork the exporter. It makes a binary crate that
//! depends on `herakles-node-exporter` (the library: every built-in
//! collector, the config loader, the HTTP server and the CLI) and on its own
//! collector crates, which depend on `herakles-core` alone:
//!
//! ```toml
//! [dependencies]
//! herakles-node-exporter = "0.1"
//! my-collectors = { path = "../my-collectors" }
//! ```
//!
//! and whose `main` is the stock one plus one line per collector crate:
//!
//! ```ignore
//! use my_collectors as _; // keeps the crate, and so its registrations, linked
//!
//! fn main() {
//!     std::process::exit(herakles_node_exporter::cli::main());
//! }
//! ```
//!
//! The collector is then listed by `collectors`, has its config section
//! (validated, in `config --commented`), its `--collector.<name>` flags and
//! its series in `/metrics`, with no other change anywhere.
//!
//! To keep the example one file, the collector below is defined inline
//! rather than in its own crate; a collector in the binary crate itself
//! needs no `use` to stay linked. Run it with
//! `cargo run --example custom_build -- collectors`.

use herakles_core::{
    inventory, BuildCollector, BuildContext, Collector, Desc, MetricSink, Registration, Result,
    ScrapeContext,
};
use serde::{Deserialize, Serialize};

const ALLOCATED: Desc = Desc::gauge(
    "example_file_handles_allocated",
    "File handles allocated system-wide (first field of /proc/sys/fs/file-nr).",
);
const MAX: Desc = Desc::gauge(
    "example_file_handles_max",
    "Most file handles the kernel will allocate (third field of /proc/sys/fs/file-nr).",
);

/// The `collectors.example_file_handles` config section.
#[derive(Debug, Clone, Serialize, Deserialize, herakles_core::schemars::JsonSchema)]
#[schemars(crate = "herakles_core::schemars")]
#[serde(default, deny_unknown_fields)]
pub struct FileHandlesConfig {
    /// Also expose the system-wide limit, which rarely changes.
    pub include_max: bool,
}

impl Default for FileHandlesConfig {
    fn default() -> Self {
        FileHandlesConfig { include_max: true }
    }
}

/// File handle usage from `/proc/sys/fs/file-nr`.
pub struct FileHandles {
    include_max: bool,
}

impl Collector for FileHandles {
    fn collect(&self, ctx: &ScrapeContext, out: &mut MetricSink) -> Result<()> {
        // Under ctx.paths(), so --path.procfs and fixture trees work.
        let text = ctx.read_proc("sys/fs/file-nr")?;
        let fields: Vec<f64> = text
            .split_whitespace()
            .map_while(|f| f.parse().ok())
            .collect();
        let [allocated, _unused, max] = fields[..] else {
            out.parse_error();
            return Ok(());
        };
        out.single(&ALLOCATED, allocated);
        if self.include_max {
            out.single(&MAX, max);
        }
        Ok(())
    }
}

impl BuildCollector for FileHandles {
    type Config = FileHandlesConfig;

    fn build(config: FileHandlesConfig, _: &BuildContext) -> Result<Self> {
        Ok(FileHandles {
            include_max: config.include_max,
        })
    }
}

inventory::submit! {
    Registration::new::<FileHandles>(
        "example_file_handles",
        "File handles allocated and their limit (example of a custom build)",
        true,
        env!("CARGO_PKG_NAME"),
    )
}

fn main() {
    std::process::exit(herakles_node_exporter::cli::main());
}

#[cfg(test)]
mod tests {
    use super::*;
    use herakles_core::testing::collect_once;
    use herakles_core::{registrations, Paths};

    #[test]
    fn registered_beside_the_stock_collectors() {
        let names: Vec<&str> = registrations().iter().map(|r| r.name).collect();
        assert!(names.contains(&"example_file_handles"), "{names:?}");
        // A built-in collector and the first-party plugin crate are linked
        // into the custom binary through the library alone.
        assert!(names.contains(&"netdev"), "{names:?}");
        if cfg!(feature = "bpf-inventory") {
            assert!(names.contains(&"bpf_inventory"), "{names:?}");
        }
    }

    #[test]
    fn reads_the_fixture_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("sys/fs")).unwrap();
        std::fs::write(dir.path().join("sys/fs/file-nr"), "4128\t0\t9223372\n").unwrap();
        let paths = Paths {
            procfs: dir.path().to_path_buf(),
            ..Paths::default()
        };
        let got = collect_once::<FileHandles>(FileHandlesConfig::default(), paths.clone()).unwrap();
        assert_eq!(
            got.value("example_file_handles_allocated", &[]),
            Some(4128.0)
        );
        assert_eq!(got.value("example_file_handles_max", &[]), Some(9223372.0));

        let got =
            collect_once::<FileHandles>(FileHandlesConfig { include_max: false }, paths).unwrap();
        assert!(got.absent("example_file_handles_max"));

        std::fs::write(dir.path().join("sys/fs/file-nr"), "garbage\n").unwrap();
        let got = collect_once::<FileHandles>(
            FileHandlesConfig::default(),
            Paths {
                procfs: dir.path().to_path_buf(),
                ..Paths::default()
            },
        )
        .unwrap();
        assert_eq!(got.parse_errors, 1);
        assert!(got.absent("example_file_handles_allocated"));
    }
}
