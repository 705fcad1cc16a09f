//! The template's infrastructure deployed into LocalStack's CloudFormation
//! (`INFRA_AWS_ENDPOINT_URL`, started by scripts/test), with `DeployFunctions=false`:
//! LocalStack has no Lambda here, so the functions, API, migrator and their alarms are left
//! out. The template is deployed as `sam package` leaves it: the transform needs an S3
//! `CodeUri`, which packaging would upload; none of it is used without the functions. Like
//! `sam deploy` (`resolve_s3`), it is passed by S3 URL: it is larger than the 51,200 bytes
//! CloudFormation accepts inline.

use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_cloudformation::types::{Capability, Parameter, StackStatus};
use sentinel_sam::root;

fn endpoint() -> String {
    std::env::var("INFRA_AWS_ENDPOINT_URL").unwrap_or_else(|_| "http://127.0.0.1:4568".into())
}

async fn aws() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint())
        .region(Region::new("us-east-1"))
        .test_credentials()
        .load()
        .await
}

fn packaged_template() -> String {
    let text = std::fs::read_to_string(root().join("template.yaml")).unwrap();
    let packaged = text.replacen(
        "    CodeUri: .\n",
        "    CodeUri: s3://sentinel-packaged-artifacts/code.zip\n",
        1,
    );
    assert_ne!(packaged, text, "the template's Globals set CodeUri: .");
    packaged
}

/// Deletes the stack (and the buckets it retains) when the test ends, passed or not. A
/// checkpoint bucket holding a locked checkpoint cannot be deleted; it stays in LocalStack
/// (in memory) until LocalStack stops.
struct Stack {
    name: String,
    buckets: Vec<String>,
}

impl Drop for Stack {
    fn drop(&mut self) {
        let name = self.name.clone();
        let buckets = self.buckets.clone();
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async move {
                    let aws = aws().await;
                    let _ = aws_sdk_cloudformation::Client::new(&aws)
                        .delete_stack()
                        .stack_name(&name)
                        .send()
                        .await;
                    let s3 = s3(&aws);
                    for bucket in buckets {
                        let _ = s3.delete_bucket().bucket(&bucket).send().await;
                    }
                })
        })
        .join();
    }
}

fn s3(aws: &SdkConfig) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(aws)
            .force_path_style(true)
            .build(),
    )
}

async fn wait_for(
    cfn: &aws_sdk_cloudformation::Client,
    name: &str,
    until: StackStatus,
) -> aws_sdk_cloudformation::types::Stack {
    let started = Instant::now();
    loop {
        let stack = cfn
            .describe_stacks()
            .stack_name(name)
            .send()
            .await
            .unwrap()
            .stacks
            .unwrap()
            .remove(0);
        let status = stack.stack_status.clone().unwrap();
        if status == until {
            return stack;
        }
        if !status.as_str().ends_with("IN_PROGRESS") {
            let events = cfn
                .describe_stack_events()
                .stack_name(name)
                .send()
                .await
                .unwrap();
            let reasons: Vec<String> = events
                .stack_events
                .unwrap_or_default()
                .iter()
                .filter_map(|e| {
                    e.resource_status_reason
                        .as_ref()
                        .map(|r| format!("{:?}: {r}", e.logical_resource_id))
                })
                .collect();
            panic!("stack {name} is {status:?}, not {until:?}: {reasons:#?}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "stack {name} still {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn output(stack: &aws_sdk_cloudformation::types::Stack, key: &str) -> Option<String> {
    stack
        .outputs()
        .iter()
        .find(|o| o.output_key() == Some(key))
        .and_then(|o| o.output_value().map(str::to_string))
}

/// Puts the template where CloudFormation reads it, as `sam deploy` does; answers its URL.
async fn upload_template(s3: &aws_sdk_s3::Client, bucket: &str) -> String {
    s3.create_bucket().bucket(bucket).send().await.unwrap();
    s3.put_object()
        .bucket(bucket)
        .key("template.yaml")
        .body(packaged_template().into_bytes().into())
        .send()
        .await
        .unwrap();
    format!("{}/{bucket}/template.yaml", endpoint())
}

/// Removes the uploaded template once CloudFormation has read it.
async fn remove_template(s3: &aws_sdk_s3::Client, bucket: &str) {
    let _ = s3
        .delete_object()
        .bucket(bucket)
        .key("template.yaml")
        .send()
        .await;
    let _ = s3.delete_bucket().bucket(bucket).send().await;
}

fn parameter(key: &str, value: &str) -> Parameter {
    Parameter::builder()
        .parameter_key(key)
        .parameter_value(value)
        .build()
}

/// A P-256 signing key whose public key is readable by `alias`, and which (the functions
/// left out) no one is allowed to sign with: the account administers it and reads its
/// public key only.
async fn assert_signing_key(kms: &aws_sdk_kms::Client, key_arn: &str, alias: &str) {
    let key = kms
        .describe_key()
        .key_id(alias)
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap();
    assert_eq!(key.arn.as_deref(), Some(key_arn));
    assert_eq!(key.key_spec, Some(aws_sdk_kms::types::KeySpec::EccNistP256));
    assert_eq!(
        key.key_usage,
        Some(aws_sdk_kms::types::KeyUsageType::SignVerify)
    );
    let public_key = kms.get_public_key().key_id(alias).send().await.unwrap();
    assert!(public_key
        .signing_algorithms()
        .contains(&aws_sdk_kms::types::SigningAlgorithmSpec::EcdsaSha256));
    assert!(public_key
        .public_key
        .is_some_and(|k| !k.as_ref().is_empty()));
    let key_policy = kms
        .get_key_policy()
        .key_id(key_arn)
        .policy_name("default")
        .send()
        .await
        .unwrap()
        .policy
        .unwrap();
    let key_policy: serde_json::Value = serde_json::from_str(&key_policy).unwrap();
    let statements = key_policy["Statement"].as_array().unwrap();
    assert_eq!(statements.len(), 2, "{key_policy}");
    assert!(!key_policy.to_string().contains("kms:Sign"), "{key_policy}");
    assert!(key_policy.to_string().contains("kms:GetPublicKey"));
}

#[tokio::test]
async fn the_infrastructure_deploys_into_localstack_cloudformation_and_is_deleted_with_it() {
    let aws = aws().await;
    let cfn = aws_sdk_cloudformation::Client::new(&aws);
    let id = &uuid::Uuid::new_v4().simple().to_string()[..10];
    let mut stack = Stack {
        name: format!("sentinel-test-{id}"),
        buckets: Vec::new(),
    };
    let s3 = s3(&aws);
    let artifacts = format!("sentinel-test-templates-{id}");
    let template_url = upload_template(&s3, &artifacts).await;

    let created = cfn
        .create_stack()
        .stack_name(&stack.name)
        .template_url(template_url)
        .capabilities(Capability::CapabilityIam)
        .capabilities(Capability::CapabilityAutoExpand)
        .parameters(parameter("DeployFunctions", "false"))
        .parameters(parameter("DatabaseHost", "db.example.internal"))
        .parameters(parameter(
            "DatabaseAdminSecretArn",
            "arn:aws:secretsmanager:us-east-1:000000000000:secret:sentinel-admin-AbCdEf",
        ))
        .parameters(parameter("VpcSubnetIds", "subnet-0123456789abcdef0"))
        .parameters(parameter("VpcSecurityGroupIds", "sg-0123456789abcdef0"))
        .parameters(parameter(
            "AthenaDatabaseName",
            &format!("sentinel_archive_{id}"),
        ))
        .send()
        .await;
    remove_template(&s3, &artifacts).await;
    created.unwrap_or_else(|e| {
        panic!(
            "LocalStack's CloudFormation must be reachable at {}: {e:?}",
            endpoint()
        )
    });
    let created = wait_for(&cfn, &stack.name, StackStatus::CreateComplete).await;

    // The stream.
    let stream = output(&created, "StreamName").expect("StreamName output");
    let summary = aws_sdk_kinesis::Client::new(&aws)
        .describe_stream_summary()
        .stream_name(&stream)
        .send()
        .await
        .unwrap()
        .stream_description_summary
        .unwrap();
    assert_eq!(summary.stream_status.as_str(), "ACTIVE");
    assert_eq!(
        summary.stream_mode_details.unwrap().stream_mode.as_str(),
        "ON_DEMAND"
    );

    // The bucket: versioned, encrypted, private, TLS only.
    let bucket = output(&created, "ArchiveBucketName").expect("ArchiveBucketName output");
    stack.buckets.push(bucket.clone());
    let versioning = s3
        .get_bucket_versioning()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    assert_eq!(versioning.status.unwrap().as_str(), "Enabled");
    let encryption = s3
        .get_bucket_encryption()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    let rule = &encryption
        .server_side_encryption_configuration
        .unwrap()
        .rules[0];
    assert_eq!(
        rule.apply_server_side_encryption_by_default
            .as_ref()
            .unwrap()
            .sse_algorithm
            .as_str(),
        "AES256"
    );
    let block = s3
        .get_public_access_block()
        .bucket(&bucket)
        .send()
        .await
        .unwrap()
        .public_access_block_configuration
        .unwrap();
    assert_eq!(
        (
            block.block_public_acls,
            block.ignore_public_acls,
            block.block_public_policy,
            block.restrict_public_buckets
        ),
        (Some(true), Some(true), Some(true), Some(true))
    );
    let policy = s3
        .get_bucket_policy()
        .bucket(&bucket)
        .send()
        .await
        .unwrap()
        .policy
        .unwrap();
    assert!(policy.contains("aws:SecureTransport"), "{policy}");

    // The on-failure queue.
    let queue = output(&created, "WriterFailureQueueUrl").expect("WriterFailureQueueUrl output");
    let sqs = aws_sdk_sqs::Client::new(&aws);
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(&queue)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap();
    assert_eq!(
        attributes
            .get(&aws_sdk_sqs::types::QueueAttributeName::MessageRetentionPeriod)
            .map(String::as_str),
        Some("1209600")
    );

    // Each function's login secret, generated: a user name and a long password.
    let secrets = aws_sdk_secretsmanager::Client::new(&aws);
    for (key, user) in [
        ("WriterDatabaseSecretArn", "sentinel_writer_login"),
        ("ReaderDatabaseSecretArn", "sentinel_reader_login"),
        ("ArchiverDatabaseSecretArn", "sentinel_archiver_login"),
        (
            "CheckpointerDatabaseSecretArn",
            "sentinel_checkpointer_login",
        ),
    ] {
        let arn = output(&created, key).unwrap_or_else(|| panic!("{key} output"));
        let value = secrets
            .get_secret_value()
            .secret_id(&arn)
            .send()
            .await
            .unwrap()
            .secret_string
            .unwrap();
        let json: serde_json::Value = serde_json::from_str(&value).unwrap();
        assert_eq!(json["username"], user);
        assert_eq!(json["password"].as_str().unwrap().len(), 40);
    }
    // The two signing keys, the checkpoints' and the archive's manifests': each P-256, for
    // signing, its public key readable by alias; two keys, not one.
    let kms = aws_sdk_kms::Client::new(&aws);
    let mut key_arns = Vec::new();
    for (prefix, suffix) in [("Checkpoint", "checkpoints"), ("Archive", "archive")] {
        let key_arn = output(&created, &format!("{prefix}SigningKeyArn"))
            .unwrap_or_else(|| panic!("{prefix}SigningKeyArn"));
        let alias = output(&created, &format!("{prefix}SigningKeyAlias"))
            .unwrap_or_else(|| panic!("{prefix}SigningKeyAlias"));
        assert_eq!(alias, format!("alias/{}-{suffix}", stack.name));
        assert_signing_key(&kms, &key_arn, &alias).await;
        key_arns.push(key_arn);
    }
    assert_ne!(key_arns[0], key_arns[1]);

    // The checkpoint bucket: Object Lock in compliance mode by default, versioned, TLS only.
    let checkpoints = output(&created, "CheckpointBucketName").expect("CheckpointBucketName");
    stack.buckets.push(checkpoints.clone());
    let lock = s3
        .get_object_lock_configuration()
        .bucket(&checkpoints)
        .send()
        .await
        .unwrap()
        .object_lock_configuration
        .unwrap();
    assert_eq!(
        lock.object_lock_enabled,
        Some(aws_sdk_s3::types::ObjectLockEnabled::Enabled)
    );
    let retention = lock.rule.unwrap().default_retention.unwrap();
    assert_eq!(
        retention.mode,
        Some(aws_sdk_s3::types::ObjectLockRetentionMode::Compliance)
    );
    assert_eq!(retention.days, Some(400));
    let versioning = s3
        .get_bucket_versioning()
        .bucket(&checkpoints)
        .send()
        .await
        .unwrap();
    assert_eq!(versioning.status.unwrap().as_str(), "Enabled");
    let policy = s3
        .get_bucket_policy()
        .bucket(&checkpoints)
        .send()
        .await
        .unwrap()
        .policy
        .unwrap();
    assert!(policy.contains("aws:SecureTransport"), "{policy}");
    // A checkpoint put as the checkpointer puts it (no lock headers) is locked by the
    // default retention, and its version cannot be deleted.
    let note_key = "checkpoints/default/1-20260101T000000Z.note";
    let put = s3
        .put_object()
        .bucket(&checkpoints)
        .key(note_key)
        .body(
            b"sentinel/test/default
1
...
"
            .to_vec()
            .into(),
        )
        .send()
        .await
        .unwrap();
    let head = s3
        .head_object()
        .bucket(&checkpoints)
        .key(note_key)
        .send()
        .await
        .unwrap();
    assert_eq!(
        head.object_lock_mode,
        Some(aws_sdk_s3::types::ObjectLockMode::Compliance)
    );
    let until = head.object_lock_retain_until_date.unwrap().secs();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(until > now + 399 * 86_400, "retained until {until}");
    let deleted = s3
        .delete_object()
        .bucket(&checkpoints)
        .key(note_key)
        .set_version_id(put.version_id)
        .send()
        .await;
    assert!(deleted.is_err(), "a locked checkpoint was deleted");

    assert!(output(&created, "AlarmTopicArn").is_some());
    assert_eq!(
        output(&created, "AthenaTable").is_some(),
        output(&created, "AthenaDatabase").is_some()
    );
    // Nothing of the functions was deployed.
    assert_eq!(output(&created, "ApiUrl"), None);

    // Deleting the stack removes the stream and the queue.
    cfn.delete_stack()
        .stack_name(&stack.name)
        .send()
        .await
        .unwrap();
    let started = Instant::now();
    loop {
        let gone = aws_sdk_kinesis::Client::new(&aws)
            .describe_stream_summary()
            .stream_name(&stream)
            .send()
            .await
            .is_err();
        if gone {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the stream outlived its stack"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(sqs
        .get_queue_url()
        .queue_name(queue.rsplit('/').next().unwrap())
        .send()
        .await
        .is_err());
    // The bucket's DeletionPolicy: Retain is checked in tests/template.rs: LocalStack's
    // CloudFormation deletes retained buckets too, so it cannot be checked here.
}
