use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;

/// Where a shard without a checkpoint starts reading, like the ESM's `StartingPosition`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StartingPosition {
    /// The oldest record still on the shard.
    #[default]
    TrimHorizon,
    /// Only records put after the runner first reads the shard.
    Latest,
}

impl std::str::FromStr for StartingPosition {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_uppercase().as_str() {
            "TRIM_HORIZON" => Ok(Self::TrimHorizon),
            "LATEST" => Ok(Self::Latest),
            other => bail!("STARTING_POSITION must be TRIM_HORIZON or LATEST, got {other:?}"),
        }
    }
}

/// A function fired on a fixed rate with an EventBridge "Scheduled Event".
#[derive(Clone, Debug)]
pub struct ScheduleConfig {
    pub function: String,
    pub rate: Duration,
}

/// Everything the runner needs; build it with [`EsmConfig::new`] or [`Settings::into_config`].
#[derive(Clone, Debug)]
pub struct EsmConfig {
    pub stream_name: String,
    /// Function invoked with each batch.
    pub writer_function: String,
    /// Base URL of a Lambda Invoke API (`cargo lambda watch` serves one on port 9000).
    pub lambda_invoke_url: String,
    /// 1..=10000 records per invocation.
    pub batch_size: usize,
    /// How long a batch may wait for more records after its first record was read.
    pub max_batching_window: Duration,
    pub checkpoint_dir: PathBuf,
    pub starting_position: StartingPosition,
    /// `None` retries a failing batch forever (AWS's `-1`).
    pub max_retry_attempts: Option<u32>,
    /// Functions fired on a fixed rate, as EventBridge schedules would.
    pub schedules: Vec<ScheduleConfig>,
    /// How often ListShards runs again to pick up resharding.
    pub shard_refresh_interval: Duration,
    /// Pause before polling a shard that returned nothing.
    pub poll_interval: Duration,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Account and role that appear in payloads (`invokeIdentityArn`, scheduled events).
    pub account_id: String,
}

impl EsmConfig {
    /// Defaults as documented for the environment variables.
    pub fn new(stream_name: impl Into<String>) -> Self {
        Self {
            stream_name: stream_name.into(),
            writer_function: "writer".into(),
            lambda_invoke_url: "http://[::1]:9000".into(),
            batch_size: 100,
            max_batching_window: Duration::from_millis(500),
            checkpoint_dir: PathBuf::from(".local/state/esm"),
            starting_position: StartingPosition::TrimHorizon,
            max_retry_attempts: None,
            schedules: Vec::new(),
            shard_refresh_interval: Duration::from_secs(30),
            poll_interval: Duration::from_millis(200),
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            account_id: "000000000000".into(),
        }
    }

    /// Rejects values AWS would reject too.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.stream_name.trim().is_empty() {
            bail!("STREAM_NAME must be set");
        }
        if !(1..=10_000).contains(&self.batch_size) {
            bail!(
                "BATCH_SIZE must be between 1 and 10000, got {}",
                self.batch_size
            );
        }
        if self.max_batching_window > Duration::from_secs(300) {
            bail!("MAX_BATCHING_WINDOW_MS must be at most 300000");
        }
        for schedule in &self.schedules {
            if schedule.rate.is_zero() {
                bail!(
                    "the schedule of {} must have a positive rate (SCHEDULE_RATE_SECONDS, SCHEDULES)",
                    schedule.function
                );
            }
        }
        Ok(())
    }
}

/// Environment settings of the `sentinel-esm` binary.
#[derive(Debug, Parser)]
#[command(
    name = "sentinel-esm",
    about = "Local Kinesis event source mapping and schedule"
)]
pub struct Settings {
    #[arg(long, env = "STREAM_NAME")]
    pub stream_name: Option<String>,
    #[arg(long, env = "WRITER_FUNCTION", default_value = "writer")]
    pub writer_function: String,
    #[arg(long, env = "LAMBDA_INVOKE_URL", default_value = "http://[::1]:9000")]
    pub lambda_invoke_url: String,
    #[arg(long, env = "BATCH_SIZE", default_value_t = 100)]
    pub batch_size: usize,
    #[arg(long, env = "MAX_BATCHING_WINDOW_MS", default_value_t = 500)]
    pub max_batching_window_ms: u64,
    #[arg(long, env = "CHECKPOINT_DIR", default_value = ".local/state/esm")]
    pub checkpoint_dir: PathBuf,
    #[arg(long, env = "STARTING_POSITION", default_value = "TRIM_HORIZON")]
    pub starting_position: String,
    /// -1 means unlimited.
    #[arg(long, env = "MAX_RETRY_ATTEMPTS", default_value_t = -1, allow_negative_numbers = true)]
    pub max_retry_attempts: i64,
    #[arg(long, env = "SCHEDULE_FUNCTION")]
    pub schedule_function: Option<String>,
    #[arg(long, env = "SCHEDULE_RATE_SECONDS")]
    pub schedule_rate_seconds: Option<u64>,
    /// More scheduled functions: `function=seconds`, comma-separated (e.g. `checkpointer=60`).
    #[arg(long = "schedule", env = "SCHEDULES", value_delimiter = ',', value_parser = parse_schedule)]
    pub schedules: Vec<ScheduleConfig>,
}

/// `function=seconds`.
fn parse_schedule(text: &str) -> Result<ScheduleConfig, String> {
    let (function, seconds) = text
        .split_once('=')
        .ok_or_else(|| format!("a schedule is function=seconds, not {text:?}"))?;
    let seconds: u64 = seconds
        .trim()
        .parse()
        .map_err(|_| format!("the rate of {function} must be whole seconds, not {seconds:?}"))?;
    if function.trim().is_empty() {
        return Err(format!("a schedule names its function, not {text:?}"));
    }
    Ok(ScheduleConfig {
        function: function.trim().to_string(),
        rate: Duration::from_secs(seconds),
    })
}

impl Settings {
    /// Turns raw settings into a validated config, failing fast with "X must be set".
    pub fn into_config(self) -> anyhow::Result<EsmConfig> {
        let stream_name = self
            .stream_name
            .filter(|s| !s.trim().is_empty())
            .context("STREAM_NAME must be set")?;
        let max_retry_attempts = match self.max_retry_attempts {
            -1 => None,
            n if n >= 0 => Some(u32::try_from(n).context("MAX_RETRY_ATTEMPTS is too large")?),
            n => bail!("MAX_RETRY_ATTEMPTS must be -1 or at least 0, got {n}"),
        };
        let mut schedules = self.schedules;
        let schedule = match (self.schedule_function, self.schedule_rate_seconds) {
            (Some(function), Some(rate)) if !function.trim().is_empty() => Some(ScheduleConfig {
                function,
                rate: Duration::from_secs(rate),
            }),
            (Some(f), None) if !f.trim().is_empty() => {
                bail!("SCHEDULE_RATE_SECONDS must be set when SCHEDULE_FUNCTION is")
            }
            _ => None,
        };
        let config = EsmConfig {
            writer_function: self.writer_function,
            lambda_invoke_url: self.lambda_invoke_url,
            batch_size: self.batch_size,
            max_batching_window: Duration::from_millis(self.max_batching_window_ms),
            checkpoint_dir: self.checkpoint_dir,
            starting_position: self.starting_position.parse()?,
            max_retry_attempts,
            schedules: schedule.into_iter().chain(schedules.drain(..)).collect(),
            ..EsmConfig::new(stream_name)
        };
        config.validate()?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(args: &[&str]) -> Settings {
        Settings::try_parse_from(std::iter::once("sentinel-esm").chain(args.iter().copied()))
            .unwrap()
    }

    #[test]
    fn a_missing_stream_name_fails_fast_with_a_clear_message() {
        let mut s = settings(&[]);
        s.stream_name = None;
        let err = s.into_config().unwrap_err();
        assert_eq!(err.to_string(), "STREAM_NAME must be set");
    }

    #[test]
    fn defaults_match_the_documented_ones() {
        let config = settings(&["--stream-name", "audit"]).into_config().unwrap();
        assert_eq!(config.writer_function, "writer");
        assert_eq!(config.batch_size, 100);
        assert_eq!(config.max_batching_window, Duration::from_millis(500));
        assert_eq!(config.starting_position, StartingPosition::TrimHorizon);
        assert_eq!(config.max_retry_attempts, None);
        assert!(config.schedules.is_empty());
    }

    #[test]
    fn out_of_range_values_are_rejected() {
        assert!(settings(&["--stream-name", "a", "--batch-size", "10001"])
            .into_config()
            .is_err());
        assert!(
            settings(&["--stream-name", "a", "--starting-position", "AT_TIMESTAMP"])
                .into_config()
                .is_err()
        );
        assert!(
            settings(&["--stream-name", "a", "--max-retry-attempts", "-2"])
                .into_config()
                .is_err()
        );
    }

    #[test]
    fn a_schedule_needs_both_function_and_rate() {
        let config = settings(&[
            "--stream-name",
            "a",
            "--schedule-function",
            "archiver",
            "--schedule-rate-seconds",
            "60",
            "--max-retry-attempts",
            "3",
            "--starting-position",
            "latest",
        ])
        .into_config()
        .unwrap();
        let schedule = &config.schedules[0];
        assert_eq!(schedule.function, "archiver");
        assert_eq!(schedule.rate, Duration::from_secs(60));
        assert_eq!(config.max_retry_attempts, Some(3));
        assert_eq!(config.starting_position, StartingPosition::Latest);
        assert!(
            settings(&["--stream-name", "a", "--schedule-function", "archiver"])
                .into_config()
                .is_err()
        );
    }

    #[test]
    fn more_schedules_run_beside_the_first() {
        let config = settings(&[
            "--stream-name",
            "a",
            "--schedule-function",
            "archiver",
            "--schedule-rate-seconds",
            "3600",
            "--schedule",
            "checkpointer=60,insights=30",
        ])
        .into_config()
        .unwrap();
        let named: Vec<(&str, u64)> = config
            .schedules
            .iter()
            .map(|s| (s.function.as_str(), s.rate.as_secs()))
            .collect();
        assert_eq!(
            named,
            [("archiver", 3600), ("checkpointer", 60), ("insights", 30)]
        );
        for bad in ["checkpointer", "checkpointer=soon", "=60"] {
            assert!(
                Settings::try_parse_from(["sentinel-esm", "--schedule", bad]).is_err(),
                "{bad}"
            );
        }
        assert!(
            settings(&["--stream-name", "a", "--schedule", "checkpointer=0"])
                .into_config()
                .is_err()
        );
    }
}
