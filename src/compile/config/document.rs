//! A parsed YAML or JSON file and the typed, path-aware reads over it. Every read that finds
//! the wrong shape records an error naming file, field and line, and returns `None`, so a
//! reader can go on and report every problem of a file in one pass.

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use serde_yaml::{Mapping, Value};

use super::error::{ConfigError, ConfigWarning, FieldPath};
use super::locate::{line_of, Syntax};

/// One definition file, kept with its text so that errors can be located in it.
pub struct Document {
    pub file: PathBuf,
    pub text: String,
    pub syntax: Syntax,
    pub root: Value,
}

impl Document {
    /// Reads and parses `file`; `.json` files are JSON, everything else YAML.
    pub fn read(file: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(file)
            .map_err(|e| ConfigError::file(file, format!("cannot read: {e}")))?;
        Self::parse(file, text)
    }

    pub fn parse(file: &Path, text: String) -> Result<Self, ConfigError> {
        let is_json = file
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"));
        let (syntax, root) = if is_json {
            let root = serde_json::from_str::<Value>(&text).map_err(|e| {
                ConfigError::file(file, format!("invalid JSON: {e}")).at_line(Some(e.line()))
            })?;
            (Syntax::Json, root)
        } else {
            let root = serde_yaml::from_str::<Value>(&text).map_err(|e| {
                let line = e.location().map(|l| l.line());
                ConfigError::file(file, format!("invalid YAML: {}", strip_location(&e)))
                    .at_line(line)
            })?;
            (Syntax::Yaml, root)
        };
        Ok(Self {
            file: file.to_owned(),
            text,
            syntax,
            root,
        })
    }

    /// An error about the value at `field`, located in the text.
    pub fn error(&self, field: &FieldPath, message: impl Into<String>) -> ConfigError {
        ConfigError::new(&self.file, field, message).at_line(line_of(
            &self.text,
            self.syntax,
            field.segments(),
        ))
    }
}

/// serde_yaml appends " at line L column C"; we report the line our own way.
fn strip_location(error: &serde_yaml::Error) -> String {
    let text = error.to_string();
    match text.rfind(" at line ") {
        Some(at) => text[..at].to_owned(),
        None => text,
    }
}

/// The text of a scalar mapping key (`200:` and `true:` are keys too in YAML).
pub fn scalar_key(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null => Some("null".to_owned()),
        Value::Tagged(tagged) => scalar_key(&tagged.value),
        Value::Sequence(_) | Value::Mapping(_) => None,
    }
}

/// Looks through YAML tags: `!foo bar` is read as `bar`.
pub fn untagged(value: &Value) -> &Value {
    match value {
        Value::Tagged(tagged) => untagged(&tagged.value),
        other => other,
    }
}

/// A short name of a value's kind, for "expected X, found Y" messages.
pub fn kind_of(value: &Value) -> &'static str {
    match untagged(value) {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

/// Reads one document, collecting errors and warnings.
pub struct Reader<'d> {
    pub doc: &'d Document,
    errors: RefCell<Vec<ConfigError>>,
    warnings: RefCell<Vec<ConfigWarning>>,
}

impl<'d> Reader<'d> {
    pub fn new(doc: &'d Document) -> Self {
        Self {
            doc,
            errors: RefCell::new(Vec::new()),
            warnings: RefCell::new(Vec::new()),
        }
    }

    pub fn error(&self, field: &FieldPath, message: impl Into<String>) {
        self.errors
            .borrow_mut()
            .push(self.doc.error(field, message));
    }

    /// Records an error located earlier (possibly in another file of the same API, such as
    /// an apictl project's api.yaml). Repeats of the same error are kept once.
    pub fn push(&self, error: ConfigError) {
        let mut errors = self.errors.borrow_mut();
        if !errors.contains(&error) {
            errors.push(error);
        }
    }

    pub fn warn(&self, field: &FieldPath, message: impl Into<String>) {
        self.warnings
            .borrow_mut()
            .push(ConfigWarning(self.doc.error(field, message)));
    }

    pub fn has_errors(&self) -> bool {
        !self.errors.borrow().is_empty()
    }

    pub fn finish(self) -> (Vec<ConfigError>, Vec<ConfigWarning>) {
        (self.errors.into_inner(), self.warnings.into_inner())
    }

    fn expected(&self, field: &FieldPath, what: &str, value: &Value) {
        self.error(field, format!("expected {what}, found {}", kind_of(value)));
    }

    pub fn mapping<'v>(&self, value: &'v Value, field: &FieldPath) -> Option<&'v Mapping> {
        match untagged(value) {
            Value::Mapping(m) => Some(m),
            other => {
                self.expected(field, "a mapping", other);
                None
            }
        }
    }

    pub fn sequence<'v>(&self, value: &'v Value, field: &FieldPath) -> Option<&'v [Value]> {
        match untagged(value) {
            Value::Sequence(s) => Some(s),
            other => {
                self.expected(field, "a list", other);
                None
            }
        }
    }

    pub fn string<'v>(&self, value: &'v Value, field: &FieldPath) -> Option<&'v str> {
        match untagged(value) {
            Value::String(s) => Some(s),
            other => {
                self.expected(field, "a string", other);
                None
            }
        }
    }

    /// A string, also accepting a bare number (YAML reads `version: 1.0` as a number).
    pub fn text(&self, value: &Value, field: &FieldPath) -> Option<String> {
        match untagged(value) {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            other => {
                self.expected(field, "a string", other);
                None
            }
        }
    }

    pub fn boolean(&self, value: &Value, field: &FieldPath) -> Option<bool> {
        match untagged(value) {
            Value::Bool(b) => Some(*b),
            other => {
                self.expected(field, "true or false", other);
                None
            }
        }
    }

    /// A non-negative integer.
    pub fn unsigned(&self, value: &Value, field: &FieldPath) -> Option<u64> {
        match untagged(value) {
            Value::Number(n) if n.as_u64().is_some() => n.as_u64(),
            Value::Number(n) if n.as_i64().is_some() => {
                self.error(field, format!("expected a non-negative integer, found {n}"));
                None
            }
            other => {
                self.expected(field, "a non-negative integer", other);
                None
            }
        }
    }

    /// `(key, field path, value)` for each entry of a mapping with scalar keys.
    pub fn entries<'v>(
        &self,
        mapping: &'v Mapping,
        field: &FieldPath,
    ) -> Vec<(String, FieldPath, &'v Value)> {
        let mut out = Vec::with_capacity(mapping.len());
        for (key, value) in mapping {
            match scalar_key(key) {
                Some(key) => {
                    let path = field.key(&key);
                    out.push((key, path, value));
                }
                None => self.error(field, "a mapping key must be a scalar"),
            }
        }
        out
    }
}
