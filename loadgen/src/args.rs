//! Command-line parsing: a small hand-rolled parser (no clap), producing a [`Config`].
//!
//! Accepted forms: `-c 10`, `-c10`, `--connections 10`, `--connections=10`.
//! Repeatable options (`-H`, `--connect-to`) accumulate; everything that does not start
//! with `-` is a URL.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::url::ConnectTo;

/// Everything a run needs, as given on the command line.
#[derive(Debug, Clone)]
pub struct Config {
    /// One or more URLs, requested round robin.
    pub urls: Vec<String>,
    /// Total connections over all threads (`-c`).
    pub connections: usize,
    /// Worker threads, one pinned per core (`-t`); `None` = number of cores.
    pub threads: Option<usize>,
    /// Measured duration (`-d`).
    pub duration: Duration,
    /// Run before the measured duration; its requests are excluded (`--warmup`).
    pub warmup: Duration,
    /// Open loop at this total rate in requests/s (`--rate`); `None` = closed loop.
    pub rate: Option<f64>,
    /// Request method (`-m`).
    pub method: String,
    /// Extra request headers (`-H 'Name: value'`), in order.
    pub headers: Vec<(String, String)>,
    /// Request body (`--body` / `--body-file`).
    pub body: Option<Vec<u8>>,
    /// Per-request timeout, from the send to the end of the response, and connect timeout.
    pub timeout: Duration,
    /// Send `HTTP/1.0` requests (no keep-alive: one connection per request).
    pub http10: bool,
    /// Keep connections alive between requests (`--no-keepalive` turns it off).
    pub keepalive: bool,
    /// Skip TLS certificate verification (`--insecure`, `-k`).
    pub insecure: bool,
    /// curl-style `--connect-to HOST:PORT:TARGET_HOST:TARGET_PORT` rules.
    pub connect_to: Vec<ConnectTo>,
    /// Print the detailed percentile spectrum (`--latency`).
    pub latency: bool,
    /// Print the per-second timeline in the summary (`--no-timeline` turns it off).
    pub timeline: bool,
    /// Write JSON results here (`--json`).
    pub json: Option<PathBuf>,
    /// Write the corrected histogram as an `.hgrm` percentile distribution here (`--hgrm`).
    pub hgrm: Option<PathBuf>,
    /// Write an SVG chart here (`--svg`).
    pub svg: Option<PathBuf>,
    /// Show the progress line (only ever on a terminal; `--no-progress` turns it off).
    pub progress: bool,
    /// Do not print the human summary (files are still written) (`--quiet`).
    pub quiet: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            urls: Vec::new(),
            connections: 10,
            threads: None,
            duration: Duration::from_secs(10),
            warmup: Duration::ZERO,
            rate: None,
            method: "GET".to_string(),
            headers: Vec::new(),
            body: None,
            timeout: Duration::from_secs(10),
            http10: false,
            keepalive: true,
            insecure: false,
            connect_to: Vec::new(),
            latency: false,
            timeline: true,
            json: None,
            hgrm: None,
            svg: None,
            progress: true,
            quiet: false,
        }
    }
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    Run(Box<Config>),
    Help,
    Version,
}

/// A bad command line; the message says what and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgError(pub String);

impl fmt::Display for ArgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ArgError {}

fn err<T>(msg: impl Into<String>) -> Result<T, ArgError> {
    Err(ArgError(msg.into()))
}

pub const USAGE: &str = "\
Usage: loadgen [OPTIONS] URL [URL...]

Open-loop HTTP/1.1 load generator and latency profiler (coordinated-omission corrected).

Load:
  -c, --connections N     total connections over all threads (default 10)
  -t, --threads N         worker threads, one pinned per core (default: number of cores)
  -d, --duration DUR      measured duration (default 10s); DUR is 500ms, 10s, 2m, 1h or seconds
      --warmup DUR        run this long first; its requests are excluded from results (default 0)
  -R, --rate N            open loop: N requests/s in total on an absolute schedule;
                          without it: closed loop (send when the previous response is done)
      --timeout DUR       per-request timeout (send to end of response) and connect timeout (default 10s)
Request:
  -m, --method M          request method (default GET)
  -H, --header 'N: V'     add a header (repeatable); 'Host: x' overrides the Host header
      --body STRING       request body
      --body-file PATH    request body from a file
      --http1.0           send HTTP/1.0 requests (no keep-alive)
      --no-keepalive      send 'Connection: close' and reconnect for every request
                          (alias: --disable-keepalive)
  -k, --insecure          do not verify TLS certificates
      --connect-to H:P:TH:TP
                          connect to TH:TP instead of H:P (like curl; empty parts match
                          any / keep the original); Host header and SNI stay those of the URL
Output:
      --latency           print the detailed percentile spectrum (wrk2 style)
      --no-timeline       do not print the per-second timeline
      --json FILE         write results as JSON (oha field names where they overlap)
      --hgrm FILE         write the corrected latency histogram as an HdrHistogram .hgrm file
      --svg FILE          write an SVG chart: percentile spectrum and per-second timeline
      --no-progress       no progress line (it is shown on a terminal only anyway)
  -q, --quiet             do not print the summary
  -h, --help              this help
  -V, --version           version

Several URLs are requested round robin. Exit status: 0 after a completed run (even with
HTTP errors), 2 on bad arguments, 1 when nothing could connect or the run failed.
";

/// Parses a duration: `500ms`, `10s`, `2m`, `1h`, `1.5s`, or a plain number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, ArgError> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let v: f64 = num.parse().map_err(|_| {
        ArgError(format!(
            "invalid duration '{s}' (use e.g. 500ms, 10s, 2m, 1h)"
        ))
    })?;
    let secs = match unit {
        "us" => v / 1e6,
        "ms" => v / 1e3,
        "s" => v,
        "m" => v * 60.0,
        "h" => v * 3600.0,
        _ => {
            return err(format!(
                "invalid duration unit in '{s}' (use us, ms, s, m or h)"
            ))
        }
    };
    if !secs.is_finite() || !(0.0..=1e9).contains(&secs) {
        return err(format!("duration '{s}' out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn parse_count(name: &str, s: &str) -> Result<usize, ArgError> {
    match s.parse::<usize>() {
        Ok(v) if v > 0 => Ok(v),
        _ => err(format!("{name} needs a positive integer, got '{s}'")),
    }
}

fn parse_header(s: &str) -> Result<(String, String), ArgError> {
    let Some((name, value)) = s.split_once(':') else {
        return err(format!("header '{s}' is not of the form 'Name: value'"));
    };
    let name = name.trim();
    if name.is_empty() || !name.bytes().all(is_token_byte) {
        return err(format!("header name '{name}' is not a valid HTTP token"));
    }
    let value = value.trim();
    if value.bytes().any(|b| b == b'\r' || b == b'\n') {
        return err(format!("header '{name}' has a line break in its value"));
    }
    Ok((name.to_string(), value.to_string()))
}

/// RFC 9110 token characters.
pub(crate) fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Parses the arguments after the program name.
pub fn parse<I, S>(args: I) -> Result<Command, ArgError>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let mut cfg = Config::default();
    let mut args = args.into_iter().map(Into::into).peekable();
    let mut body_set = false;
    let mut only_urls = false;

    while let Some(arg) = args.next() {
        if only_urls || !arg.starts_with('-') || arg == "-" {
            cfg.urls.push(arg);
            continue;
        }
        if arg == "--" {
            only_urls = true;
            continue;
        }
        // Split `--name=value` and `-cVALUE`.
        let (name, inline): (String, Option<String>) = if let Some(rest) = arg.strip_prefix("--") {
            match rest.split_once('=') {
                Some((n, v)) => (format!("--{n}"), Some(v.to_string())),
                None => (arg.clone(), None),
            }
        } else if arg.len() > 2 {
            (arg[..2].to_string(), Some(arg[2..].to_string()))
        } else {
            (arg.clone(), None)
        };

        let takes_value = matches!(
            name.as_str(),
            "-c" | "--connections"
                | "-t"
                | "--threads"
                | "-d"
                | "--duration"
                | "--warmup"
                | "-R"
                | "--rate"
                | "--timeout"
                | "-m"
                | "--method"
                | "-H"
                | "--header"
                | "--body"
                | "--body-file"
                | "--connect-to"
                | "--json"
                | "--hgrm"
                | "--svg"
        );
        let value = if takes_value {
            match inline {
                Some(v) => v,
                None => match args.next() {
                    Some(v) => v,
                    None => return err(format!("option {name} needs a value")),
                },
            }
        } else {
            if inline.is_some() {
                return err(format!("option {name} takes no value (in '{arg}')"));
            }
            String::new()
        };

        match name.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "-V" | "--version" => return Ok(Command::Version),
            "-c" | "--connections" => cfg.connections = parse_count("-c", &value)?,
            "-t" | "--threads" => cfg.threads = Some(parse_count("-t", &value)?),
            "-d" | "--duration" => {
                cfg.duration = parse_duration(&value)?;
                if cfg.duration.is_zero() {
                    return err("-d must be greater than zero");
                }
            }
            "--warmup" => cfg.warmup = parse_duration(&value)?,
            "-R" | "--rate" => {
                let r: f64 = value
                    .parse()
                    .map_err(|_| ArgError(format!("--rate needs a number, got '{value}'")))?;
                if !(r.is_finite() && r > 0.0) {
                    return err(format!("--rate must be greater than zero, got '{value}'"));
                }
                cfg.rate = Some(r);
            }
            "--timeout" => {
                cfg.timeout = parse_duration(&value)?;
                if cfg.timeout.is_zero() {
                    return err("--timeout must be greater than zero");
                }
            }
            "-m" | "--method" => {
                if value.is_empty() || !value.bytes().all(is_token_byte) {
                    return err(format!("method '{value}' is not a valid HTTP token"));
                }
                cfg.method = value;
            }
            "-H" | "--header" => cfg.headers.push(parse_header(&value)?),
            "--body" | "--body-file" => {
                if body_set {
                    return err("give the body once: --body or --body-file");
                }
                body_set = true;
                cfg.body = Some(if name == "--body" {
                    value.into_bytes()
                } else {
                    std::fs::read(&value)
                        .map_err(|e| ArgError(format!("cannot read --body-file '{value}': {e}")))?
                });
            }
            "--connect-to" => cfg.connect_to.push(ConnectTo::parse(&value)?),
            "--json" => cfg.json = Some(PathBuf::from(value)),
            "--hgrm" => cfg.hgrm = Some(PathBuf::from(value)),
            "--svg" => cfg.svg = Some(PathBuf::from(value)),
            "--http1.0" => cfg.http10 = true,
            "--no-keepalive" | "--disable-keepalive" => cfg.keepalive = false,
            "-k" | "--insecure" => cfg.insecure = true,
            "--latency" => cfg.latency = true,
            "--no-timeline" => cfg.timeline = false,
            "--no-progress" => cfg.progress = false,
            "-q" | "--quiet" => cfg.quiet = true,
            _ => return err(format!("unknown option '{arg}' (see --help)")),
        }
    }

    if cfg.urls.is_empty() {
        return err("no URL given (see --help)");
    }
    if cfg.http10 {
        cfg.keepalive = false;
    }
    Ok(Command::Run(Box::new(cfg)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Config {
        match parse(args.iter().copied()).unwrap() {
            Command::Run(c) => *c,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn parses_all_forms() {
        let c = run(&[
            "-c32",
            "-t",
            "2",
            "--duration=5s",
            "--warmup",
            "1s",
            "--rate",
            "2000",
            "-m",
            "POST",
            "-H",
            "Host: example.org",
            "-H",
            "X-A:b",
            "--body",
            "hi",
            "--timeout",
            "250ms",
            "--no-keepalive",
            "-k",
            "--connect-to",
            "example.org:80:127.0.0.1:8080",
            "--latency",
            "--json",
            "out.json",
            "http://example.org/",
            "http://example.org/b",
        ]);
        assert_eq!(c.connections, 32);
        assert_eq!(c.threads, Some(2));
        assert_eq!(c.duration, Duration::from_secs(5));
        assert_eq!(c.warmup, Duration::from_secs(1));
        assert_eq!(c.rate, Some(2000.0));
        assert_eq!(c.method, "POST");
        assert_eq!(c.headers[0], ("Host".into(), "example.org".into()));
        assert_eq!(c.headers[1], ("X-A".into(), "b".into()));
        assert_eq!(c.body.as_deref(), Some(&b"hi"[..]));
        assert_eq!(c.timeout, Duration::from_millis(250));
        assert!(!c.keepalive && c.insecure && c.latency);
        assert_eq!(c.connect_to.len(), 1);
        assert_eq!(c.urls.len(), 2);
        assert_eq!(c.json.as_deref(), Some(std::path::Path::new("out.json")));
    }

    #[test]
    fn http10_turns_keepalive_off() {
        let c = run(&["--http1.0", "http://a/"]);
        assert!(c.http10 && !c.keepalive);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn rejects_bad_input() {
        for bad in [
            vec![],
            vec!["-c", "0", "http://a/"],
            vec!["-c", "x", "http://a/"],
            vec!["--rate", "-5", "http://a/"],
            vec!["--rate", "abc", "http://a/"],
            vec!["-H", "nocolon", "http://a/"],
            vec!["-H", "bad name: x", "http://a/"],
            vec!["--frobnicate", "http://a/"],
            vec!["-d"],
            vec!["--latency=yes", "http://a/"],
            vec!["--body", "a", "--body", "b", "http://a/"],
            vec!["--body-file", "/nonexistent/file", "http://a/"],
            vec!["-d", "0s", "http://a/"],
        ] {
            assert!(parse(bad.iter().copied()).is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn help_and_version() {
        assert!(matches!(parse(["--help"]).unwrap(), Command::Help));
        assert!(matches!(parse(["-V"]).unwrap(), Command::Version));
    }
}
