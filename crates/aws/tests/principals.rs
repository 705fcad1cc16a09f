//! The IAM principal directory against LocalStack's S3, in a bucket of this test's own.

use sentinel_aws::principals::S3PrincipalDirectory;
use sentinel_domain::identity::{Grant, PrincipalDirectory};

async fn s3() -> aws_sdk_s3::Client {
    sentinel_testing::localstack_env();
    // SAFETY: set before any client reads it; LocalStack needs path-style addressing.
    unsafe { std::env::set_var("S3_FORCE_PATH_STYLE", "true") };
    sentinel_aws::s3::client(&sentinel_aws::config().await)
}

async fn empty_and_delete(client: &aws_sdk_s3::Client, bucket: &str) {
    let listed = client
        .list_object_versions()
        .bucket(bucket)
        .send()
        .await
        .unwrap();
    for version in listed.versions() {
        client
            .delete_object()
            .bucket(bucket)
            .key(version.key().unwrap())
            .set_version_id(version.version_id().map(str::to_string))
            .send()
            .await
            .unwrap();
    }
    for marker in listed.delete_markers() {
        client
            .delete_object()
            .bucket(bucket)
            .key(marker.key().unwrap())
            .set_version_id(marker.version_id().map(str::to_string))
            .send()
            .await
            .unwrap();
    }
    client.delete_bucket().bucket(bucket).send().await.unwrap();
}

#[tokio::test]
async fn grants_are_written_read_listed_and_revoked_one_object_per_principal() {
    let client = s3().await;
    let bucket = sentinel_testing::unique_name("sentinel-principals-test");
    client
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("LocalStack must be running on :4566 (scripts/test starts it)");
    let directory = S3PrincipalDirectory::new(client.clone(), &bucket);
    let role = "arn:aws:iam::123456789012:role/billing-svc";
    let grant = Grant {
        tenant: "acme".parse().unwrap(),
        scopes: vec!["events:write".into(), "events:read".into()],
    };

    let before = directory.lookup(role).await.unwrap();
    directory.grant(role, &grant).await.unwrap();
    let after = directory.lookup(role).await.unwrap();
    let listed = directory.list().await.unwrap();
    let revoked = directory.revoke(role).await.unwrap();
    let gone = directory.lookup(role).await.unwrap();
    let revoked_again = directory.revoke(role).await.unwrap();
    client
        .put_object()
        .bucket(&bucket)
        .key("principals/arn:aws:iam::123456789012:user/broken.json")
        .body(
            b"{\"tenant\": \"acme\", \"scopes\": [], \"admin\": true}"
                .to_vec()
                .into(),
        )
        .send()
        .await
        .unwrap();
    let malformed = directory
        .lookup("arn:aws:iam::123456789012:user/broken")
        .await;

    assert_eq!(before, None);
    assert_eq!(after, Some(grant.clone()));
    assert_eq!(listed, [(role.to_string(), grant)]);
    assert!(revoked && !revoked_again);
    assert_eq!(gone, None);
    assert!(
        malformed.is_err(),
        "a malformed grant is a fault, never a grant: {malformed:?}"
    );
    empty_and_delete(&client, &bucket).await;
}
