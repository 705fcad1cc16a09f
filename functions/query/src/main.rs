use lambda_http::{run, service_fn, Error};
use sentinel_postgres::reader::PgReader;
use sentinel_postgres::DatabaseSettings;

#[tokio::main]
async fn main() -> Result<(), Error> {
    sentinel_lambda::telemetry::init();
    let aws = sentinel_aws::config().await;
    let database = DatabaseSettings::from_env(sentinel_aws::secrets::reader(&aws)).await?;
    let reader = PgReader::new(database.pool(1)?);
    let reader = &reader;
    run(service_fn(move |request| query::handle(reader, request))).await
}
