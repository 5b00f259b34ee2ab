//! `loadgen`: the command-line front end of the `loadgen` library.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use loadgen::args::{self, Command, USAGE};
use loadgen::{report, Event, RunError};

fn main() -> ExitCode {
    let cmd = match args::parse(std::env::args().skip(1)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("loadgen: {e}");
            return ExitCode::from(2);
        }
    };
    let cfg = match cmd {
        Command::Help => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Command::Version => {
            println!("loadgen {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Command::Run(cfg) => cfg,
    };

    let tty = cfg.progress && std::io::stderr().is_terminal();
    let mut printed_progress = false;
    let result = loadgen::run(&cfg, |ev| {
        if !tty {
            return;
        }
        let mut err = std::io::stderr().lock();
        match ev {
            Event::Started {
                connected, warmup, ..
            } => {
                let _ = write!(err, "\r\x1b[2K{connected} connections up");
                if !warmup.is_zero() {
                    let _ = write!(err, ", warming up for {warmup:?}");
                }
            }
            Event::Second { row, of } => {
                let _ = write!(err, "\r\x1b[2K{}", report::progress_line(row, of));
            }
        }
        printed_progress = true;
        let _ = err.flush();
    });
    if printed_progress {
        eprint!("\r\x1b[2K");
    }
    let result = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("loadgen: {e}");
            return match e {
                RunError::Invalid(_) => ExitCode::from(2),
                RunError::Failed(_) => ExitCode::from(1),
            };
        }
    };

    if !cfg.quiet {
        let mut out = report::summary(&result, cfg.timeline);
        if cfg.latency {
            out.push('\n');
            out.push_str(&report::spectrum(&result));
        }
        print!("{out}");
    }
    let mut failed = false;
    let mut write = |path: &std::path::Path, what: &str, text: String| {
        if let Err(e) = std::fs::write(path, text) {
            eprintln!("loadgen: cannot write {what} to {}: {e}", path.display());
            failed = true;
        }
    };
    if let Some(p) = &cfg.json {
        let text =
            serde_json::to_string_pretty(&loadgen::json::to_json(&result)).expect("JSON") + "\n";
        write(p, "JSON", text);
    }
    if let Some(p) = &cfg.hgrm {
        write(
            p,
            "the .hgrm file",
            loadgen::hgrm::render(&result.totals.corrected),
        );
    }
    if let Some(p) = &cfg.svg {
        write(p, "the SVG chart", loadgen::svg::render(&result));
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
