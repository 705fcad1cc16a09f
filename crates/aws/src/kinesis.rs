//! The Kinesis adapter for [`RecordSink`].

use std::time::Duration;

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_kinesis::config::retry::RetryConfig;
use aws_sdk_kinesis::config::timeout::TimeoutConfig;
use aws_sdk_kinesis::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use aws_sdk_kinesis::Client;

use sentinel_domain::publish::{OutgoingRecord, RecordOutcome, RecordSink, SinkError};

/// How long one Kinesis call may take. The client makes a single attempt per call, so the
/// operation and attempt timeouts bound the same thing; both are set so that no default of
/// the SDK's can stretch a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KinesisTimeouts {
    /// Opening a connection.
    pub connect: Duration,
    /// One HTTP attempt: sending the request and reading the whole answer.
    pub attempt: Duration,
    /// The whole call, signing and endpoint resolution included.
    pub operation: Duration,
}

impl Default for KinesisTimeouts {
    /// A PutRecords of 5 MiB takes well under a second inside a region.
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(1),
            attempt: Duration::from_secs(3),
            operation: Duration::from_secs(3),
        }
    }
}

/// A Kinesis client whose calls end within `timeouts` and are never retried by the SDK:
/// [`publish`](sentinel_domain::publish) owns retrying, within its caller's deadline.
pub fn client(config: &SdkConfig, timeouts: &KinesisTimeouts) -> Client {
    let kinesis_config = aws_sdk_kinesis::config::Builder::from(config)
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(timeouts.connect)
                .operation_attempt_timeout(timeouts.attempt)
                .operation_timeout(timeouts.operation)
                .build(),
        )
        .retry_config(RetryConfig::disabled())
        .build();
    Client::from_conf(kinesis_config)
}

/// Puts records on one Kinesis stream.
#[derive(Clone, Debug)]
pub struct KinesisSink {
    client: Client,
    stream_name: String,
}

impl KinesisSink {
    pub fn new(client: Client, stream_name: impl Into<String>) -> Self {
        Self {
            client,
            stream_name: stream_name.into(),
        }
    }
}

#[async_trait]
impl RecordSink for KinesisSink {
    #[tracing::instrument(skip_all, fields(stream = %self.stream_name, records = records.len()))]
    async fn put_records(
        &self,
        records: &[OutgoingRecord],
    ) -> Result<Vec<RecordOutcome>, SinkError> {
        let entries = records
            .iter()
            .map(|record| {
                PutRecordsRequestEntry::builder()
                    .partition_key(&record.partition_key)
                    .data(Blob::new(record.data.clone()))
                    .build()
                    .map_err(|e| SinkError {
                        message: format!("failed to build a PutRecords entry: {e}"),
                        retryable: false,
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let output = self
            .client
            .put_records()
            .stream_name(&self.stream_name)
            .set_records(Some(entries))
            .send()
            .await
            .map_err(|error| {
                tracing::warn!(error = %DisplayErrorContext(&error), "PutRecords failed");
                let retryable = match &error {
                    SdkError::ServiceError(service) => !matches!(
                        service.err().code(),
                        Some("ResourceNotFoundException")
                            | Some("AccessDeniedException")
                            | Some("InvalidArgumentException")
                            | Some("ValidationException")
                    ),
                    _ => true,
                };
                let message = match &error {
                    SdkError::TimeoutError(_) => "Timeout",
                    SdkError::DispatchFailure(failure) if failure.is_timeout() => "ConnectTimeout",
                    _ => error.code().unwrap_or("PutRecordsFailed"),
                };
                SinkError {
                    message: message.to_string(),
                    retryable,
                }
            })?;
        Ok(output
            .records()
            .iter()
            .map(|entry| match entry.error_code() {
                Some(code) => RecordOutcome::Refused {
                    code: code.to_string(),
                },
                None => RecordOutcome::Accepted,
            })
            .collect())
    }
}
