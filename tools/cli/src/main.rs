//! `sentinel`: operator commands for the database and the local stack.

use std::time::Duration;

use anyhow::Context;
use aws_config::BehaviorVersion;
use clap::{Parser, Subcommand};

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
        #[arg(
            long,
            env = "DATABASE_URL",
            default_value = "postgres://postgres@127.0.0.1:5432/sentinel"
        )]
        database_url: String,
        /// Create the database first if it does not exist.
        #[arg(long)]
        create_database: bool,
    },
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
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    sentinel_lambda::telemetry::init();
    match Cli::parse().command {
        Command::Migrate {
            database_url,
            create_database,
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
        }
        Command::LocalstackInit {
            stream,
            shards,
            bucket,
            queue,
        } => localstack_init(&stream, shards, &bucket, &queue).await?,
    }
    Ok(())
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
