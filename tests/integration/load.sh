#!/bin/sh
# Load test of the real daemon with a tiny synthetic model (bench/loadgen.c): streaming clients
# of both dialects, a disconnect storm, slow clients and 200 idle sockets at once; fails on any
# failed request, any stream not properly terminated, RSS growth between rounds beyond
# LOAD_RSS_KB, descriptors not released, or a daemon that is unhealthy or does not stop cleanly
# afterwards. Short by default (about 15 s, part of `make test`); `make loadtest` runs it longer
# (LOAD_SECONDS, LOAD_ROUNDS, LOAD_CLIENTS, LOAD_IDLE) and prints the figures.
set -u
. tests/lib/integration.sh
LOAD_SECONDS=${LOAD_SECONDS:-6}
LOAD_ROUNDS=${LOAD_ROUNDS:-3}
LOAD_CLIENTS=${LOAD_CLIENTS:-8}
LOAD_IDLE=${LOAD_IDLE:-200}
LOAD_RSS_KB=${LOAD_RSS_KB:-32768}

# sanitizer builds keep freed memory in quarantine / shadow: RSS says nothing there
case "$BUILD" in *asan* | *tsan*) LOAD_RSS_KB=100000000 ;; esac

LOADGEN=${LOADGEN:-}
if [ -z "$LOADGEN" ] || [ ! -x "$LOADGEN" ]; then
    LOADGEN=$T/loadgen
    ${CC:-cc} -std=c11 -D_GNU_SOURCE -O2 -o "$LOADGEN" bench/loadgen.c -lpthread -lm || exit 1
fi

synth_model "$T/m.gguf" --embd 32 --heads 2 --kv-heads 1 --ff 64 --layers 1 --seed 5 --ctx 1024 || exit 1

PORT=$("$LOADGEN" --free-port)
URL=http://127.0.0.1:$PORT
start_daemon "$T/daemon.log" --bind 127.0.0.1:$PORT -m "$T/m.gguf" -t 2 --ctx 1024 --parallel 4

fail=0
"$LOADGEN" --port "$PORT" --pid "$DPID" --seconds "$LOAD_SECONDS" --rounds "$LOAD_ROUNDS" \
    --clients "$LOAD_CLIENTS" --storm 4 --slow 4 --idle "$LOAD_IDLE" --max-tokens 16 \
    --rss-growth-kb "$LOAD_RSS_KB" || fail=1

code=$(curl -s -o /dev/null -w '%{http_code}' $URL/health)
[ "$code" = 200 ] || { echo "FAIL: /health $code after the load"; fail=1; }
if curl -s $URL/v1/status | grep -q '"active_generations":[1-9]'; then
    sleep 1 # the last storm streams are being cancelled
    curl -s $URL/v1/status | grep -q '"active_generations":[1-9]' && { echo "FAIL: generations still active after the load"; fail=1; }
fi
kill -TERM $DPID
wait $DPID
rc=$?
DPID=""
[ $rc -eq 0 ] || { echo "FAIL: daemon exited $rc after SIGTERM"; fail=1; }
if [ $fail -ne 0 ]; then
    echo "--- daemon log (tail)"
    tail -20 "$T/daemon.log"
fi
[ $fail -eq 0 ] && echo "load: ok"
exit $fail
