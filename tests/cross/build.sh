#!/usr/bin/env bash
# Cross-builds the ossup board binary and reports its size.
#
# 1. Installs what is missing (as root, or through `sudo -n`): Debian's
#    gcc-aarch64-linux-gnu gcc-arm-linux-gnueabihf qemu-user-static, and time and curl for
#    tests/cross/qemu.sh (after apt-get update),
#    and the rustup targets aarch64-unknown-linux-musl armv7-unknown-linux-gnueabihf.
# 2. Builds the release binary (profile in Cargo.toml: opt-level z, fat LTO, panic abort,
#    strip) with `--no-default-features --features cli` (boards leave out `serve`) for
#    aarch64-unknown-linux-musl, armv7-unknown-linux-gnueabihf and the native host, one after
#    the other (cold, on 2 cores: ~75 s for aarch64, ~50 s armv7, ~35 s host; a rebuild after
#    a source change ~15 s each; in parallel they would only fight for the cores).
# 3. Prints stripped sizes (bytes, KiB), text+data from the binutils `size` of each target,
#    linkage (static, or the newest GLIBC symbol version needed), and smoke-runs each binary
#    (`--version`, under qemu-user for ARM).
# 4. Exits non-zero if the aarch64-musl binary exceeds 1.75 MiB (1835008 bytes).
#
# Idempotent (cargo skips up-to-date builds); works unattended (CI=true, no stdin).
# Usage:   tests/cross/build.sh              build and report
#          tests/cross/build.sh --deps-only  only install the host packages and rustup targets
# Environment: CARGO (default cargo), CARGO_TARGET_DIR (default ./target),
# OSSUP_MAX_AARCH64_BYTES (size budget, default 1835008).
# Output: the stripped binaries are copied to $CARGO_TARGET_DIR/cross-dist/ossup-<triple>,
# and the size table to $CARGO_TARGET_DIR/cross-dist/sizes.tsv.
set -euo pipefail

cd "$(dirname "$0")/../.."
cargo=${CARGO:-cargo}
# The aarch64-musl size budget: 1.75 MiB. OSSUP_MAX_AARCH64_BYTES overrides it (for measuring a
# build that is known to be over; CI should keep the default).
limit=${OSSUP_MAX_AARCH64_BYTES:-1835008}
board_targets=(aarch64-unknown-linux-musl armv7-unknown-linux-gnueabihf)
features=(--no-default-features --features cli)

log() { echo "cross-build: $*" >&2; }
die() {
    echo "cross-build: FAILED: $*" >&2
    exit 1
}

# Runs a command as root: directly, or through non-interactive sudo.
as_root() {
    if [ "$(id -u)" = 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo -n "$@"
    else
        die "need root to run: $* (run as root, or install these packages yourself)"
    fi
}

install_deps() {
    local missing=()
    command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || missing+=(gcc-aarch64-linux-gnu)
    command -v arm-linux-gnueabihf-gcc >/dev/null 2>&1 || missing+=(gcc-arm-linux-gnueabihf)
    # The target C headers (ring's C code needs them): only Recommends of the cross gcc, so a
    # --no-install-recommends install (or an earlier one) may lack them.
    [ -f /usr/arm-linux-gnueabihf/include/stdio.h ] || missing+=(libc6-dev-armhf-cross)
    [ -f /usr/aarch64-linux-gnu/include/stdio.h ] || missing+=(libc6-dev-arm64-cross)
    command -v qemu-aarch64-static >/dev/null 2>&1 && command -v qemu-arm-static >/dev/null 2>&1 ||
        missing+=(qemu-user-static)
    [ -x /usr/bin/time ] || missing+=(time)         # peak RSS in qemu.sh
    command -v curl >/dev/null 2>&1 || missing+=(curl) # server counters in qemu.sh
    if [ ${#missing[@]} -gt 0 ]; then
        command -v apt-get >/dev/null 2>&1 || die "missing ${missing[*]} and no apt-get to install them"
        log "installing ${missing[*]}"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q </dev/null >&2
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
            "${missing[@]}" </dev/null >&2
    fi
    command -v rustup >/dev/null 2>&1 || die "rustup not found: install the Rust std for ${board_targets[*]} yourself"
    local installed t
    installed=$(rustup target list --installed)
    for t in "${board_targets[@]}"; do
        if ! grep -qx "$t" <<<"$installed"; then
            log "rustup target add $t"
            rustup target add "$t" </dev/null >&2
        fi
    done
}

install_deps
if [ "${1:-}" = "--deps-only" ]; then
    exit 0
fi
[ $# -eq 0 ] || die "unknown argument $1 (usage: $0 [--deps-only])"

host=$(rustc -vV | sed -n 's/^host: //p')
[ -n "$host" ] || die "cannot tell the host triple from rustc -vV"
target_dir=${CARGO_TARGET_DIR:-$PWD/target}
dist="$target_dir/cross-dist"
mkdir -p "$dist"

# Binutils prefix for a target triple (empty for the host).
prefix_of() {
    case "$1" in
    aarch64-unknown-linux-*) echo aarch64-linux-gnu- ;;
    armv7-unknown-linux-gnueabihf) echo arm-linux-gnueabihf- ;;
    *) echo "" ;;
    esac
}

# How to run a binary of a target on this host.
runner_of() {
    case "$1" in
    aarch64-unknown-linux-musl) echo qemu-aarch64-static ;;
    aarch64-unknown-linux-gnu) echo "qemu-aarch64-static -L /usr/aarch64-linux-gnu" ;;
    armv7-unknown-linux-gnueabihf) echo "qemu-arm-static -L /usr/arm-linux-gnueabihf" ;;
    *) echo "" ;;
    esac
}

# Build sequentially; the host build gets an explicit --target so that its output goes to
# target/<host>/release and does not replace a full-featured target/release/ossup.
all_targets=("${board_targets[@]}" "$host")
declare -A secs
for t in "${all_targets[@]}"; do
    log "building $t (release, ${features[*]})"
    start=$(date +%s)
    "$cargo" build --release "${features[@]}" --target "$t" --bin ossup </dev/null ||
        die "cargo build for $t"
    secs[$t]=$(($(date +%s) - start))
done

printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' target bytes KiB text data text+data linkage >"$dist/sizes.tsv"
echo
printf '%-32s %10s %9s %10s %8s %10s  %s\n' target "bytes" "KiB" "text" "data" "text+data" "linkage"
printf '%-32s %10s %9s %10s %8s %10s  %s\n' "--------------------------------" "----------" "---------" \
    "----------" "--------" "----------" "-------"
aarch64_bytes=""
for t in "${all_targets[@]}"; do
    bin="$target_dir/$t/release/ossup"
    [ -f "$bin" ] || die "no binary at $bin"
    pfx=$(prefix_of "$t")
    out="$dist/ossup-$t"
    # The release profile already strips; strip the copy again so the number is the
    # stripped size whatever the profile says.
    "${pfx}strip" -o "$out" "$bin" || die "${pfx}strip $bin"
    bytes=$(stat -c %s "$out")
    kib=$(awk -v b="$bytes" 'BEGIN { printf "%.1f", b / 1024 }')
    # Berkeley format: text data bss dec hex filename
    read -r text data _ < <("${pfx}size" "$out" | awk 'NR == 2 { print $1, $2, $3 }')
    td=$((text + data))
    if "${pfx}readelf" -l "$out" | grep -q 'INTERP'; then
        glibc=$("${pfx}objdump" -T "$out" | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1)
        linkage="dynamic, needs ${glibc:-glibc}"
    else
        linkage="static"
    fi
    printf '%-32s %10s %9s %10s %8s %10s  %s\n' "$t" "$bytes" "$kib" "$text" "$data" "$td" "$linkage"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$bytes" "$kib" "$text" "$data" "$td" "$linkage" >>"$dist/sizes.tsv"
    if [ "$t" = aarch64-unknown-linux-musl ]; then
        aarch64_bytes=$bytes
    fi
done
echo
for t in "${all_targets[@]}"; do
    echo "build time $t: ${secs[$t]} s"
done

# Smoke run: each binary starts and prints its version (ARM ones under qemu-user).
for t in "${all_targets[@]}"; do
    runner=$(runner_of "$t")
    if [ -n "$runner" ] && ! command -v "${runner%% *}" >/dev/null 2>&1; then
        log "skipping the smoke run of $t: ${runner%% *} not installed"
        continue
    fi
    # shellcheck disable=SC2086 # the runner is a command plus arguments
    v=$($runner "$dist/ossup-$t" --version </dev/null) || die "$t binary does not run: $runner $dist/ossup-$t --version"
    echo "smoke run $t: $v"
done

[ -n "$aarch64_bytes" ] || die "no aarch64-unknown-linux-musl binary measured"
if [ "$aarch64_bytes" -gt "$limit" ]; then
    die "aarch64-unknown-linux-musl binary is $aarch64_bytes bytes, over the $limit-byte budget by $((aarch64_bytes - limit))"
fi
echo "cross-build: OK: aarch64-unknown-linux-musl $aarch64_bytes bytes <= $limit-byte budget; binaries in $dist"
