//! Secrets Manager: the database credentials on AWS.

use anyhow::Context;

/// Reads a secret's string value from Secrets Manager.
pub async fn read(aws: &aws_config::SdkConfig, arn: &str) -> anyhow::Result<String> {
    let output = aws_sdk_secretsmanager::Client::new(aws)
        .get_secret_value()
        .secret_id(arn)
        .send()
        .await
        .with_context(|| format!("failed to read the database secret {arn}"))?;
    output
        .secret_string()
        .map(str::to_string)
        .with_context(|| format!("the database secret {arn} holds no string"))
}

/// [`read`] bound to one configuration: what `DatabaseSettings::from_env` takes.
pub fn reader(
    aws: &aws_config::SdkConfig,
) -> impl AsyncFnOnce(&str) -> anyhow::Result<String> + '_ {
    async move |arn: &str| read(aws, arn).await
}
