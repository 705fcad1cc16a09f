use std::sync::Arc;

use ingest::{handle, Ingest, Settings};
use lambda_http::{run, service_fn, Error};
use sentinel_aws::kinesis::KinesisSink;
use sentinel_aws::principals::S3PrincipalDirectory;
use sentinel_lambda::identity::Authenticator;

#[tokio::main]
async fn main() -> Result<(), Error> {
    sentinel_lambda::telemetry::init();
    let settings = Settings::from_env()?;
    let config = sentinel_aws::config().await;
    let auth = Arc::new(
        Authenticator::from_env(|| Ok(Arc::new(S3PrincipalDirectory::from_env(&config)?))).await?,
    );
    let client = sentinel_aws::kinesis::client(&config, &settings.kinesis);
    let sink = KinesisSink::new(client, settings.stream_name);
    let state = Ingest::new(Arc::new(sink), auth).with_budget(settings.budget);
    let state = &state;
    run(service_fn(move |request| handle(state, request))).await
}
