//! Where the database is and how to reach it.
//!
//! Locally a `DATABASE_URL` names it. On AWS no credential sits in the environment:
//! `DATABASE_SECRET_ARN` names a Secrets Manager secret holding `username` and `password`
//! (the JSON RDS writes; `host`, `port` and `dbname` are read from it too when present), and
//! `DATABASE_HOST`, `DATABASE_PORT` and `DATABASE_NAME` say where the server is. TLS is
//! chosen by `DATABASE_SSLMODE`: `disable`, `require` (encrypted, the server's certificate
//! not checked, as libpq's `require`) or `verify-full` (the certificate chain and host name
//! are checked against the Mozilla roots plus the PEM file `DATABASE_SSL_ROOT_CERT`, e.g.
//! the RDS CA bundle).

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use serde::Deserialize;
use tokio_postgres::NoTls;
use tokio_postgres_rustls::MakeRustlsConnect;

/// How the connection is encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Plain TCP (the local database).
    Disable,
    /// TLS, without checking the server's certificate (libpq's `require`).
    Require,
    /// TLS; the certificate must chain to a trusted root and name the host.
    VerifyFull,
}

impl FromStr for SslMode {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> anyhow::Result<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "disable" => Ok(SslMode::Disable),
            "require" => Ok(SslMode::Require),
            "verify-full" => Ok(SslMode::VerifyFull),
            other => {
                bail!("DATABASE_SSLMODE must be disable, require or verify-full, not {other:?}")
            }
        }
    }
}

/// Where the server is, from the environment; each part overrides the secret's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Location {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub dbname: Option<String>,
}

/// A resolved connection: the server, the credentials and the TLS to use.
#[derive(Clone)]
pub struct DatabaseSettings {
    pub config: tokio_postgres::Config,
    pub ssl_mode: SslMode,
    /// Extra trusted roots (PEM) for [`SslMode::VerifyFull`].
    pub root_cert: Option<PathBuf>,
}

impl std::fmt::Debug for DatabaseSettings {
    // The config holds the password: show only where it points.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseSettings")
            .field("hosts", &self.config.get_hosts())
            .field("ports", &self.config.get_ports())
            .field("dbname", &self.config.get_dbname())
            .field("user", &self.config.get_user())
            .field("ssl_mode", &self.ssl_mode)
            .field("root_cert", &self.root_cert)
            .finish()
    }
}

/// The fields of a database secret that Sentinel reads.
#[derive(Deserialize)]
struct Secret {
    username: String,
    password: String,
    host: Option<String>,
    #[serde(default, deserialize_with = "port_number_or_text")]
    port: Option<u16>,
    dbname: Option<String>,
}

fn port_number_or_text<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<u16>, D::Error> {
    use serde::de::Error;
    match Option::<serde_json::Value>::deserialize(deserializer)? {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::Number(n)) => n
            .as_u64()
            .and_then(|n| u16::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| D::Error::custom("port is not a TCP port")),
        Some(serde_json::Value::String(s)) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| D::Error::custom("port is not a TCP port")),
        Some(_) => Err(D::Error::custom("port is not a TCP port")),
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

impl DatabaseSettings {
    /// From a connection string. Its `sslmode=require` asks for TLS; any other mode, or
    /// none, connects in plain text (the local default).
    pub fn from_url(url: &str) -> anyhow::Result<Self> {
        let config: tokio_postgres::Config = url
            .parse()
            .context("DATABASE_URL is not a valid PostgreSQL connection string")?;
        let ssl_mode = match config.get_ssl_mode() {
            tokio_postgres::config::SslMode::Require => SslMode::Require,
            _ => SslMode::Disable,
        };
        Ok(Self {
            config,
            ssl_mode,
            root_cert: None,
        })
    }

    /// From a secret's JSON (`username`, `password`, optionally `host`, `port`, `dbname`)
    /// and the location, which wins over the secret's.
    pub fn from_secret(
        secret_json: &str,
        location: &Location,
        ssl_mode: SslMode,
        root_cert: Option<PathBuf>,
    ) -> anyhow::Result<Self> {
        // The error must not echo the secret, so serde's message (which may quote it) is
        // not passed on.
        let secret: Secret = serde_json::from_str(secret_json).map_err(|e| {
            anyhow::anyhow!(
                "the database secret is not a JSON object with string username and password \
                 (and optional host, port, dbname): error at line {} column {}",
                e.line(),
                e.column()
            )
        })?;
        let Some(host) = location.host.clone().or(secret.host) else {
            bail!("DATABASE_HOST must be set (the secret names no host)");
        };
        let mut config = tokio_postgres::Config::new();
        config
            .host(&host)
            .port(location.port.or(secret.port).unwrap_or(5432))
            .dbname(
                location
                    .dbname
                    .as_deref()
                    .or(secret.dbname.as_deref())
                    .unwrap_or("sentinel"),
            )
            .user(&secret.username)
            .password(secret.password);
        Ok(Self {
            config,
            ssl_mode,
            root_cert,
        })
    }

    /// From the environment: `DATABASE_URL` (its user replaced by `DATABASE_USER` when that
    /// is set: locally, each function's own login), or `DATABASE_SECRET_ARN` with
    /// `DATABASE_HOST`, `DATABASE_PORT`, `DATABASE_NAME`, `DATABASE_SSLMODE` (default
    /// `require`) and `DATABASE_SSL_ROOT_CERT`. The secret is read once, here, through
    /// `read_secret` (Secrets Manager in `sentinel-aws`), which is called only when
    /// `DATABASE_SECRET_ARN` is set.
    pub async fn from_env(
        read_secret: impl AsyncFnOnce(&str) -> anyhow::Result<String>,
    ) -> anyhow::Result<Self> {
        let ssl_mode = env("DATABASE_SSLMODE").map(|m| m.parse()).transpose()?;
        let root_cert = env("DATABASE_SSL_ROOT_CERT").map(PathBuf::from);
        match (env("DATABASE_URL"), env("DATABASE_SECRET_ARN")) {
            (Some(_), Some(_)) => bail!("set DATABASE_URL or DATABASE_SECRET_ARN, not both"),
            (Some(url), None) => {
                let mut settings = Self::from_url(&url)?;
                if let Some(user) = env("DATABASE_USER") {
                    settings.config.user(user.trim());
                }
                if let Some(mode) = ssl_mode {
                    settings.ssl_mode = mode;
                }
                settings.root_cert = root_cert;
                Ok(settings)
            }
            (None, Some(arn)) => {
                let location = Location {
                    host: env("DATABASE_HOST"),
                    port: env("DATABASE_PORT")
                        .map(|p| {
                            p.trim()
                                .parse()
                                .with_context(|| format!("DATABASE_PORT is not a port: {p:?}"))
                        })
                        .transpose()?,
                    dbname: env("DATABASE_NAME"),
                };
                let secret = read_secret(&arn).await?;
                Self::from_secret(
                    &secret,
                    &location,
                    ssl_mode.unwrap_or(SslMode::Require),
                    root_cert,
                )
            }
            (None, None) => bail!("DATABASE_URL or DATABASE_SECRET_ARN must be set"),
        }
    }

    /// A pool that connects lazily, with this TLS, and replaces broken connections.
    pub fn pool(&self, max_size: usize) -> anyhow::Result<Pool> {
        let mut config = self.config.clone();
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        if config.get_application_name().is_none() {
            config.application_name("sentinel");
        }
        config.keepalives_idle(Duration::from_secs(30));
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match self.tls()? {
            None => Manager::from_config(config, NoTls, manager_config),
            Some(tls) => Manager::from_config(config, tls, manager_config),
        };
        Pool::builder(manager)
            .max_size(max_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(10)))
            .create_timeout(Some(Duration::from_secs(10)))
            .recycle_timeout(Some(Duration::from_secs(5)))
            .build()
            .context("failed to build the database pool")
    }

    /// One connection, its driver spawned on the current runtime.
    pub async fn connect(&self) -> anyhow::Result<tokio_postgres::Client> {
        let client = match self.tls()? {
            None => {
                let (client, connection) = self.config.connect(NoTls).await?;
                tokio::spawn(connection);
                client
            }
            Some(tls) => {
                let (client, connection) = self.config.connect(tls).await?;
                tokio::spawn(connection);
                client
            }
        };
        Ok(client)
    }

    /// The TLS connector for this mode; `None` for plain text.
    pub fn tls(&self) -> anyhow::Result<Option<MakeRustlsConnect>> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .context("failed to set up TLS")?;
        let config = match self.ssl_mode {
            SslMode::Disable => return Ok(None),
            SslMode::Require => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(EncryptOnly(provider)))
                .with_no_client_auth(),
            SslMode::VerifyFull => builder
                .with_root_certificates(root_store(self.root_cert.as_deref())?)
                .with_no_client_auth(),
        };
        Ok(Some(MakeRustlsConnect::new(config)))
    }
}

/// Mozilla's roots, plus every certificate in the PEM file (e.g. the RDS CA bundle).
fn root_store(extra: Option<&Path>) -> anyhow::Result<RootCertStore> {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = extra {
        let mut added = 0;
        for cert in CertificateDer::pem_file_iter(path)
            .with_context(|| format!("failed to read DATABASE_SSL_ROOT_CERT {}", path.display()))?
        {
            let cert = cert
                .with_context(|| format!("DATABASE_SSL_ROOT_CERT {} is not PEM", path.display()))?;
            roots.add(cert).with_context(|| {
                format!(
                    "DATABASE_SSL_ROOT_CERT {} holds an unusable certificate",
                    path.display()
                )
            })?;
            added += 1;
        }
        if added == 0 {
            bail!(
                "DATABASE_SSL_ROOT_CERT {} holds no certificate",
                path.display()
            );
        }
    }
    Ok(roots)
}

/// `sslmode=require`: the session is encrypted and the handshake's signatures are checked,
/// but the certificate is accepted as libpq's `require` does.
#[derive(Debug)]
struct EncryptOnly(Arc<CryptoProvider>);

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RDS_SECRET: &str = r#"{"username":"sentinel_writer_app","password":"p@ss'word\"x","engine":"postgres","host":"db.example.internal","port":5433,"dbname":"audit"}"#;

    #[test]
    fn a_secret_with_everything_gives_its_own_location() {
        let settings =
            DatabaseSettings::from_secret(RDS_SECRET, &Location::default(), SslMode::Require, None)
                .unwrap();
        let config = &settings.config;
        assert_eq!(config.get_user(), Some("sentinel_writer_app"));
        assert_eq!(config.get_password(), Some("p@ss'word\"x".as_bytes()));
        assert_eq!(
            config.get_hosts(),
            &[tokio_postgres::config::Host::Tcp(
                "db.example.internal".into()
            )]
        );
        assert_eq!(config.get_ports(), &[5433]);
        assert_eq!(config.get_dbname(), Some("audit"));
        assert_eq!(settings.ssl_mode, SslMode::Require);
    }

    #[test]
    fn the_environment_location_wins_over_the_secret() {
        let location = Location {
            host: Some("cluster.example".into()),
            port: Some(6432),
            dbname: Some("sentinel_prod".into()),
        };
        let settings =
            DatabaseSettings::from_secret(RDS_SECRET, &location, SslMode::VerifyFull, None)
                .unwrap();
        assert_eq!(
            settings.config.get_hosts(),
            &[tokio_postgres::config::Host::Tcp("cluster.example".into())]
        );
        assert_eq!(settings.config.get_ports(), &[6432]);
        assert_eq!(settings.config.get_dbname(), Some("sentinel_prod"));
    }

    #[test]
    fn a_credentials_only_secret_takes_the_port_and_name_defaults() {
        let location = Location {
            host: Some("db".into()),
            ..Location::default()
        };
        let settings = DatabaseSettings::from_secret(
            r#"{"username":"u","password":"p","port":"5432"}"#,
            &location,
            SslMode::Require,
            None,
        )
        .unwrap();
        assert_eq!(settings.config.get_ports(), &[5432]);
        assert_eq!(settings.config.get_dbname(), Some("sentinel"));
    }

    #[test]
    fn a_secret_without_a_host_needs_database_host() {
        let error = DatabaseSettings::from_secret(
            r#"{"username":"u","password":"p"}"#,
            &Location::default(),
            SslMode::Require,
            None,
        )
        .unwrap_err();
        assert!(error.to_string().contains("DATABASE_HOST"), "{error}");
    }

    #[test]
    fn a_malformed_secret_is_refused_without_echoing_it() {
        for bad in [
            r#"{"username":"u"}"#,
            r#"{"username":"u","password":12345678}"#,
            "hunter2-not-json",
            r#"{"username":"u","password":"p","host":"h","port":"99999"}"#,
        ] {
            let error =
                DatabaseSettings::from_secret(bad, &Location::default(), SslMode::Require, None)
                    .unwrap_err();
            let text = format!("{error:#}");
            assert!(text.contains("database secret"), "{text}");
            assert!(
                !text.contains("hunter2") && !text.contains("12345678"),
                "{text}"
            );
        }
    }

    #[test]
    fn settings_debug_output_hides_the_password() {
        let settings =
            DatabaseSettings::from_secret(RDS_SECRET, &Location::default(), SslMode::Require, None)
                .unwrap();
        let text = format!("{settings:?}");
        assert!(text.contains("db.example.internal"), "{text}");
        assert!(!text.contains("p@ss"), "{text}");
    }

    #[test]
    fn ssl_modes_parse_and_unknown_ones_are_named() {
        assert_eq!("disable".parse::<SslMode>().unwrap(), SslMode::Disable);
        assert_eq!("Require".parse::<SslMode>().unwrap(), SslMode::Require);
        assert_eq!(
            "verify-full".parse::<SslMode>().unwrap(),
            SslMode::VerifyFull
        );
        let error = "prefer".parse::<SslMode>().unwrap_err();
        assert!(error.to_string().contains("\"prefer\""), "{error}");
    }

    #[test]
    fn a_url_asks_for_tls_only_with_sslmode_require() {
        let plain = DatabaseSettings::from_url("postgres://postgres@127.0.0.1/sentinel").unwrap();
        assert_eq!(plain.ssl_mode, SslMode::Disable);
        assert!(plain.tls().unwrap().is_none());
        let tls =
            DatabaseSettings::from_url("postgres://postgres@127.0.0.1/sentinel?sslmode=require")
                .unwrap();
        assert_eq!(tls.ssl_mode, SslMode::Require);
        assert!(tls.tls().unwrap().is_some());
    }

    #[test]
    fn verify_full_refuses_a_root_file_without_certificates() {
        let path = std::env::temp_dir().join(format!("sentinel-empty-{}.pem", std::process::id()));
        std::fs::write(&path, "not a certificate\n").unwrap();
        let mut settings = DatabaseSettings::from_url("postgres://u@h/d").unwrap();
        settings.ssl_mode = SslMode::VerifyFull;
        settings.root_cert = Some(path.clone());
        let error = settings
            .tls()
            .err()
            .expect("a root file with no certificate");
        std::fs::remove_file(&path).unwrap();
        assert!(
            format!("{error:#}").contains("holds no certificate"),
            "{error:#}"
        );
    }
}
