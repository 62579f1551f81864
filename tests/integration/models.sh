#!/bin/sh
# Models by name in the daemon: a request naming a model of SHAMMAH_HOME/models loads it on
# demand (listed in /v1/models, shown in /v1/status), it is unloaded after keep_alive idle or to
# make room (max_loaded_models), a broken one gets a 503 while the daemon keeps serving, and
# names that are not models (other vendors' names, file paths) are answered by the default.
# Then the embedded default model: a daemon in an empty home, with no model configured, serves it.
set -u
. tests/lib/integration.sh
export OLLAMA_MODELS="$T/no-ollama"
mkdir -p "$SHAMMAH_HOME/models"
[ -n "${KEEP:-}" ] && trap - EXIT && echo "kept $T"
chat() { # model [stream] -> body in $T/o, status printed
    s=${2:-false}
    curl -s -o "$T/o" -w '%{http_code}' -H 'content-type: application/json' \
        -d "{\"model\":\"$1\",\"max_tokens\":4,\"temperature\":0,\"stream\":$s,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}" \
        $URL/v1/chat/completions
}

synth_model "$T/alpha.gguf" --seed 3 || exit 1
"$SH" model synth --arch llama --type f16 --embd 64 --heads 4 --kv-heads 2 --ff 128 --layers 2 \
    --seed 4 --ctx 4096 --vocab copy:$VOCAB --out "$SHAMMAH_HOME/models/bee.gguf" >/dev/null || exit 1
"$SH" model synth --arch qwen3 --type q8_0 --embd 64 --heads 4 --kv-heads 2 --ff 128 --layers 1 \
    --seed 5 --ctx 4096 --vocab copy:$VOCAB --out "$SHAMMAH_HOME/models/cee.gguf" >/dev/null || exit 1
head -c 100000 "$SHAMMAH_HOME/models/cee.gguf" >"$SHAMMAH_HOME/models/broken.gguf"
printf '[backend]\nkeep_alive = 2\nmax_loaded_models = 2\n' >"$SHAMMAH_HOME/config.toml"

PORT=$(free_port)
URL=http://127.0.0.1:$PORT
start_daemon "$T/daemon.log" --bind 127.0.0.1:$PORT -m "$T/alpha.gguf" -t 2 --ctx 1024

curl -s $URL/v1/models >"$T/models"
check "/v1/models lists the default" grep -q '"id":"alpha"' "$T/models"
check "/v1/models lists a home model" grep -q '"id":"bee"' "$T/models"
check "/v1/models leaves out unreadable files" sh -c "! grep -q '\"id\":\"broken\"' '$T/models'"

check "a named model answers" test "$(chat bee)" = 200
check "... and says so" grep -q '"model":"bee"' "$T/o"
check "... loaded on demand" grep -q 'model bee loaded on demand' "$T/daemon.log"
check "status shows it" sh -c "curl -s $URL/v1/status | grep -q '\"name\":\"bee\",\"state\":\"ready\"'"
check "streams too" test "$(chat bee true)" = 200
check "stream ends with [DONE]" grep -q 'data: \[DONE\]' "$T/o"
check "loaded once" test "$(grep -c 'model bee loaded on demand' "$T/daemon.log")" = 1
check "the default still answers" test "$(chat alpha)" = 200
check "... as itself" grep -q '"model":"alpha"' "$T/o"
check "another vendor's name: the default" test "$(chat gpt-4o)" = 200
check "... answers it" grep -q '"model":"alpha"' "$T/o"
check "a path is not a model name" test "$(chat /etc/passwd)" = 200
check "... nothing loaded for it" sh -c "! grep -q 'passwd' '$T/daemon.log'"

# keep_alive = 2 s: bee goes when idle
i=0
until grep -q 'model bee unloaded (idle 2s)' "$T/daemon.log" || [ $i -gt 80 ]; do sleep 0.1; i=$((i + 1)); done
check "idle model unloaded after keep_alive" grep -q 'model bee unloaded (idle 2s)' "$T/daemon.log"
check "status no longer lists it" sh -c "! curl -s $URL/v1/status | grep -q '\"name\":\"bee\"'"
check "asked again: loaded again" test "$(chat bee)" = 200
check "... a second load" test "$(grep -c 'model bee loaded on demand' "$T/daemon.log")" = 2
# max_loaded_models = 2: the default plus one; cee takes bee's place
check "another model" test "$(chat cee)" = 200
check "... evicts the least recently used" grep -q 'model bee unloaded to make room for cee' "$T/daemon.log"
check "anthropic dialect by name" sh -c "curl -s -H 'content-type: application/json' -d '{\"model\":\"cee\",\"max_tokens\":3,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}' $URL/v1/messages | grep -q '\"model\":\"cee\"'"
code=$(chat broken)
check "a broken model: 503" test "$code" = 503
check "... naming the problem" grep -q 'broken could not be loaded' "$T/o"
check "... and the daemon serves on" test "$(chat alpha)" = 200
kill $DPID
wait $DPID
check "clean exit with a model on demand" test $? = 0
DPID=""

# ---- the embedded default model: nothing configured, empty home ----
# (linked in when models/shammah-default.gguf exists at build time, as it does in the repository)
if [ ! -f models/shammah-default.gguf ]; then
    report models "(no embedded model in this tree)"
    exit
fi
export SHAMMAH_HOME="$T/fresh"
mkdir -p "$SHAMMAH_HOME"
PORT=$(free_port)
URL=http://127.0.0.1:$PORT
"$SH" daemon --bind 127.0.0.1:$PORT -t 2 2>"$T/daemon2.log" &
DPID=$!
if wait_healthy $URL $DPID "$T/daemon2.log"; then
    ok
    check "the embedded model was written to the home" test -s "$SHAMMAH_HOME/models/shammah-default.gguf"
    check "status names it" sh -c "curl -s $URL/v1/status | grep -q '\"name\":\"shammah-default\"'"
    code=$(curl -s -o "$T/o" -w '%{http_code}' -H 'content-type: application/json' \
        -d '{"model":"local","max_tokens":60,"temperature":0,"messages":[{"role":"user","content":"How do I start the daemon in the background?"}]}' \
        $URL/v1/chat/completions)
    check "it answers" test "$code" = 200
    check "... about shammah" grep -q 'shammah daemon-start' "$T/o"
else
    bad "daemon with the embedded model"
fi
kill $DPID 2>/dev/null
wait $DPID 2>/dev/null
DPID=""

report models
