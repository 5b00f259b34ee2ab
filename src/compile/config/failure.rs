//! Failure handling per endpoint group: `group_overrides` in `gateway.yaml` override parts of
//! the gateway-wide `suspension` and `health_check` sections for one API, or one resource or
//! method of it. Plain data, its validation, and the resolution of the effective settings;
//! the snapshot calls [`resolve`] when it compiles a group.
//!
//! ```yaml
//! group_overrides:
//!   - api: /petstore/v1            # every group of this API ...
//!     suspension: {initial_ms: 500}
//!   - api: /petstore/v1
//!     resource: /pet/{petId}       # ... and, more specific, this resource
//!     method: get                  # ... with this method
//!     suspension: {max_ms: 10000}
//!     health_check: {path: /healthz, healthy_threshold: 1}
//! ```
//!
//! Every matching entry applies, the less specific first (API only, then API and method,
//! then API and resource, then all three); among equally specific entries the later one
//! wins. Fields an entry leaves out keep the value from before it (ultimately the gateway
//! section's).

use serde::Deserialize;

use super::gateway::{HealthCheck, Suspension};
use crate::http::Method;

/// One override entry.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GroupOverride {
    /// The API's base path, exactly as in its definition (`/petstore/v1`).
    pub api: String,
    /// One resource's path template, exactly as in the definition (`/pet/{petId}`); absent
    /// means every resource of the API.
    #[serde(default)]
    pub resource: Option<String>,
    /// One operation method in lower case (`get`, `post`, ...); absent means every method.
    #[serde(default)]
    pub method: Option<String>,
    /// The suspension fields to override.
    #[serde(default)]
    pub suspension: SuspensionOverride,
    /// The health check fields to override.
    #[serde(default)]
    pub health_check: HealthCheckOverride,
}

/// Fields of [`Suspension`] to override; absent fields are inherited.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SuspensionOverride {
    /// First suspension after a failure, in ms (> 0).
    pub initial_ms: Option<u64>,
    /// Multiplier for each failed probe (>= 1.0).
    pub progression_factor: Option<f64>,
    /// Upper bound of a suspension, in ms (>= the effective `initial_ms`).
    pub max_ms: Option<u64>,
}

/// Fields of [`HealthCheck`] to override; absent fields are inherited.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckOverride {
    /// Turns active checks on or off for the matching groups (only groups with more than
    /// one URL are ever checked).
    pub enabled: Option<bool>,
    /// Time between checks of one endpoint, in ms (> 0).
    pub interval_ms: Option<u64>,
    /// Time a check may take, in ms (> 0).
    pub timeout_ms: Option<u64>,
    /// Consecutive failed checks that suspend a healthy endpoint (> 0).
    pub unhealthy_threshold: Option<u32>,
    /// Consecutive good checks that end a suspension (> 0).
    pub healthy_threshold: Option<u32>,
    /// `GET` this path (expecting 2xx/3xx) instead of a TCP connect check.
    pub path: Option<String>,
}

/// The failure handling settings in force for one group.
#[derive(Clone, Debug, PartialEq)]
pub struct FailureSettings {
    pub suspension: Suspension,
    pub health_check: HealthCheck,
}

/// A `group_overrides` entry that is invalid; `field` is the full path, e.g.
/// `group_overrides[2].suspension.max_ms`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct FailureConfigError {
    pub field: String,
    pub problem: String,
}

/// The prefix of every field path, the section's key in `gateway.yaml`.
const SECTION: &str = "group_overrides";

impl GroupOverride {
    /// 0 (API only) to 3 (API, resource and method): the order in which entries apply.
    fn specificity(&self) -> u8 {
        u8::from(self.resource.is_some()) * 2 + u8::from(self.method.is_some())
    }

    fn matches(&self, api: &str, resource: &str, method: Method) -> bool {
        self.api == api
            && self.resource.as_deref().is_none_or(|r| r == resource)
            && self
                .method
                .as_deref()
                .is_none_or(|m| Method::from_operation_key(m) == Some(method))
    }

    fn apply(&self, settings: &mut FailureSettings) {
        let s = &self.suspension;
        let target = &mut settings.suspension;
        if let Some(v) = s.initial_ms {
            target.initial_ms = v;
        }
        if let Some(v) = s.progression_factor {
            target.progression_factor = v;
        }
        if let Some(v) = s.max_ms {
            target.max_ms = v;
        }
        let h = &self.health_check;
        let target = &mut settings.health_check;
        if let Some(v) = h.enabled {
            target.enabled = v;
        }
        if let Some(v) = h.interval_ms {
            target.interval_ms = v;
        }
        if let Some(v) = h.timeout_ms {
            target.timeout_ms = v;
        }
        if let Some(v) = h.unhealthy_threshold {
            target.unhealthy_threshold = v;
        }
        if let Some(v) = h.healthy_threshold {
            target.healthy_threshold = v;
        }
        if let Some(v) = &h.path {
            target.path = Some(v.clone());
        }
    }
}

/// The settings for a group used by `method` on `resource` (a path template) of the API at
/// base path `api`: the gateway sections with every matching override applied, the less
/// specific first.
pub fn resolve(
    overrides: &[GroupOverride],
    suspension: &Suspension,
    health_check: &HealthCheck,
    api: &str,
    resource: &str,
    method: Method,
) -> FailureSettings {
    let mut settings = FailureSettings {
        suspension: suspension.clone(),
        health_check: health_check.clone(),
    };
    let mut matching: Vec<&GroupOverride> = overrides
        .iter()
        .filter(|o| o.matches(api, resource, method))
        .collect();
    // Stable: equally specific entries keep their file order, so the later one wins.
    matching.sort_by_key(|o| o.specificity());
    for o in matching {
        o.apply(&mut settings);
    }
    settings
}

/// The indices of the entries that apply to (`api`, `resource`, `method`), in file order.
/// Two routes with the same list get the same settings, so a snapshot can use it in the key
/// that deduplicates groups.
pub fn matching(
    overrides: &[GroupOverride],
    api: &str,
    resource: &str,
    method: Method,
) -> Vec<usize> {
    overrides
        .iter()
        .enumerate()
        .filter(|(_, o)| o.matches(api, resource, method))
        .map(|(i, _)| i)
        .collect()
}

/// Checks every entry: its selector, each field it sets, and the suspension bounds once
/// merged with the gateway section. Entries naming an API or resource that no definition
/// has are not errors here (the definitions are read later); the snapshot may warn.
pub fn validate(
    overrides: &[GroupOverride],
    suspension: &Suspension,
) -> Result<(), FailureConfigError> {
    for (i, o) in overrides.iter().enumerate() {
        let err = |name: &str, problem: &str| {
            Err(FailureConfigError {
                field: format!("{SECTION}[{i}].{name}"),
                problem: problem.to_owned(),
            })
        };
        if !o.api.starts_with('/') {
            return err("api", "must be an API base path starting with '/'");
        }
        if let Some(resource) = &o.resource {
            if !resource.starts_with('/') {
                return err("resource", "must be a path template starting with '/'");
            }
        }
        if let Some(method) = &o.method {
            if Method::from_operation_key(method).is_none() {
                return err(
                    "method",
                    "must be one of get, put, post, delete, options, head, patch, trace",
                );
            }
        }
        if let Some(j) = overrides[..i]
            .iter()
            .position(|p| p.api == o.api && p.resource == o.resource && p.method == o.method)
        {
            return Err(FailureConfigError {
                field: format!("{SECTION}[{i}]"),
                problem: format!("selects the same groups as {SECTION}[{j}]; merge them"),
            });
        }
        let s = &o.suspension;
        for (name, value) in [
            ("suspension.initial_ms", s.initial_ms),
            ("suspension.max_ms", s.max_ms),
            ("health_check.interval_ms", o.health_check.interval_ms),
            ("health_check.timeout_ms", o.health_check.timeout_ms),
        ] {
            if value.is_some_and(|v| v > super::gateway::MAX_DURATION_MS) {
                return err(name, super::gateway::MAX_DURATION_PROBLEM);
            }
        }
        if s.initial_ms == Some(0) {
            return err("suspension.initial_ms", "must be greater than 0");
        }
        if let Some(f) = s.progression_factor {
            if !(f >= 1.0 && f.is_finite()) {
                return err("suspension.progression_factor", "must be a number >= 1.0");
            }
        }
        let initial = s.initial_ms.unwrap_or(suspension.initial_ms);
        let max = s.max_ms.unwrap_or(suspension.max_ms);
        if (s.initial_ms.is_some() || s.max_ms.is_some()) && max < initial {
            let field = if s.max_ms.is_some() {
                "suspension.max_ms"
            } else {
                "suspension.initial_ms"
            };
            return err(
                field,
                &format!(
                    "the effective max_ms ({max}) must be >= the effective initial_ms ({initial})"
                ),
            );
        }
        let h = &o.health_check;
        for (name, value) in [
            ("health_check.interval_ms", h.interval_ms),
            ("health_check.timeout_ms", h.timeout_ms),
            (
                "health_check.unhealthy_threshold",
                h.unhealthy_threshold.map(u64::from),
            ),
            (
                "health_check.healthy_threshold",
                h.healthy_threshold.map(u64::from),
            ),
        ] {
            if value == Some(0) {
                return err(name, "must be greater than 0");
            }
        }
        if let Some(path) = &h.path {
            if !path.starts_with('/') || path.bytes().any(|b| b <= b' ' || b == 0x7f) {
                return err(
                    "health_check.path",
                    "must be a request path starting with '/'",
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in for the gateway file's section.
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Section {
        group_overrides: Vec<GroupOverride>,
    }

    fn parse(yaml: &str) -> Result<Vec<GroupOverride>, String> {
        serde_yaml::from_str::<Section>(yaml)
            .map(|s| s.group_overrides)
            .map_err(|e| e.to_string())
    }

    fn check(yaml: &str) -> Result<Vec<GroupOverride>, String> {
        let overrides = parse(yaml)?;
        validate(&overrides, &Suspension::default()).map_err(|e| e.to_string())?;
        Ok(overrides)
    }

    fn resolved(overrides: &[GroupOverride], resource: &str, method: Method) -> FailureSettings {
        resolve(
            overrides,
            &Suspension::default(),
            &HealthCheck::default(),
            "/petstore/v1",
            resource,
            method,
        )
    }

    const LAYERED: &str = r#"
group_overrides:
  - api: /petstore/v1
    resource: /pet/{petId}
    method: get
    suspension: {max_ms: 10000}
    health_check: {path: /healthz}
  - api: /petstore/v1
    suspension: {initial_ms: 500, max_ms: 30000}
    health_check: {interval_ms: 5000}
  - api: /petstore/v1
    resource: /pet/{petId}
    suspension: {progression_factor: 3.0}
  - api: /petstore/v1
    method: get
    health_check: {healthy_threshold: 1, interval_ms: 7000}
  - api: /other
    suspension: {initial_ms: 1}
"#;

    #[test]
    fn no_override_means_the_gateway_sections() {
        let settings = resolved(&[], "/pet", Method::Get);
        assert_eq!(settings.suspension, Suspension::default());
        assert_eq!(settings.health_check, HealthCheck::default());
    }

    #[test]
    fn overrides_layer_from_least_to_most_specific() {
        let overrides = check(LAYERED).unwrap();
        let settings = resolved(&overrides, "/pet/{petId}", Method::Get);
        assert_eq!(
            settings.suspension,
            Suspension {
                initial_ms: 500,
                progression_factor: 3.0,
                max_ms: 10_000
            }
        );
        assert_eq!(settings.health_check.interval_ms, 7000);
        assert_eq!(settings.health_check.healthy_threshold, 1);
        assert_eq!(settings.health_check.path.as_deref(), Some("/healthz"));
        assert_eq!(settings.health_check.timeout_ms, 1000);
        assert_eq!(
            matching(&overrides, "/petstore/v1", "/pet/{petId}", Method::Get),
            vec![0, 1, 2, 3]
        );
    }

    #[test]
    fn entries_for_other_resources_methods_and_apis_do_not_apply() {
        let overrides = check(LAYERED).unwrap();
        let settings = resolved(&overrides, "/pet/{petId}", Method::Delete);
        assert_eq!(
            settings.suspension,
            Suspension {
                initial_ms: 500,
                progression_factor: 3.0,
                max_ms: 30_000
            }
        );
        assert_eq!(settings.health_check.interval_ms, 5000);
        assert_eq!(settings.health_check.path, None);
        let settings = resolved(&overrides, "/store", Method::Post);
        assert_eq!(settings.suspension.progression_factor, 2.0);
        assert_eq!(settings.suspension.initial_ms, 500);
        assert_eq!(
            matching(&overrides, "/petstore/v1", "/store", Method::Post),
            vec![1]
        );
        assert!(matching(&overrides, "/none", "/store", Method::Post).is_empty());
    }

    #[test]
    fn among_equally_specific_entries_the_later_wins() {
        let overrides = parse(
            "group_overrides:\n  - {api: /a, method: get, suspension: {initial_ms: 1}}\n  - {api: /a, resource: /x, health_check: {timeout_ms: 9}}\n  - {api: /a, resource: /x, method: get, suspension: {initial_ms: 3}}\n",
        )
        .unwrap();
        let settings = resolve(
            &overrides,
            &Suspension::default(),
            &HealthCheck::default(),
            "/a",
            "/x",
            Method::Get,
        );
        assert_eq!(settings.suspension.initial_ms, 3);
        assert_eq!(settings.health_check.timeout_ms, 9);
        // Same specificity, file order decides.
        let overrides = parse(
            "group_overrides:\n  - {api: /a, resource: /x, suspension: {initial_ms: 1}}\n  - {api: /a, resource: /y, suspension: {initial_ms: 2}}\n  - {api: /a, method: get, suspension: {initial_ms: 5}}\n  - {api: /a, method: post, suspension: {initial_ms: 6}}\n",
        )
        .unwrap();
        let get_x = resolve(
            &overrides,
            &Suspension::default(),
            &HealthCheck::default(),
            "/a",
            "/x",
            Method::Get,
        );
        assert_eq!(get_x.suspension.initial_ms, 1, "resource beats method");
    }

    #[test]
    fn a_health_check_can_be_turned_off_for_a_group() {
        let overrides =
            check("group_overrides:\n  - api: /a\n    health_check: {enabled: false}\n").unwrap();
        let settings = resolve(
            &overrides,
            &Suspension::default(),
            &HealthCheck::default(),
            "/a",
            "/x",
            Method::Get,
        );
        assert!(!settings.health_check.enabled);
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let error = parse("group_overrides:\n  - api: /a\n    suspention: {}\n").unwrap_err();
        assert!(error.contains("unknown field `suspention`"), "{error}");
        let error =
            parse("group_overrides:\n  - api: /a\n    suspension: {intial_ms: 3}\n").unwrap_err();
        assert!(error.contains("unknown field `intial_ms`"), "{error}");
        let error =
            parse("group_overrides:\n  - api: /a\n    health_check: {pth: /x}\n").unwrap_err();
        assert!(error.contains("unknown field `pth`"), "{error}");
        let error = parse("group_overrides:\n  - resource: /x\n").unwrap_err();
        assert!(error.contains("missing field `api`"), "{error}");
    }

    #[test]
    fn invalid_entries_name_their_field() {
        let cases = [
            ("- {api: petstore}", "group_overrides[0].api: must be an API base path"),
            ("- {api: /a, resource: pet}", "group_overrides[0].resource:"),
            ("- {api: /a, method: GET}", "group_overrides[0].method:"),
            ("- {api: /a, method: connect}", "group_overrides[0].method:"),
            (
                "- {api: /a, suspension: {initial_ms: 0}}",
                "group_overrides[0].suspension.initial_ms: must be greater than 0",
            ),
            (
                "- {api: /a, suspension: {progression_factor: 0.5}}",
                "group_overrides[0].suspension.progression_factor:",
            ),
            (
                "- {api: /a, suspension: {progression_factor: .nan}}",
                "group_overrides[0].suspension.progression_factor:",
            ),
            (
                "- {api: /a, suspension: {max_ms: 100}}",
                "group_overrides[0].suspension.max_ms: the effective max_ms (100) must be >= the effective initial_ms (2000)",
            ),
            (
                "- {api: /a, suspension: {initial_ms: 90000}}",
                "group_overrides[0].suspension.initial_ms: the effective max_ms (60000)",
            ),
            (
                "- {api: /a, health_check: {interval_ms: 0}}",
                "group_overrides[0].health_check.interval_ms: must be greater than 0",
            ),
            (
                "- {api: /a, health_check: {healthy_threshold: 0}}",
                "group_overrides[0].health_check.healthy_threshold:",
            ),
            (
                "- {api: /a, health_check: {path: 'x y'}}",
                "group_overrides[0].health_check.path:",
            ),
            (
                "- {api: /a}\n- {api: /b}\n- {api: /a}",
                "group_overrides[2]: selects the same groups as group_overrides[0]",
            ),
        ];
        for (entries, expected) in cases {
            let yaml = format!(
                "group_overrides:\n{}\n",
                entries
                    .lines()
                    .map(|l| format!("  {l}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            let error = check(&yaml).unwrap_err();
            assert!(error.starts_with(expected), "{entries}: {error}");
        }
    }

    #[test]
    fn a_valid_entry_with_both_bounds_passes() {
        check("group_overrides:\n  - {api: /a, suspension: {initial_ms: 100, max_ms: 100}}\n")
            .unwrap();
    }
}
