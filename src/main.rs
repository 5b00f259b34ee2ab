//! The `shardgate` command line: `run`, `check`.

use std::process::ExitCode;

use shardgate::auth::{mint_token, parse_claim, parse_ttl, KeyType, MintOptions};
use shardgate::cli::{self, Command, ConfigArgs, TokenArgs};
use shardgate::snapshot::{LoadOptions, Snapshot};

fn main() -> ExitCode {
    let cli = match cli::parse(std::env::args().skip(1)) {
        Ok(cli) => cli,
        Err(message) => {
            eprintln!("shardgate: {message}");
            return ExitCode::from(2);
        }
    };
    shardgate::log::init(cli.log_format, cli.log_level);
    match cli.command {
        Command::Help => {
            print!("{}", cli::USAGE);
            ExitCode::SUCCESS
        }
        Command::Version => {
            println!("shardgate {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Check(args) => check(&args),
        Command::Token(args) => match token(&args) {
            Ok(token) => {
                println!("{token}");
                ExitCode::SUCCESS
            }
            Err(message) => {
                eprintln!("shardgate token: {message}");
                ExitCode::FAILURE
            }
        },
        Command::Run(_) => {
            eprintln!("shardgate: run is not available in this build yet");
            ExitCode::FAILURE
        }
    }
}

fn load_options(args: &ConfigArgs, resolve_hosts: bool) -> LoadOptions {
    LoadOptions {
        config: args.config.clone(),
        apis: args.apis.clone(),
        resolve_hosts,
    }
}

/// Validates and prints the route table; exit 1 with every error otherwise.
fn check(args: &ConfigArgs) -> ExitCode {
    match Snapshot::load(&load_options(args, false)) {
        Ok(snapshot) => {
            for warning in &snapshot.warnings {
                log::warn!("{warning}");
            }
            print!("{}", snapshot.route_table());
            println!(
                "OK: {} APIs, {} routes, {} endpoint groups, {} endpoints",
                snapshot.apis.len(),
                snapshot.routes.len(),
                snapshot.groups.len(),
                snapshot.endpoints.len()
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for error in &errors.0 {
                eprintln!("error: {error}");
            }
            eprintln!(
                "shardgate: configuration is invalid ({} errors)",
                errors.0.len()
            );
            ExitCode::FAILURE
        }
    }
}

/// Mints a development token.
fn token(args: &TokenArgs) -> Result<String, String> {
    let key =
        std::fs::read(&args.key).map_err(|e| format!("cannot read {}: {e}", args.key.display()))?;
    let mut options = MintOptions::new(args.issuer.clone());
    if let Some(keytype) = &args.keytype {
        options.key_type = KeyType::from_claim(keytype)
            .ok_or_else(|| format!("--keytype '{keytype}': expected PRODUCTION or SANDBOX"))?;
    }
    if let Some(ttl) = &args.ttl {
        options.ttl_secs = parse_ttl(ttl).map_err(|e| e.to_string())?;
    }
    if let Some(subject) = &args.subject {
        options.subject = subject.clone();
    }
    options.kid = args.kid.clone();
    options.audience = args.audience.clone();
    for claim in &args.claims {
        options
            .extra_claims
            .push(parse_claim(claim).map_err(|e| e.to_string())?);
    }
    mint_token(&key, &options).map_err(|e| e.to_string())
}
