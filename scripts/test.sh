#!/usr/bin/env bash
# make test: every check and test, against real local peers —
# DynamoDB Local (fresh tables for this run), moto's SNS server, and the
# function binaries served by `cargo lambda watch` for the end-to-end tests.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

"$ROOT/scripts/setup.sh"
trap stop_background EXIT INT TERM

say "cargo fmt --check"
cargo fmt --all -- --check

say "cargo clippy (default and dev-mode features)"
cargo clippy --workspace --all-targets -- -D warnings
cargo clippy --workspace --all-targets --all-features -- -D warnings

DYNAMODB_PORT=$(free_port)
MOTO_PORT=$(free_port)
say "DynamoDB Local on :$DYNAMODB_PORT, moto (SNS) on :$MOTO_PORT"
start_dynamodb "$DYNAMODB_PORT"
start_moto "$MOTO_PORT"
export_local_aws "$DYNAMODB_PORT"
create_tables "$DYNAMODB_PORT" "test-$(date +%s)-$$"
export MOTO_ENDPOINT="http://127.0.0.1:$MOTO_PORT"

say "unit tests without dev-mode (as deployed: no log-only sender, SMS_PROVIDER=log refused)"
cargo test -p phone_auth --lib

say "unit, storage, handler and SMS tests"
cargo test --workspace --all-features
if grep -qs '"telemetryEnabled":"true"' "$STATE/dynamodb-local-metadata.json" "$ROOT/dynamodb-local-metadata.json"; then
  die "DynamoDB Local ran with telemetry on (start it through start_dynamodb in scripts/lib.sh)"
fi

say "end-to-end: the function binaries under cargo lambda watch (8 instances each), DynamoDB requests recorded"
ensure_local_secrets
API_PORT=$(free_port)
# Build the five functions up front, so the first concurrent requests do not wait on the compiler.
cargo build --features phone_auth/dev-mode -p get-code -p send-code -p refresh -p retrieve -p set-referrer
# The DynamoDB recorder (bench/harness/src/recorder.rs), between the functions
# and DynamoDB Local: it writes which function needed which IAM action on which
# table or index, for the least-privilege check below. (Workspace features, as
# in the test run above, so only the harness itself is compiled here.)
cargo build --workspace --all-features --bin bench
RECORD_PORT=$(free_port)
export DYNAMODB_RECORD="$STATE/dynamodb-record-$RECORD_PORT.jsonl"
start_background "$STATE/record-$RECORD_PORT.log" "${CARGO_TARGET_DIR:-$ROOT/target}/debug/bench" \
  record "127.0.0.1:$RECORD_PORT" "127.0.0.1:$DYNAMODB_PORT" "$DYNAMODB_RECORD"
wait_for_http "http://127.0.0.1:$RECORD_PORT" 20 "$STATE/record-$RECORD_PORT.log"
# The functions' own CORS (cargo lambda's permissive default layer is off, as
# there is none behind API Gateway), for one allowed origin.
export E2E_CORS_ORIGIN="http://127.0.0.1:$(free_port)"
SMS_PROVIDER=log CORS_ALLOW_ORIGINS="$E2E_CORS_ORIGIN" AWS_ENDPOINT_URL_DYNAMODB="http://127.0.0.1:$RECORD_PORT" \
  start_background "$STATE/watch-$API_PORT.log" \
  cargo lambda watch --invoke-address 127.0.0.1 --invoke-port "$API_PORT" \
  --concurrency 8 --features phone_auth/dev-mode --ignore-changes --disable-cors
wait_for_http "http://127.0.0.1:$API_PORT/" 120 "$STATE/watch-$API_PORT.log"
E2E_BASE_URL="http://127.0.0.1:$API_PORT" cargo test -p phone_auth --all-features --test e2e -- --ignored
stop_background

say "least privilege: each function's DynamoDB grants in template.yaml vs what it was recorded doing"
# Same features as the workspace test run above, so its test binary is reused.
cargo test --workspace --all-features --test routes -- --ignored

say "deploy checks: sam validate --lint, cfn-lint, actionlint, arm64 sam build"
"$ROOT/scripts/check_deploy.sh"
