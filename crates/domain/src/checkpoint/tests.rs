use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::SigningKey;

use super::*;

/// Real ECDSA (type 0x02) verifier keys and notes from transparency-dev/formats,
/// `note/note_verifier_test.go`: Sigstore's Rekor log key and the Pixel 6 transparency log key,
/// one checkpoint each.
const REKOR_KEY: &str = "rekor.sigstore.dev+c0d23d6a+AjBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABNhtmPtrWm3U1eQXBogSMdGvXwBcK5AW5i0hrZLOC96l+smGNM7nwZ4QvFK/4sueRoVj//QP22Ni4Qt9DPfkWLc=";
const REKOR_NOTE: &str = "Rekor\n798034\nf+7CoKgXKE/tNys9TTXcr/ad6U/K3xvznmzew9y6SP0=\n\n\u{2014} rekor.sigstore.dev wNI9ajBEAiARInWIWyCdyG27CO6LPnPekyw20qO0YJfoaPaowGp/XgIgc+qEHS3+GKVClgqq20uDLet7MCoTURUCRdxwWBHHufk=\n";
const PIXEL_KEY: &str = "pixel6_transparency_log+91c16e30+AjBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABN+4x0Jk1yTwvLFI9A4NDdGZcX0aiWVdWM5XJVy0M4VWD3AvyW5Q6Hs9A0mcDkpUoYgn+KKPNzFC0H3nN3q6JQ8=";
const PIXEL_NOTE: &str = "DEFAULT\n10\nbsWRucJU5xJPHb5eBdOm6+DM+VelCZBuvtI3sHERJ9Y=\n\n\u{2014} pixel6_transparency_log kcFuMDBFAiEAhqMAP8P6qf6QxtUJhzMhbN+MbZ9dwfUHzGQJmffJHtoCIGD0cNe47dHWBoPwYdgBCepB06/+g5O1FmYjXl06owL4\n";

const ORIGIN: &str = "sentinel.example/log/acme";

/// A P-256 key made in the test, standing in for the KMS key.
struct TestSigner {
    key: SigningKey,
    verifier: VerifierKey,
}

impl TestSigner {
    fn new(name: &str, seed: &str) -> Self {
        let key = SigningKey::from_slice(&Sha256::digest(seed.as_bytes())).unwrap();
        let point = key.verifying_key().to_sec1_point(false);
        let spki = [&P256_SPKI_PREFIX[..], point.as_bytes()].concat();
        let verifier = VerifierKey::from_spki_der(KeyName::parse(name).unwrap(), &spki).unwrap();
        Self { key, verifier }
    }

    /// What KMS's `Sign` answers for `ECDSA_SHA_256`: DER over SHA-256 of the message.
    fn sign_der(&self, text: &str) -> Vec<u8> {
        let signature: Signature = self.key.sign(text.as_bytes());
        signature.to_der().as_bytes().to_vec()
    }

    fn signature(&self, text: &str) -> NoteSignature {
        self.verifier.signature_line(self.sign_der(text))
    }
}

fn log_signer() -> TestSigner {
    TestSigner::new(ORIGIN, "the log's key")
}

/// A checkpoint of `size` leaves; the root stands in for a tree's, except at size 0.
fn checkpoint(size: u64) -> Checkpoint {
    let root = match size {
        0 => Hash::empty(),
        _ => Hash::leaf(&size.to_be_bytes()),
    };
    Checkpoint::new(Origin::parse(ORIGIN).unwrap(), size, root)
}

fn signed_note(checkpoint: &Checkpoint, signers: &[&TestSigner]) -> String {
    let text = checkpoint.to_text();
    let signatures = signers.iter().map(|s| s.signature(&text)).collect();
    SignedNote::new(text, signatures).unwrap().to_text()
}

fn origin() -> Origin {
    Origin::parse(ORIGIN).unwrap()
}

#[test]
fn published_ecdsa_checkpoints_verify_under_their_published_keys() {
    for (vkey, note, origin, size) in [
        (REKOR_KEY, REKOR_NOTE, "Rekor", 798034),
        (PIXEL_KEY, PIXEL_NOTE, "DEFAULT", 10),
    ] {
        let key = VerifierKey::parse(vkey).unwrap();

        let checkpoint = open_checkpoint(
            note.as_bytes(),
            &Origin::parse(origin).unwrap(),
            std::slice::from_ref(&key),
        )
        .unwrap();

        assert_eq!(checkpoint.size(), size);
        assert_eq!(key.to_text(), vkey);
        assert_eq!(SignedNote::parse(note.as_bytes()).unwrap().to_text(), note);
    }
}

#[test]
fn the_ecdsa_key_id_is_the_truncated_hash_of_the_spki_alone() {
    let key = VerifierKey::parse(REKOR_KEY).unwrap();

    assert_eq!(ecdsa_key_id(key.spki_der()), 0xc0d2_3d6a);
    assert_eq!(key.key_id(), 0xc0d2_3d6a);
    assert_eq!(key.name().as_str(), "rekor.sigstore.dev");
}

#[test]
fn published_notes_do_not_verify_under_another_name_or_key() {
    let renamed = REKOR_KEY.replacen("rekor.sigstore.dev", "bananas.sigstore.dev", 1);
    let renamed = VerifierKey::parse(&renamed).unwrap();
    let pixel = VerifierKey::parse(PIXEL_KEY).unwrap();
    let note = SignedNote::parse(REKOR_NOTE.as_bytes()).unwrap();

    assert_eq!(
        note.verify(&[renamed]),
        Err(CheckpointError::NoKnownSignature)
    );
    assert_eq!(
        note.verify(&[pixel]),
        Err(CheckpointError::NoKnownSignature)
    );
}

#[test]
fn a_checkpoint_round_trips_through_its_text() {
    let with_extension = checkpoint(3)
        .with_extensions(vec!["Timestamp: 1703705040158839214".into()])
        .unwrap();

    for checkpoint in [
        checkpoint(0),
        checkpoint(1),
        checkpoint(20852163),
        with_extension,
    ] {
        let text = checkpoint.to_text();

        assert_eq!(Checkpoint::parse(&text), Ok(checkpoint.clone()), "{text}");
    }
    assert_eq!(
        checkpoint(0).to_text(),
        format!("{ORIGIN}\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n")
    );
}

#[test]
fn a_checkpoint_not_exactly_in_form_is_refused() {
    let good = checkpoint(5).to_text();
    let root = checkpoint(5).root().to_base64();
    let cases = [
        (
            good.replace('\n', "\r\n"),
            CheckpointError::ControlCharacter(13),
        ),
        (
            good.trim_end().to_string(),
            CheckpointError::MissingFinalNewline,
        ),
        (format!("{good}\n"), CheckpointError::EmptyLine(4)),
        (format!("\n{good}"), CheckpointError::EmptyLine(1)),
        (format!("{ORIGIN}\n5\n"), CheckpointError::MissingLines),
        (format!("{ORIGIN}\n05\n{root}\n"), CheckpointError::TreeSize),
        (format!("{ORIGIN}\n+5\n{root}\n"), CheckpointError::TreeSize),
        (format!("{ORIGIN}\n-5\n{root}\n"), CheckpointError::TreeSize),
        (format!("{ORIGIN}\n 5\n{root}\n"), CheckpointError::TreeSize),
        (
            format!("{ORIGIN}\n5.0\n{root}\n"),
            CheckpointError::TreeSize,
        ),
        (format!("{ORIGIN}\n00\n{root}\n"), CheckpointError::TreeSize),
        (
            format!("{ORIGIN}\n18446744073709551616\n{root}\n"),
            CheckpointError::TreeSize,
        ),
        (
            format!("{ORIGIN}\n5\n{}\n", root.trim_end_matches('=')),
            CheckpointError::RootHash,
        ),
        (
            format!("{ORIGIN}\n5\n{}\n", Hash::empty().to_hex()),
            CheckpointError::RootHash,
        ),
        (
            format!("{ORIGIN}\n5\n{}A=\n", "A".repeat(41)),
            CheckpointError::RootHash,
        ),
        (format!("{ORIGIN}\n5\n{root} \n"), CheckpointError::RootHash),
        (
            format!("{ORIGIN}\t\n5\n{root}\n"),
            CheckpointError::ControlCharacter(9),
        ),
        (
            format!("{ORIGIN}\n5\n{root}\n\0\n"),
            CheckpointError::ControlCharacter(0),
        ),
    ];

    for (text, expected) in cases {
        assert_eq!(Checkpoint::parse(&text), Err(expected), "{text:?}");
    }
    let largest = format!("{ORIGIN}\n18446744073709551615\n{root}\n");
    assert_eq!(Checkpoint::parse(&largest).unwrap().size(), u64::MAX);
}

#[test]
fn origins_and_extensions_are_non_empty_lines() {
    assert_eq!(Origin::parse(""), Err(CheckpointError::Origin));
    assert_eq!(Origin::parse("a\nb"), Err(CheckpointError::Origin));
    assert!(Origin::parse("rekor.sigstore.dev - 2605736670972794746").is_ok());
    assert_eq!(
        checkpoint(1).with_extensions(vec![String::new()]),
        Err(CheckpointError::Extension)
    );
    assert_eq!(
        checkpoint(1).with_extensions(vec!["a\nb".into()]),
        Err(CheckpointError::Extension)
    );
}

#[test]
fn a_note_signed_here_verifies_and_opens_as_the_checkpoint() {
    let signer = log_signer();
    let checkpoint = checkpoint(42);

    let note = signed_note(&checkpoint, &[&signer]);

    let opened = open_checkpoint(
        note.as_bytes(),
        &origin(),
        std::slice::from_ref(&signer.verifier),
    );
    assert_eq!(opened, Ok(checkpoint.clone()));
    let parsed = SignedNote::parse(note.as_bytes()).unwrap();
    assert_eq!(parsed.to_text(), note);
    assert_eq!(parsed.text(), checkpoint.to_text());
    assert!(note.starts_with(&format!("{}\n\u{2014} {ORIGIN} ", checkpoint.to_text())));
}

#[test]
fn a_tampered_text_fails_verification() {
    let signer = log_signer();
    let note = signed_note(&checkpoint(42), &[&signer]);
    let tampered = note.replacen("\n42\n", "\n43\n", 1);

    let result = open_checkpoint(
        tampered.as_bytes(),
        &origin(),
        std::slice::from_ref(&signer.verifier),
    );

    assert_eq!(result, Err(CheckpointError::BadSignature(ORIGIN.into())));
}

#[test]
fn every_changed_bit_of_a_signature_fails_verification() {
    let signer = log_signer();
    let text = checkpoint(42).to_text();
    let der = signer.sign_der(&text);

    for bit in 0..8 * der.len() {
        let mut changed = der.clone();
        changed[bit / 8] ^= 1 << (bit % 8);
        let note = SignedNote::new(text.clone(), vec![signer.verifier.signature_line(changed)]);
        let Ok(note) = note else { continue };

        let result = note.verify(std::slice::from_ref(&signer.verifier));

        assert!(result.is_err(), "bit {bit}");
    }
}

#[test]
fn a_signature_under_another_key_id_or_name_is_ignored_and_leaves_the_note_unverified() {
    let signer = log_signer();
    let text = checkpoint(42).to_text();
    let der = signer.sign_der(&text);
    let other_id = NoteSignature::new(signer.verifier.name().clone(), 0x0102_0304, der.clone());
    let other_name = NoteSignature::new(
        KeyName::parse("other.example").unwrap(),
        signer.verifier.key_id(),
        der,
    );

    for signature in [other_id, other_name] {
        let note = SignedNote::new(text.clone(), vec![signature]).unwrap();

        let result = note.verify(std::slice::from_ref(&signer.verifier));

        assert_eq!(result, Err(CheckpointError::NoKnownSignature));
    }
}

#[test]
fn a_known_name_and_id_with_another_keys_signature_refuses_the_note() {
    let signer = log_signer();
    let impostor = TestSigner::new(ORIGIN, "someone else's key");
    let text = checkpoint(42).to_text();
    let forged = signer.verifier.signature_line(impostor.sign_der(&text));
    let witness = TestSigner::new("witness.example", "a witness");
    let note = SignedNote::new(text.clone(), vec![witness.signature(&text), forged]).unwrap();

    let keys = [witness.verifier.clone(), signer.verifier.clone()];
    let result = note.verify(&keys);

    assert_eq!(result, Err(CheckpointError::BadSignature(ORIGIN.into())));
}

#[test]
fn unknown_signatures_are_ignored_beside_a_known_one() {
    let signer = log_signer();
    let witness = TestSigner::new("witness.example", "a witness");
    let note = signed_note(&checkpoint(7), &[&witness, &signer]);

    let opened = open_checkpoint(
        note.as_bytes(),
        &origin(),
        std::slice::from_ref(&signer.verifier),
    );

    assert_eq!(opened, Ok(checkpoint(7)));
}

#[test]
fn a_note_signed_by_a_rotated_key_verifies_under_either_known_key() {
    let old = log_signer();
    let new = TestSigner::new(ORIGIN, "the log's next key");
    let note = SignedNote::parse(signed_note(&checkpoint(9), &[&old, &new]).as_bytes()).unwrap();

    let both = [old.verifier.clone(), new.verifier.clone()];
    let signed_by = note.verify(&both).unwrap();

    assert_eq!(signed_by, vec![&both[0], &both[1]]);
    assert_eq!(note.verify(&both[1..]).unwrap(), vec![&both[1]]);
}

#[test]
fn another_logs_checkpoint_under_the_same_key_is_refused() {
    let signer = log_signer();
    let other_log = Checkpoint::new(
        Origin::parse("sentinel.example/log/globex").unwrap(),
        3,
        Hash::empty(),
    );
    let note = signed_note(&other_log, &[&signer]);

    let result = open_checkpoint(
        note.as_bytes(),
        &origin(),
        std::slice::from_ref(&signer.verifier),
    );

    assert_eq!(
        result,
        Err(CheckpointError::WrongOrigin {
            expected: ORIGIN.into(),
            found: "sentinel.example/log/globex".into()
        })
    );
}

#[test]
fn a_signature_in_non_canonical_der_is_refused() {
    let signer = log_signer();
    let text = checkpoint(42).to_text();
    let der = signer.sign_der(&text);
    // The same SEQUENCE with its length in long form (0x81 0xNN): valid BER, not DER.
    let mut long_form = vec![0x30, 0x81, der[1]];
    long_form.extend_from_slice(&der[2..]);

    assert_eq!(signer.verifier.verify(text.as_bytes(), &der), Ok(()));
    assert_eq!(
        signer.verifier.verify(text.as_bytes(), &long_form),
        Err(CheckpointError::BadSignature(ORIGIN.into()))
    );
    let mut trailing = der.clone();
    trailing.push(0);
    assert!(signer.verifier.verify(text.as_bytes(), &trailing).is_err());
}

#[test]
fn a_note_not_exactly_in_form_is_refused() {
    let signer = log_signer();
    let good = signed_note(&checkpoint(42), &[&signer]);
    let (text, line) = good
        .split_once("\n\n")
        .map(|(t, l)| (format!("{t}\n"), l.to_string()))
        .unwrap();
    let encoded = line.rsplit_once(' ').unwrap().1.trim_end().to_string();
    let cases = [
        (
            good.replace('\n', "\r\n"),
            CheckpointError::ControlCharacter(13),
        ),
        (
            good.trim_end().to_string(),
            CheckpointError::MissingFinalNewline,
        ),
        (text.clone(), CheckpointError::NoSignatures),
        (format!("{text}\n"), CheckpointError::NoSignatures),
        (good.replace("\n\n", "\n"), CheckpointError::NoSignatures),
        (format!("{good}\n"), CheckpointError::NoSignatures),
        (
            good.replace('\u{2014}', "--"),
            CheckpointError::MalformedSignatureLine(1),
        ),
        (
            good.replace("\u{2014} ", "\u{2014}"),
            CheckpointError::MalformedSignatureLine(1),
        ),
        (
            good.replace(&encoded, &encoded[..encoded.len() - 1]),
            CheckpointError::MalformedSignatureLine(1),
        ),
        (
            good.replace(&encoded, &format!("{encoded} ")),
            CheckpointError::MalformedSignatureLine(1),
        ),
        (
            good.replace(&encoded, "AAAAAA=="),
            CheckpointError::MalformedSignatureLine(1),
        ),
        (
            good.replace(&format!(" {encoded}"), ""),
            CheckpointError::MalformedSignatureLine(1),
        ),
        (
            good.replace(ORIGIN, "sentinel.example/a+b"),
            CheckpointError::KeyName,
        ),
        (
            format!("{good}{line}"),
            CheckpointError::DuplicateSignature {
                name: ORIGIN.into(),
                key_id: signer.verifier.key_id(),
            },
        ),
    ];

    for (note, expected) in cases {
        assert_eq!(
            SignedNote::parse(note.as_bytes()),
            Err(expected),
            "{note:?}"
        );
    }
    let mut not_utf8 = good.clone().into_bytes();
    not_utf8[0] = 0xff;
    assert_eq!(SignedNote::parse(&not_utf8), Err(CheckpointError::NotUtf8));
}

#[test]
fn a_note_may_carry_at_most_a_hundred_signatures() {
    let text = checkpoint(1).to_text();
    let lines = |n: u32| -> String {
        (0..n)
            .map(|i| {
                NoteSignature::new(KeyName::parse("w.example").unwrap(), i, vec![1; 64]).to_line()
            })
            .collect()
    };

    let hundred = SignedNote::parse(format!("{text}\n{}", lines(100)).as_bytes());
    let more = SignedNote::parse(format!("{text}\n{}", lines(101)).as_bytes());

    assert_eq!(hundred.unwrap().signatures().len(), 100);
    assert_eq!(more, Err(CheckpointError::TooManySignatures));
}

#[test]
fn a_note_to_publish_is_checked_like_a_parsed_one() {
    let signer = log_signer();
    let signature = || signer.signature("x\n");

    assert_eq!(
        SignedNote::new("x".into(), vec![signature()]),
        Err(CheckpointError::MissingFinalNewline)
    );
    assert_eq!(
        SignedNote::new("x\r\n".into(), vec![signature()]),
        Err(CheckpointError::ControlCharacter(13))
    );
    assert_eq!(
        SignedNote::new("x\n".into(), vec![]),
        Err(CheckpointError::NoSignatures)
    );
    assert!(matches!(
        SignedNote::new("x\n".into(), vec![signature(), signature()]),
        Err(CheckpointError::DuplicateSignature { .. })
    ));
}

#[test]
fn a_verifier_key_not_exactly_in_form_is_refused() {
    let key = VerifierKey::parse(REKOR_KEY).unwrap();
    let material = REKOR_KEY.splitn(3, '+').nth(2).unwrap();
    let spki = key.spki_der().to_vec();
    let encode = |bytes: &[u8]| STANDARD.encode(bytes);
    let compressed = {
        let point = VerifyingKey::from_sec1_bytes(&spki[26..])
            .unwrap()
            .to_sec1_point(true);
        let mut der = vec![0x30, 0x39, 0x30, 0x13];
        der.extend_from_slice(&P256_SPKI_PREFIX[4..23]);
        der.extend_from_slice(&[0x22, 0x00]);
        der.extend_from_slice(point.as_bytes());
        der
    };
    let mut off_curve = spki.clone();
    off_curve[90] ^= 1;
    let cases = [
        (
            "rekor.sigstore.dev+c0d23d6a".to_string(),
            CheckpointError::VerifierKey,
        ),
        (
            format!("rekor.sigstore.dev+C0D23D6A+{material}"),
            CheckpointError::VerifierKey,
        ),
        (
            format!("rekor.sigstore.dev+c0d23d6+{material}"),
            CheckpointError::VerifierKey,
        ),
        (
            format!("rekor.sigstore.dev+0xc0d23d6a+{material}"),
            CheckpointError::VerifierKey,
        ),
        (
            format!("rekor sigstore+c0d23d6a+{material}"),
            CheckpointError::KeyName,
        ),
        (format!("+c0d23d6a+{material}"), CheckpointError::KeyName),
        (
            format!(
                "rekor.sigstore.dev+c0d23d6a+{}",
                material.trim_end_matches('=')
            ),
            CheckpointError::VerifierKey,
        ),
        (
            format!(
                "rekor.sigstore.dev+c0d23d6a+{}",
                encode(&[&[1u8][..], &spki].concat())
            ),
            CheckpointError::VerifierKey,
        ),
        (
            format!("rekor.sigstore.dev+00000000+{material}"),
            CheckpointError::KeyIdMismatch {
                given: 0,
                computed: 0xc0d2_3d6a,
            },
        ),
        (
            format!(
                "rekor.sigstore.dev+c0d23d6a+{}",
                encode(&[&[2u8][..], &compressed].concat())
            ),
            CheckpointError::PublicKey,
        ),
        (
            format!(
                "rekor.sigstore.dev+c0d23d6a+{}",
                encode(&[&[2u8][..], &off_curve].concat())
            ),
            CheckpointError::PublicKey,
        ),
        (
            format!(
                "rekor.sigstore.dev+c0d23d6a+{}",
                encode(&[&[2u8][..], &spki, &[0]].concat())
            ),
            CheckpointError::PublicKey,
        ),
        (
            format!("rekor.sigstore.dev+c0d23d6a+{}", encode(&[2u8])),
            CheckpointError::PublicKey,
        ),
    ];

    for (vkey, expected) in cases {
        assert_eq!(VerifierKey::parse(&vkey), Err(expected), "{vkey}");
    }
}

#[test]
fn key_names_have_no_spaces_plus_signs_or_control_characters() {
    for bad in [
        "",
        "a b",
        "a+b",
        "a\u{a0}b",
        "a\u{2003}b",
        "a\tb",
        "a\u{1}b",
    ] {
        assert_eq!(
            KeyName::parse(bad),
            Err(CheckpointError::KeyName),
            "{bad:?}"
        );
    }
    assert!(KeyName::parse("sentinel.example/log/acme").is_ok());
}

#[test]
fn signatures_with_a_high_or_low_s_both_verify_as_kms_makes_either() {
    let signer = log_signer();
    let text = checkpoint(42).to_text();
    let signature: Signature = signer.key.sign(text.as_bytes());
    let low = signature.normalize_s();
    let high = Signature::from_scalars(low.r(), -low.s()).unwrap();

    for s in [low, high] {
        let der = s.to_der().as_bytes().to_vec();
        assert_eq!(signer.verifier.verify(text.as_bytes(), &der), Ok(()));
    }
    assert_ne!(low, high);
}
