# lib.bash — sourced by the end-to-end scripts after they set NAME and cd to the repository
# (not a test itself: CTest runs tests/e2e/*.sh): the binary and data folder (CTest passes
# LD_BIN and LD_DATA_DIR), a scratch folder $T removed on exit, and the checks they share.
BIN=${LD_BIN:-build/liandan}
DATA=${LD_DATA_DIR:-../shared/data}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail() { echo "$NAME: $*" >&2; exit 1; }
# producer | contains [grep options] PATTERN: reads all of stdin, then greps it. `producer | grep -q`
# is a race under pipefail: grep exits at its first match, the producer's next write then fails
# (curl exit 23, liandan killed by SIGPIPE) and the pipeline reports the check as failed.
contains() { local s; s=$(cat); grep -q "$@" <<<"$s"; }
expect_error() { # expected-substring command...: the command must fail and say the substring
  local want=$1; shift
  if "$@" >"$T/out" 2>&1; then fail "'$*' succeeded but should fail with '$want'"; fi
  grep -q -- "$want" "$T/out" || { cat "$T/out" >&2; fail "'$*' did not say '$want'"; }
}

# A tiny model for CLI tests: tiny_data writes $T/poems.tsv (300 poems), $T/tok.json (300 tokens)
# and shards $T/data/{train,val}-*.bin; tiny_cfg VOCAB OUT_DIR prints a 1-layer llama config
# trained 2 steps on them; tiny_model VOCAB OUT_DIR trains it (the model lands in OUT_DIR/model).
tiny_data() {
  head -n 300 "$DATA/zh_pretrain/tang_poems.tsv" >"$T/poems.tsv"
  "$BIN" tokenizer train "$T/poems.tsv" --vocab-size 300 -o "$T/tok.json" 2>/dev/null || fail "tokenizer train"
  "$BIN" data prepare "$T/poems.tsv" --tokenizer "$T/tok.json" --val-fraction 0.1 -o "$T/data" >/dev/null 2>&1 \
    || fail "data prepare"
}
tiny_cfg() {
  cat <<JSON
{ "model": {"model_type": "llama", "vocab_size": $1, "hidden_size": 16, "intermediate_size": 32,
            "num_hidden_layers": 1, "num_attention_heads": 2, "max_position_embeddings": 64},
  "tokenizer": "$T/tok.json", "train_data": "$T/data/train", "val_data": "$T/data/val",
  "out_dir": "$2", "batch_size": 2, "seq_len": 16, "max_steps": 2, "eval_every": 0, "checkpoint_every": 0 }
JSON
}
tiny_model() {
  tiny_cfg "$1" "$2" >"$2.json"
  "$BIN" pretrain "$2.json" --quiet >"$2.log" 2>&1 || { cat "$2.log" >&2; fail "pretrain $2"; }
}

# MPI tests: skip (77) without mpirun or an MPI build of $BIN; else let Open MPI run as root and
# oversubscribe, and define mpi2 (2 ranks, bounded in time) with $MPIRUN set.
mpi_setup() {
  MPIRUN=$(command -v mpirun || true)
  if [ -z "$MPIRUN" ] || ! ldd "$BIN" 2>/dev/null | contains libmpi; then
    echo "$NAME: skipped: no mpirun, or $BIN was built without MPI" >&2
    exit 77
  fi
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
  mpi2() { timeout 300 "$MPIRUN" --oversubscribe -np 2 "$@"; }
}
