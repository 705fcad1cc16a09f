use lambda_http::{run, service_fn, Error};
use sentinel_core::postgres::pool;
use sentinel_core::reader::PgReader;
use sentinel_core::required_env;

#[tokio::main]
async fn main() -> Result<(), Error> {
    sentinel_core::telemetry::init();
    let database_url = required_env("DATABASE_URL")?;
    let reader = PgReader::new(pool(&database_url, 1)?);
    let reader = &reader;
    run(service_fn(move |request| query::handle(reader, request))).await
}
