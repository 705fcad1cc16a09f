//! KMS: the verifiable log's signing key (issue 11). Checkpoints are signed with an asymmetric
//! `ECC_NIST_P256` key (`ECDSA_SHA_256`); the private key never leaves KMS, and anyone with
//! the public key ([`KmsSigner::public_key`], `kms:GetPublicKey`) can check a signature.

use anyhow::Context;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{MessageType, SigningAlgorithmSpec};

/// KMS takes at most this many bytes of a message to sign whole (`MessageType::Raw`).
pub const MAX_RAW_MESSAGE_BYTES: usize = 4096;

/// Signs with one KMS key.
pub struct KmsSigner {
    client: aws_sdk_kms::Client,
    key_id: String,
}

impl KmsSigner {
    /// `key_id`: the key's id, ARN or alias (`alias/…`).
    pub fn new(aws: &aws_config::SdkConfig, key_id: impl Into<String>) -> Self {
        Self {
            client: aws_sdk_kms::Client::new(aws),
            key_id: key_id.into(),
        }
    }

    /// An ECDSA P-256 signature over SHA-256 of `message`, DER-encoded as KMS returns it.
    /// KMS hashes the message itself; a message over [`MAX_RAW_MESSAGE_BYTES`] is refused
    /// here rather than sent.
    pub async fn sign(&self, message: &[u8]) -> anyhow::Result<Vec<u8>> {
        anyhow::ensure!(
            message.len() <= MAX_RAW_MESSAGE_BYTES,
            "a message to sign is {} bytes; KMS signs at most {MAX_RAW_MESSAGE_BYTES}",
            message.len()
        );
        let output = self
            .client
            .sign()
            .key_id(&self.key_id)
            .message(Blob::new(message))
            .message_type(MessageType::Raw)
            .signing_algorithm(SigningAlgorithmSpec::EcdsaSha256)
            .send()
            .await
            .with_context(|| format!("failed to sign with the KMS key {}", self.key_id))?;
        output
            .signature
            .map(Blob::into_inner)
            .with_context(|| format!("KMS returned no signature for the key {}", self.key_id))
    }

    /// The key's public half as DER SubjectPublicKeyInfo.
    pub async fn public_key(&self) -> anyhow::Result<Vec<u8>> {
        let output = self
            .client
            .get_public_key()
            .key_id(&self.key_id)
            .send()
            .await
            .with_context(|| format!("failed to read the public key of {}", self.key_id))?;
        anyhow::ensure!(
            output.key_spec().map(|s| s.as_str()) == Some("ECC_NIST_P256"),
            "the key {} is {:?}, not ECC_NIST_P256",
            self.key_id,
            output.key_spec()
        );
        output
            .public_key
            .map(Blob::into_inner)
            .with_context(|| format!("KMS returned no public key for {}", self.key_id))
    }
}

/// The key behind `alias` (`alias/…`), created as an `ECC_NIST_P256` signing key if there is
/// none: for local stacks and tests. Deployed, the template creates the key.
pub async fn ensure_signing_key(
    config: &aws_config::SdkConfig,
    alias: &str,
) -> anyhow::Result<String> {
    use aws_sdk_kms::types::{KeySpec, KeyUsageType};
    let client = aws_sdk_kms::Client::new(config);
    match client.describe_key().key_id(alias).send().await {
        Ok(found) => {
            if let Some(id) = found.key_metadata().map(|m| m.key_id().to_string()) {
                return Ok(id);
            }
        }
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_not_found_exception()) => {}
        Err(e) => return Err(e).with_context(|| format!("failed to look up the KMS key {alias}")),
    }
    let created = client
        .create_key()
        .key_spec(KeySpec::EccNistP256)
        .key_usage(KeyUsageType::SignVerify)
        .description("Sentinel checkpoint signing key (local)")
        .send()
        .await
        .context("failed to create the KMS signing key")?;
    let id = created
        .key_metadata()
        .map(|m| m.key_id().to_string())
        .context("KMS created a key without an id")?;
    client
        .create_alias()
        .alias_name(alias)
        .target_key_id(&id)
        .send()
        .await
        .with_context(|| format!("failed to name the KMS key {alias}"))?;
    Ok(id)
}

#[async_trait::async_trait]
impl sentinel_domain::log::Signer for KmsSigner {
    async fn sign(
        &self,
        message: &[u8],
    ) -> Result<Vec<u8>, Box<dyn std::error::Error + Send + Sync>> {
        KmsSigner::sign(self, message)
            .await
            .map_err(|e| format!("{e:#}").into())
    }
}
