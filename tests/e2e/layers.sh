#!/usr/bin/env bash
# layers.sh — the include graph points down: every #include in src/<layer>/, include/liandan/
# and cli/ names a header of the same or a lower layer (docs/layers.md), and the CLI uses only
# the public API (include/liandan/) and its own headers. A new src/ directory must be given
# its place in the table below (and in docs/layers.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
NAME=layers
fail() { echo "$NAME: $*" >&2; exit 1; }

# lower numbers are lower layers; a layer may include its own headers and lower layers'
declare -A rank=([core]=0 [tensor]=1 [kernels]=2 [io]=3 [quant]=4 [nn]=5 [tokenizer]=6 [data]=7 [models]=8
                 [train]=9 [infer]=10 [eval]=11 [registry]=12 [serve]=13)
# public headers and the layer each belongs to (liandan.h is everything: only for the CLI and tests)
declare -A public=([core.h]=core [status.h]=core [tensor.h]=tensor [io.h]=io [quant.h]=quant [nn.h]=nn
                   [tokenizer.h]=tokenizer [causal_lm.h]=models [encoder.h]=models [data.h]=data [train.h]=train
                   [infer.h]=infer [chat.h]=infer [batch.h]=infer [grammar.h]=infer [eval.h]=eval [probe.h]=eval
                   [image.h]=data [clip.h]=models [clip_train.h]=train [clip_eval.h]=eval [adapter.h]=models
                   [registry.h]=registry [serve.h]=serve)
# the CLI's exceptions, each with its reason
declare -A cli_private=()

bad=0
report() { echo "$NAME: $*" >&2; bad=$((bad + 1)); }

# the layer of a quoted include from a file of layer $2 ("" when it is a system or local header)
target_layer() {
  local inc=$1
  case $inc in
    liandan/liandan.h) echo "ALL" ;;
    liandan/*) local h=${inc#liandan/}; [ -n "${public[$h]:-}" ] || { echo "UNKNOWN:$inc"; return; }; echo "${public[$h]}" ;;
    */*) echo "${inc%%/*}" ;;
    *) echo "" ;;
  esac
}

check_file() { # file layer
  local f=$1 layer=$2 inc dep
  while read -r inc; do
    dep=$(target_layer "$inc")
    [ -z "$dep" ] && continue
    if [ "$dep" = ALL ]; then report "$f includes liandan/liandan.h (include the headers it needs)"; continue; fi
    if [[ $dep == UNKNOWN:* ]]; then report "$f: ${dep#UNKNOWN:} is not in the public header table"; continue; fi
    [ -n "${rank[$dep]:-}" ] || { report "$f includes $inc: '$dep' is not a layer"; continue; }
    if [ "${rank[$dep]}" -gt "${rank[$layer]}" ]; then
      report "$f ($layer) includes $inc ($dep): an arrow up"
    fi
  done < <(sed -n 's/^#include "\([^"]*\)".*/\1/p' "$f")
}

for d in src/*/; do
  layer=$(basename "$d")
  [ -n "${rank[$layer]:-}" ] || { report "src/$layer has no place in the layer table (tests/e2e/layers.sh, docs/layers.md)"; continue; }
  while read -r f; do check_file "$f" "$layer"; done < <(find "$d" -name '*.[ch]')
done
for f in include/liandan/*.h; do
  h=$(basename "$f")
  [ "$h" = liandan.h ] && continue
  [ -n "${public[$h]:-}" ] || { report "$f is not in the public header table"; continue; }
  check_file "$f" "${public[$h]}"
done
# the CLI: public headers, its own (cli/, bench/), nothing private from src/
for f in cli/*.[ch]; do
  while read -r inc; do
    case $inc in liandan/*) continue ;; esac
    [ -f "cli/$inc" ] || [ -f "bench/$inc" ] && continue
    [ -n "${cli_private[$f:$inc]:-}" ] && continue
    report "$f includes the private header $inc (the CLI uses include/liandan/ only)"
  done < <(sed -n 's/^#include "\([^"]*\)".*/\1/p' "$f")
done
# the table must still be needed: every exception names an include that exists
for k in "${!cli_private[@]}"; do
  grep -q "^#include \"${k#*:}\"" "${k%%:*}" 2>/dev/null || report "stale exception $k: remove it"
done

[ "$bad" -eq 0 ] || fail "$bad arrows against the layers"
echo "1 passed, 0 failed"
