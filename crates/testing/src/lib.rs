//! Support for integration tests: a fresh, migrated database per test, dropped afterwards,
//! and LocalStack settings.

use tokio_postgres::NoTls;

pub mod auth;

/// The server tests create their databases on (`DATABASE_URL`, by default the local one).
pub fn admin_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/sentinel".to_string())
}

fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let prefix = match base.rfind('/') {
        Some(i) if i > base.find("//").map(|j| j + 1).unwrap_or(0) => &base[..i],
        _ => base,
    };
    match query {
        Some(q) => format!("{prefix}/{database}?{q}"),
        None => format!("{prefix}/{database}"),
    }
}

/// A database of its own for one test: created and migrated on `create`, dropped on drop.
pub struct TestDatabase {
    pub name: String,
    pub url: String,
    admin_url: String,
}

impl TestDatabase {
    pub async fn create() -> Self {
        let admin_url = with_database(&admin_url(), "postgres");
        let name = format!("sentinel_test_{}", uuid::Uuid::new_v4().simple());
        let (client, connection) = tokio_postgres::connect(&admin_url, NoTls)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL must be reachable at {admin_url}: {e}"));
        tokio::spawn(connection);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("failed to create the test database");
        let url = with_database(&admin_url, &name);
        sentinel_postgres::migrate(&url)
            .await
            .expect("failed to migrate the test database");
        Self {
            name,
            url,
            admin_url,
        }
    }

    /// A plain client on the test database, for arranging and asserting.
    pub async fn client(&self) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(&self.url, NoTls)
            .await
            .expect("failed to connect to the test database");
        tokio::spawn(connection);
        client
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        // Drop runs inside the test's runtime, so the cleanup gets a thread of its own.
        on_own_thread(move || async move {
            if let Ok((client, connection)) = tokio_postgres::connect(&admin_url, NoTls).await {
                tokio::spawn(connection);
                let _ = client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await;
            }
        });
    }
}

/// Points the AWS SDK at LocalStack unless the environment already says where to go.
pub fn localstack_env() {
    for (key, value) in [
        ("AWS_ENDPOINT_URL", "http://127.0.0.1:4566"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
    ] {
        if std::env::var(key).is_err() {
            // SAFETY: called before any test spawns threads that read the environment.
            unsafe { std::env::set_var(key, value) };
        }
    }
}

/// A unique name for a stream, bucket or queue of one test.
pub fn unique_name(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// A TCP proxy in front of a real server, which a test can cut and restore to make the
/// server truly unreachable: open connections are severed and new ones refused.
pub struct CuttableProxy {
    pub port: u16,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
    generation: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl CuttableProxy {
    pub async fn start(target: std::net::SocketAddr) -> Self {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let cut = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let generation = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (cut2, generation2) = (cut.clone(), generation.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if cut2.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let born = generation2.load(Ordering::SeqCst);
                let (cut3, generation3) = (cut2.clone(), generation2.clone());
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    let copy = tokio::io::copy_bidirectional(&mut inbound, &mut outbound);
                    let watch = async {
                        while !cut3.load(Ordering::SeqCst)
                            && generation3.load(Ordering::SeqCst) == born
                        {
                            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                        }
                    };
                    tokio::select! { _ = copy => {}, _ = watch => {} }
                });
            }
        });
        Self {
            port,
            cut,
            generation,
        }
    }

    /// Severs every connection and refuses new ones; returns once connections are severed.
    pub async fn cut(&self) {
        self.cut.store(true, std::sync::atomic::Ordering::SeqCst);
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }

    pub fn restore(&self) {
        self.cut.store(false, std::sync::atomic::Ordering::SeqCst);
    }

    /// `url` with its host and port replaced by this proxy's.
    pub fn url_for(&self, url: &str) -> String {
        let config: tokio_postgres::Config = url.parse().expect("valid url");
        let user = config.get_user().unwrap_or("postgres");
        let database = config.get_dbname().unwrap_or("postgres");
        format!("postgres://{user}@127.0.0.1:{}/{database}", self.port)
    }
}

/// A Kinesis stream of one test's own on LocalStack, deleted on drop.
pub struct TestStream {
    pub name: String,
    pub client: aws_sdk_kinesis::Client,
}

/// A Kinesis client for LocalStack, or for `endpoint` when given.
pub async fn kinesis_client(endpoint: Option<&str>) -> aws_sdk_kinesis::Client {
    localstack_env();
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(endpoint) = endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    aws_sdk_kinesis::Client::new(&loader.load().await)
}

impl TestStream {
    pub async fn create(client: aws_sdk_kinesis::Client, shards: i32) -> Self {
        let name = unique_name("sentinel-test");
        client
            .create_stream()
            .stream_name(&name)
            .shard_count(shards)
            .send()
            .await
            .expect("LocalStack must be running (scripts/test starts it)");
        for _ in 0..100 {
            let summary = client
                .describe_stream_summary()
                .stream_name(&name)
                .send()
                .await
                .expect("describe stream");
            if summary
                .stream_description_summary()
                .map(|s| s.stream_status().as_str())
                == Some("ACTIVE")
            {
                return Self { name, client };
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("stream {name} did not become ACTIVE");
    }

    /// Every record on every shard, as (shard id, record), in shard order.
    pub async fn read_all(&self) -> Vec<(String, aws_sdk_kinesis::types::Record)> {
        let shards = self
            .client
            .list_shards()
            .stream_name(&self.name)
            .send()
            .await
            .expect("list shards");
        let mut all = Vec::new();
        for shard in shards.shards() {
            let mut iterator = self
                .client
                .get_shard_iterator()
                .stream_name(&self.name)
                .shard_id(shard.shard_id())
                .shard_iterator_type(aws_sdk_kinesis::types::ShardIteratorType::TrimHorizon)
                .send()
                .await
                .expect("shard iterator")
                .shard_iterator
                .expect("iterator");
            loop {
                let page = self
                    .client
                    .get_records()
                    .shard_iterator(&iterator)
                    .limit(1000)
                    .send()
                    .await
                    .expect("get records");
                let empty = page.records().is_empty();
                all.extend(
                    page.records()
                        .iter()
                        .map(|r| (shard.shard_id().to_string(), r.clone())),
                );
                match page.next_shard_iterator {
                    Some(next) if !empty || page.millis_behind_latest.unwrap_or(0) > 0 => {
                        iterator = next
                    }
                    _ => break,
                }
            }
        }
        all
    }
}

impl Drop for TestStream {
    fn drop(&mut self) {
        let (client, name) = (self.client.clone(), self.name.clone());
        on_own_thread(move || async move {
            let _ = client
                .delete_stream()
                .stream_name(name)
                .enforce_consumer_deletion(true)
                .send()
                .await;
        });
    }
}

/// Runs async cleanup to completion from a `Drop`: drop runs inside the test's runtime,
/// which cannot be blocked on, so the future is built and run on a thread and runtime of
/// its own, and the caller waits for it.
pub fn on_own_thread<F>(make: impl FnOnce() -> F + Send + 'static)
where
    F: std::future::Future<Output = ()>,
{
    let _ = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(make());
    })
    .join();
}

/// The verifiable log's signer and checkpoint archive, in memory: for tests of the log's
/// logic that are not about KMS or S3 (those run against LocalStack).
pub mod log {
    use std::sync::Mutex;

    use async_trait::async_trait;
    use p256::ecdsa::signature::Signer as _;
    use p256::ecdsa::{DerSignature, SigningKey};
    use p256::pkcs8::EncodePublicKey as _;
    use sentinel_domain::checkpoint::{KeyName, VerifierKey};
    use sentinel_domain::log::{CheckpointArchive, Signer};

    type BoxError = Box<dyn std::error::Error + Send + Sync>;

    /// An ECDSA P-256 key derived from `seed`, signing as KMS does (DER over SHA-256).
    pub struct MemorySigner {
        key: SigningKey,
    }

    impl MemorySigner {
        pub fn new(seed: &str) -> Self {
            use sha2::Digest as _;
            let secret = sha2::Sha256::digest(seed.as_bytes());
            Self {
                key: SigningKey::from_slice(&secret).expect("a SHA-256 digest is a valid scalar"),
            }
        }

        /// The public half, named `name`, as a note verifier key.
        pub fn verifier(&self, name: &str) -> VerifierKey {
            let spki = self
                .key
                .verifying_key()
                .to_public_key_der()
                .expect("a P-256 key encodes");
            VerifierKey::from_spki_der(KeyName::parse(name).expect("a key name"), spki.as_bytes())
                .expect("a P-256 SPKI")
        }
    }

    #[async_trait]
    impl Signer for MemorySigner {
        async fn sign(&self, message: &[u8]) -> Result<Vec<u8>, BoxError> {
            let signature: DerSignature = self.key.sign(message);
            Ok(signature.as_bytes().to_vec())
        }
    }

    /// A valid event of `tenant` with `id`, that happened at `occurred_at` (RFC 3339).
    pub fn sample_event(tenant: &str, id: &str, occurred_at: &str) -> sentinel_domain::AuditEvent {
        use sentinel_domain::fields::{Changes, Metadata, Timestamp};
        let occurred_at = Timestamp::parse(occurred_at).expect("an RFC 3339 time");
        let object = |value: serde_json::Value| value.as_object().expect("an object").clone();
        sentinel_domain::AuditEvent {
            id: id.parse().expect("an event id"),
            tenant_id: tenant.parse().expect("a tenant id"),
            occurred_at,
            received_at: occurred_at,
            actor_id: "user_123".parse().expect("an actor id"),
            actor_type: Some("user".parse().expect("an actor type")),
            action: "invoice.update".parse().expect("an action"),
            resource_type: "invoice".parse().expect("a resource type"),
            resource_id: format!("inv_{id}").parse().expect("a resource id"),
            changes: Changes::parse_stored(object(serde_json::json!(
                {"status": {"before": "pending", "after": "paid"}}
            )))
            .expect("changes"),
            metadata: Metadata::parse(object(serde_json::json!({"ip": "192.0.2.7"})))
                .expect("metadata"),
        }
    }

    /// A log with no checkpoints and no events: for handler tests that do not read the log.
    pub struct EmptyLog;

    #[async_trait]
    impl sentinel_domain::log::LogReader for EmptyLog {
        async fn latest_checkpoint(
            &self,
            _: &sentinel_domain::fields::TenantId,
        ) -> Result<
            Option<sentinel_domain::log::StoredCheckpoint>,
            sentinel_domain::store::StoreError,
        > {
            Ok(None)
        }

        async fn event_in_log(
            &self,
            _: &sentinel_domain::fields::TenantId,
            _: &str,
        ) -> Result<Option<sentinel_domain::log::EventInLog>, sentinel_domain::store::StoreError>
        {
            Ok(None)
        }

        async fn consistency(
            &self,
            _: &sentinel_domain::fields::TenantId,
            _: u64,
            _: Option<u64>,
        ) -> Result<
            (
                sentinel_domain::log::StoredCheckpoint,
                Vec<sentinel_domain::merkle::Hash>,
            ),
            sentinel_domain::log::ConsistencyError,
        > {
            Err(sentinel_domain::log::ConsistencyError::NoCheckpoint)
        }
    }

    /// Keeps every checkpoint put, in order.
    #[derive(Default)]
    pub struct MemoryArchive {
        pub puts: Mutex<Vec<(String, Vec<u8>)>>,
    }

    #[async_trait]
    impl CheckpointArchive for MemoryArchive {
        async fn put(&self, key: &str, note: &[u8]) -> Result<(), BoxError> {
            self.puts
                .lock()
                .expect("not poisoned")
                .push((key.to_string(), note.to_vec()));
            Ok(())
        }
    }
}
