#!/bin/sh
# The tool loop end to end with a model that really emits tool calls: the REPL in a real
# pseudo-terminal (tmux) runs tests/fixtures/models/toolcall.gguf (trained by
# tests/fixtures/models/make_toolcall.sh on the REPL's own tools prompt). Asked "run the tool
# test", the model calls bash `touch toolloop.ran`; after the tool result it answers
# "The command ran: toolloop ok.", after a denial "The command was denied; nothing ran.".
# Checked: direct mode (engine in the REPL) approve once and deny; the daemon (tool-call
# parsing on the server, the client's loop over HTTP) approve once and deny.
# Run from the repository root with BUILD set (tests/run.sh does).
set -u
. tests/lib/integration.sh
SH=$(cd "$BUILD" && pwd)/shammah # absolute: the REPL runs in tmux, in $T/work
MODEL=${TOOLLOOP_MODEL:-tests/fixtures/models/toolcall.gguf}
MODEL=$(cd "$(dirname "$MODEL")" && pwd)/$(basename "$MODEL")
mkdir -p "$T/work"
unset SHAMMAH_MODEL
# a step the rest depends on: stop at its failure (the later waits would only time out)
must() {
    n=$1
    shift
    if "$@"; then
        ok
        return 0
    fi
    bad "$n"
    report toolloop "(stopped at the first broken step)"
    exit 1
}

if ! command -v tmux >/dev/null 2>&1; then
    echo "NOTE: tmux not installed: the tool loop tests need a pseudo-terminal"
    echo "toolloop: 0 passed, 1 failed"
    exit 1
fi
[ -f "$MODEL" ] || { echo "FAIL: no fixture model $MODEL"; exit 1; }

PORT=$(free_port)
URL=http://127.0.0.1:$PORT
# auto_spawn off: the direct-mode part must not start a daemon, the daemon part uses ours
cat >"$SHAMMAH_HOME/config.toml" <<EOF
[client]
daemon_address = "127.0.0.1:$PORT"
auto_spawn = false
timeout_seconds = 30
[backend]
ctx = 4096
threads = 2
EOF

# the library's pane and wait_for redefined: more history, and waits bounded in wall-clock
# time (a loaded machine makes each poll slower)
pane() { tm capture-pane -p -J -t repl -S -300 2>/dev/null; }
wait_for() { # regex, tenths of seconds
    end=$(($(date +%s) + ($2 + 9) / 10))
    while :; do
        pane | grep -Eq -- "$1" && return 0
        [ "$(date +%s)" -ge "$end" ] && break
        sleep 0.1
    done
    echo "--- pane (waiting for: $1):"
    pane | grep -v '^ *$' | tail -15
    return 1
}
count() { pane | grep -Ec -- "$1"; }
wait_count() { # regex, count, tenths of seconds: the regex on at least count lines
    end=$(($(date +%s) + ($3 + 9) / 10))
    while :; do
        [ "$(count "$1")" -ge "$2" ] && return 0
        [ "$(date +%s)" -ge "$end" ] && break
        sleep 0.1
    done
    echo "--- pane (waiting for $2 x: $1):"
    pane | grep -v '^ *$' | tail -15
    return 1
}
start_repl() { # shammah arguments
    tm new-session -d -s repl -x 160 -y 50 -c "$T/work" "env SHAMMAH_HOME='$SHAMMAH_HOME' '$SH' $*"
}
quit_repl() {
    tm send-keys -t repl '/quit' Enter
    i=0
    while tm has-session -t repl 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
    tm kill-session -t repl 2>/dev/null
}
MARK="$T/work/toolloop.ran"
CALL='● bash touch toolloop\.ran'
ASK='allow\? \[y\]es once'
RAN='^The command ran: toolloop ok\.'
DENIED='^The command was denied; nothing ran\.'

# One REPL conversation: the model calls the tool, the user approves (the command runs and
# the model answers from its result), then /clear, the same request, and the user denies.
approve_then_deny() { # label
    must "$1: prompt" wait_for '^> *$' 100
    tm send-keys -t repl 'run the tool test' Enter
    must "$1: the model's tool call is shown" wait_for "$CALL" 200
    must "$1: approval prompt" wait_for "$ASK" 50
    check "$1: nothing ran before the approval" test ! -e "$MARK"
    tm send-keys -t repl 'y' Enter
    check "$1: the result is shown" wait_for '│ \[exit code 0\]' 100
    must "$1: the model answers after the tool result" wait_for "$RAN" 200
    check "$1: the approved command ran" test -e "$MARK"
    check "$1: prompt after the answer" wait_for '^> *$' 50
    rm -f "$MARK"
    tm send-keys -t repl '/clear' Enter
    check "$1: /clear" wait_for '^\(new conversation\)' 50
    tm send-keys -t repl 'run the tool test' Enter
    check "$1: second tool call" wait_count "$CALL" 2 200
    must "$1: second approval prompt" wait_count "$ASK" 2 50
    tm send-keys -t repl 'n' Enter
    check "$1: the denial is reported" wait_for 'denied: denied by the user' 50
    check "$1: the model answers after the denial" wait_for "$DENIED" 200
    check "$1: the denied command did not run" test ! -e "$MARK"
}

start_repl "--direct -m '$MODEL'"
approve_then_deny direct
check "direct: no daemon was started" test ! -e "$SHAMMAH_HOME/daemon.pid"
quit_repl

start_daemon "$T/daemon.log" --bind "127.0.0.1:$PORT" -m "$MODEL" -t 2 --ctx 4096
start_repl ""
approve_then_deny daemon
quit_repl

report toolloop
