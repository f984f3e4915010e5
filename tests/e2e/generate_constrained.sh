#!/usr/bin/env bash
# generate_constrained.sh — `liandan generate` under a grammar: --verse makes every sampled
# continuation a regular poem (a tiny 2-step model, whose free output is noise), --grammar and
# --json-schema fix the output's form, --rerank inverse prints one of its candidates; bad
# grammars and patterns are clear errors.
set -euo pipefail
cd "$(dirname "$0")/../.."
NAME=generate_constrained
source tests/e2e/lib.bash
source tests/e2e/serve_lib.bash
tiny_model "$T/m"
export LC_ALL=C.UTF-8
H='[\x{4e00}-\x{9fff}\x{3400}-\x{4dbf}\x{f900}-\x{faff}\x{20000}-\x{2ebef}]'
for seed in 1 2 3; do
  out=$("$BIN" generate "$T/m" "床前明月光，" --verse 5 --lines 4 --seed "$seed" --max-tokens 300 2>/dev/null)
  grep -qP "^床前明月光，$H{5}。$H{5}，$H{5}。\$" <<<"$out" || fail "--verse 5, seed $seed: not a regular poem: $out"
done
out=$("$BIN" generate "$T/m" "" --verse 7 --lines 2 --seed 4 --max-tokens 300 2>/dev/null)
grep -qP "^$H{7}，$H{7}。\$" <<<"$out" || fail "--verse 7 from nothing: $out"
printf '春\t平\n風\t平\n月\t仄\n夜\t仄\n' >"$T/tones.tsv"
out=$("$BIN" generate "$T/m" "" --verse 5 --lines 2 --tones "$T/tones.tsv" --pattern 'ppzz*,zzpp*' --seed 5 --max-tokens 300 2>/dev/null)
grep -qP "^[春風]{2}[月夜]{2}$H，[月夜]{2}[春風]{2}$H。\$" <<<"$out" || fail "--tones/--pattern: $out"

printf 'root ::= "<" [0-9]{2,4} ">"\n' >"$T/g.gbnf"
out=$("$BIN" generate "$T/m" "x" --grammar "$T/g.gbnf" --seed 6 --max-tokens 40 2>/dev/null)
grep -qP '^x<[0-9]{2,4}>$' <<<"$out" || fail "--grammar: $out"
printf '{"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"], "additionalProperties": false}' >"$T/s.json"
out=$("$BIN" generate "$T/m" "" --json-schema "$T/s.json" --seed 7 --max-tokens 60 2>/dev/null)
node -e 'const x = JSON.parse(process.argv[1]); if (!Number.isInteger(x.n) || Object.keys(x).length !== 1) process.exit(1)' "$out" \
  || fail "--json-schema: $out"

"$BIN" generate "$T/m" "床前明月光，" --rerank inverse --candidates 3 --max-tokens 12 --verse 5 --seed 8 >"$T/out" 2>"$T/err" \
  || { cat "$T/err"; fail "--rerank inverse"; }
[ "$(grep -c '^liandan: candidate' "$T/err")" = 3 ] && grep -q '(best)' "$T/err" || { cat "$T/err"; fail "--rerank: no candidate scores"; }
best=$(sed -n 's/^liandan: candidate [0-9]*: [-0-9.]* per prompt token (best): //p' "$T/err")
[ "$(cat "$T/out")" = "床前明月光，$best" ] || fail "--rerank printed '$(cat "$T/out")', not the best candidate '$best'"

printf 'root ::= x\n' >"$T/bad.gbnf"
expect_error "is used but not defined" "$BIN" generate "$T/m" "x" --grammar "$T/bad.gbnf"
expect_error "line 1 position 3" "$BIN" generate "$T/m" "" --verse 5 --lines 2 --tones "$T/tones.tsv" --pattern 'pp'
expect_error "does not open a regular poem" "$BIN" generate "$T/m" "床前明月光。" --verse 5
expect_error "give one of" "$BIN" generate "$T/m" "x" --verse 5 --grammar "$T/g.gbnf"
expect_error "only 'inverse'" "$BIN" generate "$T/m" "x" --rerank forward
echo "generate_constrained: ok"
