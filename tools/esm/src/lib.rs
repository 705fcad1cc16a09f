//! A local stand-in for AWS Lambda's Kinesis event source mapping (with
//! `ReportBatchItemFailures`) and for the EventBridge schedule that fires the archiver.
//!
//! It reads every shard of a stream, batches records like AWS does, invokes a function through
//! the Lambda Invoke API that `cargo lambda watch` serves, honours `batchItemFailures`, and
//! checkpoints each shard in a JSON file so that a restart resumes where it stopped.

mod checkpoint;
mod config;
mod event;
mod invoke;
mod schedule;
mod shard;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use aws_sdk_kinesis::types::Shard;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{error, info, warn};

pub use checkpoint::CheckpointStore;
pub use config::{EsmConfig, ScheduleConfig, Settings, StartingPosition};
pub use event::{
    compare_sequence_numbers, kinesis_event_json, parse_batch_response, BatchOutcome, EventSource,
    ShardRecord,
};
pub use invoke::{InvokeError, Invoker};
pub use schedule::scheduled_event;

use shard::{backoff, run_shard, Position, Shared};

/// How often the coordinator looks for finished shards and shards ready to start.
const TICK: Duration = Duration::from_millis(250);

/// Runs the event source mapping (and the schedule, if configured) until `shutdown` resolves.
///
/// On shutdown the in-flight batches are abandoned: nothing is checkpointed past a record the
/// function has not acknowledged, so a restart redelivers them. It returns an error only when
/// it cannot work at all (invalid config, unreadable or unwritable checkpoints).
pub async fn run(
    config: EsmConfig,
    kinesis: aws_sdk_kinesis::Client,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    config.validate()?;
    tokio::pin!(shutdown);
    let checkpoints = CheckpointStore::open(&config.checkpoint_dir, &config.stream_name).await?;
    let invoker = Invoker::new(&config.lambda_invoke_url)?;

    let stream_arn = tokio::select! {
        arn = describe_stream_arn(&kinesis, &config) => arn,
        () = &mut shutdown => return Ok(()),
    };
    let region = kinesis
        .config()
        .region()
        .map(|r| r.to_string())
        .or_else(|| stream_arn.split(':').nth(3).map(str::to_owned))
        .unwrap_or_else(|| "us-east-1".into());
    info!(stream = %config.stream_name, stream_arn, function = %config.writer_function, url = %config.lambda_invoke_url, "event source mapping started");

    let schedule_tasks: Vec<_> = config
        .schedules
        .iter()
        .cloned()
        .map(|schedule| {
            tokio::spawn(schedule::run_schedule(
                invoker.clone(),
                schedule,
                region.clone(),
                config.account_id.clone(),
            ))
        })
        .collect();

    let shared = Arc::new(Shared {
        invoke_identity_arn: format!("arn:aws:iam::{}:role/sentinel-local-esm", config.account_id),
        kinesis,
        invoker,
        config,
        stream_arn,
        region,
        checkpoints,
    });
    let result = coordinate(&shared, &mut shutdown).await;

    for task in schedule_tasks {
        task.abort();
    }
    info!("event source mapping stopped");
    result
}

/// A runner started in the background, stopped with [`EsmHandle::stop`] or by dropping it.
pub struct EsmHandle {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl EsmHandle {
    /// Starts [`run`] on the current runtime.
    pub fn spawn(config: EsmConfig, kinesis: aws_sdk_kinesis::Client) -> Self {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(run(config, kinesis, async {
            let _ = stopped.await;
        }));
        Self {
            stop: Some(stop),
            task,
        }
    }

    /// True once the runner ended by itself (which only an error makes it do).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Stops the runner and waits until every shard task has ended.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await.context("the runner panicked")?
    }
}

async fn describe_stream_arn(kinesis: &aws_sdk_kinesis::Client, config: &EsmConfig) -> String {
    let mut attempt = 0;
    loop {
        match kinesis
            .describe_stream_summary()
            .stream_name(&config.stream_name)
            .send()
            .await
        {
            Ok(out) => {
                if let Some(summary) = out.stream_description_summary {
                    return summary.stream_arn;
                }
                warn!(stream = %config.stream_name, "DescribeStreamSummary returned no summary");
            }
            Err(e) => {
                warn!(stream = %config.stream_name, error = %aws_sdk_kinesis::error::DisplayErrorContext(&e), "cannot describe the stream yet; retrying")
            }
        }
        attempt += 1;
        tokio::time::sleep(backoff(
            Duration::from_millis(500),
            config.max_backoff,
            attempt,
        ))
        .await;
    }
}

async fn list_shards(
    kinesis: &aws_sdk_kinesis::Client,
    stream_name: &str,
) -> anyhow::Result<Vec<Shard>> {
    let mut shards = Vec::new();
    let mut next_token: Option<String> = None;
    loop {
        // With a NextToken, ListShards refuses a StreamName.
        let request = match &next_token {
            Some(token) => kinesis.list_shards().next_token(token),
            None => kinesis.list_shards().stream_name(stream_name),
        };
        let out = request.send().await.context("failed to list shards")?;
        shards.extend(out.shards.unwrap_or_default());
        next_token = out.next_token;
        if next_token.is_none() {
            return Ok(shards);
        }
    }
}

/// Starts a task per shard, parents before children, re-lists shards now and then, and
/// stops every task on shutdown.
async fn coordinate(
    shared: &Arc<Shared>,
    shutdown: &mut (impl Future<Output = ()> + Unpin),
) -> anyhow::Result<()> {
    let config = &shared.config;
    let mut known: HashMap<String, Shard> = HashMap::new();
    let mut running: HashMap<String, JoinHandle<anyhow::Result<()>>> = HashMap::new();
    let mut finished: HashSet<String> = HashSet::new();
    let mut first_listing = true;
    let mut next_listing = Instant::now();
    let mut result = Ok(());

    loop {
        if Instant::now() >= next_listing {
            match list_shards(&shared.kinesis, &config.stream_name).await {
                Ok(shards) => {
                    for shard in shards {
                        if !known.contains_key(&shard.shard_id) && !first_listing {
                            info!(shard = %shard.shard_id, "new shard discovered");
                        }
                        known.insert(shard.shard_id.clone(), shard);
                    }
                    next_listing = Instant::now() + config.shard_refresh_interval;
                }
                Err(e) => {
                    warn!(error = %format!("{e:#}"), "ListShards failed; retrying");
                    next_listing = Instant::now() + Duration::from_secs(1);
                }
            }
        }

        let ended: Vec<String> = running
            .iter()
            .filter(|(_, task)| task.is_finished())
            .map(|(id, _)| id.clone())
            .collect();
        for shard_id in ended {
            let task = running.remove(&shard_id).expect("listed above");
            match task.await {
                Ok(Ok(())) => {
                    finished.insert(shard_id);
                }
                Ok(Err(e)) => result = Err(e.context(format!("shard {shard_id} failed"))),
                Err(e) => {
                    result =
                        Err(anyhow::Error::new(e).context(format!("shard {shard_id} panicked")))
                }
            }
        }
        if result.is_err() {
            break;
        }

        let mut ready: Vec<&Shard> = known
            .values()
            .filter(|s| !running.contains_key(&s.shard_id) && !finished.contains(&s.shard_id))
            .filter(|s| {
                // A child waits until its parents still on the stream are fully processed.
                [&s.parent_shard_id, &s.adjacent_parent_shard_id]
                    .into_iter()
                    .flatten()
                    .all(|parent| !known.contains_key(parent) || finished.contains(parent))
            })
            .collect();
        ready.sort_by(|a, b| a.shard_id.cmp(&b.shard_id));
        for shard in ready {
            let start = match shared.checkpoints.get(&shard.shard_id).await {
                Some(seq) => Position::After(seq),
                // A shard that appears later (resharding) starts at its beginning, like AWS.
                None if !first_listing
                    || config.starting_position == StartingPosition::TrimHorizon =>
                {
                    Position::TrimHorizon
                }
                None => Position::Latest,
            };
            info!(shard = %shard.shard_id, start = ?start, "starting shard");
            running.insert(
                shard.shard_id.clone(),
                tokio::spawn(run_shard(shared.clone(), shard.shard_id.clone(), start)),
            );
        }
        if !known.is_empty() {
            first_listing = false;
        }

        tokio::select! {
            () = &mut *shutdown => break,
            () = tokio::time::sleep(TICK) => {}
        }
    }

    // Abandon in-flight batches: a shard task checkpoints only after a batch succeeded.
    for (shard_id, task) in running {
        task.abort();
        match task.await {
            Err(e) if e.is_panic() => error!(shard = %shard_id, "shard task panicked"),
            _ => {}
        }
    }
    result
}
