#!/bin/sh
# The daemon's security rules against a real daemon: API keys from config.toml and from
# api_keys_file (and the file's permission check), 401s in each dialect, CORS with configured
# origins (and refusal of other origins and of DNS-rebinding Host headers), each limit's 4xx,
# and names in requests that must never reach a file outside SHAMMAH_HOME.
set -u
. tests/lib/integration.sh
code() { curl -s -o "$T/o" -w '%{http_code}' "$@"; }

synth_model "$T/m.gguf" --layers 1 --seed 5 || exit 1
# a second, valid model that is in no registry: no request may make the daemon open it
cp "$T/m.gguf" "$T/outside.gguf"

# ---- api_keys_file: refused when others can read it ----
cat >"$SHAMMAH_HOME/config.toml" <<'EOF'
[server]
api_keys = ["inline-key"]
api_keys_file = "keys.txt"
cors_origins = ["https://app.example.com"]
max_messages = 5
max_body_bytes = 65536
EOF
chmod 600 "$SHAMMAH_HOME/config.toml"
printf '# keys for the team\n\nfile-key-1\n  file-key-2  \n' >"$SHAMMAH_HOME/keys.txt"
chmod 644 "$SHAMMAH_HOME/keys.txt"
PORT=$(free_port)
URL=http://127.0.0.1:$PORT
out=$(timeout 20 "$SH" daemon --bind 127.0.0.1:$PORT -m "$T/m.gguf" 2>&1)
rc=$?
check "world-readable keys file: refused to start" test $rc -ne 0 -a $rc -ne 124
check "one clear line naming the fix" sh -c "[ \$(printf '%s\n' \"\$1\" | wc -l) -eq 1 ] && printf '%s' \"\$1\" | grep -q 'keys.txt: permissions 0644 are too open.*chmod 600'" _ "$out"
check "the keys are not printed" sh -c "! printf '%s' \"\$1\" | grep -q 'file-key'" _ "$out"
chmod 600 "$SHAMMAH_HOME/keys.txt"
start_daemon "$T/log" --bind 127.0.0.1:$PORT -m "$T/m.gguf" -t 2 --ctx 256 --parallel 2

# ---- keys: both sources accepted, each header form, constant-time compare is exact ----
oa='{"model":"x","max_tokens":2,"messages":[{"role":"user","content":"hi"}]}'
J='content-type: application/json'
check "/health open without a key" test "$(code $URL/health)" = 200
check "no key: 401 (openai)" test "$(code -H "$J" -d "$oa" $URL/v1/chat/completions)" = 401
check "401 in openai format" grep -q '"error":{.*"type":"authentication_error"' "$T/o"
check "no key: 401 (anthropic)" test "$(code -H "$J" -d "$oa" $URL/v1/messages)" = 401
check "401 in anthropic format" grep -q '"type":"error","error":{"type":"authentication_error"' "$T/o"
for u in /v1/models /v1/status /metrics /v1/adapters /v1/training/status /v1/session/abc; do
    check "no key: 401 on GET $u" test "$(code $URL$u)" = 401
done
for u in /v1/feedback /v1/training/run /v1/adapters/none/activate /v1/messages/count_tokens /v1/completions; do
    check "no key: 401 on POST $u" test "$(code -H "$J" -d '{}' $URL$u)" = 401
done
check "inline key (Bearer)" test "$(code -H 'Authorization: Bearer inline-key' -H "$J" -d "$oa" $URL/v1/chat/completions)" = 200
check "file key (Bearer)" test "$(code -H 'Authorization: Bearer file-key-1' -H "$J" -d "$oa" $URL/v1/chat/completions)" = 200
check "file key, trimmed (x-api-key)" test "$(code -H 'x-api-key: file-key-2' -H "$J" -d "$oa" $URL/v1/messages)" = 200
check "bearer scheme case-insensitive" test "$(code -H 'Authorization: bearer file-key-2' $URL/v1/models)" = 200
check "a key's prefix is refused" test "$(code -H 'Authorization: Bearer file-key-' $URL/v1/models)" = 401
check "a longer key is refused" test "$(code -H 'Authorization: Bearer file-key-10' $URL/v1/models)" = 401
check "a commented-out line is no key" test "$(code -H 'x-api-key: # keys for the team' $URL/v1/models)" = 401
check "empty key refused" test "$(code -H 'x-api-key;' $URL/v1/models)" = 401
K='x-api-key: inline-key'

# ---- CORS ----
check "configured origin echoed" sh -c "curl -s -D - -o /dev/null -H '$K' -H 'Origin: https://app.example.com' $URL/v1/models | grep -qi '^access-control-allow-origin: https://app.example.com'"
check "loopback origin still allowed" sh -c "curl -s -D - -o /dev/null -H '$K' -H 'Origin: http://localhost:5173' $URL/v1/models | grep -qi '^access-control-allow-origin: http://localhost:5173'"
check "preflight for a configured origin" sh -c "curl -s -D - -o /dev/null -X OPTIONS -H 'Origin: https://app.example.com' -H 'Access-Control-Request-Method: POST' -H 'Access-Control-Request-Headers: authorization,content-type' $URL/v1/chat/completions | tr -d '\r' | grep -qi '^access-control-allow-headers: authorization, content-type'"
check "preflight needs no key (204)" test "$(code -X OPTIONS -H 'Origin: https://app.example.com' $URL/v1/messages)" = 204
check "other origin: 403" test "$(code -H "$K" -H 'Origin: https://evil.example' $URL/v1/models)" = 403
check "403 says why" grep -q 'origin is not allowed' "$T/o"
check "other origin: preflight 403" test "$(code -X OPTIONS -H 'Origin: https://evil.example' $URL/v1/messages)" = 403
check "origin matched exactly (port)" test "$(code -H "$K" -H 'Origin: https://app.example.com:8443' $URL/v1/models)" = 403
check "origin matched exactly (scheme)" test "$(code -H "$K" -H 'Origin: http://app.example.com' $URL/v1/models)" = 403
check "lookalike origin refused" test "$(code -H "$K" -H 'Origin: http://localhost.evil.example' $URL/v1/models)" = 403
check "origin null refused" test "$(code -H "$K" -H 'Origin: null' $URL/v1/models)" = 403
# a "simple" cross-site POST (no preflight) must have no effect, even with a key
pending() { curl -s -H "$K" $URL/v1/training/status | sed 's/.*"pending":\([0-9]*\).*/\1/'; }
p0=$(pending)
fb='{"query":"q","response":"r","weight":1}'
check "cross-site feedback refused" test "$(code -H "$K" -H 'content-type: text/plain' -H 'Origin: https://evil.example' -d "$fb" $URL/v1/feedback)" = 403
check "403 in anthropic format" test "$(code -H "$K" -H 'Origin: https://evil.example' -H "$J" -d "$oa" $URL/v1/messages)" = 403
check "anthropic permission_error" grep -q '"type":"error","error":{"type":"permission_error"' "$T/o"
check "nothing stored" test "$(pending)" = "$p0"
check "same feedback from the allowed origin" test "$(code -H "$K" -H 'Origin: https://app.example.com' -H "$J" -d "$fb" $URL/v1/feedback)" = 200
check "stored" test "$(pending)" = "$((p0 + 1))"
# DNS rebinding: a page whose name now resolves to 127.0.0.1 sends its own name as Host
check "foreign Host on a loopback daemon: 403" test "$(code -H "$K" -H "Host: rebind.example:$PORT" $URL/v1/models)" = 403
check "Host localhost accepted" test "$(code -H "$K" -H "Host: localhost:$PORT" $URL/v1/models)" = 200
check "Host app.localhost accepted" test "$(code -H "$K" -H "Host: app.localhost" $URL/v1/models)" = 200
check "Host [::1] accepted" test "$(code -H "$K" -H "Host: [::1]:$PORT" $URL/v1/models)" = 200
check "Host 127.0.0.1 lookalike refused" test "$(code -H "$K" -H "Host: 127.0.0.1.evil.example" $URL/v1/models)" = 403

# ---- limits, each with a clear 4xx ----
msgs() { # n: a request with n user/assistant messages
    awk -v n="$1" 'BEGIN { printf "{\"model\":\"x\",\"max_tokens\":2,\"messages\":["; for (i = 0; i < n; i++) printf "%s{\"role\":\"%s\",\"content\":\"m%d\"}", i ? "," : "", i % 2 ? "assistant" : "user", i; printf "]}" }'
}
check "5 messages (the limit) ok" test "$(code -H "$K" -H "$J" -d "$(msgs 5)" $URL/v1/chat/completions)" = 200
check "7 messages: 400 (openai)" test "$(code -H "$K" -H "$J" -d "$(msgs 7)" $URL/v1/chat/completions)" = 400
check "names max_messages" grep -q 'has 7 messages, more than the limit of 5 (\[server\] max_messages)' "$T/o"
check "7 messages: 400 (anthropic)" test "$(code -H "$K" -H "$J" -d "$(msgs 7)" $URL/v1/messages)" = 400
check "anthropic invalid_request_error" grep -q '"invalid_request_error"' "$T/o"
big=$(head -c 70000 /dev/zero | tr '\0' 'a')
printf '{"model":"x","messages":[{"role":"user","content":"%s"}]}' "$big" >"$T/big.json"
check "body over max_body_bytes: 413" test "$(code -H "$K" -H "$J" --data-binary @"$T/big.json" $URL/v1/messages)" = 413
check "413 names the limit" grep -q 'max_body_bytes' "$T/o"
head -c 70000 /dev/zero | tr '\0' 'h' >"$T/hdr"
hc=$(curl -s -o /dev/null -w '%{http_code}' -H "$K" -H "x-big: $(cat "$T/hdr")" $URL/v1/models)
check "headers over 64 KiB: 431 or 413, not a dropped connection (got $hc)" sh -c "[ '$hc' = 431 ] || [ '$hc' = 413 ]"
check "max_tokens 0: 400" test "$(code -H "$K" -H "$J" -d '{"model":"x","max_tokens":0,"messages":[{"role":"user","content":"hi"}]}' $URL/v1/messages)" = 400
check "max_tokens beyond 2^31: 400" test "$(code -H "$K" -H "$J" -d '{"model":"x","max_tokens":99999999999,"messages":[{"role":"user","content":"hi"}]}' $URL/v1/chat/completions)" = 400
# more than the context allows: clamped to what is left of it (the answer ends with "length")
check "max_tokens beyond the context: clamped, 200" test "$(code -H "$K" -H "$J" -d '{"model":"x","max_tokens":1000000,"temperature":1,"messages":[{"role":"user","content":"hi"}]}' $URL/v1/chat/completions)" = 200
used=$(sed 's/.*"total_tokens":\([0-9]*\).*/\1/' "$T/o")
check "prompt + answer within the context of 256 (got $used)" test "$used" -le 256
long=$(awk 'BEGIN { for (i = 0; i < 400; i++) printf "word%d ", i }')
check "prompt beyond the context: 400" test "$(code -H "$K" -H "$J" -d "{\"model\":\"x\",\"messages\":[{\"role\":\"user\",\"content\":\"$long\"}]}" $URL/v1/chat/completions)" = 400
check "names both counts" grep -q 'more than the context of 256 tokens' "$T/o"

# ---- names in requests never reach files outside SHAMMAH_HOME ----
for m in "../../etc/passwd" "/etc/passwd" "$T/outside.gguf" "../outside" "ollama:../../outside" "..%2Foutside" ".hidden"; do
    c=$(code -H "$K" -H "$J" -d "{\"model\":\"$m\",\"max_tokens\":1,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}" $URL/v1/chat/completions)
    check "model '$m': served by the default model ($c)" sh -c "[ $c = 200 ] && grep -q '\"model\":\"m\"' '$T/o'"
done
check "nothing loaded on demand" sh -c "curl -s -H '$K' $URL/v1/status | grep -q '\"models_on_demand\":\[\]'"
check "no on-demand load logged" sh -c "! grep -q 'loaded on demand\|could not be loaded' '$T/log'"
# adapters: an id is a file name under SHAMMAH_HOME/adapters, never a path
mkdir -p "$SHAMMAH_HOME/adapters"
for id in "..%2F..%2Foutside" "..%2Foutside" ".hidden" "%2Fetc%2Fpasswd" "..";  do
    c=$(code -H "$K" -X POST "$URL/v1/adapters/$id/activate")
    check "adapter id '$id' refused ($c)" sh -c "[ $c -ge 400 ] && [ $c -lt 500 ]"
done
check "no adapter active" sh -c "curl -s -H '$K' $URL/v1/adapters | grep -q '\"active\":null\|\"adapters\":\[\]'"
for id in "..%2F..%2Fetc%2Fpasswd" "..%2Fshammah.db" "a%2Fb"; do
    check "session id '$id' refused" test "$(code -H "$K" "$URL/v1/session/$id")" = 404
done
c=$(code -H "$K" -H "$J" -d '{"model":"x","max_tokens":1,"session_id":"../../x","messages":[{"role":"user","content":"hi"}]}' $URL/v1/messages)
check "session_id with a path: 400 ($c)" test "$c" = 400
stop_daemon

# ---- cors_origins = ["*"]: any origin, with a warning when no key is set ----
printf '[server]\ncors_origins = ["*"]\n' >"$SHAMMAH_HOME/config.toml"
start_daemon "$T/log2" --bind 127.0.0.1:$PORT -m "$T/m.gguf" -t 1 --ctx 256
check "any origin allowed" sh -c "curl -s -D - -o /dev/null -H 'Origin: https://anything.example' $URL/v1/models | grep -qi '^access-control-allow-origin: https://anything.example'"
check "warned: unsafe without api_keys" grep -q 'cors_origins = \["\*"\] without api_keys' "$T/log2"
stop_daemon

# ---- keys only from the file count as keys for a non-loopback bind ----
printf '[server]\napi_keys_file = "keys.txt"\n' >"$SHAMMAH_HOME/config.toml"
PORT=$(free_port)
URL=http://127.0.0.1:$PORT
start_daemon "$T/log3" --bind 0.0.0.0:$PORT -m "$T/m.gguf" -t 1 --ctx 256
check "0.0.0.0 with file keys starts; keys required" test "$(code $URL/v1/models)" = 401
check "file key works" test "$(code -H 'x-api-key: file-key-1' $URL/v1/models)" = 200
check "any Host on a non-loopback bind" test "$(code -H 'x-api-key: file-key-1' -H 'Host: myhost.lan' $URL/v1/models)" = 200
stop_daemon

report security "(oversized headers: $hc)"
