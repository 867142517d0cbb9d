#!/usr/bin/env bash
# Differential test of ossup's request signing against the official SDKs.
#
# 1. Makes (or reuses) a Python venv in target/diff-venv with oss2 and botocore from PyPI
#    (pinned: oss2==2.19.1 botocore==1.44.8, the versions the signing vectors were checked
#    with; the latest releases if those cannot be installed).
# 2. tests/differential/gen.py signs seeded random requests with the SDKs themselves and
#    writes them to target/diff-cases.json.
# 3. `cargo test --test differential -- --ignored --nocapture` re-signs every case with ossup
#    and fails on any disagreement.
#
# Idempotent; exits non-zero on any mismatch or setup failure.
# Environment: OSSUP_DIFF_N (cases, default 800), OSSUP_DIFF_SEED (default 20240102),
# PYTHON (default python3), CARGO (default cargo).
set -euo pipefail

cd "$(dirname "$0")/../.."
crate_dir=$(pwd)
venv="$crate_dir/target/diff-venv"
cases="$crate_dir/target/diff-cases.json"
python=${PYTHON:-python3}
cargo=${CARGO:-cargo}
n=${OSSUP_DIFF_N:-800}
seed=${OSSUP_DIFF_SEED:-20240102}
mkdir -p "$crate_dir/target"

log() { echo "differential: $*" >&2; }

venv_ok() {
    [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import oss2, botocore' >/dev/null 2>&1
}

make_venv() {
    rm -rf "$venv"
    if "$python" -m venv "$venv" >/dev/null 2>&1 && [ -x "$venv/bin/pip" ]; then
        return 0
    fi
    rm -rf "$venv"
    log "'$python -m venv' failed (no ensurepip?); trying virtualenv"
    if "$python" -m virtualenv --version >/dev/null 2>&1 \
        || "$python" -m pip install --user --quiet virtualenv >/dev/null 2>&1 \
        || "$python" -m pip install --user --quiet --break-system-packages virtualenv >/dev/null 2>&1; then
        if "$python" -m virtualenv --quiet "$venv" && [ -x "$venv/bin/pip" ]; then
            return 0
        fi
    fi
    rm -rf "$venv"
    if command -v apt-get >/dev/null 2>&1; then
        log "installing python3-venv with apt-get"
        local sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        $sudo apt-get update -qq >/dev/null
        pyver=$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "python$pyver-venv" >/dev/null 2>&1 \
            || DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-venv >/dev/null
        "$python" -m venv "$venv"
        return 0
    fi
    log "cannot create a Python virtual environment"
    return 1
}

if venv_ok; then
    log "reusing $venv"
else
    log "creating $venv"
    make_venv
    pip=("$venv/bin/python" -m pip --disable-pip-version-check --quiet)
    if ! "${pip[@]}" install "oss2==2.19.1" "botocore==1.44.8"; then
        log "pinned versions not installable; installing the latest oss2 and botocore"
        "${pip[@]}" install oss2 botocore
    fi
    venv_ok
fi

"$venv/bin/python" tests/differential/gen.py "$cases" "$n" "$seed"
OSSUP_DIFF_CASES="$cases" "$cargo" test --test differential -- --ignored --nocapture
