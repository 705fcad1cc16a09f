use archiver::{Archiver, Settings};
use aws_config::BehaviorVersion;
use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use sentinel_core::database::DatabaseSettings;
use serde_json::Value;

fn main() -> Result<(), Error> {
    archiver::pin_mmap_threshold();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(serve())
}

async fn serve() -> Result<(), Error> {
    sentinel_core::telemetry::init();
    let settings = Settings::from_env()?;
    let config = aws_config::load_defaults(BehaviorVersion::latest()).await;
    let s3 = sentinel_core::s3_client(&config);
    // One connection for the run's bookkeeping, one for the month being archived.
    let pool = DatabaseSettings::from_env(&config).await?.pool(2)?;
    let archiver = Archiver::new(pool, s3, settings);
    let archiver = &archiver;
    run(service_fn(move |event: LambdaEvent<Value>| {
        archiver::handler(archiver, event)
    }))
    .await
}
