#!/usr/bin/env bash
# Quick start: a real resumable upload against a local OSS-compatible server, no cloud account.
# Builds ossup, starts `ossup serve` on 127.0.0.1, uploads a generated 48 MiB file with a
# bandwidth cap, interrupts it (SIGKILL, as a power cut would), shows `ossup status`, runs the
# same command again (it resumes), and verifies the stored object byte for byte.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo >/dev/null || { echo "quickstart: needs cargo (https://rustup.rs)"; exit 1; }
cargo build --release --quiet
BIN=$PWD/target/release/ossup
WORK=$(mktemp -d "${TMPDIR:-/tmp}/ossup-quickstart.XXXXXX")
SERVER_PID=""
cleanup() { [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

export OSS_ACCESS_KEY_ID=quickstart-id OSS_ACCESS_KEY_SECRET=quickstart-secret
"$BIN" serve "$WORK/server" --listen 127.0.0.1:0 --bucket demo >"$WORK/serve.out" 2>"$WORK/serve.err" &
SERVER_PID=$!
for _ in $(seq 50); do grep -q listening "$WORK/serve.out" 2>/dev/null && break; sleep 0.1; done
ENDPOINT=$(grep -o 'http://[0-9.:]*' "$WORK/serve.out" | head -1)
echo "== server: $ENDPOINT (dir $WORK/server)"

head -c $((48 << 20)) /dev/urandom >"$WORK/video.bin"
UPLOAD=("$BIN" upload "$WORK/video.bin" oss://demo/cam1/video.bin --endpoint "$ENDPOINT"
        --region cn-hangzhou --part-size 4MiB --threshold 8MiB --jobs 2
        --checkpoint-dir "$WORK/state")

echo "== first run, capped at 16 MiB/s, killed after 1.5 s"
"${UPLOAD[@]}" --limit-rate 16MiB/s &
UP=$!
sleep 1.5
kill -KILL "$UP"; wait "$UP" 2>/dev/null || true
echo "== ossup status after the interruption"
"$BIN" status --checkpoint-dir "$WORK/state"

echo "== second run: resumes"
"${UPLOAD[@]}"

echo "== verify"
STORED="$WORK/server/demo/cam1%2Fvideo.bin"
cmp "$WORK/video.bin" "$STORED" && echo "stored object is identical to the file"
curl -s "$ENDPOINT/_ossup/stats" && echo
echo "quickstart: OK"
