/* test_openai.c - the OpenAI codec: request decoding and its errors, request round trips,
 * golden SSE/JSON answers, answer round trips at every byte split. */
#include "testutil.h"

#include "proto/conv.h"
#include "proto/openai.h"

#include <math.h>

#include "proto_testutil.h" /* event recorder, request comparison */

/* ---- decoding ---- */

static void test_decode_chat_full(void **state) {
    (void)state;
    const char *body =
        "{\"model\":\"qwen\",\"messages\":["
        "{\"role\":\"system\",\"content\":\"Be brief.\"},"
        "{\"role\":\"developer\",\"content\":[{\"type\":\"text\",\"text\":\"No lists.\"}]},"
        "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},{\"type\":\"text\",\"text\":\"b\"}]},"
        "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"c1\",\"type\":\"function\","
        "\"function\":{\"name\":\"f\",\"arguments\":\"{\\\"x\\\": 1}\"}}]},"
        "{\"role\":\"tool\",\"tool_call_id\":\"c1\",\"content\":\"ok\"},"
        "{\"role\":\"user\",\"content\":\"next\"}],"
        "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"description\":\"d\",\"parameters\":{\"type\":\"object\"}}}],"
        "\"tool_choice\":\"required\",\"temperature\":0.7,\"top_p\":1,\"max_completion_tokens\":64,\"stop\":\"###\","
        "\"seed\":7,\"presence_penalty\":0.5,\"frequency_penalty\":-0.5,\"n\":1,\"stream\":true,"
        "\"stream_options\":{\"include_usage\":true},\"response_format\":{\"type\":\"json_object\"},\"user\":\"me\","
        "\"session_id\":\"abc\",\"local_only\":true,\"top_k\":20,\"min_p\":0.05,\"repeat_penalty\":1.1,"
        "\"parallel_tool_calls\":false,\"unknown_extra\":{\"a\":[1,2]}}";
    conv_request r;
    proto_error err;
    assert_int_equal(openai_decode_chat(body, strlen(body), &r, &err), 0);
    assert_string_equal(r.model, "qwen");
    assert_string_equal(r.system, "Be brief.\n\nNo lists.");
    assert_int_equal(r.n_messages, 4);
    assert_int_equal(r.messages[0].role, CONV_USER);
    assert_int_equal(r.messages[0].n_blocks, 2);
    assert_int_equal(r.messages[1].role, CONV_ASSISTANT);
    assert_int_equal(r.messages[1].n_blocks, 1);
    assert_int_equal(r.messages[1].blocks[0].kind, CONV_TOOL_USE);
    assert_string_equal(r.messages[1].blocks[0].input_json, "{\"x\":1}");
    assert_int_equal(r.messages[2].role, CONV_TOOL);
    assert_string_equal(r.messages[2].blocks[0].id, "c1");
    assert_string_equal(r.messages[2].blocks[0].name, "f");
    assert_string_equal(r.messages[2].blocks[0].text, "ok");
    assert_int_equal(r.n_tools, 1);
    assert_string_equal(r.tools[0].schema_json, "{\"type\":\"object\"}");
    assert_int_equal(r.tool_choice, CONV_TOOLS_ANY);
    assert_true(fabs(r.temperature - 0.7) < 1e-12);
    assert_int_equal(r.max_tokens, 64);
    assert_int_equal(r.n_stop, 1);
    assert_string_equal(r.stop[0], "###");
    assert_int_equal(r.seed, 7);
    assert_true(r.stream && r.include_usage && r.json_mode && r.local_only);
    assert_string_equal(r.session_id, "abc");
    assert_string_equal(r.user, "me");
    assert_int_equal(r.top_k, 20);
    assert_true(fabs(r.repeat_penalty - 1.1) < 1e-12);
    conv_request_free(&r);
}

static void test_decode_completion(void **state) {
    (void)state;
    const char *body = "{\"model\":\"m\",\"prompt\":[\"def f(\"],\"suffix\":\"return x\",\"max_tokens\":16,\"echo\":false,"
                       "\"logprobs\":null,\"stream\":false}";
    conv_request r;
    proto_error err;
    assert_int_equal(openai_decode_completion(body, strlen(body), &r, &err), 0);
    assert_int_equal(r.api, CONV_API_COMPLETION);
    assert_string_equal(r.prompt, "def f(");
    assert_string_equal(r.suffix, "return x");
    assert_int_equal(r.max_tokens, 16);
    conv_request_free(&r);
}

typedef struct {
    const char *body;
    int status;
    const char *param;
    const char *message; /* a substring of the message */
} bad_case;

static void check_bad(int (*dec)(const char *, size_t, conv_request *, proto_error *), const bad_case *c, size_t n) {
    for (size_t i = 0; i < n; i++) {
        conv_request r;
        proto_error err;
        int rc = dec(c[i].body, strlen(c[i].body), &r, &err);
        if (rc == 0 || err.status != c[i].status || strcmp(err.param, c[i].param) != 0 || !strstr(err.message, c[i].message))
            fprintf(stderr, "case %zu: %s -> rc %d status %d param '%s' message '%s'\n", i, c[i].body, rc, err.status,
                    err.param, err.message);
        assert_int_not_equal(rc, 0);
        assert_int_equal(err.status, c[i].status);
        assert_string_equal(err.param, c[i].param);
        assert_non_null(strstr(err.message, c[i].message));
        assert_null(r.arena); /* freed on failure */
        char *j = openai_error_json(&err);
        assert_non_null(j);
        assert_non_null(strstr(j, "\"type\":\"invalid_request_error\""));
        free(j);
    }
}

#define M "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]"
static const bad_case chat_bad[] = {
    {"{", 400, "", "invalid JSON"},
    {"[1,2]", 400, "", "must be a JSON object"},
    {"{\"model\":\"x\"}", 400, "messages", "'messages' is required"},
    {"{\"messages\":[]}", 400, "messages", "must not be empty"},
    {"{\"messages\":{}}", 400, "messages", "must be an array"},
    {"{\"messages\":[1]}", 400, "messages[0]", "must be an object"},
    {"{\"messages\":[{\"role\":\"wizard\",\"content\":\"x\"}]}", 400, "messages[0].role", "unknown role 'wizard'"},
    {"{\"messages\":[{\"role\":\"function\",\"content\":\"x\"}]}", 400, "messages[0].role", "unknown role"},
    {"{\"messages\":[{\"content\":\"x\"}]}", 400, "messages[0].role", "needs a string 'role'"},
    {"{\"messages\":[{\"role\":\"user\",\"content\":5}]}", 400, "messages[0].content", "must be a string or an array"},
    {"{\"messages\":[{\"role\":\"user\"}]}", 400, "messages[0].content", "needs 'content'"},
    {"{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":{\"url\":\"x\"}}]}]}", 400,
     "messages[0].content[0]", "images are not supported"},
    {"{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"input_audio\"}]}]}", 400, "messages[0].content[0]",
     "audio is not supported"},
    {"{\"messages\":[{\"role\":\"tool\",\"content\":\"x\"}]}", 400, "messages[0].tool_call_id", "tool_call_id"},
    {"{\"messages\":[{\"role\":\"assistant\",\"tool_calls\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}]}]}", 400,
     "messages[0].tool_calls[0]", "string 'id'"},
    {"{" M ",\"temperature\":3}", 400, "temperature", "between 0 and 2"},
    {"{" M ",\"temperature\":\"hot\"}", 400, "temperature", "must be a number"},
    {"{" M ",\"top_p\":1.5}", 400, "top_p", "between 0 and 1"},
    {"{" M ",\"presence_penalty\":-3}", 400, "presence_penalty", "between -2 and 2"},
    {"{" M ",\"frequency_penalty\":2.5}", 400, "frequency_penalty", "between -2 and 2"},
    {"{" M ",\"max_tokens\":0}", 400, "max_tokens", "between 1 and"},
    {"{" M ",\"max_tokens\":1.5}", 400, "max_tokens", "an integer"},
    {"{" M ",\"n\":2}", 400, "n", "only n=1"},
    {"{" M ",\"stop\":5}", 400, "stop", "a string or an array"},
    {"{" M ",\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\",\"f\",\"g\",\"h\",\"i\",\"j\",\"k\",\"l\",\"m\",\"n\",\"o\",\"p\",\"q\"]}",
     400, "stop", "at most 16"},
    {"{" M ",\"stream\":\"yes\"}", 400, "stream", "a boolean"},
    {"{" M ",\"stream_options\":{\"include_usage\":1}}", 400, "stream_options.include_usage", "a boolean"},
    {"{" M ",\"seed\":-5}", 400, "seed", "between -1"},
    {"{" M ",\"response_format\":{\"type\":\"json_schema\"}}", 400, "response_format", "not supported"},
    {"{" M ",\"response_format\":{\"type\":\"yaml\"}}", 400, "response_format", "must be"},
    {"{" M ",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}],\"tool_choice\":{\"type\":\"function\","
     "\"function\":{\"name\":\"g\"}}}",
     400, "tool_choice", "'g', which is not in 'tools'"},
    {"{" M ",\"tool_choice\":\"required\"}", 400, "tool_choice", "needs 'tools'"},
    {"{" M ",\"tool_choice\":\"sometimes\"}", 400, "tool_choice", "must be"},
    {"{" M ",\"tools\":[{\"type\":\"retrieval\"}]}", 400, "tools[0]", "type 'function'"},
    {"{" M ",\"tools\":[{\"type\":\"function\",\"function\":{}}]}", 400, "tools[0]", "function 'name'"},
    {"{" M ",\"logprobs\":true}", 400, "logprobs", "not supported"},
    {"{" M ",\"session_id\":5}", 400, "session_id", "a string"},
    {"{" M ",\"local_only\":\"no\"}", 400, "local_only", "a boolean"},
    {"{\"messages\":[{\"role\":\"user\",\"content\":\"\xff\xfe\"}]}", 400, "", "invalid JSON"},
    {"{\"messages\":[{\"role\":\"user\",\"content\":\"\\u0000\"}]}", 400, "", "invalid JSON"},
};

static const bad_case completion_bad[] = {
    {"{\"model\":\"m\"}", 400, "prompt", "'prompt' is required"},
    {"{\"prompt\":[1,2,3]}", 400, "prompt", "one string"},
    {"{\"prompt\":[[1,2,3]]}", 400, "prompt", "token-id prompts"},
    {"{\"prompt\":\"x\",\"echo\":true}", 400, "echo", "not supported"},
    {"{\"prompt\":\"x\",\"logprobs\":5}", 400, "logprobs", "not supported"},
    {"{\"prompt\":\"x\",\"best_of\":3}", 400, "best_of", "best_of=1"},
    {"{\"prompt\":\"x\",\"n\":3}", 400, "n", "only n=1"},
};

static void test_decode_errors(void **state) {
    (void)state;
    check_bad(openai_decode_chat, chat_bad, sizeof chat_bad / sizeof chat_bad[0]);
    check_bad(openai_decode_completion, completion_bad, sizeof completion_bad / sizeof completion_bad[0]);
}

static void test_error_json(void **state) {
    (void)state;
    proto_error e;
    proto_error_set(&e, CONV_ERR_INVALID, "n", "only n=1 is supported");
    char *j = openai_error_json(&e);
    assert_string_equal(j, "{\"error\":{\"message\":\"only n=1 is supported\",\"type\":\"invalid_request_error\","
                           "\"param\":\"n\",\"code\":null}}");
    free(j);
    proto_error_set(&e, CONV_ERR_RATE, NULL, "slow down");
    assert_int_equal(e.status, 429);
    j = openai_error_json(&e);
    assert_string_equal(j, "{\"error\":{\"message\":\"slow down\",\"type\":\"rate_limit_error\",\"param\":null,\"code\":null}}");
    free(j);
    assert_int_equal(openai_error_status(CONV_ERR_OVERLOADED), 503);
}

/* Deep nesting inside a schema is kept; absurd depth and oversized bodies are clear errors. */
static void test_limits(void **state) {
    (void)state;
    conv_buf b;
    conv_buf_init(&b, 64u << 20);
    conv_request r;
    proto_error err;
    conv_buf_puts(&b, "{" M ",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":");
    for (int i = 0; i < 20; i++) conv_buf_puts(&b, "{\"a\":");
    conv_buf_puts(&b, "1");
    for (int i = 0; i < 20; i++) conv_buf_puts(&b, "}");
    conv_buf_puts(&b, "}}]}");
    assert_int_equal(openai_decode_chat(b.p, b.len, &r, &err), 0);
    assert_non_null(strstr(r.tools[0].schema_json, "{\"a\":{\"a\":1}}"));
    conv_request_free(&r);

    b.len = 0; /* 5000 levels: the parser's depth bound answers 400 */
    conv_buf_puts(&b, "{\"messages\":");
    for (int i = 0; i < 5000; i++) conv_buf_puts(&b, "[");
    assert_int_not_equal(openai_decode_chat(b.p, b.len, &r, &err), 0);
    assert_int_equal(err.status, 400);

    b.len = 0; /* a 1 MB message is a long prompt, not an error */
    conv_buf_puts(&b, "{\"messages\":[{\"role\":\"user\",\"content\":\"");
    for (int i = 0; i < (1 << 20) / 8; i++) conv_buf_puts(&b, "abcdefg ");
    conv_buf_puts(&b, "\"}]}");
    assert_int_equal(openai_decode_chat(b.p, b.len, &r, &err), 0);
    assert_int_equal(strlen(r.messages[0].blocks[0].text), 1 << 20);
    conv_request_free(&r);

    /* 100k tiny messages: bounded by the arena, decoded */
    b.len = 0;
    conv_buf_puts(&b, "{\"messages\":[");
    for (int i = 0; i < 100000; i++) conv_buf_puts(&b, i ? ",{\"role\":\"user\",\"content\":[]}" : "{\"role\":\"user\",\"content\":[]}");
    conv_buf_puts(&b, "]}");
    assert_int_equal(openai_decode_chat(b.p, b.len, &r, &err), 0);
    assert_int_equal(r.n_messages, 100000);
    conv_request_free(&r);

    /* over CONV_MAX_BODY: 413 before parsing */
    assert_int_not_equal(openai_decode_chat(b.p, CONV_MAX_BODY + 1u, &r, &err), 0);
    assert_int_equal(err.status, 413);
    conv_buf_free(&b);
}

/* ---- request round trips ---- */

static void test_request_roundtrip(void **state) {
    (void)state;
    conv_request a, b;
    proto_error err;
    sample_request(&a);
    a.seed = 42;
    a.presence_penalty = 0.25;
    a.frequency_penalty = -0.125;
    a.min_p = 0.05;
    a.repeat_penalty = 1.1;
    a.json_mode = 1;
    a.stream = 1;
    a.include_usage = 1;
    char *body = openai_encode_request_ex(&a, NULL, 1, OPENAI_REQ_EXTENSIONS);
    assert_non_null(body);
    assert_int_equal(openai_decode_chat(body, strlen(body), &b, &err), 0);
    assert_same_request(&a, &b);
    free(body);
    conv_request_free(&b);

    /* without extensions the body has nothing the real API would reject */
    body = openai_encode_request_ex(&a, "gpt-x", 0, OPENAI_REQ_MAX_COMPLETION_TOKENS);
    assert_null(strstr(body, "top_k"));
    assert_null(strstr(body, "session_id"));
    assert_null(strstr(body, "\"max_tokens\""));
    assert_non_null(strstr(body, "\"max_completion_tokens\":256"));
    assert_non_null(strstr(body, "\"model\":\"gpt-x\""));
    free(body);
    conv_request_free(&a);

    /* completion API */
    assert_int_equal(conv_request_init(&a, 4096), 0);
    a.api = CONV_API_COMPLETION;
    a.prompt = "def f(";
    a.suffix = "\n";
    a.max_tokens = 8;
    body = openai_encode_request_ex(&a, "m", 0, 0);
    assert_int_equal(openai_decode_completion(body, strlen(body), &b, &err), 0);
    a.model = "m";
    assert_same_request(&a, &b);
    free(body);
    conv_request_free(&a);
    conv_request_free(&b);
}

/* ---- answers ---- */

static const openai_enc_opts chat_stream = {CONV_API_CHAT, 1, 1, "m", "chatcmpl-1", 1700000000};

static char *encode(const openai_enc_opts *o, const conv_event *evs, int n, int *status) {
    conv_buf out;
    conv_buf_init(&out, 1 << 20);
    openai_enc *e = openai_enc_new(o, buf_write, &out);
    assert_non_null(e);
    play(evs, n, openai_enc_event, e);
    if (status) *status = openai_enc_status(e);
    assert_int_equal(openai_enc_finish(e), 0);
    openai_enc_free(e);
    return out.p;
}

#define P "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"m\","
static void test_golden_stream(void **state) {
    (void)state;
    const conv_event evs[] = {
        {.kind = CONV_EV_START, .usage = {5, 0, 0}},
        {.kind = CONV_EV_TEXT, .text = "Hi", .len = 2},
        {.kind = CONV_EV_TOOL_START, .index = 0, .id = "call_1", .name = "get"},
        {.kind = CONV_EV_TOOL_DELTA, .index = 0, .text = "{\"a\":1}", .len = 7},
        {.kind = CONV_EV_TOOL_END, .index = 0},
        {.kind = CONV_EV_STOP, .reason = CONV_STOP_TOOL_USE, .usage = {5, 3, 0}},
    };
    char *s = encode(&chat_stream, evs, 6, NULL);
    const char *want =
        "data: " P "\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":null,"
        "\"finish_reason\":null}],\"usage\":null}\n\n"
        "data: " P "\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"logprobs\":null,\"finish_reason\":null}],"
        "\"usage\":null}\n\n"
        "data: " P "\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_1\",\"type\":\"function\","
        "\"function\":{\"name\":\"get\",\"arguments\":\"\"}}]},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n"
        "data: " P "\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":"
        "\"{\\\"a\\\":1}\"}}]},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n"
        "data: " P "\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"tool_calls\"}],"
        "\"usage\":null}\n\n"
        "data: " P "\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":3,\"total_tokens\":8}}\n\n"
        "data: [DONE]\n\n";
    assert_string_equal(s, want);
    free(s);

    /* non-streaming: one chat.completion */
    openai_enc_opts o = {CONV_API_CHAT, 0, 0, "m", "chatcmpl-1", 1700000000};
    int status;
    s = encode(&o, evs, 6, &status);
    assert_int_equal(status, 200);
    assert_string_equal(s, "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion\",\"created\":1700000000,\"model\":\"m\","
                           "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"Hi\",\"tool_calls\":"
                           "[{\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"get\",\"arguments\":"
                           "\"{\\\"a\\\":1}\"}}]},\"logprobs\":null,\"finish_reason\":\"tool_calls\"}],\"usage\":"
                           "{\"prompt_tokens\":5,\"completion_tokens\":3,\"total_tokens\":8}}");
    free(s);

    /* completions API, streaming without usage */
    openai_enc_opts c = {CONV_API_COMPLETION, 1, 0, "m", "cmpl-1", 1};
    const conv_event ce[] = {{.kind = CONV_EV_START}, {.kind = CONV_EV_TEXT, .text = "x", .len = 1},
                             {.kind = CONV_EV_STOP, .reason = CONV_STOP_LENGTH, .usage = {1, 1, 0}}};
    s = encode(&c, ce, 3, NULL);
    assert_string_equal(s, "data: {\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":1,\"model\":\"m\",\"choices\":"
                           "[{\"text\":\"x\",\"index\":0,\"logprobs\":null,\"finish_reason\":null}]}\n\n"
                           "data: {\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":1,\"model\":\"m\",\"choices\":"
                           "[{\"text\":\"\",\"index\":0,\"logprobs\":null,\"finish_reason\":\"length\"}]}\n\n"
                           "data: [DONE]\n\n");
    free(s);
}

/* A character split across two TEXT events is sent whole; an error mid-stream ends the stream. */
static void test_stream_utf8_and_error(void **state) {
    (void)state;
    const conv_event evs[] = {
        {.kind = CONV_EV_START},
        {.kind = CONV_EV_TEXT, .text = "caf\xc3", .len = 4},
        {.kind = CONV_EV_TEXT, .text = "\xa9!", .len = 2},
        {.kind = CONV_EV_ERROR, .error_kind = CONV_ERR_INTERNAL, .text = "boom", .len = 4},
        {.kind = CONV_EV_TEXT, .text = "ignored", .len = 7},
    };
    openai_enc_opts o = {CONV_API_CHAT, 1, 0, "m", "chatcmpl-1", 1};
    char *s = encode(&o, evs, 5, NULL);
    assert_non_null(strstr(s, "\"delta\":{\"content\":\"caf\"}"));
    assert_non_null(strstr(s, "\"delta\":{\"content\":\"\xc3\xa9!\"}"));
    assert_non_null(strstr(s, "data: {\"error\":{\"message\":\"boom\",\"type\":\"server_error\",\"param\":null,\"code\":null}}\n\n"));
    assert_null(strstr(s, "[DONE]"));
    assert_null(strstr(s, "ignored"));
    rec r;
    rec_init(&r);
    openai_dec *d = openai_dec_new(1);
    assert_int_equal(openai_dec_feed(d, s, strlen(s), rec_event, &r), 0);
    assert_int_equal(openai_dec_finish(d, rec_event, &r), 0);
    assert_string_equal(rec_str(&r), "START(0)\nTEXT(caf\xc3\xa9!)\nERROR(5,boom)\n");
    openai_dec_free(d);
    conv_buf_free(&r.out);
    free(s);

    /* non-streaming error: the status and body */
    o.stream = 0;
    int status;
    s = encode(&o, evs, 4, &status);
    assert_int_equal(status, 500);
    assert_string_equal(s, "{\"error\":{\"message\":\"boom\",\"type\":\"server_error\",\"param\":null,\"code\":null}}");
    free(s);

    /* a stream that ends without STOP gets an error chunk at finish */
    o.stream = 1;
    s = encode(&o, evs, 2, NULL);
    assert_non_null(strstr(s, "\"error\""));
    free(s);
}

static const conv_event answer[] = {
    {.kind = CONV_EV_START, .usage = {11, 0, 4}},
    {.kind = CONV_EV_TEXT, .text = "Let me ", .len = 7},
    {.kind = CONV_EV_TEXT, .text = "check \"that\"\n", .len = 13},
    {.kind = CONV_EV_TOOL_START, .index = 0, .id = "call_a", .name = "get_weather"},
    {.kind = CONV_EV_TOOL_DELTA, .index = 0, .text = "{\"city\":", .len = 8},
    {.kind = CONV_EV_TOOL_DELTA, .index = 0, .text = "\"Paris\"}", .len = 8},
    {.kind = CONV_EV_TOOL_END, .index = 0},
    {.kind = CONV_EV_TOOL_START, .index = 1, .id = "call_b", .name = "get_time"},
    {.kind = CONV_EV_TOOL_DELTA, .index = 1, .text = "{}", .len = 2},
    {.kind = CONV_EV_TOOL_END, .index = 1},
    {.kind = CONV_EV_STOP, .reason = CONV_STOP_TOOL_USE, .usage = {11, 9, 4}},
};
#define N_ANSWER ((int)(sizeof answer / sizeof answer[0]))

static void test_answer_roundtrip(void **state) {
    (void)state;
    rec want;
    rec_init(&want);
    play(answer, N_ANSWER, rec_event, &want);
    /* streaming: the decoder sees no prompt tokens at START (they come with the usage chunk) */
    rec want_stream;
    rec_init(&want_stream);
    want_stream.no_start_usage = 1;
    play(answer, N_ANSWER, rec_event, &want_stream);

    char *s = encode(&chat_stream, answer, N_ANSWER, NULL);
    size_t n = strlen(s);
    for (size_t k = 0; k <= n; k++) {
        rec got;
        rec_init(&got);
        got.no_start_usage = 1;
        openai_dec *d = openai_dec_new(1);
        assert_int_equal(openai_dec_feed(d, s, k, rec_event, &got), 0);
        assert_int_equal(openai_dec_feed(d, s + k, n - k, rec_event, &got), 0);
        assert_int_equal(openai_dec_finish(d, rec_event, &got), 0);
        assert_string_equal(rec_str(&got), rec_str(&want_stream));
        openai_dec_free(d);
        conv_buf_free(&got.out);
    }
    free(s);

    openai_enc_opts o = chat_stream;
    o.stream = 0;
    s = encode(&o, answer, N_ANSWER, NULL);
    rec got;
    rec_init(&got);
    openai_dec *d = openai_dec_new(0);
    assert_int_equal(openai_dec_feed(d, s, strlen(s), rec_event, &got), 0);
    assert_int_equal(openai_dec_finish(d, rec_event, &got), 0);
    assert_string_equal(rec_str(&got), rec_str(&want));
    openai_dec_free(d);
    conv_buf_free(&got.out);
    free(s);
    conv_buf_free(&want.out);
    conv_buf_free(&want_stream.out);
}

/* A client decoding an error body (any non-2xx answer). */
static void test_decode_error_body(void **state) {
    (void)state;
    const char *body = "{\"error\":{\"message\":\"Rate limit reached\",\"type\":\"rate_limit_error\",\"param\":null,\"code\":null}}";
    rec got;
    rec_init(&got);
    openai_dec *d = openai_dec_new(0);
    assert_int_equal(openai_dec_feed(d, body, strlen(body), rec_event, &got), 0);
    assert_int_equal(openai_dec_finish(d, rec_event, &got), 0);
    assert_string_equal(rec_str(&got), "ERROR(4,Rate limit reached)\n");
    openai_dec_free(d);
    conv_buf_free(&got.out);
    assert_int_equal(conv_error_kind_from_status(529), CONV_ERR_OVERLOADED);

    /* a truncated stream is an error, not a silent success */
    const char *cut = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"}}]}\n\n";
    rec_init(&got);
    d = openai_dec_new(1);
    assert_int_equal(openai_dec_feed(d, cut, strlen(cut), rec_event, &got), 0);
    assert_int_equal(openai_dec_finish(d, rec_event, &got), 0);
    assert_non_null(strstr(rec_str(&got), "ERROR(8,"));
    openai_dec_free(d);
    conv_buf_free(&got.out);

    /* garbage in a stream is SH_EFORMAT */
    d = openai_dec_new(1);
    assert_int_not_equal(openai_dec_feed(d, "data: {nope\n\n", 13, rec_event, &got), 0);
    openai_dec_free(d);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decode_chat_full),  cmocka_unit_test(test_decode_completion),
        cmocka_unit_test(test_decode_errors),     cmocka_unit_test(test_error_json),
        cmocka_unit_test(test_limits),            cmocka_unit_test(test_request_roundtrip),
        cmocka_unit_test(test_golden_stream),     cmocka_unit_test(test_stream_utf8_and_error),
        cmocka_unit_test(test_answer_roundtrip),  cmocka_unit_test(test_decode_error_body),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
