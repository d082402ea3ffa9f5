#!/usr/bin/env bash
# The deploy checks of `make test`; none needs an AWS account:
#   1. sam validate --lint and cfn-lint on template.yaml (and the deploy
#      role), and scripts/tests: what lint cannot see (pytest),
#   2. actionlint on .github/workflows/,
#   3. sam build, which must leave an arm64 `bootstrap` per function.
# If the aarch64 Rust target cannot be installed, the build falls back to
# x86_64 and says so loudly (REQUIRE_ARM64=1 turns that into an error).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

# Keep SAM CLI quiet and offline apart from the builds themselves.
export SAM_CLI_TELEMETRY=0
for tool in sam cfn-lint actionlint cargo-lambda pytest; do
  command -v "$tool" >/dev/null || die "$tool is missing; run scripts/setup.sh (scripts/requirements.txt)"
done

say "sam validate --lint"
sam validate --lint --template template.yaml --region us-east-1

say "cfn-lint (the stack and the deploy role)"
cfn-lint template.yaml docs/deploy-role.yaml

say "template checks: routes, deploy role, access log, parameters, sam local environments (scripts/tests)"
python3 -m pytest -q -p no:cacheprovider scripts/tests

say "actionlint"
actionlint .github/workflows/*.yml

TARGET=aarch64-unknown-linux-gnu
ARCH=arm64
TEMPLATE=template.yaml
if ! rustup target list --installed 2>/dev/null | grep -qx "$TARGET"; then
  say "installing the Rust target $TARGET"
  if ! rustup target add "$TARGET"; then
    [ "${REQUIRE_ARM64:-}" = 1 ] && die "rustup target add $TARGET failed and REQUIRE_ARM64=1"
    ARCH=x86_64
  fi
fi
# A red banner, one line per argument.
loud() {
  local line
  for line in "" "$@" ""; do printf '\033[1;41;97m  %-74s\033[0m\n' "$line" >&2; done
}
if [ "$ARCH" = x86_64 ]; then
  loud "WARNING: the Rust target $TARGET could not be installed." \
    "Building x86_64 functions INSTEAD of arm64: this checks the build," \
    "NOT what would be deployed. Install the target and run this again."
  TEMPLATE="$STATE/template-x86_64.yaml"
  sed 's/Architectures: \[arm64\]/Architectures: [x86_64]/' template.yaml >"$TEMPLATE"
  grep -q 'Architectures: \[x86_64\]' "$TEMPLATE" || die "could not make the x86_64 template"
fi

started=$SECONDS
# sam build runs one `cargo lambda build --bin X` per function; they share
# target/ but take turns on its lock, so the five fat-LTO links (the slow,
# single-threaded part) would run one after another. One cargo run for all
# binaries first lets them link in parallel; sam build's own runs then find
# every binary up to date (same flags) and only copy it.
binaries=()
while IFS= read -r binary; do binaries+=(--bin "$binary"); done < <(
  sed -n 's/^ *Binary: *\([A-Za-z0-9_-]*\) *$/\1/p' template.yaml
)
[ "${#binaries[@]}" -gt 0 ] || die "no BuildProperties.Binary found in template.yaml"
if [ "$ARCH" = arm64 ]; then arch_flag=--arm64; else arch_flag=--x86-64; fi
say "cargo lambda build --release $arch_flag ${binaries[*]}"
cargo lambda build --release "$arch_flag" "${binaries[@]}"
prebuilt=$((SECONDS - started))

say "sam build ($ARCH, all functions)"
# CodeUri is `.`: --base-dir keeps it the workspace root for the fallback template too.
sam build --parallel --template-file "$TEMPLATE" --base-dir "$ROOT" --build-dir "$ROOT/.aws-sam/build"
elapsed=$((SECONDS - started))

say "checking the built functions"
python3 - "$ROOT" "$ARCH" <<'PY'
import io, os, pathlib, struct, sys, zipfile

import yaml

root, arch = pathlib.Path(sys.argv[1]), sys.argv[2]


class Loader(yaml.SafeLoader):
    """CloudFormation YAML, intrinsic functions kept opaque."""


Loader.add_multi_constructor("!", lambda loader, tag, node: None)
template = yaml.load((root / "template.yaml").read_text(), Loader=Loader)
functions = sorted(
    (logical_id, resource["Metadata"]["BuildProperties"]["Binary"])
    for logical_id, resource in template["Resources"].items()
    if resource.get("Type") == "AWS::Serverless::Function"
)
if not functions:
    sys.exit("no functions found in template.yaml")

machines = {183: "arm64", 62: "x86_64"}
problems = []
print(f"{'function':<22} {'binary':<14} {'arch':<7} {'bootstrap':>10} {'zip':>10}")
for logical_id, binary in functions:
    path = root / ".aws-sam" / "build" / logical_id / "bootstrap"
    if not path.is_file():
        problems.append(f"{path} is missing")
        continue
    data = path.read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2:
        problems.append(f"{path} is not a 64-bit ELF executable")
        continue
    machine = machines.get(struct.unpack("<H", data[18:20])[0], "other")
    if machine != arch:
        problems.append(f"{path} is {machine}, expected {arch}")
    if not os.access(path, os.X_OK):
        problems.append(f"{path} is not executable")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.write(path, "bootstrap")
    print(f"{logical_id:<22} {binary:<14} {machine:<7} {len(data) / 2**20:>8.1f}MB {len(buffer.getvalue()) / 2**20:>8.1f}MB")
if problems:
    sys.exit("\n".join(problems))
PY
say "build took ${elapsed}s (cargo lambda ${prebuilt}s, then sam build $((elapsed - prebuilt))s)"

if [ "$ARCH" = x86_64 ]; then
  loud "REMINDER: the functions above are x86_64, not the arm64 that deploys."
fi
