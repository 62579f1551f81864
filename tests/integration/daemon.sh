#!/bin/sh
# The real daemon on a free loopback port, with a small model made by the project's generator:
# raw HTTP with curl (status codes, error formats, SSE bytes), the official openai and
# @anthropic-ai/sdk clients, and the life cycle (PID file, second daemon, signals).
set -u
. tests/lib/integration.sh

synth_model "$T/m.gguf" --seed 3 || exit 1

PORT=$(free_port)
URL=http://127.0.0.1:$PORT
start_daemon "$T/daemon.log" --bind 127.0.0.1:$PORT -m "$T/m.gguf" -t 2 --ctx 2048 --parallel 4
ok

# ---- plain endpoints ----
check "pid file holds the pid" test "$(cat "$SHAMMAH_HOME/daemon.pid")" = "$DPID"
code=$(curl -s -o "$T/o" -w '%{http_code}' $URL/v1/models)
check "/v1/models" grep -q '"object":"list"' "$T/o"
check "/v1/status" sh -c "curl -s $URL/v1/status | grep -q '\"state\":\"ready\"'"
check "route header" sh -c "curl -s -D - -o /dev/null $URL/health | grep -qi '^x-shammah-route: local'"
check "unknown route 404" test "$(curl -s -o /dev/null -w '%{http_code}' $URL/nope)" = 404

# ---- errors in each dialect's format ----
code=$(curl -s -o "$T/o" -w '%{http_code}' -H 'content-type: application/json' -d '{not json' $URL/v1/chat/completions)
check "openai malformed json 400" test "$code" = 400
check "openai error format" grep -q '"error":{' "$T/o"
code=$(curl -s -o "$T/o" -w '%{http_code}' -H 'content-type: application/json' -d '{"messages":[{"role":"user","content":"hi"}]}' $URL/v1/messages)
check "anthropic missing max_tokens 400" test "$code" = 400
check "anthropic error format" grep -q '"type":"error"' "$T/o"
printf '{"model":"x","messages":[{"role":"user","content":"\377\376"}]}' >"$T/badutf8"
code=$(curl -s -o /dev/null -w '%{http_code}' -H 'content-type: application/json' --data-binary @"$T/badutf8" $URL/v1/chat/completions)
check "invalid utf-8 400" test "$code" = 400
head -c 5000000 /dev/zero | tr '\0' 'a' >"$T/big"
code=$(curl -s -o "$T/o" -w '%{http_code}' -H 'content-type: application/json' --data-binary @"$T/big" $URL/v1/messages)
check "oversized body 413" test "$code" = 413
check "413 in anthropic format" grep -q '"type":"error"' "$T/o"
code=$(curl -s -o "$T/o" -w '%{http_code}' -H 'content-type: application/json' \
    -d "{\"model\":\"x\",\"messages\":[{\"role\":\"user\",\"content\":\"$(head -c 30000 /dev/zero | tr '\0' 'z' | sed 's/zzz/zz /g')\"}]}" $URL/v1/chat/completions)
check "prompt longer than context 400" test "$code" = 400
check "context error names the counts" grep -q 'context of 2048' "$T/o"
timeout 5 node -e "const s=require('net').connect($PORT,'127.0.0.1',()=>s.write('GARBAGE\\r\\n\\r\\n'));s.on('data',()=>{});s.setTimeout(1000,()=>s.destroy());s.on('error',()=>{})" >/dev/null 2>&1
check "alive after garbage" test "$(curl -s -o /dev/null -w '%{http_code}' $URL/health)" = 200

# ---- raw SSE bytes ----
curl -s -N -H 'content-type: application/json' \
    -d '{"model":"x","stream":true,"max_tokens":5,"temperature":0,"messages":[{"role":"user","content":"hi"}]}' \
    $URL/v1/chat/completions >"$T/sse"
check "openai sse ends with [DONE]" sh -c "tail -c 20 '$T/sse' | grep -q 'data: \[DONE\]'"
check "openai sse chunks" grep -q '"object":"chat.completion.chunk"' "$T/sse"
curl -s -N -H 'content-type: application/json' \
    -d '{"model":"x","stream":true,"max_tokens":5,"temperature":0,"messages":[{"role":"user","content":"hi"}]}' \
    $URL/v1/messages >"$T/sse"
order=$(sed -n 's/^event: //p' "$T/sse" | uniq | tr '\n' ' ')
case "$order" in
"message_start content_block_start ping content_block_delta content_block_stop message_delta message_stop "|\
"message_start content_block_start ping content_block_stop message_delta message_stop ") ok ;;
*) bad "anthropic event order: $order" ;;
esac

# ---- a client that goes away mid-stream: the generation stops ----
curl -s -N --max-time 1 -H 'content-type: application/json' \
    -d '{"model":"x","stream":true,"max_tokens":100000,"messages":[{"role":"user","content":"go on forever"}]}' \
    $URL/v1/chat/completions >/dev/null 2>&1
i=0
while curl -s $URL/v1/status | grep -q '"active_generations":[1-9]'; do
    i=$((i + 1))
    [ $i -gt 50 ] && break
    sleep 0.1
done
check "disconnect cancels generation" test $i -le 50

# ---- the official SDKs ----
if [ -d tests/integration/js/node_modules/openai ] || (cd tests/integration/js && npm ci --no-audit --no-fund >/dev/null 2>&1); then
    if SHAMMAH_URL=$URL node --test tests/integration/js/sdk.test.mjs >"$T/node.log" 2>&1; then
        ok
    else
        bad "SDK tests"; cat "$T/node.log"
    fi
    grep -E '^# (pass|fail)' "$T/node.log"
else
    bad "npm ci failed (no SDK tests)"
fi

# ---- sessions ----
turn() { # session, text -> response body in $T/turn
    curl -s -o "$T/turn" -w '%{http_code}' -H 'content-type: application/json' \
        -d "{\"model\":\"x\",\"max_tokens\":6,\"temperature\":0,\"session_id\":\"$1\",\"messages\":[{\"role\":\"user\",\"content\":\"$2\"}]}" $URL/v1/messages
}
check "session turn 1" test "$(turn s1 'Hello, remember the word apple')" = 200
check "session has 2 messages" sh -c "curl -s $URL/v1/session/s1 | grep -q '\"message_count\":2'"
check "session turn 2" test "$(turn s1 'What was the word?')" = 200
check "turn 2 reads the history from the prefix cache" grep -q '"cache_read_input_tokens":[1-9]' "$T/turn"
check "session has 4 messages" sh -c "curl -s $URL/v1/session/s1 | grep -q '\"message_count\":4'"
check "session info fields" sh -c "curl -s $URL/v1/session/s1 | grep -q '\"created_at\":[0-9]*,\"last_activity\"'"
check "unknown session 404" test "$(curl -s -o /dev/null -w '%{http_code}' $URL/v1/session/nope)" = 404
check "delete 204" test "$(curl -s -o /dev/null -w '%{http_code}' -X DELETE $URL/v1/session/s1)" = 204
check "deleted 404" test "$(curl -s -o /dev/null -w '%{http_code}' $URL/v1/session/s1)" = 404
check "delete again 404" test "$(curl -s -o /dev/null -w '%{http_code}' -X DELETE $URL/v1/session/s1)" = 404
check "bad session id 400" test "$(turn 'a b' 'x')" = 400
check "session for the restart" test "$(turn keep 'Keep this')" = 200

# ---- feedback: validated, stored before the answer ----
fbpost() { curl -s -o "$T/fb" -w '%{http_code}' -H 'content-type: application/json' -d "$1" $URL/v1/feedback; }
check "feedback query/response 200" test "$(fbpost '{"query":"What is 2+2?","response":"5","weight":"critical","feedback":"it is 4"}')" = 200
check "feedback queued with an id" grep -q '"status":"queued","id":1' "$T/fb"
check "feedback messages form" test "$(fbpost '{"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"hello"}],"weight":2.5}')" = 200
check "feedback bad weight 400" test "$(fbpost '{"query":"a","response":"b","weight":-1}')" = 400
check "feedback error names the field" grep -q 'weight' "$T/fb"
check "feedback without an answer 400" test "$(fbpost '{"messages":[{"role":"user","content":"hi"}],"weight":1}')" = 400
check "feedback bad json 400" test "$(fbpost '{nope')" = 400

# ---- CORS: only loopback origins ----
check "CORS for a local page" sh -c "curl -s -D - -o /dev/null -H 'Origin: http://localhost:5173' $URL/v1/models | grep -qi '^access-control-allow-origin: http://localhost:5173'"
check "no CORS for other origins" sh -c "! curl -s -D - -o /dev/null -H 'Origin: https://evil.example' $URL/v1/models | grep -qi '^access-control-allow-origin'"
check "CORS lookalike refused" sh -c "! curl -s -D - -o /dev/null -H 'Origin: http://localhost.evil.example' $URL/v1/models | grep -qi '^access-control-allow-origin'"
check "preflight 204" test "$(curl -s -o /dev/null -w '%{http_code}' -X OPTIONS -H 'Origin: http://127.0.0.1:8080' $URL/v1/chat/completions)" = 204

# ---- metrics have real values ----
curl -s $URL/metrics >"$T/metrics"
check "metrics requests" grep -q 'shammah_requests_total{endpoint="/v1/chat/completions",status="200"}' "$T/metrics"
check "metrics tokens" sh -c "grep '^shammah_generated_tokens_total' '$T/metrics' | grep -qv ' 0$'"
check "metrics ttft histogram" grep -q 'shammah_time_to_first_token_seconds_count' "$T/metrics"

# ---- life cycle ----
out=$("$SH" daemon --bind 127.0.0.1:$(free_port) -m "$T/m.gguf" 2>&1)
rc=$?
check "second daemon refused" test $rc -ne 0
check "second daemon names the pid" sh -c "echo '$out' | grep -q 'pid $DPID'"
out=$(SHAMMAH_HOME="$T/other" "$SH" daemon --bind 127.0.0.1:$PORT 2>&1)
check "port in use is named" sh -c "echo '$out' | grep -q 'already in use'"
# a stream in flight when SIGTERM arrives gets a final event
curl -s -N -H 'content-type: application/json' \
    -d '{"model":"x","stream":true,"max_tokens":100000,"messages":[{"role":"user","content":"go on forever"}]}' \
    $URL/v1/messages >"$T/term.sse" 2>/dev/null &
CPID=$!
# signal as soon as the stream is flowing (a tiny model fills its context within a second)
i=0
until [ -s "$T/term.sse" ] || [ $i -gt 100 ]; do i=$((i + 1)); sleep 0.02; done
kill -TERM $DPID
wait $CPID
check "stream ended with a final event on SIGTERM" sh -c "tail -3 '$T/term.sse' | grep -q '^event: error'"
i=0
while kill -0 $DPID 2>/dev/null; do
    i=$((i + 1))
    [ $i -gt 50 ] && break
    sleep 0.1
done
wait $DPID
rc=$?
DPID=""
check "SIGTERM exits 0 within 5 s" test $rc -eq 0 -a $i -le 50
check "pid file removed" test ! -e "$SHAMMAH_HOME/daemon.pid"
echo 99999 >"$SHAMMAH_HOME/daemon.pid"
PORT=$(free_port)
# a model that cannot load: the daemon serves on, answering 503 where a model is needed
"$SH" daemon --bind 127.0.0.1:$PORT -m "$T/absent.gguf" 2>>"$T/daemon.log" &
DPID=$!
i=0
until curl -s -o /dev/null $URL/health 2>/dev/null || [ $i -gt 50 ]; do i=$((i + 1)); sleep 0.1; URL=http://127.0.0.1:$PORT; done
check "stale pid file replaced" test "$(cat "$SHAMMAH_HOME/daemon.pid" 2>/dev/null)" = "$DPID"
check "sessions survive a restart" sh -c "curl -s $URL/v1/session/keep | grep -q '\"message_count\":2'"
check "no model: health 503" test "$(curl -s -o /dev/null -w '%{http_code}' $URL/health)" = 503
code=$(curl -s -o "$T/o" -w '%{http_code}' -H 'content-type: application/json' -d '{"model":"x","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}' $URL/v1/messages)
check "no model: 503 in dialect" test "$code" = 503
check "feedback survived the restart" sh -c "[ \"\$(curl -s -o '$T/fb' -w '%{http_code}' -H 'content-type: application/json' -d '{\"query\":\"q\",\"response\":\"r\",\"weight\":1}' $URL/v1/feedback)\" = 200 ] && grep -q '\"id\":3,\"pending\":3' '$T/fb'"
# kill -9 right after an accepted feedback: it is still there afterwards
fbpost '{"query":"q2","response":"r2","weight":"medium"}' >/dev/null
kill -9 $DPID
wait $DPID 2>/dev/null
"$SH" daemon --bind 127.0.0.1:$PORT 2>>"$T/daemon.log" &
DPID=$!
i=0
until curl -s -o /dev/null $URL/health 2>/dev/null || [ $i -gt 50 ]; do i=$((i + 1)); sleep 0.1; done
check "feedback survived kill -9" sh -c "[ \"\$(curl -s -o '$T/fb' -w '%{http_code}' -H 'content-type: application/json' -d '{\"query\":\"q\",\"response\":\"r\",\"weight\":1}' $URL/v1/feedback)\" = 200 ] && grep -q '\"pending\":5' '$T/fb'"
kill -INT $DPID
wait $DPID
check "SIGINT exits 0" test $? -eq 0
DPID=""

# ---- API keys ----
mkdir -p "$T/keyed"
printf '[server]\napi_keys = ["sekret-1", "sekret-2"]\n' >"$T/keyed/config.toml"
chmod 600 "$T/keyed/config.toml"
PORT=$(free_port)
URL=http://127.0.0.1:$PORT
SHAMMAH_HOME="$T/keyed" "$SH" daemon --bind 127.0.0.1:$PORT -m "$T/m.gguf" 2>>"$T/daemon.log" &
DPID=$!
wait_healthy $URL $DPID "$T/daemon.log"
body='{"model":"x","max_tokens":3,"messages":[{"role":"user","content":"hi"}]}'
check "no key: 401 (anthropic)" test "$(curl -s -o "$T/o" -w '%{http_code}' -H 'content-type: application/json' -d "$body" $URL/v1/messages)" = 401
check "401 in anthropic format" grep -q '"authentication_error"' "$T/o"
check "wrong key: 401 (openai)" test "$(curl -s -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer nope' -H 'content-type: application/json' -d "$body" $URL/v1/chat/completions)" = 401
check "x-api-key accepted" test "$(curl -s -o /dev/null -w '%{http_code}' -H 'x-api-key: sekret-2' -H 'content-type: application/json' -d "$body" $URL/v1/messages)" = 200
check "bearer accepted" test "$(curl -s -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer sekret-1' -H 'content-type: application/json' -d "$body" $URL/v1/chat/completions)" = 200
check "health stays open" test "$(curl -s -o /dev/null -w '%{http_code}' $URL/health)" = 200
kill -TERM $DPID
wait $DPID
DPID=""
out=$(SHAMMAH_HOME="$T/other2" "$SH" daemon --bind 0.0.0.0:$(free_port) 2>&1)
check "exposed without keys refused" sh -c "echo '$out' | grep -q 'without API keys'"

report daemon
