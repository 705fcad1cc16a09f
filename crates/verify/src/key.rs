//! The public key an auditor gives: a PEM file (`sentinel public-key` prints one), a signed
//! note verifier key (`sentinel/<stack>+<key id>+<base64>`), or a file holding either.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use sentinel_domain::checkpoint::VerifierKey;

/// Reads `given` (a path to a file, or the key's text itself). A PEM key is named
/// `sentinel/<stack>`, as the checkpointer names its signatures.
pub fn parse_public_key(given: &str, stack: Option<&str>) -> anyhow::Result<VerifierKey> {
    parse_key_named(given, stack, "--public-key", sentinel_domain::log::key_name)
}

/// Reads the archive key `given` as [`parse_public_key`] does; a PEM key is named
/// `sentinel/<stack>/archive`, as the archiver names its manifest notes' signatures.
pub fn parse_archive_key(given: &str, stack: Option<&str>) -> anyhow::Result<VerifierKey> {
    parse_key_named(
        given,
        stack,
        "--archive-public-key",
        sentinel_domain::archive_chain::key_name,
    )
}

fn parse_key_named(
    given: &str,
    stack: Option<&str>,
    flag: &str,
    key_name: fn(
        &str,
    ) -> Result<
        sentinel_domain::checkpoint::KeyName,
        sentinel_domain::checkpoint::CheckpointError,
    >,
) -> anyhow::Result<VerifierKey> {
    let text = match std::fs::read_to_string(given) {
        Ok(text) => text,
        Err(_) if given.contains('+') || given.contains("-----BEGIN") => given.to_string(),
        Err(e) => {
            anyhow::bail!("{flag} {given}: not a key, and the file cannot be read: {e}")
        }
    };
    let text = text.trim();
    if text.starts_with("-----BEGIN PUBLIC KEY-----") {
        let stack = stack.ok_or_else(|| {
            anyhow::anyhow!(
                "a PEM key needs the stack's name (--stack or STACK_NAME) to name the key"
            )
        })?;
        let der = pem_body(text)?;
        let name = key_name(stack)
            .map_err(|e| anyhow::anyhow!("the stack name {stack:?} cannot name a key: {e}"))?;
        return VerifierKey::from_spki_der(name, &der)
            .map_err(|e| anyhow::anyhow!("the PEM key is not a P-256 public key: {e}"));
    }
    VerifierKey::parse(text).map_err(|e| anyhow::anyhow!("{flag} is not a verifier key: {e}"))
}

/// The DER inside one `PUBLIC KEY` PEM block.
fn pem_body(text: &str) -> anyhow::Result<Vec<u8>> {
    let body = text
        .strip_prefix("-----BEGIN PUBLIC KEY-----")
        .and_then(|rest| rest.trim_end().strip_suffix("-----END PUBLIC KEY-----"))
        .ok_or_else(|| anyhow::anyhow!("a PEM key is one PUBLIC KEY block"))?;
    let base64: String = body.split_whitespace().collect();
    STANDARD
        .decode(base64)
        .map_err(|e| anyhow::anyhow!("the PEM block is not base64: {e}"))
}

/// The stack a verifier key names, if its name is `sentinel/<stack>`.
pub fn stack_of(key: &VerifierKey) -> Option<String> {
    key.name()
        .as_str()
        .strip_prefix("sentinel/")
        .filter(|s| !s.is_empty() && !s.contains('/'))
        .map(str::to_string)
}

/// `-----BEGIN PUBLIC KEY-----` PEM of DER bytes, in lines of 64.
pub fn pem(der: &[u8]) -> String {
    let encoded = STANDARD.encode(der);
    let mut out = String::from("-----BEGIN PUBLIC KEY-----\n");
    for chunk in encoded.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str("-----END PUBLIC KEY-----\n");
    out
}
