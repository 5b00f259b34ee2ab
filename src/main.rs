//! The `shardgate` command line: `run`, `check`.

use std::process::ExitCode;

use shardgate::auth::{mint_token, parse_claim, parse_ttl, KeyType, MintOptions};
use shardgate::cli::{self, Command, ConfigArgs, RunArgs, TokenArgs};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shardgate::compile::snapshot::{LoadOptions, Snapshot};
use shardgate::control::admin::{AdminServer, Reloader};
use shardgate::control::server::Server;
use shardgate::control::signals::{self, Signal};
use shardgate::control::watch::Watcher;
use shardgate::data::shared::Shared;

fn main() -> ExitCode {
    let cli = match cli::parse(std::env::args().skip(1)) {
        Ok(cli) => cli,
        Err(message) => {
            eprintln!("shardgate: {message}");
            return ExitCode::from(2);
        }
    };
    shardgate::control::log::init(cli.log_format, cli.log_level);
    let code = match cli.command {
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
        Command::Run(args) => run(&args),
        Command::Demo => demo(),
    };
    // The log writer is a thread of its own: what was logged is written before exit.
    log::logger().flush();
    code
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

/// Loads the configuration for `run` with the command line's overrides applied: the first
/// load, or a reload after `current` (whose upstream table it shares).
fn load_for_run(
    args: &RunArgs,
    current: Option<&Snapshot>,
) -> Result<Snapshot, shardgate::compile::config::ConfigErrors> {
    let options = load_options(&args.config, true);
    let mut snapshot = match current {
        None => Snapshot::load(&options)?,
        Some(current) => Snapshot::load_next(&options, current)?,
    };
    let gateway = &mut snapshot.gateway;
    // --listen / --listen-tls replace the configured listeners: only those named are opened.
    if !args.listen.is_empty() || !args.listen_tls.is_empty() {
        gateway.listeners.http = args.listen.clone();
        gateway.listeners.https = args.listen_tls.clone();
    }
    if let Some(admin) = args.admin {
        gateway.admin = admin;
    }
    if let Some(workers) = args.workers {
        gateway.workers = workers;
    }
    Ok(snapshot)
}

fn report_errors(errors: &shardgate::compile::config::ConfigErrors) {
    for error in &errors.0 {
        log::error!("{error}");
    }
}

/// Serves until SIGTERM/SIGINT; SIGHUP reloads.
fn run(args: &RunArgs) -> ExitCode {
    match start(args) {
        Some(running) => serve_until_stopped(running, args),
        None => ExitCode::FAILURE,
    }
}

/// A started gateway: the shards, the admin listener, the reload path.
struct Running {
    server: Server,
    admin: Option<AdminServer>,
    reloader: Reloader,
}

/// Loads the configuration, binds the listeners, starts the admin listener (so `/ready`
/// can say "starting"), then the shards; logs and returns None on failure.
fn start(args: &RunArgs) -> Option<Running> {
    let snapshot = match load_for_run(args, None) {
        Ok(snapshot) => snapshot,
        Err(errors) => {
            report_errors(&errors);
            log::error!("configuration is invalid; not starting");
            return None;
        }
    };
    for warning in &snapshot.warnings {
        log::warn!("{warning}");
    }
    log::info!(
        "shardgate {} starting: config {}, {} APIs, {} routes, {} endpoints",
        env!("CARGO_PKG_VERSION"),
        args.config
            .config
            .as_deref()
            .map_or("(defaults)".into(), |p| p.display().to_string()),
        snapshot.apis.len(),
        snapshot.routes.len(),
        snapshot.endpoints.len()
    );
    raise_open_file_limit();
    if let Err(e) = signals::block() {
        log::error!("cannot block signals: {e}");
        return None;
    }
    let bound = match Server::bind(snapshot) {
        Ok(bound) => bound,
        Err(e) => {
            log::error!("{e}");
            return None;
        }
    };
    let shared = Arc::clone(bound.shared());
    let reloader = reloader(Arc::clone(&shared), args.clone());
    let admin_addr = shared.snapshot().0.gateway.admin;
    let admin = match admin_addr
        .map(|addr| AdminServer::start(addr, Arc::clone(&shared), Arc::clone(&reloader)))
    {
        Some(Ok(admin)) => {
            log::info!("admin listening on http://{}", admin.addr);
            Some(admin)
        }
        Some(Err(e)) => {
            log::error!("{e}");
            return None;
        }
        None => None,
    };
    let server = match bound.start(args.driver) {
        Ok(server) => server,
        Err(e) => {
            log::error!("{e}");
            return None;
        }
    };
    for (shard, driver) in server.drivers.iter().enumerate() {
        log::info!("shard {shard}: io driver {driver}");
    }
    log::info!("workers: {}", server.workers());
    for addr in &server.http_addrs {
        log::info!("listening http {addr}");
    }
    for addr in &server.https_addrs {
        log::info!("listening https {addr}");
    }
    let (snapshot, _) = server.shared().snapshot();
    if !server.https_addrs.is_empty() {
        if let Some(generated) = snapshot.tls.server.self_signed() {
            log::warn!(
                "no TLS certificate configured: serving a generated self-signed one, SHA-256 {}",
                generated.fingerprint_sha256
            );
        }
    }
    if !snapshot.tls.upstream.verifies_certificates() {
        log::warn!(
            "upstream.tls.insecure_skip_verify is on: https upstream certificates are not verified"
        );
    }
    Some(Running {
        server,
        admin,
        reloader,
    })
}

/// Waits for signals: SIGHUP reloads, SIGTERM/SIGINT drain and exit 0. The admin listener
/// and the file watcher (with `--watch`) reload through the same path.
fn serve_until_stopped(running: Running, args: &RunArgs) -> ExitCode {
    let Running {
        server,
        admin,
        reloader,
    } = running;
    let _watcher = if args.watch {
        let roots_args = args.clone();
        let watch_reload = Arc::clone(&reloader);
        match Watcher::spawn(
            Duration::from_secs(1),
            move || watched_paths(&roots_args),
            move || {
                log::info!("configuration files changed; reloading");
                let _ = watch_reload();
            },
        ) {
            Ok(watcher) => {
                log::info!("watching the configuration files for changes");
                Some(watcher)
            }
            Err(e) => {
                log::error!("cannot watch the configuration files: {e}");
                None
            }
        }
    } else {
        None
    };
    loop {
        match signals::wait() {
            Ok(Signal::Reload) => {
                let _ = reloader();
            }
            Ok(Signal::Terminate) => break,
            Err(e) => {
                log::error!("waiting for signals failed: {e}");
                break;
            }
        }
    }
    log::info!("draining: no new connections; waiting for in-flight requests");
    // The admin listener stays up during the drain (/ready says 503).
    server.stop();
    if let Some(admin) = admin {
        admin.stop();
    }
    log::info!("stopped");
    ExitCode::SUCCESS
}

/// The one reload path (SIGHUP, POST /reload, --watch): parse and validate once, then
/// publish; an invalid configuration is rejected and the old one keeps serving.
fn reloader(shared: Arc<Shared>, args: RunArgs) -> Reloader {
    let serial = Mutex::new(());
    Arc::new(move || {
        let _one_at_a_time = serial.lock().unwrap_or_else(|e| e.into_inner());
        let (current, _) = shared.snapshot();
        match load_for_run(&args, Some(&current)) {
            Ok(snapshot) => {
                for warning in &snapshot.warnings {
                    log::warn!("{warning}");
                }
                let fixed = [
                    (
                        "listeners",
                        snapshot.gateway.listeners != current.gateway.listeners,
                    ),
                    (
                        "workers",
                        snapshot.gateway.workers != current.gateway.workers,
                    ),
                    ("admin", snapshot.gateway.admin != current.gateway.admin),
                ];
                for (field, changed) in fixed {
                    if changed {
                        log::warn!(
                            "reload: '{field}' changed; it takes effect at the next restart"
                        );
                    }
                }
                let summary = format!(
                    "{} APIs, {} routes, {} endpoints",
                    snapshot.apis.len(),
                    snapshot.routes.len(),
                    snapshot.endpoints.len()
                );
                if let Err(refused) = shared.publish(snapshot) {
                    log::error!(
                        "reload not published: {refused}; the previous configuration keeps serving"
                    );
                    return Err(refused.to_string());
                }
                log::info!("reload: {summary}; generation {}", shared.generation());
                Ok(summary)
            }
            Err(errors) => {
                report_errors(&errors);
                log::error!("reload rejected; the previous configuration keeps serving");
                Err(errors.to_string())
            }
        }
    })
}

/// The files `--watch` fingerprints: the gateway file and the definition paths it and the
/// command line name.
fn watched_paths(args: &RunArgs) -> Vec<std::path::PathBuf> {
    let mut paths = args.config.apis.clone();
    if let Some(config) = &args.config.config {
        paths.push(config.clone());
        if let Ok(gateway) = shardgate::compile::config::gateway::GatewayConfig::load(config) {
            let base = config.parent().unwrap_or(std::path::Path::new(""));
            paths.extend(gateway.apis.iter().map(|entry| {
                // A glob's directory is watched (new matching files appear there).
                let literal = entry
                    .find(['*', '?', '['])
                    .map_or(entry.as_str(), |i| &entry[..i]);
                let dir = if literal.len() < entry.len() {
                    literal.rfind('/').map_or("", |i| &literal[..i])
                } else {
                    literal
                };
                base.join(dir)
            }));
        }
    }
    paths
}

/// The example configuration with built-in upstreams, for a first look.
fn demo() -> ExitCode {
    let config = std::path::PathBuf::from("config/gateway.yaml");
    if !config.is_file() {
        eprintln!(
            "shardgate demo: run it from the repository root (config/gateway.yaml not found)"
        );
        return ExitCode::FAILURE;
    }
    let mut upstreams = Vec::new();
    for port in [2380, 2381, 2390] {
        match shardgate::demo::DemoUpstream::start(port) {
            Ok(upstream) => upstreams.push(upstream),
            Err(e) => {
                eprintln!(
                    "shardgate demo: cannot start the demo upstream on 127.0.0.1:{port}: {e}"
                );
                return ExitCode::FAILURE;
            }
        }
    }
    let args = RunArgs {
        config: ConfigArgs {
            config: Some(config),
            apis: vec![],
        },
        ..RunArgs::default()
    };
    let Some(running) = start(&args) else {
        return ExitCode::FAILURE;
    };
    let token = token(&TokenArgs {
        key: "config/dev-only/jwt-dev-only.key.pem".into(),
        issuer: "https://localhost/dev-only".into(),
        ttl: Some("12h".into()),
        ..TokenArgs::default()
    })
    .unwrap_or_else(|e| format!("<could not mint a token: {e}>"));
    if let Some(http) = running.server.http_addrs.first() {
        println!("{}", shardgate::demo::instructions(*http, &token));
    }
    std::thread::spawn(move || shardgate::demo::control_loop(&upstreams));
    serve_until_stopped(running, &args)
}

/// Raises the soft open-file limit to the hard one: every client and upstream connection is
/// a file descriptor, and containers often start with a soft limit of 1024.
fn raise_open_file_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            let wanted = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) == 0 {
                log::debug!(
                    "open-file limit raised from {} to {}",
                    limit.rlim_cur,
                    limit.rlim_max
                );
            }
        }
    }
}
