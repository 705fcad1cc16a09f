//! `sentinel`: operator commands for the database and the local stack.

use std::time::Duration;

use anyhow::Context;
use aws_config::BehaviorVersion;
use clap::{Parser, Subcommand};

mod ops;
mod poke;
mod verify;

#[derive(Parser)]
#[command(name = "sentinel", about = "Sentinel's operator commands", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Apply pending migrations (safe to run again).
    Migrate {
        #[command(flatten)]
        database: Database,
        /// Create the database first if it does not exist.
        #[arg(long)]
        create_database: bool,
        /// Also create the local logins the functions connect as (`sentinel_writer_local`,
        /// `sentinel_reader_local`, `sentinel_archiver_local`, one per group role, no
        /// password: for a server that trusts local connections, never on AWS).
        #[arg(long)]
        local_logins: bool,
    },
    /// Show the conflicts the writer kept: copies of stored event ids that came with other
    /// content (newest first), with the fields that differ.
    Conflicts {
        #[command(flatten)]
        database: Database,
        /// Only this tenant's.
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: i64,
        /// One JSON object a line, with both contents.
        #[arg(long)]
        json: bool,
    },
    /// Print the public key of the KMS key that signs the log's checkpoints, as PEM: what
    /// an auditor needs to check them (`kms:GetPublicKey`).
    PublicKey {
        /// The key's id, ARN or alias.
        #[arg(long, env = "SIGNING_KEY_ID")]
        key_id: String,
    },
    /// Check a tenant's verifiable log: every checkpoint's signature (PostgreSQL and S3), every
    /// event's leaf recomputed from its row, the tree against each checkpoint. Exit status 0
    /// if everything verifies, 1 if not, 2 if the check could not run.
    Verify(verify::VerifyArgs),
    /// Send realistic sample events through the ingest API, with progress and the rate
    /// achieved; exits 1 if any event was refused.
    EmitSample(ops::EmitArgs),
    /// Check every component (ingest, query, the stream, the database, the buckets, the
    /// signing keys, and the writer end to end with a probe event), each with its latency;
    /// exits 1 if any fails.
    Poke(poke::PokeArgs),
    /// Events of the token's tenant, filtered as `GET /events`, as a table or JSON.
    Query(ops::QueryArgs),
    /// Follow new events as they become queryable (the same filters).
    Tail(ops::TailArgs),
    /// Write every event of a filter to a file, as CSV or NDJSON, oldest first.
    Export(ops::ExportArgs),
    /// Create the stream, archive bucket and failure queue on LocalStack (idempotent).
    LocalstackInit {
        #[arg(long, env = "STREAM_NAME", default_value = "sentinel-events")]
        stream: String,
        #[arg(long, default_value_t = 2)]
        shards: i32,
        #[arg(long, env = "ARCHIVE_BUCKET", default_value = "sentinel-archive")]
        bucket: String,
        #[arg(long, default_value = "sentinel-writer-failures")]
        queue: String,
        /// The checkpoints' bucket (with Object Lock, as deployed).
        #[arg(
            long,
            env = "CHECKPOINT_BUCKET",
            default_value = "sentinel-checkpoints"
        )]
        checkpoint_bucket: String,
        /// The alias of the KMS key that signs checkpoints (created if missing).
        #[arg(
            long,
            env = "SIGNING_KEY_ID",
            default_value = "alias/sentinel-local-checkpoints"
        )]
        signing_key: String,
        /// The alias of the KMS key that signs the archive's manifests (created if missing).
        #[arg(
            long,
            env = "ARCHIVE_SIGNING_KEY_ID",
            default_value = "alias/sentinel-local-archive"
        )]
        archive_signing_key: String,
    },
    /// Create the local development signing key and its JWKS (kept if they exist).
    DevKey {
        /// Where the key (signing-key.pem) and the JWKS (jwks.json) live.
        #[arg(long, env = "SENTINEL_AUTH_DIR", default_value = ".local/auth")]
        dir: std::path::PathBuf,
    },
    /// Grant, revoke and list the tenants and scopes of IAM principals (AUTH_MODE=iam).
    Principals {
        #[command(subcommand)]
        action: PrincipalsAction,
        /// The principal directory's bucket (the stack's PrincipalsBucket output).
        #[arg(long, env = "PRINCIPALS_BUCKET", global = true)]
        bucket: Option<String>,
    },
    /// Print a bearer token signed with the local development key.
    Token {
        /// The tenant the token reads and writes.
        #[arg(long)]
        tenant: String,
        /// Scopes, comma-separated: events:write, events:read, audit:read, tenants:read.
        #[arg(long, value_delimiter = ',', required = true)]
        scope: Vec<String>,
        /// How long it is valid: a number with s, m, h or d (at most 30d).
        #[arg(long, default_value = "1h")]
        ttl: String,
        /// Who the token names (`sub`): the actor of its reads' access events.
        #[arg(long, default_value = "local-developer")]
        subject: String,
        /// The signing key `sentinel dev-key` created.
        #[arg(
            long,
            env = "SENTINEL_SIGNING_KEY",
            default_value = ".local/auth/signing-key.pem"
        )]
        key: std::path::PathBuf,
    },
}

/// Where the database is.
#[derive(clap::Args)]
struct Database {
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/sentinel"
    )]
    database_url: String,
}

#[derive(Subcommand)]
enum PrincipalsAction {
    /// Give an IAM role or user (its ARN) a tenant and scopes, replacing any earlier grant.
    Grant {
        #[arg(long)]
        arn: String,
        #[arg(long)]
        tenant: String,
        /// Scopes, comma-separated: events:write, events:read, audit:read, tenants:read.
        #[arg(long, value_delimiter = ',', required = true)]
        scope: Vec<String>,
    },
    /// Remove an IAM principal's grant: its requests get 403 from then on (within a minute).
    Revoke {
        #[arg(long)]
        arn: String,
    },
    /// Every grant.
    List,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    sentinel_lambda::telemetry::init();
    match Cli::parse().command {
        Command::Migrate {
            database: Database { database_url },
            create_database,
            local_logins,
        } => {
            if create_database {
                sentinel_postgres::migrations::ensure_database(
                    &sentinel_postgres::DatabaseSettings::from_url(&database_url)?,
                )
                .await?;
            }
            let applied = sentinel_postgres::migrate(&database_url).await?;
            if applied.is_empty() {
                println!("database is up to date");
            }
            for migration in applied {
                println!("applied {migration}");
            }
            if local_logins {
                for login in create_local_logins(&database_url).await? {
                    println!("login {login} ready");
                }
            }
        }
        Command::Conflicts {
            database: Database { database_url },
            tenant,
            limit,
            json,
        } => {
            let (client, connection) =
                tokio_postgres::connect(&database_url, tokio_postgres::NoTls)
                    .await
                    .context("failed to connect to the database")?;
            tokio::spawn(connection);
            print!(
                "{}",
                conflicts(&client, tenant.as_deref(), limit, json).await?
            );
        }
        Command::PublicKey { key_id } => {
            let config = sentinel_aws::config().await;
            let der = sentinel_aws::kms::KmsSigner::new(&config, key_id)
                .public_key()
                .await?;
            print!("{}", pem("PUBLIC KEY", &der));
        }
        Command::Verify(args) => std::process::exit(verify::run(args).await),
        Command::EmitSample(args) => {
            if !ops::emit_sample(args).await? {
                std::process::exit(1);
            }
        }
        Command::Poke(args) => {
            if !poke::poke(args).await? {
                std::process::exit(1);
            }
        }
        Command::Query(args) => ops::query(args).await?,
        Command::Tail(args) => ops::tail(args).await?,
        Command::Export(args) => ops::export(args).await?,
        Command::LocalstackInit {
            stream,
            shards,
            bucket,
            queue,
            checkpoint_bucket,
            signing_key,
            archive_signing_key,
        } => {
            localstack_init(&stream, shards, &bucket, &queue).await?;
            log_init(&checkpoint_bucket, &signing_key).await?;
            let config = sentinel_aws::config().await;
            let key = sentinel_aws::kms::ensure_signing_key(&config, &archive_signing_key).await?;
            println!("archive signing key {archive_signing_key} ready ({key})");
        }
        Command::DevKey { dir } => dev_key(&dir)?,
        Command::Principals { action, bucket } => principals(action, bucket).await?,
        Command::Token {
            tenant,
            scope,
            ttl,
            subject,
            key,
        } => println!("{}", token(&tenant, &scope, &ttl, &subject, &key)?),
    }
    Ok(())
}

/// `der` as a PEM block labelled `label` (RFC 7468: base64 in lines of 64).
fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let text = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in text.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// The `conflicts` command's output.
async fn conflicts(
    client: &tokio_postgres::Client,
    tenant: Option<&str>,
    limit: i64,
    json: bool,
) -> anyhow::Result<String> {
    use sentinel_postgres::conflicts;
    use std::fmt::Write;
    let kept = conflicts::recent(client, tenant, limit)
        .await
        .context("failed to read event_conflicts")?;
    let mut out = String::new();
    if json {
        for conflict in &kept {
            let record: serde_json::Value = serde_json::from_slice(&conflict.conflicting)
                .unwrap_or_else(|_| String::from_utf8_lossy(&conflict.conflicting).into());
            let line = serde_json::json!({
                "tenant_id": conflict.tenant_id,
                "event_id": conflict.event_id,
                "detected_at": conflict.detected_at.to_rfc3339(),
                "differing_fields": conflict.differing_fields(),
                "stored": conflict.stored,
                "conflicting": record,
            });
            writeln!(out, "{line}")?;
        }
        return Ok(out);
    }
    let total = conflicts::count(client, tenant).await?;
    writeln!(out, "{total} conflict(s) kept; newest {}:", kept.len())?;
    for conflict in &kept {
        writeln!(
            out,
            "{}  tenant {}  event {}  differs in: {}",
            conflict.detected_at.format("%Y-%m-%dT%H:%M:%SZ"),
            conflict.tenant_id,
            conflict.event_id,
            conflict.differing_fields().join(", ")
        )?;
    }
    Ok(out)
}

fn dev_key(dir: &std::path::Path) -> anyhow::Result<()> {
    use sentinel_lambda::identity::dev::SigningKey;
    std::fs::create_dir_all(dir).with_context(|| format!("failed to create {}", dir.display()))?;
    let key_path = dir.join("signing-key.pem");
    let key = if key_path.exists() {
        SigningKey::load(&key_path)?
    } else {
        let key = SigningKey::generate()?;
        key.save(&key_path)?;
        println!("created {}", key_path.display());
        key
    };
    let jwks_path = dir.join("jwks.json");
    std::fs::write(&jwks_path, serde_json::to_string_pretty(&key.jwks())?)
        .with_context(|| format!("failed to write {}", jwks_path.display()))?;
    println!("key {} published in {}", key.kid(), jwks_path.display());
    Ok(())
}

/// The local logins, each in its function's group role.
const LOCAL_LOGINS: [(&str, &str); 5] = [
    ("sentinel_writer_local", "sentinel_writer"),
    ("sentinel_reader_local", "sentinel_reader"),
    ("sentinel_archiver_local", "sentinel_archiver"),
    ("sentinel_checkpointer_local", "sentinel_checkpointer"),
    ("sentinel_auditor_local", "sentinel_auditor"),
];

async fn create_local_logins(database_url: &str) -> anyhow::Result<Vec<&'static str>> {
    let (client, connection) = tokio_postgres::connect(database_url, tokio_postgres::NoTls)
        .await
        .context("failed to connect to create the local logins")?;
    tokio::spawn(connection);
    for (login, group) in LOCAL_LOGINS {
        let exists = client
            .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&login])
            .await?
            .is_some();
        let statement: String = client
            .query_one(
                "SELECT format(CASE WHEN $3 THEN 'ALTER ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE' \
                 ELSE 'CREATE ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE' END, $1::text) \
                 || format('; GRANT %I TO %I', $2::text, $1::text)",
                &[&login, &group, &exists],
            )
            .await?
            .get(0);
        client
            .batch_execute(&statement)
            .await
            .with_context(|| format!("failed to provision the local login {login}"))?;
    }
    Ok(LOCAL_LOGINS.iter().map(|(login, _)| *login).collect())
}

async fn principals(action: PrincipalsAction, bucket: Option<String>) -> anyhow::Result<()> {
    use sentinel_aws::principals::S3PrincipalDirectory;
    use sentinel_domain::identity::{grant_key, Grant};
    let bucket =
        bucket.context("--bucket or PRINCIPALS_BUCKET must name the directory's bucket")?;
    let config = sentinel_aws::config().await;
    let directory = S3PrincipalDirectory::new(sentinel_aws::s3::client(&config), bucket);
    match action {
        PrincipalsAction::Grant { arn, tenant, scope } => {
            let key = grant_key(&arn);
            let grant = Grant {
                tenant: sentinel_domain::fields::TenantId::parse(tenant.as_str())
                    .map_err(|why| anyhow::anyhow!("--tenant {tenant:?} {why}"))?,
                scopes: parse_scopes(&scope)?
                    .into_iter()
                    .map(|s| s.as_str().to_string())
                    .collect(),
            };
            directory.grant(&key, &grant).await?;
            println!(
                "granted {key}: tenant {}, scopes {}",
                grant.tenant,
                grant.scopes.join(" ")
            );
        }
        PrincipalsAction::Revoke { arn } => {
            let key = grant_key(&arn);
            if directory.revoke(&key).await? {
                println!("revoked {key}");
            } else {
                println!("{key} had no grant");
            }
        }
        PrincipalsAction::List => {
            for (principal, grant) in directory.list().await? {
                println!("{principal}\t{}\t{}", grant.tenant, grant.scopes.join(" "));
            }
        }
    }
    Ok(())
}

fn parse_scopes(names: &[String]) -> anyhow::Result<Vec<sentinel_lambda::identity::Scope>> {
    use sentinel_lambda::identity::Scope;
    names
        .iter()
        .map(|name| {
            Scope::parse(name.trim()).with_context(|| {
                format!(
                    "--scope {name:?} is not a scope; use {}",
                    Scope::ALL.map(Scope::as_str).join(", ")
                )
            })
        })
        .collect()
}

/// Parses a lifetime such as `90s`, `30m`, `1h` or `7d`, at most 30 days.
fn ttl_seconds(text: &str) -> anyhow::Result<i64> {
    let text = text.trim();
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let number: i64 =
        number.parse().ok().filter(|n| *n > 0).with_context(|| {
            format!("--ttl {text:?} must be a positive number with s, m, h or d")
        })?;
    let seconds = match unit {
        "s" | "" => number,
        "m" => number * 60,
        "h" => number * 3600,
        "d" => number * 86_400,
        _ => anyhow::bail!("--ttl {text:?} must end in s, m, h or d"),
    };
    anyhow::ensure!(seconds <= 30 * 86_400, "--ttl may be at most 30d");
    Ok(seconds)
}

fn token(
    tenant: &str,
    scopes: &[String],
    ttl: &str,
    subject: &str,
    key: &std::path::Path,
) -> anyhow::Result<String> {
    use sentinel_lambda::identity::dev::{SigningKey, TokenClaims};
    use sentinel_lambda::identity::Scope;
    sentinel_domain::fields::TenantId::parse(tenant)
        .map_err(|why| anyhow::anyhow!("--tenant {tenant:?} {why}"))?;
    sentinel_domain::fields::ActorId::parse(subject)
        .map_err(|why| anyhow::anyhow!("--subject {subject:?} {why}"))?;
    let scopes: Vec<Scope> = parse_scopes(scopes)?;
    let key = SigningKey::load(key).context("run `sentinel dev-key` (scripts/up does) first")?;
    key.sign(&TokenClaims::local(
        tenant,
        subject,
        &scopes,
        ttl_seconds(ttl)?,
    ))
}

async fn localstack_init(
    stream: &str,
    shards: i32,
    bucket: &str,
    queue: &str,
) -> anyhow::Result<()> {
    let config = aws_config::load_defaults(BehaviorVersion::latest()).await;
    let kinesis = aws_sdk_kinesis::Client::new(&config);
    match kinesis
        .create_stream()
        .stream_name(stream)
        .shard_count(shards)
        .send()
        .await
    {
        Ok(_) => println!("created stream {stream} ({shards} shards)"),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_in_use_exception()) =>
        {
            println!("stream {stream} exists")
        }
        Err(e) => return Err(e).context("failed to create the stream"),
    }
    for _ in 0..150 {
        let summary = kinesis
            .describe_stream_summary()
            .stream_name(stream)
            .send()
            .await
            .context("failed to describe the stream")?;
        if summary
            .stream_description_summary()
            .is_some_and(|s| s.stream_status().as_str() == "ACTIVE")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let s3 = sentinel_aws::s3::client(&config);
    match s3.create_bucket().bucket(bucket).send().await {
        Ok(_) => println!("created bucket {bucket}"),
        Err(e)
            if e.as_service_error().is_some_and(|s| {
                s.is_bucket_already_owned_by_you() || s.is_bucket_already_exists()
            }) =>
        {
            println!("bucket {bucket} exists")
        }
        Err(e) => return Err(e).context("failed to create the bucket"),
    }

    let sqs = aws_sdk_sqs::Client::new(&config);
    sqs.create_queue()
        .queue_name(queue)
        .send()
        .await
        .context("failed to create the failure queue")?;
    println!("queue {queue} ready");
    Ok(())
}

/// The verifiable log's local resources: the checkpoints' bucket and the signing key.
async fn log_init(bucket: &str, signing_key: &str) -> anyhow::Result<()> {
    let config = aws_config::load_defaults(BehaviorVersion::latest()).await;
    let s3 = sentinel_aws::s3::client(&config);
    match s3
        .create_bucket()
        .bucket(bucket)
        .object_lock_enabled_for_bucket(true)
        .send()
        .await
    {
        Ok(_) => println!("created bucket {bucket} (Object Lock)"),
        Err(e)
            if e.as_service_error().is_some_and(|s| {
                s.is_bucket_already_owned_by_you() || s.is_bucket_already_exists()
            }) =>
        {
            println!("bucket {bucket} exists")
        }
        Err(e) => return Err(e).context("failed to create the checkpoints' bucket"),
    }
    let key = sentinel_aws::kms::ensure_signing_key(&config, signing_key).await?;
    println!("signing key {signing_key} ready ({key})");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_from_s3_alone_needs_both_buckets() {
        use clap::Parser;
        let parse = |args: &[&str]| {
            Cli::try_parse_from(
                ["sentinel", "verify", "--tenant", "acme", "--s3-only"]
                    .iter()
                    .chain(args),
            )
            .map(|_| ())
            .map_err(|e| e.to_string())
        };
        // Neither from the environment: scripts/env.sh may have set them.
        std::env::remove_var("CHECKPOINT_BUCKET");
        std::env::remove_var("ARCHIVE_BUCKET");
        let error = parse(&[]).unwrap_err();
        assert!(
            error.contains("--checkpoint-bucket") && error.contains("--archive-bucket"),
            "{error}"
        );
        assert!(parse(&["--checkpoint-bucket", "c"]).is_err());
        parse(&["--checkpoint-bucket", "c", "--archive-bucket", "a"]).unwrap();
    }

    #[test]
    fn lifetimes_are_read_with_their_unit_and_bounded() {
        assert_eq!(ttl_seconds("90s").unwrap(), 90);
        assert_eq!(ttl_seconds("30m").unwrap(), 1800);
        assert_eq!(ttl_seconds("1h").unwrap(), 3600);
        assert_eq!(ttl_seconds("7d").unwrap(), 7 * 86_400);
        assert_eq!(ttl_seconds("120").unwrap(), 120);
        for bad in ["0h", "-1h", "h", "1w", "31d", "1.5h", ""] {
            assert!(ttl_seconds(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_token_is_signed_by_the_dev_key_and_names_its_tenant_and_scopes() {
        let dir = std::env::temp_dir().join(format!("sentinel-cli-{}", std::process::id()));
        dev_key(&dir).unwrap();
        let jwks = std::fs::read_to_string(dir.join("jwks.json")).unwrap();
        let verifier = sentinel_lambda::identity::JwtVerifier::from_jwks(
            &jwks,
            sentinel_lambda::identity::JwtSettings {
                jwks: sentinel_lambda::identity::JwksSource::File(dir.join("jwks.json")),
                issuer: "sentinel-local".into(),
                audiences: vec!["sentinel".into()],
                algorithms: vec![sentinel_lambda::identity::Algorithm::ES256],
                tenant_claim: "tenant_id".into(),
                scope_claim: "scope".into(),
                leeway_seconds: 30,
                scope_prefix: String::new(),
            },
        )
        .unwrap();

        let token = token(
            "acme",
            &["events:read".into(), "events:write".into()],
            "1h",
            "alice",
            &dir.join("signing-key.pem"),
        )
        .unwrap();
        dev_key(&dir).unwrap(); // a second run keeps the key

        let principal = verifier.verify(&token).unwrap();
        assert_eq!(principal.tenant, "acme");
        assert_eq!(principal.subject, "alice");
        assert_eq!(principal.scopes.len(), 2);
        let again = std::fs::read_to_string(dir.join("jwks.json")).unwrap();
        assert_eq!(again, jwks, "the key is kept across runs");
        assert!(token_err("acme", "events:delete", &dir).contains("is not a scope"));
        assert!(token_err("a b", "events:read", &dir).contains("--tenant"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn the_local_logins_hold_their_group_roles_and_nothing_more() {
        let db = sentinel_testing::TestDatabase::create().await;

        let first = create_local_logins(&db.url).await.unwrap();
        let again = create_local_logins(&db.url).await.unwrap();

        assert_eq!(first, again, "a second run is harmless");
        let reader_url = db
            .url
            .replacen("://postgres@", "://sentinel_reader_local@", 1);
        let (reader, connection) = tokio_postgres::connect(&reader_url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        let events: i64 = reader
            .query_one("SELECT count(*) FROM audit_events", &[])
            .await
            .unwrap()
            .get(0);
        let quarantine = reader
            .query_one("SELECT count(*) FROM rejected_records", &[])
            .await
            .unwrap_err();
        let insert = reader
            .batch_execute("INSERT INTO rejected_records (source, record_key, reason, payload) VALUES ('s', 'k', 'r', '')")
            .await
            .unwrap_err();
        assert_eq!(events, 0);
        assert_eq!(quarantine.code().map(|c| c.code()), Some("42501"));
        assert_eq!(insert.code().map(|c| c.code()), Some("42501"));
    }

    #[test]
    fn a_public_key_prints_as_pem_in_lines_of_64() {
        let der: Vec<u8> = (0..91).collect();

        let text = pem("PUBLIC KEY", &der);

        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "-----BEGIN PUBLIC KEY-----");
        assert_eq!(lines[1].len(), 64);
        assert_eq!(lines[2].len(), 124 - 64);
        assert_eq!(lines[3], "-----END PUBLIC KEY-----");
        use base64::Engine;
        let back = base64::engine::general_purpose::STANDARD
            .decode(format!("{}{}", lines[1], lines[2]))
            .unwrap();
        assert_eq!(back, der);
    }

    #[tokio::test]
    async fn conflicts_lists_the_kept_copies_with_the_fields_that_differ() {
        let db = sentinel_testing::TestDatabase::create().await;
        let client = db.client().await;
        client
            .batch_execute(
                "SELECT sentinel_ensure_month_partition('2026-03-15T08:00:00Z'); \
                 INSERT INTO audit_events (id, tenant_id, occurred_at, received_at, actor_id, action, resource_type, resource_id) \
                 VALUES ('e1', 'acme', '2026-03-15T08:00:00Z', '2026-03-15T08:00:00Z', 'u1', 'billing_update', 'invoice', 'i1'); \
                 INSERT INTO event_conflicts (tenant_id, event_id, stored_occurred_at, stored, conflicting) \
                 SELECT 'acme', 'e1', e.occurred_at, to_jsonb(e), convert_to( \
                   '{\"v\":1,\"event\":{\"id\":\"e1\",\"tenant_id\":\"acme\",\"occurred_at\":\"2026-03-15T08:00:00.000000Z\",\"received_at\":\"2026-03-15T09:00:00.000000Z\",\"actor_id\":\"u1\",\"action\":\"billing_delete\",\"resource_type\":\"invoice\",\"resource_id\":\"i1\",\"changes\":{},\"metadata\":{}}}', 'UTF8') \
                 FROM audit_events e; \
                 INSERT INTO event_conflicts (tenant_id, event_id, conflicting) VALUES ('globex', 'g1', 'x')",
            )
            .await
            .unwrap();

        let human = conflicts(&client, Some("acme"), 20, false).await.unwrap();
        let json = conflicts(&client, None, 20, true).await.unwrap();

        assert!(
            human.starts_with("1 conflict(s) kept; newest 1:"),
            "{human}"
        );
        assert!(
            human.contains("tenant acme  event e1  differs in: action\n"),
            "{human}"
        );
        let lines: Vec<serde_json::Value> = json
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["event_id"], "g1", "newest first");
        assert_eq!(lines[0]["stored"], serde_json::Value::Null);
        assert_eq!(lines[1]["differing_fields"], serde_json::json!(["action"]));
        assert_eq!(lines[1]["stored"]["action"], "billing_update");
        assert_eq!(lines[1]["conflicting"]["event"]["action"], "billing_delete");
    }

    fn token_err(tenant: &str, scope: &str, dir: &std::path::Path) -> String {
        token(
            tenant,
            &[scope.into()],
            "1h",
            "alice",
            &dir.join("signing-key.pem"),
        )
        .unwrap_err()
        .to_string()
    }
}
