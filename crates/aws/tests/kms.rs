//! The checkpoint signer against LocalStack's KMS, with a key of this test's own.

use aws_lc_rs::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_ASN1};
use aws_sdk_kms::types::{KeySpec, KeyUsageType};
use sentinel_aws::kms::{KmsSigner, MAX_RAW_MESSAGE_BYTES};

/// A fresh P-256 signing key; scheduled for deletion (the shortest wait KMS allows) at the end.
struct TestKey {
    client: aws_sdk_kms::Client,
    id: String,
}

impl TestKey {
    async fn create(aws: &aws_config::SdkConfig) -> Self {
        let client = aws_sdk_kms::Client::new(aws);
        let id = client
            .create_key()
            .key_spec(KeySpec::EccNistP256)
            .key_usage(KeyUsageType::SignVerify)
            .description(sentinel_testing::unique_name("sentinel-test-checkpoints"))
            .send()
            .await
            .expect("LocalStack must be running with KMS (scripts/test starts it)")
            .key_metadata
            .unwrap()
            .key_id;
        Self { client, id }
    }

    async fn delete(self) {
        self.client
            .schedule_key_deletion()
            .key_id(&self.id)
            .pending_window_in_days(7)
            .send()
            .await
            .unwrap();
    }
}

/// The uncompressed point inside a P-256 SubjectPublicKeyInfo (its last 65 bytes).
fn point(spki: &[u8]) -> &[u8] {
    assert_eq!(spki.len(), 91, "a P-256 SubjectPublicKeyInfo is 91 bytes");
    assert_eq!(spki[26], 0x04, "an uncompressed point");
    &spki[26..]
}

#[tokio::test]
async fn a_kms_signature_verifies_with_the_public_key_and_fails_for_anything_else() {
    sentinel_testing::localstack_env();
    let aws = sentinel_aws::config().await;
    let key = TestKey::create(&aws).await;
    let other = TestKey::create(&aws).await;
    let signer = KmsSigner::new(&aws, key.id.clone());
    let note = b"sentinel/local/acme\n42\nq6mcMV9Y1CiDUkDl2ntkd5Cz3tuEFnvkrvmJ2Z6Y/PM=\n";

    let signature = signer.sign(note).await.unwrap();
    let public_key = signer.public_key().await.unwrap();
    let others_signature = KmsSigner::new(&aws, other.id.clone())
        .sign(note)
        .await
        .unwrap();

    let verifier = UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, point(&public_key));
    assert!(verifier.verify(note, &signature).is_ok());
    let mut tampered = note.to_vec();
    tampered[20] ^= 1;
    assert!(verifier.verify(&tampered, &signature).is_err());
    assert!(verifier.verify(note, &others_signature).is_err());
    key.delete().await;
    other.delete().await;
}

#[tokio::test]
async fn a_message_kms_cannot_sign_whole_is_refused_before_it_is_sent() {
    sentinel_testing::localstack_env();
    let aws = sentinel_aws::config().await;
    let signer = KmsSigner::new(&aws, "alias/does-not-matter");

    let error = signer
        .sign(&vec![b'x'; MAX_RAW_MESSAGE_BYTES + 1])
        .await
        .unwrap_err();

    assert!(
        error.to_string().contains("KMS signs at most 4096"),
        "{error}"
    );
}

#[tokio::test]
async fn a_missing_key_is_a_clear_error() {
    sentinel_testing::localstack_env();
    let aws = sentinel_aws::config().await;
    let signer = KmsSigner::new(&aws, "alias/sentinel-no-such-key");

    let error = signer.sign(b"note").await.unwrap_err();

    assert!(
        error
            .to_string()
            .contains("failed to sign with the KMS key alias/sentinel-no-such-key"),
        "{error}"
    );
}
