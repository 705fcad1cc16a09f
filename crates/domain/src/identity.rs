//! The port behind IAM callers: which tenant and scopes an IAM principal has. An operator
//! grants them with `sentinel principals grant`; the functions look them up.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::fields::TenantId;

/// What an IAM principal may do: its one tenant, and its scopes by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    pub tenant: TenantId,
    pub scopes: Vec<String>,
}

/// Why a lookup could not answer (the directory itself, not the principal).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the principal directory is unavailable: {0}")]
pub struct DirectoryError(pub String);

/// Grants by principal: the IAM role ARN (`arn:aws:iam::ACCOUNT:role/NAME`) or user ARN.
#[async_trait]
pub trait PrincipalDirectory: Send + Sync {
    async fn lookup(&self, principal: &str) -> Result<Option<Grant>, DirectoryError>;
}

/// The identity a grant is kept under, for the caller API Gateway saw: an assumed role's
/// session (`arn:aws:sts::A:assumed-role/NAME/SESSION`) is granted as its role
/// (`arn:aws:iam::A:role/NAME`), since sessions come and go; any other ARN as it is.
pub fn grant_key(caller_arn: &str) -> String {
    let parts: Vec<&str> = caller_arn.splitn(6, ':').collect();
    if let [arn, partition, "sts", _, account, resource] = parts.as_slice() {
        if let Some(rest) = resource.strip_prefix("assumed-role/") {
            if let Some((role, _session)) = rest.split_once('/') {
                return format!("{arn}:{partition}:iam::{account}:role/{role}");
            }
        }
    }
    caller_arn.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_assumed_role_session_is_granted_as_its_role() {
        assert_eq!(
            grant_key("arn:aws:sts::123456789012:assumed-role/billing-svc/i-0abc"),
            "arn:aws:iam::123456789012:role/billing-svc"
        );
        assert_eq!(
            grant_key("arn:aws-us-gov:sts::123456789012:assumed-role/r/s"),
            "arn:aws-us-gov:iam::123456789012:role/r"
        );
        assert_eq!(
            grant_key("arn:aws:iam::123456789012:user/alice"),
            "arn:aws:iam::123456789012:user/alice"
        );
        assert_eq!(grant_key("not an arn"), "not an arn");
    }

    #[test]
    fn a_grant_reads_back_exactly_and_refuses_unknown_members() {
        let text = r#"{"tenant":"acme","scopes":["events:write"]}"#;
        let grant: Grant = serde_json::from_str(text).unwrap();
        assert_eq!(serde_json::to_string(&grant).unwrap(), text);
        assert!(serde_json::from_str::<Grant>(r#"{"tenant":"a b","scopes":[]}"#).is_err());
        assert!(
            serde_json::from_str::<Grant>(r#"{"tenant":"a","scopes":[],"admin":true}"#).is_err()
        );
    }
}
