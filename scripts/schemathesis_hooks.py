"""schemathesis hooks for make test (scripts/test.sh): real access tokens,
and no request bodies that are not UTF-8.

Each test case of an operation that names the bearer scheme gets the access
token of a user signed up for it alone, through the API itself (get_code,
whose dev-mode answer carries the code, then send_code): no case sees what
another did to its user (set a referrer, deleted the account), and the
service checks the token as it checks any client's.
"""

import secrets

import requests
import schemathesis


def _needs_token(ctx):
    definition = ctx.operation.definition.raw
    return bool(definition.get("security"))


def _random_phone():
    # The +7 900 block is Russian mobile numbers, valid in every build's
    # phone rules (PHONE_ALLOWED_REGIONS is unset in make test's servers).
    return "+7900" + "".join(secrets.choice("0123456789") for _ in range(7))


@schemathesis.auth(refresh_interval=None).apply_to(_needs_token)
class FreshUser:
    def get(self, case, ctx):
        base = case.operation.base_url.rstrip("/")
        last = None
        for _ in range(5):
            phone = _random_phone()
            sent = requests.post(f"{base}/users/auth/get_code/", json={"phone": phone}, timeout=10)
            if sent.status_code != 200:
                last = f"{phone}: {sent.status_code} {sent.text}"
                continue  # a number of an unassigned range: draw another
            code = sent.json()["sms_code"]
            signed_in = requests.post(
                f"{base}/users/auth/send_code/", json={"phone": phone, "password": code}, timeout=10
            )
            signed_in.raise_for_status()
            return signed_in.json()["access"]
        raise RuntimeError(f"no phone of the +7 900 block could sign in; last: {last}")

    def set(self, case, data, ctx):
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {data}"


@schemathesis.hook
def filter_case(ctx, case):
    """A body that is not UTF-8 never reaches a function under `cargo lambda
    watch`: its emulation of API Gateway answers a 500 of its own before any
    function runs. API Gateway passes such a body base64-encoded, and the
    function answers 400 invalid_json (events/get-code/400-invalid_json-not-utf8-body.json,
    run by shared/tests/events.rs)."""
    body = case.body
    if isinstance(body, (bytes, bytearray)):
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            return False
    return True
