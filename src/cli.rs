//! Command-line parsing. The contract (tests and users rely on it; extend, don't change):
//! `run [--config FILE] [--api PATH]... [--listen ADDR]... [--listen-tls ADDR]...
//! [--admin ADDR] [--workers N]` and `check [--config FILE] [--api PATH]...`.

use std::net::SocketAddr;
use std::path::PathBuf;

use log::LevelFilter;

use crate::control::log::LogFormat;

pub const USAGE: &str = "\
shardgate - thread-per-core io_uring API gateway for OpenAPI definitions

USAGE:
    shardgate run   [--config FILE] [--api PATH]... [--listen ADDR]... [--listen-tls ADDR]...
                    [--admin ADDR|off] [--workers N] [--driver uring|legacy] [--watch]
    shardgate check [--config FILE] [--api PATH]...
    shardgate token --key PEM --issuer ISS [--keytype SANDBOX] [--ttl 1h] [--claim k=v]...
                    [--kid ID] [--aud AUDIENCE]... [--sub SUBJECT]
    shardgate demo
    shardgate --version

COMMANDS:
    run      serve the APIs (HTTP 9090 and HTTPS 9095 unless configured otherwise)
    check    validate the configuration and print the route table; exit 1 on errors
    demo     run the example configuration with built-in upstreams (2380, 2381, 2390)
    token    mint a development JWT signed with a PEM private key (RS256 or ES256/ES384)

OPTIONS:
    --config FILE       gateway config (default: none, every setting takes its default)
    --api PATH          API definition file, directory, glob or apictl project; repeatable
    --listen ADDR       plain HTTP listener; with --listen-tls, replaces the configured ones
    --listen-tls ADDR   HTTPS listener; with --listen, replaces the configured ones
    --admin ADDR|off    admin listener (default 127.0.0.1:9000)
    --workers N         shards, one thread per core (default: all cores)
    --driver D          uring (io_uring only) or legacy (epoll only); default: io_uring,
                        falling back to epoll
    --watch             reload when the config or definition files change (ConfigMaps)
    --log-level L       error, warn, info, debug or trace (default: RUST_LOG, else info)
    --log-format F      human or json
";

/// Where the configuration comes from (shared by `run` and `check`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigArgs {
    pub config: Option<PathBuf>,
    pub apis: Vec<PathBuf>,
}

/// Which io driver shards use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Driver {
    /// io_uring, falling back to epoll where the kernel refuses it.
    #[default]
    Auto,
    Uring,
    Legacy,
}

/// `shardgate run`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunArgs {
    pub config: ConfigArgs,
    pub listen: Vec<SocketAddr>,
    pub listen_tls: Vec<SocketAddr>,
    /// `Some(None)` turns the admin listener off.
    pub admin: Option<Option<SocketAddr>>,
    pub workers: Option<usize>,
    pub driver: Driver,
    /// Reload when the configuration files change.
    pub watch: bool,
}

/// `shardgate token`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenArgs {
    pub key: PathBuf,
    pub issuer: String,
    pub keytype: Option<String>,
    pub ttl: Option<String>,
    pub claims: Vec<String>,
    pub kid: Option<String>,
    pub audience: Vec<String>,
    pub subject: Option<String>,
}

/// A parsed command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Run(RunArgs),
    Check(ConfigArgs),
    Token(TokenArgs),
    Demo,
    Help,
    Version,
}

/// The command and the logging options that go with any command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cli {
    pub command: Command,
    pub log_level: Option<LevelFilter>,
    pub log_format: LogFormat,
}

/// Parses `args` (without the program name).
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Cli, String> {
    let mut args = Args::new(args);
    let mut log_level = None;
    let mut log_format = LogFormat::Human;
    let Some(command) = args.next_word() else {
        return Ok(Cli {
            command: Command::Help,
            log_level,
            log_format,
        });
    };
    let mut run = RunArgs::default();
    let mut token = TokenArgs::default();
    let name = command.as_str();
    match name {
        "-h" | "--help" | "help" => {
            return Ok(Cli {
                command: Command::Help,
                log_level,
                log_format,
            })
        }
        "-V" | "--version" | "version" => {
            return Ok(Cli {
                command: Command::Version,
                log_level,
                log_format,
            })
        }
        "run" | "check" | "token" | "demo" => {}
        other => return Err(format!("unknown command '{other}'\n\n{USAGE}")),
    }
    while let Some((flag, inline)) = args.next_flag()? {
        let mut value = || args.value(&flag, inline.clone());
        match (name, flag.as_str()) {
            ("token", "--key") => token.key = PathBuf::from(value()?),
            ("token", "--issuer") => token.issuer = value()?,
            ("token", "--keytype") => token.keytype = Some(value()?),
            ("token", "--ttl") => token.ttl = Some(value()?),
            ("token", "--claim") => token.claims.push(value()?),
            ("token", "--kid") => token.kid = Some(value()?),
            ("token", "--aud") => token.audience.push(value()?),
            ("token", "--sub") => token.subject = Some(value()?),
            (_, "--log-level") => log_level = Some(parse_value(&flag, &value()?)?),
            (_, "--log-format") => log_format = value()?.parse()?,
            (_, "-h" | "--help") => {
                return Ok(Cli {
                    command: Command::Help,
                    log_level,
                    log_format,
                })
            }
            ("demo", _) => {
                return Err(format!(
                    "demo takes no options except logging ones\n\n{USAGE}"
                ))
            }
            ("token", _) => return Err(format!("token: unknown option '{flag}'\n\n{USAGE}")),
            (_, "--config" | "-c") => run.config.config = Some(PathBuf::from(value()?)),
            (_, "--api") => run.config.apis.push(PathBuf::from(value()?)),
            ("run", "--listen") => run.listen.push(parse_value(&flag, &value()?)?),
            ("run", "--listen-tls") => run.listen_tls.push(parse_value(&flag, &value()?)?),
            ("run", "--admin") => {
                let text = value()?;
                run.admin = Some(if text == "off" {
                    None
                } else {
                    Some(parse_value(&flag, &text)?)
                });
            }
            ("run", "--workers") => match parse_value::<usize>(&flag, &value()?)? {
                0 => return Err("--workers must be at least 1".to_owned()),
                n => run.workers = Some(n),
            },
            ("run", "--watch") => run.watch = true,
            ("run", "--driver") => {
                run.driver = match value()?.as_str() {
                    "uring" | "io_uring" => Driver::Uring,
                    "legacy" | "epoll" => Driver::Legacy,
                    other => {
                        return Err(format!(
                            "--driver: unknown driver '{other}'; expected uring or legacy"
                        ))
                    }
                }
            }
            _ => return Err(format!("{name}: unknown option '{flag}'\n\n{USAGE}")),
        }
    }
    let command = match name {
        "run" => Command::Run(run),
        "token" if token.key.as_os_str().is_empty() || token.issuer.is_empty() => {
            return Err(format!("token needs --key PEM and --issuer ISS\n\n{USAGE}"))
        }
        "token" => Command::Token(token),
        "demo" => Command::Demo,
        _ => Command::Check(run.config),
    };
    Ok(Cli {
        command,
        log_level,
        log_format,
    })
}

fn parse_value<T: std::str::FromStr>(flag: &str, text: &str) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    text.parse().map_err(|e| format!("{flag}: '{text}': {e}"))
}

struct Args {
    items: std::vec::IntoIter<String>,
}

impl Args {
    fn new(args: impl IntoIterator<Item = String>) -> Self {
        Self {
            items: args.into_iter().collect::<Vec<_>>().into_iter(),
        }
    }

    fn next_word(&mut self) -> Option<String> {
        self.items.next()
    }

    /// The next `--flag` (and its `=value` if written inline).
    fn next_flag(&mut self) -> Result<Option<(String, Option<String>)>, String> {
        let Some(item) = self.items.next() else {
            return Ok(None);
        };
        if !item.starts_with('-') {
            return Err(format!("unexpected argument '{item}'"));
        }
        Ok(Some(match item.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => {
                (flag.to_owned(), Some(value.to_owned()))
            }
            _ => (item, None),
        }))
    }

    fn value(&mut self, flag: &str, inline: Option<String>) -> Result<String, String> {
        inline
            .or_else(|| self.items.next())
            .ok_or_else(|| format!("{flag} needs a value"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_args(args: &[&str]) -> Result<Command, String> {
        parse(args.iter().map(|s| s.to_string())).map(|c| c.command)
    }

    #[test]
    fn run_takes_every_documented_option() {
        let Command::Run(run) = parse_args(&[
            "run",
            "--config",
            "c.yaml",
            "--api",
            "a",
            "--api=b",
            "--listen",
            "127.0.0.1:0",
            "--listen-tls",
            "[::1]:8443",
            "--admin",
            "off",
            "--workers",
            "2",
            "--driver",
            "legacy",
        ])
        .unwrap() else {
            panic!()
        };
        assert_eq!(run.config.config, Some(PathBuf::from("c.yaml")));
        assert_eq!(
            run.config.apis,
            vec![PathBuf::from("a"), PathBuf::from("b")]
        );
        assert_eq!(run.listen, vec!["127.0.0.1:0".parse().unwrap()]);
        assert_eq!(run.listen_tls, vec!["[::1]:8443".parse().unwrap()]);
        assert_eq!(run.admin, Some(None));
        assert_eq!(run.workers, Some(2));
        assert_eq!(run.driver, Driver::Legacy);
    }

    #[test]
    fn check_takes_config_and_apis_only() {
        assert_eq!(
            parse_args(&["check", "--api", "x"]).unwrap(),
            Command::Check(ConfigArgs {
                config: None,
                apis: vec![PathBuf::from("x")]
            })
        );
        assert!(parse_args(&["check", "--listen", "127.0.0.1:1"])
            .unwrap_err()
            .contains("unknown option '--listen'"));
    }

    #[test]
    fn bad_values_say_which_flag() {
        assert!(parse_args(&["run", "--listen", "nope"])
            .unwrap_err()
            .starts_with("--listen: 'nope'"));
        assert!(parse_args(&["run", "--workers", "0"]).is_err());
        assert!(parse_args(&["run", "--config"])
            .unwrap_err()
            .contains("needs a value"));
        assert!(parse_args(&["serve"])
            .unwrap_err()
            .contains("unknown command 'serve'"));
    }

    #[test]
    fn token_needs_key_and_issuer() {
        let Command::Token(t) = parse_args(&[
            "token",
            "--key",
            "k.pem",
            "--issuer",
            "i",
            "--keytype",
            "SANDBOX",
            "--claim",
            "a=1",
            "--claim",
            "b=x",
        ])
        .unwrap() else {
            panic!()
        };
        assert_eq!(
            (t.key, t.issuer, t.keytype),
            (
                PathBuf::from("k.pem"),
                "i".to_owned(),
                Some("SANDBOX".to_owned())
            )
        );
        assert_eq!(t.claims, vec!["a=1", "b=x"]);
        assert!(parse_args(&["token", "--key", "k.pem"])
            .unwrap_err()
            .contains("needs --key PEM and --issuer"));
        assert!(parse_args(&["token", "--key", "k", "--issuer", "i", "--api", "x"]).is_err());
    }

    #[test]
    fn logging_options_apply_to_any_command() {
        let cli =
            parse(["check", "--log-level", "debug", "--log-format", "json"].map(String::from))
                .unwrap();
        assert_eq!(cli.log_level, Some(LevelFilter::Debug));
        assert_eq!(cli.log_format, LogFormat::Json);
    }
}
