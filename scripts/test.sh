#!/usr/bin/env bash
# make test: every check and test, against real local peers —
# DynamoDB Local (fresh tables for this run), moto's SNS server, and the
# function binaries served by `cargo lambda watch` for the end-to-end tests.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

"$ROOT/scripts/setup.sh"
trap stop_background EXIT INT TERM

# A clean build needs several GB; say how much there is, so a full disk is
# recognised as such rather than as a linker crash.
say "free disk space where the build goes: $(df -h --output=avail "${CARGO_TARGET_DIR:-$ROOT/target}" 2>/dev/null | tail -1 || df -h --output=avail "$ROOT" | tail -1)"
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

say "end-to-end: the function binaries under cargo lambda watch (8 instances each; three more servers with small limits), DynamoDB requests recorded"
ensure_local_secrets
API_PORT=$(free_port)
# Build the functions up front, so the first concurrent requests do not wait on the compiler.
HTTP_FUNCTIONS=(get-code send-code refresh retrieve set-referrer jwks logout logout-all list-sessions
  revoke-session delete-account register login client-profile update-client-profile list-referrals web docs)
# shellcheck disable=SC2046 # one -p per function
cargo build --features phone_auth/dev-mode $(printf -- '-p %s ' "${HTTP_FUNCTIONS[@]}") -p publish-events
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
# serve_functions PORT VAR=VALUE...: the functions under cargo lambda
# watch on PORT, with these variables on top of the environment; the issuer
# is the server's base URL, as `make dev` makes it. Logs in Lambda's JSON
# format, as deployed: scripts/check_logs.py reads them afterwards. Every
# request through cargo lambda watch comes from 127.0.0.1, so the per-address
# budgets and the service's daily one are raised beyond any test run's reach,
# as `make dev` raises them; a server that tries one of them names it again
# (the last value of a variable wins).
SERVER_LOGS=()
serve_functions() {
  local port=$1; shift
  SERVER_LOGS+=("$STATE/watch-$port.log")
  start_background "$STATE/watch-$port.log" env SMS_PROVIDER=log CORS_ALLOW_ORIGINS="$E2E_CORS_ORIGIN" \
    TOKEN_ISSUER="http://127.0.0.1:$port" AWS_LAMBDA_LOG_FORMAT=JSON \
    OTP_MAX_SENDS_PER_IP=1000000 OTP_MAX_CHECKS_PER_IP=1000000 SMS_DAILY_BUDGET=1000000 "$@" \
    cargo lambda watch --invoke-address 127.0.0.1 --invoke-port "$port" \
    --concurrency 8 --features phone_auth/dev-mode --ignore-changes --disable-cors
}
# Each limit is tried on a server of its own with a small one and tables of
# its own (the budgets' counters are per table), straight to DynamoDB Local:
# they use no DynamoDB action the shared server's run does not (the check
# below reads its record).
# The domain events' bus on moto; the users table's stream relayed to this
# server's publish-events (its requests go through the recorder too).
create_event_bus "$MOTO_ENDPOINT" "test-events-$$"
serve_functions "$API_PORT" AWS_ENDPOINT_URL_DYNAMODB="http://127.0.0.1:$RECORD_PORT"
start_stream_relay "$DYNAMODB_PORT" "$API_PORT"
limited_server() { # NAME VAR=VALUE...: adds the port it serves on to LIMITED_PORTS
  local port tables
  port=$(free_port)
  mapfile -t tables < <(python3 "$ROOT/scripts/create_tables.py" \
    --endpoint "http://127.0.0.1:$DYNAMODB_PORT" --prefix "test-$1-$(date +%s)-$$")
  serve_functions "$port" "${tables[@]}" "${@:2}"
  LIMITED_PORTS+=("$port")
}
LIMITED_PORTS=()
# seed-004's routes with PREVENT_USER_EXISTENCE_ERRORS=true, through the
# recorder too: login then creates users (its PutItem grant is seen used).
HIDDEN_ACCOUNTS_PORT=$(free_port)
serve_functions "$HIDDEN_ACCOUNTS_PORT" AWS_ENDPOINT_URL_DYNAMODB="http://127.0.0.1:$RECORD_PORT" \
  PREVENT_USER_EXISTENCE_ERRORS=true
limited_server ip OTP_MAX_SENDS_PER_IP=3 \
  TEST_PHONE_NUMBERS=+79990000000:1234 TEST_PHONE_NUMBERS_EXPIRE=2099-12-31
limited_server daily SMS_DAILY_BUDGET=2
limited_server limits SMS_DAILY_BUDGET_BY_REGION=KZ=2 OTP_MAX_FAILED_CHECKS=2
for port in "$API_PORT" "$HIDDEN_ACCOUNTS_PORT" "${LIMITED_PORTS[@]}"; do
  wait_for_http "http://127.0.0.1:$port/" 120 "$STATE/watch-$port.log"
done
E2E_BASE_URL="http://127.0.0.1:$API_PORT" \
  E2E_IP_LIMITED_URL="http://127.0.0.1:${LIMITED_PORTS[0]}" \
  E2E_DAILY_BUDGET_URL="http://127.0.0.1:${LIMITED_PORTS[1]}" \
  E2E_LIMITS_URL="http://127.0.0.1:${LIMITED_PORTS[2]}" \
  E2E_HIDDEN_ACCOUNTS_URL="http://127.0.0.1:$HIDDEN_ACCOUNTS_PORT" \
  cargo test -p phone_auth --all-features --test e2e -- --ignored
say "end-to-end: PyJWT verifies our tokens with the JWKS the service serves; the web page in headless Chromium; the docs pages load nothing from elsewhere; the README's example sessions are what the service answers"
E2E_BASE_URL="http://127.0.0.1:$API_PORT" python3 -m pytest -q -p no:cacheprovider "$ROOT/scripts/e2e"
say "end-to-end: the service against its own OpenAPI document (schemathesis: every check, every operation)"
# Real access tokens for the bearer operations, and in every other schema-valid
# case a live refresh token, another user's invite code or the caller's own
# session id where success needs one: scripts/schemathesis_hooks.py.
# Examples, the coverage phase (every documented status and boundary) and
# fuzzing; no stateful phase (the document declares no links). Every check
# is on (schemathesis's default; scripts/schemathesis.toml says the one
# exception). Any finding fails. The timeout: cargo lambda watch starts an
# instance on its first request, which can take seconds on a busy machine.
SCHEMATHESIS_HOOKS=scripts.schemathesis_hooks schemathesis --config-file "$ROOT/scripts/schemathesis.toml" \
  run "http://127.0.0.1:$API_PORT/openapi.json" --url "http://127.0.0.1:$API_PORT" \
  --phases examples,coverage,fuzzing --max-examples 50 --workers 2 --mode all \
  --request-timeout 60 --no-color
stop_background
say "logs: every function's success and error records, and no phone, code or token in any line the servers wrote"
python3 "$ROOT/scripts/check_logs.py" --functions "$(IFS=,; echo "${HTTP_FUNCTIONS[*]}")" "${SERVER_LOGS[@]}"

say "least privilege: each function's DynamoDB grants in template.yaml vs what it was recorded doing"
# Same features as the workspace test run above, so its test binary is reused.
cargo test --workspace --all-features --test routes -- --ignored

say "deploy checks: sam validate --lint, cfn-lint, actionlint, arm64 sam build"
"$ROOT/scripts/check_deploy.sh"
