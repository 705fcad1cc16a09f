use std::sync::Arc;

use archiver::{Archiver, ManifestSigning, Settings};
use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use sentinel_aws::kms::KmsSigner;
use sentinel_postgres::DatabaseSettings;
use serde_json::Value;

fn main() -> Result<(), Error> {
    archiver::pin_mmap_threshold();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(serve())
}

async fn serve() -> Result<(), Error> {
    sentinel_lambda::telemetry::init();
    let settings = Settings::from_env()?;
    let config = sentinel_aws::config().await;
    let s3 = sentinel_aws::s3::client(&config);
    let database = DatabaseSettings::from_env(sentinel_aws::secrets::reader(&config)).await?;
    // One connection for the run's bookkeeping, one for the month being archived.
    let pool = database.pool(2)?;
    let signer = KmsSigner::new(&config, &settings.signing_key_id);
    let signing = ManifestSigning::new(
        &settings.stack,
        &signer.public_key().await?,
        Arc::new(signer),
    )?;
    let archiver = Archiver::new(pool, s3, settings, signing);
    let archiver = &archiver;
    run(service_fn(move |event: LambdaEvent<Value>| {
        archiver::handler(archiver, event)
    }))
    .await
}
