//! Connections as the functions make them on AWS: TLS to the real PostgreSQL (Debian's
//! server has TLS on with its snakeoil certificate for `localhost`), and credentials from a
//! real Secrets Manager (the infrastructure LocalStack, `INFRA_AWS_ENDPOINT_URL`).

use std::path::PathBuf;

use aws_config::{BehaviorVersion, Region};
use sentinel_aws::secrets::read as read_secret;
use sentinel_postgres::settings::{DatabaseSettings, Location, SslMode};

const SNAKEOIL: &str = "/etc/ssl/certs/ssl-cert-snakeoil.pem";

fn admin_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/sentinel".to_string())
}

async fn uses_tls(settings: &DatabaseSettings) -> anyhow::Result<bool> {
    let client = settings.connect().await?;
    Ok(client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await?
        .get(0))
}

/// The local server's maintenance database, which every server has.
fn local(mode: SslMode) -> DatabaseSettings {
    let mut settings = DatabaseSettings::from_url(&admin_url()).unwrap();
    settings.config.dbname("postgres");
    settings.ssl_mode = mode;
    settings
}

/// The local server by the name its certificate holds, at the address it listens on.
fn as_localhost(mode: SslMode, root_cert: Option<PathBuf>) -> DatabaseSettings {
    let url = local(mode);
    let mut config = tokio_postgres::Config::new();
    config
        .host("localhost")
        .hostaddr(std::net::Ipv4Addr::LOCALHOST.into())
        .port(url.config.get_ports().first().copied().unwrap_or(5432))
        .user(url.config.get_user().unwrap())
        .dbname("postgres");
    DatabaseSettings {
        config,
        ssl_mode: mode,
        root_cert,
    }
}

#[tokio::test]
async fn require_encrypts_the_connection() {
    let settings = local(SslMode::Require);

    assert!(uses_tls(&settings).await.unwrap());
}

#[tokio::test]
async fn disable_connects_in_plain_text() {
    let settings = local(SslMode::Disable);

    assert!(!uses_tls(&settings).await.unwrap());
}

#[tokio::test]
async fn verify_full_accepts_a_server_whose_certificate_chains_to_the_given_root() {
    let settings = as_localhost(SslMode::VerifyFull, Some(SNAKEOIL.into()));

    assert!(uses_tls(&settings).await.unwrap());
}

#[tokio::test]
async fn verify_full_refuses_a_certificate_no_trusted_root_signed() {
    let settings = as_localhost(SslMode::VerifyFull, None);

    let error = uses_tls(&settings).await.unwrap_err();
    assert!(
        format!("{error:#}").to_lowercase().contains("certificate"),
        "{error:#}"
    );
}

#[tokio::test]
async fn verify_full_refuses_a_certificate_for_another_host_name() {
    // 127.0.0.1 is not the name in the certificate (localhost).
    let mut settings = local(SslMode::VerifyFull);
    settings.root_cert = Some(SNAKEOIL.into());

    let error = uses_tls(&settings).await.unwrap_err();
    assert!(
        format!("{error:#}").to_lowercase().contains("certificate"),
        "{error:#}"
    );
}

#[tokio::test]
async fn a_pool_connects_with_credentials_read_from_secrets_manager() {
    let endpoint = std::env::var("INFRA_AWS_ENDPOINT_URL")
        .unwrap_or_else(|_| "http://127.0.0.1:4568".to_string());
    let aws = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(&endpoint)
        .region(Region::new("us-east-1"))
        .test_credentials()
        .load()
        .await;
    let secrets = aws_sdk_secretsmanager::Client::new(&aws);
    let url: tokio_postgres::Config = admin_url().parse().unwrap();
    let name = format!("sentinel-test-{}", uuid::Uuid::new_v4().simple());
    let secret = serde_json::json!({
        "username": url.get_user().unwrap(),
        "password": "unused-where-the-server-trusts-local-connections",
        "engine": "postgres",
        "host": "127.0.0.1",
        "port": 5432,
        "dbname": "postgres",
    });
    let arn = secrets
        .create_secret()
        .name(&name)
        .secret_string(secret.to_string())
        .send()
        .await
        .unwrap_or_else(|e| panic!("Secrets Manager must be reachable at {endpoint}: {e:?}"))
        .arn
        .unwrap();

    let json = read_secret(&aws, &arn).await;
    let _ = secrets
        .delete_secret()
        .secret_id(&arn)
        .force_delete_without_recovery(true)
        .send()
        .await;
    let settings =
        DatabaseSettings::from_secret(&json.unwrap(), &Location::default(), SslMode::Require, None)
            .unwrap();
    let client = settings.pool(1).unwrap().get().await.unwrap();
    let row = client
        .query_one(
            "SELECT current_database(), ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "postgres");
    assert!(row.get::<_, bool>(1));
}
