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
export CHAOS_AWS_ENDPOINT_URL="${CHAOS_AWS_ENDPOINT_URL:-http://127.0.0.1:4567}"
export LAMBDA_INVOKE_URL="${LAMBDA_INVOKE_URL:-http://127.0.0.1:9000}"
