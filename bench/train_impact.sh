#!/bin/sh
# bench/train_impact.sh - what learning costs (issue 7), on a Qwen2.5-0.5B-shaped Q8_0 model
# (real Qwen vocabulary, random weights):
#   (1) `shammah train` LoRA throughput (tok/s from its final line), 1 epoch over ~20 chat
#       examples of ~100 tokens, at each of TI_TRAIN_THREADS;
#   (2) the daemon's serving speed without and while a training run (POST /v1/training/run on
#       40 queued feedback examples) is active, and with the trained adapter served after it.
#       Each example's answer is longer than [training] max_seq_len, so every one is cut and the
#       adapter does not learn to stop early: the answers after training keep their length.
#       The daemon's trainer uses 1 thread and waits between optimizer steps while requests are
#       generating, so (2) measures what is left: steps already under way when a request comes.
#
# A measurement pass = TI_REQUESTS sequential streaming chat requests then TI_CONCURRENT at
# once, each with a different ~100-token prompt (no prefix-cache hits beyond the system
# prompt), max_tokens TI_MAX_TOKENS, temperature 0. Per request: TTFT (request sent -> first
# content delta, curl start-up included), decode tok/s ((completion_tokens - 1) / (end - first
# delta)); per concurrent batch: aggregate completion tok/s. A round = baseline pass (base
# model), queue feedback + start a run, passes while the run stays active (a pass is kept only
# if the run was active from its start to its end), wait for the end, one pass with the new
# adapter served, back to the base model. TI_ROUNDS rounds alternate baseline and training;
# medians over all kept samples.
#
# Environment: SHAMMAH (default build/shammah), BENCH_DIR (models; default /tmp/shammah-bench),
# MODEL (a GGUF to use instead), SMALL=1 (tiny model: a quick self-test of this script),
# TI_TRAIN_THREADS ("1 2"), TI_ROUNDS (2), TI_REQUESTS (6), TI_CONCURRENT (4),
# TI_MAX_TOKENS (32), TI_FEEDBACK (40), TI_EPOCHS (daemon run epochs: 1),
# TI_SEQ (daemon max_seq_len: 40), TI_BATCH (daemon batch_size: 4), TI_CAP (seconds a run
# may take before the script gives up on it: 300), TI_SKIP_TRAIN=1 / TI_SKIP_SERVE=1.
set -u
SHAMMAH=${SHAMMAH:-build/shammah}
DIR=${BENCH_DIR:-/tmp/shammah-bench}
SMALL=${SMALL:-0}
MODEL=${MODEL:-}
TRAIN_THREADS=${TI_TRAIN_THREADS:-1 2}
ROUNDS=${TI_ROUNDS:-2}
NREQ=${TI_REQUESTS:-6}
NCONC=${TI_CONCURRENT:-4}
MAXTOK=${TI_MAX_TOKENS:-32}
NFB=${TI_FEEDBACK:-40}
EPOCHS=${TI_EPOCHS:-1}
SEQ=${TI_SEQ:-40}
BATCH=${TI_BATCH:-4}
CAP=${TI_CAP:-300}
VOCAB=tests/fixtures/vocab/ggml-vocab-qwen2.gguf

die() { echo "train_impact: $*" >&2; exit 1; }
[ -x "$SHAMMAH" ] || die "$SHAMMAH not built (make, or SHAMMAH=path)"
command -v curl >/dev/null 2>&1 || die "curl is needed"
case $(date +%N) in *[!0-9]* | "") die "date +%N (GNU date) is needed for timings" ;; esac
now() { date +%s.%N; }
say() { echo "# $*" >&2; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%d", b - a }'; } # whole seconds
TO=""
command -v timeout >/dev/null 2>&1 && TO="timeout $((CAP * 2))"

mkdir -p "$DIR" || die "cannot create $DIR"
T=$(mktemp -d)
DPID=""
cleanup() {
    [ -n "$DPID" ] && kill "$DPID" 2>/dev/null && wait "$DPID" 2>/dev/null
    rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- the model ----
if [ -n "$MODEL" ]; then
    [ -f "$MODEL" ] || die "MODEL=$MODEL: no such file"
    M=$MODEL
    SYNTH="(given: MODEL=$MODEL)"
elif [ "$SMALL" = 1 ]; then
    M=$DIR/small-qwen2-q8_0.gguf
    SYNTH="$SHAMMAH model synth --arch qwen2 --type q8_0 --embd 64 --heads 4 --kv-heads 2 --ff 128 --layers 2 --tie --seed 11 --ctx 1024 --vocab copy:$VOCAB --out $M"
else
    M=$DIR/qwen2.5-0.5b-q8_0.gguf
    SYNTH="$SHAMMAH model synth --preset qwen2.5-0.5b --type q8_0 --vocab copy:$VOCAB --out $M"
fi
if [ ! -f "$M" ]; then
    [ -f "$VOCAB" ] || die "$VOCAB not found: run from the repository root"
    echo "making $M" >&2
    if [ "$SMALL" = 1 ]; then
        "$SHAMMAH" model synth --arch qwen2 --type q8_0 --embd 64 --heads 4 --kv-heads 2 --ff 128 --layers 2 \
            --tie --seed 11 --ctx 1024 --vocab "copy:$VOCAB" --out "$M" >/dev/null
    else
        "$SHAMMAH" model synth --preset qwen2.5-0.5b --type q8_0 --vocab "copy:$VOCAB" --out "$M" >/dev/null
    fi || die "model synth failed"
fi

# ---- deterministic text (awk's own LCG: the same words on every machine) ----
words() { # n seed -> n words
    awk -v n="$1" -v s="$2" 'BEGIN { k = split("the quick brown fox jumps over a lazy dog while the model learns to speak and write code for every user who asks it a question about the world", w, " ")
        for (i = 0; i < n; i++) { s = (s * 1103515245 + 12345) % 2147483648; printf "%s%s", (i ? " " : ""), w[int(s / 65536) % k + 1] } }'
}
median() { sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

echo "# train_impact: model $M"
echo "# model: $SYNTH"

# ---- (1) shammah train throughput ----
TRAIN_RESULT=""
if [ "${TI_SKIP_TRAIN:-0}" != 1 ]; then
    i=0
    : >"$T/train.jsonl"
    while [ $i -lt 20 ]; do
        q=$(words 25 $((i * 7 + 1)))
        a=$(words 55 $((i * 7 + 3)))
        printf '{"messages":[{"role":"user","content":"Question %d: %s?"},{"role":"assistant","content":"%s."}]}\n' "$i" "$q" "$a" >>"$T/train.jsonl"
        i=$((i + 1))
    done
    for th in $TRAIN_THREADS; do
        cmd="$SHAMMAH train --data $T/train.jsonl -m $M -o $T/a.gguf --epochs 1 --batch-size 4 --max-seq-len 256 -t $th -q"
        say "shammah train -t $th"
        # shellcheck disable=SC2086 # TO: "timeout N" or nothing
        $TO "$SHAMMAH" train --data "$T/train.jsonl" -m "$M" -o "$T/a.gguf" --epochs 1 --batch-size 4 \
            --max-seq-len 256 -t "$th" -q 2>"$T/train.log" || { cat "$T/train.log" >&2; die "shammah train -t $th failed"; }
        info=$(sed -n 's/^shammah train: \([0-9]* examples, [0-9]* tokens\).*/\1/p' "$T/train.log")
        tps=$(sed -n 's/^shammah train: loss .*, \([0-9]*\) steps, \([0-9.]*\) tok\/s.*/\2/p' "$T/train.log")
        steps=$(sed -n 's/^shammah train: loss .*, \([0-9]*\) steps, .*/\1/p' "$T/train.log")
        TRAIN_RESULT="$TRAIN_RESULT| $th | $info | $steps | ${tps:-?} |
"
        echo "# train: $cmd" | sed "s|$T|\$TMP|g"
    done
fi

# ---- (2) serving with and without a training run ----
if [ "${TI_SKIP_SERVE:-0}" != 1 ]; then
    export SHAMMAH_HOME="$T/home"
    mkdir -p "$SHAMMAH_HOME"
    printf '[training]\nenabled = false\nepochs = %d\nmax_seq_len = %d\nbatch_size = %d\n' \
        "$EPOCHS" "$SEQ" "$BATCH" >"$SHAMMAH_HOME/config.toml"
    # a random loopback port; a taken one makes the daemon exit, and another is tried
    tries=0
    while :; do
        tries=$((tries + 1))
        [ $tries -gt 8 ] && { cat "$T/daemon.log" >&2; die "the daemon did not start"; }
        PORT=$(awk -v s="$$$tries" 'BEGIN { srand(s); print 20000 + int(rand() * 40000) }')
        URL=http://127.0.0.1:$PORT
        curl -s -o /dev/null --max-time 1 "$URL/" && continue # someone is there
        DCMD="$SHAMMAH daemon --bind 127.0.0.1:$PORT -m $M -t 2 --ctx 1024"
        "$SHAMMAH" daemon --bind "127.0.0.1:$PORT" -m "$M" -t 2 --ctx 1024 2>"$T/daemon.log" &
        DPID=$!
        i=0
        while [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$URL/health")" != 200 ]; do
            kill -0 "$DPID" 2>/dev/null || break
            i=$((i + 1))
            [ $i -gt 600 ] && die "the daemon did not become healthy in 60 s"
            sleep 0.1
        done
        if kill -0 "$DPID" 2>/dev/null; then break; fi
        wait "$DPID" 2>/dev/null
        DPID=""
    done

    PROMPT_BASE=$(words 90 4242)
    REQ_SEQ=0
    # one streaming request; writes "t0 t_first t_end completion_tokens" to $1
    one_req() {
        body=$(printf '{"model":"x","stream":true,"stream_options":{"include_usage":true},"max_tokens":%d,"temperature":0,"messages":[{"role":"user","content":"Request %d. %s"}]}' \
            "$MAXTOK" "$2" "$PROMPT_BASE")
        t0=$(now)
        curl -sN --max-time 300 -H 'content-type: application/json' -d "$body" "$URL/v1/chat/completions" 2>/dev/null | {
            tf=0
            : >"$1.raw"
            while IFS= read -r line; do
                printf '%s\n' "$line" >>"$1.raw"
                case $line in *'"delta":{"content":"'[!\"]*) tf=$(now); break ;; esac
            done
            cat >>"$1.raw"
            t1=$(now)
            n=$(sed -n 's/.*"completion_tokens":\([0-9]*\).*/\1/p' "$1.raw" | tail -n 1)
            echo "$t0 $tf $t1 ${n:-0}" >"$1"
        }
    }
    # one pass; appends samples to $T/<phase>.{ttft,dec,agg,cttft} ; returns 1 on a failed request
    pass() {
        ph=$1
        : >"$T/pass.ttft"; : >"$T/pass.dec"; : >"$T/pass.agg"; : >"$T/pass.cttft"; : >"$T/pass.tok"
        k=0
        while [ $k -lt "$NREQ" ]; do
            REQ_SEQ=$((REQ_SEQ + 1))
            one_req "$T/r" "$REQ_SEQ"
            awk '$2 > 0 && $4 > 0 { printf "%.4f\n", $2 - $1 }' "$T/r" >>"$T/pass.ttft"
            awk '$2 > 0 && $4 > 1 && $3 > $2 { printf "%.3f\n", ($4 - 1) / ($3 - $2) }' "$T/r" >>"$T/pass.dec"
            awk '{ print $4 }' "$T/r" >>"$T/pass.tok"
            awk '!($2 > 0 && $4 > 0) { exit 1 }' "$T/r" || { echo "request failed:" >&2; cat "$T/r.raw" >&2; return 1; }
            k=$((k + 1))
        done
        pids=""
        k=0
        while [ $k -lt "$NCONC" ]; do
            REQ_SEQ=$((REQ_SEQ + 1))
            one_req "$T/c$k.out" "$REQ_SEQ" &
            pids="$pids $!"
            k=$((k + 1))
        done
        for p in $pids; do wait "$p"; done # not a bare wait: the daemon is a child too
        if [ "$NCONC" -gt 0 ]; then
            cat "$T"/c*.out | awk '$2 > 0 && $4 > 0 { printf "%.4f\n", $2 - $1 }' >>"$T/pass.cttft"
            cat "$T"/c*.out | awk 'NR == 1 || $1 < a { a = $1 } NR == 1 || $3 > b { b = $3 } { n += $4; bad += !($4 > 0) }
                END { if (!bad && b > a) printf "%.3f\n", n / (b - a); else exit 1 }' >>"$T/pass.agg" ||
                { echo "a concurrent request failed" >&2; return 1; }
            rm -f "$T"/c*.out "$T"/c*.out.raw
        fi
        return 0
    }
    keep() { # phase: the last pass's samples join the phase's
        for x in ttft dec agg cttft tok; do cat "$T/pass.$x" >>"$T/$1.$x"; done
    }
    active() { curl -s --max-time 5 "$URL/v1/training/status" | grep -q '"active":true'; }
    for ph in base train after; do for x in ttft dec agg cttft tok; do : >"$T/$ph.$x"; done; done

    # warm-up: page the weights in, fill the caches
    one_req "$T/r" 0
    awk '$2 > 0 && $4 > 0 { ok = 1 } END { exit !ok }' "$T/r" || { cat "$T/r.raw" "$T/daemon.log" >&2; die "warm-up request failed"; }
    KEPT_TRAIN=0
    DROPPED=0
    RUNS_DONE=0
    RUN_SECONDS=""
    FB=0
    NOTE=""
    r=1
    while [ "$r" -le "$ROUNDS" ]; do
        say "round $r/$ROUNDS: baseline pass"
        pass base || die "baseline pass failed"
        keep base
        k=0
        while [ $k -lt "$NFB" ]; do
            # a short question and an answer longer than max_seq_len: every example is cut, so
            # the adapter never learns to end early (the "with adapter" pass stays comparable)
            FB=$((FB + 1))
            a=$(words 60 $((FB * 13 + 9)))
            code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 -H 'content-type: application/json' \
                -d "{\"query\":\"Item $FB?\",\"response\":\"$a.\",\"weight\":\"good\"}" "$URL/v1/feedback")
            [ "$code" = 200 ] || die "POST /v1/feedback answered $code"
            k=$((k + 1))
        done
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 -X POST "$URL/v1/training/run")
        [ "$code" = 202 ] || die "POST /v1/training/run answered $code"
        ts=$(now)
        say "round $r/$ROUNDS: $NFB feedback examples queued, run started; passes while it is active"
        started=0
        capped=0
        while :; do
            [ "$(since "$ts")" -ge "$CAP" ] && { capped=1; break; }
            active || break
            started=1
            pass train || die "pass during training failed"
            if active; then
                keep train
                KEPT_TRAIN=$((KEPT_TRAIN + 1))
                say "  pass kept ($(curl -s --max-time 5 "$URL/v1/training/status" | sed -n 's/.*"step":\([0-9]*\),"steps":\([0-9]*\).*/step \1 of \2/p'))"
            else
                DROPPED=$((DROPPED + 1))
                say "  pass dropped: the run ended during it"
                break
            fi
        done
        [ $started = 1 ] || say "round $r: the run ended before the first pass (more TI_FEEDBACK or TI_EPOCHS)"
        while [ $capped = 0 ] && active; do
            [ "$(since "$ts")" -ge "$CAP" ] && capped=1
            sleep 0.5
        done
        if [ $capped = 1 ]; then
            # no way to cancel a run but stopping the daemon: report what was measured
            NOTE="round $r: the run was still active after TI_CAP=$CAP s; stopped there (fewer TI_FEEDBACK, smaller TI_SEQ)"
            say "$NOTE"
            break
        fi
        RUN_SECONDS="$RUN_SECONDS $(since "$ts")"
        st=$(curl -s --max-time 5 "$URL/v1/training/status")
        case $st in *'"error":""'*) ;; *) die "training run failed: $st" ;; esac
        RUNS_DONE=$((RUNS_DONE + 1))
        say "round $r/$ROUNDS: run done in $(since "$ts") s; pass with the adapter"
        pass after || die "pass after training failed"
        keep after
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 30 -X POST "$URL/v1/adapters/none/activate")
        [ "$code" = 200 ] || die "back to the base model: HTTP $code"
        r=$((r + 1))
    done
    LAST_STATUS=$(curl -s --max-time 5 "$URL/v1/training/status")
fi

# ---- report ----
echo
if [ -n "$TRAIN_RESULT" ]; then
    echo "## shammah train (LoRA rank 16, attn_q/k/v/output, 1 epoch, batch 4)"
    echo "| threads | data | steps | tok/s |"
    echo "|---|---|---|---|"
    printf '%s' "$TRAIN_RESULT"
    echo
fi
if [ "${TI_SKIP_SERVE:-0}" != 1 ]; then
    echo "## serving while the daemon trains ($DCMD)"
    echo "# [training] epochs = $EPOCHS, max_seq_len = $SEQ, batch_size = $BATCH; $NFB feedback examples a run"
    echo "# $ROUNDS rounds, $RUNS_DONE runs (seconds each:$RUN_SECONDS); passes kept while training: $KEPT_TRAIN (dropped, run ended during it: $DROPPED)"
    echo "# a pass: $NREQ sequential + $NCONC concurrent streaming requests, max_tokens $MAXTOK, temperature 0"
    echo "# request: curl -sN -H 'content-type: application/json' $URL/v1/chat/completions -d '{\"model\":\"x\",\"stream\":true,\"stream_options\":{\"include_usage\":true},\"max_tokens\":$MAXTOK,\"temperature\":0,\"messages\":[{\"role\":\"user\",\"content\":\"Request N. <90 words>\"}]}'"
    echo "# feedback: curl $URL/v1/feedback -d '{\"query\":\"Item N?\",\"response\":\"<60 words>.\",\"weight\":\"good\"}' ($NFB times), then curl -X POST $URL/v1/training/run"
    m() { median <"$T/$1.$2"; }
    cnt() { wc -l <"$T/$1.$2" | tr -d ' '; }
    pct() { awk -v a="$1" -v b="$2" -v inv="$3" 'BEGIN { if (a == "-" || b == "-" || a <= 0 || b <= 0) print "-"; else if (inv) printf "%+.1f %%\n", (b / a - 1) * 100; else printf "%+.1f %%\n", (1 - b / a) * 100 }'; }
    echo "| measure (median) | baseline | while training | slowdown | with adapter | slowdown |"
    echo "|---|---|---|---|---|---|"
    fmt() { awk -v v="$1" -v f="$2" 'BEGIN { if (v == "nan") print "-"; else printf f "\n", v }'; }
    row() { # label kind inv (inv=1: a time, bigger = slower)
        if [ "$3" = 1 ]; then f=%.3f; else f=%.1f; fi
        b=$(fmt "$(m base "$2")" $f); t=$(fmt "$(m train "$2")" $f); a=$(fmt "$(m after "$2")" $f)
        printf "| %s (n = %s/%s/%s) | %s | %s | %s | %s | %s |\n" "$1" "$(cnt base "$2")" "$(cnt train "$2")" "$(cnt after "$2")" \
            "$b" "$t" "$(pct "$b" "$t" "$3")" "$a" "$(pct "$b" "$a" "$3")"
    }
    row "TTFT s, sequential" ttft 1
    row "decode tok/s, sequential" dec 0
    row "TTFT s, $NCONC concurrent" cttft 1
    row "aggregate tok/s, $NCONC concurrent" agg 0
    printf '| completion tokens, sequential | %s | %s | | %s | |\n' "$(m base tok)" "$(m train tok)" "$(m after tok)"
    [ -n "$NOTE" ] && echo "# NOTE: $NOTE"
    echo "# slowdown: TTFT = how much longer; tok/s = how much fewer. Last status: $LAST_STATUS"
fi
