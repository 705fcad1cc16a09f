//! A client of the Lambda Invoke API (`POST /2015-03-31/functions/{name}/invocations`).

use std::time::Duration;

use anyhow::Context;

/// Why an invocation did not return normally. Every variant is worth a retry.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    #[error("failed to reach the Lambda Invoke API: {0}")]
    Unreachable(#[source] reqwest::Error),
    /// `cargo lambda watch` answers 500 on a function error; AWS answers 200 with
    /// `X-Amz-Function-Error`. Both land here, as does any other non-2xx status.
    #[error("function error (HTTP {status}{}): {body}", kind.as_deref().map(|k| format!(", {k}")).unwrap_or_default())]
    Function {
        status: u16,
        kind: Option<String>,
        body: String,
    },
}

/// Invokes functions synchronously (`RequestResponse`).
#[derive(Clone, Debug)]
pub struct Invoker {
    http: reqwest::Client,
    base_url: String,
}

impl Invoker {
    pub fn new(base_url: &str) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            // Lambda's own limit is 15 minutes.
            .timeout(Duration::from_secs(15 * 60))
            .build()
            .context("failed to build the HTTP client")?;
        Ok(Self {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
        })
    }

    /// Sends `payload` and returns the function's response body.
    pub async fn invoke(&self, function: &str, payload: Vec<u8>) -> Result<Vec<u8>, InvokeError> {
        let url = format!(
            "{}/2015-03-31/functions/{function}/invocations",
            self.base_url
        );
        let response = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .header("x-amz-invocation-type", "RequestResponse")
            .body(payload)
            .send()
            .await
            .map_err(InvokeError::Unreachable)?;
        let status = response.status();
        let kind = response
            .headers()
            .get("x-amz-function-error")
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let body = response.bytes().await.map_err(InvokeError::Unreachable)?;
        if !status.is_success() || kind.is_some() {
            return Err(InvokeError::Function {
                status: status.as_u16(),
                kind,
                body: truncate(&String::from_utf8_lossy(&body), 1000),
            });
        }
        Ok(body.to_vec())
    }
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}
