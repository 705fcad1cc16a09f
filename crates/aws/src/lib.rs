//! Sentinel's AWS adapters. Each service sits behind a feature of its own, so that a function
//! links only the SDKs it calls. Endpoints come from the SDK's own configuration
//! (`AWS_ENDPOINT_URL` points every client at LocalStack locally).
//!
//! Every client built from [`config`] shares one HTTPS client whose TLS trust store is the
//! Amazon Trust Services roots compiled into this crate (see [`TrustRoots`]), not the
//! operating system's store: the SDK's default client reads and parses every CA file in
//! `/etc/ssl/certs` when a client is constructed, which was the largest part of the functions'
//! cold start beyond a hello-world function (bench/coldstart/README.md).

use aws_config::environment::{
    EnvironmentVariableCredentialsProvider, EnvironmentVariableRegionProvider,
};
use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode, TlsContext, TrustStore};
use aws_smithy_http_client::Connector;

#[cfg(feature = "kinesis")]
pub mod kinesis;
#[cfg(feature = "kms")]
pub mod kms;
#[cfg(feature = "principals")]
pub mod principals;
#[cfg(feature = "s3")]
pub mod s3;
#[cfg(feature = "secrets")]
pub mod secrets;

/// The shared SDK configuration, loaded once per cold start.
pub async fn config() -> aws_config::SdkConfig {
    loader().load().await
}

/// [`config`]'s loader, for callers that override something (an endpoint, the credentials)
/// but keep the functions' HTTPS client.
///
/// Everything else is `aws_config::defaults`: `AWS_ENDPOINT_URL` (plain `http://` to LocalStack
/// works), the profile files, and the default credential and region chains when the
/// environment does not hold the region and keys (on Lambda it does: the execution role's).
pub fn loader() -> aws_config::ConfigLoader {
    loader_with(TrustRoots::from_env())
}

fn loader_with(roots: TrustRoots) -> aws_config::ConfigLoader {
    let tls_context = TlsContext::builder()
        .with_trust_store(roots.trust_store())
        .build()
        .expect("a TLS context without additional server names always builds");
    // The SDK's default HTTPS client (`aws-smithy-runtime`'s `default_https_client`: hyper 1,
    // rustls on aws-lc-rs, proxies from the environment), with `roots` as its trust store. The
    // SDK builds a connector when a service client is constructed (to fail early) and one per
    // set of connector settings at the first request; each parses the trust store.
    let http_client = aws_smithy_http_client::Builder::new().build_with_connector_fn(
        move |settings, components| {
            let mut connector = Connector::builder()
                .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
                .tls_context(tls_context.clone())
                .proxy_config(ProxyConfig::from_env());
            connector.set_connector_settings(settings.cloned());
            if let Some(components) = components {
                connector.set_sleep_impl(components.sleep_impl());
            }
            connector.build()
        },
    );
    let mut loader =
        aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(http_client);
    // On Lambda the region and the execution role's credentials are environment variables.
    // The default chains would take them from there first too, but they construct their
    // fallbacks at every cold start: profile, web identity (with an STS client, whose TLS
    // connector is built on the spot), ECS, IMDS. When the variables are set, ask them alone.
    if has_env("AWS_REGION") || has_env("AWS_DEFAULT_REGION") {
        loader = loader.region(EnvironmentVariableRegionProvider::new());
    }
    if has_env("AWS_ACCESS_KEY_ID") && has_env("AWS_SECRET_ACCESS_KEY") {
        loader = loader.credentials_provider(EnvironmentVariableCredentialsProvider::new());
    }
    loader
}

fn has_env(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.trim().is_empty())
}

/// The certificate authorities the functions' HTTPS client trusts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrustRoots {
    /// The default: the five roots of Amazon Trust Services (Amazon Root CA 1 to 4, and the
    /// Starfield Services root that cross-signs them), compiled in. Every AWS service
    /// endpoint the functions call (Kinesis, S3, Secrets Manager, STS) presents a certificate
    /// that chains to them; no other CA can then impersonate those endpoints.
    Amazon,
    /// The operating system's store, as the SDK's default client does: `SSL_CERT_FILE` /
    /// `SSL_CERT_DIR` or the distribution's files, read and parsed once per cold start (3 to
    /// 6 ms on Debian: a bundle of 144 roots, then the same roots again as 145 files). For an
    /// egress proxy that inspects TLS with a CA of its own. Selected with
    /// `SENTINEL_TLS_ROOTS=system`.
    System,
}

impl TrustRoots {
    /// The name of the environment variable that selects the roots.
    pub const ENV: &'static str = "SENTINEL_TLS_ROOTS";

    /// `SENTINEL_TLS_ROOTS`: `amazon` (the default) or `system`.
    pub fn from_env() -> Self {
        let value = std::env::var(Self::ENV).ok();
        Self::parse(value.as_deref()).unwrap_or_else(|other| {
            tracing::warn!(
                "{}={other:?} is neither `amazon` nor `system`; using the Amazon roots",
                Self::ENV
            );
            Self::Amazon
        })
    }

    fn parse(value: Option<&str>) -> Result<Self, &str> {
        match value.map(str::trim) {
            None | Some("") => Ok(Self::Amazon),
            Some(v) if v.eq_ignore_ascii_case("amazon") => Ok(Self::Amazon),
            Some(v) if v.eq_ignore_ascii_case("system") => Ok(Self::System),
            Some(other) => Err(other),
        }
    }

    fn trust_store(self) -> TrustStore {
        match self {
            Self::Amazon => AMAZON_TRUST_SERVICES_ROOTS
                .iter()
                .fold(TrustStore::empty(), |store, root| {
                    store.with_pem_certificate(root.pem.as_bytes())
                }),
            Self::System => TrustStore::default(),
        }
    }
}

/// A root certificate, with its SHA-256 fingerprint (of the DER) to check it by.
struct Root {
    #[cfg_attr(not(test), allow(dead_code))]
    name: &'static str,
    #[cfg_attr(not(test), allow(dead_code))]
    sha256: &'static str,
    pem: &'static str,
}

/// The Amazon Trust Services roots, as published at https://www.amazontrust.com/repository/
/// (and shipped in Mozilla's and Debian's stores, from which these copies were taken and
/// checked against the fingerprints). They expire in 2037 to 2040.
const AMAZON_TRUST_SERVICES_ROOTS: [Root; 5] = [
    Root {
        name: "Amazon Root CA 1",
        sha256: "8ecde6884f3d87b1125ba31ac3fcb13d7016de7f57cc904fe1cb97c6ae98196e",
        pem: "\
-----BEGIN CERTIFICATE-----
MIIDQTCCAimgAwIBAgITBmyfz5m/jAo54vB4ikPmljZbyjANBgkqhkiG9w0BAQsF
ADA5MQswCQYDVQQGEwJVUzEPMA0GA1UEChMGQW1hem9uMRkwFwYDVQQDExBBbWF6
b24gUm9vdCBDQSAxMB4XDTE1MDUyNjAwMDAwMFoXDTM4MDExNzAwMDAwMFowOTEL
MAkGA1UEBhMCVVMxDzANBgNVBAoTBkFtYXpvbjEZMBcGA1UEAxMQQW1hem9uIFJv
b3QgQ0EgMTCCASIwDQYJKoZIhvcNAQEBBQADggEPADCCAQoCggEBALJ4gHHKeNXj
ca9HgFB0fW7Y14h29Jlo91ghYPl0hAEvrAIthtOgQ3pOsqTQNroBvo3bSMgHFzZM
9O6II8c+6zf1tRn4SWiw3te5djgdYZ6k/oI2peVKVuRF4fn9tBb6dNqcmzU5L/qw
IFAGbHrQgLKm+a/sRxmPUDgH3KKHOVj4utWp+UhnMJbulHheb4mjUcAwhmahRWa6
VOujw5H5SNz/0egwLX0tdHA114gk957EWW67c4cX8jJGKLhD+rcdqsq08p8kDi1L
93FcXmn/6pUCyziKrlA4b9v7LWIbxcceVOF34GfID5yHI9Y/QCB/IIDEgEw+OyQm
jgSubJrIqg0CAwEAAaNCMEAwDwYDVR0TAQH/BAUwAwEB/zAOBgNVHQ8BAf8EBAMC
AYYwHQYDVR0OBBYEFIQYzIU07LwMlJQuCFmcx7IQTgoIMA0GCSqGSIb3DQEBCwUA
A4IBAQCY8jdaQZChGsV2USggNiMOruYou6r4lK5IpDB/G/wkjUu0yKGX9rbxenDI
U5PMCCjjmCXPI6T53iHTfIUJrU6adTrCC2qJeHZERxhlbI1Bjjt/msv0tadQ1wUs
N+gDS63pYaACbvXy8MWy7Vu33PqUXHeeE6V/Uq2V8viTO96LXFvKWlJbYK8U90vv
o/ufQJVtMVT8QtPHRh8jrdkPSHCa2XV4cdFyQzR1bldZwgJcJmApzyMZFo6IQ6XU
5MsI+yMRQ+hDKXJioaldXgjUkK642M4UwtBV8ob2xJNDd2ZhwLnoQdeXeGADbkpy
rqXRfboQnoZsG4q5WTP468SQvvG5
-----END CERTIFICATE-----
",
    },
    Root {
        name: "Amazon Root CA 2",
        sha256: "1ba5b2aa8c65401a82960118f80bec4f62304d83cec4713a19c39c011ea46db4",
        pem: "\
-----BEGIN CERTIFICATE-----
MIIFQTCCAymgAwIBAgITBmyf0pY1hp8KD+WGePhbJruKNzANBgkqhkiG9w0BAQwF
ADA5MQswCQYDVQQGEwJVUzEPMA0GA1UEChMGQW1hem9uMRkwFwYDVQQDExBBbWF6
b24gUm9vdCBDQSAyMB4XDTE1MDUyNjAwMDAwMFoXDTQwMDUyNjAwMDAwMFowOTEL
MAkGA1UEBhMCVVMxDzANBgNVBAoTBkFtYXpvbjEZMBcGA1UEAxMQQW1hem9uIFJv
b3QgQ0EgMjCCAiIwDQYJKoZIhvcNAQEBBQADggIPADCCAgoCggIBAK2Wny2cSkxK
gXlRmeyKy2tgURO8TW0G/LAIjd0ZEGrHJgw12MBvIITplLGbhQPDW9tK6Mj4kHbZ
W0/jTOgGNk3Mmqw9DJArktQGGWCsN0R5hYGCrVo34A3MnaZMUnbqQ523BNFQ9lXg
1dKmSYXpN+nKfq5clU1Imj+uIFptiJXZNLhSGkOQsL9sBbm2eLfq0OQ6PBJTYv9K
8nu+NQWpEjTj82R0Yiw9AElaKP4yRLuH3WUnAnE72kr3H9rN9yFVkE8P7K6C4Z9r
2UXTu/Bfh+08LDmG2j/e7HJV63mjrdvdfLC6HM783k81ds8P+HgfajZRRidhW+me
z/CiVX18JYpvL7TFz4QuK/0NURBs+18bvBt+xa47mAExkv8LV/SasrlX6avvDXbR
8O70zoan4G7ptGmh32n2M8ZpLpcTnqWHsFcQgTfJU7O7f/aS0ZzQGPSSbtqDT6Zj
mUyl+17vIWR6IF9sZIUVyzfpYgwLKhbcAS4y2j5L9Z469hdAlO+ekQiG+r5jqFoz
7Mt0Q5X5bGlSNscpb/xVA1wf+5+9R+vnSUeVC06JIglJ4PVhHvG/LopyboBZ/1c6
+XUyo05f7O0oYtlNc/LMgRdg7c3r3NunysV+Ar3yVAhU/bQtCSwXVEqY0VThUWcI
0u1ufm8/0i2BWSlmy5A5lREedCf+3euvAgMBAAGjQjBAMA8GA1UdEwEB/wQFMAMB
Af8wDgYDVR0PAQH/BAQDAgGGMB0GA1UdDgQWBBSwDPBMMPQFWAJI/TPlUq9LhONm
UjANBgkqhkiG9w0BAQwFAAOCAgEAqqiAjw54o+Ci1M3m9Zh6O+oAA7CXDpO8Wqj2
LIxyh6mx/H9z/WNxeKWHWc8w4Q0QshNabYL1auaAn6AFC2jkR2vHat+2/XcycuUY
+gn0oJMsXdKMdYV2ZZAMA3m3MSNjrXiDCYZohMr/+c8mmpJ5581LxedhpxfL86kS
k5Nrp+gvU5LEYFiwzAJRGFuFjWJZY7attN6a+yb3ACfAXVU3dJnJUH/jWS5E4ywl
7uxMMne0nxrpS10gxdr9HIcWxkPo1LsmmkVwXqkLN1PiRnsn/eBG8om3zEK2yygm
btmlyTrIQRNg91CMFa6ybRoVGld45pIq2WWQgj9sAq+uEjonljYE1x2igGOpm/Hl
urR8FLBOybEfdF849lHqm/osohHUqS0nGkWxr7JOcQ3AWEbWaQbLU8uz/mtBzUF+
fUwPfHJ5elnNXkoOrJupmHN5fLT0zLm4BwyydFy4x2+IoZCn9Kr5v2c69BoVYh63
n749sSmvZ6ES8lgQGVMDMBu4Gon2nL2XA46jCfMdiyHxtN/kHNGfZQIG6lzWE7OE
76KlXIx3KadowGuuQNKotOrN8I1LOJwZmhsoVLiJkO/KdYE+HvJkJMcYr07/R54H
9jVlpNMKVv/1F2Rs76giJUmTtt8AF9pYfl3uxRuw0dFfIRDH+fO6AgonB8Xx1sfT
4PsJYGw=
-----END CERTIFICATE-----
",
    },
    Root {
        name: "Amazon Root CA 3",
        sha256: "18ce6cfe7bf14e60b2e347b8dfe868cb31d02ebb3ada271569f50343b46db3a4",
        pem: "\
-----BEGIN CERTIFICATE-----
MIIBtjCCAVugAwIBAgITBmyf1XSXNmY/Owua2eiedgPySjAKBggqhkjOPQQDAjA5
MQswCQYDVQQGEwJVUzEPMA0GA1UEChMGQW1hem9uMRkwFwYDVQQDExBBbWF6b24g
Um9vdCBDQSAzMB4XDTE1MDUyNjAwMDAwMFoXDTQwMDUyNjAwMDAwMFowOTELMAkG
A1UEBhMCVVMxDzANBgNVBAoTBkFtYXpvbjEZMBcGA1UEAxMQQW1hem9uIFJvb3Qg
Q0EgMzBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABCmXp8ZBf8ANm+gBG1bG8lKl
ui2yEujSLtf6ycXYqm0fc4E7O5hrOXwzpcVOho6AF2hiRVd9RFgdszflZwjrZt6j
QjBAMA8GA1UdEwEB/wQFMAMBAf8wDgYDVR0PAQH/BAQDAgGGMB0GA1UdDgQWBBSr
ttvXBp43rDCGB5Fwx5zEGbF4wDAKBggqhkjOPQQDAgNJADBGAiEA4IWSoxe3jfkr
BqWTrBqYaGFy+uGh0PsceGCmQ5nFuMQCIQCcAu/xlJyzlvnrxir4tiz+OpAUFteM
YyRIHN8wfdVoOw==
-----END CERTIFICATE-----
",
    },
    Root {
        name: "Amazon Root CA 4",
        sha256: "e35d28419ed02025cfa69038cd623962458da5c695fbdea3c22b0bfb25897092",
        pem: "\
-----BEGIN CERTIFICATE-----
MIIB8jCCAXigAwIBAgITBmyf18G7EEwpQ+Vxe3ssyBrBDjAKBggqhkjOPQQDAzA5
MQswCQYDVQQGEwJVUzEPMA0GA1UEChMGQW1hem9uMRkwFwYDVQQDExBBbWF6b24g
Um9vdCBDQSA0MB4XDTE1MDUyNjAwMDAwMFoXDTQwMDUyNjAwMDAwMFowOTELMAkG
A1UEBhMCVVMxDzANBgNVBAoTBkFtYXpvbjEZMBcGA1UEAxMQQW1hem9uIFJvb3Qg
Q0EgNDB2MBAGByqGSM49AgEGBSuBBAAiA2IABNKrijdPo1MN/sGKe0uoe0ZLY7Bi
9i0b2whxIdIA6GO9mif78DluXeo9pcmBqqNbIJhFXRbb/egQbeOc4OO9X4Ri83Bk
M6DLJC9wuoihKqB1+IGuYgbEgds5bimwHvouXKNCMEAwDwYDVR0TAQH/BAUwAwEB
/zAOBgNVHQ8BAf8EBAMCAYYwHQYDVR0OBBYEFNPsxzplbszh2naaVvuc84ZtV+WB
MAoGCCqGSM49BAMDA2gAMGUCMDqLIfG9fhGt0O9Yli/W651+kI0rz2ZVwyzjKKlw
CkcO8DdZEv8tmZQoTipPNU0zWgIxAOp1AE47xDqUEpHJWEadIRNyp4iciuRMStuW
1KyLa2tJElMzrdfkviT8tQp21KW8EA==
-----END CERTIFICATE-----
",
    },
    Root {
        name: "Starfield Services Root Certificate Authority - G2",
        sha256: "568d6905a2c88708a4b3025190edcfedb1974a606a13c6e5290fcb2ae63edab5",
        pem: "\
-----BEGIN CERTIFICATE-----
MIID7zCCAtegAwIBAgIBADANBgkqhkiG9w0BAQsFADCBmDELMAkGA1UEBhMCVVMx
EDAOBgNVBAgTB0FyaXpvbmExEzARBgNVBAcTClNjb3R0c2RhbGUxJTAjBgNVBAoT
HFN0YXJmaWVsZCBUZWNobm9sb2dpZXMsIEluYy4xOzA5BgNVBAMTMlN0YXJmaWVs
ZCBTZXJ2aWNlcyBSb290IENlcnRpZmljYXRlIEF1dGhvcml0eSAtIEcyMB4XDTA5
MDkwMTAwMDAwMFoXDTM3MTIzMTIzNTk1OVowgZgxCzAJBgNVBAYTAlVTMRAwDgYD
VQQIEwdBcml6b25hMRMwEQYDVQQHEwpTY290dHNkYWxlMSUwIwYDVQQKExxTdGFy
ZmllbGQgVGVjaG5vbG9naWVzLCBJbmMuMTswOQYDVQQDEzJTdGFyZmllbGQgU2Vy
dmljZXMgUm9vdCBDZXJ0aWZpY2F0ZSBBdXRob3JpdHkgLSBHMjCCASIwDQYJKoZI
hvcNAQEBBQADggEPADCCAQoCggEBANUMOsQq+U7i9b4Zl1+OiFOxHz/Lz58gE20p
OsgPfTz3a3Y4Y9k2YKibXlwAgLIvWX/2h/klQ4bnaRtSmpDhcePYLQ1Ob/bISdm2
8xpWriu2dBTrz/sm4xq6HZYuajtYlIlHVv8loJNwU4PahHQUw2eeBGg6345AWh1K
Ts9DkTvnVtYAcMtS7nt9rjrnvDH5RfbCYM8TWQIrgMw0R9+53pBlbQLPLJGmpufe
hRhJfGZOozptqbXuNC66DQO4M99H67FrjSXZm86B0UVGMpZwh94CDklDhbZsc7tk
6mFBrMnUVN+HL8cisibMn1lUaJ/8viovxFUcdUBgF4UCVTmLfwUCAwEAAaNCMEAw
DwYDVR0TAQH/BAUwAwEB/zAOBgNVHQ8BAf8EBAMCAQYwHQYDVR0OBBYEFJxfAN+q
AdcwKziIorhtSpzyEZGDMA0GCSqGSIb3DQEBCwUAA4IBAQBLNqaEd2ndOxmfZyMI
bw5hyf2E3F/YNoHN2BtBLZ9g3ccaaNnRbobhiCPPE95Dz+I0swSdHynVv/heyNXB
ve6SbzJ08pGCL72CQnqtKrcgfU28elUSwhXqvfdqlS5sdJ/PHLTyxQGjhdByPq1z
qwubdQxtRbeOlKyWN7Wg0I8VRw7j6IPdj/3vQQF3zCepYoUz8jcI73HPdwbeyBkd
iEDPfUYd/x7H4c7/I9vG+o1VTqkC50cRRj70/b17KSa7qWFiNyi2LSr2EIZkyXCn
0q23KXB56jzaYyWf/Wi3MOxw+3WKt21gZ7IeyLnp2KhvAotnDU0mV3HaIPzBSlCN
sSi6
-----END CERTIFICATE-----
",
    },
];

#[cfg(test)]
mod tests {
    use super::*;
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;
    use sha2::{Digest, Sha256};

    #[test]
    fn the_embedded_roots_are_the_amazon_trust_services_roots_and_parse_as_trust_anchors() {
        let mut store = rustls::RootCertStore::empty();
        for root in &AMAZON_TRUST_SERVICES_ROOTS {
            let der = CertificateDer::from_pem_slice(root.pem.as_bytes()).unwrap();
            assert_eq!(
                hex::encode(Sha256::digest(der.as_ref())),
                root.sha256,
                "{}",
                root.name
            );
            store
                .add(der)
                .unwrap_or_else(|e| panic!("{}: {e}", root.name));
        }
        assert_eq!(store.len(), 5);
    }

    #[test]
    fn the_roots_are_amazon_unless_system_is_asked_for() {
        assert_eq!(TrustRoots::parse(None), Ok(TrustRoots::Amazon));
        assert_eq!(TrustRoots::parse(Some("")), Ok(TrustRoots::Amazon));
        assert_eq!(TrustRoots::parse(Some("amazon")), Ok(TrustRoots::Amazon));
        assert_eq!(TrustRoots::parse(Some(" System ")), Ok(TrustRoots::System));
        assert_eq!(TrustRoots::parse(Some("none")), Err("none"));
    }

    #[tokio::test]
    async fn the_config_carries_the_https_client() {
        let config = loader()
            .region(aws_config::Region::new("us-east-1"))
            .test_credentials()
            .load()
            .await;
        assert!(config.http_client().is_some());
    }

    /// LocalStack over plain HTTP (`scripts/test` starts it on 4566) through [`config`], as
    /// the functions call it: endpoint, region and keys from the environment.
    #[cfg(feature = "kinesis")]
    #[tokio::test]
    async fn a_kinesis_client_from_the_config_calls_localstack_over_http() {
        for (key, value) in [
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:4566"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
        ] {
            if std::env::var_os(key).is_none() {
                std::env::set_var(key, value);
            }
        }
        let config = config().await;
        assert!(config.region().is_some());
        let client = kinesis::client(&config, &kinesis::KinesisTimeouts::default());
        client.list_streams().send().await.unwrap();
    }
}
