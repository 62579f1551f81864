#!/bin/sh
# make bench: this engine against llama.cpp on Qwen2.5-0.5B-shaped models (real Qwen
# vocabulary, random weights), same prompt, same threads, alternating runs, medians, ratios.
# Without the reference (../shared/reference set up) it prints this engine's figures alone.
#
# Environment: BENCH_DIR (models; default build/bench), BENCH_TYPES (default "q8_0 q4_0 q4_k_m"),
# BENCH_THREADS (default "1 2"), BENCH_RUNS (default 3), BENCH_GEN (default 64 tokens),
# BENCH_KV (default f16, llama.cpp's default).
set -eu
SHAMMAH=${SHAMMAH:-build/shammah}
DIR=${BENCH_DIR:-build/bench}
TYPES=${BENCH_TYPES:-q8_0 q4_0 q4_k_m}
THREADS=${BENCH_THREADS:-1 2}
RUNS=${BENCH_RUNS:-3}
GEN=${BENCH_GEN:-64}
KV=${BENCH_KV:-f16}
VOCAB=tests/fixtures/vocab/ggml-vocab-qwen2.gguf
mkdir -p "$DIR"

REF=0
: "${LLAMA_REF_HOME:=$HOME/.cache/llama-ref}"
if [ -f "$LLAMA_REF_HOME/env.sh" ]; then
    . "$LLAMA_REF_HOME/env.sh"
    command -v llama_ref >/dev/null 2>&1 && REF=1
fi

# ~420-token prompt of plain English words (deterministic)
PROMPT=$(awk 'BEGIN { split("the quick brown fox jumps over a lazy dog while the model learns to speak and write code for every user who asks it a question about the world", w, " "); s = 1; for (i = 0; i < 400; i++) { s = (s * 1103515245 + 12345) % 2147483648; printf "%s ", w[int(s / 65536) % 31 + 1] } }')

model_for() { # type -> path (made if missing)
    t=$1
    f="$DIR/qwen2.5-0.5b-$t.gguf"
    if [ ! -f "$f" ]; then
        if [ "$t" = q4_k_m ] && [ $REF = 1 ] && command -v llama_quant >/dev/null 2>&1; then
            # the real Q4_K_M recipe (Q4_K with some Q6_K) needs llama.cpp's quantizer
            [ -f "$DIR/qwen2.5-0.5b-f16.gguf" ] || "$SHAMMAH" model synth --preset qwen2.5-0.5b \
                --type f16 --vocab "copy:$VOCAB" --out "$DIR/qwen2.5-0.5b-f16.gguf" >&2
            llama_quant "$DIR/qwen2.5-0.5b-f16.gguf" "$f" q4_k_m >/dev/null 2>&1
        else
            st=$t
            [ "$t" = q4_k_m ] && st=q4_k # without llama.cpp: all-Q4_K weights
            "$SHAMMAH" model synth --preset qwen2.5-0.5b --type "$st" --vocab "copy:$VOCAB" --out "$f" >&2
        fi
    fi
    echo "$f"
}

median() { sort -n | awk '{ a[NR] = $1 } END { if (NR == 0) print 0; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
echo "| weights | threads | prompt tok/s shammah | llama.cpp | ratio | decode tok/s shammah | llama.cpp | ratio |"
echo "|---|---|---|---|---|---|---|---|"
for t in $TYPES; do
    m=$(model_for "$t")
    for th in $THREADS; do
        : >"$TMP/s_pp"; : >"$TMP/s_tg"; : >"$TMP/r_pp"; : >"$TMP/r_tg"
        r=0
        while [ $r -lt "$RUNS" ]; do
            "$SHAMMAH" run -m "$m" -p "$PROMPT" -n "$GEN" --temp 0 --ignore-eos --kv "$KV" -t "$th" --json >"$TMP/s.json"
            sed 's/.*"prompt_per_second":\([0-9.e+-]*\).*/\1/' "$TMP/s.json" >>"$TMP/s_pp"
            sed 's/.*"predicted_per_second":\([0-9.e+-]*\).*/\1/' "$TMP/s.json" >>"$TMP/s_tg"
            if [ $REF = 1 ]; then
                llama_ref -m "$m" -p "$PROMPT" -n "$GEN" -t "$th" --kv "$KV" >"$TMP/r.txt" 2>&1
                sed -n 's/^prompt_eval:.* = \([0-9.]*\) tok\/s.*/\1/p' "$TMP/r.txt" >>"$TMP/r_pp"
                sed -n 's/^generation:.* = \([0-9.]*\) tok\/s.*/\1/p' "$TMP/r.txt" >>"$TMP/r_tg"
            fi
            r=$((r + 1))
        done
        spp=$(median <"$TMP/s_pp"); stg=$(median <"$TMP/s_tg")
        if [ $REF = 1 ]; then
            rpp=$(median <"$TMP/r_pp"); rtg=$(median <"$TMP/r_tg")
            awk -v t="$t" -v th="$th" -v a="$spp" -v b="$rpp" -v c="$stg" -v d="$rtg" 'BEGIN {
                printf "| %s | %s | %.1f | %.1f | %.2f | %.1f | %.1f | %.2f |\n", t, th, a, b, (b > 0 ? a / b : 0), c, d, (d > 0 ? c / d : 0) }'
        else
            awk -v t="$t" -v th="$th" -v a="$spp" -v c="$stg" 'BEGIN {
                printf "| %s | %s | %.1f | - | - | %.1f | - | - |\n", t, th, a, c }'
        fi
    done
done
