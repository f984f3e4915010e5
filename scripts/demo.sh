#!/usr/bin/env bash
# demo.sh — the README's first command. The full demo (a Chinese poetry model trained from
# the npm `chinese-poetry` corpus) arrives with the causal LM.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "liandan: demo arrives with the causal LM; meanwhile, the machine limits this build sees:"
build/liandan bench limits
