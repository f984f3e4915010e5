#!/usr/bin/env bash
# cli_help.sh — walks every command and subcommand from `liandan --help`: each prints its help
# (generated from its option table: usage line, "options:", "-h, --help") with exit 0; every
# option the help lists is accepted by the parser (never "unknown option"); an unknown option
# and a bad number are refused with exit 2; the commands that write files take -o/--output;
# README's "Using it" lists every command and subcommand.
set -euo pipefail
cd "$(dirname "$0")/../.."
NAME=cli_help
source tests/e2e/lib.bash
BIN=$(realpath "$BIN")
README=$(realpath README.md)
cd "$T" # options given dummy values must not write into the repository

writers=" tokenizer train | tokenizer convert | data prepare | pretrain | distill | export gguf | export hf | quantize | imatrix | plot | gguf write | embed "
leaves=0
options=0

# The names listed under "commands:" in a help text.
subcommands() { sed -n '/^commands:/,$p' | sed -n 's/^  \([a-z][a-z0-9-]*\) .*/\1/p'; }

check_leaf() { # "cmd sub" as words
  local cmd=$1 help
  # shellcheck disable=SC2086
  help=$("$BIN" $cmd --help) || fail "'$cmd --help' failed"
  head -n1 <<<"$help" | contains "^usage: liandan $cmd" || fail "'$cmd --help' has no usage line: $(head -n1 <<<"$help")"
  grep -q '^options:$' <<<"$help" && grep -q -- '-h, --help' <<<"$help" || fail "'$cmd --help' is not the generated help"
  if [[ $writers == *" $cmd "* ]]; then grep -q -- '-o, --output' <<<"$help" || fail "'$cmd' has no -o/--output"; fi
  local opt
  local row val
  while read -r row; do
    opt=$(grep -oE -- '--[a-z0-9-]+' <<<"$row" | head -n1)
    [ "$opt" = --help ] && continue
    val=(); [[ $row =~ ^\ +(-[a-zA-Z],\ )?--[a-z0-9-]+\ [^\ ] ]] && val=(1) # a value follows the name (not a --name in the description): give one
    # shellcheck disable=SC2086
    LD_CLI_PARSE_ONLY=1 timeout 60 "$BIN" $cmd "$opt" "${val[@]}" </dev/null >"$T/o" 2>&1 || true
    if grep -q "unknown option" "$T/o"; then cat "$T/o" >&2; fail "'$cmd' lists $opt but does not accept it"; fi
    # parsed (or a value error for an option that takes no "1": a flag, a choice)
    grep -q "options parsed\|$opt" "$T/o" || { cat "$T/o" >&2; fail "'$cmd $opt 1' was not parsed"; }
    options=$((options + 1))
  done < <(grep -E -- '^  (-[a-zA-Z], |    )--[a-z0-9-]+' <<<"$help")
  # shellcheck disable=SC2086
  expect_error "unknown option '--no-such-option'" "$BIN" $cmd --no-such-option
  local rc=0
  # shellcheck disable=SC2086
  "$BIN" $cmd --no-such-option >/dev/null 2>&1 || rc=$?
  [ "$rc" -eq 2 ] || fail "'$cmd --no-such-option' exited $rc, not 2"
  if grep -q -- '--threads N' <<<"$help"; then
    # shellcheck disable=SC2086
    expect_error "--threads: '9999999999999999999' is not an integer" "$BIN" $cmd --threads 9999999999999999999
  fi
  grep -q "^liandan $cmd\( \|$\)" "$README" || fail "README's \"Using it\" does not list 'liandan $cmd'"
  leaves=$((leaves + 1))
}

top=$("$BIN" --help) || fail "liandan --help"
cmds=$(subcommands <<<"$top")
[ "$(wc -w <<<"$cmds")" -ge 16 ] || fail "liandan --help lists too few commands: $cmds"
for c in $cmds; do
  h=$("$BIN" "$c" --help) || fail "'$c --help' failed"
  if head -n1 <<<"$h" | contains "<command>"; then
    subs=$(subcommands <<<"$h")
    [ -n "$subs" ] || fail "'$c --help' lists no subcommands"
    for s in $subs; do check_leaf "$c $s"; done
    expect_error "unknown command 'nope'" "$BIN" "$c" nope
  else
    check_leaf "$c"
  fi
done
expect_error "unknown command 'nope'" "$BIN" nope
[ "$options" -ge 60 ] || fail "only $options options seen"
echo "$leaves commands, $options options: 1 passed, 0 failed"
