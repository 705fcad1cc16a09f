//! The Kinesis adapter for [`RecordSink`].

use async_trait::async_trait;
use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use aws_sdk_kinesis::Client;

use sentinel_domain::publish::{OutgoingRecord, RecordOutcome, RecordSink, SinkError};

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
                let code = error.code().unwrap_or("PutRecordsFailed").to_string();
                SinkError {
                    message: code,
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
