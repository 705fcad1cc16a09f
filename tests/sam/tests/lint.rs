//! `sam validate --lint` (cfn-lint with the SAM transform), with the pinned SAM CLI.

use std::path::Path;
use std::process::Command;

use sentinel_sam::{root, sam_cli};

fn sam_validate(template: &Path) -> (bool, String) {
    let sam = sam_cli();
    assert!(
        sam.exists(),
        "{} is missing: run scripts/install-tools",
        sam.display()
    );
    let output = Command::new(&sam)
        .args(["validate", "--lint", "--template-file"])
        .arg(template)
        // Offline: no telemetry, no update check; lint needs no credentials.
        .env("SAM_CLI_TELEMETRY", "0")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_REGION", "us-east-1")
        .output()
        .expect("failed to run sam");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[test]
fn sam_validate_lint_passes_on_the_template() {
    let (ok, output) = sam_validate(&root().join("template.yaml"));
    assert!(ok, "sam validate --lint failed:\n{output}");
    assert!(output.contains("is a valid SAM Template"), "{output}");
}

#[test]
fn sam_validate_lint_catches_a_broken_template() {
    // The same template with a reference to a resource it lacks: lint must refuse it,
    // which shows the check above can fail.
    let text = std::fs::read_to_string(root().join("template.yaml")).unwrap();
    let broken = text.replacen(
        "Resource: !GetAtt EventStream.Arn",
        "Resource: !GetAtt EventStreem.Arn",
        1,
    );
    assert_ne!(broken, text);
    let dir = std::env::temp_dir().join(format!("sentinel-lint-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("template.yaml");
    std::fs::write(&path, broken).unwrap();

    let (ok, output) = sam_validate(&path);
    std::fs::remove_dir_all(&dir).unwrap();

    assert!(
        !ok,
        "lint accepted a reference to a missing resource:\n{output}"
    );
    assert!(output.contains("EventStreem"), "{output}");
}
