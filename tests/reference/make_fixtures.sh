#!/bin/sh
# Regenerates tests/fixtures/ref/ from llama.cpp (needs ../shared/reference set up:
#   sh ../shared/reference/setup.sh). For each case in cases.txt: make the model with our
# generator, run llama.cpp greedily (F32 KV cache unless the case names f16), store prompt tokens, 24 greedy tokens,
# the last-position logits and the model's sha256 (so a changed generator is detected).
set -eu
SHAMMAH=${1:-build/shammah}
: "${LLAMA_REF_HOME:=$HOME/.cache/llama-ref}"
. "$LLAMA_REF_HOME/env.sh"
OUT=${REF_OUT:-tests/fixtures/ref}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
mkdir -p "$OUT"
grep -v '^#' tests/reference/cases.txt | grep . | while IFS='|' read -r name args prompt kv lora; do
    name=$(echo "$name" | tr -d ' ')
    prompt=$(echo "$prompt" | sed 's/^ //; s/ *$//')
    kv=$(echo "${kv:-f32}" | tr -d ' ')
    [ -z "$kv" ] && kv=f32
    # shellcheck disable=SC2086
    "$SHAMMAH" model synth $args --out "$TMP/m.gguf" >/dev/null
    lora_flag=""
    if [ -n "$(echo "${lora:-}" | tr -d ' ')" ]; then
        # shellcheck disable=SC2086
        "$SHAMMAH" model synth-lora -m "$TMP/m.gguf" $lora --out "$TMP/a.gguf"
        lora_flag="--lora $TMP/a.gguf"
    fi
    llama_ref -m "$TMP/m.gguf" -p "$prompt" -n 24 -t 1 --kv "$kv" $lora_flag --logits "$OUT/$name.logits" >"$TMP/out.txt" 2>&1
    {
        echo "sha256 $(sha256sum "$TMP/m.gguf" | cut -d' ' -f1)"
        grep '^prompt_tokens' "$TMP/out.txt" | sed 's/^prompt_tokens [0-9]*: */prompt /'
        grep '^greedy 24' "$TMP/out.txt" | sed 's/^greedy 24: */greedy /'
    } >"$OUT/$name.txt"
    echo "$name: $(tr '\n' ' ' <"$OUT/$name.txt" | cut -c1-120)"
done
