//! What every Sentinel function shares: logging, reading settings, and the JSON error body
//! with its HTTP responses.

pub mod error;
#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "auth")]
pub mod identity;
pub mod metrics;
pub mod settings;
pub mod telemetry;

pub use error::ErrorBody;
