use std::sync::Arc;

use aws_config::BehaviorVersion;
use ingest::{handle, Ingest};
use lambda_http::{run, service_fn, Error};
use sentinel_core::kinesis::KinesisSink;
use sentinel_core::required_env;

#[tokio::main]
async fn main() -> Result<(), Error> {
    sentinel_core::telemetry::init();
    let stream_name = required_env("STREAM_NAME")?;
    let config = aws_config::load_defaults(BehaviorVersion::latest()).await;
    let sink = KinesisSink::new(aws_sdk_kinesis::Client::new(&config), stream_name);
    let state = Ingest::new(Arc::new(sink));
    let state = &state;
    run(service_fn(move |request| handle(state, request))).await
}
