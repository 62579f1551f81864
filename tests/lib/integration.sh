# integration.sh - what every tests/integration/*.sh script shares; sourced from the
# repository root (`. tests/lib/integration.sh`), not run. It lives outside tests/integration/
# because tests/run.sh runs every script there as a test.
#
# On sourcing: BUILD (default build), SH = $BUILD/shammah, VOCAB (the Qwen2 vocabulary
# fixture), a temporary directory T with SHAMMAH_HOME = $T/home in it (so nothing touches the
# user's home), the counters pass / fail, DPID = "" (the daemon started by start_daemon), and
# traps that on exit run cleanup_hook (a script's own cleanup: define it after sourcing), stop
# the daemon, end a tmux server on $TMUX_SOCK and remove T.
# POSIX sh: the scripts run under dash.

BUILD=${BUILD:-build}
SH=$BUILD/shammah
VOCAB=tests/fixtures/vocab/ggml-vocab-qwen2.gguf
T=$(mktemp -d) || exit 1
export SHAMMAH_HOME="$T/home"
mkdir -p "$SHAMMAH_HOME"
TMUX_SOCK="$T/tmux.sock"
pass=0
fail=0
DPID=""

cleanup_hook() { :; }
# stop_daemon: ends the daemon of start_daemon (if any) and waits for it
stop_daemon() { [ -n "$DPID" ] && kill "$DPID" 2>/dev/null && wait "$DPID" 2>/dev/null; DPID=""; }
cleanup() {
    cleanup_hook
    stop_daemon
    [ -S "$TMUX_SOCK" ] && tmux -S "$TMUX_SOCK" kill-server 2>/dev/null
    rm -rf "$T"
}
trap cleanup EXIT
# without this a signal would end the script without the EXIT trap, leaving daemons behind
trap 'exit 1' INT TERM

ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }
check() { # name, condition command...
    n=$1
    shift
    if "$@"; then ok; else bad "$n"; fi
}
# report NAME [NOTE]: the final "NAME: N passed, N failed" line; its status is the script's
report() {
    echo "$1: $pass passed, $fail failed${2:+ $2}"
    [ "$fail" -eq 0 ]
}

free_port() {
    node -e "const s=require('net').createServer();s.listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})"
}

# synth_model OUT [ARGS...]: a small qwen2 model (Q8_0, 2 layers of 64, tied embeddings, context
# 4096, the Qwen2 vocabulary) made by the project's generator; ARGS override any of these
# (the last value of an option wins), except --tie.
synth_model() {
    out=$1
    shift
    "$SH" model synth --arch qwen2 --type q8_0 --embd 64 --heads 4 --kv-heads 2 --ff 128 --layers 2 \
        --tie --ctx 4096 --vocab "copy:$VOCAB" "$@" --out "$out" >/dev/null
}

# wait_healthy URL PID LOG [CODE]: polls URL/health until it answers CODE (default 200); gives
# up after 300 polls (at least 30 s: a busy machine loads a model slowly) or as soon as PID
# has exited, printing why and the end of LOG, and returns 1.
wait_healthy() {
    i=0
    until [ "$(curl -s -o /dev/null -w '%{http_code}' "$1/health" 2>/dev/null)" = "${4:-200}" ]; do
        i=$((i + 1))
        if [ $i -gt 300 ] || ! kill -0 "$2" 2>/dev/null; then
            echo "daemon did not become healthy"
            tail -n 30 "$3"
            return 1
        fi
        sleep 0.1
    done
}

# start_daemon LOG ARGS...: `shammah daemon ARGS` in the background (stderr appended to LOG,
# pid in DPID); waits until $URL/health answers 200 and ends the script if it does not.
start_daemon() {
    log=$1
    shift
    "$SH" daemon "$@" 2>>"$log" &
    DPID=$!
    wait_healthy "$URL" "$DPID" "$log" || exit 1
}

# ---- the REPL in a pseudo-terminal: a tmux server of our own on $TMUX_SOCK ----
tm() { tmux -S "$TMUX_SOCK" "$@"; }
pane() { tm capture-pane -p -J -t repl -S -200 2>/dev/null; }
wait_for() { # regex, tenths of seconds: the regex on the REPL's screen
    i=0
    while [ $i -lt "$2" ]; do
        pane | grep -Eq -- "$1" && return 0
        sleep 0.1
        i=$((i + 1))
    done
    echo "--- pane:"; pane | tail -15
    return 1
}

# Asks the REPL for a long answer and presses Ctrl-C after PAUSE seconds. The random test
# models may end their turn on their own before the Ctrl-C lands: then ask again (at most 3
# times). Returns 0 once "[canceled]" is shown.
repl_cancel_story() { # pause
    for attempt in 1 2 3; do
        tm send-keys -t repl 'tell me a long story' Enter
        sleep "$1"
        tm send-keys -t repl C-c
        wait_for '^\[canceled\]' 30 >/dev/null && return 0
        tm send-keys -t repl '/clear' Enter
    done
    return 1
}
