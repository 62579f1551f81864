#!/bin/sh
# eval.sh MODEL.gguf HELDOUT.tsv [SHAMMAH_BIN] - asks the model every held-out question
# (heldout.tsv from make_data.sh: id<TAB>keywords<TAB>question) greedily through its chat
# template and counts an answer right when it contains any of the fact's keywords (exact,
# case-sensitive substring; keywords separated by ' | ').
# Prints `ok|MISS id question => first 80 chars of the answer` per question, then
# `heldout: N/M right (P%)`. Exit 0 whatever the score; 2 on bad arguments.
set -u

usage() {
    echo "usage: sh eval.sh MODEL.gguf HELDOUT.tsv [SHAMMAH_BIN]" >&2
    exit 2
}

[ $# -ge 2 ] && [ $# -le 3 ] || usage
model=$1
held=$2
here=$(cd "$(dirname "$0")" && pwd) || exit 2
if [ $# -eq 3 ]; then
    bin=$3
elif [ -x build/shammah ]; then
    bin=build/shammah
else
    bin=$here/../../build/shammah
fi
[ -r "$held" ] || { echo "eval: cannot read $held" >&2; exit 2; }
[ -x "$bin" ] || { echo "eval: $bin is not an executable (build it with make)" >&2; exit 2; }
# the model may be a name that `shammah run -m` resolves, so only a path-looking one is checked
case $model in
*/* | *.gguf) [ -r "$model" ] || { echo "eval: cannot read $model" >&2; exit 2; } ;;
esac

tab=$(printf '\t')
total=0
right=0
while IFS="$tab" read -r id keys question; do
    [ -n "$id" ] || continue
    total=$((total + 1))
    # stdin from /dev/null: the loop itself reads the held-out file on stdin
    answer=$("$bin" run -m "$model" --chat -p "$question" -n 100 --temp 0 -t 2 2>/dev/null </dev/null)
    hit=0
    rest=$keys
    while :; do
        k=${rest%% | *}
        case $answer in
        *"$k"*) hit=1; break ;;
        esac
        [ "$k" = "$rest" ] && break
        rest=${rest#* | }
    done
    if [ $hit -eq 1 ]; then
        right=$((right + 1))
        mark=ok
    else
        mark=MISS
    fi
    # one line: newlines and tabs become spaces, then the first 80 characters
    short=$(printf '%s' "$answer" | awk 'BEGIN { ORS = "" } { gsub(/\t/, " "); if (NR > 1) print " "; print }' | awk '{ print substr($0, 1, 80) }')
    printf '%s %s %s => %s\n' "$mark" "$id" "$question" "$short"
done <"$held"

awk -v r="$right" -v t="$total" 'BEGIN { printf "heldout: %d/%d right (%.1f%%)\n", r, t, t ? 100 * r / t : 0 }'
exit 0
