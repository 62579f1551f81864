#!/bin/sh
# pull.sh - `shammah pull` against a local server laid out like Hugging Face
# (tests/integration/js/hf_server.mjs): full download, automatic and manual resume with Range,
# 416 on a complete part, 404 / 401 / bad sha256 errors, tokens; then `shammah models` over the
# pulled files and an Ollama store built here, and `shammah run -m NAME` / `-m ollama:NAME:TAG`.
# HOME, SHAMMAH_HOME and OLLAMA_MODELS are temporary folders: nothing real is touched.
set -u
. tests/lib/integration.sh
if [ ! -x "$SH" ]; then
    echo "pull: $SH not built"
    exit 1
fi
export HOME="$T/home" SHAMMAH_HOME="$T/sh" OLLAMA_MODELS="$T/ollama"
unset HF_TOKEN HF_HOME HUGGING_FACE_HUB_TOKEN
mkdir -p "$HOME" "$SHAMMAH_HOME" "$OLLAMA_MODELS"
SPID=""
cleanup_hook() { [ -n "$SPID" ] && kill "$SPID" 2>/dev/null && wait "$SPID" 2>/dev/null; }
# pull_err NAME REGEX ARGS...: shammah pull ARGS fails (not by a signal) with one stderr line
# matching REGEX.
pull_err() {
    name=$1
    re=$2
    shift 2
    "$SH" pull "$@" >"$T/out" 2>"$T/err" </dev/null
    rc=$?
    lines=$(wc -l <"$T/err")
    if [ $rc -eq 0 ] || [ $rc -ge 128 ]; then
        bad "$name: exit $rc: $(cat "$T/err")"
    elif [ "$lines" -ne 1 ]; then
        bad "$name: $lines lines on stderr: $(tr '\n' '|' <"$T/err")"
    elif ! grep -Eq -- "$re" "$T/err"; then
        bad "$name: stderr does not match /$re/: $(cat "$T/err")"
    else
        ok
    fi
}
M="$SHAMMAH_HOME/models"
HF="$T/hf"
LOG="$HF/requests.log"
range_logged() { # FILE: a CDN request for it carried a Range header
    grep "/cdn/.*/$1\"" "$LOG" | grep -q '"range":"bytes='
}

# ---- the "Hugging Face" side ----
synth_model "$T/m.gguf" --seed 3 --ctx 1024 || exit 1
"$SH" model synth --arch llama --embd 32 --layers 1 --seed 4 --ctx 256 --out "$T/small.gguf" \
    >/dev/null || exit 1
mkdir -p "$HF/acme/tiny-GGUF/sub/dir" "$HF/acme/flaky-GGUF" "$HF/acme/cut-GGUF" \
    "$HF/acme/private-GGUF" "$HF/acme/bad-GGUF"
cp "$T/m.gguf" "$HF/acme/tiny-GGUF/tiny-q8_0.gguf"
cp "$T/small.gguf" "$HF/acme/tiny-GGUF/sub/dir/deep.gguf"
cp "$T/small.gguf" "$HF/acme/tiny-GGUF/colon.gguf"
cp "$T/small.gguf" "$HF/acme/tiny-GGUF/whole.gguf"
cp "$T/small.gguf" "$HF/acme/tiny-GGUF/full.gguf"
printf 'not a model\n' >"$HF/acme/tiny-GGUF/html.gguf"
cp "$T/m.gguf" "$HF/acme/flaky-GGUF/flaky.gguf"
echo 1 >"$HF/acme/flaky-GGUF/.drop"
cp "$T/m.gguf" "$HF/acme/cut-GGUF/cut.gguf"
echo 1 >"$HF/acme/cut-GGUF/.drop"
cp "$T/small.gguf" "$HF/acme/private-GGUF/p1.gguf"
cp "$T/small.gguf" "$HF/acme/private-GGUF/p2.gguf"
echo sekrit >"$HF/acme/private-GGUF/.token"
cp "$T/small.gguf" "$HF/acme/bad-GGUF/b.gguf"
touch "$HF/acme/bad-GGUF/.badsha"

node tests/integration/js/hf_server.mjs "$T/port" "$HF" 2>"$T/server.log" &
SPID=$!
i=0
until [ -s "$T/port" ]; do
    i=$((i + 1))
    if [ $i -gt 100 ] || ! kill -0 $SPID 2>/dev/null; then
        echo "hf_server did not start"; cat "$T/server.log"; exit 1
    fi
    sleep 0.1
done
export HF_ENDPOINT="http://127.0.0.1:$(cat "$T/port")"

# ---- downloads ----
out=$("$SH" pull hf:acme/tiny-GGUF/tiny-q8_0.gguf 2>"$T/err")
check "full download exits 0" test $? -eq 0
check "prints the final path" test "$out" = "$M/tiny-q8_0.gguf"
check "file identical" cmp -s "$M/tiny-q8_0.gguf" "$T/m.gguf"
check "no .part left" test ! -e "$M/tiny-q8_0.gguf.part"
check "final line says verified" grep -q "sha256 verified" "$T/err"
check "followed the redirect" grep -q '"/cdn/acme/tiny-GGUF/tiny-q8_0.gguf"' "$LOG"
out=$("$SH" pull hf:acme/tiny-GGUF/tiny-q8_0.gguf 2>"$T/err")
check "again: exit 0" test $? -eq 0
check "again: already present" grep -q "already present" "$T/err"
check "again: path" test "$out" = "$M/tiny-q8_0.gguf"
check "path in repo" sh -c "'$SH' pull -q hf:acme/tiny-GGUF/sub/dir/deep.gguf >/dev/null && cmp -s '$M/deep.gguf' '$T/small.gguf'"
check "REPO:FILE form" sh -c "'$SH' pull -q hf:acme/tiny-GGUF:colon.gguf >/dev/null && test -f '$M/colon.gguf'"

# a dropped connection is resumed by itself, with a Range request
"$SH" pull hf:acme/flaky-GGUF/flaky.gguf >"$T/out" 2>"$T/err"
check "auto resume exits 0" test $? -eq 0
check "auto resume said so" grep -q "resuming" "$T/err"
check "auto resume sent Range" range_logged flaky.gguf
check "auto resume sha256" test "$(sha256sum <"$M/flaky.gguf")" = "$(sha256sum <"$T/m.gguf")"

# with no retries the pull fails, keeps the part, and the next run resumes it
pull_err "dropped connection" "re-run the same command to resume" --retries 0 hf:acme/cut-GGUF/cut.gguf
part_size=$(stat -c %s "$M/cut.gguf.part" 2>/dev/null || echo 0)
full_size=$(stat -c %s "$T/m.gguf")
check "partial kept" test "$part_size" -gt 0 -a "$part_size" -lt "$full_size"
check "nothing final yet" test ! -e "$M/cut.gguf"
out=$("$SH" pull hf:acme/cut-GGUF/cut.gguf 2>"$T/err")
check "resume exits 0" test $? -eq 0
check "resume sent Range from the part" grep -q "\"range\":\"bytes=$part_size-\"" "$LOG"
check "resumed sha256 matches" test "$(sha256sum <"$M/cut.gguf")" = "$(sha256sum <"$T/m.gguf")"
check "resume: no .part left" test ! -e "$M/cut.gguf.part"

# a complete part: the server answers 416 and the part is verified and kept
cp "$T/small.gguf" "$M/whole.gguf.part"
"$SH" pull hf:acme/tiny-GGUF/whole.gguf >/dev/null 2>"$T/err"
check "416 on complete part: exit 0" test $? -eq 0
check "416: file in place" cmp -s "$M/whole.gguf" "$T/small.gguf"

# ---- errors ----
pull_err "404" "404.*$HF_ENDPOINT/acme/tiny-GGUF/resolve/main/nope.gguf" hf:acme/tiny-GGUF/nope.gguf
check "404 leaves nothing" test ! -e "$M/nope.gguf.part"
pull_err "401 without token" "401.*HF_TOKEN" hf:acme/private-GGUF/p1.gguf
HF_TOKEN=wrong "$SH" pull hf:acme/private-GGUF/p1.gguf >/dev/null 2>"$T/err"
check "401 with a wrong token" grep -q "token was refused" "$T/err"
check "token from HF_TOKEN" sh -c "HF_TOKEN=sekrit '$SH' pull -q hf:acme/private-GGUF/p1.gguf >/dev/null"
mkdir -p "$HOME/.cache/huggingface"
echo sekrit >"$HOME/.cache/huggingface/token"
check "token from the token file" sh -c "'$SH' pull -q hf:acme/private-GGUF/p2.gguf >/dev/null"
check "bearer sent" grep -q '"auth":"Bearer sekrit"' "$LOG"
pull_err "bad sha256" "sha256 mismatch" hf:acme/bad-GGUF/b.gguf
check "bad sha256: nothing kept" test ! -e "$M/b.gguf" -a ! -e "$M/b.gguf.part"
pull_err "not GGUF" "not a GGUF file" hf:acme/tiny-GGUF/html.gguf
if [ -w /dev/full ]; then
    # a part that is /dev/full: every write fails with ENOSPC
    ln -s /dev/full "$M/full.gguf.part"
    pull_err "disk full" "disk full writing .*full.gguf.part" hf:acme/tiny-GGUF/full.gguf
    rm -f "$M/full.gguf.part"
fi
pull_err "bad spec" "hf:OWNER/REPO/FILE.gguf" hf:acme
pull_err "path escape" "bad file path" hf:acme/tiny-GGUF/../x.gguf
pull_err "unknown alias" "unknown model" llama9:1t

# ---- shammah models ----
digest=$(sha256sum <"$T/small.gguf" | cut -c1-64)
digest2=$(sha256sum <"$T/m.gguf" | cut -c1-64)
mkdir -p "$OLLAMA_MODELS/blobs" "$OLLAMA_MODELS/manifests/registry.ollama.ai/library/tinyllm" \
    "$OLLAMA_MODELS/manifests/registry.ollama.ai/someone/other"
cp "$T/small.gguf" "$OLLAMA_MODELS/blobs/sha256-$digest"
cp "$T/m.gguf" "$OLLAMA_MODELS/blobs/sha256-$digest2"
for f in "library/tinyllm/q8:$digest" "someone/other/latest:$digest2"; do
    d=${f#*:}
    f=${f%:*}
    cat >"$OLLAMA_MODELS/manifests/registry.ollama.ai/$f" <<EOF
{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",
 "config":{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"sha256:$(printf '%064d' 0)","size":2},
 "layers":[{"mediaType":"application/vnd.ollama.image.template","digest":"sha256:$(printf '%064d' 1)","size":5},
           {"mediaType":"application/vnd.ollama.image.model","digest":"sha256:$d","size":1}]}
EOF
done
printf 'GGUF broken' >"$M/corrupt.gguf"
"$SH" models >"$T/models" 2>"$T/err"
check "models exits 0" test $? -eq 0
check "models lists the pull" grep -Eq '^[ *] tiny-q8_0 +qwen2 .* home$' "$T/models"
check "models lists Ollama" grep -Eq '^[ *] ollama:tinyllm:q8 +llama .* ollama$' "$T/models"
check "models: Ollama namespace" grep -q 'ollama:someone/other:latest' "$T/models"
check "models: corrupt listed" grep -q 'corrupt .*unusable' "$T/models"
check "models: one default" test "$(grep -Ec '^\* .* (home|config|ollama)$' "$T/models")" = 1
"$SH" models --json >"$T/models.json"
check "models --json" node -e '
const j = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
const t = j.models.find(m => m.name === "tiny-q8_0");
const o = j.models.find(m => m.name === "ollama:tinyllm:q8");
if (!t || t.arch !== "qwen2" || t.quant !== "Q8_0" || t.source !== "home" || !(t.params > 0)) process.exit(1);
if (!o || o.source !== "ollama" || !o.path.endsWith("'"$digest"'")) process.exit(1);
if (j.models.filter(m => m.default).length !== 1 || typeof j.default !== "string") process.exit(1);
if (!j.models.find(m => m.name === "corrupt" && m.error)) process.exit(1);' "$T/models.json"

# ---- -m NAME ----
check "run -m NAME" sh -c "'$SH' run -m tiny-q8_0 -p hello -n 3 --temp 0 -t 1 >/dev/null 2>&1"
check "run -m NAME.gguf" sh -c "'$SH' run -m tiny-q8_0.gguf -p hello -n 3 --temp 0 -t 1 >/dev/null 2>&1"
check "run -m ollama:NAME:TAG" sh -c "'$SH' run -m ollama:tinyllm:q8 -p hello -n 3 --temp 0 -t 1 >/dev/null 2>&1"
check "info -m ollama:ns/NAME (latest)" sh -c "'$SH' info -m ollama:someone/other | grep -q 'architecture: *qwen2'"
check "tokenize -m NAME" sh -c "'$SH' tokenize -m tiny-q8_0 'Hello world' | grep -qx '9707 1879'"
"$SH" run -m no-such-model -p hello >/dev/null 2>"$T/err"
check "unknown name fails" test $? -ne 0
check "unknown name: one line pointing at shammah models" sh -c "test \$(wc -l <'$T/err') -eq 1 && grep -q 'shammah models' '$T/err'"
"$SH" run -m ollama:tinyllm:nope -p hello >/dev/null 2>"$T/err"
check "unknown Ollama tag fails" grep -q "not found in Ollama" "$T/err"
"$SH" run -m qwen3:0.6b -p hello >/dev/null 2>"$T/err"
check "alias not pulled: says pull" grep -q 'shammah pull qwen3:0.6b' "$T/err"

report pull
