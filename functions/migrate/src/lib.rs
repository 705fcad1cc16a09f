//! The deploy-time migrator, a CloudFormation custom resource.
//!
//! On Create and Update it connects with the administrator's secret, creates the database
//! if it is missing, applies the migrations (the same embedded ones as `sentinel migrate`),
//! and gives each function a login role of its own: the user named in that function's
//! secret, with the secret's password, a member of one of `sentinel_writer`,
//! `sentinel_reader`, `sentinel_archiver` or `sentinel_checkpointer`. On Delete it does nothing: audit data outlives
//! the stack. Whatever happens, it answers CloudFormation, so a failure fails the deploy at
//! once instead of leaving it waiting for an hour.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Context};
use async_trait::async_trait;
use lambda_runtime::LambdaEvent;
use sentinel_postgres::settings::DatabaseSettings;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::{error, info};

/// The roles the migrations create, the only ones a login may join.
pub const GROUP_ROLES: [&str; 4] = [
    "sentinel_writer",
    "sentinel_reader",
    "sentinel_archiver",
    "sentinel_checkpointer",
];

/// A CloudFormation custom resource request.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Request {
    pub request_type: RequestType,
    #[serde(rename = "ResponseURL")]
    pub response_url: String,
    pub stack_id: String,
    pub request_id: String,
    pub logical_resource_id: String,
    pub physical_resource_id: Option<String>,
    #[serde(default)]
    pub resource_properties: Properties,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum RequestType {
    Create,
    Update,
    Delete,
}

/// The resource's properties (CloudFormation passes every scalar as a string).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Properties {
    /// The logins to provision.
    #[serde(default)]
    pub login_roles: Vec<LoginRole>,
}

/// One function's login: it joins `role` as the user and password held in `secret_arn`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LoginRole {
    pub role: String,
    pub secret_arn: String,
}

/// The answer CloudFormation reads from the response URL.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Response {
    pub status: Status,
    pub reason: String,
    pub physical_resource_id: String,
    pub stack_id: String,
    pub request_id: String,
    pub logical_resource_id: String,
    pub data: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    Success,
    Failed,
}

/// What the migrator needs from the outside world.
#[async_trait]
pub trait Environment: Send + Sync {
    /// The administrator's connection (the one that owns the schema).
    async fn admin_settings(&self) -> anyhow::Result<DatabaseSettings>;
    /// A secret's JSON.
    async fn secret(&self, arn: &str) -> anyhow::Result<String>;
}

/// The resource is the database's schema, the same across updates.
const PHYSICAL_ID: &str = "sentinel-database-schema";

/// The credentials of one login secret.
#[derive(Deserialize)]
struct Credentials {
    username: String,
    password: String,
}

/// Applies the request and returns what to tell CloudFormation. Never fails: an error
/// becomes a FAILED response with its reason.
pub async fn respond_to(env: &dyn Environment, request: &Request) -> Response {
    let physical_resource_id = request
        .physical_resource_id
        .clone()
        .unwrap_or_else(|| PHYSICAL_ID.to_string());
    let outcome = match request.request_type {
        RequestType::Delete => Ok(BTreeMap::new()),
        RequestType::Create | RequestType::Update => apply(env, &request.resource_properties).await,
    };
    let (status, reason, data) = match outcome {
        Ok(data) => (Status::Success, "done".to_string(), data),
        Err(e) => {
            error!(error = format!("{e:#}"), "migration failed");
            (
                Status::Failed,
                truncate(&format!("{e:#}"), 2000),
                BTreeMap::new(),
            )
        }
    };
    Response {
        status,
        reason,
        physical_resource_id,
        stack_id: request.stack_id.clone(),
        request_id: request.request_id.clone(),
        logical_resource_id: request.logical_resource_id.clone(),
        data,
    }
}

fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

/// Creates the database if it is missing, migrates it, and provisions the logins.
pub async fn apply(
    env: &dyn Environment,
    properties: &Properties,
) -> anyhow::Result<BTreeMap<String, String>> {
    // Check every login before touching the database.
    for login in &properties.login_roles {
        if !GROUP_ROLES.contains(&login.role.as_str()) {
            bail!(
                "LoginRoles: {:?} is not one of {}",
                login.role,
                GROUP_ROLES.join(", ")
            );
        }
    }
    let settings = env.admin_settings().await?;
    sentinel_postgres::migrations::ensure_database(&settings).await?;
    let applied = sentinel_postgres::migrate_with(&settings).await?;
    info!(applied = applied.len(), "migrations applied");
    let client = settings
        .connect()
        .await
        .context("failed to connect to the database to provision logins")?;
    let mut users = Vec::new();
    for login in &properties.login_roles {
        let secret = env.secret(&login.secret_arn).await?;
        let credentials: Credentials = serde_json::from_str(&secret).map_err(|_| {
            anyhow::anyhow!(
                "the secret {} is not a JSON object with username and password",
                login.secret_arn
            )
        })?;
        ensure_login(&client, &login.role, &credentials).await?;
        info!(
            user = credentials.username,
            role = login.role,
            "login ready"
        );
        users.push(format!("{}:{}", credentials.username, login.role));
    }
    Ok(BTreeMap::from([
        ("Applied".to_string(), applied.join(",")),
        ("Logins".to_string(), users.join(",")),
    ]))
}

/// Creates or updates the login and makes it a member of `role`. The password is sent as
/// a SCRAM-SHA-256 verifier, so it never appears in a statement or the server's log.
async fn ensure_login(
    client: &tokio_postgres::Client,
    role: &str,
    credentials: &Credentials,
) -> anyhow::Result<()> {
    let user = credentials.username.as_str();
    if user.is_empty() || user.len() > 63 || user.starts_with("pg_") {
        bail!("{user:?} cannot be a login name (1-63 bytes, not starting with pg_)");
    }
    if GROUP_ROLES.contains(&user) {
        bail!("{user:?} is a group role; a login needs a name of its own");
    }
    if credentials.password.len() < 16 {
        bail!("the password for {user:?} is shorter than 16 characters");
    }
    let verifier = postgres_protocol::password::scram_sha_256(credentials.password.as_bytes());
    let exists = client
        .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&user])
        .await?
        .is_some();
    let verb = if exists { "ALTER" } else { "CREATE" };
    // Identifiers and literals cannot be bound; format() quotes them on the server.
    let row = client
        .query_one(
            "SELECT format('%s ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION \
             PASSWORD %L', $1::text, $2::text, $3::text), format('GRANT %I TO %I', $4::text, $2::text)",
            &[&verb, &user, &verifier, &role],
        )
        .await?;
    let statements: [String; 2] = [row.get(0), row.get(1)];
    for statement in statements {
        client
            .batch_execute(&statement)
            .await
            .with_context(|| format!("failed to provision the login {user} in {role}"))?;
    }
    Ok(())
}

/// Lambda entry point: answers CloudFormation at its response URL and succeeds, so Lambda
/// never retries a request CloudFormation has been told about.
pub async fn handler(
    env: &dyn Environment,
    http: &reqwest::Client,
    event: LambdaEvent<Value>,
) -> Result<Value, lambda_runtime::Error> {
    let request: Request = serde_json::from_value(event.payload)
        .context("the event is not a CloudFormation custom resource request")?;
    info!(
        request_type = ?request.request_type,
        logical_resource_id = request.logical_resource_id,
        "custom resource request"
    );
    // Leave time to answer before Lambda's deadline.
    let remaining = event
        .context
        .deadline()
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default()
        .saturating_sub(Duration::from_secs(10));
    let response = match tokio::time::timeout(remaining, respond_to(env, &request)).await {
        Ok(response) => response,
        Err(_) => Response {
            status: Status::Failed,
            reason: "the migration did not finish before the function's timeout".into(),
            physical_resource_id: request
                .physical_resource_id
                .clone()
                .unwrap_or_else(|| PHYSICAL_ID.to_string()),
            stack_id: request.stack_id.clone(),
            request_id: request.request_id.clone(),
            logical_resource_id: request.logical_resource_id.clone(),
            data: BTreeMap::new(),
        },
    };
    send(http, &request.response_url, &response).await?;
    Ok(serde_json::json!({"Status": response.status}))
}

/// PUTs the response to CloudFormation's pre-signed URL (which expects no content type).
pub async fn send(http: &reqwest::Client, url: &str, response: &Response) -> anyhow::Result<()> {
    let body = serde_json::to_vec(response)?;
    let answer = http
        .put(url)
        .body(body)
        .send()
        .await
        .context("failed to send the response to CloudFormation")?;
    if !answer.status().is_success() {
        bail!("CloudFormation's response URL answered {}", answer.status());
    }
    Ok(())
}

/// The real environment: the administrator's connection from `DATABASE_SECRET_ARN` (and
/// the other `DATABASE_*` settings), secrets from Secrets Manager.
pub struct Aws {
    pub config: aws_config::SdkConfig,
}

#[async_trait]
impl Environment for Aws {
    async fn admin_settings(&self) -> anyhow::Result<DatabaseSettings> {
        DatabaseSettings::from_env(async |arn: &str| {
            sentinel_aws::secrets::read(&self.config, arn).await
        })
        .await
    }

    async fn secret(&self, arn: &str) -> anyhow::Result<String> {
        sentinel_aws::secrets::read(&self.config, arn).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CREATE: &str = include_str!("../../../events/cfn_migrate_create.json");

    #[test]
    fn a_create_request_parses_with_its_logins() {
        let request: Request = serde_json::from_str(CREATE).unwrap();
        assert_eq!(request.request_type, RequestType::Create);
        assert!(request.physical_resource_id.is_none());
        assert_eq!(request.resource_properties.login_roles.len(), 3);
        assert_eq!(
            request.resource_properties.login_roles[0],
            LoginRole {
                role: "sentinel_writer".into(),
                secret_arn:
                    "arn:aws:secretsmanager:us-east-1:123456789012:secret:sentinel-writer-AbCdEf"
                        .into()
            }
        );
    }

    #[test]
    fn the_response_uses_cloudformation_field_names() {
        let response = Response {
            status: Status::Failed,
            reason: "no".into(),
            physical_resource_id: "p".into(),
            stack_id: "s".into(),
            request_id: "r".into(),
            logical_resource_id: "l".into(),
            data: BTreeMap::new(),
        };
        let json = serde_json::to_value(&response).unwrap();
        assert_eq!(json["Status"], "FAILED");
        for key in [
            "Reason",
            "PhysicalResourceId",
            "StackId",
            "RequestId",
            "LogicalResourceId",
            "Data",
        ] {
            assert!(json.get(key).is_some(), "{key} missing from {json}");
        }
    }

    #[test]
    fn long_reasons_are_cut_on_a_character_boundary() {
        let text = "é".repeat(3000);
        let cut = truncate(&text, 2000);
        assert_eq!(cut.chars().count(), 2001);
        assert!(cut.ends_with('…'));
        assert_eq!(truncate("short", 2000), "short");
    }
}
