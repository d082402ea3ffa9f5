#!/usr/bin/env bash
# Prints the --env-vars JSON for `sam local start-api` (see local/docker-compose.yml):
# tables created with prefix "sam", peers on the compose network, and the
# locally generated secrets from .local/secrets (never committed).
# "Parameters" applies to every function, yet each container gets only the
# variables template.yaml declares for it, so a key reaches only the functions
# that use it (scripts/tests/test_sam_local.py computes what each one gets).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
ensure_local_secrets
python3 - <<'PY'
import json, os
print(json.dumps({"Parameters": {
    "USERS_TABLE": "sam-UsersTable",
    "OTPS_TABLE": "sam-OtpsTable",
    "SESSIONS_TABLE": "sam-SessionsTable",
    "AWS_ENDPOINT_URL_DYNAMODB": "http://dynamodb:8000",
    "AWS_ENDPOINT_URL_SNS": "http://moto:5000",
    # publish-events is invoked by a stream, which sam local does not poll:
    # `sam local invoke PublishEventsFunction -e events/publish-events/...`.
    "AWS_ENDPOINT_URL_EVENTBRIDGE": "http://moto:5000",
    "EVENT_BUS_NAME": "sam-events",
    "SMS_PROVIDER": "sns",
    # The tokens' issuer: sam local start-api's default address, where the
    # discovery document is then found as it is deployed (the jwks function
    # declares the variable empty so that this reaches it too).
    "TOKEN_ISSUER": "http://127.0.0.1:3000",
    "TOKEN_PRIVATE_KEY": os.environ["TOKEN_PRIVATE_KEY"],
    "TOKEN_PUBLIC_KEY": os.environ["TOKEN_PUBLIC_KEY"],
    "OTP_HMAC_KEY": os.environ["OTP_HMAC_KEY"],
    "REFRESH_TOKEN_KEY": os.environ["REFRESH_TOKEN_KEY"],
    "CURSOR_KEY": os.environ["CURSOR_KEY"],
}}, indent=2))
PY
