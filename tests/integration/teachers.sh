#!/bin/sh
# Teachers are real HTTP servers on loopback: daemon A serves a local model in both dialects,
# daemon B has no local model and forwards to A as an OpenAI teacher and as an Anthropic
# teacher (cross-dialect translation, streaming pass-through), with a dead teacher in front.
set -u
. tests/lib/integration.sh
PA=""
PB=""
cleanup_hook() { for p in $PA $PB; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done; }

synth_model "$T/m.gguf" --seed 3 || exit 1
A=$(free_port)
mkdir -p "$T/a" "$T/b"
SHAMMAH_HOME="$T/a" "$SH" daemon --bind 127.0.0.1:$A -m "$T/m.gguf" --ctx 2048 2>"$T/a.log" &
PA=$!
wait_healthy http://127.0.0.1:$A $PA "$T/a.log" || exit 1
DEAD=$(free_port)
cat >"$T/b/config.toml" <<EOT
[backend]
enabled = false

[[teachers]]
name = "dead"
provider = "openai"
base_url = "http://127.0.0.1:$DEAD/v1"
api_key = "k"
model = "x"
max_retries = 0

[[teachers]]
name = "alpha"
provider = "openai"
base_url = "http://127.0.0.1:$A/v1"
api_key = "k"
model = "alpha-model"

[[teachers]]
name = "beta"
provider = "anthropic"
base_url = "http://127.0.0.1:$A"
api_key = "k"
model = "beta-model"
EOT
chmod 600 "$T/b/config.toml"
B=$(free_port)
URL=http://127.0.0.1:$B
SHAMMAH_HOME="$T/b" "$SH" daemon --bind 127.0.0.1:$B 2>"$T/b.log" &
PB=$!
wait_healthy $URL $PB "$T/b.log" 503 || exit 1

oa='{"model":"local","max_tokens":6,"temperature":0,"messages":[{"role":"user","content":"hello"}]}'
code=$(curl -s -D "$T/h" -o "$T/o" -w '%{http_code}' -H 'content-type: application/json' -d "$oa" $URL/v1/chat/completions)
check "no local model: a teacher answers" test "$code" = 200
check "dead teacher skipped, route names alpha" grep -qi '^x-shammah-route: teacher:alpha' "$T/h"
check "openai answer" grep -q '"object":"chat.completion"' "$T/o"

an='{"model":"local","max_tokens":6,"temperature":0,"stream":true,"messages":[{"role":"user","content":"hello"}]}'
curl -s -N -D "$T/h" -H 'content-type: application/json' -d "$an" $URL/v1/messages >"$T/sse"
order=$(sed -n 's/^event: //p' "$T/sse" | uniq | tr '\n' ' ')
case "$order" in
"message_start content_block_start ping content_block_delta content_block_stop message_delta message_stop "|\
"message_start content_block_start content_block_delta content_block_stop message_delta message_stop "|\
"message_start ping content_block_start content_block_delta content_block_stop message_delta message_stop ") ok ;;
*) bad "anthropic client through an openai teacher: $order" ;;
esac
check "stream route header" grep -qi '^x-shammah-route: teacher:' "$T/h"

by='{"model":"beta","max_tokens":6,"temperature":0,"messages":[{"role":"user","content":"hello"}]}'
code=$(curl -s -D "$T/h" -o "$T/o" -w '%{http_code}' -H 'content-type: application/json' -d "$by" $URL/v1/chat/completions)
check "model names a teacher" test "$code" = 200
check "route teacher:beta" grep -qi '^x-shammah-route: teacher:beta' "$T/h"

curl -s -N -H 'content-type: application/json' \
    -d '{"model":"beta","max_tokens":6,"stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}' \
    $URL/v1/chat/completions >"$T/sse"
check "openai client through an anthropic teacher streams" sh -c "tail -c 20 '$T/sse' | grep -q 'data: \[DONE\]'"

lo='{"model":"local","local_only":true,"max_tokens":4,"messages":[{"role":"user","content":"hi"}]}'
code=$(curl -s -o "$T/o" -w '%{http_code}' -H 'content-type: application/json' -d "$lo" $URL/v1/messages)
check "local_only without a local model is an error" test "$code" -ge 400
check "teacher answers were queued for training (distill)" sh -c "curl -s $URL/v1/training/status | grep -q '\"pending\":[1-9]'"
check "shammah router stats" sh -c "SHAMMAH_HOME='$T/b' '$SH' router stats | grep -q '\"'"
check "status shows the router" sh -c "curl -s $URL/v1/status | grep -q '\"router\"'"

# all teachers dead: a fast, clear error naming them
kill $PA; wait $PA 2>/dev/null; PA=""
code=$(curl -s -o "$T/o" -w '%{http_code}' --max-time 20 -H 'content-type: application/json' -d "$oa" $URL/v1/chat/completions)
check "all teachers down: 5xx" sh -c "[ '$code' = 502 ] || [ '$code' = 503 ]"
check "error names the teachers" sh -c "grep -q alpha '$T/o' && grep -q dead '$T/o'"

report teachers
