#!/usr/bin/env bash
# Measures ossup against the budgets of "Ship to ARM gateways" and prints PASS or MISS for each.
# A MISS does not fail the script: it is a benchmark, not a test (it fails only when a
# measurement cannot be made).
#
#   bash tests/bench/budgets.sh           256 MiB uploads, 3 runs per RSS figure, 30 s rate test
#   bash tests/bench/budgets.sh --quick   32 MiB uploads, 1 run, 1,000 parts, 10 s rate test (2 MiB)
#
#  1. Peak RSS (GNU time, "Maximum resident set size") of a 256 MiB upload with 8 MiB parts over
#     TLS to `ossup serve`: budget <= 4 MiB with --jobs 1, <= 6 MiB with --jobs 4 (x86_64).
#  2. Checkpoint journal: bytes written per part (strace -y: every write to the journal file,
#     header included) and fsyncs per part (strace -c -e trace=fsync,fdatasync), --jobs 1 and 4;
#     and the size of a 10,000-part journal from the real encoder
#     (`cargo test --test bench_journal -- --nocapture`; budget < 1 MiB), and of a real
#     10,000-part upload (977 MiB in 100 KiB parts, --jobs 4, under strace; ~15 s).
#  3. Rate cap: `--limit-rate 200KiB/s` on a 6 MiB file (~30 s); the measured rate must be
#     within 5 % of the cap (whole run, and steady state between the first and last part).
#
# Installs strace, GNU time and openssl with apt-get if missing; builds with `cargo build
# --release` (CARGO_TARGET_DIR is honoured). Cleans up its servers and files on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$(pwd)

args=()
for arg in "$@"; do
    case "$arg" in
        --quick) args=(--size-mib 32 --reps 1 --rate-mib 2 --real-parts 1000) ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "budgets.sh: unknown argument $arg (use --quick)" >&2; exit 64 ;;
    esac
done

missing=()
[ -x /usr/bin/time ] || missing+=(time)
command -v strace >/dev/null || missing+=(strace)
command -v openssl >/dev/null || missing+=(openssl)
if [ ${#missing[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "budgets.sh: installing ${missing[*]} with apt-get" >&2
    $sudo apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
strace -f --seccomp-bpf -e trace=fsync -o /dev/null true 2>/dev/null || args+=(--no-seccomp)

cargo build --release --quiet
target_dir=${CARGO_TARGET_DIR:-target}
case "$target_dir" in /*) ;; *) target_dir="$repo/$target_dir" ;; esac
bin="$target_dir/release/ossup"

work=$(mktemp -d "${TMPDIR:-/tmp}/ossup-budgets.XXXXXX")
py_pid=""
cleanup() {
    if [ -n "$py_pid" ] && kill -0 "$py_pid" 2>/dev/null; then
        kill -TERM "$py_pid" 2>/dev/null || true
        wait "$py_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The journal encoder's size for 10,000 parts (a debug test build is enough: sizes do not
# depend on optimisation).
cargo test --quiet --test bench_journal -- --nocapture >"$work/journal.log" 2>&1 || {
    cat "$work/journal.log" >&2
    echo "budgets.sh: cargo test --test bench_journal failed" >&2
    exit 1
}

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
    -addext basicConstraints=critical,CA:FALSE \
    -keyout "$work/key.pem" -out "$work/cert.pem" >/dev/null 2>&1

cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
echo "ossup budgets on $(nproc) cores, ${cpu:-unknown CPU}, Linux $(uname -r) $(uname -m)"
python3 "$repo/tests/bench/budgets.py" --bin "$bin" --work "$work" --cert "$work/cert.pem" \
    --key "$work/key.pem" --journal-log "$work/journal.log" "${args[@]}" &
py_pid=$!
status=0
wait "$py_pid" || status=$?
py_pid=""
exit "$status"
