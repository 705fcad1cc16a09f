use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::json;

use super::dev::{SigningKey, TokenClaims, LOCAL_AUDIENCE, LOCAL_ISSUER};
use super::*;

fn settings() -> JwtSettings {
    JwtSettings {
        jwks: JwksSource::File("unused".into()),
        issuer: LOCAL_ISSUER.into(),
        audiences: vec![LOCAL_AUDIENCE.into()],
        algorithms: vec![Algorithm::ES256, Algorithm::RS256],
        tenant_claim: "tenant_id".into(),
        scope_claim: "scope".into(),
        leeway_seconds: 30,
        scope_prefix: String::new(),
    }
}

fn verifier(key: &SigningKey) -> JwtVerifier {
    let jwks = serde_json::to_string(&key.jwks()).unwrap();
    JwtVerifier::from_jwks(&jwks, settings()).unwrap()
}

fn claims() -> TokenClaims {
    TokenClaims::local(
        "acme",
        "user_42",
        &[Scope::EventsRead, Scope::EventsWrite],
        3600,
    )
}

fn invalid(result: Result<Principal, AuthError>) -> String {
    match result {
        Err(AuthError::Invalid(why)) => why,
        other => panic!("expected an invalid token, got {other:?}"),
    }
}

/// A token with any header and claims, signed by nobody.
fn unsigned(header: serde_json::Value, claims: serde_json::Value, signature: &str) -> String {
    format!(
        "{}.{}.{signature}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

#[test]
fn a_valid_token_becomes_its_principal() {
    let key = SigningKey::generate().unwrap();
    let token = key.sign(&claims()).unwrap();

    let principal = verifier(&key).verify(&token).unwrap();

    assert_eq!(principal.tenant, "acme");
    assert_eq!(principal.subject, "user_42");
    assert_eq!(
        principal.scopes,
        BTreeSet::from([Scope::EventsRead, Scope::EventsWrite])
    );
    assert!(principal.require(Scope::EventsRead).is_ok());
    assert_eq!(
        principal.require(Scope::AuditRead),
        Err(AuthError::MissingScope(Scope::AuditRead))
    );
}

#[test]
fn scopes_may_be_an_array_and_unknown_scopes_are_ignored() {
    let key = SigningKey::generate().unwrap();
    let mut claims = serde_json::to_value(claims()).unwrap();
    claims["scope"] = json!(["audit:read", "billing:admin", "events:read"]);

    let principal = verifier(&key).verify(&key.sign(&claims).unwrap()).unwrap();

    assert_eq!(
        principal.scopes,
        BTreeSet::from([Scope::EventsRead, Scope::AuditRead])
    );
}

#[test]
fn an_expired_or_not_yet_valid_token_is_refused() {
    let key = SigningKey::generate().unwrap();
    let mut expired = claims();
    expired.exp = chrono::Utc::now().timestamp() - 120;
    let mut early = claims();
    early.nbf = Some(chrono::Utc::now().timestamp() + 120);

    assert_eq!(
        invalid(verifier(&key).verify(&key.sign(&expired).unwrap())),
        "it has expired"
    );
    assert_eq!(
        invalid(verifier(&key).verify(&key.sign(&early).unwrap())),
        "it is not valid yet (nbf)"
    );
}

#[test]
fn a_token_for_another_issuer_or_audience_is_refused() {
    let key = SigningKey::generate().unwrap();
    let mut other_issuer = claims();
    other_issuer.iss = "https://evil.example".into();
    let mut other_audience = claims();
    other_audience.aud = "someone-else".into();

    assert!(invalid(verifier(&key).verify(&key.sign(&other_issuer).unwrap())).contains("issuer"));
    assert!(
        invalid(verifier(&key).verify(&key.sign(&other_audience).unwrap())).contains("audience")
    );
}

#[test]
fn a_token_signed_by_another_key_is_refused_even_with_the_right_kid() {
    let key = SigningKey::generate().unwrap();
    let impostor = SigningKey::generate().unwrap();
    let forged = impostor.sign(&claims()).unwrap();
    // Put the trusted key's kid on the impostor's signature.
    let mut parts: Vec<String> = forged.split('.').map(str::to_string).collect();
    parts[0] =
        URL_SAFE_NO_PAD.encode(json!({"alg": "ES256", "typ": "JWT", "kid": key.kid()}).to_string());
    let relabelled = parts.join(".");

    assert!(invalid(verifier(&key).verify(&forged)).contains("no key"));
    assert_eq!(
        invalid(verifier(&key).verify(&relabelled)),
        "its signature does not verify"
    );
}

#[test]
fn alg_none_and_hmac_are_never_accepted() {
    let key = SigningKey::generate().unwrap();
    let claims = serde_json::to_value(claims()).unwrap();
    let none = unsigned(json!({"alg": "none", "typ": "JWT"}), claims.clone(), "");
    let none_with_kid = unsigned(json!({"alg": "none", "kid": key.kid()}), claims.clone(), "");
    // HS256 keyed with the public key's bytes: the classic algorithm-confusion forgery.
    let public = serde_json::to_vec(&key.jwks()).unwrap();
    let hs256 = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(&public).unwrap(),
    )
    .unwrap();

    for token in [none, none_with_kid] {
        assert!(
            invalid(verifier(&key).verify(&token)).contains("not a signed JWT"),
            "{token}"
        );
    }
    assert!(invalid(verifier(&key).verify(&hs256)).contains("HS256 is not accepted"));
}

#[test]
fn malformed_tokens_are_refused_with_a_reason() {
    let key = SigningKey::generate().unwrap();
    for token in ["", "abc", "a.b", "a.b.c", "....", "é.é.é"] {
        invalid(verifier(&key).verify(token));
    }
    let good = key.sign(&claims()).unwrap();
    let truncated = &good[..good.len() - 5];
    invalid(verifier(&key).verify(truncated));
}

#[test]
fn the_tenant_and_subject_must_be_valid_identities() {
    let key = SigningKey::generate().unwrap();
    let mut no_tenant = serde_json::to_value(claims()).unwrap();
    no_tenant.as_object_mut().unwrap().remove("tenant_id");
    let mut bad_tenant = serde_json::to_value(claims()).unwrap();
    bad_tenant["tenant_id"] = json!("acme corp; drop table");
    let mut number_tenant = serde_json::to_value(claims()).unwrap();
    number_tenant["tenant_id"] = json!(7);
    let mut bad_subject = serde_json::to_value(claims()).unwrap();
    bad_subject["sub"] = json!("a\u{7}b");
    let mut no_subject = serde_json::to_value(claims()).unwrap();
    no_subject.as_object_mut().unwrap().remove("sub");

    let verify = |c: &serde_json::Value| invalid(verifier(&key).verify(&key.sign(c).unwrap()));
    assert!(verify(&no_tenant).contains("no `tenant_id` claim"));
    assert!(verify(&bad_tenant).contains("claim `tenant_id` may only contain"));
    assert!(verify(&number_tenant).contains("must be a string"));
    assert!(verify(&bad_subject).contains("claim `sub`"));
    assert!(verify(&no_subject).contains("`sub`"));
}

#[test]
fn the_tenant_and_scope_claims_are_configurable() {
    let key = SigningKey::generate().unwrap();
    let mut settings = settings();
    settings.tenant_claim = "custom:org".into();
    settings.scope_claim = "scp".into();
    let jwks = serde_json::to_string(&key.jwks()).unwrap();
    let verifier = JwtVerifier::from_jwks(&jwks, settings).unwrap();
    let mut claims = serde_json::to_value(claims()).unwrap();
    claims["custom:org"] = json!("org-9");
    claims["scp"] = json!("events:read");

    let principal = verifier.verify(&key.sign(&claims).unwrap()).unwrap();

    assert_eq!(principal.tenant, "org-9");
    assert_eq!(principal.scopes, BTreeSet::from([Scope::EventsRead]));
}

#[test]
fn only_asymmetric_algorithms_can_be_configured() {
    assert_eq!(
        parse_algorithms("ES256, RS256,ES256"),
        Ok(vec![Algorithm::ES256, Algorithm::RS256])
    );
    assert!(parse_algorithms("HS256")
        .unwrap_err()
        .contains("asymmetric"));
    assert!(parse_algorithms("none").unwrap_err().contains("unknown"));
    assert!(parse_algorithms(" , ")
        .unwrap_err()
        .contains("at least one"));
}

#[test]
fn a_jwks_without_a_usable_key_is_refused_at_load() {
    let symmetric = json!({"keys": [{"kty": "oct", "k": "c2VjcmV0", "alg": "HS256"}]});
    let error = JwtVerifier::from_jwks(&symmetric.to_string(), settings()).unwrap_err();
    assert!(error.to_string().contains("no key"), "{error}");
    assert!(JwtVerifier::from_jwks("not json", settings()).is_err());
}

#[test]
fn a_saved_key_loads_back_with_the_same_kid_and_private_mode() {
    let dir = std::env::temp_dir().join(format!("sentinel-key-{}", uuid_like()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("key.pem");
    let key = SigningKey::generate().unwrap();

    key.save(&path).unwrap();
    let loaded = SigningKey::load(&path).unwrap();

    assert_eq!(loaded.kid(), key.kid());
    let token = loaded.sign(&claims()).unwrap();
    assert!(verifier(&key).verify(&token).is_ok());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "only the owner may read the key");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

fn uuid_like() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_nanos_opt().unwrap()
    )
}

#[test]
fn bearer_tokens_are_read_from_the_authorization_header() {
    assert_eq!(bearer_token(Some("Bearer abc.def.ghi")), Ok("abc.def.ghi"));
    assert_eq!(bearer_token(Some("bearer  abc ")), Ok("abc"));
    assert_eq!(bearer_token(None), Err(AuthError::Missing));
    for header in ["Basic dXNlcjpwYXNz", "Bearer", "Bearer ", "abc"] {
        assert!(
            matches!(bearer_token(Some(header)), Err(AuthError::Invalid(_))),
            "{header}"
        );
    }
}

#[test]
fn a_cognito_access_token_names_its_audience_in_client_id_and_prefixes_its_scopes() {
    let key = SigningKey::generate().unwrap();
    let mut settings = settings();
    settings.scope_prefix = "sentinel/".into();
    let jwks = serde_json::to_string(&key.jwks()).unwrap();
    let verifier = JwtVerifier::from_jwks(&jwks, settings).unwrap();
    let mut claims = serde_json::to_value(claims()).unwrap();
    claims.as_object_mut().unwrap().remove("aud");
    claims["client_id"] = json!(LOCAL_AUDIENCE);
    claims["scope"] = json!("sentinel/events:read events:write other/audit:read");
    let mut other_client = claims.clone();
    other_client["client_id"] = json!("another-app");
    let mut no_audience = claims.clone();
    no_audience.as_object_mut().unwrap().remove("client_id");

    let principal = verifier.verify(&key.sign(&claims).unwrap()).unwrap();

    assert_eq!(principal.scopes, BTreeSet::from([Scope::EventsRead]));
    assert!(invalid(verifier.verify(&key.sign(&other_client).unwrap())).contains("audience"));
    assert!(invalid(verifier.verify(&key.sign(&no_audience).unwrap())).contains("no `aud`"));
}

mod iam {
    use super::*;
    use sentinel_domain::identity::{DirectoryError, Grant, PrincipalDirectory};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[derive(Default)]
    struct Directory {
        grants: std::collections::HashMap<String, Grant>,
        lookups: AtomicUsize,
        down: bool,
    }

    #[async_trait::async_trait]
    impl PrincipalDirectory for Directory {
        async fn lookup(&self, principal: &str) -> Result<Option<Grant>, DirectoryError> {
            self.lookups.fetch_add(1, Ordering::Relaxed);
            if self.down {
                return Err(DirectoryError("connection refused".into()));
            }
            Ok(self.grants.get(principal).cloned())
        }
    }

    const ROLE: &str = "arn:aws:iam::123456789012:role/billing-svc";
    const SESSION: &str = "arn:aws:sts::123456789012:assumed-role/billing-svc/i-0abc";

    fn directory() -> Arc<Directory> {
        Arc::new(Directory {
            grants: [(
                ROLE.to_string(),
                Grant {
                    tenant: "acme".parse().unwrap(),
                    scopes: vec!["events:write".into(), "not-a-scope".into()],
                },
            )]
            .into(),
            ..Default::default()
        })
    }

    #[tokio::test]
    async fn a_granted_role_session_becomes_a_principal_of_its_tenant() {
        let iam = IamAuthenticator::new(directory());

        let principal = iam.authenticate(Some(SESSION)).await.unwrap();

        assert_eq!(principal.tenant, "acme");
        assert_eq!(principal.subject, SESSION, "the session is the actor");
        assert_eq!(principal.scopes, BTreeSet::from([Scope::EventsWrite]));
    }

    #[tokio::test]
    async fn an_unsigned_request_is_401_and_an_ungranted_principal_403() {
        let iam = IamAuthenticator::new(directory());

        assert!(matches!(
            iam.authenticate(None).await,
            Err(AuthError::Invalid(why)) if why.contains("SigV4")
        ));
        assert_eq!(
            iam.authenticate(Some("arn:aws:iam::123456789012:user/mallory"))
                .await,
            Err(AuthError::NotGranted(
                "arn:aws:iam::123456789012:user/mallory".into()
            ))
        );
    }

    #[tokio::test]
    async fn grants_are_looked_up_once_a_minute_and_a_directory_outage_is_retryable() {
        let directory = directory();
        let iam = IamAuthenticator::new(directory.clone());
        for _ in 0..5 {
            iam.authenticate(Some(SESSION)).await.unwrap();
        }
        assert_eq!(directory.lookups.load(Ordering::Relaxed), 1);

        let down = IamAuthenticator::new(Arc::new(Directory {
            down: true,
            ..Default::default()
        }));
        assert!(matches!(
            down.authenticate(Some(ROLE)).await,
            Err(AuthError::Unavailable(_))
        ));
    }
}
