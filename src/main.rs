//! The `adamp-graph` command line.
fn main() -> std::process::ExitCode {
    adamp_graph::cli::main()
}
