//! What the ingest benchmarks share: a stream that takes everything, and requests from a
//! caller with a bearer token or from an IAM caller whose grant is cached (no token), so that
//! two arms differ only in how the caller is authenticated.

use std::sync::Arc;

use async_trait::async_trait;
use ingest::Ingest;
use sentinel_domain::fields::TenantId;
use sentinel_domain::identity::{DirectoryError, Grant, PrincipalDirectory};
use sentinel_domain::publish::{OutgoingRecord, RecordOutcome, RecordSink, SinkError};
use sentinel_lambda::identity::{Authenticator, IamAuthenticator, Scope};
use serde_json::json;

/// A stream that accepts every record and keeps none.
pub struct NullStream;

#[async_trait]
impl RecordSink for NullStream {
    async fn put_records(
        &self,
        records: &[OutgoingRecord],
    ) -> Result<Vec<RecordOutcome>, SinkError> {
        Ok(vec![RecordOutcome::Accepted; records.len()])
    }
}

/// The IAM caller of the no-token arm.
pub const IAM_CALLER: &str = "arn:aws:iam::123456789012:role/bench";

/// A directory that grants [`IAM_CALLER`] the default tenant. The authenticator caches the
/// grant, so after the first request it is not even asked.
pub struct OneGrant;

#[async_trait]
impl PrincipalDirectory for OneGrant {
    async fn lookup(&self, principal: &str) -> Result<Option<Grant>, DirectoryError> {
        Ok((principal == IAM_CALLER).then(|| Grant {
            tenant: TenantId::default_tenant(),
            scopes: vec![Scope::EventsWrite.as_str().into()],
        }))
    }
}

/// How the caller of [`request`] identifies itself.
pub enum Caller<'a> {
    /// An `Authorization` header value (`Bearer <token>`).
    Token(&'a str),
    /// API Gateway's IAM authorizer context, with [`IAM_CALLER`]: no token.
    Iam,
}

/// A POST from `caller` as ingest gets it from API Gateway.
pub fn request(body: &[u8], caller: Caller) -> lambda_http::Request {
    let mut event = json!({
        "version": "2.0", "routeKey": "POST /events", "rawPath": "/events", "rawQueryString": "",
        "headers": {"content-type": "application/json"},
        "requestContext": {"http": {"method": "POST", "path": "/events", "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "bench"},
                           "requestId": "r", "routeKey": "POST /events", "stage": "$default", "accountId": "0", "apiId": "b",
                           "domainName": "localhost", "domainPrefix": "localhost", "time": "01/Feb/2026:00:00:05 +0000", "timeEpoch": 0},
        "body": std::str::from_utf8(body).unwrap(), "isBase64Encoded": false
    });
    match caller {
        Caller::Token(token) => event["headers"]["authorization"] = json!(token),
        Caller::Iam => {
            event["requestContext"]["authorizer"] = json!({"iam": {
                "accessKey": "AKIA", "accountId": "123456789012", "callerId": "AROA",
                "principalOrgId": null, "userArn": IAM_CALLER, "userId": "AROA:bench"
            }})
        }
    }
    lambda_http::request::from_str(&event.to_string()).unwrap()
}

/// Ingest with an in-memory stream whose callers are IAM principals granted by [`OneGrant`]:
/// the arm with no token to verify.
pub fn without_token() -> Ingest {
    Ingest::new(
        Arc::new(NullStream),
        Arc::new(Authenticator::Iam(IamAuthenticator::new(Arc::new(
            OneGrant,
        )))),
    )
}
