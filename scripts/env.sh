# Settings for running Sentinel on this machine; sourced by the scripts.
# Every value can be overridden from the environment.
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$root/.tools/venv/bin:$PATH"
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/sentinel}"
export AWS_ENDPOINT_URL="${AWS_ENDPOINT_URL:-http://127.0.0.1:4566}"
export AWS_REGION="${AWS_REGION:-us-east-1}"
export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-test}"
export AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-test}"
export S3_FORCE_PATH_STYLE="${S3_FORCE_PATH_STYLE:-true}"
export STREAM_NAME="${STREAM_NAME:-sentinel-events}"
export ARCHIVE_BUCKET="${ARCHIVE_BUCKET:-sentinel-archive}"
export RETENTION_MONTHS="${RETENTION_MONTHS:-3}"
export PREMAKE_MONTHS="${PREMAKE_MONTHS:-3}"
# How often the local runner fires the archiver, as EventBridge would.
export ARCHIVE_RATE_SECONDS="${ARCHIVE_RATE_SECONDS:-3600}"
# The verifiable log: checkpoints are signed each minute with a KMS key (created by
# `sentinel localstack-init`) and kept in PostgreSQL and in their own bucket.
export STACK_NAME="${STACK_NAME:-local}"
export CHECKPOINT_BUCKET="${CHECKPOINT_BUCKET:-sentinel-checkpoints}"
export SIGNING_KEY_ID="${SIGNING_KEY_ID:-alias/sentinel-local-checkpoints}"
export CHECKPOINT_RATE_SECONDS="${CHECKPOINT_RATE_SECONDS:-60}"
# The archiver signs each month's manifest with a key of its own, chained to the one before.
export ARCHIVE_SIGNING_KEY_ID="${ARCHIVE_SIGNING_KEY_ID:-alias/sentinel-local-archive}"
# `sentinel verify` keeps the last checkpoint it verified per log here, and refuses a rollback.
export SENTINEL_VERIFY_STATE_DIR="${SENTINEL_VERIFY_STATE_DIR:-$root/.local/verify-state}"
export CHAOS_AWS_ENDPOINT_URL="${CHAOS_AWS_ENDPOINT_URL:-http://127.0.0.1:4567}"
# LocalStack with CloudFormation, Secrets Manager and friends, for the deployment tests.
export INFRA_AWS_ENDPOINT_URL="${INFRA_AWS_ENDPOINT_URL:-http://127.0.0.1:4568}"
export SAM_CLI_TELEMETRY="${SAM_CLI_TELEMETRY:-0}"
export LAMBDA_INVOKE_URL="${LAMBDA_INVOKE_URL:-http://[::1]:9000}"
# Identity: the functions verify bearer tokens against the local development key's JWKS,
# which `sentinel dev-key` (run by scripts/up) creates; `sentinel token` signs with the key.
export SENTINEL_AUTH_DIR="${SENTINEL_AUTH_DIR:-$root/.local/auth}"
export SENTINEL_SIGNING_KEY="${SENTINEL_SIGNING_KEY:-$SENTINEL_AUTH_DIR/signing-key.pem}"
export AUTH_MODE="${AUTH_MODE:-jwt}"
export JWT_JWKS_FILE="${JWT_JWKS_FILE:-$SENTINEL_AUTH_DIR/jwks.json}"
export JWT_ISSUER="${JWT_ISSUER:-sentinel-local}"
export JWT_AUDIENCE="${JWT_AUDIENCE:-sentinel}"
