#!/usr/bin/env bash
# make bench: builds the release functions and an empty lambda_http baseline
# (x86_64 to run here, arm64 for sizes), runs them under the loopback Lambda
# Runtime API of bench/harness against DynamoDB Local, prints a table and
# writes target/bench/summary.json. Not a test: it asserts no timing.
#
# Knobs: BENCH_COLD_RUNS (default 20 rounds), BENCH_WARM_INVOCATIONS (1000),
# BENCH_ARM64=0 to skip the arm64 build (sizes then come from x86_64),
# BENCH_CPU_PERIOD_US (20000): the period of the 128 MB round's CPU share
# (a cgroup, so that round needs root; without it the bench says so).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

OUT="$ROOT/target/bench"
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
LAMBDA_DIR="$OUT/lambda"
FUNCTIONS=(get-code send-code refresh retrieve set-referrer jwks web docs logout logout-all list-sessions revoke-session delete-account register login client-profile update-client-profile list-referrals publish-events baseline)
PACKAGES=(-p get-code -p send-code -p refresh -p retrieve -p set-referrer -p jwks -p web -p docs -p logout -p logout-all -p list-sessions -p revoke-session -p delete-account -p register -p login -p client-profile -p update-client-profile -p list-referrals -p publish-events)

# Every function the template deploys is measured (the baseline is ours only).
missing=$(python3 - "$ROOT/template.yaml" "${FUNCTIONS[@]}" <<'EOF'
import re, sys, pathlib
deployed = set(re.findall(r"^\s+Binary:\s*(\S+)", pathlib.Path(sys.argv[1]).read_text(), re.M))
listed = set(sys.argv[2:]) - {"baseline"}
print(" ".join(sorted(deployed ^ listed)))
EOF
)
[ -z "$missing" ] || die "scripts/bench.sh's FUNCTIONS and template.yaml's functions differ: $missing"

"$ROOT/scripts/setup.sh"
trap stop_background EXIT INT TERM
mkdir -p "$OUT"

now() { date +%s.%N; }
elapsed() { python3 -c "import sys; print(round(float(sys.argv[2]) - float(sys.argv[1]), 1))" "$1" "$(now)"; }

# Zips each bootstrap the way a Lambda deployment package is made (deflate, mode 755).
zip_bootstraps() { # DIR
  python3 - "$1" "${FUNCTIONS[@]}" <<'EOF'
import sys, zipfile, pathlib
root = pathlib.Path(sys.argv[1])
for name in sys.argv[2:]:
    bootstrap = root / name / "bootstrap"
    info = zipfile.ZipInfo("bootstrap", date_time=(1980, 1, 1, 0, 0, 0))
    info.external_attr = 0o100755 << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(root / name / "bootstrap.zip", "w") as z:
        z.writestr(info, bootstrap.read_bytes(), compresslevel=9)
EOF
}

# build ARCH: cargo lambda's release build (its defaults + our [profile.release]).
build() {
  local arch=$1 flag start
  [ "$arch" = arm64 ] && flag=--arm64 || flag=--x86-64
  say "release build, $arch (cargo lambda build --release $flag)"
  start=$(now)
  cargo lambda build --release "$flag" "${PACKAGES[@]}" --lambda-dir "$LAMBDA_DIR/$arch"
  # On its own: built with the functions, its lambda_http features (the
  # default subscriber) would be unified into theirs.
  cargo lambda build --release "$flag" -p bench-baseline --lambda-dir "$LAMBDA_DIR/$arch"
  BUILD_SECONDS[$arch]=$(elapsed "$start")
  zip_bootstraps "$LAMBDA_DIR/$arch"
}

declare -A BUILD_SECONDS=()
build x86_64
ARM64_DIR=""
if [ "${BENCH_ARM64:-1}" = 0 ]; then
  say "BENCH_ARM64=0: skipping the arm64 build; zip sizes below are x86_64"
elif rustup target list --installed 2>/dev/null | grep -qx aarch64-unknown-linux-gnu; then
  build arm64
  ARM64_DIR="$LAMBDA_DIR/arm64"
else
  printf '\033[31m%s\033[0m\n' \
    "WARNING: the aarch64-unknown-linux-gnu target is not installed (rustup target add aarch64-unknown-linux-gnu)." \
    "WARNING: the deployed architecture is arm64, but the sizes below are x86_64 only." >&2
fi

say "bench harness (profile bench-harness)"
cargo build --profile bench-harness -p bench

PORT=$(free_port)
say "DynamoDB Local on :$PORT"
start_dynamodb "$PORT"
export_local_aws "$PORT"
create_tables "$PORT" "bench-$(date +%s)"
ensure_local_secrets

# DynamoDB over TLS too (a local CA and a Python TLS proxy), for the first-connection cost.
TLS_DIR="$STATE/bench-tls"
mkdir -p "$TLS_DIR"
if [ ! -f "$TLS_DIR/server.pem" ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 -subj /CN=bench-ca \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign \
    -keyout "$TLS_DIR/ca.key" -out "$TLS_DIR/ca.pem" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=127.0.0.1 \
    -keyout "$TLS_DIR/server.key" -out "$TLS_DIR/server.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >"$TLS_DIR/ext"
  openssl x509 -req -in "$TLS_DIR/server.csr" -CA "$TLS_DIR/ca.pem" -CAkey "$TLS_DIR/ca.key" \
    -CAcreateserial -days 3650 -extfile "$TLS_DIR/ext" -out "$TLS_DIR/server.pem" 2>/dev/null
fi
# start_tls_proxy LISTEN_PORT UPSTREAM_PORT: TLS on LISTEN_PORT in front of
# UPSTREAM_PORT, once it listens (the upstream may start later: each
# connection is piped when it comes). A broken certificate would fail the
# TLS round's first invocation, which must answer 200.
start_tls_proxy() {
  local log="$STATE/bench-tls-$1.log" deadline=$((SECONDS + 20))
  start_background "$log" python3 "$ROOT/scripts/bench_tls_proxy.py" \
    "$1" "$2" "$TLS_DIR/server.pem" "$TLS_DIR/server.key"
  until (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; do
    ((SECONDS < deadline)) || die "the TLS proxy on :$1 did not listen (log: $log)"
    sleep 0.2
  done
}
TLS_PORT=$(free_port)
start_tls_proxy "$TLS_PORT" "$PORT"
# The SNS stub too (the harness starts it on SNS_PORT): the SMS of get-code,
# register and login goes over TLS in that round, as it does to SNS.
SNS_PORT=$(free_port)
SNS_TLS_PORT=$(free_port)
start_tls_proxy "$SNS_TLS_PORT" "$SNS_PORT"
export BENCH_DYNAMODB_TLS="https://127.0.0.1:$TLS_PORT" BENCH_SNS_TLS="https://127.0.0.1:$SNS_TLS_PORT"
export BENCH_SNS_PORT="$SNS_PORT" BENCH_TLS_CA="$TLS_DIR/ca.pem"

BENCH_BUILD=$(python3 - "$ROOT/Cargo.toml" <<EOF
import json, re, sys, pathlib
text = pathlib.Path(sys.argv[1]).read_text()
section = re.search(r"^\[profile\.release\]\n(.*?)(?=^\[|\Z)", text, re.S | re.M)
profile = {}
for line in (section.group(1) if section else "").splitlines():
    line = line.split("#")[0].strip()
    if "=" in line:
        key, value = (part.strip() for part in line.split("=", 1))
        profile[key] = value.strip('"')
print(json.dumps({
    "seconds": {"x86_64": ${BUILD_SECONDS[x86_64]}, "arm64": ${BUILD_SECONDS[arm64]:-None}},
    "profile_release": profile,
    "rustc": "$(rustc -V)",
    "cargo_lambda": "$(cargo lambda --version 2>/dev/null)",
    "aws_lc_sys_env": {**{k: v.strip('"') for k, v in re.findall(r'^(AWS_LC_SYS_\w+)\s*=\s*(\S+)', (pathlib.Path(sys.argv[1]).parent / ".cargo/config.toml").read_text() if (pathlib.Path(sys.argv[1]).parent / ".cargo/config.toml").exists() else "", re.M)},
                       **{k: v for k, v in __import__("os").environ.items() if k.startswith("AWS_LC_SYS")}},
}))
EOF
)
export BENCH_BUILD
export BENCH_LAMBDA_DIR="$LAMBDA_DIR/x86_64" BENCH_ARM64_DIR="$ARM64_DIR" BENCH_OUT="$OUT"
export BENCH_DYNAMODB="127.0.0.1:$PORT"
say "running (cold starts, warm latency, DynamoDB requests per flow); logs in $OUT/logs"
"$TARGET_DIR/bench-harness/bench"
