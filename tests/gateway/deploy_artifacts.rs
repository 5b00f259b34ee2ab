//! The deployment artifacts as an operator meets them: `scripts/shardgate.service`,
//! `scripts/install.sh`, `scripts/tune-host.sh` and `deploy/kubernetes/`.
//!
//! Nothing here needs systemd, root or a cluster. Optional tools are used when present and
//! skipped with a message otherwise: `systemd-analyze` (unit verification, syscall groups),
//! `shellcheck`, `setpriv` (a non-root run from root), and `kubernetes-validate` (the
//! Kubernetes JSON schemas, offline; `pip install kubernetes-validate==1.37.0`). With
//! `SHARDGATE_REQUIRE_K8S_VALIDATOR=1` a missing `kubernetes-validate` fails instead.
//! The scripts only ever run in dry-run mode, or with `--apply` into temporary directories
//! (and a fake /proc/sys), never against the host.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::net::SocketAddr;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::SystemTime;

use serde::Deserialize;
use serde_yaml::Value;
use shardgate::compile::config::gateway::GatewayConfig;

// ------------------------------------------------------------------------------ helpers

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `bash SCRIPT ARGS` from the repository root.
fn script(name: &str, args: &[&str]) -> Output {
    Command::new("bash")
        .arg(repo().join("scripts").join(name))
        .args(args)
        .current_dir(repo())
        .output()
        .unwrap_or_else(|e| panic!("run {name}: {e}"))
}

fn tool_available(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool} >/dev/null 2>&1")])
        .status()
        .is_ok_and(|s| s.success())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Every file under `dir` with its size and modification time: compared before and after a
/// dry run to show it wrote nothing.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Option<(u64, SystemTime)>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = fs::symlink_metadata(&path).ok();
        if let Some(meta) = &meta {
            if meta.is_dir() {
                for entry in fs::read_dir(&path).unwrap().flatten() {
                    stack.push(entry.path());
                }
            }
        }
        files.insert(
            path,
            meta.map(|m| (m.len(), m.modified().unwrap_or(SystemTime::UNIX_EPOCH))),
        );
    }
    files
}

fn tempdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    // Readable by the unprivileged user of the non-root runs.
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// `script ARGS` as uid/gid 65534 (from root, through setpriv), or as the current user when
/// not root. None when neither is possible. The script is copied to a world-readable place
/// first so that the checkout's permissions do not matter.
fn run_unprivileged(name: &str, args: &[&str]) -> Option<Output> {
    let dir = tempdir();
    let copy = dir.path().join(name);
    fs::copy(repo().join("scripts").join(name), &copy).unwrap();
    fs::set_permissions(&copy, fs::Permissions::from_mode(0o755)).unwrap();
    let mut command = if is_root() {
        if !tool_available("setpriv") {
            return None;
        }
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid",
            "65534",
            "--regid",
            "65534",
            "--clear-groups",
            "bash",
        ]);
        c
    } else {
        Command::new("bash")
    };
    Some(
        command
            .arg(&copy)
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap(),
    )
}

/// The example configuration install.sh installs, and its drain time.
fn example_drain_secs() -> u64 {
    let config = GatewayConfig::parse(
        Path::new("config/gateway.yaml"),
        &read("config/gateway.yaml"),
    )
    .expect("config/gateway.yaml parses");
    config.timeouts.drain_ms.div_ceil(1000)
}

// ------------------------------------------------------------------------ systemd unit

/// `[Section]` -> (key, value) in file order; a key may repeat (ExecStartPre=, filters).
type Unit = BTreeMap<String, Vec<(String, String)>>;

fn parse_unit(text: &str) -> Unit {
    let mut unit = Unit::new();
    let mut section = String::new();
    let mut pending = String::new();
    for raw in text.lines() {
        let line = raw.trim();
        if pending.is_empty() && (line.is_empty() || line.starts_with('#') || line.starts_with(';'))
        {
            continue;
        }
        // A trailing backslash continues the line.
        if let Some(head) = line.strip_suffix('\\') {
            pending.push_str(head);
            pending.push(' ');
            continue;
        }
        let full = format!("{pending}{line}");
        pending.clear();
        if let Some(name) = full.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            section = name.to_string();
            unit.entry(section.clone()).or_default();
            continue;
        }
        let (key, value) = full
            .split_once('=')
            .unwrap_or_else(|| panic!("not a key=value line: {full}"));
        assert!(!section.is_empty(), "{key} outside any section");
        unit.entry(section.clone())
            .or_default()
            .push((key.trim().to_string(), value.trim().to_string()));
    }
    unit
}

fn unit_values<'a>(unit: &'a Unit, section: &str, key: &str) -> Vec<&'a str> {
    unit.get(section)
        .map(|entries| {
            entries
                .iter()
                .filter(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
                .collect()
        })
        .unwrap_or_default()
}

fn unit_value<'a>(unit: &'a Unit, section: &str, key: &str) -> &'a str {
    let values = unit_values(unit, section, key);
    assert_eq!(
        values.len(),
        1,
        "[{section}] {key}= should appear once: {values:?}"
    );
    values[0]
}

/// systemd time spans as used here: "45s", "45", "1min 30s", "500ms".
fn seconds(span: &str) -> f64 {
    let mut total = 0.0;
    for token in span.split_whitespace() {
        let split = token
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(token.len());
        let (number, unit) = token.split_at(split);
        let number: f64 = number
            .parse()
            .unwrap_or_else(|_| panic!("time span {span}"));
        total += number
            * match unit {
                "" | "s" | "sec" => 1.0,
                "ms" | "msec" => 0.001,
                "m" | "min" => 60.0,
                "h" | "hr" => 3600.0,
                other => panic!("unit {other} in {span}"),
            };
    }
    total
}

#[test]
fn systemd_unit_declares_the_service_contract() {
    let unit = parse_unit(&read("scripts/shardgate.service"));
    let service = |key: &str| unit_value(&unit, "Service", key);

    assert_eq!(service("Type"), "exec");
    assert_eq!(service("User"), "shardgate");
    assert_eq!(
        service("ExecStartPre"),
        "/usr/local/bin/shardgate check --config /etc/shardgate/gateway.yaml"
    );
    assert_eq!(
        service("ExecStart"),
        "/usr/local/bin/shardgate run --config /etc/shardgate/gateway.yaml"
    );
    assert_eq!(service("ExecReload"), "/bin/kill -HUP $MAINPID");
    assert_eq!(service("KillSignal"), "SIGTERM");
    let drain = example_drain_secs() as f64;
    let stop = seconds(service("TimeoutStopSec"));
    assert!(
        stop > drain,
        "TimeoutStopSec ({stop} s) must exceed the drain time ({drain} s)"
    );
    assert_eq!(service("Restart"), "on-failure");
    let restart = seconds(service("RestartSec"));
    assert!((1.0..=30.0).contains(&restart), "RestartSec {restart}");
    let interval = seconds(unit_value(&unit, "Unit", "StartLimitIntervalSec"));
    let burst: u32 = unit_value(&unit, "Unit", "StartLimitBurst")
        .parse()
        .unwrap();
    assert!(
        interval > 0.0 && burst > 0,
        "restarts must be bounded: {interval} s / {burst}"
    );
    assert!(
        interval > restart * f64::from(burst),
        "StartLimitIntervalSec ({interval} s) must span StartLimitBurst ({burst}) restarts of RestartSec ({restart} s), or the limit never trips"
    );

    assert_eq!(service("LimitMEMLOCK"), "infinity");
    assert_eq!(service("LimitNOFILE"), "1048576");
    assert_eq!(service("AmbientCapabilities"), "CAP_NET_BIND_SERVICE");
    assert_eq!(service("CapabilityBoundingSet"), "CAP_NET_BIND_SERVICE");
    for (key, value) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("ReadOnlyPaths", "/etc/shardgate"),
    ] {
        assert_eq!(service(key), value, "{key}");
    }
    assert_eq!(
        unit_values(&unit, "Unit", "After"),
        ["network-online.target"]
    );
    assert_eq!(
        unit_value(&unit, "Install", "WantedBy"),
        "multi-user.target"
    );
}

#[test]
fn systemd_unit_syscall_filter_keeps_io_uring_and_pinning() {
    let unit = parse_unit(&read("scripts/shardgate.service"));
    let filters = unit_values(&unit, "Service", "SystemCallFilter");
    if filters.is_empty() {
        return; // no filter: nothing can block io_uring
    }
    assert!(
        !filters[0].starts_with('~'),
        "the first SystemCallFilter= decides allow-list mode"
    );
    let (deny, allow): (Vec<&str>, Vec<&str>) = filters.iter().partition(|f| f.starts_with('~'));
    let allowed: BTreeSet<&str> = allow.iter().flat_map(|f| f.split_whitespace()).collect();
    for call in ["io_uring_setup", "io_uring_enter", "io_uring_register"] {
        // Named explicitly: older systemd releases' @aio lacks them.
        assert!(
            allowed.contains(call),
            "{call} not allowed explicitly: {filters:?}"
        );
    }
    let denied: BTreeSet<&str> = deny
        .iter()
        .flat_map(|f| f.trim_start_matches('~').split_whitespace())
        .collect();
    for group in [
        "@aio",
        "@resources",
        "@io-event",
        "@network-io",
        "@system-service",
    ] {
        assert!(!denied.contains(group), "{group} denied: {filters:?}");
    }
    assert_eq!(
        unit_value(&unit, "Service", "SystemCallErrorNumber"),
        "EPERM"
    );

    // With systemd-analyze, expand the groups and check the effective set.
    if !tool_available("systemd-analyze") {
        eprintln!("skipped: systemd-analyze not installed (syscall group expansion)");
        return;
    }
    fn expand(name: &str, out: &mut BTreeSet<String>, seen: &mut BTreeSet<String>) {
        if !name.starts_with('@') {
            out.insert(name.to_string());
            return;
        }
        if !seen.insert(name.to_string()) {
            return;
        }
        let listing = Command::new("systemd-analyze")
            .args(["syscall-filter", name])
            .output()
            .unwrap();
        let listing = String::from_utf8_lossy(&listing.stdout).into_owned();
        for word in listing
            .lines()
            .skip(1)
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            expand(word, out, seen);
        }
    }
    let mut seen = BTreeSet::new();
    let mut effective = BTreeSet::new();
    for name in &allowed {
        expand(name, &mut effective, &mut seen);
    }
    let mut removed = BTreeSet::new();
    for name in &denied {
        expand(name, &mut removed, &mut seen);
    }
    effective.retain(|call| !removed.contains(call));
    // What shardgate was seen to call under strace (run, reload, drain), io_uring included.
    for call in [
        "io_uring_setup",
        "io_uring_enter",
        "io_uring_register",
        "sched_setaffinity",
        "sched_getaffinity",
        "clone3",
        "socket",
        "bind",
        "listen",
        "setsockopt",
        "connect",
        "prlimit64",
        "rt_sigtimedwait",
        "statx",
        "getdents64",
        "ioctl",
        "madvise",
        "mmap",
        "futex",
        "poll",
        "epoll_wait",
        "eventfd2",
    ] {
        assert!(
            effective.contains(call),
            "{call} is not allowed by {filters:?}"
        );
    }
}

#[test]
fn systemd_unit_passes_systemd_analyze_verify_when_available() {
    if !tool_available("systemd-analyze") {
        eprintln!("skipped: systemd-analyze not installed");
        return;
    }
    // verify checks that ExecStart= binaries exist: point them at the built binary.
    let dir = tempdir();
    let unit = read("scripts/shardgate.service")
        .replace("/usr/local/bin/shardgate", env!("CARGO_BIN_EXE_shardgate"));
    let path = dir.path().join("shardgate.service");
    fs::write(&path, unit).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    let all = format!("{stdout}{stderr}");
    assert!(out.status.success(), "{all}");
    for bad in ["Unknown", "ignoring", "Invalid", "Failed", "not executable"] {
        assert!(!all.contains(bad), "systemd-analyze verify: {all}");
    }
}

// ------------------------------------------------------------------------------ scripts

#[test]
fn scripts_pass_bash_syntax_check_and_shellcheck() {
    for name in ["install.sh", "tune-host.sh"] {
        let path = repo().join("scripts").join(name);
        let out = Command::new("bash").arg("-n").arg(&path).output().unwrap();
        assert!(out.status.success(), "bash -n {name}: {:?}", text(&out));
        let first = read(&format!("scripts/{name}"));
        assert!(first.starts_with("#!/usr/bin/env bash\n"), "{name} shebang");
        assert!(
            first.contains("\nset -euo pipefail\n"),
            "{name} strict mode"
        );
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert!(mode & 0o111 != 0, "{name} is not executable");
    }
    if !tool_available("shellcheck") {
        eprintln!("skipped: shellcheck not installed");
        return;
    }
    let out = Command::new("shellcheck")
        .arg(repo().join("scripts/install.sh"))
        .arg(repo().join("scripts/tune-host.sh"))
        .output()
        .unwrap();
    assert!(out.status.success(), "shellcheck: {:?}", text(&out));
}

/// install.sh arguments that keep every path inside `root`.
fn install_args(root: &Path) -> Vec<String> {
    let p = |rel: &str| root.join(rel).display().to_string();
    vec![
        "--prefix".into(),
        p("usr"),
        "--config-dir".into(),
        p("etc/shardgate"),
        "--unit-dir".into(),
        p("systemd"),
    ]
}

#[test]
fn install_dry_run_prints_every_action_and_changes_nothing() {
    let dir = tempdir();
    let root = dir.path();
    let mut args = install_args(root);
    args.extend(["--no-build".into(), "--binary".into()]);
    args.push(env!("CARGO_BIN_EXE_shardgate").into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let before = snapshot(root);
    let out = script("install.sh", &args);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert_eq!(snapshot(root), before, "a dry run wrote files:\n{stdout}");
    assert!(stdout.contains("DRY RUN"), "{stdout}");
    assert!(!stdout.contains("cargo build"), "--no-build: {stdout}");

    let r = root.display();
    let planned = |needle: &str| {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with("would run: ") && l.contains(needle)),
            "no planned action with {needle}:\n{stdout}"
        );
    };
    planned(&format!(
        "install -D -m 0755 -o root -g root {} {r}/usr/bin/shardgate",
        env!("CARGO_BIN_EXE_shardgate")
    ));
    planned(&format!(
        "install -d -m 0750 -o root -g shardgate {r}/etc/shardgate"
    ));
    for file in [
        "gateway.yaml",
        "apis/petstore.yaml",
        "dev-only/jwt-dev-only.cert.pem",
    ] {
        planned(&format!(
            "install -D -m 0640 -o root -g shardgate {}/config/{file} {r}/etc/shardgate/{file}",
            repo().display()
        ));
    }
    planned(&format!("{r}/systemd/shardgate.service"));
    planned(&format!("{r}/usr/share/doc/shardgate/deployment.md"));
    // The dev-only private key is never installed.
    assert!(!stdout.contains("jwt-dev-only.key.pem"), "{stdout}");
    // The user: created, or found.
    assert!(
        stdout.contains("useradd --system") || stdout.contains("user 'shardgate' exists"),
        "{stdout}"
    );
    // A custom unit directory is not systemd's: no daemon-reload.
    assert!(!stdout.contains("daemon-reload"), "{stdout}");

    // Without --no-build the build is planned, not run.
    let out = script("install.sh", &args[..args.len() - 3]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("would run: cargo build --release --locked"),
        "{stdout}"
    );
    assert_eq!(snapshot(root), before);
}

#[test]
fn install_dry_run_with_default_paths_touches_nothing() {
    let watched = [
        "/usr/local/bin/shardgate",
        "/etc/shardgate",
        "/etc/systemd/system/shardgate.service",
        "/usr/local/share/doc/shardgate",
    ];
    let before: Vec<_> = watched.iter().map(|p| snapshot(Path::new(p))).collect();
    let out = script("install.sh", &["--no-build"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    for path in watched {
        assert!(stdout.contains(path), "{path} not in the plan:\n{stdout}");
    }
    let after: Vec<_> = watched.iter().map(|p| snapshot(Path::new(p))).collect();
    assert_eq!(before, after, "the default dry run changed the system");
}

#[test]
fn install_keeps_an_existing_config_and_plans_an_example_beside_it() {
    let dir = tempdir();
    let root = dir.path();
    let config = root.join("etc/shardgate/gateway.yaml");
    fs::create_dir_all(config.parent().unwrap()).unwrap();
    fs::write(&config, "# the operator's own\n").unwrap();
    let mut args = install_args(root);
    args.push("--no-build".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = script("install.sh", &args);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!("{}: exists and differs: kept", config.display())),
        "{stdout}"
    );
    assert!(
        stdout.lines().any(|l| l.starts_with("would run: install")
            && l.ends_with(&format!("{}.example", config.display()))),
        "{stdout}"
    );
    assert!(
        !stdout
            .lines()
            .any(|l| l.starts_with("would run:") && l.ends_with(&config.display().to_string())),
        "would overwrite the existing config:\n{stdout}"
    );
    assert_eq!(
        fs::read_to_string(&config).unwrap(),
        "# the operator's own\n"
    );
    assert!(!root.join("etc/shardgate/gateway.yaml.example").exists());
}

#[test]
fn install_and_tune_host_refuse_apply_without_root() {
    let dir = tempdir();
    let target = dir.path().join("nothing-here");
    let target = target.display().to_string();
    for (name, args) in [
        (
            "install.sh",
            vec![
                "--apply",
                "--no-build",
                "--prefix",
                &target,
                "--config-dir",
                &target,
                "--unit-dir",
                &target,
            ],
        ),
        (
            "tune-host.sh",
            vec![
                "--apply",
                "--proc-sys",
                &target,
                "--sysctl-file",
                &target,
                "--limits-file",
                &target,
            ],
        ),
    ] {
        let Some(out) = run_unprivileged(name, &args) else {
            eprintln!("skipped: running as root without setpriv, cannot test the non-root refusal");
            return;
        };
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{name}: {stdout}{stderr}");
        assert!(
            stderr.contains("--apply must be run as root"),
            "{name}: {stderr}"
        );
        assert!(!Path::new(&target).exists(), "{name} wrote {target}");
    }
}

#[test]
fn install_apply_into_a_temporary_root_is_complete_and_idempotent() {
    if !is_root() {
        eprintln!("skipped: --apply needs root (the files are installed root-owned)");
        return;
    }
    // An existing user, so that no account is created on the test machine.
    let user = "nobody";
    if !Command::new("getent")
        .args(["passwd", user])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        eprintln!("skipped: no '{user}' user");
        return;
    }
    let dir = tempdir();
    let root = dir.path();
    let mut args = install_args(root);
    args.extend(["--apply", "--no-build", "--user", user, "--binary"].map(String::from));
    args.push(env!("CARGO_BIN_EXE_shardgate").into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();

    let out = script("install.sh", &args);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(!stdout.contains("useradd"), "{stdout}");
    let mode = |rel: &str| fs::metadata(root.join(rel)).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode("usr/bin/shardgate"), 0o755);
    assert_eq!(mode("etc/shardgate"), 0o750);
    assert_eq!(mode("etc/shardgate/gateway.yaml"), 0o640);
    assert_eq!(mode("systemd/shardgate.service"), 0o644);
    assert!(!root
        .join("etc/shardgate/dev-only/jwt-dev-only.key.pem")
        .exists());
    let unit = fs::read_to_string(root.join("systemd/shardgate.service")).unwrap();
    let unit = parse_unit(&unit);
    let bin = root.join("usr/bin/shardgate");
    let config = root.join("etc/shardgate/gateway.yaml");
    assert_eq!(
        unit_value(&unit, "Service", "ExecStart"),
        format!("{} run --config {}", bin.display(), config.display())
    );
    assert_eq!(
        unit_value(&unit, "Service", "ReadOnlyPaths"),
        root.join("etc/shardgate").display().to_string()
    );
    assert_eq!(unit_value(&unit, "Service", "User"), user);

    // The installed set is what the unit's ExecStartPre= checks: it must pass.
    let check = Command::new(&bin)
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(check.status.success(), "{:?}", text(&check));

    // Again: nothing to do.
    let out = script("install.sh", &args);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        !stdout.lines().any(|l| l.starts_with("+ ")),
        "second run acted:\n{stdout}"
    );
    assert!(stdout.contains("up to date"), "{stdout}");

    // A locally edited config survives; the shipped one lands beside it.
    fs::write(&config, "# edited\n").unwrap();
    let out = script("install.sh", &args);
    assert!(out.status.success(), "{:?}", text(&out));
    assert_eq!(fs::read_to_string(&config).unwrap(), "# edited\n");
    assert_eq!(
        fs::read_to_string(root.join("etc/shardgate/gateway.yaml.example")).unwrap(),
        read("config/gateway.yaml")
    );
}

const SYSCTLS: [&str; 7] = [
    "net.core.somaxconn",
    "net.ipv4.tcp_max_syn_backlog",
    "net.core.netdev_max_backlog",
    "fs.file-max",
    "fs.nr_open",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.tcp_tw_reuse",
];

fn sysctl_path(proc_sys: &Path, key: &str) -> PathBuf {
    proc_sys.join(key.replace('.', "/"))
}

#[test]
fn tune_host_dry_run_reports_every_setting_and_changes_nothing() {
    let live: Vec<Option<String>> = SYSCTLS
        .iter()
        .map(|k| fs::read_to_string(sysctl_path(Path::new("/proc/sys"), k)).ok())
        .collect();
    let files = [
        "/etc/sysctl.d/90-shardgate.conf",
        "/etc/security/limits.d/90-shardgate.conf",
    ];
    let before: Vec<_> = files.iter().map(|f| snapshot(Path::new(f))).collect();
    let out = script("tune-host.sh", &[]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("DRY RUN"), "{stdout}");
    for key in SYSCTLS {
        assert!(
            stdout.lines().any(|l| l.trim_start().starts_with(key)
                && (l.contains("->") || l.contains("not available here"))),
            "{key} not reported:\n{stdout}"
        );
    }
    for needle in [
        "nofile 1048576",
        "memlock unlimited",
        "isolcpus",
        "nohz_full",
        "irqbalance",
        "smp_affinity",
        "governor",
    ] {
        assert!(stdout.contains(needle), "{needle} missing:\n{stdout}");
    }
    let after: Vec<_> = files.iter().map(|f| snapshot(Path::new(f))).collect();
    assert_eq!(before, after, "a dry run wrote configuration files");
    let live_after: Vec<Option<String>> = SYSCTLS
        .iter()
        .map(|k| fs::read_to_string(sysctl_path(Path::new("/proc/sys"), k)).ok())
        .collect();
    assert_eq!(live, live_after, "a dry run changed live sysctls");
}

/// A fake /proc/sys: some values above the proposals, some below, one missing.
fn fake_proc_sys(root: &Path) -> PathBuf {
    let proc_sys = root.join("proc/sys");
    for (key, value) in [
        ("net.core.somaxconn", "100000"),                // higher: kept
        ("net.ipv4.tcp_max_syn_backlog", "128"),         // raised
        ("fs.file-max", "9223372036854775807"),          // the 64-bit default: kept
        ("fs.nr_open", "65536"),                         // raised
        ("net.ipv4.ip_local_port_range", "1024\t60999"), // start kept, end raised
        ("net.ipv4.tcp_tw_reuse", "2"),                  // loopback only -> 1
    ] {
        let path = sysctl_path(&proc_sys, key);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, format!("{value}\n")).unwrap();
    }
    // net.core.netdev_max_backlog absent: "not available here".
    proc_sys
}

fn reported<'a>(stdout: &'a str, key: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{key} ")))
        .unwrap_or_else(|| panic!("{key} not reported:\n{stdout}"))
}

#[test]
fn tune_host_never_lowers_and_only_widens_the_port_range() {
    let dir = tempdir();
    let proc_sys = fake_proc_sys(dir.path());
    let before = snapshot(dir.path());
    let proc_arg = proc_sys.display().to_string();
    let out = script("tune-host.sh", &["--proc-sys", &proc_arg]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert_eq!(snapshot(dir.path()), before, "dry run wrote:\n{stdout}");

    let line = reported(&stdout, "net.core.somaxconn");
    assert!(line.contains("100000") && line.contains("keep"), "{line}");
    let line = reported(&stdout, "net.ipv4.tcp_max_syn_backlog");
    assert!(line.contains("128") && line.contains("-> 65535") && line.contains("raise"));
    let line = reported(&stdout, "fs.file-max");
    assert!(
        line.contains("-> 9223372036854775807") && line.contains("keep"),
        "{line}"
    );
    let line = reported(&stdout, "fs.nr_open");
    assert!(line.contains("-> 1048576"), "{line}");
    let line = reported(&stdout, "net.ipv4.ip_local_port_range");
    assert!(
        line.contains("1024 60999") && line.contains("-> 1024 65535"),
        "{line}"
    );
    let line = reported(&stdout, "net.ipv4.tcp_tw_reuse");
    assert!(line.contains("-> 1") && line.contains("raise"), "{line}");
    let line = reported(&stdout, "net.core.netdev_max_backlog");
    assert!(line.contains("not available here"), "{line}");
    // A range starting below the listener ports asks for reserved ports.
    assert!(stdout.contains("ip_local_reserved_ports"), "{stdout}");
}

#[test]
fn tune_host_apply_on_a_fake_proc_sys_writes_files_and_values_once() {
    if !is_root() {
        eprintln!("skipped: --apply needs root");
        return;
    }
    let dir = tempdir();
    let proc_sys = fake_proc_sys(dir.path());
    let sysctl_file = dir.path().join("etc/sysctl.d/90-shardgate.conf");
    let limits_file = dir.path().join("etc/security/limits.d/90-shardgate.conf");
    let args = [
        "--apply".to_string(),
        "--proc-sys".into(),
        proc_sys.display().to_string(),
        "--sysctl-file".into(),
        sysctl_file.display().to_string(),
        "--limits-file".into(),
        limits_file.display().to_string(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = script("tune-host.sh", &args);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    let live = |key: &str| {
        fs::read_to_string(sysctl_path(&proc_sys, key))
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(live("net.core.somaxconn"), "100000");
    assert_eq!(live("net.ipv4.tcp_max_syn_backlog"), "65535");
    assert_eq!(live("fs.file-max"), "9223372036854775807");
    assert_eq!(live("fs.nr_open"), "1048576");
    assert_eq!(live("net.ipv4.ip_local_port_range"), "1024 65535");
    assert_eq!(live("net.ipv4.tcp_tw_reuse"), "1");
    assert!(!sysctl_path(&proc_sys, "net.core.netdev_max_backlog").exists());

    let sysctl = fs::read_to_string(&sysctl_file).unwrap();
    for line in [
        "net.core.somaxconn = 100000",
        "net.ipv4.tcp_max_syn_backlog = 65535",
        "fs.nr_open = 1048576",
        "net.ipv4.ip_local_port_range = 1024 65535",
        "net.ipv4.tcp_tw_reuse = 1",
    ] {
        assert!(sysctl.lines().any(|l| l == line), "{line} in:\n{sysctl}");
    }
    let limits = fs::read_to_string(&limits_file).unwrap();
    for line in [
        "shardgate soft nofile 1048576",
        "shardgate hard nofile 1048576",
        "shardgate soft memlock unlimited",
        "shardgate hard memlock unlimited",
    ] {
        assert!(limits.lines().any(|l| l == line), "{line} in:\n{limits}");
    }

    // Second run: everything is already there.
    let files_before = snapshot(dir.path());
    let out = script("tune-host.sh", &args);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(!stdout.contains("raise"), "{stdout}");
    assert!(!stdout.contains("wrote "), "{stdout}");
    assert_eq!(snapshot(dir.path()), files_before);
}

// ------------------------------------------------------------------------- Kubernetes

const K8S: &str = "deploy/kubernetes";

/// Every document of the base manifests (kustomization.yaml aside), with its file name.
fn k8s_docs() -> Vec<(String, Value)> {
    let mut names: Vec<String> = fs::read_dir(repo().join(K8S))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
        .collect();
    names.sort();
    let mut docs = Vec::new();
    for name in names {
        let text = read(&format!("{K8S}/{name}"));
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value = Value::deserialize(doc).unwrap_or_else(|e| panic!("{name}: {e}"));
            if !value.is_null() {
                docs.push((name.clone(), value));
            }
        }
    }
    docs
}

fn find<'a>(docs: &'a [(String, Value)], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .map(|(_, d)| d)
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v:?}"))
}

fn seq(v: &Value) -> &Vec<Value> {
    v.as_sequence()
        .unwrap_or_else(|| panic!("not a list: {v:?}"))
}

/// CPU quantity in cores: "2", 2, "500m".
fn cpu_cores(v: &Value) -> f64 {
    match v {
        Value::Number(n) => n.as_f64().unwrap(),
        Value::String(s) => match s.strip_suffix('m') {
            Some(milli) => milli.parse::<f64>().unwrap() / 1000.0,
            None => s.parse().unwrap(),
        },
        other => panic!("cpu {other:?}"),
    }
}

fn configmap_gateway(docs: &[(String, Value)]) -> (String, GatewayConfig) {
    let text =
        str_of(&find(docs, "ConfigMap", "shardgate-config")["data"]["gateway.yaml"]).to_string();
    let config = GatewayConfig::parse(Path::new("configmap.yaml:gateway.yaml"), &text)
        .unwrap_or_else(|e| panic!("the ConfigMap's gateway.yaml: {e}"));
    (text, config)
}

#[test]
fn kubernetes_manifests_have_the_expected_kinds_and_kustomization() {
    let docs = k8s_docs();
    let found: BTreeSet<(String, String, String)> = docs
        .iter()
        .map(|(_, d)| {
            (
                str_of(&d["apiVersion"]).to_string(),
                str_of(&d["kind"]).to_string(),
                str_of(&d["metadata"]["name"]).to_string(),
            )
        })
        .collect();
    let expected: BTreeSet<(String, String, String)> = [
        ("v1", "Namespace", "shardgate"),
        ("v1", "ConfigMap", "shardgate-config"),
        ("v1", "ConfigMap", "shardgate-jwt-dev-only"),
        ("apps/v1", "Deployment", "shardgate"),
        ("v1", "Service", "shardgate"),
        ("policy/v1", "PodDisruptionBudget", "shardgate"),
    ]
    .iter()
    .map(|(a, k, n)| (a.to_string(), k.to_string(), n.to_string()))
    .collect();
    assert_eq!(found, expected);
    for (file, doc) in &docs {
        if doc["kind"] != "Namespace" {
            assert_eq!(doc["metadata"]["namespace"], "shardgate", "{file}");
        }
    }
    // The dev-only certificate is labelled as such.
    let dev = find(&docs, "ConfigMap", "shardgate-jwt-dev-only");
    assert_eq!(dev["metadata"]["labels"]["shardgate.dev/dev-only"], "true");

    // kustomization.yaml lists exactly the manifest files.
    let kustomization: Value =
        serde_yaml::from_str(&read(&format!("{K8S}/kustomization.yaml"))).unwrap();
    assert_eq!(kustomization["kind"], "Kustomization");
    assert_eq!(kustomization["namespace"], "shardgate");
    let listed: BTreeSet<&str> = seq(&kustomization["resources"])
        .iter()
        .map(str_of)
        .collect();
    let files: BTreeSet<&str> = docs.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(listed, files);
    let deployment = find(&docs, "Deployment", "shardgate");
    let image = str_of(&deployment["spec"]["template"]["spec"]["containers"][0]["image"]);
    let image_name = str_of(&kustomization["images"][0]["name"]);
    assert!(image.starts_with(&format!("{image_name}:")), "{image}");
}

#[test]
fn deployment_matches_the_gateway_configuration_it_mounts() {
    let docs = k8s_docs();
    let (_, gateway) = configmap_gateway(&docs);
    let deployment = find(&docs, "Deployment", "shardgate");
    let spec = &deployment["spec"];
    assert_eq!(spec["replicas"], 2);
    let pod = &spec["template"]["spec"];
    let labels = spec["template"]["metadata"]["labels"].as_mapping().unwrap();
    for (k, v) in spec["selector"]["matchLabels"].as_mapping().unwrap() {
        assert_eq!(labels.get(k), Some(v), "selector label {k:?}");
    }
    let containers = seq(&pod["containers"]);
    assert_eq!(containers.len(), 1);
    let c = &containers[0];

    // Admin on all interfaces, and the probes on its port.
    let admin: SocketAddr = gateway.admin.expect("admin listener on");
    assert!(
        admin.ip().is_unspecified(),
        "admin {admin} unreachable by probes"
    );
    let port_by_name = |name: &str| -> u16 {
        let port = seq(&c["ports"])
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("no container port {name}"));
        port["containerPort"].as_u64().unwrap() as u16
    };
    let probe_port = |probe: &Value| -> u16 {
        match &probe["httpGet"]["port"] {
            Value::String(name) => port_by_name(name),
            Value::Number(n) => n.as_u64().unwrap() as u16,
            other => panic!("probe port {other:?}"),
        }
    };
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/ready");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/health");
    assert_eq!(probe_port(&c["readinessProbe"]), admin.port());
    assert_eq!(probe_port(&c["livenessProbe"]), admin.port());
    let http = gateway.listeners.http[0].port();
    let https = gateway.listeners.https[0].port();
    assert_eq!((http, https), (9090, 9095));
    assert_eq!(port_by_name("http"), http);
    assert_eq!(port_by_name("https"), https);

    // run --config <mounted gateway.yaml> --watch
    let args: Vec<&str> = seq(&c["args"]).iter().map(str_of).collect();
    assert_eq!(args[0], "run");
    assert!(args.contains(&"--watch"), "{args:?}");
    let config_at = args
        .iter()
        .position(|a| *a == "--config")
        .expect("--config");
    let config_path = Path::new(args[config_at + 1]);
    let mount = seq(&c["volumeMounts"])
        .iter()
        .find(|m| Path::new(str_of(&m["mountPath"])) == config_path.parent().unwrap())
        .expect("a volume mounted at the config's directory");
    assert_eq!(mount["readOnly"], true);
    for m in seq(&c["volumeMounts"]) {
        assert!(
            m.get("subPath").is_none(),
            "subPath mounts never see ConfigMap updates"
        );
    }
    // The projected files: gateway.yaml, each `apis:` entry, the JWT certificate.
    let volume = seq(&pod["volumes"])
        .iter()
        .find(|v| v["name"] == mount["name"])
        .unwrap();
    let mut projected = BTreeSet::new();
    for source in seq(&volume["projected"]["sources"]) {
        let cm = &source["configMap"];
        let data = &find(&docs, "ConfigMap", str_of(&cm["name"]))["data"];
        for item in seq(&cm["items"]) {
            assert!(data.get(str_of(&item["key"])).is_some(), "{item:?}");
            projected.insert(str_of(&item["path"]).to_string());
        }
    }
    let file_name = config_path.file_name().unwrap().to_str().unwrap();
    assert!(projected.contains(file_name), "{projected:?}");
    for api in &gateway.apis {
        assert!(
            projected.iter().any(|p| p.starts_with(api.as_str())),
            "apis entry {api} is not mounted: {projected:?}"
        );
    }
    for issuer in &gateway.jwt.issuers {
        if let Some(cert) = &issuer.certificate {
            let cert = cert.to_str().unwrap();
            assert!(
                projected.contains(cert),
                "{cert} not mounted: {projected:?}"
            );
        }
    }

    // Guaranteed QoS with whole cores: requests == limits, integer CPU.
    let resources = &c["resources"];
    for resource in ["cpu", "memory"] {
        assert_eq!(
            resources["requests"][resource], resources["limits"][resource],
            "{resource}: requests must equal limits"
        );
    }
    let cpu = cpu_cores(&resources["limits"]["cpu"]);
    assert!(cpu >= 1.0 && cpu.fract() == 0.0, "integer CPUs: {cpu}");

    // Shutdown: the grace period covers the preStop sleep and the drain.
    let sleep = c["lifecycle"]["preStop"]["sleep"]["seconds"]
        .as_u64()
        .expect("preStop sleep");
    assert!(sleep > 0);
    let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
    let drain = gateway.timeouts.drain_ms.div_ceil(1000);
    assert!(
        grace > sleep + drain,
        "terminationGracePeriodSeconds {grace} <= preStop {sleep} + drain {drain}"
    );

    // Locked down.
    let sc = &c["securityContext"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_ne!(pod["securityContext"]["runAsUser"], 0);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"][0], "ALL");
    assert!(sc["capabilities"].get("add").is_none());
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );

    // The Service and the PodDisruptionBudget select these pods.
    let service = find(&docs, "Service", "shardgate");
    for (k, v) in service["spec"]["selector"].as_mapping().unwrap() {
        assert_eq!(labels.get(k), Some(v), "service selector {k:?}");
    }
    let ports: BTreeMap<u64, &str> = seq(&service["spec"]["ports"])
        .iter()
        .map(|p| (p["port"].as_u64().unwrap(), str_of(&p["targetPort"])))
        .collect();
    assert_eq!(
        ports,
        BTreeMap::from([(9090, "http"), (9095, "https")]),
        "the Service carries client traffic only (no admin)"
    );
    let pdb = find(&docs, "PodDisruptionBudget", "shardgate");
    for (k, v) in pdb["spec"]["selector"]["matchLabels"].as_mapping().unwrap() {
        assert_eq!(labels.get(k), Some(v), "pdb selector {k:?}");
    }
}

/// The projected volume as the kubelet writes it (its atomic writer): the files live in a
/// hidden timestamped directory, `..data` points at it, and each top-level name is a
/// symlink through `..data`. Returns the mount directory.
fn kubelet_volume(docs: &[(String, Value)], root: &Path) -> PathBuf {
    let deployment = find(docs, "Deployment", "shardgate");
    let volume = &deployment["spec"]["template"]["spec"]["volumes"][0];
    let mount = root.join("etc/shardgate");
    let payload = mount.join("..2026_01_01_00_00_00.000000001");
    let mut top = BTreeSet::new();
    for source in seq(&volume["projected"]["sources"]) {
        let cm = &source["configMap"];
        let data = &find(docs, "ConfigMap", str_of(&cm["name"]))["data"];
        for item in seq(&cm["items"]) {
            let path = str_of(&item["path"]);
            let file = payload.join(path);
            fs::create_dir_all(file.parent().unwrap()).unwrap();
            fs::write(&file, str_of(&data[str_of(&item["key"])])).unwrap();
            top.insert(path.split('/').next().unwrap().to_string());
        }
    }
    symlink(payload.file_name().unwrap(), mount.join("..data")).unwrap();
    for name in top {
        symlink(Path::new("..data").join(&name), mount.join(&name)).unwrap();
    }
    mount
}

#[test]
fn configmap_configuration_passes_shardgate_check_as_the_kubelet_mounts_it() {
    let docs = k8s_docs();
    let (_, gateway) = configmap_gateway(&docs);
    assert_eq!(gateway.admin, Some("0.0.0.0:9000".parse().unwrap()));

    // The embedded example API and dev certificate are the repository's, byte for byte.
    let config = find(&docs, "ConfigMap", "shardgate-config");
    assert_eq!(
        str_of(&config["data"]["petstore.yaml"]),
        read("config/apis/petstore.yaml")
    );
    let dev = find(&docs, "ConfigMap", "shardgate-jwt-dev-only");
    assert_eq!(
        str_of(&dev["data"]["jwt-dev-only.cert.pem"]),
        read("config/dev-only/jwt-dev-only.cert.pem")
    );

    let dir = tempdir();
    let mount = kubelet_volume(&docs, dir.path());
    let out = Command::new(env!("CARGO_BIN_EXE_shardgate"))
        .args(["check", "--config"])
        .arg(mount.join("gateway.yaml"))
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    // One API, read once: the hidden ..data entries are not loaded a second time.
    assert!(stdout.contains("/petstore/v1"), "{stdout}");
    assert!(stdout.contains("/store/inventory"), "{stdout}");
}

/// A JSON patch (RFC 6902) restricted to what the overlay uses: `add` and `replace`.
fn json_patch(doc: &mut Value, ops: &Value) {
    for op in seq(ops) {
        let path = str_of(&op["path"]);
        let value = op["value"].clone();
        let mut parts: Vec<String> = path
            .split('/')
            .skip(1)
            .map(|p| p.replace("~1", "/").replace("~0", "~"))
            .collect();
        let last = parts.pop().unwrap();
        let mut target = &mut *doc;
        for part in &parts {
            target = match target {
                Value::Sequence(items) => &mut items[part.parse::<usize>().unwrap()],
                Value::Mapping(map) => map
                    .get_mut(part.as_str())
                    .unwrap_or_else(|| panic!("{path}: no {part}")),
                other => panic!("{path}: {other:?}"),
            };
        }
        match (str_of(&op["op"]), target) {
            ("add", Value::Sequence(items)) if last == "-" => items.push(value),
            ("add", Value::Mapping(map)) => {
                map.insert(Value::String(last), value);
            }
            ("replace", Value::Mapping(map)) => {
                let slot = map
                    .get_mut(last.as_str())
                    .unwrap_or_else(|| panic!("replace {path}: nothing there"));
                *slot = value;
            }
            ("replace", Value::Sequence(items)) => {
                items[last.parse::<usize>().unwrap()] = value;
            }
            (op, _) => panic!("unsupported {op} at {path}"),
        }
    }
}

/// The base documents with the io-uring overlay's patches applied.
fn io_uring_overlay() -> Vec<(String, Value)> {
    let overlay: Value = serde_yaml::from_str(&read(&format!(
        "{K8S}/overlays/io-uring/kustomization.yaml"
    )))
    .unwrap();
    assert_eq!(seq(&overlay["resources"]), &[Value::from("../..")]);
    let mut docs = k8s_docs();
    for patch in seq(&overlay["patches"]) {
        let target = &patch["target"];
        let ops: Value = serde_yaml::from_str(str_of(&patch["patch"])).unwrap();
        let (_, doc) = docs
            .iter_mut()
            .find(|(_, d)| d["kind"] == target["kind"] && d["metadata"]["name"] == target["name"])
            .unwrap_or_else(|| panic!("patch target {target:?} not in the base"));
        json_patch(doc, &ops);
    }
    docs
}

#[test]
fn io_uring_overlay_patches_apply_to_the_base() {
    let docs = io_uring_overlay();
    let pod = &find(&docs, "Deployment", "shardgate")["spec"]["template"]["spec"];
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "Unconfined"
    );
    let args: Vec<&str> = seq(&pod["containers"][0]["args"])
        .iter()
        .map(str_of)
        .collect();
    assert_eq!(&args[args.len() - 2..], ["--driver", "uring"]);
    assert!(args.contains(&"--watch"));
    let namespace = find(&docs, "Namespace", "shardgate");
    assert_eq!(
        namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "privileged"
    );
}

/// `kubernetes-validate` (PyPI), as a command or as a Python module.
fn k8s_validator() -> Option<Vec<String>> {
    let works = |cmd: &[&str]| {
        Command::new(cmd[0])
            .args(&cmd[1..])
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if works(&["kubernetes-validate"]) {
        return Some(vec!["kubernetes-validate".into()]);
    }
    if works(&["python3", "-m", "kubernetes_validate"]) {
        return Some(vec![
            "python3".into(),
            "-m".into(),
            "kubernetes_validate".into(),
        ]);
    }
    None
}

#[test]
fn kubernetes_manifests_validate_against_the_api_schemas() {
    let Some(validator) = k8s_validator() else {
        let message = "kubernetes-validate is not installed: Kubernetes schema validation NOT RUN \
                       (pip install kubernetes-validate==1.37.0)";
        if std::env::var_os("SHARDGATE_REQUIRE_K8S_VALIDATOR").is_some_and(|v| v == "1") {
            panic!("{message}");
        }
        eprintln!("skipped: {message}");
        return;
    };
    // The base files as they are, and the overlay's patched documents.
    let mut files: Vec<PathBuf> = k8s_docs()
        .iter()
        .map(|(f, _)| repo().join(K8S).join(f))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let dir = tempdir();
    for (i, (file, doc)) in io_uring_overlay().iter().enumerate() {
        let path = dir.path().join(format!("io-uring-{i}-{file}"));
        fs::write(&path, serde_yaml::to_string(doc).unwrap()).unwrap();
        files.push(path);
    }
    // 1.30: the oldest release with the preStop sleep action on by default; 1.37: the newest
    // schemas the pinned kubernetes-validate ships.
    for version in ["1.30.0", "1.37.0"] {
        let out = Command::new(&validator[0])
            .args(&validator[1..])
            .args(["--strict", "--quiet", "-k", version])
            .args(&files)
            .output()
            .unwrap();
        let (stdout, stderr) = text(&out);
        assert!(
            out.status.success() && !stdout.contains("ERROR") && !stderr.contains("ERROR"),
            "kubernetes-validate -k {version}:\n{stdout}{stderr}"
        );
    }
}
