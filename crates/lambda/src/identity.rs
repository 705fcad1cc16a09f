//! Who is calling: every request to ingest and query carries a bearer token (or, deployed
//! with IAM, a SigV4 identity), and becomes a [`Principal`] with a tenant, a subject and
//! scopes. The tenant comes from the identity, never from a parameter.
//!
//! Tokens are verified here, in the function, whatever API Gateway checked before: the
//! signature against a configured JWKS, `exp`, `nbf`, `iss`, `aud`, and an algorithm from a
//! configured list of asymmetric ones (`alg: none` and HMAC are never accepted).

use std::collections::BTreeSet;
use std::fmt;
use std::path::PathBuf;

use anyhow::Context;
use jsonwebtoken::jwk::{Jwk, JwkSet};
pub use jsonwebtoken::Algorithm;
use jsonwebtoken::{DecodingKey, Validation};
use serde_json::Value;

use sentinel_domain::fields::{ActorId, TenantId};
use sentinel_domain::identity::{grant_key, Grant, PrincipalDirectory};

use crate::settings::{optional, parsed, required};

#[cfg(any(test, feature = "dev-signing"))]
pub mod dev;

/// What a principal may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// Send events to its tenant (`POST /events`).
    EventsWrite,
    /// Read its tenant's events.
    EventsRead,
    /// Also read its tenant's access log (the `sentinel.events.read` events).
    AuditRead,
    /// Operators: read any tenant, naming it with `tenant_id`; every such read is audited
    /// in the operator's tenant and in the tenant read.
    TenantsRead,
}

impl Scope {
    pub const ALL: [Scope; 4] = [
        Scope::EventsWrite,
        Scope::EventsRead,
        Scope::AuditRead,
        Scope::TenantsRead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::EventsWrite => "events:write",
            Scope::EventsRead => "events:read",
            Scope::AuditRead => "audit:read",
            Scope::TenantsRead => "tenants:read",
        }
    }

    /// A scope Sentinel knows; others (a token may carry scopes for other services) are
    /// `None`.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|scope| scope.as_str() == text)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The one tenant it writes and reads.
    pub tenant: TenantId,
    /// Who it is: the token's `sub`, or the IAM principal's ARN. The actor of its access
    /// events.
    pub subject: ActorId,
    pub scopes: BTreeSet<Scope>,
}

impl Principal {
    pub fn has(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }

    /// Refuses a principal without `scope` (a 403).
    pub fn require(&self, scope: Scope) -> Result<(), AuthError> {
        if self.has(scope) {
            Ok(())
        } else {
            Err(AuthError::MissingScope(scope))
        }
    }
}

/// Why a request is refused before it is handled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No credentials at all: 401.
    #[error("this endpoint needs a bearer token (Authorization: Bearer <token>)")]
    Missing,
    /// Credentials that do not verify: 401. The reason is safe to show: it never holds key
    /// material, only what was wrong with the token.
    #[error("the token is not valid: {0}")]
    Invalid(String),
    /// An identity without the scope the endpoint needs: 403.
    #[error("the token lacks the `{0}` scope this endpoint needs")]
    MissingScope(Scope),
    /// An IAM principal no operator has granted a tenant: 403.
    #[error("no tenant is granted to the IAM principal {0}; an operator grants one with `sentinel principals grant`")]
    NotGranted(String),
    /// The principal directory could not answer: 503, worth retrying.
    #[error("identities cannot be checked right now")]
    Unavailable(String),
}

/// Where the JWKS comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    File(PathBuf),
    Url(String),
}

/// How bearer tokens are checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtSettings {
    pub jwks: JwksSource,
    pub issuer: String,
    /// Accepted audiences: a token's `aud` must name one of them.
    pub audiences: Vec<String>,
    /// Accepted algorithms; asymmetric only.
    pub algorithms: Vec<Algorithm>,
    /// The claim that names the tenant (default `tenant_id`).
    pub tenant_claim: String,
    /// The claim that holds the scopes, a space-separated string or an array (default
    /// `scope`).
    pub scope_claim: String,
    /// Clock skew allowed on `exp` and `nbf`, in seconds (default 30).
    pub leeway_seconds: u64,
    /// Stripped from each scope before it is read, e.g. `sentinel/` for a Cognito resource
    /// server whose scopes are `sentinel/events:write` (default empty).
    pub scope_prefix: String,
}

/// Algorithms that may be configured: no HMAC (a shared secret is not a JWKS key) and no
/// `none`.
const ASYMMETRIC: [Algorithm; 9] = [
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::EdDSA,
];

/// Parses `JWT_ALGORITHMS`: a comma-separated list of asymmetric JWS algorithms.
pub fn parse_algorithms(text: &str) -> Result<Vec<Algorithm>, String> {
    let mut algorithms = Vec::new();
    for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let algorithm: Algorithm = name
            .parse()
            .map_err(|_| format!("names an unknown algorithm {name:?}"))?;
        if !ASYMMETRIC.contains(&algorithm) {
            return Err(format!(
                "may only name asymmetric algorithms (ES256, RS256, …), not {name}"
            ));
        }
        if !algorithms.contains(&algorithm) {
            algorithms.push(algorithm);
        }
    }
    if algorithms.is_empty() {
        return Err("must name at least one algorithm".into());
    }
    Ok(algorithms)
}

impl JwtSettings {
    /// `JWT_JWKS_FILE` or `JWT_JWKS_URL` (one of them), `JWT_ISSUER`, `JWT_AUDIENCE`
    /// (comma-separated), optional `JWT_SCOPE_PREFIX`;
    /// optional `JWT_ALGORITHMS` (default `ES256,RS256`), `JWT_TENANT_CLAIM`,
    /// `JWT_SCOPE_CLAIM`, `JWT_LEEWAY_SECONDS`.
    pub fn from_env() -> anyhow::Result<Self> {
        let jwks = match (optional("JWT_JWKS_FILE"), optional("JWT_JWKS_URL")) {
            (Some(file), None) => JwksSource::File(file.into()),
            (None, Some(url)) => JwksSource::Url(url),
            (Some(_), Some(_)) => anyhow::bail!("set JWT_JWKS_FILE or JWT_JWKS_URL, not both"),
            (None, None) => anyhow::bail!("JWT_JWKS_FILE or JWT_JWKS_URL must be set"),
        };
        Ok(Self {
            jwks,
            issuer: required("JWT_ISSUER")?,
            audiences: {
                let list: Vec<String> = required("JWT_AUDIENCE")?
                    .split(',')
                    .map(|a| a.trim().to_string())
                    .filter(|a| !a.is_empty())
                    .collect();
                anyhow::ensure!(
                    !list.is_empty(),
                    "JWT_AUDIENCE must name at least one audience"
                );
                list
            },
            algorithms: parsed("JWT_ALGORITHMS", parse_algorithms)?
                .unwrap_or_else(|| vec![Algorithm::ES256, Algorithm::RS256]),
            tenant_claim: optional("JWT_TENANT_CLAIM").unwrap_or_else(|| "tenant_id".into()),
            scope_claim: optional("JWT_SCOPE_CLAIM").unwrap_or_else(|| "scope".into()),
            leeway_seconds: parsed("JWT_LEEWAY_SECONDS", |t| {
                t.parse::<u64>()
                    .ok()
                    .filter(|s| *s <= 300)
                    .ok_or_else(|| "must be a whole number of seconds, at most 300".to_string())
            })?
            .unwrap_or(30),
            scope_prefix: optional("JWT_SCOPE_PREFIX").unwrap_or_default(),
        })
    }
}

/// One usable key of the JWKS.
struct Key {
    kid: Option<String>,
    /// The key's own `alg`, when the JWKS says.
    algorithm: Option<Algorithm>,
    key: DecodingKey,
}

/// Verifies bearer tokens against a JWKS loaded once per cold start.
pub struct JwtVerifier {
    settings: JwtSettings,
    keys: Vec<Key>,
}

impl fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("settings", &self.settings)
            .field("keys", &self.keys.len())
            .finish()
    }
}

impl JwtVerifier {
    /// Loads the JWKS the settings name: the file, or one GET of the URL.
    pub async fn load(settings: JwtSettings) -> anyhow::Result<Self> {
        let text = match &settings.jwks {
            JwksSource::File(path) => std::fs::read_to_string(path)
                .with_context(|| format!("failed to read the JWKS file {}", path.display()))?,
            JwksSource::Url(url) => fetch_jwks(url).await?,
        };
        Self::from_jwks(&text, settings)
    }

    /// From the JWKS text. Keys that cannot verify (symmetric `oct` keys, unknown kinds)
    /// are left out; a JWKS with no usable key is an error.
    pub fn from_jwks(jwks: &str, settings: JwtSettings) -> anyhow::Result<Self> {
        let set: JwkSet = serde_json::from_str(jwks).context("the JWKS is not a JWK set")?;
        let keys: Vec<Key> = set
            .keys
            .iter()
            .filter_map(|jwk| usable(jwk, &settings.algorithms))
            .collect();
        anyhow::ensure!(
            !keys.is_empty(),
            "the JWKS holds no key for the configured algorithms ({:?})",
            settings.algorithms
        );
        Ok(Self { settings, keys })
    }

    pub fn settings(&self) -> &JwtSettings {
        &self.settings
    }

    /// Verifies a compact JWS and derives the principal from its claims.
    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| {
            AuthError::Invalid("it is not a signed JWT with a known algorithm".into())
        })?;
        if !self.settings.algorithms.contains(&header.alg) {
            return Err(AuthError::Invalid(format!(
                "algorithm {:?} is not accepted",
                header.alg
            )));
        }
        let candidates: Vec<&Key> = self
            .keys
            .iter()
            .filter(|k| match (&header.kid, &k.kid) {
                (Some(wanted), Some(kid)) => wanted == kid,
                (Some(_), None) => false,
                (None, _) => true,
            })
            .filter(|k| k.algorithm.is_none_or(|a| a == header.alg))
            .collect();
        if candidates.is_empty() {
            return Err(AuthError::Invalid(match &header.kid {
                Some(kid) => format!(
                    "no key {:?} for {:?} in the JWKS",
                    printable(kid),
                    header.alg
                ),
                None => format!("no key for {:?} in the JWKS", header.alg),
            }));
        }
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.settings.issuer]);
        // The audience is checked below: `aud`, or Cognito's `client_id` in access tokens.
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = self.settings.leeway_seconds;
        let mut last = None;
        for key in candidates {
            match jsonwebtoken::decode::<Value>(token, &key.key, &validation) {
                Ok(data) => return self.principal(data.claims),
                Err(error) => last = Some(error),
            }
        }
        Err(AuthError::Invalid(describe(
            &last.expect("at least one key was tried"),
        )))
    }

    fn principal(&self, claims: Value) -> Result<Principal, AuthError> {
        let accepted = |v: &Value| {
            v.as_str()
                .is_some_and(|a| self.settings.audiences.iter().any(|x| x == a))
        };
        let audience_ok = match (claims.get("aud"), claims.get("client_id")) {
            (Some(Value::Array(list)), _) => list.iter().any(accepted),
            (Some(aud), _) => accepted(aud),
            // Cognito access tokens name their app client in `client_id`, not `aud`.
            (None, Some(client)) => accepted(client),
            (None, None) => return Err(AuthError::Invalid("it has no `aud` claim".into())),
        };
        if !audience_ok {
            return Err(AuthError::Invalid(
                "its audience (aud) is not accepted".into(),
            ));
        }
        let tenant_claim = &self.settings.tenant_claim;
        let tenant = match claims.get(tenant_claim) {
            Some(Value::String(tenant)) => TenantId::parse(tenant.as_str())
                .map_err(|why| AuthError::Invalid(format!("claim `{tenant_claim}` {why}")))?,
            Some(_) => {
                return Err(AuthError::Invalid(format!(
                    "claim `{tenant_claim}` must be a string"
                )))
            }
            None => {
                return Err(AuthError::Invalid(format!(
                    "it has no `{tenant_claim}` claim naming its tenant"
                )))
            }
        };
        let subject = match claims.get("sub") {
            Some(Value::String(sub)) => ActorId::parse(sub.as_str())
                .map_err(|why| AuthError::Invalid(format!("claim `sub` {why}")))?,
            _ => return Err(AuthError::Invalid("claim `sub` must be a string".into())),
        };
        let scope_claim = &self.settings.scope_claim;
        let names: Vec<&str> = match claims.get(scope_claim) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(text)) => text.split_whitespace().collect(),
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
            Some(_) => {
                return Err(AuthError::Invalid(format!(
                    "claim `{scope_claim}` must be a string or an array of strings"
                )))
            }
        };
        let prefix = self.settings.scope_prefix.as_str();
        Ok(Principal {
            tenant,
            subject,
            scopes: names
                .into_iter()
                .filter_map(|name| name.strip_prefix(prefix))
                .filter_map(Scope::parse)
                .collect(),
        })
    }
}

fn usable(jwk: &Jwk, accepted: &[Algorithm]) -> Option<Key> {
    let algorithm = match jwk.common.key_algorithm {
        Some(alg) => Some(alg.to_string().parse::<Algorithm>().ok()?),
        None => None,
    };
    if algorithm.is_some_and(|a| !accepted.contains(&a)) {
        return None;
    }
    if matches!(
        jwk.algorithm,
        jsonwebtoken::jwk::AlgorithmParameters::OctetKey(_)
    ) {
        return None;
    }
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some(Key {
        kid: jwk.common.key_id.clone(),
        algorithm,
        key,
    })
}

/// What was wrong with a token, in words a client can act on.
fn describe(error: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind;
    match error.kind() {
        ErrorKind::ExpiredSignature => "it has expired".into(),
        ErrorKind::ImmatureSignature => "it is not valid yet (nbf)".into(),
        ErrorKind::InvalidIssuer => "its issuer (iss) is not accepted".into(),
        ErrorKind::InvalidAudience => "its audience (aud) is not accepted".into(),
        ErrorKind::InvalidSignature => "its signature does not verify".into(),
        ErrorKind::MissingRequiredClaim(claim) => format!("it has no `{claim}` claim"),
        ErrorKind::InvalidClaimFormat(claim) => format!("claim `{claim}` is malformed"),
        ErrorKind::InvalidAlgorithm => "its algorithm does not match the key".into(),
        _ => "it is malformed".into(),
    }
}

fn printable(text: &str) -> String {
    sentinel_domain::fields::printable(text)
}

async fn fetch_jwks(url: &str) -> anyhow::Result<String> {
    let response = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(5))
        .build()
        .context("failed to build the JWKS client")?
        .get(url)
        .send()
        .await
        .with_context(|| format!("failed to fetch the JWKS from {url}"))?
        .error_for_status()
        .with_context(|| format!("the JWKS at {url} answered an error"))?;
    response
        .text()
        .await
        .with_context(|| format!("failed to read the JWKS from {url}"))
}

/// The bearer token of an `Authorization` header value: `Bearer <token>` (the scheme in any
/// case).
pub fn bearer_token(header: Option<&str>) -> Result<&str, AuthError> {
    let header = header.ok_or(AuthError::Missing)?;
    let (scheme, token) = header.split_once(' ').ok_or_else(|| {
        AuthError::Invalid("the Authorization header must be `Bearer <token>`".into())
    })?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(AuthError::Invalid(
            "the Authorization header must be `Bearer <token>`".into(),
        ));
    }
    Ok(token)
}

#[cfg(test)]
mod tests;

/// How callers are authenticated (`AUTH_MODE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// Bearer tokens, verified here (the default).
    Jwt,
    /// SigV4, checked by API Gateway; the IAM principal it names maps to a tenant and scopes
    /// through the principal directory.
    Iam,
}

impl AuthMode {
    pub fn from_env() -> anyhow::Result<Self> {
        match optional("AUTH_MODE")
            .map(|m| m.to_ascii_lowercase())
            .as_deref()
        {
            None | Some("jwt") => Ok(Self::Jwt),
            Some("iam") => Ok(Self::Iam),
            Some(other) => anyhow::bail!("AUTH_MODE must be jwt or iam, not {other:?}"),
        }
    }
}

/// How a function authenticates its callers.
pub enum Authenticator {
    /// `AUTH_MODE=jwt`: bearer tokens, verified here.
    Jwt(JwtVerifier),
    /// `AUTH_MODE=iam`: the IAM principal of the request context, through the directory.
    Iam(IamAuthenticator),
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Jwt(verifier) => verifier.fmt(f),
            Self::Iam(_) => f.write_str("IamAuthenticator"),
        }
    }
}

impl Authenticator {
    /// The authenticator `AUTH_MODE` names, once per cold start: for `jwt` its JWKS is
    /// loaded; for `iam`, `iam_directory` builds the principal directory.
    pub async fn from_env(
        iam_directory: impl FnOnce() -> anyhow::Result<std::sync::Arc<dyn PrincipalDirectory>>,
    ) -> anyhow::Result<Self> {
        Ok(match AuthMode::from_env()? {
            AuthMode::Jwt => Self::Jwt(JwtVerifier::load(JwtSettings::from_env()?).await?),
            AuthMode::Iam => Self::Iam(IamAuthenticator::new(iam_directory()?)),
        })
    }

    /// The principal behind a request's `Authorization` header (JWT) or IAM caller ARN.
    pub async fn authenticate_parts(
        &self,
        authorization: Option<&str>,
        iam_caller: Option<&str>,
    ) -> Result<Principal, AuthError> {
        match self {
            Self::Jwt(verifier) => verifier.verify(bearer_token(authorization)?),
            Self::Iam(iam) => iam.authenticate(iam_caller).await,
        }
    }
}

/// How long a grant (or the lack of one) is trusted before it is looked up again.
pub const GRANT_TTL: std::time::Duration = std::time::Duration::from_secs(60);

/// IAM callers, mapped to tenants and scopes through a [`PrincipalDirectory`], each lookup
/// kept for [`GRANT_TTL`].
pub struct IamAuthenticator {
    directory: std::sync::Arc<dyn PrincipalDirectory>,
    cache: std::sync::Mutex<std::collections::HashMap<String, (std::time::Instant, Option<Grant>)>>,
}

impl IamAuthenticator {
    pub fn new(directory: std::sync::Arc<dyn PrincipalDirectory>) -> Self {
        Self {
            directory,
            cache: Default::default(),
        }
    }

    async fn grant(&self, key: &str) -> Result<Option<Grant>, AuthError> {
        if let Some((at, grant)) = self.cache.lock().expect("lock poisoned").get(key) {
            if at.elapsed() < GRANT_TTL {
                return Ok(grant.clone());
            }
        }
        let grant = self
            .directory
            .lookup(key)
            .await
            .map_err(|e| AuthError::Unavailable(e.to_string()))?;
        self.cache
            .lock()
            .expect("lock poisoned")
            .insert(key.to_string(), (std::time::Instant::now(), grant.clone()));
        Ok(grant)
    }

    /// The principal of a SigV4 caller whose ARN API Gateway put in the request context.
    pub async fn authenticate(&self, caller_arn: Option<&str>) -> Result<Principal, AuthError> {
        let caller = caller_arn.filter(|a| !a.is_empty()).ok_or_else(|| {
            AuthError::Invalid(
                "the request carries no IAM identity; sign it with SigV4 (the route's \
                 authorization must be AWS_IAM)"
                    .into(),
            )
        })?;
        let key = grant_key(caller);
        let grant = self
            .grant(&key)
            .await?
            .ok_or_else(|| AuthError::NotGranted(key.clone()))?;
        let subject = ActorId::parse(caller)
            .or_else(|_| ActorId::parse(key.as_str()))
            .map_err(|why| AuthError::Invalid(format!("the IAM principal {why}")))?;
        Ok(Principal {
            tenant: grant.tenant,
            subject,
            scopes: grant
                .scopes
                .iter()
                .filter_map(|s| Scope::parse(s))
                .collect(),
        })
    }
}

#[cfg(feature = "http")]
mod http {
    use lambda_http::http::{header, HeaderValue, StatusCode};
    use lambda_http::request::RequestContext;
    use lambda_http::{Body, Request, RequestExt, Response};

    use super::{AuthError, Authenticator, Principal};
    use crate::http::{error, unavailable};
    use crate::ErrorBody;

    impl Authenticator {
        /// The principal behind a request.
        pub async fn authenticate(&self, request: &Request) -> Result<Principal, AuthError> {
            let authorization = match request.headers().get(header::AUTHORIZATION) {
                None => None,
                Some(value) => Some(value.to_str().map_err(|_| {
                    AuthError::Invalid("the Authorization header is not ASCII".into())
                })?),
            };
            let iam_caller = match request.request_context_ref() {
                Some(RequestContext::ApiGatewayV2(context)) => context
                    .authorizer
                    .as_ref()
                    .and_then(|a| a.iam.as_ref())
                    .and_then(|iam| iam.user_arn.as_deref()),
                _ => None,
            };
            self.authenticate_parts(authorization, iam_caller).await
        }

        /// The principal behind a request if it holds `scope`; otherwise the answer that
        /// refuses the request (401, 403 or 503), logged.
        pub async fn authorize(
            &self,
            request: &Request,
            scope: super::Scope,
        ) -> Result<Principal, Box<Response<Body>>> {
            let principal = self.authenticate(request).await.and_then(|principal| {
                principal.require(scope)?;
                Ok(principal)
            });
            principal.map_err(|refused| {
                tracing::info!(reason = %refused, "request refused before reading it");
                Box::new(refused.response())
            })
        }
    }

    impl AuthError {
        /// 401 (with `WWW-Authenticate`, RFC 6750) or 403, with the JSON error body.
        pub fn response(&self) -> Response<Body> {
            match self {
                AuthError::Missing | AuthError::Invalid(_) => {
                    let mut response = error(
                        StatusCode::UNAUTHORIZED,
                        ErrorBody::new("unauthorized", self.to_string()),
                    );
                    let challenge = match self {
                        AuthError::Missing => r#"Bearer realm="sentinel""#,
                        _ => r#"Bearer realm="sentinel", error="invalid_token""#,
                    };
                    response.headers_mut().insert(
                        header::WWW_AUTHENTICATE,
                        HeaderValue::from_static(challenge),
                    );
                    response
                }
                AuthError::NotGranted(_) => error(
                    StatusCode::FORBIDDEN,
                    ErrorBody::new("forbidden", self.to_string()),
                ),
                AuthError::Unavailable(reason) => {
                    tracing::error!(%reason, "the principal directory is unavailable");
                    unavailable(ErrorBody::new(
                        "service_unavailable",
                        "identities cannot be checked right now; try again shortly",
                    ))
                }
                AuthError::MissingScope(scope) => {
                    let mut response = error(
                        StatusCode::FORBIDDEN,
                        ErrorBody::new("forbidden", self.to_string()).with_fields(
                            [("scope".to_string(), format!("must include {scope}"))].into(),
                        ),
                    );
                    let challenge = format!(
                        r#"Bearer realm="sentinel", error="insufficient_scope", scope="{scope}""#
                    );
                    response.headers_mut().insert(
                        header::WWW_AUTHENTICATE,
                        HeaderValue::from_str(&challenge).expect("scope names are ASCII"),
                    );
                    response
                }
            }
        }
    }

    /// 403 for a field that names another tenant than the caller's (the tenant comes from
    /// the identity; it is never rewritten).
    pub fn foreign_tenant(fields: sentinel_domain::validation::FieldErrors) -> Response<Body> {
        error(
            StatusCode::FORBIDDEN,
            ErrorBody::new(
                "forbidden",
                "the request names a tenant other than the caller's; leave tenant_id out or \
                 give your own",
            )
            .with_fields(fields),
        )
    }
}

#[cfg(feature = "http")]
pub use http::foreign_tenant;
