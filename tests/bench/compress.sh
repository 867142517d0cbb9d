#!/usr/bin/env bash
# `--compress` figures (issue "Compress logs before they cross the cellular link"): a realistic
# gateway log (JSON lines with timestamps, levels and repeated fields, generated here) uploaded
# with `ossup upload --compress --board router-64m` to `ossup serve` on 127.0.0.1. Prints the
# compression ratio, CPU seconds per MiB of original (user+sys of the whole upload: compression
# dominates; the board's 128 KiB/s cap is lifted so that the link does not hide it), wall time, and peak RSS (GNU time). With --qemu and the aarch64-musl board binary
# built by tests/cross/build.sh, the same under qemu-aarch64 (emulated: the CPU figure only
# shows that it runs, not a board's speed). A benchmark: prints figures, asserts only that the
# stored object decompresses to the original.
#
#   bash tests/bench/compress.sh [--quick] [--qemu]     (--quick: 20 MB instead of 200 MB)
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$(pwd)
mb=200
qemu=0
for a in "$@"; do
    case "$a" in
        --quick) mb=20 ;;
        --qemu) qemu=1 ;;
        *) echo "compress.sh: unknown argument $a" >&2; exit 64 ;;
    esac
done
[ -x /usr/bin/time ] || { echo "compress.sh: needs GNU time (apt-get install time)" >&2; exit 69; }
cargo build --release --quiet
target_dir=${CARGO_TARGET_DIR:-$repo/target}
case "$target_dir" in /*) ;; *) target_dir="$repo/$target_dir" ;; esac
bin="$target_dir/release/ossup"

work=$(mktemp -d "${TMPDIR:-/tmp}/ossup-compress-bench.XXXXXX")
serve_pid=""
cleanup() {
    # `|| true`: the killed server's status (143) must not become this script's.
    if [ -n "$serve_pid" ]; then
        kill "$serve_pid" 2>/dev/null || true
        wait "$serve_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

python3 - "$work/app.log" "$mb" <<'PY'
import random, sys
path, mb = sys.argv[1], int(sys.argv[2])
r = random.Random(42)
levels = ["info"] * 6 + ["debug"] * 2 + ["warn", "error"]
msgs = ["sample ok", "reading sensor", "uplink rssi", "queue depth", "retrying publish", "gps fix"]
with open(path, "w") as f:
    n, i = 0, 0
    while n < mb * 1_000_000:
        line = ('{"ts":"2026-12-04T%02d:%02d:%02d.%03dZ","level":"%s","device":"gw-0042",'
                '"sensor":"temp-%d","value":%.2f,"seq":%d,"msg":"%s"}\n') % (
            (i // 3600000) % 24, (i // 60000) % 60, (i // 1000) % 60, i % 1000,
            r.choice(levels), r.randrange(8), 20 + r.random() * 15, i, r.choice(msgs))
        f.write(line)
        n += len(line)
        i += r.randrange(1, 40)
PY
orig=$(stat -c %s "$work/app.log")

export OSS_ACCESS_KEY_ID=bench-id OSS_ACCESS_KEY_SECRET=bench-secret
"$bin" serve "$work/store" --listen 127.0.0.1:0 --bucket bench >"$work/serve.out" 2>"$work/serve.err" &
serve_pid=$!
for _ in $(seq 100); do grep -q listening "$work/serve.out" 2>/dev/null && break; sleep 0.1; done
ep=$(grep -o 'http://[0-9.:]*' "$work/serve.out" | head -1)
[ -n "$ep" ] || { cat "$work/serve.err" >&2; exit 1; }

run() { # run LABEL BINARY [prefix...]
    local label=$1 b=$2
    shift 2
    rm -rf "$work/ckpt"
    /usr/bin/time -f '%e %U %S %M' -o "$work/time" "$@" "$b" upload "$work/app.log" "oss://bench/$label/app.log" \
        --board "$repo/board-configs/router-64m.toml" --compress --endpoint "$ep" --region cn-hangzhou \
        --checkpoint-dir "$work/ckpt" --limit-rate 1GiB/s -q 2>"$work/err" || { cat "$work/err" >&2; exit 1; }
    read -r wall user sys rss <"$work/time"
    local stored="$work/store/bench/$label%2Fapp.log.gz"
    local z
    z=$(stat -c %s "$stored")
    python3 - "$stored" "$work/app.log" <<'PY'
import gzip, sys
assert gzip.open(sys.argv[1]).read() == open(sys.argv[2], "rb").read(), "round trip"
PY
    python3 - "$label" "$orig" "$z" "$wall" "$user" "$sys" "$rss" <<'PY'
import sys
label, orig, z, wall, user, sys_, rss = sys.argv[1:]
orig, z, wall, cpu, rss = int(orig), int(z), float(wall), float(user) + float(sys_), int(rss)
mib = orig / 2**20
print(f"{label:8} {orig/1e6:7.1f} MB -> {z/1e6:6.2f} MB  ratio {orig/z:5.2f}x  "
      f"CPU {cpu:6.2f} s ({cpu/mib*1000:6.2f} ms/MiB)  wall {wall:6.2f} s  peak RSS {rss/1024:5.2f} MiB")
PY
}
echo "compress.sh: ossup upload --compress --board router-64m, ${mb} MB JSON-lines log"
run x86_64 "$bin"
if [ "$qemu" = 1 ]; then
    arm="$target_dir/aarch64-unknown-linux-musl/release/ossup"
    if [ -x "$arm" ] && command -v qemu-aarch64-static >/dev/null; then
        run aarch64 "$arm" qemu-aarch64-static
        echo "(aarch64 under qemu-user: emulated; RSS includes qemu itself)"
    else
        echo "compress.sh: no aarch64 board binary (run tests/cross/build.sh) or qemu; skipped the qemu row"
    fi
fi
