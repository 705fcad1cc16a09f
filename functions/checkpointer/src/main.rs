use std::sync::Arc;

use checkpointer::{Run, Settings};
use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use sentinel_aws::kms::KmsSigner;
use sentinel_aws::s3::Bucket;
use sentinel_postgres::log::Checkpointer;
use sentinel_postgres::DatabaseSettings;
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    sentinel_lambda::telemetry::init();
    let settings = Settings::from_env()?;
    let config = sentinel_aws::config().await;
    let database = DatabaseSettings::from_env(sentinel_aws::secrets::reader(&config)).await?;
    let pool = database.pool(checkpointer::CONCURRENCY)?;
    let signer = KmsSigner::new(&config, &settings.signing_key_id);
    let key = checkpointer::verifier_key(&settings, &signer.public_key().await?)?;
    let bucket = Bucket::new(sentinel_aws::s3::client(&config), &settings.bucket);
    let checkpointer = Checkpointer::new(
        pool,
        &settings.stack,
        key,
        Arc::new(signer),
        Arc::new(bucket),
        settings.heartbeat,
    );
    let run_state = Run::new(&checkpointer);
    let run_state = &run_state;
    run(service_fn(move |event: LambdaEvent<Value>| {
        checkpointer::handler(run_state, event)
    }))
    .await
}
