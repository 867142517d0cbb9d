#!/usr/bin/env bash
# Every test ossup has, in the order CI runs them. Needs network access to crates.io, PyPI and
# Debian's archive the first time (venvs and cross toolchains are installed on demand).
#   OSSUP_SKIP_CROSS=1   skip cross builds and qemu tests (they take ~10 minutes)
set -euo pipefail
cd "$(dirname "$0")/.."
step() { printf '\n==== %s\n' "$*"; }

step "format and lints"
cargo fmt --check
cargo clippy --all-targets -- -D warnings

step "unit, property and integration tests (cargo test)"
cargo test

step "signing: differential test against the official SDKs (oss2, botocore)"
bash tests/differential/run.sh

step "oss2.resumable_upload against ossup serve"
bash tests/oss2/run.sh

step "s3-v4 against moto (a server nobody here wrote)"
bash tests/moto/run.sh

step "torture: kill loop, power cut, faulty server and network, skew, signals"
cargo test --release --test torture -- --ignored --test-threads=1

if [ "${OSSUP_SKIP_CROSS:-0}" != 1 ]; then
  step "cross builds and size budget"
  bash tests/cross/build.sh
  step "aarch64-musl under qemu"
  bash tests/cross/qemu.sh
fi

if [ -f tests/bench/run.sh ]; then
  step "benchmarks, quick mode (so they cannot rot)"
  bash tests/bench/run.sh --quick
  bash tests/bench/compress.sh --quick
fi

step "quick start"
bash tests/quickstart.sh
echo
echo "all.sh: every step passed"
