use aws_config::BehaviorVersion;
use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use migrate::{handler, Aws};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    sentinel_lambda::telemetry::init();
    // Nothing that can fail is done here: a failed start would leave CloudFormation
    // waiting for an answer. The handler reads the secrets and always answers.
    let config = aws_config::load_defaults(BehaviorVersion::latest()).await;
    let env = Aws { config };
    let http = reqwest::Client::new();
    let (env, http) = (&env, &http);
    run(service_fn(move |event: LambdaEvent<Value>| {
        handler(env, http, event)
    }))
    .await
}
