//! Sentinel's AWS adapters. Each service sits behind a feature of its own, so that a function
//! links only the SDKs it calls. Endpoints come from the SDK's own configuration
//! (`AWS_ENDPOINT_URL` points every client at LocalStack locally).

#[cfg(feature = "kinesis")]
pub mod kinesis;
#[cfg(feature = "s3")]
pub mod s3;
#[cfg(feature = "secrets")]
pub mod secrets;

/// The shared SDK configuration, loaded once per cold start.
pub async fn config() -> aws_config::SdkConfig {
    aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await
}
