//! The immutable, validated, compiled view of the whole configuration that every shard reads:
//! APIs, routes, endpoint groups and endpoints in dense tables, and the router over them.
//! Built once per load (start or reload) on the control thread, then shared read-only.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;

use crate::auth::{
    AccessPolicy, Alternative, Credential, MutualTlsPolicy, ScopeSet, ScopeTable, Verifier,
};
use crate::compile::config::apictl::read_project;
use crate::compile::config::document::Document;
use crate::compile::config::endpoint::EndpointSpec;
use crate::compile::config::gateway::GatewayConfig;
use crate::compile::config::openapi::{read_definition, ApiSpec};
use crate::compile::config::security::{ApiKeyIn, CredentialSpec, MutualTls};
use crate::compile::config::sources::{discover, Source, SourceEntry};
use crate::compile::config::url::{Scheme, UpstreamUrl};
use crate::compile::config::{ConfigError, ConfigErrors, ConfigWarning, FieldPath};
use crate::cors_policy::CorsPolicy;
use crate::http::Method;
use crate::ids::{ApiId, EndpointId, GroupId, RouteId};
use crate::ratelimit::{Limit, LimitId, RateLimits};
use crate::route::{RouteConflict, Router};
use crate::tls::{ServerTls, UpstreamTls};
use crate::upstream::circuit::CircuitBreakers;
use crate::upstream::dns::{self, HostsFile};
use crate::upstream::health::SuspensionPolicy;
use crate::upstream::probe::HealthCheckSettings;
use crate::upstream::registry::{UpstreamKey, Upstreams};
use crate::upstream::{Endpoint, Group, GroupMember, RetryPolicy};

/// One API definition, compiled.
#[derive(Clone, Debug)]
pub struct Api {
    pub name: String,
    pub version: String,
    pub base_path: Box<str>,
    pub file: PathBuf,
    /// The header carrying the token, as configured (compare case-insensitively).
    pub auth_header: Box<str>,
    /// The API's `x-wso2-cors`, or the gateway-wide policy, when enabled.
    pub cors: Option<CorsPolicy>,
    /// `x-wso2-mutual-ssl` (or api.yaml's `mutualssl`), with the API's own certificates.
    pub mutual_tls: Option<MutualTlsPolicy>,
}

/// One operation, compiled.
#[derive(Clone, Debug)]
pub struct Route {
    pub api: ApiId,
    pub method: Method,
    pub template: Box<str>,
    pub production: Option<GroupId>,
    pub sandbox: Option<GroupId>,
    pub secured: bool,
    /// What a secured route accepts (credentials, scopes); empty when it is not secured.
    pub access: AccessPolicy,
    /// An AsyncAPI channel's `x-uri-mapping`: the upstream path, instead of the request's.
    pub uri_mapping: Option<crate::route::uri_mapping::UriMapping>,
    /// The limit this operation counts against: its own tier's, else its API's; none for
    /// `Unlimited` or no tier.
    pub rate_limit: Option<LimitId>,
}

/// Everything the data path needs, immutable.
#[derive(Debug)]
pub struct Snapshot {
    pub gateway: GatewayConfig,
    /// The gateway file this came from, if any.
    pub config_file: Option<PathBuf>,
    pub apis: Vec<Api>,
    pub routes: Vec<Route>,
    pub groups: Vec<Group>,
    pub endpoints: Vec<Endpoint>,
    pub router: Router,
    /// Validates tokens for secured routes (shared read-only by all shards).
    pub verifier: Arc<Verifier>,
    /// Certificates of the HTTPS listeners and the client configuration for https upstreams.
    pub tls: Arc<TlsContexts>,
    /// Every upstream of the process (health, addresses, drain), shared with the snapshots
    /// before and after this one: an endpoint's `upstream` id means the same server in all.
    pub upstreams: Arc<Upstreams>,
    /// Circuit breaker counters of the groups that configure limits.
    pub breakers: Arc<CircuitBreakers>,
    /// Throttling tiers in use, with their token pools (kept across reloads).
    pub rate_limits: Arc<RateLimits>,
    /// Things worth logging that did not stop the load.
    pub warnings: Vec<ConfigWarning>,
    /// 0 for a first load; one more than the snapshot a reload was built from. Publishing
    /// checks it, so that a snapshot built from an older one (whose carried state is stale)
    /// never replaces a newer one.
    pub revision: u64,
}

/// TLS configurations built from the gateway file: one per process, cloned into shards, so
/// that session resumption works whichever shard a client lands on.
#[derive(Debug)]
pub struct TlsContexts {
    /// The HTTPS listeners' certificates (a generated self-signed one when none is configured).
    pub server: ServerTls,
    pub upstream: UpstreamTls,
}

/// Why a snapshot was not published.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PublishRefused {
    /// Built by `Snapshot::load`, with an upstream table of its own.
    ForeignUpstreams,
    /// Built by `Snapshot::load_next` from another snapshot than the one serving.
    NotBuiltFromCurrent { built_from: u64, current: u64 },
}

impl std::fmt::Display for PublishRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::ForeignUpstreams => f.write_str(
                "the snapshot has an upstream table of its own (build it with Snapshot::load_next \
                 from the serving one)",
            ),
            Self::NotBuiltFromCurrent { built_from, current } => write!(
                f,
                "the snapshot was built from revision {built_from}, but revision {current} is serving"
            ),
        }
    }
}

impl std::error::Error for PublishRefused {}

/// What to load.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// The gateway file; absent means all defaults.
    pub config: Option<PathBuf>,
    /// Extra definitions (`--api`), relative to the working directory.
    pub apis: Vec<PathBuf>,
    /// Resolve endpoint host names now (`run`); `check` leaves them alone.
    pub resolve_hosts: bool,
}

impl Snapshot {
    /// Reads, validates and compiles everything; every problem found is reported. The first
    /// load of a process: upstreams are interned into a new table.
    pub fn load(options: &LoadOptions) -> Result<Snapshot, ConfigErrors> {
        Self::load_into(options, Arc::new(Upstreams::new()))
    }

    /// A reload: like [`load`](Self::load), interning into the upstream table of `current`
    /// (so that surviving endpoints keep their ids, health and pools) and keeping what else
    /// must survive (TLS contexts, breaker counts).
    pub fn load_next(options: &LoadOptions, current: &Snapshot) -> Result<Snapshot, ConfigErrors> {
        let mut next = Self::load_into(options, Arc::clone(&current.upstreams))?;
        next.carry_state_from(current);
        next.revision = current.revision + 1;
        Ok(next)
    }

    fn load_into(
        options: &LoadOptions,
        upstreams: Arc<Upstreams>,
    ) -> Result<Snapshot, ConfigErrors> {
        let (gateway, entries) = match &options.config {
            Some(file) => {
                let gateway = GatewayConfig::load(file)?;
                let base = file.parent().unwrap_or(Path::new(""));
                let entries = gateway
                    .apis
                    .iter()
                    .enumerate()
                    .map(|(i, text)| SourceEntry {
                        path: base.join(text),
                        origin: ConfigError::new(file, &FieldPath::root().key("apis").index(i), ""),
                    })
                    .collect::<Vec<_>>();
                (gateway, entries)
            }
            None => (GatewayConfig::default(), Vec::new()),
        };
        let cli = options.apis.iter().map(|path| SourceEntry {
            path: path.clone(),
            origin: ConfigError::file(Path::new("--api"), ""),
        });
        let entries: Vec<SourceEntry> = entries.into_iter().chain(cli).collect();
        Self::build(
            gateway,
            options.config.clone(),
            &entries,
            options.resolve_hosts,
            upstreams,
        )
    }

    fn build(
        gateway: GatewayConfig,
        config_file: Option<PathBuf>,
        entries: &[SourceEntry],
        resolve_hosts: bool,
        upstreams: Arc<Upstreams>,
    ) -> Result<Snapshot, ConfigErrors> {
        let (sources, discover_errors) = discover(entries);
        let mut errors = ConfigErrors(discover_errors);
        let mut warnings = Vec::new();
        let mut specs = Vec::new();
        for source in &sources {
            let (result, mut source_warnings) = read_source(source);
            warnings.append(&mut source_warnings);
            match result {
                Ok(spec) => specs.push(spec),
                Err(mut source_errors) => errors.0.append(&mut source_errors),
            }
        }
        if sources.is_empty() && errors.is_empty() {
            let origin = config_file.as_deref().unwrap_or(Path::new("shardgate"));
            errors.push(ConfigError::file(
                origin,
                "no API definitions: list them under 'apis' or pass --api PATH",
            ));
        }
        let mut compiler = Compiler::new(&gateway, &upstreams);
        for spec in &specs {
            if let Err(error) = compiler.add_api(spec) {
                errors.push(error);
            }
        }
        let gateway_file = config_file
            .as_deref()
            .unwrap_or(Path::new("gateway config"));
        let verifier = Verifier::from_config(
            &gateway.jwt,
            config_file
                .as_deref()
                .and_then(Path::parent)
                .unwrap_or(Path::new("")),
        )
        .map_err(|e| {
            errors.push(ConfigError::new(
                gateway_file,
                &FieldPath::parse(e.field()),
                e.problem(),
            ))
        })
        .ok();
        for error in unverifiable_security(&gateway, &specs) {
            errors.push(error);
        }
        // Only the certificates of APIs that use mutual TLS become trusted.
        let pinned: Vec<Vec<u8>> = specs
            .iter()
            .filter(|spec| spec.mutual_tls.is_some())
            .flat_map(|spec| spec.client_certificates.iter().cloned())
            .collect();
        let verifier = verifier.map(|v| v.with_scopes(compiler.scopes.clone()));
        let tls = build_tls(&gateway, &pinned)
            .map_err(|e| errors.push(e.into_config_error(gateway_file)))
            .ok();
        let (Some(verifier), Some(tls)) = (verifier, tls) else {
            return Err(errors);
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        let Compiler {
            apis,
            routes,
            groups,
            endpoints,
            router,
            limits,
            ..
        } = compiler;
        if resolve_hosts {
            // Only upstreams never resolved: the others keep what the DNS refresh found.
            let hosts = match gateway.upstream.hosts_file.as_deref().map(HostsFile::read) {
                Some(Ok(hosts)) => Some(hosts),
                Some(Err(e)) => {
                    errors.push(ConfigError::new(
                        gateway_file,
                        &FieldPath::parse("upstream.hosts_file"),
                        e,
                    ));
                    return Err(errors);
                }
                None => None,
            };
            for endpoint in &endpoints {
                if upstreams.is_resolved(endpoint.upstream) {
                    continue;
                }
                let result = dns::resolve(&endpoint.host, endpoint.port, hosts.as_ref());
                if let Err(e) = &result {
                    let retry = if gateway.upstream.dns_refresh_ms > 0 {
                        "requests to it fail until a DNS refresh resolves it"
                    } else {
                        "requests to it fail (upstream.dns_refresh_ms is 0: no refresh)"
                    };
                    warnings.push(ConfigWarning(ConfigError::file(
                        Path::new(&endpoint.origin()),
                        format!("cannot resolve host: {e}; {retry}"),
                    )));
                }
                upstreams.record_lookup(endpoint.upstream, result);
            }
        }
        let breakers = Arc::new(CircuitBreakers::new(&groups));
        let rate_limits = Arc::new(RateLimits {
            limits,
            distributed: gateway.rate_limits.redis.is_some(),
            instances: gateway.rate_limits.instances,
        });
        Ok(Snapshot {
            gateway,
            config_file,
            apis,
            routes,
            groups,
            endpoints,
            router,
            verifier: Arc::new(verifier),
            upstreams,
            breakers,
            rate_limits,
            tls: Arc::new(tls),
            warnings,
            revision: 0,
        })
    }

    /// Whether this snapshot may replace `current`: it must have been built by
    /// [`load_next`](Self::load_next) from `current` itself. A snapshot from a fresh
    /// [`load`](Self::load) interned its upstreams into a table of its own, so its ids name
    /// other servers than the running shards' pools and health words do: publishing it would
    /// send requests to the wrong backends.
    pub fn may_replace(&self, current: &Snapshot) -> Result<(), PublishRefused> {
        if !Arc::ptr_eq(&self.upstreams, &current.upstreams) {
            return Err(PublishRefused::ForeignUpstreams);
        }
        if self.revision != current.revision + 1 {
            return Err(PublishRefused::NotBuiltFromCurrent {
                built_from: self.revision.wrapping_sub(1),
                current: current.revision,
            });
        }
        Ok(())
    }

    /// Carries what must survive a reload over from the snapshot being replaced: the circuit
    /// breaker counts of groups still present, and the TLS contexts when the TLS settings did
    /// not change (so session tickets and caches stay valid). Endpoint state needs no carrying:
    /// it is keyed by upstream ids, which the shared upstream table keeps.
    fn carry_state_from(&mut self, previous: &Snapshot) {
        if self.gateway.tls == previous.gateway.tls
            && self.gateway.upstream.tls == previous.gateway.upstream.tls
            && self.tls.server.pinned_client_certificates()
                == previous.tls.server.pinned_client_certificates()
        {
            self.tls = Arc::clone(&previous.tls);
        }
        let old_groups: HashMap<String, GroupId> = previous
            .groups
            .iter()
            .enumerate()
            .map(|(i, g)| {
                (
                    g.identity(&previous.endpoints, &previous.apis[g.api.index()].base_path),
                    GroupId(i as u32),
                )
            })
            .collect();
        let old_group_of: Vec<Option<GroupId>> = self
            .groups
            .iter()
            .map(|g| {
                old_groups
                    .get(&g.identity(&self.endpoints, &self.apis[g.api.index()].base_path))
                    .copied()
            })
            .collect();
        self.breakers = Arc::new(CircuitBreakers::carry_over(
            &previous.breakers,
            &self.groups,
            &old_group_of,
        ));
        if let Some(rate_limits) = Arc::get_mut(&mut self.rate_limits) {
            rate_limits.carry_pools_from(&previous.rate_limits);
        }
    }

    /// The route table as `check` prints it.
    pub fn route_table(&self) -> String {
        let mut rows = vec![[
            "API".to_owned(),
            "METHOD".to_owned(),
            "PATH".to_owned(),
            "ENV".to_owned(),
            "TYPE".to_owned(),
            "URLS".to_owned(),
            "SECURITY".to_owned(),
            "TIER".to_owned(),
        ]];
        for route in &self.routes {
            let api = &self.apis[route.api.index()];
            for (env, group) in [("production", route.production), ("sandbox", route.sandbox)] {
                let Some(group) = group else { continue };
                let group = &self.groups[group.index()];
                let urls = group
                    .members
                    .iter()
                    .map(|m| {
                        let endpoint = &self.endpoints[m.endpoint.index()];
                        format!(
                            "{}{}",
                            endpoint.origin(),
                            String::from_utf8_lossy(&m.base_path)
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                rows.push([
                    api.base_path.to_string(),
                    route.method.as_str().to_owned(),
                    route.template.to_string(),
                    env.to_owned(),
                    group.kind.as_str().to_owned(),
                    urls,
                    if route.secured { "on" } else { "off" }.to_owned(),
                    route.rate_limit.map_or_else(
                        || "-".to_owned(),
                        |id| {
                            let limit = &self.rate_limits.limits[id.index()];
                            let scope = if limit.scope == api.base_path {
                                "api"
                            } else {
                                "operation"
                            };
                            format!(
                                "{} ({}/{}s, {scope})",
                                limit.tier, limit.requests, limit.per_secs
                            )
                        },
                    ),
                ]);
            }
        }
        let mut widths = [0usize; 8];
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.len());
            }
        }
        let mut out = String::new();
        for row in &rows {
            let mut line = String::new();
            for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
                if i + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    line.push_str(&format!("{cell:<w$}  "));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// Security a definition asks for that this gateway config could not check: tokens with no
/// issuer to verify them, API keys with no `api_key` issuer, mutual TLS with nothing to verify
/// client certificates against. Refused, never served without the check.
fn unverifiable_security(gateway: &GatewayConfig, specs: &[ApiSpec]) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    let bearer_issuers = gateway.jwt.issuers.iter().any(|i| !i.api_key);
    let api_key_issuers = gateway.jwt.issuers.iter().any(|i| i.api_key);
    for spec in specs {
        let alternatives = || {
            spec.resources
                .iter()
                .filter(|r| r.secured)
                .flat_map(|r| r.security.alternatives.iter())
        };
        let wants_bearer = alternatives().any(|c| matches!(c, CredentialSpec::Bearer { .. }));
        if wants_bearer && !bearer_issuers {
            let detail = if gateway.jwt.issuers.is_empty() {
                "no JWT issuer is configured"
            } else {
                "every JWT issuer is marked api_key: true (those sign API keys only)"
            };
            errors.push(ConfigError::file(
                &spec.file,
                format!(
                    "API '{}' has secured resources but {detail}: add one under jwt.issuers in the gateway config (see config/README.md), or set x-wso2-disable-security: true where no token is wanted",
                    spec.base_path
                ),
            ));
        }
        if !api_key_issuers {
            if let Some(CredentialSpec::ApiKey { origin, .. }) =
                alternatives().find(|c| matches!(c, CredentialSpec::ApiKey { .. }))
            {
                let mut error = origin.clone();
                error.message = "accepts API keys, but no jwt.issuers entry has api_key: true, so none could be verified".to_owned();
                errors.push(error);
            }
        }
        if let Some(mutual_tls) = &spec.mutual_tls {
            if spec.client_certificates.is_empty() && gateway.tls.client_ca.is_none() {
                let mut error = mutual_tls.origin.clone();
                error.message = "mutual TLS, but there is nothing to verify client certificates against: set tls.client_ca in the gateway config (or give the apictl project a Client-certificates/ directory)".to_owned();
                errors.push(error);
            }
        }
    }
    errors
}

fn build_tls(
    gateway: &GatewayConfig,
    pinned_client_certificates: &[Vec<u8>],
) -> Result<TlsContexts, crate::tls::TlsConfigError> {
    Ok(TlsContexts {
        server: ServerTls::with_client_certificates(&gateway.tls, pinned_client_certificates)?
            .offer_h2(gateway.http2.enabled),
        upstream: UpstreamTls::from_config(&gateway.upstream.tls)?,
    })
}

fn read_source(source: &Source) -> (Result<ApiSpec, Vec<ConfigError>>, Vec<ConfigWarning>) {
    match source {
        Source::Definition(file) => match Document::read(file) {
            Ok(doc) => read_definition(&doc, None),
            Err(e) => (Err(vec![e]), Vec::new()),
        },
        Source::Project(dir) => match read_project(dir) {
            (Ok(project), mut warnings) => {
                let (result, mut more) =
                    read_definition(&project.definition, Some(&project.defaults));
                warnings.append(&mut more);
                (result, warnings)
            }
            (Err(errors), warnings) => (Err(errors), warnings),
        },
    }
}

/// Assigns ids: one per API, route, (API, endpoint object) group, and distinct upstream.
struct Compiler<'g> {
    gateway: &'g GatewayConfig,
    upstreams: &'g Upstreams,
    apis: Vec<Api>,
    api_origins: Vec<ConfigError>,
    routes: Vec<Route>,
    groups: Vec<Group>,
    /// (API, endpoint object, the `group_overrides` entries that apply) -> group.
    group_ids: HashMap<(ApiId, EndpointSpec, Vec<usize>), GroupId>,
    endpoints: Vec<Endpoint>,
    endpoint_ids: HashMap<(Scheme, String, u16), EndpointId>,
    router: Router,
    /// Every scope a route requires (shared with the verifier).
    scopes: ScopeTable,
    limits: Vec<Limit>,
}

impl<'g> Compiler<'g> {
    fn new(gateway: &'g GatewayConfig, upstreams: &'g Upstreams) -> Self {
        Self {
            gateway,
            upstreams,
            apis: Vec::new(),
            api_origins: Vec::new(),
            routes: Vec::new(),
            groups: Vec::new(),
            group_ids: HashMap::new(),
            endpoints: Vec::new(),
            endpoint_ids: HashMap::new(),
            router: Router::new(),
            scopes: ScopeTable::new(),
            limits: Vec::new(),
        }
    }

    /// The limit of `tier` over `scope`, or none for `Unlimited`; an unknown tier is an
    /// error at the place it was named.
    fn limit(
        &mut self,
        api: ApiId,
        scope: String,
        tier: &crate::compile::config::openapi::TierRef,
    ) -> Result<Option<LimitId>, ConfigError> {
        let config = &self.gateway.rate_limits;
        let Some(numbers) = crate::ratelimit::tier_named(config, &tier.name) else {
            let mut error = tier.origin.clone();
            error.message = format!(
                "unknown throttling tier '{}'; the gateway config defines {} (add it under rate_limits.tiers)",
                tier.name,
                crate::ratelimit::tier_names(config).join(", ")
            );
            return Err(error);
        };
        let Some(numbers) = numbers else {
            return Ok(None);
        };
        let id = LimitId(u32::try_from(self.limits.len()).expect("fewer than 2^32 limits"));
        self.limits.push(Limit {
            scope: scope.into(),
            api,
            tier: tier.name.as_str().into(),
            requests: numbers.requests,
            per_secs: numbers.per_secs,
            pool: Arc::default(),
        });
        Ok(Some(id))
    }

    fn add_api(&mut self, spec: &ApiSpec) -> Result<(), ConfigError> {
        let api = match self.router.add_api(&spec.base_path) {
            Ok(api) => api,
            Err(RouteConflict::BasePath(other)) => {
                let other = &self.api_origins[other.index()];
                let other_place = match other.line {
                    Some(line) => format!("{}:{line}", other.file.display()),
                    None => other.file.display().to_string(),
                };
                let mut error = spec.base_path_origin.clone();
                error.message = format!(
                    "base path '{}' is already used by {other_place}",
                    spec.base_path
                );
                return Err(error);
            }
            Err(other) => unreachable!("add_api only reports base path conflicts, got {other:?}"),
        };
        self.apis.push(Api {
            name: spec.name.clone(),
            version: spec.version.clone(),
            base_path: spec.base_path.as_str().into(),
            file: spec.file.clone(),
            auth_header: spec.auth_header.as_str().into(),
            cors: spec
                .cors
                .as_ref()
                .or(self.gateway.cors.as_ref())
                .and_then(CorsPolicy::compile),
            mutual_tls: spec.mutual_tls.as_ref().map(|m| MutualTlsPolicy {
                mandatory: m.mode == MutualTls::Mandatory,
                pinned: spec
                    .client_certificates
                    .iter()
                    .map(|der| crate::tls::certificate_sha256(der))
                    .collect(),
            }),
        });
        self.api_origins.push(spec.base_path_origin.clone());
        let api_limit = match &spec.throttling_tier {
            Some(tier) => self.limit(api, spec.base_path.clone(), tier)?,
            None => None,
        };
        for resource in &spec.resources {
            let route = RouteId::next(&self.routes);
            let overrides = crate::compile::config::failure::matching(
                &self.gateway.group_overrides,
                &spec.base_path,
                &resource.template,
                resource.method,
            );
            let place = (
                spec.base_path.as_str(),
                resource.template.as_str(),
                resource.method,
            );
            let production = resource
                .production
                .as_ref()
                .map(|e| self.group(api, e, &overrides, place, spec.http2_backend));
            let sandbox = resource
                .sandbox
                .as_ref()
                .map(|e| self.group(api, e, &overrides, place, spec.http2_backend));
            self.router
                .add_route(api, &resource.template, resource.method, route)
                .map_err(|conflict| {
                    // The reader rejects duplicates and bad templates first; this is a guard.
                    ConfigError::file(
                        &spec.file,
                        format!(
                            "{} {}: {conflict:?}",
                            resource.method.as_str(),
                            resource.template
                        ),
                    )
                })?;
            let access = self.access_policy(&resource.security);
            // The operation's own tier wins over the API's (`Unlimited` included).
            let rate_limit = match &resource.throttling_tier {
                Some(tier) => {
                    let scope = format!(
                        "{} {} {}",
                        spec.base_path,
                        resource.method.as_str(),
                        resource.template
                    );
                    self.limit(api, scope, tier)?
                }
                None => api_limit,
            };
            self.routes.push(Route {
                api,
                method: resource.method,
                template: resource.template.as_str().into(),
                production,
                sandbox,
                secured: resource.secured,
                access,
                uri_mapping: resource.uri_mapping.clone(),
                rate_limit,
            });
        }
        Ok(())
    }

    /// The group for an endpoint object used at `place` (API base path, template, method);
    /// objects with the same overrides share one group.
    fn group(
        &mut self,
        api: ApiId,
        spec: &EndpointSpec,
        overrides: &[usize],
        place: (&str, &str, Method),
        http2: bool,
    ) -> GroupId {
        let key = (api, spec.clone(), overrides.to_vec());
        if let Some(&id) = self.group_ids.get(&key) {
            return id;
        }
        let gateway = self.gateway;
        let failure = crate::compile::config::failure::resolve(
            &gateway.group_overrides,
            &gateway.suspension,
            &gateway.health_check,
            place.0,
            place.1,
            place.2,
        );
        let members = spec
            .urls
            .iter()
            .map(|url| GroupMember {
                endpoint: self.endpoint(url),
                base_path: url.path.as_bytes().into(),
            })
            .collect();
        let id = GroupId::next(&self.groups);
        self.groups.push(Group {
            api,
            kind: spec.kind,
            members,
            timeout_ms: spec
                .timeout_ms
                .map_or(self.gateway.timeouts.upstream_route_ms, u64::from),
            retry: spec.retry.as_ref().map(|r| RetryPolicy {
                count: r.count,
                status_codes: r.status_codes.clone().into(),
            }),
            circuit_breakers: spec.circuit_breakers.clone(),
            authorization: spec.basic_auth.as_ref().map(|auth| {
                let credentials = base64::engine::general_purpose::STANDARD
                    .encode(format!("{}:{}", auth.username, auth.password));
                format!("Basic {credentials}").into_bytes().into()
            }),
            suspension: SuspensionPolicy::from(&failure.suspension),
            health_check: (failure.health_check.enabled && spec.urls.len() > 1)
                .then(|| HealthCheckSettings::from(&failure.health_check)),
            http2,
        });
        self.group_ids.insert(key, id);
        id
    }

    fn access_policy(
        &mut self,
        security: &crate::compile::config::security::ResourceSecurity,
    ) -> AccessPolicy {
        let alternatives = security
            .alternatives
            .iter()
            .map(|credential| match credential {
                CredentialSpec::Bearer { scopes } => Alternative {
                    credential: Credential::Bearer,
                    scopes: self.scopes.require(scopes.iter().map(String::as_str)),
                },
                CredentialSpec::ApiKey { location, name, .. } => Alternative {
                    credential: match location {
                        ApiKeyIn::Header => Credential::ApiKeyHeader(name.as_str().into()),
                        ApiKeyIn::Query => Credential::ApiKeyQuery(name.as_str().into()),
                    },
                    scopes: ScopeSet::default(),
                },
            })
            .collect();
        AccessPolicy {
            alternatives,
            application_optional: security.application_optional,
        }
    }

    fn endpoint(&mut self, url: &UpstreamUrl) -> EndpointId {
        let key = (url.scheme, url.host.clone(), url.port);
        if let Some(&id) = self.endpoint_ids.get(&key) {
            return id;
        }
        let id = EndpointId::next(&self.endpoints);
        // Connections to an https upstream are made with the gateway's upstream TLS settings:
        // under other settings it is another upstream (its pooled connections do not fit).
        let tls = match url.scheme {
            Scheme::Https => format!("{:?}", self.gateway.upstream.tls).into(),
            Scheme::Http => Box::default(),
        };
        let upstream = self.upstreams.intern(UpstreamKey {
            scheme: url.scheme,
            host: url.host.to_ascii_lowercase().into(),
            port: url.port,
            tls,
        });
        self.endpoints.push(Endpoint {
            upstream,
            scheme: url.scheme,
            host: url.host.as_str().into(),
            port: url.port,
            authority: url.authority().into(),
        });
        self.endpoint_ids.insert(key, id);
        id
    }
}

#[cfg(test)]
mod tests;
