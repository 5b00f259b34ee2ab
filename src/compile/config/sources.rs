//! Where API definitions come from: files, directories (recursively), globs and apictl
//! project directories, named in gateway.yaml's `apis` or with `--api`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::apictl::project_file;
use super::error::ConfigError;

/// One thing to read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A single OpenAPI/Swagger file.
    Definition(PathBuf),
    /// An apictl project directory.
    Project(PathBuf),
}

/// An `apis` entry, with where it was written (for errors).
pub struct SourceEntry {
    pub path: PathBuf,
    /// A located error prototype: the config file and field, or the command line.
    pub origin: ConfigError,
}

const DEFINITION_EXTENSIONS: &[&str] = &["yaml", "yml", "json"];
const MAX_DEPTH: usize = 16;

/// Expands entries into sources, in a stable order, each file once.
pub fn discover(entries: &[SourceEntry]) -> (Vec<Source>, Vec<ConfigError>) {
    let mut sources = Vec::new();
    let mut errors = Vec::new();
    let mut seen = HashSet::new();
    for entry in entries {
        let text = entry.path.to_string_lossy();
        let is_glob = text.contains(['*', '?', '[']);
        if is_glob {
            let matches = match glob::glob(&text) {
                Ok(paths) => paths.filter_map(Result::ok).collect::<Vec<_>>(),
                Err(e) => {
                    errors.push(with_message(
                        &entry.origin,
                        format!("'{text}' is not a valid glob: {e}"),
                    ));
                    continue;
                }
            };
            if matches.is_empty() {
                errors.push(with_message(
                    &entry.origin,
                    format!("'{text}' matches no file"),
                ));
            }
            for path in matches {
                add_path(
                    &path,
                    0,
                    &mut sources,
                    &mut seen,
                    &mut errors,
                    &entry.origin,
                );
            }
        } else if entry.path.exists() {
            add_path(
                &entry.path,
                0,
                &mut sources,
                &mut seen,
                &mut errors,
                &entry.origin,
            );
        } else {
            errors.push(with_message(
                &entry.origin,
                format!("'{text}' does not exist"),
            ));
        }
    }
    (sources, errors)
}

fn with_message(origin: &ConfigError, message: String) -> ConfigError {
    ConfigError {
        message,
        ..origin.clone()
    }
}

fn add_path(
    path: &Path,
    depth: usize,
    sources: &mut Vec<Source>,
    seen: &mut HashSet<PathBuf>,
    errors: &mut Vec<ConfigError>,
    origin: &ConfigError,
) {
    let key = path.canonicalize().unwrap_or_else(|_| path.to_owned());
    if !seen.insert(key) {
        return;
    }
    if path.is_file() {
        sources.push(Source::Definition(path.to_owned()));
        return;
    }
    if project_file(path).is_some() {
        sources.push(Source::Project(path.to_owned()));
        return;
    }
    if depth >= MAX_DEPTH {
        errors.push(with_message(
            origin,
            format!("'{}' is nested too deeply", path.display()),
        ));
        return;
    }
    let mut children = match std::fs::read_dir(path) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .collect::<Vec<_>>(),
        Err(e) => {
            errors.push(with_message(
                origin,
                format!("cannot read directory '{}': {e}", path.display()),
            ));
            return;
        }
    };
    children.sort();
    for child in children {
        let hidden = child
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if hidden {
            continue;
        }
        let definition_file = child.extension().is_some_and(|e| {
            DEFINITION_EXTENSIONS
                .iter()
                .any(|d| e.eq_ignore_ascii_case(d))
        });
        if child.is_dir() || definition_file {
            add_path(&child, depth + 1, sources, seen, errors, origin);
        }
    }
}
