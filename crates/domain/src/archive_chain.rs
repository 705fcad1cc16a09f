//! The archive's chain of signed manifests (issue 11; docs/verifiable-log.md, "The archive").
//!
//! Every `_manifest.json` the archiver writes is signed as a C2SP signed note by a key of
//! the archiver's own (`sentinel/<stack>/archive`), that names the manifest's SHA-256 and the
//! SHA-256 of the note signed before it, as CloudTrail chains its digest files:
//!
//! ```text
//! sentinel/local archive
//! 7
//! month 2024-02
//! manifest <base64 SHA-256 of the month's _manifest.json>
//! previous <base64 SHA-256 of note 6, or "none" for note 0>
//! time 2026-12-03T16:00:00.000000Z
//!
//! — sentinel/local/archive <signature>
//! ```
//!
//! The origin line holds a space, which no tenant's log origin (`sentinel/<stack>/<tenant>`)
//! can, so a manifest note is never mistaken for a checkpoint. Notes are kept in PostgreSQL
//! (`archive_manifests`) and in S3 at [`note_key`]; a month's newest note must name the
//! manifest S3 holds for it.

use chrono::SecondsFormat;
use sha2::{Digest, Sha256};

use crate::checkpoint::{CheckpointError, KeyName};
use crate::fields::Timestamp;
use crate::merkle::Hash;
use crate::month::Month;

/// Where the notes are kept in the archive bucket.
pub const NOTES_PREFIX: &str = "manifests/";

/// The S3 key of note `seq`: listed in the chain's order.
pub fn note_key(seq: u64) -> String {
    format!("{NOTES_PREFIX}{seq:020}.note")
}

/// The sequence number of a note's S3 key.
pub fn seq_of_key(key: &str) -> Option<u64> {
    let digits = key.strip_prefix(NOTES_PREFIX)?.strip_suffix(".note")?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// The archiver's key name in signed notes: `sentinel/<stack>/archive`.
pub fn key_name(stack: &str) -> Result<KeyName, CheckpointError> {
    KeyName::parse(&format!("sentinel/{stack}/archive"))
}

/// The first line of every manifest note of a stack.
pub fn origin(stack: &str) -> String {
    format!("sentinel/{stack} archive")
}

/// SHA-256 of bytes, as the chain names manifests and notes.
pub fn sha256(bytes: &[u8]) -> Hash {
    Hash::from_bytes(Sha256::digest(bytes).into())
}

/// What a manifest note says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestNote {
    pub seq: u64,
    pub month: Month,
    /// SHA-256 of the `_manifest.json` bytes.
    pub manifest: Hash,
    /// SHA-256 of the whole previous note (text and signatures); `None` only for note 0.
    pub previous: Option<Hash>,
    pub signed_at: Timestamp,
}

impl ManifestNote {
    /// The note's text, to sign.
    pub fn to_text(&self, stack: &str) -> String {
        format!(
            "{}\n{}\nmonth {}\nmanifest {}\nprevious {}\ntime {}\n",
            origin(stack),
            self.seq,
            self.month,
            self.manifest.to_base64(),
            self.previous
                .map_or_else(|| "none".to_string(), |h| h.to_base64()),
            self.signed_at
                .get()
                .to_rfc3339_opts(SecondsFormat::Micros, true)
        )
    }

    /// Reads a note's (already verified) text. Only the exact form [`Self::to_text`] writes
    /// is accepted.
    pub fn parse(text: &str, stack: &str) -> Result<Self, String> {
        let mut lines = text
            .strip_suffix('\n')
            .ok_or("the text does not end in a newline")?
            .split('\n');
        let mut line = |what: &str| lines.next().ok_or(format!("no {what} line"));
        let first = line("origin")?;
        if first != origin(stack) {
            return Err(format!("the origin is {first:?}, not {:?}", origin(stack)));
        }
        let seq = line("sequence")?;
        let seq: u64 = seq
            .parse()
            .ok()
            .filter(|n: &u64| n.to_string() == seq)
            .ok_or(format!("the sequence number {seq:?} is not a number"))?;
        let field = |line: &str, name: &str| -> Result<String, String> {
            line.strip_prefix(name)
                .and_then(|rest| rest.strip_prefix(' '))
                .map(str::to_string)
                .ok_or(format!("expected a {name} line, found {line:?}"))
        };
        let month_text = field(line("month")?, "month")?;
        let month = month_text
            .split_once('-')
            .and_then(|(y, m)| {
                (y.len() == 4 && m.len() == 2).then_some(())?;
                Month::new(y.parse().ok()?, m.parse().ok()?)
            })
            .ok_or(format!("the month {month_text:?} is not YYYY-MM"))?;
        let manifest = Hash::parse_base64(&field(line("manifest")?, "manifest")?)
            .map_err(|e| format!("the manifest hash: {e}"))?;
        let previous = match field(line("previous")?, "previous")?.as_str() {
            "none" => None,
            text => Some(Hash::parse_base64(text).map_err(|e| format!("the previous hash: {e}"))?),
        };
        let time = field(line("time")?, "time")?;
        let signed_at = Timestamp::parse(&time).map_err(|e| format!("the time: {e}"))?;
        if lines.next().is_some() {
            return Err("lines after the time line".into());
        }
        let note = Self {
            seq,
            month,
            manifest,
            previous,
            signed_at,
        };
        if note.to_text(stack) != text {
            return Err("the note is not in its canonical form".into());
        }
        if (seq == 0) != note.previous.is_none() {
            return Err(format!(
                "note {seq} {} a previous note",
                if seq == 0 { "names" } else { "does not name" }
            ));
        }
        Ok(note)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(seq: u64) -> ManifestNote {
        ManifestNote {
            seq,
            month: Month::new(2024, 2).unwrap(),
            manifest: sha256(b"{}"),
            previous: (seq > 0).then(|| sha256(b"note before")),
            signed_at: Timestamp::parse("2026-12-03T16:00:00.123456Z").unwrap(),
        }
    }

    #[test]
    fn a_note_reads_back_exactly() {
        for seq in [0, 1, 12_345] {
            let text = note(seq).to_text("local");
            assert!(text.starts_with(&format!("sentinel/local archive\n{seq}\nmonth 2024-02\n")));
            assert_eq!(ManifestNote::parse(&text, "local"), Ok(note(seq)));
        }
        assert!(note(0).to_text("local").contains("\nprevious none\n"));
    }

    #[test]
    fn anything_but_the_exact_form_is_refused() {
        let text = note(3).to_text("local");
        let cases = [
            text.replace("sentinel/local archive", "sentinel/other archive"),
            text.replace("\n3\n", "\n03\n"),
            text.replace("\n3\n", "\n-3\n"),
            text.replace("month 2024-02", "month 2024-2"),
            text.replace("month 2024-02", "month 2024-13"),
            text.replace("manifest ", "manifest  "),
            text.replace("previous ", "previous none")
                .replace("none", "none "),
            text.replace(".123456Z", "Z"),
            format!("{text}extra\n"),
            text.trim_end().to_string(),
            note(0).to_text("local").replace("\n0\n", "\n5\n"),
            text.replace(
                &format!("previous {}", sha256(b"note before").to_base64()),
                "previous none",
            ),
        ];
        for case in cases {
            assert!(ManifestNote::parse(&case, "local").is_err(), "{case}");
        }
    }

    #[test]
    fn keys_are_listed_in_the_chains_order() {
        assert_eq!(note_key(7), "manifests/00000000000000000007.note");
        assert!(note_key(9) < note_key(10));
        assert_eq!(seq_of_key(&note_key(123)), Some(123));
        assert_eq!(seq_of_key("manifests/7.note"), None);
        assert_eq!(seq_of_key("manifests/0000000000000000000x.note"), None);
        assert_eq!(
            key_name("local").unwrap().as_str(),
            "sentinel/local/archive"
        );
    }
}
