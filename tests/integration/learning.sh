#!/bin/sh
# Feedback -> a training run inside the daemon -> the adapter served without a restart.
set -u
. tests/lib/integration.sh
PORT=$(free_port)
URL=http://127.0.0.1:$PORT

synth_model "$T/m.gguf" --type f32 --seed 11 --ctx 2048 || exit 1
start_daemon "$T/log" --bind 127.0.0.1:$PORT -m "$T/m.gguf" -t 2 --ctx 512
ask() { curl -s -H 'content-type: application/json' -d '{"model":"x","max_tokens":6,"temperature":0,"messages":[{"role":"user","content":"What is the capital of France?"}]}' $URL/v1/chat/completions | sed 's/.*"content":"\([^"]*\)".*/\1/'; }
before=$(ask)
check "nothing to train yet" test "$(curl -s -o /dev/null -w '%{http_code}' -X POST $URL/v1/training/run)" = 202
sleep 1
for w in critical critical medium; do
    curl -s -o /dev/null -H 'content-type: application/json' \
        -d "{\"query\":\"What is the capital of France?\",\"response\":\"Paris is the capital.\",\"weight\":\"$w\"}" $URL/v1/feedback
done
check "3 pending" sh -c "curl -s $URL/v1/training/status | grep -q '\"pending\":3'"
check "run starts" test "$(curl -s -o /dev/null -w '%{http_code}' -X POST $URL/v1/training/run)" = 202
i=0
while curl -s $URL/v1/training/status | grep -q '"active":true'; do
    i=$((i + 1)); [ $i -gt 600 ] && break; sleep 0.1
done
curl -s $URL/v1/training/status >"$T/st"
check "run finished" grep -q '"active":false' "$T/st"
check "examples consumed" grep -q '"pending":0' "$T/st"
check "adapter named" grep -q '"adapter":"adapter-' "$T/st"
lb=$(sed 's/.*"loss_before":\([0-9.e+-]*\).*/\1/' "$T/st")
la=$(sed 's/.*"loss_after":\([0-9.e+-]*\).*/\1/' "$T/st")
check "loss fell ($lb -> $la)" awk -v a="$lb" -v b="$la" 'BEGIN { exit !(b < a) }'
check "adapter listed as active" sh -c "curl -s $URL/v1/adapters | grep -q '\"active\":\"adapter-'"
after=$(ask)
check "the served answers changed without a restart" test "$before" != "$after"
check "rollback to the base model" test "$(curl -s -o /dev/null -w '%{http_code}' -X POST $URL/v1/adapters/previous/activate)" = 200
check "base answer again" test "$(ask)" = "$before"
check "unknown adapter 404" test "$(curl -s -o /dev/null -w '%{http_code}' -X POST $URL/v1/adapters/nope/activate)" = 404
check "path in adapter id refused" test "$(curl -s -o /dev/null -w '%{http_code}' -X POST $URL/v1/adapters/..%2Fx/activate)" -ge 400
# [training] enabled: a run starts by itself once min_examples are pending
stop_daemon
printf '[training]\nenabled = true\nmin_examples = 2\n' >"$SHAMMAH_HOME/config.toml"
"$SH" daemon --bind 127.0.0.1:$PORT -m "$T/m.gguf" -t 2 --ctx 512 2>>"$T/log" &
DPID=$!
wait_healthy $URL $DPID "$T/log"
for q in one two; do
    curl -s -o /dev/null -H 'content-type: application/json' \
        -d "{\"query\":\"question $q\",\"response\":\"answer $q\",\"weight\":\"good\"}" $URL/v1/feedback
done
i=0
until curl -s $URL/v1/training/status | grep -q '"pending":0,.*"active":false\|"active":false,"pending":0'; do
    i=$((i + 1)); [ $i -gt 600 ] && break; sleep 0.1
done
check "automatic run consumed the examples" sh -c "curl -s $URL/v1/training/status | grep -q '\"pending\":0'"
check "automatic run made a new adapter" sh -c "curl -s $URL/v1/adapters | grep -o '\"id\"' | wc -l | grep -qx 2"
report learning
