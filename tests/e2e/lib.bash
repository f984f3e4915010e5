# lib.bash — sourced by the end-to-end scripts after they set NAME and cd to the repository
# (not a test itself: CTest runs tests/e2e/*.sh): the binary and data folder (CTest passes
# LD_BIN and LD_DATA_DIR), a scratch folder $T removed on exit, and the checks they share.
BIN=${LD_BIN:-build/liandan}
DATA=${LD_DATA_DIR:-../shared/data}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail() { echo "$NAME: $*" >&2; exit 1; }
expect_error() { # expected-substring command...: the command must fail and say the substring
  local want=$1; shift
  if "$@" >"$T/out" 2>&1; then fail "'$*' succeeded but should fail with '$want'"; fi
  grep -q -- "$want" "$T/out" || { cat "$T/out" >&2; fail "'$*' did not say '$want'"; }
}
