//! Checkpoints: a log's signed tree heads, as c2sp.org/tlog-checkpoint writes them, in the
//! signed-note envelope of c2sp.org/signed-note.
//!
//! ```text
//! sentinel.example/log/acme          origin
//! 20852163                           tree size, decimal
//! CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=   root hash, base64
//!                                    blank line
//! — sentinel.example/log/acme pTX5kDBF…  one line per signature: key name, base64(key ID || sig)
//! ```
//!
//! Parsing is strict: anything not exactly in form is refused (a CR, a missing final newline,
//! a leading zero, base64 that is not the canonical padded form, a duplicate signature…).
//!
//! **Signatures.** Checkpoints are signed in AWS KMS with an `ECC_NIST_P256` key and
//! `ECDSA_SHA_256`. The signed-note spec assigns ECDSA signature type `0x02` "as implemented
//! by github.com/transparency-dev/witness", P-256 recommended, and says the key ID of these
//! signatures is the truncated SHA-256 of the DER-encoded SubjectPublicKeyInfo. That
//! implementation (the one Sigstore's Rekor checkpoints use) fixes the rest, and this module
//! follows it:
//! - the key ID is the first four bytes, big-endian, of SHA-256(SPKI DER) alone (unlike
//!   Ed25519's, the key name and type byte are not hashed in);
//! - the signature is ASN.1 DER ECDSA over SHA-256 of the note text, exactly what KMS's
//!   `Sign` returns for `ECDSA_SHA_256`;
//! - the verifier key is `<name>+<8 hex digits of the key ID>+<base64(0x02 || SPKI DER)>`,
//!   the SPKI being what KMS's `GetPublicKey` returns.
//!
//! Verification follows the spec's rules: a signature whose key name *and* ID match a known
//! key must verify (one that fails refuses the whole note), signatures by unknown keys are
//! ignored (they may be witnesses' cosignatures or a rotated key's), and a note with no valid
//! signature by a known key is refused. Only then is the text read, and a checkpoint must name
//! the origin of the log the caller expects ([`open_checkpoint`]).
//!
//! Where the spec leaves room this module is stricter than the Go reference: the SPKI must be
//! the one canonical DER of an uncompressed P-256 key (91 bytes, as KMS and Go write it), the
//! signature DER must be canonical, key ID hex is lowercase, and a note may not carry the same
//! key name and ID twice.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{Signature, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::merkle::Hash;

/// The signature type byte of ECDSA signatures in signed notes.
pub const ECDSA_SIGNATURE_TYPE: u8 = 0x02;

/// At most this many signature lines in a note (the Go reference's limit; the spec asks
/// verifiers to accept at least 16).
pub const MAX_SIGNATURES: usize = 100;

const SIGNATURE_PREFIX: &str = "\u{2014} ";

/// The DER SubjectPublicKeyInfo of a P-256 key up to its point: SEQUENCE { SEQUENCE {
/// id-ecPublicKey, prime256v1 }, BIT STRING { uncompressed point } }.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];
const P256_SPKI_LEN: usize = P256_SPKI_PREFIX.len() + 65;

/// Why a checkpoint, a note, a key or a signature is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("a note is UTF-8 text")]
    NotUtf8,
    #[error("control character U+{0:04X} (only newline is allowed)")]
    ControlCharacter(u32),
    #[error("the text does not end with a newline")]
    MissingFinalNewline,
    #[error("no blank line separates the text from the signatures")]
    NoSignatures,
    #[error("signature line {0} is not `— <key name> <base64>`")]
    MalformedSignatureLine(usize),
    #[error("more than {MAX_SIGNATURES} signatures")]
    TooManySignatures,
    #[error("key {name} ({key_id:08x}) signs the note more than once")]
    DuplicateSignature { name: String, key_id: u32 },
    #[error("a key name is non-empty, without spaces, plus signs or control characters")]
    KeyName,
    #[error("an origin is a non-empty line")]
    Origin,
    #[error("an extension line is a non-empty line")]
    Extension,
    #[error("a checkpoint has an origin, a tree size and a root hash, one a line")]
    MissingLines,
    #[error("line {0} is empty")]
    EmptyLine(usize),
    #[error("the tree size is a decimal number below 2^64, without a sign or leading zeros")]
    TreeSize,
    #[error("the root hash is the standard base64 of 32 bytes")]
    RootHash,
    #[error(
        "a verifier key is `<name>+<8 lowercase hex digits>+<base64(0x02 || P-256 SPKI DER)>`"
    )]
    VerifierKey,
    #[error("the key ID {given:08x} is not the key's ({computed:08x})")]
    KeyIdMismatch { given: u32, computed: u32 },
    #[error("not the DER SubjectPublicKeyInfo of an uncompressed P-256 key")]
    PublicKey,
    #[error("the signature of {0} does not verify")]
    BadSignature(String),
    #[error("no signature from a known key")]
    NoKnownSignature,
    #[error("the checkpoint's origin is {found:?}, not the log's {expected:?}")]
    WrongOrigin { expected: String, found: String },
}

/// The name of a signing key: non-empty, with no Unicode space, no `+` and no control
/// character. By convention a schema-less URL, and for a log, its origin.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyName(String);

impl KeyName {
    pub fn parse(name: &str) -> Result<Self, CheckpointError> {
        let valid = !name.is_empty()
            && !name
                .chars()
                .any(|c| c.is_whitespace() || c == '+' || c.is_control());
        if valid {
            Ok(Self(name.to_owned()))
        } else {
            Err(CheckpointError::KeyName)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The identity of a log, the first line of its checkpoints: non-empty, with no control
/// character. The spec recommends (does not require) the form of a key name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin(String);

impl Origin {
    pub fn parse(origin: &str) -> Result<Self, CheckpointError> {
        if is_line(origin) {
            Ok(Self(origin.to_owned()))
        } else {
            Err(CheckpointError::Origin)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A log's tree head: its origin, size and root, and optional opaque extension lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    origin: Origin,
    size: u64,
    root: Hash,
    extensions: Vec<String>,
}

impl Checkpoint {
    pub fn new(origin: Origin, size: u64, root: Hash) -> Self {
        Self {
            origin,
            size,
            root,
            extensions: Vec::new(),
        }
    }

    /// Adds extension lines (the spec does not recommend them: monitors cannot audit them).
    pub fn with_extensions(mut self, extensions: Vec<String>) -> Result<Self, CheckpointError> {
        if !extensions.iter().all(|line| is_line(line)) {
            return Err(CheckpointError::Extension);
        }
        self.extensions = extensions;
        Ok(self)
    }

    /// Parses a checkpoint's note text (the body, without signatures), exactly in form.
    pub fn parse(text: &str) -> Result<Self, CheckpointError> {
        check_characters(text)?;
        let body = text
            .strip_suffix('\n')
            .ok_or(CheckpointError::MissingFinalNewline)?;
        let lines: Vec<&str> = body.split('\n').collect();
        if let Some(empty) = lines.iter().position(|line| line.is_empty()) {
            return Err(CheckpointError::EmptyLine(empty + 1));
        }
        let [origin, size, root, extensions @ ..] = lines.as_slice() else {
            return Err(CheckpointError::MissingLines);
        };
        Ok(Self {
            origin: Origin::parse(origin)?,
            size: parse_tree_size(size)?,
            root: Hash::parse_base64(root).map_err(|_| CheckpointError::RootHash)?,
            extensions: extensions.iter().map(|line| line.to_string()).collect(),
        })
    }

    /// The note text: each line newline-terminated.
    pub fn to_text(&self) -> String {
        let mut text = format!(
            "{}\n{}\n{}\n",
            self.origin.0,
            self.size,
            self.root.to_base64()
        );
        for line in &self.extensions {
            text.push_str(line);
            text.push('\n');
        }
        text
    }

    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn root(&self) -> &Hash {
        &self.root
    }

    pub fn extensions(&self) -> &[String] {
        &self.extensions
    }
}

/// Opens a signed checkpoint of the log `origin`: the note must carry a valid signature by
/// one of `keys` (signatures by other keys are ignored, a failing one by a known key refuses
/// the note), and only then is its text parsed, and its origin must be the log's.
pub fn open_checkpoint(
    note: &[u8],
    origin: &Origin,
    keys: &[VerifierKey],
) -> Result<Checkpoint, CheckpointError> {
    let note = SignedNote::parse(note)?;
    note.verify(keys)?;
    let checkpoint = Checkpoint::parse(note.text())?;
    if checkpoint.origin != *origin {
        return Err(CheckpointError::WrongOrigin {
            expected: origin.0.clone(),
            found: checkpoint.origin.0,
        });
    }
    Ok(checkpoint)
}

/// One signature line: the key's name and ID, and the signature bytes after the ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    name: KeyName,
    key_id: u32,
    signature: Vec<u8>,
}

impl NoteSignature {
    pub fn new(name: KeyName, key_id: u32, signature: Vec<u8>) -> Self {
        Self {
            name,
            key_id,
            signature,
        }
    }

    pub fn name(&self) -> &KeyName {
        &self.name
    }

    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    pub fn signature(&self) -> &[u8] {
        &self.signature
    }

    fn parse(line: &str, number: usize) -> Result<Self, CheckpointError> {
        let malformed = CheckpointError::MalformedSignatureLine(number);
        let rest = line
            .strip_prefix(SIGNATURE_PREFIX)
            .ok_or(malformed.clone())?;
        let (name, encoded) = rest.split_once(' ').ok_or(malformed.clone())?;
        let name = KeyName::parse(name)?;
        let bytes = decode_base64(encoded).ok_or(malformed.clone())?;
        if bytes.len() < 5 {
            return Err(malformed);
        }
        let (id, signature) = bytes.split_at(4);
        Ok(Self {
            name,
            key_id: u32::from_be_bytes(id.try_into().expect("four bytes")),
            signature: signature.to_vec(),
        })
    }

    fn to_line(&self) -> String {
        let mut bytes = self.key_id.to_be_bytes().to_vec();
        bytes.extend_from_slice(&self.signature);
        format!(
            "{SIGNATURE_PREFIX}{} {}\n",
            self.name,
            STANDARD.encode(bytes)
        )
    }
}

/// A signed note: text ending in a newline, a blank line, then signature lines. Parsing checks
/// the form only; [`SignedNote::verify`] checks the signatures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedNote {
    text: String,
    signatures: Vec<NoteSignature>,
}

impl SignedNote {
    /// A note to publish: `text` is non-empty and newline-terminated, without control
    /// characters, and signed by 1 to [`MAX_SIGNATURES`] distinct keys.
    pub fn new(text: String, signatures: Vec<NoteSignature>) -> Result<Self, CheckpointError> {
        check_characters(&text)?;
        if !text.ends_with('\n') {
            return Err(CheckpointError::MissingFinalNewline);
        }
        check_signatures(&signatures)?;
        Ok(Self { text, signatures })
    }

    pub fn parse(note: &[u8]) -> Result<Self, CheckpointError> {
        let note = std::str::from_utf8(note).map_err(|_| CheckpointError::NotUtf8)?;
        check_characters(note)?;
        // The text ends at the last blank line; signature lines are never empty.
        let split = note.rfind("\n\n").ok_or(CheckpointError::NoSignatures)?;
        let (text, block) = (&note[..split + 1], &note[split + 2..]);
        if block.is_empty() {
            return Err(CheckpointError::NoSignatures);
        }
        let block = block
            .strip_suffix('\n')
            .ok_or(CheckpointError::MissingFinalNewline)?;
        let mut signatures = Vec::new();
        for (number, line) in block.split('\n').enumerate() {
            if number == MAX_SIGNATURES {
                return Err(CheckpointError::TooManySignatures);
            }
            signatures.push(NoteSignature::parse(line, number + 1)?);
        }
        check_signatures(&signatures)?;
        Ok(Self {
            text: text.to_owned(),
            signatures,
        })
    }

    /// The signed text, final newline included.
    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn signatures(&self) -> &[NoteSignature] {
        &self.signatures
    }

    /// The whole note: text, blank line, signature lines.
    pub fn to_text(&self) -> String {
        let mut note = self.text.clone();
        note.push('\n');
        for signature in &self.signatures {
            note.push_str(&signature.to_line());
        }
        note
    }

    /// Checks the signatures by `keys` as the spec requires: a signature whose key name and
    /// ID match a known key must verify (one that fails refuses the note), signatures by
    /// unknown keys are ignored, and at least one known key must have signed. Returns the
    /// keys that signed.
    pub fn verify<'k>(
        &self,
        keys: &'k [VerifierKey],
    ) -> Result<Vec<&'k VerifierKey>, CheckpointError> {
        let mut signed_by = Vec::new();
        for signature in &self.signatures {
            let known = keys
                .iter()
                .find(|k| k.name == signature.name && k.key_id == signature.key_id);
            let Some(key) = known else { continue };
            key.verify(self.text.as_bytes(), &signature.signature)?;
            signed_by.push(key);
        }
        if signed_by.is_empty() {
            return Err(CheckpointError::NoKnownSignature);
        }
        Ok(signed_by)
    }
}

/// A public key that verifies note signatures: ECDSA P-256 with SHA-256, signature type
/// `0x02` (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierKey {
    name: KeyName,
    key_id: u32,
    spki: Vec<u8>,
    key: VerifyingKey,
}

impl VerifierKey {
    /// Parses `<name>+<key ID, 8 lowercase hex digits>+<base64(0x02 || SPKI DER)>`.
    pub fn parse(vkey: &str) -> Result<Self, CheckpointError> {
        // Names and IDs hold no `+`; base64 may.
        let (name, rest) = vkey.split_once('+').ok_or(CheckpointError::VerifierKey)?;
        let (id, encoded) = rest.split_once('+').ok_or(CheckpointError::VerifierKey)?;
        let name = KeyName::parse(name)?;
        let valid_id = id.len() == 8 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !valid_id {
            return Err(CheckpointError::VerifierKey);
        }
        let given = u32::from_str_radix(id, 16).map_err(|_| CheckpointError::VerifierKey)?;
        let bytes = decode_base64(encoded).ok_or(CheckpointError::VerifierKey)?;
        let Some((&ECDSA_SIGNATURE_TYPE, spki)) = bytes.split_first() else {
            return Err(CheckpointError::VerifierKey);
        };
        let key = Self::from_spki_der(name, spki)?;
        if key.key_id != given {
            return Err(CheckpointError::KeyIdMismatch {
                given,
                computed: key.key_id,
            });
        }
        Ok(key)
    }

    /// The key of `name` from its DER SubjectPublicKeyInfo, as KMS's `GetPublicKey` returns it.
    pub fn from_spki_der(name: KeyName, spki: &[u8]) -> Result<Self, CheckpointError> {
        let point = spki
            .strip_prefix(&P256_SPKI_PREFIX[..])
            .filter(|point| spki.len() == P256_SPKI_LEN && point[0] == 0x04)
            .ok_or(CheckpointError::PublicKey)?;
        // Checks the point is on the curve and not the identity.
        let key = VerifyingKey::from_sec1_bytes(point).map_err(|_| CheckpointError::PublicKey)?;
        Ok(Self {
            name,
            key_id: ecdsa_key_id(spki),
            spki: spki.to_vec(),
            key,
        })
    }

    /// The verifier key text, as [`VerifierKey::parse`] reads it.
    pub fn to_text(&self) -> String {
        let mut bytes = vec![ECDSA_SIGNATURE_TYPE];
        bytes.extend_from_slice(&self.spki);
        format!(
            "{}+{:08x}+{}",
            self.name,
            self.key_id,
            STANDARD.encode(bytes)
        )
    }

    pub fn name(&self) -> &KeyName {
        &self.name
    }

    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    pub fn spki_der(&self) -> &[u8] {
        &self.spki
    }

    /// The signature line for a DER signature of a note's text by this key (as KMS returns
    /// it). Verify it first ([`VerifierKey::verify`]): a line is no proof of anything.
    pub fn signature_line(&self, der_signature: Vec<u8>) -> NoteSignature {
        NoteSignature::new(self.name.clone(), self.key_id, der_signature)
    }

    /// Checks a canonical DER ECDSA signature over SHA-256 of `text`.
    pub fn verify(&self, text: &[u8], der_signature: &[u8]) -> Result<(), CheckpointError> {
        let bad = || CheckpointError::BadSignature(self.name.0.clone());
        let signature = Signature::from_der(der_signature).map_err(|_| bad())?;
        if signature.to_der().as_bytes() != der_signature {
            return Err(bad());
        }
        self.key.verify(text, &signature).map_err(|_| bad())
    }
}

/// The key ID of an ECDSA note key: the first four bytes, big-endian, of SHA-256 of its DER
/// SubjectPublicKeyInfo.
pub fn ecdsa_key_id(spki_der: &[u8]) -> u32 {
    let digest = Sha256::digest(spki_der);
    u32::from_be_bytes(digest[..4].try_into().expect("four bytes"))
}

/// Valid UTF-8 is given; refuses every ASCII control character but newline.
fn check_characters(text: &str) -> Result<(), CheckpointError> {
    match text.chars().find(|&c| c < ' ' && c != '\n') {
        Some(c) => Err(CheckpointError::ControlCharacter(c as u32)),
        None => Ok(()),
    }
}

/// A non-empty line: no newline, no control character.
fn is_line(text: &str) -> bool {
    !text.is_empty() && !text.chars().any(|c| c < ' ')
}

fn check_signatures(signatures: &[NoteSignature]) -> Result<(), CheckpointError> {
    if signatures.is_empty() {
        return Err(CheckpointError::NoSignatures);
    }
    if signatures.len() > MAX_SIGNATURES {
        return Err(CheckpointError::TooManySignatures);
    }
    for (i, a) in signatures.iter().enumerate() {
        if signatures[..i]
            .iter()
            .any(|b| a.name == b.name && a.key_id == b.key_id)
        {
            return Err(CheckpointError::DuplicateSignature {
                name: a.name.0.clone(),
                key_id: a.key_id,
            });
        }
    }
    Ok(())
}

fn parse_tree_size(text: &str) -> Result<u64, CheckpointError> {
    let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    if !digits || (text.len() > 1 && text.starts_with('0')) {
        return Err(CheckpointError::TreeSize);
    }
    text.parse().map_err(|_| CheckpointError::TreeSize)
}

/// Standard, padded base64 in its one canonical form, or nothing.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let bytes = STANDARD.decode(text).ok()?;
    (STANDARD.encode(&bytes) == text).then_some(bytes)
}

#[cfg(test)]
mod tests;
