#!/bin/sh
# Direct mode (the engine in the shammah process, no daemon: `query --direct`, `shammah --direct`,
# [client] use_daemon = false) and `shammah feedback` (the last exchange of query / the REPL,
# sent to the daemon's /v1/feedback, auto-spawned).
# Run from the repository root with BUILD set (tests/run.sh does).
set -u
. tests/lib/integration.sh
SH=$(cd "$BUILD" && pwd)/shammah # absolute: the REPL runs in tmux
unset SHAMMAH_MODEL
cleanup_hook() { SHAMMAH_HOME="$T/home" "$SH" daemon-stop >/dev/null 2>&1; }
one_line() { test "$(wc -l <"$1")" -eq 1; }
no_daemon() { test ! -e "$SHAMMAH_HOME/daemon.pid" && ! curl -s -o /dev/null "http://127.0.0.1:$PORT/health"; }
pending() { curl -s "http://127.0.0.1:$PORT/v1/training/status" | sed -n 's/.*"pending":\([0-9]*\).*/\1/p'; }

synth_model "$T/m.gguf" --seed 5 || exit 1
PORT=$(free_port)
write_config() { # use_daemon auto_spawn
    cat >"$SHAMMAH_HOME/config.toml" <<EOF
[client]
daemon_address = "127.0.0.1:$PORT"
use_daemon = $1
auto_spawn = $2
timeout_seconds = 30
[backend]
model = "$T/m.gguf"
ctx = 2048
threads = 2
EOF
}
write_config true true

# ---- query --direct: an answer, no daemon ----
"$SH" query --direct -m "$T/m.gguf" -n 12 "hi" >"$T/o" 2>"$T/e"
check "query --direct exit 0" test $? -eq 0
check "query --direct answered" test -s "$T/o"
check "query --direct: stderr empty" test ! -s "$T/e"
check "query --direct started no daemon" no_daemon
check "the exchange is kept" grep -q '"query":"hi","response":"..*"' "$SHAMMAH_HOME/last_exchange.json"
check "no temporary file left" sh -c "! ls '$SHAMMAH_HOME' | grep -q tmp"
"$SH" query --direct -n 6 "the configured model" >"$T/o" 2>"$T/e"
check "query --direct with [backend] model" sh -c "test -s '$T/o' && test ! -s '$T/e'"
write_config false true
echo "from a pipe" | "$SH" query -n 6 >"$T/o" 2>"$T/e"
check "use_daemon = false: answered" sh -c "test -s '$T/o' && test ! -s '$T/e'"
check "use_daemon = false: no daemon" no_daemon
write_config true true

# ---- errors: one line, non-zero ----
"$SH" query --direct -m "$T/missing.gguf" hi >"$T/o" 2>"$T/e"
rc=$?
check "missing model: non-zero exit" test $rc -ne 0 -a $rc -lt 128
check "missing model: one line naming it" sh -c "one_line() { test \$(wc -l <\"\$1\") -eq 1; }; one_line '$T/e' && grep -q missing.gguf '$T/e'"
check "missing model: nothing on stdout" test ! -s "$T/o"
echo "not a model" >"$T/junk.gguf"
"$SH" query --direct -m "$T/junk.gguf" hi >"$T/o" 2>"$T/e"
rc=$?
check "broken model: non-zero, one line" sh -c "test $rc -ne 0 && test \$(wc -l <'$T/e') -eq 1"
"$SH" query --direct -m "$T/m.gguf" --system "$(head -c 20000 /dev/zero | tr '\0' 'x' | sed 's/x/word /g')" hi >"$T/o" 2>"$T/e"
rc=$?
check "prompt over the context: non-zero, one line" sh -c "test $rc -ne 0 && test \$(wc -l <'$T/e') -eq 1 && grep -q context '$T/e'"
check "still no daemon" no_daemon

# ---- feedback before any daemon: no last exchange, bad weights ----
H2="$T/home2"
mkdir -p "$H2"
cp "$SHAMMAH_HOME/config.toml" "$H2/"
SHAMMAH_HOME="$H2" "$SH" feedback good >"$T/o" 2>"$T/e"
rc=$?
check "feedback without an exchange: exit 1" test $rc -eq 1
check "feedback without an exchange: says so" sh -c "one_line() { test \$(wc -l <\"\$1\") -eq 1; }; one_line '$T/e' && grep -q 'no last exchange' '$T/e'"
for w in 0 -2 bogus 1001 nan; do
    "$SH" feedback "$w" >"$T/o" 2>"$T/e"
    rc=$?
    check "feedback weight '$w': exit 2, one line" sh -c "test $rc -eq 2 && test \$(wc -l <'$T/e') -eq 1"
done
"$SH" feedback good --query only >"$T/o" 2>"$T/e"
check "--query without --response: exit 2" test $? -eq 2
check "weights are checked before any daemon" no_daemon

# ---- the same greedy answer from the daemon and in-process ----
Q="Write a haiku about the sea"
"$SH" query --direct --temp 0 -n 24 --system "Be brief." "$Q" >"$T/direct" 2>"$T/e" || cat "$T/e"
"$SH" query --temp 0 -n 24 --system "Be brief." "$Q" >"$T/daemon" 2>"$T/e"
check "daemon query (auto-spawned) exit 0" test $? -eq 0
check "greedy: direct mode = the daemon" cmp -s "$T/direct" "$T/daemon"
check "the daemon answered something" test -s "$T/daemon"

# ---- shammah feedback: the last exchange, to the daemon ----
P0=$(pending)
"$SH" feedback critical "the haiku has no sea" >"$T/o" 2>"$T/e"
check "feedback exit 0" test $? -eq 0
check "feedback prints its id and weight" grep -Eq '^feedback queued \(id [0-9]+, weight 10\)$' "$T/o"
check "feedback: stderr empty" test ! -s "$T/e"
check "feedback pending +1" test "$(pending)" -eq $((P0 + 1))
"$SH" feedback 2.5 --query "What is 2+2?" --response "5" >"$T/o" 2>"$T/e"
check "feedback --query/--response" grep -q 'weight 2.5)' "$T/o"
check "feedback pending +2" test "$(pending)" -eq $((P0 + 2))
if command -v sqlite3 >/dev/null 2>&1; then
    sqlite3 "$SHAMMAH_HOME/shammah.db" "select weight, messages, note from feedback order by id" >"$T/db" 2>&1
    check "stored: the last exchange with its note" grep -q "^10.0|.*Write a haiku about the sea.*|the haiku has no sea$" "$T/db"
    check "stored: the given exchange" grep -q '^2.5|.*What is 2+2?.*"5"' "$T/db"
fi
printf 'a question\n/feedback good nice answer\n/feedback 0\n' | "$SH" -n 6 >"$T/o" 2>"$T/e"
check "REPL /feedback queues" grep -Eq '^feedback queued \(id [0-9]+, weight 1\)$' "$T/o"
check "REPL /feedback bad weight: usage" grep -q '^usage: /feedback' "$T/o"
check "feedback pending +3" test "$(pending)" -eq $((P0 + 3))
check "the REPL kept its exchange" grep -q '"query":"a question"' "$SHAMMAH_HOME/last_exchange.json"
"$SH" daemon-stop >/dev/null 2>&1
"$SH" feedback medium >"$T/o" 2>"$T/e"
check "feedback starts the daemon when none runs" grep -q 'weight 3)' "$T/o"
"$SH" daemon-stop >/dev/null 2>&1
write_config true false
"$SH" feedback good >"$T/o" 2>"$T/e"
rc=$?
check "feedback, daemon unreachable: exit 1, one line" sh -c "test $rc -eq 1 && test \$(wc -l <'$T/e') -eq 1"
check "feedback, daemon unreachable: says so" grep -q "no shammah daemon answers" "$T/e"
write_config true true

# ---- the REPL in direct mode ----
printf 'first question\n/daemon\n/model\nsecond question\n' | "$SH" --direct -n 6 >"$T/o" 2>"$T/e"
check "REPL --direct exit 0" test $? -eq 0
check "/daemon says direct mode" grep -q '^direct mode: the model runs in this process' "$T/o"
check "/model names the model" grep -q '^model: m (qwen2, .*in this process' "$T/o"
check "REPL --direct: no daemon" no_daemon
check "REPL --direct kept the last exchange" grep -q '"query":"second question"' "$SHAMMAH_HOME/last_exchange.json"
printf 'hello\n' | "$SH" repl --direct -m "$T/missing.gguf" >"$T/o" 2>"$T/e"
check "REPL --direct, missing model: exit 1, one line" sh -c "test $? -eq 1 && test \$(wc -l <'$T/e') -eq 1"
if command -v tmux >/dev/null 2>&1; then
    write_config false true
    tm new-session -d -s repl -x 150 -y 50 "env SHAMMAH_HOME='$SHAMMAH_HOME' '$SH'"
    check "REPL banner says direct mode" wait_for 'direct mode: no daemon' 50
    wait_for '^> *$' 30 >/dev/null
    check "Ctrl-C cancels a direct generation" repl_cancel_story 0.8
    check "prompt after the cancel" wait_for '^> *$' 30
    tm send-keys -t repl '/quit' Enter
    write_config true true
fi
check "no daemon at the end" no_daemon

report direct
