#!/usr/bin/env python3
"""make_corpus.py - (re)writes the committed seed corpus fuzz/corpus/<target>/ from the examples
below, the vocab fixtures' gold inputs and small models made by `shammah model synth`.

Run from the repository root after `make`: python3 fuzz/make_corpus.py [build/shammah]
Each file is named after a hash of its content, as libFuzzer names what it finds; every file is
kept under 64 KB. The layouts of the inputs (selector bytes, NUL-separated fields) are those
documented in fuzz/entries.c."""
import hashlib
import json
import os
import subprocess
import sys
import tempfile

ROOT = "fuzz/corpus"
SHAMMAH = sys.argv[1] if len(sys.argv) > 1 else "build/shammah"


def put(target, data):
    if isinstance(data, str):
        data = data.encode()
    assert len(data) < 64 * 1024, (target, len(data))
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, hashlib.sha1(data).hexdigest()), "wb") as f:
        f.write(data)


def j(o):
    return json.dumps(o, ensure_ascii=False, separators=(",", ":"))


# ---- OpenAI requests ----
U = [{"role": "user", "content": "hi"}]
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
CALL = {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function",
        "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]}
openai = [
    {"model": "x", "messages": U},
    {"model": "x", "messages": U, "stream": True, "stream_options": {"include_usage": True}},
    {"model": "x", "messages": [{"role": "system", "content": "Be brief."},
                                {"role": "developer", "content": [{"type": "text", "text": "No lists."}]},
                                {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]},
    {"model": "x", "messages": U + [CALL, {"role": "tool", "tool_call_id": "c1", "content": "18C"},
                                    {"role": "tool", "tool_call_id": "c2", "content": [{"type": "text", "text": "x"}]}],
     "tools": TOOLS, "tool_choice": "auto"},
    {"model": "x", "messages": U, "tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "get_weather"}}},
    {"model": "x", "messages": U, "tools": TOOLS, "tool_choice": "required", "parallel_tool_calls": False},
    {"model": "x", "messages": U, "tools": TOOLS, "tool_choice": "none"},
    {"model": "x", "messages": U, "response_format": {"type": "json_object"}},
    {"model": "x", "messages": U, "response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": {}}}},
    {"model": "x", "messages": U, "stop": "\n"}, {"model": "x", "messages": U, "stop": ["a", "", "b"]},
    {"model": "x", "messages": U, "temperature": 0.7, "top_p": 0.9, "top_k": 40, "min_p": 0.05, "seed": 42,
     "presence_penalty": 0.5, "frequency_penalty": -0.5, "repeat_penalty": 1.1, "max_tokens": 16,
     "max_completion_tokens": 8, "user": "me", "session_id": "s1", "local_only": True},
    {"model": "x", "messages": U, "seed": -1, "temperature": 3, "n": 1},
    {"model": "x", "messages": U, "logprobs": True}, {"model": "x", "messages": U, "n": 2},
    {"model": "x", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:"}}]}]},
    {"model": "x", "messages": [{"role": "assistant", "content": "x", "reasoning_content": "think"}]},
    {"model": "x", "messages": [{"role": "user", "content": "\u00e9t\u00e9 \U0001F600 \\u0000"}]},
    {"model": "x", "prompt": "def f(", "suffix": "return x", "max_tokens": 16, "echo": False},
    {"model": "x", "prompt": ["a", "b"], "stream": True, "logprobs": None, "best_of": 1},
    {"model": "x", "prompt": [1, 2, 3]},
    {"model": "x"}, {"messages": "hi"}, {"model": "x", "messages": [{"role": "wizard", "content": "x"}]},
]
for o in openai:
    put("openai", j(o))
for raw in ['{"model":"x","messages":[{"role":"user","content":"hi"}],"model":"y"}', "[]", "{", '"x"',
            '{"messages":[{"role":"user","content":"\xff"}]}', '{"model":1e999,"messages":[]}']:
    put("openai", raw)

# ---- Anthropic requests ----
A = [{"role": "user", "content": "hi"}]
ATOOLS = [{"name": "get_weather", "description": "Weather", "input_schema": {"type": "object",
           "properties": {"city": {"type": "string"}}}}]
anth = [
    {"model": "x", "max_tokens": 16, "messages": A},
    {"model": "x", "max_tokens": 16, "messages": A, "stream": True, "system": "Be brief."},
    {"model": "x", "max_tokens": 16, "messages": A, "system": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
    {"model": "x", "max_tokens": 16, "tools": ATOOLS, "tool_choice": {"type": "auto"}, "messages": A + [
        {"role": "assistant", "content": [{"type": "text", "text": "Checking."},
                                          {"type": "tool_use", "id": "t1", "name": "get_weather", "input": {"city": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "18C"},
                                     {"type": "tool_result", "tool_use_id": "t2", "is_error": True,
                                      "content": [{"type": "text", "text": "x"}, {"type": "text", "text": "y"}]},
                                     {"type": "text", "text": "thanks"}]}]},
    {"model": "x", "max_tokens": 16, "tools": ATOOLS, "tool_choice": {"type": "tool", "name": "get_weather"}, "messages": A},
    {"model": "x", "max_tokens": 16, "tools": ATOOLS, "tool_choice": {"type": "any"}, "messages": A},
    {"model": "x", "max_tokens": 16, "tools": [{"type": "web_search_20250305", "name": "web_search"}], "messages": A},
    {"model": "x", "max_tokens": 16, "messages": A, "temperature": 0.5, "top_p": 0.9, "top_k": 5,
     "stop_sequences": ["\n\n", "END"], "metadata": {"user_id": "u"}, "session_id": "s", "local_only": False},
    {"model": "x", "max_tokens": 16, "messages": A, "thinking": {"type": "enabled", "budget_tokens": 1024}},
    {"model": "x", "max_tokens": 16, "messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"},
                                                  {"role": "assistant", "content": [{"type": "thinking", "thinking": "t", "signature": "s"}, {"type": "text", "text": "c"}]}]},
    {"model": "x", "max_tokens": 16, "messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "base64"}}]}]},
    {"model": "x", "messages": A}, {"model": "x", "max_tokens": -1, "messages": A},
    {"model": "x", "max_tokens": 16, "messages": [{"role": "assistant", "content": [{"type": "tool_result", "tool_use_id": "x"}]}]},
]
for o in anth:
    put("anthropic", j(o))
put("anthropic", '{"model":"x","messages":[{"role":"user","content":"hi"}]}')

# ---- SSE streams: byte 0 split seed, byte 1 bounds flag ----
OA_STREAM = ('data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,'
             '"delta":{"role":"assistant","content":""},"finish_reason":null}]}\n\n'
             'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,'
             '"delta":{"content":"Hel"},"finish_reason":null}]}\n\n'
             ': keep-alive\n\n'
             'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,'
             '"delta":{"tool_calls":[{"index":0,"id":"c1","type":"function","function":{"name":"f","arguments":"{\\"a\\""}}]},"finish_reason":null}]}\n\n'
             'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,'
             '"delta":{"tool_calls":[{"index":0,"function":{"arguments":":1}"}}]},"finish_reason":"tool_calls"}]}\n\n'
             'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[],'
             '"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5,"prompt_tokens_details":{"cached_tokens":1}}}\n\n'
             'data: [DONE]\n\n')
AN_STREAM = ('event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant",'
             '"model":"m","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":3,"output_tokens":0}}}\n\n'
             'event: content_block_start\ndata: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}\n\n'
             'event: ping\ndata: {"type": "ping"}\n\n'
             'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}\n\n'
             'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n'
             'event: content_block_start\ndata: {"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"t1","name":"f","input":{}}}\n\n'
             'event: content_block_delta\ndata: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\\"a\\":1}"}}\n\n'
             'event: content_block_stop\ndata: {"type":"content_block_stop","index":1}\n\n'
             'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":5}}\n\n'
             'event: message_stop\ndata: {"type":"message_stop"}\n\n')
AN_ERR_STREAM = ('event: message_start\ndata: {"type":"message_start","message":{"id":"m","usage":{"input_tokens":1}}}\n\n'
                 'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n')
OA_ERR_STREAM = 'data: {"error":{"message":"boom","type":"server_error","param":null,"code":null}}\n\n'
sse_raw = [OA_STREAM, AN_STREAM, ": c\r\nevent: x\r\ndata: a\r\ndata: b\r\nid: 1\r\nretry: 5\r\n\r\n",
           "data:no-space\rdata:  two\r\r", "data\n\nevent: empty\n\n", "data: last without blank line",
           "event: " + "n" * 100 + "\ndata: x\n\n", "data: " + "y" * 300 + "\n\n"]
for i, s in enumerate(sse_raw):
    for flags in (0, 1):
        put("sse", bytes([i * 37 % 256, flags]) + s.encode())

# ---- client decoders: byte 0 bit 0 anthropic, bit 1 stream; byte 1 split seed ----
OA_JSON = j({"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m", "choices": [
    {"index": 0, "message": {"role": "assistant", "content": "Hello", "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}}]},
     "finish_reason": "tool_calls"}], "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}})
OA_CMPL = j({"id": "cmpl-1", "object": "text_completion", "choices": [{"index": 0, "text": "x", "finish_reason": "length"}],
             "usage": {"prompt_tokens": 1, "completion_tokens": 1}})
AN_JSON = j({"id": "msg_1", "type": "message", "role": "assistant", "model": "m", "content": [
    {"type": "text", "text": "Hi"}, {"type": "tool_use", "id": "t1", "name": "f", "input": {"a": 1}}],
    "stop_reason": "tool_use", "stop_sequence": None, "usage": {"input_tokens": 3, "output_tokens": 5}})
OA_ERR = j({"error": {"message": "bad", "type": "invalid_request_error", "param": "messages", "code": None}})
AN_ERR = j({"type": "error", "error": {"type": "invalid_request_error", "message": "bad"}})
client = [(0, OA_JSON), (0, OA_CMPL), (0, OA_ERR), (2, OA_STREAM), (2, OA_ERR_STREAM), (2, OA_STREAM[:300]),
          (1, AN_JSON), (1, AN_ERR), (3, AN_STREAM), (3, AN_ERR_STREAM), (3, AN_STREAM[:400]), (1, "{}"), (2, "data: {}\n\n")]
for i, (sel, body) in enumerate(client):
    put("client_dec", bytes([sel, i * 11]) + body.encode())

# ---- config.toml ----
configs = [
    "", "# only a comment\n",
    '[server]\nbind = "127.0.0.1:11434"\nmax_sessions = 100\nsession_idle_minutes = 60\nmax_body_bytes = 4_194_304\n'
    'api_keys = ["k1", \'k2\',]\n',
    '[server]\r\nbind = "[::1]:8080"\r\n[backend]\r\nenabled = true\r\nmodel = "qwen.gguf"\r\nthreads = 0\r\nctx = 0x8000\r\n'
    'kv_type = "f32"\r\nparallel = 4\r\nprefix_cache_slots = 8\r\n',
    '[client]\nuse_daemon = false\ndaemon_address = "localhost:1"\nauto_spawn = true\ntimeout_seconds = 0o170\n',
    '[[teachers]]\nname = "claude"\nprovider = "anthropic"\nmodel = "claude-x"\napi_key_env = "ANTHROPIC_API_KEY"\n'
    'timeout_seconds = 60\nmax_retries = 2\n\n[[teachers]]\nprovider = "openai"\nbase_url = "http://h/v1"\nmodel = "gpt"\n'
    'api_key = "sk-\\u00e9\\U0001F600\\t"\n',
    '[training]\nenabled = true\ndistill = false\nlora_rank = 8\nlearning_rate = 1e-4\nbatch_size = 4\nmin_examples = 10\n',
    '[training]\nlearning_rate = inf\n', '[training]\nlearning_rate = nan\n', 'training.lora_rank = 0b1000\n',
    '"quoted key" = 1\n\'lit\' = 2\na.b.c = "x"\n[future]\nx = [1, 2,\n  3]\n',
    '[server]\nbind = "0.0.0.0:99999"\n', '[server]\nbind = "nocolon"\n', '[server]\nbind = 1\n',
    '[server]\n[server]\n', 'a = 1\na = 2\n', 'x = {a = 1}\n', 'x = """multi"""\n', 'x = [[1]]\n',
    'x = 1979-05-27\n', '[backend]\nthreads = 99999999999999999999\n', 'x = "unterminated\n', 'x = "\\q"\n',
    '[a.b.c.d.e.f.g.h.i]\n', '[server]\nmax_body_bytes = -1_000\n', 'x = +0.5e+3\ny = -inf\nz = 1_2.3_4\n',
]
for c in configs:
    put("config", c)

# ---- tool-call parser: byte 0 bit 0 llama3; byte 1 split seed ----
tc = [
    "Let me check.<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>",
    "<tool_call>{\"name\":\"a\",\"arguments\":\"{\\\"x\\\":1}\"}</tool_call><tool_call>{\"name\":\"b\",\"parameters\":{}}</tool_call>done",
    "<tool_call>not json</tool_call>", "<tool_call>{\"arguments\":{}}</tool_call>", "text <tool_ca", "<tool_call>{\"name\":\"x\"",
    "plain \xe4\xbd\xa0\xe5\xa5\xbd text < tool <t <tool_call", "<tool_call>{\"name\":\"x\",\"arguments\":[1]}</tool_call>",
]
for i, t in enumerate(tc):
    put("toolcall", bytes([0, i]) + t.encode())
for i, t in enumerate(["{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}", "  {\"name\":\"f\"}",
                       "{not json", "Sure! {\"name\":\"f\",\"parameters\":{}}", "<tool_call>{\"name\":\"f\",\"arguments\":{}}</tool_call>"]):
    put("toolcall", bytes([1, i]) + t.encode())

# ---- chat renderer: NUL-separated fields (see fz_chat) ----
QWEN25 = ("{%- if messages[0]['role'] == 'system' %}{{- messages[0]['content'] }}{%- else %}"
          "{{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}"
          "{%- endif %}{{- '<tools>' }}{{- '<|im_start|>' + message.role }}")
QWEN3 = "<|im_start|>{{ reasoning_content }}{% if enable_thinking is defined %}{% endif %}<think>"
LLAMA3 = "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}<|eot_id|>"
LLAMA31 = "Cutting Knowledge Date: December 2023 <|start_header_id|>ipython<|end_header_id|>"
CODER = "<|im_start|>{% if tool_call.arguments is string %}{{ tool_call.arguments }}{% endif %}"
TOOL = ["get_weather", "Weather for a city", '{"type": "object", "properties": {"city": {"type": "string"}}}']
convs = [
    ["sHelp briefly.", "uWhat is the weather?", "aLet me check.", "@get_weather", '{"city": "Paris"}', "t18C", "uThanks"],
    ["uHi", "a", "~Thinking about it", "uAgain \xc3\xa9"],
    ["uCall two", "a", "@f", "{}", "@g", '"raw string args"', "tr1", "tr2"],
    ["sOnly system"], [],
]
for ti, tmpl in enumerate([QWEN25, QWEN3, LLAMA3, LLAMA31, CODER, "", "{{ unknown }}"]):
    for ci, conv in enumerate(convs):
        ntools = (ti + ci) % 3
        opt = 1 | (ci & 1) << 1 | (ti & 1) << 2 | ntools << 3
        fields = [chr(opt), tmpl] + TOOL * ntools + conv
        put("chat", "\0".join(fields).encode("latin-1" if False else "utf-8"))
put("chat", "\x19\0<|start_header_id|>Cutting Knowledge Date\0f\0\0{bad json\0uhi")

# ---- JSON validator: byte 0 bit 0 require_object, bit 1 whitespace bound ----
docs = ['{"a": [1, 2.5e-3, -0, true, false, null], "b": {"c": "\\u00e9\\ud83d\\ude00\\n"}}', '[]', '{}', '"str"', '12',
        '1e5', '-', '1.', '{"a":', '{"a" 1}', '"\\ud800"', '"\\ud800\\u0041"', '"\xc3\xa9\xf0\x9f\x98\x80"',
        '"\xc0\x80"', '"\xed\xa0\x80"', '[' * 70 + ']' * 70, '{"k":' * 10 + '0' + '}' * 10, ' \n\t {"a" : 1 } \r\n',
        '{"a":1}x', 'tru', 'nul', '[1,]', '{"a":1,}', '"\\x"', '"\x01"', '0123', '-0.0e+00', '{' + ' ' * 200 + '}',
        '99999999999999999999999', '1e999', '"\\u0000"']
for i, d in enumerate(docs):
    put("jsonc", bytes([i % 4]) + d.encode("utf-8", "surrogateescape"))

# ---- tokenizer: byte 0 selects vocab/flags; texts from the gold inputs ----
texts = set()
for v in ["qwen2", "llama-bpe", "llama-spm", "gpt-2"]:
    with open(f"tests/fixtures/vocab/ggml-vocab-{v}.gguf.inp", "rb") as f:
        for t in f.read().split(b"\n__ggml_vocab_test__\n"):
            texts.add(t)
texts |= {b"<|im_start|>user\nhi<|im_end|>\n<|endoftext|>", b"<s>[INST] x [/INST]</s>", b"<|begin_of_text|><|eot_id|>",
          b"\xff\xfe invalid \xc3", "日本語 العربية 🚀".encode()}
for i, t in enumerate(sorted(texts)):
    put("tokenizer", bytes([(i * 7) % 32]) + t)

# ---- GGUF: tiny synthetic models (with their toy tokenizer) ----
with tempfile.TemporaryDirectory() as tmp:
    variants = [["--arch", "llama", "--type", "q8_0"], ["--arch", "qwen2", "--type", "q8_0", "--tie"],
                ["--arch", "qwen3", "--type", "q8_0"], ["--arch", "llama", "--type", "q4_0", "--merges", "4"]]
    for i, v in enumerate(variants):
        out = os.path.join(tmp, f"m{i}.gguf")
        subprocess.run([SHAMMAH, "model", "synth", "--embd", "32", "--heads", "2", "--kv-heads", "1", "--ff", "64",
                        "--layers", "1", "--merges", "8", "--out", out] + v, check=True, stdout=subprocess.DEVNULL)
        with open(out, "rb") as f:
            data = f.read()
        if len(data) < 64 * 1024:
            put("gguf", data)
            # the header and metadata alone (tensors cut off): exercises the size checks
            put("gguf", data[:4096])
put("gguf", b"GGUF\x03\x00\x00\x00" + b"\x00" * 16)
