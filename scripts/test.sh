#!/usr/bin/env bash
# The whole test suite: install test dependencies, check formatting and
# lints, run every test in the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
# A test that cannot run here (no BTF, no privilege) passes after saying
# so, and the harness hides the output of passing tests: each skip is also
# a line of this file, listed at the end so that a green run says what it
# did not test.
export TEST_SKIP_LOG="$PWD/target/test-skips.txt"
mkdir -p target
rm -f "$TEST_SKIP_LOG"
status=0
cargo test --workspace || status=$?
if [ -s "$TEST_SKIP_LOG" ]; then
  echo "=== $(wc -l < "$TEST_SKIP_LOG") test(s) skipped part of their work on this host: ===" >&2
  cat "$TEST_SKIP_LOG" >&2
else
  echo "=== no test skipped anything ===" >&2
fi
exit "$status"
