//! Tokens for tests: a fresh signing key per issuer, the verifier that trusts it, and
//! bearer tokens for any tenant and scopes.

use std::sync::Arc;

use sentinel_lambda::identity::dev::{SigningKey, TokenClaims, LOCAL_AUDIENCE, LOCAL_ISSUER};
use sentinel_lambda::identity::{Authenticator, JwksSource, JwtSettings, JwtVerifier, Scope};

/// Issues tokens that its [`TestIssuer::authenticator`] accepts.
pub struct TestIssuer {
    pub key: SigningKey,
}

impl Default for TestIssuer {
    fn default() -> Self {
        Self::new()
    }
}

impl TestIssuer {
    pub fn new() -> Self {
        Self {
            key: SigningKey::generate().expect("a P-256 key"),
        }
    }

    /// The settings the functions run with locally.
    pub fn settings() -> JwtSettings {
        JwtSettings {
            jwks: JwksSource::File("in-memory".into()),
            issuer: LOCAL_ISSUER.into(),
            audiences: vec![LOCAL_AUDIENCE.into()],
            algorithms: vec![jsonwebtoken_es256()],
            tenant_claim: "tenant_id".into(),
            scope_claim: "scope".into(),
            leeway_seconds: 30,
            scope_prefix: String::new(),
        }
    }

    pub fn authenticator(&self) -> Arc<Authenticator> {
        let jwks = serde_json::to_string(&self.key.jwks()).expect("a JWKS serializes");
        Arc::new(Authenticator::Jwt(
            JwtVerifier::from_jwks(&jwks, Self::settings()).expect("the test JWKS loads"),
        ))
    }

    /// A token for `tenant` with `scopes`, valid for an hour, for subject `test-user`.
    pub fn token(&self, tenant: &str, scopes: &[Scope]) -> String {
        self.token_for(tenant, "test-user", scopes)
    }

    pub fn token_for(&self, tenant: &str, subject: &str, scopes: &[Scope]) -> String {
        self.sign(&TokenClaims::local(tenant, subject, scopes, 3600))
    }

    pub fn sign(&self, claims: &TokenClaims) -> String {
        self.key.sign(claims).expect("a token signs")
    }

    /// `Bearer <token>` for an `Authorization` header.
    pub fn bearer(&self, tenant: &str, scopes: &[Scope]) -> String {
        format!("Bearer {}", self.token(tenant, scopes))
    }
}

fn jsonwebtoken_es256() -> sentinel_lambda::identity::Algorithm {
    sentinel_lambda::identity::Algorithm::ES256
}

/// A stream that keeps every record it is given, in memory: the access log of handler tests.
#[derive(Default)]
pub struct MemorySink {
    pub records: std::sync::Mutex<Vec<sentinel_domain::publish::OutgoingRecord>>,
    /// Refuse every record (a stream that is down).
    pub refusing: std::sync::atomic::AtomicBool,
}

impl MemorySink {
    /// The events put on it, decoded.
    pub fn events(&self) -> Vec<sentinel_domain::AuditEvent> {
        self.records
            .lock()
            .unwrap()
            .iter()
            .map(|r| sentinel_domain::AuditEvent::decode(&r.data).expect("records are canonical"))
            .collect()
    }

    pub fn clear(&self) {
        self.records.lock().unwrap().clear();
    }
}

#[async_trait::async_trait]
impl sentinel_domain::publish::RecordSink for MemorySink {
    async fn put_records(
        &self,
        records: &[sentinel_domain::publish::OutgoingRecord],
    ) -> Result<Vec<sentinel_domain::publish::RecordOutcome>, sentinel_domain::publish::SinkError>
    {
        use sentinel_domain::publish::RecordOutcome;
        if self.refusing.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(records
                .iter()
                .map(|_| RecordOutcome::Refused {
                    code: "ServiceUnavailable".into(),
                })
                .collect());
        }
        self.records.lock().unwrap().extend(records.iter().cloned());
        Ok(vec![RecordOutcome::Accepted; records.len()])
    }
}

/// The issuer's JWKS in a file of its own, for a function started as a process; removed on
/// drop.
pub struct JwksFile {
    pub path: std::path::PathBuf,
}

impl TestIssuer {
    pub fn jwks_file(&self) -> JwksFile {
        let path = std::env::temp_dir().join(format!("sentinel-jwks-{}.json", self.key.kid()));
        std::fs::write(
            &path,
            serde_json::to_string(&self.key.jwks()).expect("a JWKS serializes"),
        )
        .expect("the temporary directory is writable");
        JwksFile { path }
    }
}

impl JwksFile {
    /// The environment a function needs to trust the issuer.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AUTH_MODE", "jwt".into()),
            ("JWT_JWKS_FILE", self.path.display().to_string()),
            ("JWT_ISSUER", LOCAL_ISSUER.into()),
            ("JWT_AUDIENCE", LOCAL_AUDIENCE.into()),
        ]
    }
}

impl Drop for JwksFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
