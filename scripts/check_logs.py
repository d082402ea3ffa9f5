#!/usr/bin/env python3
"""No phone number, code or token in the functions' logs, and every function's
success and error paths seen: run by `make test` over the output of the
end-to-end servers (cargo lambda watch, Lambda's JSON log format).

The secrets come from the logs themselves: the dev-mode log sender, which
prints each SMS instead of sending it (on purpose, and only with the
dev-mode feature), names every phone that got a code and the code. Every
other line must contain none of them, in any spelling, and no access or
refresh token (recognised by their shape).

    check_logs.py --functions get-code,send-code,... LOG...
"""

import argparse
import json
import re
import sys
from collections import defaultdict

DEV_SMS = "dev-mode SMS (not sent)"
# A secret stands alone: not inside a longer word, number, id or decimal
# (a UUID's group, a timestamp, a latency can hold any four digits).
EDGE = r"A-Za-z0-9_.\-"
# An access token (a JWT: its header and claims are base64url JSON), and a
# refresh token (session id . generation . 43 characters of MAC).
TOKEN_SHAPES = [
    re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\."),
    re.compile(r"[A-Za-z0-9_-]{22}\.[0-9]+\.[A-Za-z0-9_-]{43}(?![A-Za-z0-9_-])"),
]


def json_object(line):
    """The JSON object a line holds (cargo lambda may put text before it)."""
    start = line.find("{")
    if start < 0:
        return None
    try:
        value = json.loads(line[start:])
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def spellings(phone):
    """+79161234567, 79161234567 and (for +7) the national 9161234567."""
    digits = phone.lstrip("+")
    forms = {phone, digits}
    if phone.startswith("+7"):
        forms.add(digits[1:])
    return forms


def scan(lines):
    """(secrets found, leaks, statuses seen per function) for the log lines."""
    secrets = set()
    others = []
    statuses = defaultdict(set)
    for number, line in lines:
        record = json_object(line)
        fields = (record or {}).get("fields") or {}
        if fields.get("message") == DEV_SMS:
            secrets |= spellings(fields["phone"])
            secrets |= set(re.findall(r"(?<![0-9])[0-9]{4,8}(?![0-9])", fields["text"]))
            continue
        if record and record.get("message") == "request" and "function" in record:
            statuses[record["function"]].add(int(record["status"]))
        others.append((number, line))
    patterns = [re.compile(rf"(?<![{EDGE}]){re.escape(s)}(?![{EDGE}])") for s in sorted(secrets)]
    leaks = []
    for number, line in others:
        for pattern in patterns + TOKEN_SHAPES:
            match = pattern.search(line)
            if match:
                leaks.append((number, match.group(0), line.rstrip()))
                break
    return secrets, leaks, statuses


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--functions", required=True, help="comma-separated: each must answer a 2xx/3xx and a 4xx/5xx")
    parser.add_argument("logs", nargs="+")
    args = parser.parse_args()
    lines = []
    for path in args.logs:
        with open(path, encoding="utf-8", errors="replace") as log:
            lines += [(f"{path}:{i}", line) for i, line in enumerate(log, 1)]
    secrets, leaks, statuses = scan(lines)
    failures = []
    if not secrets:
        failures.append(f"no {DEV_SMS!r} line: nothing to look for (is SMS_PROVIDER=log and the log format JSON?)")
    for where, secret, line in leaks[:20]:
        failures.append(f"{where}: {secret!r} in {line[:300]}")
    for function in args.functions.split(","):
        seen = statuses.get(function, set())
        if not any(s < 400 for s in seen) or not any(s >= 400 for s in seen):
            failures.append(f"{function}: no success and error records both (statuses seen: {sorted(seen)})")
    for failure in failures:
        print(f"check_logs: {failure}", file=sys.stderr)
    records = sum(len(s) for s in statuses.values())
    print(
        f"check_logs: {len(lines)} lines, {len(secrets)} phone spellings and codes looked for, "
        f"{len(statuses)} functions with records ({records} distinct statuses), {len(leaks)} leaks"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
