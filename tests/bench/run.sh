#!/usr/bin/env bash
# Benchmarks ossup against its peers, on the same servers, in the same run.
#
#   bash tests/bench/run.sh           256 MiB file, 5 runs of every contender
#   bash tests/bench/run.sh --quick   16 MiB file, 1 run of every contender (CI: keeps it from rotting)
#
# What it does:
#  1. Installs what is missing: curl, GNU time, strace, rclone, openssl (apt-get); a venv in
#     target/bench-venv with oss2 and awscli (and moto[server] when it is the S3 server); the S3
#     server s3s-fs in target/bench-tools (`cargo install s3s-fs@0.14.1 --features binary`).
#  2. Builds ossup (`cargo build --release`, default features, so `serve` is in).
#  3. Starts, on 127.0.0.1: `ossup serve --anonymous` over HTTP and over TLS (certificate made
#     with openssl for 127.0.0.1), and an S3 server nobody here wrote (s3s-fs; moto as fallback).
#  4. tests/bench/bench.py generates the file and runs every contender in alternation
#     (round-robin): curl -T (the limit of one PUT on that server and transport), oss2
#     resumable_upload with 1 and 4 threads, ossup --jobs 1/4 over HTTP and TLS, ossup as a
#     single PutObject, and on the S3 server curl --aws-sigv4, aws s3 cp, rclone copy and ossup
#     --signature s3-v4 --jobs 1/4. Multipart tools use 8 MiB parts and an 8 MiB threshold.
#  5. For the resumable tools (ossup, oss2) it also makes one run under strace (checkpoint bytes
#     and fsyncs per part) and one kill-and-resume run (SIGKILL when the server's
#     /_ossup/stats says half the file has arrived, then the same command again).
#  6. Prints one table and writes target/bench/results.{csv,md} and target/bench/goals.csv.
#
# Environment:
#   OSSUP_BENCH_S3=s3s-fs|moto|none   the S3 server (default: s3s-fs; --quick uses s3s-fs only
#                                     if it is already installed, else moto, since compiling
#                                     s3s-fs takes ~3-5 minutes on 2 cores)
#   OSSUP_BENCH_ROOT=DIR              where bench/, bench-venv/, bench-tools/ go (default target)
#   OSSUP_BENCH_SIZE_MIB, OSSUP_BENCH_REPS   override the file size and the number of rounds
#   CARGO_TARGET_DIR                  honoured for the ossup build
# Exits non-zero if any run of any contender failed (the table is printed anyway).
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$(pwd)

quick=0
for arg in "$@"; do
    case "$arg" in
        --quick) quick=1 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "run.sh: unknown argument $arg (use --quick)" >&2; exit 64 ;;
    esac
done
if [ "$quick" = 1 ]; then size=16; reps=1; else size=256; reps=5; fi
size=${OSSUP_BENCH_SIZE_MIB:-$size}
reps=${OSSUP_BENCH_REPS:-$reps}
root=${OSSUP_BENCH_ROOT:-$repo/target}
mkdir -p "$root"
root=$(cd "$root" && pwd)
out="$root/bench"
venv="$root/bench-venv"
tools="$root/bench-tools"
s3=${OSSUP_BENCH_S3:-s3s-fs}
started=$(date +%s)

log() { echo "run.sh: $*" >&2; }

# ---- system tools
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
missing=()
command -v curl >/dev/null || missing+=(curl)
[ -x /usr/bin/time ] || missing+=(time)
command -v strace >/dev/null || missing+=(strace)
command -v rclone >/dev/null || missing+=(rclone)
command -v openssl >/dev/null || missing+=(openssl)
if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]} with apt-get"
    $sudo apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# strace's --seccomp-bpf stops only at the traced calls (much less overhead); older strace lacks it.
seccomp=()
strace -f --seccomp-bpf -e trace=fsync -o /dev/null true 2>/dev/null || seccomp=(--no-seccomp)

# ---- the S3 server
s3_bin=""
if [ "$s3" = s3s-fs ]; then
    if [ -x "$tools/bin/s3s-fs" ]; then
        s3_bin="$tools/bin/s3s-fs"
    elif command -v s3s-fs >/dev/null; then
        s3_bin=$(command -v s3s-fs)
    elif [ "$quick" = 1 ]; then
        log "NOTE: s3s-fs is not installed and compiling it takes minutes; --quick uses moto as"
        log "      the S3 server instead (run without --quick once to install s3s-fs)"
        s3=moto
    else
        log "installing s3s-fs 0.14.1 into $tools (cargo install, a few minutes; log: $out/s3s-fs-install.log)"
        mkdir -p "$out"
        if CARGO_TARGET_DIR="$root/bench-tools-build" cargo install s3s-fs@0.14.1 --features binary \
            --locked --root "$tools" >"$out/s3s-fs-install.log" 2>&1; then
            s3_bin="$tools/bin/s3s-fs"
        else
            log "NOTE: s3s-fs did not build (see $out/s3s-fs-install.log); using moto instead"
            s3=moto
        fi
    fi
fi

# ---- Python tools
venv_ok() {
    [ -x "$venv/bin/python" ] && [ -x "$venv/bin/aws" ] && "$venv/bin/python" -c 'import oss2' 2>/dev/null &&
        { [ "$s3" != moto ] || [ -x "$venv/bin/moto_server" ]; }
}
if ! venv_ok; then
    log "preparing $venv"
    if [ ! -x "$venv/bin/pip" ]; then
        rm -rf "$venv"
        if ! python3 -m venv "$venv" >/dev/null 2>&1 || [ ! -x "$venv/bin/pip" ]; then
            rm -rf "$venv"
            log "installing python3-venv with apt-get"
            $sudo apt-get update -qq >/dev/null
            DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-venv >/dev/null
            python3 -m venv "$venv"
        fi
    fi
    pkgs=("oss2==2.19.1" "awscli==1.46.3")
    [ "$s3" = moto ] && pkgs+=("moto[server]==5.1.18")
    pip=("$venv/bin/python" -m pip --disable-pip-version-check --quiet install)
    if ! "${pip[@]}" "${pkgs[@]}"; then
        log "pinned versions not installable; installing the latest"
        "${pip[@]}" "${pkgs[@]%%==*}"
    fi
    venv_ok || { log "the venv is incomplete"; exit 1; }
fi
[ "$s3" = moto ] && s3_bin="$venv/bin/moto_server"

# ---- ossup
log "building ossup (cargo build --release)"
cargo build --release --quiet
target_dir=${CARGO_TARGET_DIR:-target}
case "$target_dir" in /*) ;; *) target_dir="$repo/$target_dir" ;; esac
bin="$target_dir/release/ossup"
[ -x "$bin" ] || { log "no binary at $bin"; exit 1; }

# ---- scratch space, certificate, cleanup
work=$(mktemp -d "${TMPDIR:-/tmp}/ossup-bench.XXXXXX")
bench_pid=""
cleanup() {
    if [ -n "$bench_pid" ] && kill -0 "$bench_pid" 2>/dev/null; then
        kill -TERM "$bench_pid" 2>/dev/null || true
        wait "$bench_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
    -addext basicConstraints=critical,CA:FALSE \
    -keyout "$work/key.pem" -out "$work/cert.pem" >/dev/null 2>&1

cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
machine="$(nproc) cores, ${cpu:-unknown CPU}, $(free -g | awk '/^Mem:/ {print $2}') GiB RAM, Linux $(uname -r) $(uname -m)"
if [ "$quick" = 1 ]; then mode="--quick"; command="bash tests/bench/run.sh --quick"
else mode="default"; command="bash tests/bench/run.sh"; fi
log "mode $mode: ${size} MiB, $reps round(s); S3 server: $s3; machine: $machine"

mkdir -p "$out"
set +e
"$venv/bin/python" "$repo/tests/bench/bench.py" --bin "$bin" --work "$work" --out "$out" \
    --size-mib "$size" --reps "$reps" --s3 "$s3" --s3-bin "$s3_bin" --python "$venv/bin/python" \
    --aws "$venv/bin/aws" --cert "$work/cert.pem" --key "$work/key.pem" --machine "$machine" --command "$command" \
    "${seccomp[@]}" &
bench_pid=$!
wait "$bench_pid"
status=$?
bench_pid=""
set -e
log "wrote $out/results.csv, $out/results.md, $out/goals.csv ($(($(date +%s) - started)) s in all)"
exit "$status"
