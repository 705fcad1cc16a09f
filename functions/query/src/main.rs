use lambda_http::{run, service_fn, Error};
use query::{Query, Settings};
use std::sync::Arc;

use sentinel_aws::kinesis::{KinesisSink, KinesisTimeouts};
use sentinel_aws::principals::S3PrincipalDirectory;
use sentinel_lambda::identity::Authenticator;
use sentinel_postgres::log::PgLogReader;
use sentinel_postgres::reader::PgReader;
use sentinel_postgres::DatabaseSettings;

#[tokio::main]
async fn main() -> Result<(), Error> {
    sentinel_lambda::telemetry::init();
    let settings = Settings::from_env()?;
    let aws = sentinel_aws::config().await;
    let auth =
        Authenticator::from_env(|| Ok(Arc::new(S3PrincipalDirectory::from_env(&aws)?))).await?;
    let database = DatabaseSettings::from_env(sentinel_aws::secrets::reader(&aws)).await?;
    let pool = database.pool(1)?;
    let reader = PgReader::new(pool.clone());
    let log = PgLogReader::new(pool);
    let kinesis = sentinel_aws::kinesis::client(&aws, &KinesisTimeouts::default());
    let access_log = KinesisSink::new(kinesis, settings.stream_name);
    let state = Query {
        reader: &reader,
        log: &log,
        auth: &auth,
        access_log: &access_log,
    };
    let state = &state;
    run(service_fn(move |request| query::handle(state, request))).await
}
