#!/bin/sh
# Faults: kill -9 during a training run, what an interrupted adapter save leaves, and a disk
# that fills up while feedback is stored. After each, the next start must recover: no stale
# lock, nothing accepted lost, no half-written adapter served, no corrupted store.
set -u
. tests/lib/integration.sh
SH=$(cd "$BUILD" && pwd)/shammah
MNT=""
cleanup_hook() { # the daemon goes first: it holds files on the mount
    [ -n "$MNT" ] || return 0
    stop_daemon
    umount "$MNT" 2>/dev/null
}
PORT=$(free_port)
URL=http://127.0.0.1:$PORT
J='content-type: application/json'
# start_daemon [BLOCKS]: waits (bounded) until /health answers 200; BLOCKS: ulimit -f (the
# shell's unit: 512 or 1024 bytes)
start_daemon() {
    if [ $# -gt 0 ]; then
        sh -c "ulimit -f $1; exec \"\$0\" \"\$@\"" \
            "$SH" daemon --bind 127.0.0.1:$PORT -m "$T/m.gguf" -t 1 --ctx 256 2>>"$T/log" &
    else
        "$SH" daemon --bind 127.0.0.1:$PORT -m "$T/m.gguf" -t 1 --ctx 256 2>>"$T/log" &
    fi
    DPID=$!
    wait_healthy $URL $DPID "$T/log" || exit 1
}
kill9() { kill -9 "$DPID"; wait "$DPID" 2>/dev/null; DPID=""; }
status() { curl -s $URL/v1/training/status; }
pending() { status | sed 's/.*"pending":\([0-9]*\).*/\1/'; }
feedback() { # n: stores feedback n; prints the HTTP status
    curl -s -o "$T/fb" -w '%{http_code}' -H "$J" \
        -d "{\"query\":\"question $1\",\"response\":\"answer $1\",\"weight\":\"critical\"}" $URL/v1/feedback
}
chat_ok() {
    test "$(curl -s -o /dev/null -w '%{http_code}' -H "$J" -d '{"model":"x","max_tokens":2,"messages":[{"role":"user","content":"hi"}]}' $URL/v1/chat/completions)" = 200
}

synth_model "$T/m.gguf" --type f32 --seed 11 --ctx 2048 || exit 1

# ---- kill -9 during a training run ----
printf '[training]\nepochs = 1000\nrank = 4\nmax_seq_len = 64\n' >"$SHAMMAH_HOME/config.toml"
start_daemon
for n in 1 2 3 4; do feedback $n >/dev/null; done
check "4 pending" test "$(pending)" = 4
check "run started" test "$(curl -s -o /dev/null -w '%{http_code}' -X POST $URL/v1/training/run)" = 202
i=0
until status | grep -q '"step":[1-9]'; do i=$((i + 1)); [ $i -gt 200 ] && break; sleep 0.05; done
check "training under way" sh -c "curl -s $URL/v1/training/status | grep -q '\"active\":true'"
kill9
check "the PID file is left behind" test -f "$SHAMMAH_HOME/daemon.pid"
start_daemon
check "the next start is healthy (no stale lock)" test "$(curl -s -o /dev/null -w '%{http_code}' $URL/health)" = 200
check "the pid file names the new daemon" test "$(cat "$SHAMMAH_HOME/daemon.pid")" = "$DPID"
status >"$T/st"
check "examples still pending" grep -q '"pending":4' "$T/st"
check "no run active" grep -q '"active":false' "$T/st"
check "no adapter from the killed run" sh -c "curl -s $URL/v1/adapters | grep -q '\"adapters\":\[\]'"
check "serves" chat_ok
# the same examples train fine afterwards
stop_daemon
printf '[training]\nepochs = 1\nrank = 4\nmax_seq_len = 64\n' >"$SHAMMAH_HOME/config.toml"
start_daemon
curl -s -o /dev/null -X POST $URL/v1/training/run
i=0
until status | grep -q '"pending":0.*"active":false\|"active":false.*"pending":0'; do i=$((i + 1)); [ $i -gt 300 ] && break; sleep 0.1; done
check "a later run consumes them" test "$(pending)" = 0
ad=$(curl -s $URL/v1/adapters | sed -n 's/.*"active":"\([^"]*\)".*/\1/p')
check "and serves its adapter ($ad)" test -n "$ad"

# ---- kill -9 during generation: a session keeps whole turns only ----
turn() { # stream?, out file
    curl -s -N -o "$2" -H "$J" -d "{\"model\":\"x\",\"max_tokens\":240,\"temperature\":1,\"stream\":$1,\"session_id\":\"s1\",\"messages\":[{\"role\":\"user\",\"content\":\"tell me more\"}]}" $URL/v1/messages
}
turn false "$T/t1"
check "a first turn stored" sh -c "curl -s $URL/v1/session/s1 | grep -q '\"message_count\":2'"
turn true "$T/t2" &
CPID=$!
i=0
until grep -q content_block_delta "$T/t2" 2>/dev/null; do i=$((i + 1)); [ $i -gt 200 ] && break; sleep 0.02; done
kill9
wait $CPID 2>/dev/null
cut=1
grep -q message_stop "$T/t2" && cut=0
start_daemon
mc=$(curl -s $URL/v1/session/s1 | sed -n 's/.*"message_count":\([0-9]*\).*/\1/p')
check "after kill -9 mid-stream (cut=$cut) the session holds whole turns ($mc)" \
    sh -c "{ [ $cut = 1 ] && [ '$mc' = 2 ]; } || { [ $cut = 0 ] && [ '$mc' = 4 ]; }"
check "and takes the next turn" sh -c "[ \"\$(curl -s -o /dev/null -w '%{http_code}' -H '$J' -d '{\"model\":\"x\",\"max_tokens\":2,\"session_id\":\"s1\",\"messages\":[{\"role\":\"user\",\"content\":\"again\"}]}' $URL/v1/messages)\" = 200 ]"

# ---- an adapter save interrupted ----
# After kill -9 the saved adapter is whole (written to a temporary file, then renamed).
kill9
start_daemon
check "a saved adapter survives kill -9 and activates" test "$(curl -s -o /dev/null -w '%{http_code}' -X POST $URL/v1/adapters/$ad/activate)" = 200
stop_daemon
# What a save killed mid-write leaves: its temporary file (the writer's pid is gone). And what
# a writer without the rename would leave: a truncated NAME.gguf.
A="$SHAMMAH_HOME/adapters"
dead=$(sh -c 'echo $$')
size=$(wc -c <"$A/$ad.gguf")
head -c $((size / 2)) "$A/$ad.gguf" >"$A/adapter-9-$dead-0.gguf.tmp.$dead"
head -c $((size / 2)) "$A/$ad.gguf" >"$A/adapter-9-$$-0.gguf.tmp.$$"
head -c $((size / 2)) "$A/$ad.gguf" >"$A/adapter-truncated.gguf"
head -c 100 "$A/$ad.gguf" >"$A/adapter-header-only.gguf"
: >"$A/adapter-empty.gguf"
start_daemon
check "a dead writer's temporary file is removed at start" test ! -e "$A/adapter-9-$dead-0.gguf.tmp.$dead"
check "a live writer's is kept" test -e "$A/adapter-9-$$-0.gguf.tmp.$$"
check "temporary files are never listed" sh -c "! curl -s $URL/v1/adapters | grep -q 'tmp'"
check "temporary files cannot be activated" test "$(curl -s -o /dev/null -w '%{http_code}' -X POST "$URL/v1/adapters/adapter-9-$$-0.gguf.tmp.$$/activate")" = 404
for bad_ad in adapter-truncated adapter-header-only adapter-empty; do
    c=$(curl -s -o "$T/o" -w '%{http_code}' -X POST $URL/v1/adapters/$bad_ad/activate)
    check "$bad_ad refused ($c)" test "$c" = 400
done
check "with a reason" grep -q '"message":"[^"]' "$T/o"
check "nothing activated" sh -c "curl -s $URL/v1/adapters | grep -q '\"active\":null'"
check "still serves" chat_ok
check "the good adapter still activates" test "$(curl -s -o /dev/null -w '%{http_code}' -X POST $URL/v1/adapters/$ad/activate)" = 200
stop_daemon

# ---- disk full while storing feedback ----
# A small tmpfs holding SHAMMAH_HOME (ENOSPC) when this runs as root and may mount; otherwise
# a file size limit (ulimit -f: EFBIG; the daemon ignores SIGXFSZ). FAULTS_DISK=ulimit forces it.
H2="$T/full"
mkdir -p "$H2"
mode=ulimit
if [ "${FAULTS_DISK:-}" != ulimit ] && [ "$(id -u)" = 0 ] && mount -t tmpfs -o size=3m tmpfs "$H2" 2>/dev/null; then
    MNT=$H2
    mode=tmpfs
fi
export SHAMMAH_HOME="$H2/home"
mkdir -p "$SHAMMAH_HOME"
if [ $mode = tmpfs ]; then start_daemon; else start_daemon 2048; fi
for n in 1 2 3; do feedback $n >/dev/null; done
check "[$mode] 3 stored" test "$(pending)" = 3
big=$(head -c 300000 /dev/zero | tr '\0' 'x')
printf '{"query":"big","response":"%s","weight":1}' "$big" >"$T/big.json"
if [ $mode = tmpfs ]; then dd if=/dev/zero of="$H2/filler" bs=64k 2>/dev/null; fi
c=200
n=0
while [ "$c" = 200 ] && [ $n -lt 12 ]; do
    c=$(curl -s -o "$T/fb" -w '%{http_code}' -H "$J" --data-binary @"$T/big.json" $URL/v1/feedback)
    n=$((n + 1))
done
stored=$((3 + n - 1))
check "[$mode] a full disk: 5xx to the client (got $c after $n)" sh -c "[ $c -ge 500 ] && [ $c -lt 600 ]"
check "[$mode] with a clear message" grep -qi 'full\|too large\|disk\|I/O' "$T/fb"
echo "disk full: HTTP $c $(cat "$T/fb")"
check "[$mode] the daemon lives" test "$(curl -s -o /dev/null -w '%{http_code}' $URL/health)" = 200
check "[$mode] and serves" chat_ok
check "[$mode] accepted feedback intact ($stored)" test "$(pending)" = $stored
rm -f "$H2/filler"
if [ $mode = ulimit ]; then stop_daemon; start_daemon; fi
check "[$mode] space back: stored again" test "$(feedback 4)" = 200
check "[$mode] nothing lost, nothing half-stored" test "$(pending)" = $((stored + 1))
kill9
start_daemon
check "[$mode] after kill -9 too" test "$(pending)" = $((stored + 1))
stop_daemon
if command -v sqlite3 >/dev/null 2>&1; then
    check "[$mode] database integrity" test "$(sqlite3 "$SHAMMAH_HOME/shammah.db" 'PRAGMA integrity_check')" = ok
fi

report faults "(disk full simulated by $mode)"
