"""The README's example sessions, run against the served functions, so what a
newcomer copies first cannot drift from what the service answers.

Each fenced block of `$ curl ...` lines under a heading below is replayed in
order. What cannot be replayed literally is translated, and the translation
is learned from the answers themselves:

- each phone of the block becomes a fresh number of the +7 900 block, in the
  same spelling (`8 (900) 123-45-67` stays national);
- a value the README shows in an answer (a code, a token, an invite code, a
  session id) becomes the live one wherever it appears later, in a request
  or in an answer (only such made-up values: text, phones and error codes
  must be the README's);
- an invite code the README enters without having shown it is another new
  user's.

Then every answer must have the README's shape: the same keys at every level,
the same JSON types, the same strings once translated (error messages, the
SMS text, the referrer's code in set_referrer's message), the same token
shapes (a JWT with the same header, a refresh token of the same generation),
and the status the README prints (or a 2xx where it prints none).
"""

import json
import os
import random
import re
import shlex
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from test_tokens import sign_in

BASE = os.environ.get("E2E_BASE_URL")
pytestmark = pytest.mark.skipif(not BASE, reason="needs the served functions (make test)")
README = Path(__file__).resolve().parents[2] / "README.md"
LOCAL = "localhost:9000"
# Fields whose README value must be the service's, once translated.
EXACT = {"code", "message", "detail", "phone", "sms_text"}


def blocks_under(heading):
    """The lines of the first fenced block after `heading` that holds commands."""
    text = README.read_text()
    after = text[text.index(heading) :]
    for block in re.findall(r"```[a-z]*\n(.*?)```", after, re.S):
        if "$ curl" in block:
            return [line for line in block.splitlines() if line.strip()]
    raise AssertionError(f"no example session under {heading!r}")


def steps(lines):
    """(command, documented output or None) pairs."""
    out = []
    for line in lines:
        if line.startswith("$ "):
            out.append([line[2:], None])
        else:
            out[-1][1] = re.sub(r"\s+#.*$", "", line).strip()
    return out


def parse_curl(command):
    args = shlex.split(command)
    assert args[0] == "curl", command
    method, headers, body, url, shows_status = "GET", {}, None, None, False
    i = 1
    while i < len(args):
        arg = args[i]
        if arg.startswith("-X"):
            method = arg[2:]
        elif arg == "-H":
            name, value = args[i + 1].split(":", 1)
            headers[name.strip()] = value.strip()
            i += 1
        elif arg == "-d":
            body = args[i + 1]
            method = "POST" if method == "GET" else method
            i += 1
        elif arg == "-w":
            shows_status = True
            i += 1
        elif arg != "-s":
            url = arg
        i += 1
    return method, url.split(LOCAL, 1)[1], headers, body, shows_status


def parse_output(text):
    if text is None:
        return None, None
    if text.startswith("{"):
        document, end = json.JSONDecoder().raw_decode(text)
        rest = text[end:].strip()
    else:
        document, rest = None, text
    return document, int(rest) if rest else None


class Session:
    """One block's replay: the translation learned so far, and its variables."""

    def __init__(self, lines):
        self.literals = {}
        self.variables = {}
        self.phones = {}
        for e164 in sorted(set(re.findall(r"\+7(\d{10})", "\n".join(lines)))):
            self.phones[e164] = "900" + "".join(random.choice("0123456789") for _ in range(7))

    def translate(self, text):
        def respell(match):
            spelled = match.group(0)
            digits = re.sub(r"\D", "", spelled)
            for documented, live in self.phones.items():
                if digits.endswith(documented):
                    chars = list(spelled)
                    where = [i for i, c in enumerate(spelled) if c.isdigit()][-10:]
                    for position, digit in zip(where, live):
                        chars[position] = digit
                    return "".join(chars)
            return spelled

        text = re.sub(r"[+\d][\d() -]{8,}\d", respell, text)
        for documented in sorted(self.literals, key=len, reverse=True):
            text = text.replace(documented, self.literals[documented])
        for name, value in self.variables.items():
            text = text.replace(f"${name}", value)
        return text

    def learn(self, documented, live, where):
        """A string leaf of an answer: equal once translated, or learned. A
        shortened token (`...`) stands for whichever token that field holds
        now: its shape is checked and the live token taken."""
        if documented.endswith("..."):
            shown = documented[:-3]
            if shown.startswith("eyJ"):  # a JWT: the same header
                assert live.startswith(shown), f"{where}: {live[:40]}... is not {shown}..."
            else:  # a refresh token <sid>.<generation>.<mac>: the same generation
                sid, generation = shown.split(".")[:2]
                assert live.split(".")[1] == generation, f"{where}: {live} is not of generation {generation}"
                self.literals[sid] = live.split(".")[0]
        elif self.translate(documented) == live:
            return
        else:
            # Only a value the service makes up (an id, a code, a token, an
            # address) may differ; text, phones and error codes may not.
            made_up = where.rsplit(".", 1)[-1] not in EXACT and not re.search(r"\s", documented)
            assert made_up and documented not in self.literals, f"{where}: README {documented!r}, service {live!r}"
        self.literals[documented] = live
        if where.endswith(("access", "access_token")):
            self.variables.setdefault("ACCESS", live)

    def compare(self, documented, live, where="answer"):
        assert type(live) is type(documented), f"{where}: README {documented!r}, service {live!r}"
        if isinstance(documented, dict):
            assert live.keys() == documented.keys(), f"{where}: keys {sorted(live)} != README's {sorted(documented)}"
            for key in documented:
                self.compare(documented[key], live[key], f"{where}.{key}")
        elif isinstance(documented, list):
            if documented and live:
                self.compare(documented[0], live[0], f"{where}[0]")
        elif isinstance(documented, str):
            self.learn(documented, live, where)
        elif documented is None or isinstance(documented, bool):
            assert live == documented, f"{where}: README {documented!r}, service {live!r}"

    def someone_elses_invite_code(self):
        _, tokens = sign_in()
        return call("GET", "/users/retrieve/", None, {"Authorization": f"Bearer {tokens['access']}"})[1]["invite_code"]

    def run(self, command, output):
        if re.match(r"[A-Z_]+=", command):
            name, value = command.split("=", 1)
            self.variables[name] = self.translate(value)
            return
        method, path, headers, body, shows_status = parse_curl(command)
        if body is not None:
            for key, value in json.loads(body).items():
                if key in ("invite_code", "invitation_code") and value not in self.literals:
                    self.literals[value] = self.someone_elses_invite_code()
            body = self.translate(body)
        headers = {name: self.translate(value) for name, value in headers.items()}
        status, answer = call(method, self.translate(path), body, headers)
        documented, documented_status = parse_output(output)
        where = f"{method} {path}"
        if shows_status:
            assert status == documented_status, f"{where}: status {status}, README {documented_status}: {answer}"
        else:
            assert 200 <= status < 300, f"{where}: status {status}: {answer}"
        if documented is None:
            assert answer is None, f"{where}: README shows no body, service {answer}"
        else:
            self.compare(documented, answer, where)


def call(method, path, body=None, headers=None):
    """As curl sends it: `-d` is form-encoded by default, and says so."""
    request = urllib.request.Request(BASE + path, method=method, headers={"User-Agent": "curl/8.5.0"})
    if body is not None:
        request.data = body.encode()
        request.add_header("Content-Type", "application/x-www-form-urlencoded")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as refused:
        status, raw = refused.code, refused.read()
    return status, json.loads(raw) if raw else None


@pytest.mark.parametrize(
    "heading",
    [
        "## Example session (against `make dev`)",
        "### seed-004's routes (Connect Hub clients)",
    ],
)
def test_the_readmes_example_session_is_what_the_service_answers(heading):
    lines = blocks_under(heading)
    session = Session(lines)
    for command, output in steps(lines):
        session.run(command, output)
