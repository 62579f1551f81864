/* test_chat.c - template recognition, exact renders, streaming tool-call parser.
 *
 * The expected prompts were written by hand from the Jinja templates (Qwen2.5-7B-Instruct,
 * Qwen3-0.6B, Llama-3.1-8B-Instruct, the Llama 3 Instruct original) and cross-checked once
 * with a Jinja renderer set up as transformers does (trim_blocks, lstrip_blocks, tojson with
 * ensure_ascii=False). */
#include "testutil.h"

#include "base/status.h"
#include "engine/chat.h"
#include "engine/gguf.h"

/* Enough of each real template for recognition (detection only looks for markers). */
static const char QWEN25_TPL[] =
    "{%- if tools %}\n    {{- '<|im_start|>system\\n' }}\n    {%- if messages[0]['role'] == "
    "'system' %}\n        {{- messages[0]['content'] }}\n    {%- else %}\n        {{- 'You are "
    "Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}\n    {%- endif %}\n"
    "{%- else %}\n    {%- if messages[0]['role'] == 'system' %}\n        {{- "
    "'<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}\n    {%- else %}\n"
    "        {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a "
    "helpful assistant.<|im_end|>\\n' }}\n    {%- endif %}\n{%- endif %}\n";
static const char QWEN3_TPL[] =
    "{%- if messages[0].role == 'system' %}\n        {{- '<|im_start|>system\\n' + "
    "messages[0].content + '<|im_end|>\\n' }}\n    {%- endif %}\n"
    "{%- if message.reasoning_content is defined and message.reasoning_content is not none %}"
    "{%- if tool_call.arguments is string %}{%- if enable_thinking is defined and "
    "enable_thinking is false %}{{- '<think>\\n\\n</think>\\n\\n' }}{%- endif %}";
static const char LLAMA31_TPL[] =
    "{{- bos_token }}\n{{- \"<|start_header_id|>system<|end_header_id|>\\n\\n\" }}\n"
    "{{- \"Cutting Knowledge Date: December 2023\\n\" }}";
static const char LLAMA30_TPL[] =
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
    "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | "
    "trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}"
    "{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ "
    "'<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";

#define QWEN_SYS "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."

static void check_render(const char *tpl, const chat_msg *m, int n, const chat_opts *o,
                         const char *want) {
    chat_template t;
    chat_template_detect(&t, tpl);
    char *out = NULL;
    size_t len = 0;
    int rc = chat_render(&t, m, n, o, &out, &len);
    if (rc) fail_msg("render: %s", sh_error_last());
    if (strcmp(out, want) != 0) {
        print_message("got:\n[%s]\nwant:\n[%s]\n", out, want);
        fail();
    }
    assert_int_equal(len, strlen(want));
    free(out);
}

static void test_detect(void **st) {
    (void)st;
    chat_template t;
    chat_template_detect(&t, NULL);
    assert_int_equal(t.kind, CHAT_CHATML);
    assert_int_equal(t.flags & CHAT_F_KNOWN, 0);
    assert_string_equal(t.default_system, "");
    chat_template_detect(&t, "{{ messages }} something unknown");
    assert_int_equal(t.kind, CHAT_CHATML);
    assert_int_equal(t.flags, 0);

    chat_template_detect(&t, QWEN25_TPL);
    assert_int_equal(t.kind, CHAT_CHATML);
    assert_int_equal(t.flags, CHAT_F_KNOWN);
    assert_string_equal(t.default_system, QWEN_SYS);

    chat_template_detect(&t, QWEN3_TPL);
    assert_int_equal(t.kind, CHAT_CHATML);
    assert_int_equal(t.flags, CHAT_F_KNOWN | CHAT_F_THINK | CHAT_F_ENABLE_THINK | CHAT_F_ARGS_RAW);
    assert_string_equal(t.default_system, "");

    chat_template_detect(&t, LLAMA31_TPL);
    assert_int_equal(t.kind, CHAT_LLAMA3);
    assert_int_equal(t.flags, CHAT_F_KNOWN | CHAT_F_LLAMA31);
    chat_template_detect(&t, LLAMA30_TPL);
    assert_int_equal(t.kind, CHAT_LLAMA3);
    assert_int_equal(t.flags, CHAT_F_KNOWN);
    assert_string_equal(chat_kind_name(CHAT_LLAMA3), "llama3");
    assert_string_equal(chat_kind_name(CHAT_CHATML), "chatml");

    /* the real template stored in the Qwen2 vocab fixture: original Qwen2 default prompt */
    gguf *g = NULL;
    assert_int_equal(gguf_open(&g, FIXTURES "/vocab/ggml-vocab-qwen2.gguf"), SH_OK);
    static char tpl[1 << 16];
    assert_int_equal(gguf_get_cstr(g, "tokenizer.chat_template", tpl, sizeof tpl), SH_OK);
    gguf_close(g);
    chat_template_detect(&t, tpl);
    assert_int_equal(t.kind, CHAT_CHATML);
    assert_string_equal(t.default_system, "You are a helpful assistant");
    chat_msg m[] = {{.role = CHAT_USER, .content = "Hi"}};
    chat_opts o = {.add_generation_prompt = 1};
    check_render(tpl, m, 1, &o,
                 "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n"
                 "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
}

/* ---- Qwen2.5 ---- */

static const chat_tool WEATHER = {
    "get_weather", "Get the current weather",
    "{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\",\"description\":"
    "\"City name\"},\"days\":{\"type\":\"integer\",\"default\":1.5}},\"required\":[\"city\"]}"};
static const chat_tool TIME = {"get_time", NULL, "{}"};

#define WEATHER_JSON                                                                               \
    "{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": "         \
    "\"Get the current weather\", \"parameters\": {\"type\": \"object\", \"properties\": "         \
    "{\"city\": {\"type\": \"string\", \"description\": \"City name\"}, \"days\": {\"type\": "     \
    "\"integer\", \"default\": 1.5}}, \"required\": [\"city\"]}}}"
#define TIME_JSON                                                                                  \
    "{\"type\": \"function\", \"function\": {\"name\": \"get_time\", \"parameters\": {}}}"

#define HERMES_TOOLS                                                                               \
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"             \
    "You are provided with function signatures within <tools></tools> XML "                        \
    "tags:\n<tools>\n" WEATHER_JSON "\n" TIME_JSON                                                 \
    "\n</tools>\n\nFor each function call, return a json object "                                  \
    "with function name and arguments within <tool_call></tool_call> XML tags:\n"                  \
    "<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n"                \
    "</tool_call><|im_end|>\n"

static void test_qwen25_plain(void **st) {
    (void)st;
    chat_msg m1[] = {{.role = CHAT_USER, .content = "Hello"}};
    chat_opts gen = {.add_generation_prompt = 1};
    check_render(QWEN25_TPL, m1, 1, &gen,
                 "<|im_start|>system\n" QWEN_SYS "<|im_end|>\n"
                 "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n");
    /* no generation prompt, opts NULL */
    check_render(QWEN25_TPL, m1, 1, NULL,
                 "<|im_start|>system\n" QWEN_SYS "<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n");

    chat_msg m2[] = {{.role = CHAT_SYSTEM, .content = "You are terse."},
                     {.role = CHAT_USER, .content = "Hi"},
                     {.role = CHAT_ASSISTANT, .content = "Hello!"},
                     {.role = CHAT_USER, .content = "Bye, café ☕"}};
    check_render(QWEN25_TPL, m2, 4, &gen,
                 "<|im_start|>system\nYou are terse.<|im_end|>\n"
                 "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n"
                 "<|im_start|>user\nBye, café ☕<|im_end|>\n<|im_start|>assistant\n");
}

static void test_qwen25_tools(void **st) {
    (void)st;
    chat_tool tools[] = {WEATHER, TIME};
    chat_tool_call calls[] = {{"call_1", "get_weather", "{\"city\":\"Paris\",\"days\":2}"},
                              {"call_2", "get_time", "{\"tz\": \"Europe/Paris\"}"}};
    chat_msg m[] = {
        {.role = CHAT_USER, .content = "Weather and time in Paris?"},
        {.role = CHAT_ASSISTANT, .content = NULL, .tool_calls = calls, .n_tool_calls = 2},
        {.role = CHAT_TOOL, .content = "{\"temp\": 21}", .tool_call_id = "call_1"},
        {.role = CHAT_TOOL, .content = "14:05", .tool_call_id = "call_2"},
        {.role = CHAT_ASSISTANT, .content = "Sunny, 21 C, and it is 14:05."},
        {.role = CHAT_USER, .content = "Thanks"},
    };
    chat_opts o = {.tools = tools, .n_tools = 2, .add_generation_prompt = 1};
    check_render(QWEN25_TPL, m, 6, &o,
                 "<|im_start|>system\n" QWEN_SYS "\n\n" HERMES_TOOLS
                 "<|im_start|>user\nWeather and time in Paris?<|im_end|>\n"
                 "<|im_start|>assistant\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": "
                 "{\"city\": \"Paris\", \"days\": 2}}\n</tool_call>\n<tool_call>\n{\"name\": "
                 "\"get_time\", \"arguments\": {\"tz\": \"Europe/Paris\"}}\n</tool_call>"
                 "<|im_end|>\n"
                 "<|im_start|>user\n<tool_response>\n{\"temp\": 21}\n</tool_response>\n"
                 "<tool_response>\n14:05\n</tool_response><|im_end|>\n"
                 "<|im_start|>assistant\nSunny, 21 C, and it is 14:05.<|im_end|>\n"
                 "<|im_start|>user\nThanks<|im_end|>\n<|im_start|>assistant\n");

    /* given system prompt, assistant text before its call, one tool result, no gen prompt */
    chat_tool_call one[] = {{"c", "get_time", NULL}};
    chat_msg m2[] = {
        {.role = CHAT_SYSTEM, .content = "Be exact."},
        {.role = CHAT_USER, .content = "Time?"},
        {.role = CHAT_ASSISTANT, .content = "Checking.", .tool_calls = one, .n_tool_calls = 1},
        {.role = CHAT_TOOL, .content = "09:00"},
    };
    check_render(QWEN25_TPL, m2, 4, &(chat_opts){.tools = tools, .n_tools = 2},
                 "<|im_start|>system\nBe exact.\n\n" HERMES_TOOLS
                 "<|im_start|>user\nTime?<|im_end|>\n"
                 "<|im_start|>assistant\nChecking.\n<tool_call>\n{\"name\": \"get_time\", "
                 "\"arguments\": {}}\n</tool_call><|im_end|>\n"
                 "<|im_start|>user\n<tool_response>\n09:00\n</tool_response><|im_end|>\n");

    /* bad parameters JSON is the caller's error */
    chat_tool bad[] = {{"x", NULL, "{nope"}};
    chat_template t;
    chat_template_detect(&t, QWEN25_TPL);
    char *out;
    size_t len;
    assert_int_equal(chat_render(&t, m2, 4, &(chat_opts){.tools = bad, .n_tools = 1}, &out, &len),
                     SH_EINVAL);
    assert_null(out);
}

/* ---- Qwen3 ---- */

static void test_qwen3(void **st) {
    (void)st;
    chat_msg m1[] = {{.role = CHAT_USER, .content = "Hi"}};
    check_render(QWEN3_TPL, m1, 1, &(chat_opts){.add_generation_prompt = 1},
                 "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
    check_render(QWEN3_TPL, m1, 1, &(chat_opts){.add_generation_prompt = 1, .disable_thinking = 1},
                 "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n");

    /* history: old reasoning dropped, the final assistant turn after the last query gets a
     * think block (empty when it has no reasoning) */
    chat_msg m2[] = {
        {.role = CHAT_SYSTEM, .content = "Sys"},
        {.role = CHAT_USER, .content = "Hi"},
        {.role = CHAT_ASSISTANT, .content = "<think>\nold\n</think>\n\nHello"},
        {.role = CHAT_USER, .content = "2+2?"},
        {.role = CHAT_ASSISTANT, .content = "4"},
    };
    check_render(QWEN3_TPL, m2, 5, NULL,
                 "<|im_start|>system\nSys<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
                 "<|im_start|>assistant\nHello<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n"
                 "<|im_start|>assistant\n<think>\n\n</think>\n\n4<|im_end|>\n");
    m2[4].content = "<think>\nadd them\n</think>\n\n4";
    check_render(QWEN3_TPL, m2, 5, NULL,
                 "<|im_start|>system\nSys<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
                 "<|im_start|>assistant\nHello<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n"
                 "<|im_start|>assistant\n<think>\nadd them\n</think>\n\n4<|im_end|>\n");

    /* tools: no default system prompt; arguments strings go in verbatim; a tool-call round
     * after the query keeps its reasoning_content */
    chat_tool tools[] = {WEATHER, TIME};
    chat_tool_call calls[] = {{"c1", "get_weather", "{\"city\":\"Paris\"}"}};
    chat_msg m3[] = {
        {.role = CHAT_USER, .content = "Weather?"},
        {.role = CHAT_ASSISTANT,
         .content = "",
         .reasoning_content = "\nNeed the tool.\n",
         .tool_calls = calls,
         .n_tool_calls = 1},
        {.role = CHAT_TOOL, .content = "rain"},
    };
    check_render(QWEN3_TPL, m3, 3,
                 &(chat_opts){.tools = tools, .n_tools = 2, .add_generation_prompt = 1},
                 "<|im_start|>system\n" HERMES_TOOLS "<|im_start|>user\nWeather?<|im_end|>\n"
                 "<|im_start|>assistant\n<think>\nNeed the tool.\n</think>\n\n<tool_call>\n"
                 "{\"name\": \"get_weather\", \"arguments\": {\"city\":\"Paris\"}}\n"
                 "</tool_call><|im_end|>\n"
                 "<|im_start|>user\n<tool_response>\nrain\n</tool_response><|im_end|>\n"
                 "<|im_start|>assistant\n");
}

/* ---- Llama 3 ---- */

#define L31_SYS_HEAD "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"

static void test_llama3(void **st) {
    (void)st;
    chat_msg m1[] = {{.role = CHAT_SYSTEM, .content = "  Be brief.\n"},
                     {.role = CHAT_USER, .content = " Hi "},
                     {.role = CHAT_ASSISTANT, .content = "Hello."},
                     {.role = CHAT_USER, .content = "Bye"}};
    chat_opts gen = {.add_generation_prompt = 1};
    check_render(LLAMA31_TPL, m1, 4, &gen,
                 L31_SYS_HEAD "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n"
                              "Be brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi"
                              "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHello."
                              "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nBye"
                              "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n");
    /* no system message: the header is still there, with an empty system text */
    check_render(LLAMA31_TPL, m1 + 1, 1, &(chat_opts){.date_string = "01 Jan 2026"},
                 L31_SYS_HEAD "Cutting Knowledge Date: December 2023\nToday Date: 01 Jan 2026\n\n"
                              "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi"
                              "<|eot_id|>");
    /* 3.0: plain turns */
    check_render(LLAMA30_TPL, m1, 4, &gen,
                 "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief."
                 "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi"
                 "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHello."
                 "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nBye"
                 "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n");

    /* 3.1 tools: in the first user turn as indented JSON; call and result turns */
    chat_tool tools[] = {TIME};
    chat_tool_call call[] = {{"c1", "get_time", "{\"tz\":\"UTC\"}"}};
    chat_msg m2[] = {
        {.role = CHAT_USER, .content = "Time?"},
        {.role = CHAT_ASSISTANT, .content = "ignored", .tool_calls = call, .n_tool_calls = 1},
        {.role = CHAT_TOOL, .content = "12:00 \"noon\""},
    };
    check_render(LLAMA31_TPL, m2, 3,
                 &(chat_opts){.tools = tools, .n_tools = 1, .add_generation_prompt = 1},
                 L31_SYS_HEAD "Environment: ipython\nCutting Knowledge Date: December 2023\n"
                              "Today Date: 26 Jul 2024\n\n<|eot_id|>"
                              "<|start_header_id|>user<|end_header_id|>\n\n"
                              "Given the following functions, please respond with a JSON for a "
                              "function call with its proper arguments that best answers the "
                              "given prompt.\n\nRespond in the format {\"name\": function name, "
                              "\"parameters\": dictionary of argument name and its value}.Do "
                              "not use variables.\n\n{\n    \"type\": \"function\",\n    "
                              "\"function\": {\n        \"name\": \"get_time\",\n        "
                              "\"parameters\": {}\n    }\n}\n\nTime?<|eot_id|>"
                              "<|start_header_id|>assistant<|end_header_id|>\n\n{\"name\": "
                              "\"get_time\", \"parameters\": {\"tz\": \"UTC\"}}<|eot_id|>"
                              "<|start_header_id|>ipython<|end_header_id|>\n\n\"12:00 "
                              "\\\"noon\\\"\"<|eot_id|><|start_header_id|>assistant"
                              "<|end_header_id|>\n\n");

    chat_template t;
    chat_template_detect(&t, LLAMA31_TPL);
    char *out;
    size_t len;
    chat_tool_call two[] = {call[0], call[0]};
    chat_msg m3[] = {{.role = CHAT_ASSISTANT, .tool_calls = two, .n_tool_calls = 2}};
    assert_int_equal(chat_render(&t, m3, 1, NULL, &out, &len), SH_EINVAL);
    assert_int_equal(
        chat_render(&t, NULL, 0, &(chat_opts){.tools = tools, .n_tools = 1}, &out, &len),
        SH_EINVAL);
}

static void test_json_style(void **st) {
    (void)st;
    /* Python's json.dumps: floats shortest repr, escapes, nesting, unicode kept */
    chat_tool_call c[] = {{"x", "f",
                           "{\"a\":0.1,\"b\":1e16,\"c\":1.0,\"d\":-2.5e-7,\"e\":[true,false,null],"
                           "\"f\":\"q\\\"\\\\\\n\\u0001é\",\"g\":{},\"h\":[],\"i\":123456789012,"
                           "\"j\":100.0,\"k\":0.0001}"},
                          {"y", "g", "not json"}};
    chat_msg m[] = {{.role = CHAT_ASSISTANT, .tool_calls = c, .n_tool_calls = 2}};
    check_render(NULL, m, 1, NULL,
                 "<|im_start|>assistant\n<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": "
                 "0.1, \"b\": 1e+16, \"c\": 1.0, \"d\": -2.5e-07, \"e\": [true, false, null], "
                 "\"f\": \"q\\\"\\\\\\n\\u0001é\", \"g\": {}, \"h\": [], \"i\": 123456789012, "
                 "\"j\": 100.0, \"k\": 0.0001}}\n</tool_call>\n<tool_call>\n{\"name\": \"g\", "
                 "\"arguments\": \"not json\"}\n</tool_call><|im_end|>\n");
    /* fallback renders nothing for an empty conversation */
    check_render(NULL, NULL, 0, NULL, "");
}

/* ---- tool-call parser ---- */

typedef struct {
    char text[4096];
    size_t n_text;
    char calls[8][2][256];
    int n_calls;
    int utf8_ok; /* every text event starts and ends on character boundaries */
} collect;

static int on_event(void *user, const chat_event *ev) {
    collect *c = user;
    if (ev->kind == CHAT_EV_TEXT) {
        assert_true(ev->len > 0);
        assert_true(c->n_text + ev->len < sizeof c->text);
        if (((unsigned char)ev->text[0] & 0xC0) == 0x80) c->utf8_ok = 0;
        unsigned char last = (unsigned char)ev->text[ev->len - 1];
        if (last >= 0xC0) c->utf8_ok = 0;
        memcpy(c->text + c->n_text, ev->text, ev->len);
        c->n_text += ev->len;
        c->text[c->n_text] = 0;
    } else {
        assert_true(c->n_calls < 8);
        snprintf(c->calls[c->n_calls][0], 256, "%s", ev->name);
        snprintf(c->calls[c->n_calls][1], 256, "%s", ev->arguments);
        /* a call closes any text so far: mark the position with \x01 */
        c->text[c->n_text++] = '\x01';
        c->text[c->n_text] = 0;
        c->n_calls++;
    }
    return 0;
}

/* Feed s in three pieces cut at every pair of points; every run must give the same events. */
static void parse_all_splits(const chat_template *t, const char *s, const char *want_text,
                             int want_calls, const char *const *want) {
    size_t len = strlen(s);
    chat_tcp *p;
    assert_int_equal(chat_tcp_new(&p, t), SH_OK);
    for (size_t a = 0; a <= len; a++)
        for (size_t b = a; b <= len; b++) {
            collect c = {.utf8_ok = 1};
            assert_int_equal(chat_tcp_feed(p, s, a, on_event, &c), SH_OK);
            assert_int_equal(chat_tcp_feed(p, s + a, b - a, on_event, &c), SH_OK);
            assert_int_equal(chat_tcp_feed(p, s + b, len - b, on_event, &c), SH_OK);
            assert_int_equal(chat_tcp_finish(p, on_event, &c), SH_OK);
            if (strcmp(c.text, want_text) != 0) {
                print_message("split %zu %zu: got [%s]\n", a, b, c.text);
                fail();
            }
            assert_true(c.utf8_ok);
            assert_int_equal(c.n_calls, want_calls);
            for (int k = 0; k < want_calls; k++) {
                assert_string_equal(c.calls[k][0], want[2 * k]);
                assert_string_equal(c.calls[k][1], want[2 * k + 1]);
            }
        }
    chat_tcp_free(p);
}

static void test_parser(void **st) {
    (void)st;
    const char *want[] = {"get_weather",  "{\"city\":\"Zürich\",\"days\":2}", "get_time", "{}", "f",
                          "{\"x\":[1,2]}"};
    parse_all_splits(NULL,
                     "Let me check <b>é</b> <tool_ca…\n<tool_call>\n{\"name\": \"get_weather\", "
                     "\"arguments\": {\"city\": \"Zürich\", \"days\": 2}}\n</tool_call>\n"
                     "<tool_call>{\"name\":\"get_time\"}</tool_call>"
                     "<tool_call>{\"name\":\"f\",\"parameters\":\"{\\\"x\\\": [1, 2]}\"}"
                     "</tool_call> done <",
                     "Let me check <b>é</b> <tool_ca…\n\x01\n\x01\x01 done <", 3, want);
    /* plain text passes through untouched */
    parse_all_splits(NULL, "no calls here: a < b, <tool>, 1 <tool_cal",
                     "no calls here: a < b, <tool>, 1 <tool_cal", 0, NULL);
}

static void test_parser_malformed(void **st) {
    (void)st;
    /* bad JSON, missing name, non-object arguments: text, tags included */
    const char *bad = "A<tool_call>\n{\"name\": \"f\", \"arguments\": {oops}\n</tool_call>B"
                      "<tool_call>{\"arguments\": {}}</tool_call>"
                      "<tool_call>{\"name\": \"g\", \"arguments\": \"[1\"}</tool_call>"
                      "<tool_call>{\"name\": \"h\", \"arguments\": 5}</tool_call>C";
    parse_all_splits(NULL, bad, bad, 0, NULL);
    /* never closed: everything comes back at the end */
    const char *open = "Sure.<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": 1}}";
    parse_all_splits(NULL, open, open, 0, NULL);
    const char *want[] = {"ok", "{}"};
    parse_all_splits(NULL, "<tool_call>{\"name\":\"ok\"}</tool_call><tool_call>", "\x01<tool_call>",
                     1, want);
}

static void test_parser_llama3(void **st) {
    (void)st;
    chat_template t;
    chat_template_detect(&t, LLAMA31_TPL);
    const char *want[] = {"get_time", "{\"tz\":\"UTC\"}"};
    parse_all_splits(&t, "\n {\"name\": \"get_time\", \"parameters\": {\"tz\": \"UTC\"}}\n", "\x01",
                     1, want);
    parse_all_splits(&t, "  The time is {unknown}. ☕", "  The time is {unknown}. ☕", 0, NULL);
    parse_all_splits(&t, " {\"not\": \"a call\"}", " {\"not\": \"a call\"}", 0, NULL);
    parse_all_splits(&t, "", "", 0, NULL);
}

/* A callback's error stops the feed and comes back unchanged. */
static int refuse(void *user, const chat_event *ev) {
    (void)user;
    (void)ev;
    return SH_ECANCELED;
}

static void test_parser_stop(void **st) {
    (void)st;
    chat_tcp *p;
    assert_int_equal(chat_tcp_new(&p, NULL), SH_OK);
    assert_int_equal(chat_tcp_feed(p, "abc", 3, refuse, NULL), SH_ECANCELED);
    chat_tcp_reset(p);
    collect c = {.utf8_ok = 1};
    assert_int_equal(chat_tcp_feed(p, "<tool_", 6, on_event, &c), SH_OK);
    assert_int_equal(c.n_text, 0); /* held back */
    assert_int_equal(chat_tcp_feed(p, "x", 1, on_event, &c), SH_OK);
    assert_string_equal(c.text, "<tool_x");
    chat_tcp_free(p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_detect),        cmocka_unit_test(test_qwen25_plain),
        cmocka_unit_test(test_qwen25_tools),  cmocka_unit_test(test_qwen3),
        cmocka_unit_test(test_llama3),        cmocka_unit_test(test_json_style),
        cmocka_unit_test(test_parser),        cmocka_unit_test(test_parser_malformed),
        cmocka_unit_test(test_parser_llama3), cmocka_unit_test(test_parser_stop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
