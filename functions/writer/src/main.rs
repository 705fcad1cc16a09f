use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use sentinel_core::database::pool_from_env;
use sentinel_core::postgres::PgEventStore;
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    sentinel_core::telemetry::init();
    // One invocation at a time per execution environment: one connection, kept warm and
    // replaced if it breaks.
    let store = PgEventStore::new(pool_from_env(1).await?);
    let store = &store;
    run(service_fn(move |event: LambdaEvent<Value>| {
        writer::handler(store, event)
    }))
    .await
}
