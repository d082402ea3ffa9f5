#!/usr/bin/env bash
# make dev: DynamoDB Local + tables from template.yaml + every function served
# by `cargo lambda watch` at http://127.0.0.1:9000 on the API Gateway paths.
# SMS are not sent: the log-only sender prints them and get_code returns the
# code as "sms_code" (dev-mode build only). Ctrl-C stops everything.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

API_PORT=${API_PORT:-9000}
DYNAMODB_PORT=${DYNAMODB_PORT:-8000}
CONCURRENCY=${CONCURRENCY:-8}

"$ROOT/scripts/setup.sh"
trap stop_background EXIT INT TERM

say "DynamoDB Local on 127.0.0.1:$DYNAMODB_PORT (in memory)"
start_dynamodb "$DYNAMODB_PORT"
export_local_aws "$DYNAMODB_PORT"
create_tables "$DYNAMODB_PORT" dev
ensure_local_secrets
export SMS_PROVIDER=log RUST_LOG=${RUST_LOG:-info}

say "API on http://127.0.0.1:$API_PORT ($CONCURRENCY instances per function). Try:"
echo "  curl -s -XPOST localhost:$API_PORT/users/auth/get_code/ -d '{\"phone\": \"+79001234567\"}'" >&2
cd "$ROOT"
# --disable-cors: cargo lambda's own permissive CORS layer would answer every
# preflight; the functions apply CORS_ALLOW_ORIGINS themselves, as deployed.
cargo lambda watch --invoke-address 127.0.0.1 --invoke-port "$API_PORT" \
  --concurrency "$CONCURRENCY" --features phone_auth/dev-mode --disable-cors
