"""The docs pages (Swagger UI at /docs/, ReDoc at /redoc/) load everything
from the service itself: every file a page, its stylesheets or its start-up
scripts name is fetched from the running service (scripts/test.sh sets
E2E_BASE_URL) and must answer 200 from the same origin, by a relative URL
(so the pages work under a stage prefix). Nothing from a CDN, no web fonts."""

import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from html.parser import HTMLParser

import pytest

BASE = os.environ.get("E2E_BASE_URL")
pytestmark = pytest.mark.skipif(not BASE, reason="needs the served functions (make test)")

PAGES = ["/docs/", "/redoc/"]


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def get(url, follow=True):
    opener = urllib.request.build_opener() if follow else urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(url, timeout=60) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


class References(HTMLParser):
    """Every URL an element of the page names."""

    def __init__(self):
        super().__init__()
        self.urls = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("src", "href", "srcset", "poster", "data") and value:
                self.urls.append(value)


def css_references(css):
    return re.findall(r"""url\(\s*['"]?([^'")]+)['"]?\s*\)""", css) + re.findall(
        r"""@import\s+['"]([^'"]+)['"]""", css
    )


def script_references(script):
    """URLs a start-up script names (string literals that look like files or URLs)."""
    return [
        s
        for s in re.findall(r"""["']([^"'\s]+)["']""", script)
        if "://" in s or s.startswith("/") or re.search(r"\.(json|js|css|woff2?|ttf|png|svg)$", s)
    ]


def check_local(page_url, reference, seen):
    """The reference is relative, same-origin, and answers 200; returns its URL."""
    if reference.startswith("data:"):
        return None  # inline, loads nothing
    assert "://" not in reference and not reference.startswith("//"), f"{page_url}: external {reference}"
    assert not reference.startswith("/"), f"{page_url}: {reference} is absolute, wrong under a stage prefix"
    url = urllib.parse.urljoin(page_url, reference)
    assert urllib.parse.urlsplit(url).netloc == urllib.parse.urlsplit(BASE).netloc, url
    if url not in seen:
        status, headers, body = get(url)
        assert status == 200, f"{page_url}: {reference} answered {status}"
        seen[url] = (headers, body)
    return url


@pytest.mark.parametrize("path", PAGES)
def test_every_file_a_page_loads_is_served_here(path):
    page_url = BASE + path
    status, headers, body = get(page_url)
    assert status == 200
    assert headers["Content-Type"].startswith("text/html")
    # The browser itself refuses anything from elsewhere, whatever the
    # bundles hold (ReDoc's sidebar names a logo on Redocly's CDN: blocked,
    # it is hidden): every directive allows this origin, inline data and
    # the page's own workers at most, and scripts only this origin's files.
    csp = dict(d.strip().split(None, 1) for d in headers["Content-Security-Policy"].split(";"))
    assert csp["default-src"] == "'none'", csp
    for directive, sources in csp.items():
        assert set(sources.split()) <= {"'self'", "'none'", "'unsafe-inline'", "data:", "blob:"}, directive
    assert csp["script-src"] == "'self'", "no inline or external scripts"
    parser = References()
    parser.feed(body.decode())
    assert parser.urls, "the page names its files"
    seen = {}
    for reference in parser.urls:
        url = check_local(page_url, reference, seen)
        if url is None:
            continue
        file_headers, file_body = seen[url]
        kind = file_headers["Content-Type"]
        if kind.startswith("text/css"):
            for inner in css_references(file_body.decode()):
                check_local(url, inner, seen)
        if kind.startswith("text/javascript") and len(file_body) < 10_000:
            # A start-up script: what it loads is resolved against the page.
            for inner in script_references(file_body.decode()):
                check_local(page_url, inner, seen)
    spec = [u for u in seen if u.endswith("/openapi.json")]
    assert spec, "the page loads the OpenAPI document"
    assert json.loads(seen[spec[0]][1])["openapi"].startswith("3.1")


@pytest.mark.parametrize("path", PAGES)
def test_no_file_of_a_page_names_a_font_service_or_a_script_cdn(path):
    page_url = BASE + path
    _, _, body = get(page_url)
    parser = References()
    parser.feed(body.decode())
    for reference in parser.urls:
        if reference.startswith("data:"):
            continue
        _, _, content = get(urllib.parse.urljoin(page_url, reference))
        text = content.decode(errors="replace")
        for host in ["fonts.googleapis.com", "fonts.gstatic.com", "cdn.jsdelivr.net", "unpkg.com"]:
            assert host not in text, f"{reference} names {host}"


def test_slashless_and_old_addresses_lead_to_the_pages():
    for path, location, target in [
        ("/docs", "docs/", "/docs/"),
        ("/redoc", "redoc/", "/redoc/"),
        ("/swagger/", "../docs/", "/docs/"),
        ("/swagger", "docs/", "/docs/"),
    ]:
        status, headers, _ = get(BASE + path, follow=False)
        assert (status, headers["Location"]) == (301, location), path
        assert urllib.parse.urljoin(BASE + path, location) == BASE + target
        assert get(BASE + target)[0] == 200
