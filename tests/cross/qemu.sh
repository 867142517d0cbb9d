#!/usr/bin/env bash
# Runs ossup for aarch64-unknown-linux-musl under qemu-user on this x86_64 host.
#
# 1. Installs what is missing (tests/cross/build.sh --deps-only).
# 2. `cargo test --target aarch64-unknown-linux-musl --lib`: the library's unit tests (the
#    sans-IO core with its proptests, the IO shell, the loopback server) compiled for aarch64
#    and run through the qemu-aarch64-static runner from .cargo/config.toml. Nothing is skipped.
# 3. One end-to-end upload: the NATIVE `ossup serve` (debug build, feature serve) on
#    127.0.0.1 port 0, then the aarch64-musl board binary (release, --no-default-features
#    --features cli) under qemu-aarch64-static uploads a ~3 MiB file in 512 KiB parts
#    (multipart) and a small file (one PutObject). The stored objects must equal the files byte
#    for byte, the server's counters must show exactly that traffic, and no journal may be
#    left behind.
# 4. Prints the peak RSS of the emulated upload (/usr/bin/time -v). That number includes
#    qemu itself; the RSS of `ossup --version` under qemu is printed beside it as the baseline,
#    and the native x86_64 board binary's RSS for the same upload if tests/cross/build.sh
#    built it.
#
# Fails (non-zero exit, FAILED line) on any test failure or mismatch. Idempotent; works
# unattended (CI=true, no stdin). Environment: CARGO (default cargo), CARGO_TARGET_DIR
# (default ./target), OSSUP_KEEP_TMP=1 keeps the temporary directory for inspection.
set -euo pipefail

cd "$(dirname "$0")/../.."
cargo=${CARGO:-cargo}
target=aarch64-unknown-linux-musl
bucket=qemu-cross
region=cn-hangzhou
key_id=LTAIqemucrosstest
key_secret=qemu-cross-secret-0123456789

log() { echo "cross-qemu: $*" >&2; }
die() {
    echo "cross-qemu: FAILED: $*" >&2
    exit 1
}

bash tests/cross/build.sh --deps-only
command -v curl >/dev/null 2>&1 || die "curl is needed to read the server's counters"

host=$(rustc -vV | sed -n 's/^host: //p')
target_dir=${CARGO_TARGET_DIR:-$PWD/target}

# --- 2. unit tests under qemu ----------------------------------------------------------------
log "building the library tests for $target"
start=$(date +%s)
"$cargo" test --target "$target" --lib --no-run </dev/null || die "building the $target lib tests"
build_secs=$(($(date +%s) - start))

log "running the library tests under qemu-aarch64-static"
tests_log=$(mktemp)
start=$(date +%s)
set +e
"$cargo" test --target "$target" --lib </dev/null 2>&1 | tee "$tests_log"
test_rc=${PIPESTATUS[0]}
set -e
test_secs=$(($(date +%s) - start))
result=$(grep -E '^test result: ' "$tests_log" | tail -1 || true)
rm -f "$tests_log"
[ "$test_rc" = 0 ] || die "cargo test --target $target --lib exited $test_rc ($result)"
[ -n "$result" ] || die "no test result line from cargo test"

# --- 3. end-to-end upload -------------------------------------------------------------------
log "building the native server (debug, default features) and the $target board binary"
"$cargo" build --bin ossup </dev/null || die "building the native ossup"
"$cargo" build --release --no-default-features --features cli --target "$target" --bin ossup </dev/null ||
    die "building the $target ossup"
native="$target_dir/debug/ossup"
board_bin="$target_dir/$target/release/ossup"
if [ ! -x "$native" ] || [ ! -x "$board_bin" ]; then
    die "binaries missing: $native $board_bin"
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/ossup-qemu.XXXXXX")
server_pid=""
cleanup() {
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    if [ "${OSSUP_KEEP_TMP:-0}" = 1 ]; then
        log "kept $tmp"
    else
        rm -rf "$tmp"
    fi
}
trap cleanup EXIT

mkdir -p "$tmp/srv" "$tmp/ckpt"
OSS_ACCESS_KEY_ID=$key_id OSS_ACCESS_KEY_SECRET=$key_secret \
    "$native" serve "$tmp/srv" --listen 127.0.0.1:0 --bucket "$bucket" --region "$region" \
    >"$tmp/serve.out" 2>"$tmp/serve.err" </dev/null &
server_pid=$!
addr=""
for _ in $(seq 1 100); do # up to 10 s
    if line=$(head -n 1 "$tmp/serve.out" 2>/dev/null) && [[ "$line" == *"listening on http://"* ]]; then
        addr=${line#*listening on http://}
        addr=${addr%% *}
        break
    fi
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
done
[ -n "$addr" ] || die "ossup serve did not start: $(cat "$tmp/serve.err")"
case "$addr" in 127.0.0.1:*) ;; *) die "server listens on $addr, expected 127.0.0.1" ;; esac
log "server on $addr"

# 3 MiB + 100000 bytes: six full 512 KiB parts and a short seventh.
big_size=$((3 * 1024 * 1024 + 100000))
head -c "$big_size" /dev/urandom >"$tmp/big.bin"
printf 'ossup qemu cross test, %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >"$tmp/small.txt"
expect_parts=$(((big_size + 524287) / 524288))

have_time=0
[ -x /usr/bin/time ] && have_time=1

# Runs `ossup upload` with the test credentials; $1 = name for the time report, rest = command.
upload() {
    local name=$1
    shift
    local cmd=("$@")
    if [ "$have_time" = 1 ]; then
        cmd=(/usr/bin/time -v -o "$tmp/time-$name.txt" "${cmd[@]}")
    fi
    OSS_ACCESS_KEY_ID=$key_id OSS_ACCESS_KEY_SECRET=$key_secret timeout 600 "${cmd[@]}" </dev/null
}
opts=(--endpoint "http://$addr" --region "$region" --checkpoint-dir "$tmp/ckpt" --quiet)

start_ms=$(date +%s%3N)
upload big qemu-aarch64-static "$board_bin" upload "$tmp/big.bin" "oss://$bucket/cross/big.bin" \
    "${opts[@]}" --part-size 512KiB --threshold 1MiB ||
    die "aarch64 upload of big.bin exited $? (server log: $(tail -n 5 "$tmp/serve.err"))"
big_ms=$(($(date +%s%3N) - start_ms))
start_ms=$(date +%s%3N)
upload small qemu-aarch64-static "$board_bin" upload "$tmp/small.txt" "oss://$bucket/cross/small.txt" \
    "${opts[@]}" || die "aarch64 upload of small.txt exited $?"
small_ms=$(($(date +%s%3N) - start_ms))

# Objects are stored at DIR/<bucket>/<key percent-encoded with '/' as %2F>.
cmp "$tmp/big.bin" "$tmp/srv/$bucket/cross%2Fbig.bin" || die "stored big object differs from the file"
cmp "$tmp/small.txt" "$tmp/srv/$bucket/cross%2Fsmall.txt" || die "stored small object differs from the file"

stats=$(curl -fsS --max-time 10 "http://$addr/_ossup/stats") || die "cannot read http://$addr/_ossup/stats"
stat_of() { sed -n "s/.*\"$1\": *\([0-9]*\).*/\1/p" <<<"$stats"; }
[ "$(stat_of initiated)" = 1 ] || die "expected 1 multipart upload initiated: $stats"
[ "$(stat_of completed)" = 1 ] || die "expected 1 multipart upload completed: $stats"
[ "$(stat_of parts_stored)" = "$expect_parts" ] || die "expected $expect_parts parts stored: $stats"
[ "$(stat_of puts)" = 1 ] || die "expected 1 PutObject: $stats"
[ "$(stat_of open_uploads)" = 0 ] || die "a multipart upload was left open: $stats"
if ls "$tmp/ckpt"/*.ossup >/dev/null 2>&1; then
    die "journal left behind after a successful upload: $(ls "$tmp/ckpt")"
fi
log "objects verified byte for byte; server counters: $stats"

# --- 4. memory --------------------------------------------------------------------------------
rss_of() { sed -n 's/.*Maximum resident set size (kbytes): *//p' "$tmp/time-$1.txt"; }
rss_report=()
if [ "$have_time" = 1 ]; then
    /usr/bin/time -v -o "$tmp/time-baseline.txt" qemu-aarch64-static "$board_bin" --version >/dev/null </dev/null
    rss_report+=("peak RSS, qemu-aarch64-static + ossup --version (emulator baseline): $(rss_of baseline) KiB")
    rss_report+=("peak RSS, qemu-aarch64-static + ossup upload 3 MiB, 512 KiB parts:    $(rss_of big) KiB")
    rss_report+=("peak RSS, qemu-aarch64-static + ossup upload small file:              $(rss_of small) KiB")
    native_board="$target_dir/$host/release/ossup"
    if [ -x "$native_board" ]; then
        upload native "$native_board" upload "$tmp/big.bin" "oss://$bucket/cross/big-native.bin" \
            "${opts[@]}" --part-size 512KiB --threshold 1MiB || die "native upload exited $?"
        cmp "$tmp/big.bin" "$tmp/srv/$bucket/cross%2Fbig-native.bin" || die "native upload differs"
        rss_report+=("peak RSS, native $host board build, same upload (no emulator): $(rss_of native) KiB")
    fi
else
    rss_report+=("/usr/bin/time not installed: RSS not measured")
fi

echo
echo "== qemu cross test summary ($target) =="
echo "lib tests:  $result"
echo "lib tests:  build ${build_secs} s, run under qemu ${test_secs} s (cargo test wall time)"
echo "end to end: $big_size-byte file in $expect_parts parts: ${big_ms} ms; $(stat -c %s "$tmp/small.txt")-byte file: ${small_ms} ms (under qemu, verified)"
for l in "${rss_report[@]}"; do
    echo "$l"
done
echo "(qemu-user RSS includes the emulator and its translation cache; it is not the board's RSS)"
echo "cross-qemu: OK"
