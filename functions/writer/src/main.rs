use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use sentinel_core::postgres::{pool, PgEventStore};
use sentinel_core::required_env;
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    sentinel_core::telemetry::init();
    let database_url = required_env("DATABASE_URL")?;
    // One invocation at a time per execution environment: one connection, kept warm and
    // replaced if it breaks.
    let store = PgEventStore::new(pool(&database_url, 1)?);
    let store = &store;
    run(service_fn(move |event: LambdaEvent<Value>| {
        writer::handler(store, event)
    }))
    .await
}
