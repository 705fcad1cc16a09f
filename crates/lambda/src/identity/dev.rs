//! A development signing key: what `scripts/up` creates under `.local/`, what
//! `sentinel token` signs with, and what tests issue tokens from. ES256 (P-256), the curve
//! KMS signs checkpoints with. Never used by a deployed function, which only verifies.

use std::path::Path;

use anyhow::Context;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use jsonwebtoken::jwk::{Jwk, JwkSet, ThumbprintHash};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

use super::Scope;

/// The issuer and audience of local tokens.
pub const LOCAL_ISSUER: &str = "sentinel-local";
pub const LOCAL_AUDIENCE: &str = "sentinel";

/// A P-256 private key with its key id (the RFC 7638 thumbprint of its public JWK).
pub struct SigningKey {
    pkcs8: Vec<u8>,
    jwk: Jwk,
}

/// What a token says: the standard claims and Sentinel's two.
#[derive(Debug, Clone, Serialize)]
pub struct TokenClaims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub tenant_id: String,
    pub scope: String,
    pub iat: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    pub exp: i64,
}

impl TokenClaims {
    /// Claims for the local issuer, valid from now for `ttl_seconds`.
    pub fn local(tenant: &str, subject: &str, scopes: &[Scope], ttl_seconds: i64) -> Self {
        let now = chrono::Utc::now().timestamp();
        Self {
            iss: LOCAL_ISSUER.into(),
            aud: LOCAL_AUDIENCE.into(),
            sub: subject.into(),
            tenant_id: tenant.into(),
            scope: scopes
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(" "),
            iat: now,
            nbf: None,
            exp: now + ttl_seconds,
        }
    }
}

impl SigningKey {
    pub fn generate() -> anyhow::Result<Self> {
        let document =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .map_err(|_| anyhow::anyhow!("failed to generate a P-256 key"))?;
        Self::from_pkcs8(document.as_ref().to_vec())
    }

    /// From a PKCS#8 DER private key.
    pub fn from_pkcs8(pkcs8: Vec<u8>) -> anyhow::Result<Self> {
        let key = EncodingKey::from_ec_der(&pkcs8);
        let mut jwk = Jwk::from_encoding_key(&key, Algorithm::ES256)
            .context("the key is not a P-256 private key")?;
        jwk.common.key_id = Some(jwk.thumbprint(ThumbprintHash::SHA256)?);
        Ok(Self { pkcs8, jwk })
    }

    /// Reads a key written by [`SigningKey::save`].
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let pem = std::fs::read_to_string(path)
            .with_context(|| format!("failed to read the signing key {}", path.display()))?;
        let der = pem
            .lines()
            .filter(|line| !line.starts_with("-----"))
            .collect::<String>();
        let der = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, der)
            .with_context(|| format!("{} is not a PEM private key", path.display()))?;
        Self::from_pkcs8(der)
    }

    /// Writes the private key as PKCS#8 PEM, readable by its owner only.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let body = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &self.pkcs8);
        let lines: Vec<&str> = body
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).expect("base64 is ASCII"))
            .collect();
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            lines.join("\n")
        );
        write_private(path, pem.as_bytes())
    }

    pub fn kid(&self) -> &str {
        self.jwk
            .common
            .key_id
            .as_deref()
            .expect("set at construction")
    }

    /// The public half as a JWKS, for `JWT_JWKS_FILE`.
    pub fn jwks(&self) -> JwkSet {
        JwkSet {
            keys: vec![self.jwk.clone()],
        }
    }

    /// A signed compact JWS of `claims`, with this key's `kid`.
    pub fn sign<T: Serialize>(&self, claims: &T) -> anyhow::Result<String> {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid().to_string());
        Ok(jsonwebtoken::encode(
            &header,
            claims,
            &EncodingKey::from_ec_der(&self.pkcs8),
        )?)
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("failed to write {}", path.display()))?;
    file.write_all(bytes)?;
    Ok(())
}
