use lambda_http::{run, service_fn, Error};
use sentinel_core::database::pool_from_env;
use sentinel_core::reader::PgReader;

#[tokio::main]
async fn main() -> Result<(), Error> {
    sentinel_core::telemetry::init();
    let reader = PgReader::new(pool_from_env(1).await?);
    let reader = &reader;
    run(service_fn(move |request| query::handle(reader, request))).await
}
