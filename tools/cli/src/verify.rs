//! `sentinel verify`: checks one tenant's verifiable log (docs/verify.md). Exit status 0 if
//! everything verifies, 1 if anything does not (each failure named), 2 if the check could not
//! run (the database or the bucket unreachable, no key).

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use sentinel_domain::checkpoint::VerifierKey;
use sentinel_verify::pg::PgLog;
use sentinel_verify::s3::S3Checkpoints;
use sentinel_verify::source::CheckpointSource;
use sentinel_verify::{key, state, Config, Progress};

/// Exit status: the log verifies.
pub const VERIFIED: i32 = 0;
/// Exit status: something does not verify.
pub const FINDINGS: i32 = 1;
/// Exit status: the check could not run.
pub const COULD_NOT_RUN: i32 = 2;

#[derive(clap::Args)]
pub struct VerifyArgs {
    /// The tenant whose log to check.
    #[arg(long)]
    tenant: String,
    /// Recompute the rows of events that occurred from this time on (RFC 3339). The tree
    /// still takes every leaf: outside the range, the logged leaf hashes.
    #[arg(long)]
    from: Option<String>,
    /// ... and before this time (RFC 3339, exclusive).
    #[arg(long)]
    to: Option<String>,
    /// The checkpoints' public key: a PEM file (`sentinel public-key` prints one), a verifier
    /// key (`sentinel/<stack>+<key id>+<base64>`), or a file holding one. Without it, the
    /// key is read from KMS (`--key-id`).
    #[arg(long)]
    public_key: Option<String>,
    /// The KMS signing key (id, ARN or alias) whose public key to read when no
    /// `--public-key` is given (`kms:GetPublicKey`).
    #[arg(long, env = "SIGNING_KEY_ID")]
    key_id: Option<String>,
    /// The stack: names the log (`sentinel/<stack>/<tenant>`) and a PEM key. Taken from a
    /// verifier key's name if not given.
    #[arg(long, env = "STACK_NAME")]
    stack: Option<String>,
    /// A login with the `sentinel_auditor` role's read access is enough.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/sentinel"
    )]
    database_url: String,
    /// The bucket holding the checkpoints' S3 copies; without it only PostgreSQL's are checked.
    #[arg(long, env = "CHECKPOINT_BUCKET")]
    checkpoint_bucket: Option<String>,
    /// The archive bucket: its signed manifests and the Parquet rows of archived months are
    /// checked against the log. Without it, archived months' rows are not checked.
    #[arg(long, env = "ARCHIVE_BUCKET")]
    archive_bucket: Option<String>,
    /// The public key of the archive's manifest notes (named `sentinel/<stack>/archive`), in
    /// the forms `--public-key` takes. Without it, it is read from KMS (`--archive-key-id`).
    #[arg(long)]
    archive_public_key: Option<String>,
    /// The KMS key that signs the archive's manifests, whose public key to read when no
    /// `--archive-public-key` is given.
    #[arg(long, env = "ARCHIVE_SIGNING_KEY_ID")]
    archive_key_id: Option<String>,
    /// Where the last verified checkpoint of each log is kept between runs (default
    /// `$XDG_STATE_HOME/sentinel/verify` or `~/.local/state/sentinel/verify`).
    #[arg(long, env = "SENTINEL_VERIFY_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// Keep no state: a rollback to an older tree cannot be seen. Wins over a state directory
    /// given by `SENTINEL_VERIFY_STATE_DIR` (as `scripts/env.sh` sets it).
    #[arg(long)]
    no_state: bool,
    /// Compare the rows with the log row by row (a join in PostgreSQL), without first trying
    /// the faster comparison of the two as streams. Both name the same failures; the join is
    /// what the streams fall back to when anything differs.
    #[arg(long)]
    join: bool,
    /// Verify from S3 alone, without reading PostgreSQL: the checkpoints from the checkpoint
    /// bucket, the log from the tiles the archiver put in the archive bucket, and every
    /// archived month's rows against them. For an auditor with read access to the two
    /// buckets and the public keys only, or when the database is gone.
    #[arg(long, requires_all = ["checkpoint_bucket", "archive_bucket"])]
    s3_only: bool,
    /// The report as one JSON object.
    #[arg(long)]
    json: bool,
}

/// Runs the check and answers the exit status.
pub async fn run(args: VerifyArgs) -> i32 {
    match check(args).await {
        Ok(status) => status,
        Err(e) => {
            eprintln!("sentinel verify: could not run: {e:#}");
            COULD_NOT_RUN
        }
    }
}

async fn check(args: VerifyArgs) -> anyhow::Result<i32> {
    let tenant = args
        .tenant
        .parse()
        .map_err(|why| anyhow::anyhow!("--tenant {why}"))?;
    let from = args.from.as_deref().map(time).transpose()?;
    let to = args.to.as_deref().map(time).transpose()?;
    let key = public_key(&args).await?;
    let stack = args
        .stack
        .clone()
        .or_else(|| key::stack_of(&key))
        .ok_or_else(|| {
            anyhow::anyhow!("the stack's name is needed to name the log: --stack or STACK_NAME")
        })?;
    let state_dir = match (args.no_state, args.state_dir.clone()) {
        (true, _) => None,
        (false, Some(dir)) => Some(dir),
        (false, None) => state::default_dir(),
    };
    let archive = match &args.archive_bucket {
        Some(bucket) => Some((
            sentinel_verify::archive::S3Archive::from_env(bucket.clone()).await,
            archive_key(&args, &stack).await?,
        )),
        None => None,
    };
    let config = Config {
        tenant,
        stack,
        keys: vec![key],
        archive_keys: archive.iter().map(|(_, key)| key.clone()).collect(),
        from,
        to,
        state_dir,
        join: args.join,
    };
    let s3 = match &args.checkpoint_bucket {
        Some(bucket) => Some(S3Checkpoints::from_env(bucket.clone()).await),
        None => None,
    };
    let progress = Bar::new();
    let report = match (args.s3_only, &s3, &archive) {
        (true, Some(s3), Some((archive, _))) => {
            sentinel_verify::verify_s3_only(&config, s3, archive, &progress).await?
        }
        (true, ..) => anyhow::bail!("--s3-only needs --checkpoint-bucket and --archive-bucket"),
        (false, ..) => verify_with_postgresql(&args, &config, &s3, &archive, &progress).await?,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.to_text());
    }
    Ok(if report.ok() { VERIFIED } else { FINDINGS })
}

async fn verify_with_postgresql(
    args: &VerifyArgs,
    config: &Config,
    s3: &Option<S3Checkpoints>,
    archive: &Option<(sentinel_verify::archive::S3Archive, VerifierKey)>,
    progress: &Bar,
) -> anyhow::Result<sentinel_verify::Report> {
    let pg = PgLog::connect(&args.database_url).await?;
    Ok(sentinel_verify::verify(
        config,
        &pg,
        s3.as_ref().map(|s| s as &dyn CheckpointSource),
        archive.as_ref().map(|(a, _)| a),
        progress,
    )
    .await?)
}

fn time(text: &str) -> anyhow::Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| anyhow::anyhow!("{text:?} is not an RFC 3339 time: {e}"))
}

async fn public_key(args: &VerifyArgs) -> anyhow::Result<VerifierKey> {
    if let Some(given) = &args.public_key {
        return key::parse_public_key(given, args.stack.as_deref());
    }
    let Some(key_id) = &args.key_id else {
        anyhow::bail!(
            "no public key: give --public-key, or --key-id (SIGNING_KEY_ID) to read it from KMS"
        );
    };
    let stack = args.stack.as_deref().ok_or_else(|| {
        anyhow::anyhow!("a key from KMS needs the stack's name to name it: --stack or STACK_NAME")
    })?;
    let config = sentinel_aws::config().await;
    let der = sentinel_aws::kms::KmsSigner::new(&config, key_id)
        .public_key()
        .await?;
    let name = sentinel_domain::log::key_name(stack)
        .map_err(|e| anyhow::anyhow!("the stack name {stack:?} cannot name a key: {e}"))?;
    VerifierKey::from_spki_der(name, &der)
        .map_err(|e| anyhow::anyhow!("the KMS key {key_id} is not a P-256 key: {e}"))
}

async fn archive_key(args: &VerifyArgs, stack: &str) -> anyhow::Result<VerifierKey> {
    if let Some(given) = &args.archive_public_key {
        return key::parse_archive_key(given, Some(stack));
    }
    let Some(key_id) = &args.archive_key_id else {
        anyhow::bail!(
            "the archive is checked (--archive-bucket) but its key is not given: --archive-public-key, or --archive-key-id (ARCHIVE_SIGNING_KEY_ID) to read it from KMS"
        );
    };
    let config = sentinel_aws::config().await;
    let der = sentinel_aws::kms::KmsSigner::new(&config, key_id)
        .public_key()
        .await?;
    let name = sentinel_domain::archive_chain::key_name(stack)
        .map_err(|e| anyhow::anyhow!("the stack name {stack:?} cannot name a key: {e}"))?;
    VerifierKey::from_spki_der(name, &der)
        .map_err(|e| anyhow::anyhow!("the KMS key {key_id} is not a P-256 key: {e}"))
}

/// A progress bar on stderr (drawn only when stderr is a terminal).
struct Bar(indicatif::ProgressBar);

impl Bar {
    fn new() -> Self {
        let bar = indicatif::ProgressBar::with_draw_target(
            None,
            indicatif::ProgressDrawTarget::stderr_with_hz(4),
        );
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} verifying {human_pos}/{human_len} log entries ({per_sec}, {eta} left)",
            )
            .expect("a valid template"),
        );
        Self(bar)
    }
}

impl Progress for Bar {
    fn start(&self, total: u64) {
        self.0.set_length(total);
    }

    fn advance(&self, entries: u64) {
        self.0.inc(entries);
    }

    fn finish(&self) {
        self.0.finish_and_clear();
    }
}
