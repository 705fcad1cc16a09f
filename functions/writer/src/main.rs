use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use sentinel_postgres::writer::PgEventStore;
use sentinel_postgres::DatabaseSettings;
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    sentinel_lambda::telemetry::init();
    let aws = sentinel_aws::config().await;
    let database = DatabaseSettings::from_env(sentinel_aws::secrets::reader(&aws)).await?;
    // One invocation at a time per execution environment: one connection, kept warm and
    // replaced if it breaks.
    let store = PgEventStore::new(database.pool(1)?);
    let store = &store;
    run(service_fn(move |event: LambdaEvent<Value>| {
        writer::handler(store, event)
    }))
    .await
}
