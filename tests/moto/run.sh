#!/usr/bin/env bash
# ossup against moto_server (an S3 implementation with SigV4 checking that nobody here wrote).
#
# 1. Makes (or reuses) a venv in target/moto-venv with moto[server] (pinned) and boto3.
# 2. Builds the ossup binary (or uses $OSSUP_BIN).
# 3. Starts moto_server on 127.0.0.1 on a free port, with S3_UPLOAD_PART_MIN_SIZE=102400 so
#    that ossup's 100 KiB minimum parts are accepted (moto wants 5 MiB otherwise).
# 4. tests/moto/moto_check.py creates an IAM user + key while auth is off, switches SigV4/IAM
#    checking on (POST 0 to /moto-api/reset-auth) and runs the checks: uploads, resume after
#    SIGKILL (ListParts), abort (ListMultipartUploads), wrong secret (exit 77).
# 5. Stops moto (trap) and exits non-zero on any failure. Last line: `moto: N passed, M failed`.
#
# Environment: PYTHON (default python3), CARGO (default cargo), OSSUP_BIN (skip the build),
# MOTO_VERSION (default 5.1.18).
set -euo pipefail

cd "$(dirname "$0")/../.."
crate_dir=$(pwd)
venv="$crate_dir/target/moto-venv"
python=${PYTHON:-python3}
cargo=${CARGO:-cargo}
moto_version=${MOTO_VERSION:-5.1.18}
mkdir -p "$crate_dir/target"

log() { echo "moto: $*" >&2; }

venv_ok() {
    [ -x "$venv/bin/python" ] && [ -x "$venv/bin/moto_server" ] &&
        "$venv/bin/python" -c 'import moto, boto3, flask, sys; sys.exit(moto.__version__ != sys.argv[1])' \
            "$moto_version" >/dev/null 2>&1
}

if venv_ok; then
    log "reusing $venv"
else
    log "creating $venv (moto[server]==$moto_version)"
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
    "$venv/bin/python" -m pip --disable-pip-version-check --quiet install \
        "moto[server]==$moto_version" boto3
    venv_ok || { log "moto did not install"; exit 1; }
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

work=$(mktemp -d "${TMPDIR:-/tmp}/ossup-moto.XXXXXX")
moto_pid=""
cleanup() {
    if [ -n "$moto_pid" ]; then
        kill "$moto_pid" 2>/dev/null || true
        wait "$moto_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

port=$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
endpoint="http://127.0.0.1:$port"
log "starting moto_server on $endpoint"
S3_UPLOAD_PART_MIN_SIZE=102400 "$venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"$work/moto.log" 2>&1 &
moto_pid=$!

up=""
for _ in $(seq 1 300); do
    if "$python" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + "/moto-api/data.json", timeout=2)' \
        "$endpoint" >/dev/null 2>&1; then
        up=1
        break
    fi
    kill -0 "$moto_pid" 2>/dev/null || break
    sleep 0.1
done
if [ -z "$up" ]; then
    log "moto_server did not come up; its log:"
    cat "$work/moto.log" >&2
    echo "moto: 0 passed, 1 failed"
    exit 1
fi

status=0
MOTO_ENDPOINT="$endpoint" OSSUP_BIN="$bin" WORK="$work" \
    "$venv/bin/python" tests/moto/moto_check.py || status=$?
if [ "$status" -ne 0 ]; then
    log "last lines of the moto_server log:"
    tail -n 30 "$work/moto.log" >&2
fi
exit "$status"
