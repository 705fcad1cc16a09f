use std::sync::Arc;

use ingest::{handle, Ingest};
use lambda_http::{run, service_fn, Error};
use sentinel_aws::kinesis::KinesisSink;

#[tokio::main]
async fn main() -> Result<(), Error> {
    sentinel_lambda::telemetry::init();
    let stream_name = sentinel_lambda::settings::required("STREAM_NAME")?;
    let config = sentinel_aws::config().await;
    let sink = KinesisSink::new(aws_sdk_kinesis::Client::new(&config), stream_name);
    let state = Ingest::new(Arc::new(sink));
    let state = &state;
    run(service_fn(move |request| handle(state, request))).await
}
