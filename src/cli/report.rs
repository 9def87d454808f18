//! `adamp-graph report`: plots of one or more `train --log` files.
use std::path::PathBuf;

/// Arguments of `report`.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// The JSONL logs of `train --log`; several runs overlay, one colour each.
    #[arg(required = true, num_args = 1..)]
    pub logs: Vec<PathBuf>,
    /// The report to write (atomically): `.svg` for the picture, `.html` for a page with a table of final figures.
    #[arg(short, long)]
    pub output: PathBuf,
    /// How many tensors (largest norm growth) to draw one by one beside the means.
    #[arg(long, default_value_t = crate::report::DEFAULT_TOP_K)]
    pub top_k: usize,
}

/// Runs `report`: reads the logs, writes the report, says what it drew.
pub fn run(args: ReportArgs) -> anyhow::Result<()> {
    let data = crate::report::write_report(&args.logs, &args.output, args.top_k)?;
    let labels: Vec<&str> = data.runs.iter().map(|r| r.label.as_str()).collect();
    println!(
        "{}: {} run{} ({}); {} tensor{} drawn one by one",
        super::terminal::escape(&args.output.display().to_string()),
        data.runs.len(),
        if data.runs.len() == 1 { "" } else { "s" },
        super::terminal::escape(&labels.join(", ")),
        data.top_tensors.len(),
        if data.top_tensors.len() == 1 { "" } else { "s" },
    );
    Ok(())
}
