#!/usr/bin/env bash
# make dev: DynamoDB Local + tables from template.yaml + every function served
# by `cargo lambda watch` at http://127.0.0.1:9000 on the API Gateway paths.
# SMS are not sent: the log-only sender prints them and get_code returns the
# code as "sms_code" (dev-mode build only). The users table's stream is relayed
# to the publish-events function, whose domain events go to moto's EventBridge
# and are printed here as they arrive. Ctrl-C stops everything.
#
# Every variable of the README's configuration table can be set in the
# environment (`OTP_MAX_FAILED_CHECKS=3 make dev`): cargo lambda watch hands
# the environment to the functions. This script sets only the tables, the
# local secrets, SMS_PROVIDER=log and the AWS endpoints itself, raises three
# budgets a scripted run from 127.0.0.1 would hit (every request through
# cargo lambda watch has that source address), and makes the local base URL
# the tokens' issuer (TOKEN_ISSUER), so the discovery document is at
# <issuer>/.well-known/openid-configuration as it is deployed.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

API_PORT=${API_PORT:-9000}
DYNAMODB_PORT=${DYNAMODB_PORT:-8000}
MOTO_PORT=${MOTO_PORT:-8001}
CONCURRENCY=${CONCURRENCY:-8}

"$ROOT/scripts/setup.sh"
trap stop_background EXIT INT TERM

say "DynamoDB Local on 127.0.0.1:$DYNAMODB_PORT (in memory)"
start_dynamodb "$DYNAMODB_PORT"
export_local_aws "$DYNAMODB_PORT"
create_tables "$DYNAMODB_PORT" dev
say "moto on 127.0.0.1:$MOTO_PORT: the domain events' bus (EventBridge stand-in)"
start_moto "$MOTO_PORT"
create_event_bus "http://127.0.0.1:$MOTO_PORT" dev-events dev-events
ensure_local_secrets
export SMS_PROVIDER=log RUST_LOG=${RUST_LOG:-info}
export OTP_MAX_SENDS_PER_IP=${OTP_MAX_SENDS_PER_IP:-1000000}
export OTP_MAX_CHECKS_PER_IP=${OTP_MAX_CHECKS_PER_IP:-1000000}
export SMS_DAILY_BUDGET=${SMS_DAILY_BUDGET:-1000000}
export TOKEN_ISSUER=${TOKEN_ISSUER:-http://127.0.0.1:$API_PORT}

say "configuration from your environment (and the three raised budgets, the local issuer):"
# The variables config.rs reads (as shared/tests/routes.rs finds them); secrets
# and what this script sets are not shown, test numbers only by count.
for name in $(python3 -c 'import re, sys; src = re.sub(r"\s", "", open(sys.argv[1]).read()); print(*sorted(set(re.findall(r"self\.(?:required|get|number|positive|multiline)\(\"([A-Z_]+)\"", src))))' \
  "$ROOT/shared/src/config.rs"); do
  value=${!name:-}
  if [ -z "$value" ]; then continue; fi
  case $name in
    TOKEN_PRIVATE_KEY | TOKEN_PUBLIC_KEY | OTP_HMAC_KEY | REFRESH_TOKEN_KEY | CURSOR_KEY | SMSAERO_API_KEY | USERS_TABLE | OTPS_TABLE | SESSIONS_TABLE | SMS_PROVIDER | EVENT_BUS_NAME) ;;
    TEST_PHONE_NUMBERS) echo "  $name: $(tr ',' '\n' <<<"$value" | wc -l) numbers" >&2 ;;
    *) echo "  $name=$value" >&2 ;;
  esac
done

say "API on http://127.0.0.1:$API_PORT ($CONCURRENCY instances per function). Try:"
echo "  curl -s -XPOST localhost:$API_PORT/users/auth/get_code/ -d '{\"phone\": \"+79001234567\"}'" >&2
echo "  or open http://127.0.0.1:$API_PORT/ in a browser: the web page (codes in its dev-mode banner)" >&2
say "API docs: http://127.0.0.1:$API_PORT/docs/ (Swagger UI), /redoc/ (ReDoc), /openapi.json"
cd "$ROOT"
say "domain events (user.created, referral.created, user.deleted) are printed below as they arrive"
set -m
python3 "$ROOT/scripts/stream_relay.py" --dynamodb "http://127.0.0.1:$DYNAMODB_PORT" --table "$USERS_TABLE" \
  --invoke "http://127.0.0.1:$API_PORT" --moto "http://127.0.0.1:$MOTO_PORT" --events-queue dev-events &
BACKGROUND_PIDS+=($!)
set +m
# --disable-cors: cargo lambda's own permissive CORS layer would answer every
# preflight; the functions apply CORS_ALLOW_ORIGINS themselves, as deployed.
cargo lambda watch --invoke-address 127.0.0.1 --invoke-port "$API_PORT" \
  --concurrency "$CONCURRENCY" --features phone_auth/dev-mode --disable-cors
