"""scripts/check_logs.py finds what it is there to find, and only that."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from check_logs import scan  # noqa: E402

PHONE = "+79161234567"
CODE = "4821"
JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJl"
REFRESH = "AAECAwQFBgcICQoLDA0ODw.3." + "A" * 43


def dev_sms(phone=PHONE, code=CODE):
    return json.dumps(
        {"level": "INFO", "fields": {"message": "dev-mode SMS (not sent)", "phone": phone, "text": f"Code: {code}"}}
    )


def record(function="get-code", status=200, **extra):
    return json.dumps(
        {
            "level": "INFO",
            "message": "request",
            "function": function,
            "status": status,
            # Ids, times and latencies hold any digits, the code's too.
            "requestId": f"0f6b{CODE}-{CODE}-4bcd-9{CODE[1:]}-12{CODE}567890",
            "latency_ms": float(f"{CODE}.125"),
            "_aws": {"Timestamp": int(f"17640{CODE}0000000"[:13])},
            **extra,
        }
    )


def leaks_in(*lines):
    _, leaks, _ = scan(list(enumerate(lines)))
    return [secret for _, secret, _ in leaks]


def test_the_dev_sms_line_is_the_list_of_secrets_and_is_no_leak():
    secrets, leaks, _ = scan([(1, "cargo-lambda: " + dev_sms())])
    assert secrets == {PHONE, PHONE[1:], PHONE[2:], CODE}
    assert leaks == []


def test_ids_times_and_latencies_holding_the_codes_digits_are_no_leak():
    assert leaks_in(dev_sms(), record(), "INFO invoking function on 127.0.0.1:48210") == []


def test_a_phone_in_any_spelling_is_a_leak():
    for spelling in [PHONE, PHONE[1:], PHONE[2:]]:
        assert leaks_in(dev_sms(), record(note=f"sent to {spelling}")) == [spelling]


def test_the_code_is_a_leak_as_a_string_or_a_number():
    assert leaks_in(dev_sms(), json.dumps({"fields": {"code": CODE}})) == [CODE]
    assert leaks_in(dev_sms(), json.dumps({"fields": {"code": int(CODE)}})) == [CODE]
    assert leaks_in(dev_sms(), f"checking code {CODE} for a phone") == [CODE]


def test_tokens_are_leaks_by_their_shape():
    assert leaks_in(record(authorization=f"Bearer {JWT}")) == [JWT[: JWT.rindex(".") + 1]]
    assert leaks_in(record(body=json.dumps({"refresh": REFRESH}))) == [REFRESH]


def test_statuses_are_collected_per_function():
    _, _, statuses = scan(list(enumerate([record(), record(status=429), record("refresh", 401)])))
    assert statuses == {"get-code": {200, 429}, "refresh": {401}}
