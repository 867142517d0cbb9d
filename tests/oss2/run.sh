#!/usr/bin/env bash
# The official oss2 SDK (OSS Signature V4) against the real `ossup serve` binary.
#
# 1. Uses target/diff-venv if it already has oss2 (tests/differential/run.sh makes it), else
#    makes (or reuses) target/oss2-venv with oss2 (pinned 2.19.1; the latest if that fails).
# 2. Builds the ossup binary (or uses $OSSUP_BIN).
# 3. Starts `ossup serve DIR --listen 127.0.0.1:0 --bucket oss2-compat` with fresh credentials
#    and reads the address from its first stdout line.
# 4. Runs tests/oss2_compat.py (resumable_upload with 1 and 2 threads, PutObject, an
#    interrupted-and-resumed upload, manual multipart calls, errors), which downloads every
#    object and compares bytes; then checks the stored files in DIR against the server's stats.
# 5. Stops the server (trap). Last line: `oss2: N passed, M failed`; exit non-zero on failure.
#
# Environment: PYTHON (default python3), CARGO (default cargo), OSSUP_BIN (skip the build).
set -euo pipefail

cd "$(dirname "$0")/../.."
crate_dir=$(pwd)
python=${PYTHON:-python3}
cargo=${CARGO:-cargo}
mkdir -p "$crate_dir/target"

log() { echo "oss2: $*" >&2; }

has_oss2() { [ -x "$1/bin/python" ] && "$1/bin/python" -c 'import oss2' >/dev/null 2>&1; }

if has_oss2 "$crate_dir/target/diff-venv"; then
    venv="$crate_dir/target/diff-venv"
    log "reusing $venv"
elif has_oss2 "$crate_dir/target/oss2-venv"; then
    venv="$crate_dir/target/oss2-venv"
    log "reusing $venv"
else
    venv="$crate_dir/target/oss2-venv"
    log "creating $venv"
    rm -rf "$venv"
    if ! "$python" -m venv "$venv" >/dev/null 2>&1 || [ ! -x "$venv/bin/pip" ]; then
        rm -rf "$venv"
        if command -v apt-get >/dev/null 2>&1; then
            log "installing python3-venv with apt-get"
            sudo=""
            [ "$(id -u)" -eq 0 ] || sudo="sudo"
            $sudo apt-get update -qq >/dev/null
            DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-venv >/dev/null
        fi
        "$python" -m venv "$venv"
    fi
    pip=("$venv/bin/python" -m pip --disable-pip-version-check --quiet)
    if ! "${pip[@]}" install "oss2==2.19.1"; then
        log "oss2 2.19.1 not installable; installing the latest oss2"
        "${pip[@]}" install oss2
    fi
    has_oss2 "$venv" || { log "oss2 did not install"; exit 1; }
fi

if [ -n "${OSSUP_BIN:-}" ]; then
    bin=$OSSUP_BIN
else
    log "building ossup"
    bin=$("$cargo" build --quiet --bin ossup --message-format=json-render-diagnostics |
        "$python" -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "ossup":
        print(m["executable"])')
fi
[ -x "$bin" ] || { log "no ossup binary at '$bin'"; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/ossup-oss2.XXXXXX")
serve_pid=""
cleanup() {
    if [ -n "$serve_pid" ]; then
        kill "$serve_pid" 2>/dev/null || true
        wait "$serve_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

ak="oss2-compat-ak"
sk="oss2-compat-$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')"
bucket="oss2-compat"
OSS_ACCESS_KEY_ID=$ak OSS_ACCESS_KEY_SECRET=$sk \
    "$bin" serve "$work/srv" --listen 127.0.0.1:0 --bucket "$bucket" >"$work/serve.out" 2>"$work/serve.err" &
serve_pid=$!

addr=""
for _ in $(seq 1 200); do
    line=$(head -n 1 "$work/serve.out" 2>/dev/null || true)
    case "$line" in
        "ossup serve: listening on http://"*)
            addr=${line#ossup serve: listening on http://}
            addr=${addr%% *}
            break
            ;;
    esac
    kill -0 "$serve_pid" 2>/dev/null || break
    sleep 0.05
done
if [ -z "$addr" ]; then
    log "ossup serve did not start:"
    cat "$work/serve.out" "$work/serve.err" >&2
    echo "oss2: 0 passed, 1 failed"
    exit 1
fi
log "ossup serve listening on $addr"

status=0
OSSUP_ENDPOINT="http://$addr" OSSUP_BUCKET="$bucket" OSSUP_AK="$ak" OSSUP_SK="$sk" \
    "$venv/bin/python" tests/oss2_compat.py >"$work/compat.out" 2>&1 || status=$?
cat "$work/compat.out"
passed=$(grep -c '^ok ' "$work/compat.out" || true)
failed=$(grep -c '^FAIL ' "$work/compat.out" || true)
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then
    failed=1 # crashed before reporting
fi

# The stored objects are where the layout says, with the sizes oss2 saw.
check() {
    local name=$1 ok=$2
    if [ "$ok" = 1 ]; then passed=$((passed + 1)); echo "ok   $name"; else failed=$((failed + 1)); echo "FAIL $name"; fi
}
size_of() { stat -c %s "$work/srv/$bucket/$1" 2>/dev/null || echo missing; }
check "stored big object (1 thread) is 3 MiB" "$([ "$(size_of 'oss2%2Fbig-1%20threads.bin')" = 3145728 ] && echo 1)"
check "stored resumed object is 3 MiB" "$([ "$(size_of 'oss2%2Fresumed.bin')" = 3145728 ] && echo 1)"
check "stored small object is 1 KiB" "$([ "$(size_of 'oss2%2Fsmall.bin')" = 1024 ] && echo 1)"
stats=$("$venv/bin/python" -c 'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())' \
    "http://$addr/_ossup/stats")
open_uploads=$("$python" -c 'import json, sys; print(json.loads(sys.argv[1])["open_uploads"])' "$stats")
check "no multipart upload left open ($stats)" "$([ "$open_uploads" = 0 ] && echo 1)"

echo "oss2: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
