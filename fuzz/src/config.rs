//! `config`: the operator's files. `GatewayConfig::parse`, the definition reader
//! (`Document::parse` + `openapi::read_definition`, YAML and JSON) and `locate::line_of`.
//!
//! Input: `mode`, then text (invalid UTF-8 replaced). `mode % 5`:
//! 0. `gateway.yaml` through `GatewayConfig::parse`;
//! 1. a YAML definition, 2. a JSON definition (both through `Document::parse` and
//!    `read_definition`), 3. a YAML definition with apictl project defaults;
//! 4. `line_of`: the first line is a field path (`a.b[2].c`), the rest the text; both syntaxes.
//!
//! Invariants:
//! - nothing panics; every error and warning names the file it came from, and its line, if
//!   any, is a line of the text;
//! - an accepted gateway file satisfies what `validate` promises (positive timeouts and limits,
//!   request line within the head limit, progression factor >= 1, health path starting `/`);
//! - an accepted definition has a base path and templates in the normalised form the router
//!   takes, and every resource can be added to a `Router` (the reader rejects duplicates and
//!   bad templates first: the snapshot compiler relies on it).

use std::path::Path;

use shardgate::compile::config::document::Document;
use shardgate::compile::config::error::FieldPath;
use shardgate::compile::config::gateway::GatewayConfig;
use shardgate::compile::config::locate::{line_of, Syntax};
use shardgate::compile::config::openapi::{read_definition, ProjectDefaults};
use shardgate::compile::config::ConfigError;
use shardgate::ids::RouteId;
use shardgate::route::Router;

use crate::show;

pub fn check(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest).into_owned();
    match mode % 5 {
        0 => gateway(&text),
        1 => definition(Path::new("apis/fuzz.yaml"), text, None),
        2 => definition(Path::new("apis/fuzz.json"), text, None),
        3 => {
            let project = ProjectDefaults {
                name: Some("FuzzProject".into()),
                context: Some("/fuzz/{version}".into()),
                version: Some("1.0.0".into()),
                production: None,
                sandbox: None,
                ..ProjectDefaults::default()
            };
            definition(
                Path::new("project/Definitions/swagger.yaml"),
                text,
                Some(&project),
            );
        }
        _ => locate(&text),
    }
}

/// How many lines a parser may count in `text`: YAML breaks lines at CR, LF, CRLF and at
/// NEL, LS and PS too, so every one of them is counted (an upper bound), plus one for the last
/// line, plus one more because libyaml puts the end of a text that does not end in a line
/// break on a line of its own (an error "at the end" of a 3-line file can say line 4).
fn max_lines(text: &str) -> usize {
    2 + text
        .chars()
        .filter(|c| matches!(c, '\r' | '\n' | '\u{85}' | '\u{2028}' | '\u{2029}'))
        .count()
}

/// An error names its file and, if it has a line, a line of the text.
fn assert_located(error: &ConfigError, file: &Path, text: &str) {
    assert_eq!(error.file, file, "error names another file: {error}");
    assert!(error.to_string().starts_with(&file.display().to_string()));
    if let Some(line) = error.line {
        let lines = max_lines(text);
        assert!(
            line >= 1 && line <= lines,
            "line {line} of {lines} in {error}"
        );
    }
}

fn gateway(text: &str) {
    let file = Path::new("config/gateway.yaml");
    match GatewayConfig::parse(file, text) {
        Err(error) => assert_located(&error, file, text),
        Ok(config) => {
            let t = &config.timeouts;
            assert!(t.client_head_ms > 0 && t.client_keepalive_ms > 0 && t.client_io_ms > 0);
            let l = &config.limits;
            assert!(
                l.max_request_head_bytes > 0 && l.max_request_line_bytes > 0 && l.max_headers > 0
            );
            assert!(l.max_request_line_bytes <= l.max_request_head_bytes);
            assert!(config.suspension.progression_factor >= 1.0);
            assert!(config.suspension.max_ms >= config.suspension.initial_ms);
            if let Some(path) = &config.health_check.path {
                assert!(path.starts_with('/'));
            }
            let _ = config.worker_count();
        }
    }
}

fn definition(file: &Path, text: String, project: Option<&ProjectDefaults>) {
    let doc = match Document::parse(file, text.clone()) {
        Ok(doc) => doc,
        Err(error) => {
            assert_located(&error, file, &text);
            return;
        }
    };
    let (result, warnings) = read_definition(&doc, project);
    for warning in &warnings {
        assert_located(&warning.0, file, &text);
    }
    let api = match result {
        Err(errors) => {
            assert!(!errors.is_empty(), "Err without errors");
            for error in &errors {
                assert_located(error, file, &text);
            }
            return;
        }
        Ok(api) => api,
    };
    assert_eq!(api.file, file);
    let base = &api.base_path;
    assert!(base.starts_with('/'), "base path {base:?}");
    assert!(
        base == "/" || !base.ends_with('/'),
        "base path {base:?} has a trailing slash"
    );
    let mut router = Router::new();
    let id = router
        .add_api(base)
        .unwrap_or_else(|e| panic!("add_api({base:?}): {e:?}"));
    for (i, resource) in api.resources.iter().enumerate() {
        let template = &resource.template;
        assert!(template.starts_with('/'), "template {template:?}");
        assert!(
            template == "/" || !template.ends_with('/'),
            "template {template:?}"
        );
        let added = router.add_route(id, template, resource.method, RouteId(i as u32));
        assert_eq!(
            added,
            Ok(()),
            "{:?} {template:?} accepted by the reader but refused by the router in {}",
            resource.method,
            show(doc.text.as_bytes())
        );
    }
}

fn locate(text: &str) {
    let (path, body) = text.split_once('\n').unwrap_or((text, ""));
    let path = FieldPath::parse(path);
    let lines = max_lines(body);
    for syntax in [Syntax::Yaml, Syntax::Json] {
        if let Some(line) = line_of(body, syntax, path.segments()) {
            assert!(
                line >= 1 && line <= lines,
                "line {line} of {lines} for {path}"
            );
        }
    }
}
