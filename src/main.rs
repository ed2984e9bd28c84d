//! The herakles-node-exporter binary.

fn main() {
    std::process::exit(herakles_node_exporter::cli::main());
}
