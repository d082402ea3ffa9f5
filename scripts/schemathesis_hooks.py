"""schemathesis hooks for make test (scripts/test.sh): real users behind the
operations whose success needs one, and no request bodies that are not UTF-8.

Each test case of an operation that names the bearer scheme gets the access
token of a user signed up for it alone, through the API itself (get_code,
whose dev-mode answer carries the code, then send_code): no case sees what
another did to its user (set a referrer, deleted the account), and the
service checks the token as it checks any client's.

Some operations succeed only with a value no schema can generate: a live
refresh token, another user's invite code, one of the caller's own session
ids. Random strings there only ever reach the 401 or 404 path, so the
success answers would never be checked against the document. Every other
schema-valid (positive) case of those operations gets such a value instead
(`before_call` below), so both the success and the refusal answers are
checked; negative cases are sent as generated.
"""

import collections
import itertools
import secrets

import requests
import schemathesis

TIMEOUT = 10


def _needs_token(ctx):
    definition = ctx.operation.definition.raw
    return bool(definition.get("security"))


def _random_phone():
    # The +7 900 block is Russian mobile numbers, valid in every build's
    # phone rules (PHONE_ALLOWED_REGIONS is unset in make test's servers).
    return "+7900" + "".join(secrets.choice("0123456789") for _ in range(7))


def _sign_up(base):
    """A new user, signed in: send_code's answer (`access`, `refresh`)."""
    last = None
    for _ in range(5):
        phone = _random_phone()
        sent = requests.post(f"{base}/users/auth/get_code/", json={"phone": phone}, timeout=TIMEOUT)
        if sent.status_code != 200:
            last = f"{phone}: {sent.status_code} {sent.text}"
            continue  # a number of an unassigned range: draw another
        code = sent.json()["sms_code"]
        signed_in = requests.post(
            f"{base}/users/auth/send_code/", json={"phone": phone, "password": code}, timeout=TIMEOUT
        )
        signed_in.raise_for_status()
        return signed_in.json()
    raise RuntimeError(f"no phone of the +7 900 block could sign in; last: {last}")


def _base(case):
    return case.operation.base_url.rstrip("/")


@schemathesis.auth(refresh_interval=None).apply_to(_needs_token)
class FreshUser:
    def get(self, case, ctx):
        return _sign_up(_base(case))["access"]

    def set(self, case, data, ctx):
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {data}"


def _refresh_token(case):
    return _sign_up(_base(case))["refresh"]


def _someone_elses_invite_code(case):
    base = _base(case)
    access = _sign_up(base)["access"]
    profile = requests.get(
        f"{base}/users/retrieve/", headers={"Authorization": f"Bearer {access}"}, timeout=TIMEOUT
    )
    profile.raise_for_status()
    return profile.json()["invite_code"]


def _own_session_id(case):
    listed = requests.get(
        f"{_base(case)}/users/sessions/",
        headers={"Authorization": case.headers["Authorization"]},
        timeout=TIMEOUT,
    )
    listed.raise_for_status()
    return listed.json()["sessions"][0]["id"]


# (method, path) -> {body field: where its real value comes from}; the
# session id is a path parameter.
REAL_BODY_VALUES = {
    ("POST", "/users/auth/refresh/"): {"refresh": _refresh_token},
    ("POST", "/users/auth/logout/"): {"refresh": _refresh_token},
    ("POST", "/users/set_referrer/"): {"invite_code": _someone_elses_invite_code},
    ("PATCH", "/api/clients/profile/"): {
        "invitation_code": _someone_elses_invite_code,
        "someone_invitation_code": _someone_elses_invite_code,
    },
}
REVOKE_SESSION = ("DELETE", "/users/sessions/{id}/")
_positive_cases = collections.defaultdict(itertools.count)


@schemathesis.hook
def before_call(ctx, case, kwargs):
    meta = case.meta
    if meta is None or meta.generation.mode.is_negative:
        return
    operation = (case.operation.method.upper(), case.operation.path)
    if operation != REVOKE_SESSION and operation not in REAL_BODY_VALUES:
        return
    if next(_positive_cases[operation]) % 2:
        return  # sent as generated: the refusal's answer is checked too
    if operation == REVOKE_SESSION:
        case.path_parameters = {**(case.path_parameters or {}), "id": _own_session_id(case)}
        return
    body = case.body
    for field, real_value in REAL_BODY_VALUES.get(operation, {}).items():
        if isinstance(body, dict) and isinstance(body.get(field), str):
            body[field] = real_value(case)


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
