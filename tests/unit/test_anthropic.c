/* test_anthropic.c - the Anthropic codec: request decoding and its errors, round trips (also
 * across dialects), golden SSE/JSON answers, answer round trips at every byte split. */
#include "testutil.h"

#include "proto/anthropic.h"
#include "proto/conv.h"
#include "proto/openai.h"

#include <math.h>

#include "proto_testutil.h" /* event recorder, request comparison */

/* ---- decoding ---- */

static const char *claude_body =
    "{\"model\":\"claude-x\",\"max_tokens\":1024,"
    "\"system\":[{\"type\":\"text\",\"text\":\"Be brief.\",\"cache_control\":{\"type\":\"ephemeral\"}},"
    "{\"type\":\"text\",\"text\":\"No lists.\"}],"
    "\"messages\":["
    "{\"role\":\"user\",\"content\":\"Weather?\"},"
    "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"In Paris.\"}]},"
    "{\"role\":\"assistant\",\"content\":[{\"type\":\"thinking\",\"thinking\":\"hmm\",\"signature\":\"s\"},"
    "{\"type\":\"text\",\"text\":\"Checking.\"},"
    "{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"get_weather\",\"input\":{\"city\": \"Paris\"}}]},"
    "{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":\"toolu_1\",\"content\":"
    "[{\"type\":\"text\",\"text\":\"18C\"},{\"type\":\"text\",\"text\":\"cloudy\"}]},"
    "{\"type\":\"text\",\"text\":\"Thanks\"}]}],"
    "\"tools\":[{\"name\":\"get_weather\",\"description\":\"Weather\",\"input_schema\":{\"type\":\"object\","
    "\"properties\":{\"city\":{\"type\":\"string\"}}}}],"
    "\"tool_choice\":{\"type\":\"any\",\"disable_parallel_tool_use\":true},"
    "\"stop_sequences\":[\"\\n\\nHuman:\"],\"temperature\":0.2,\"top_p\":0.95,\"top_k\":5,"
    "\"metadata\":{\"user_id\":\"u-1\"},\"stream\":true,\"thinking\":{\"type\":\"disabled\"},"
    "\"session_id\":\"sess\",\"local_only\":false}";

static void test_decode_messages_full(void **state) {
    (void)state;
    conv_request r;
    proto_error err;
    assert_int_equal(anthropic_decode_messages(claude_body, strlen(claude_body), &r, &err), 0);
    assert_string_equal(r.model, "claude-x");
    assert_int_equal(r.max_tokens, 1024);
    assert_string_equal(r.system, "Be brief.\n\nNo lists.");
    /* user+user merged; thinking dropped; tool_result split from the text after it */
    assert_int_equal(r.n_messages, 4);
    assert_int_equal(r.messages[0].role, CONV_USER);
    assert_int_equal(r.messages[0].n_blocks, 2);
    assert_string_equal(r.messages[0].blocks[1].text, "In Paris.");
    assert_int_equal(r.messages[1].role, CONV_ASSISTANT);
    assert_int_equal(r.messages[1].n_blocks, 2);
    assert_string_equal(r.messages[1].blocks[1].input_json, "{\"city\":\"Paris\"}");
    assert_int_equal(r.messages[2].role, CONV_TOOL);
    assert_string_equal(r.messages[2].blocks[0].text, "18C\ncloudy");
    assert_string_equal(r.messages[2].blocks[0].name, "get_weather");
    assert_int_equal(r.messages[3].role, CONV_USER);
    assert_string_equal(r.messages[3].blocks[0].text, "Thanks");
    assert_int_equal(r.tool_choice, CONV_TOOLS_ANY);
    assert_int_equal(r.n_stop, 1);
    assert_true(fabs(r.temperature - 0.2) < 1e-12);
    assert_int_equal(r.top_k, 5);
    assert_string_equal(r.user, "u-1");
    assert_string_equal(r.session_id, "sess");
    assert_true(r.stream);
    conv_request_free(&r);

    /* count_tokens: max_tokens not needed */
    const char *ct = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
    assert_int_equal(anthropic_decode_count_tokens(ct, strlen(ct), &r, &err), 0);
    assert_int_equal(r.max_tokens, -1);
    conv_request_free(&r);
    char *j = anthropic_count_tokens_json(42);
    assert_string_equal(j, "{\"input_tokens\":42}");
    free(j);
}

typedef struct {
    const char *body;
    int status;
    const char *param;
    const char *message;
} bad_case;

#define MT "\"max_tokens\":10,"
#define MS "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]"
static const bad_case bad[] = {
    {"{\"max_tokens\":", 400, "", "invalid JSON"},
    {"\"text\"", 400, "", "must be a JSON object"},
    {"{" MS "}", 400, "max_tokens", "'max_tokens' is required"},
    {"{\"max_tokens\":0," MS "}", 400, "max_tokens", "between 1 and"},
    {"{\"max_tokens\":\"10\"," MS "}", 400, "max_tokens", "an integer"},
    {"{" MT "\"messages\":[]}", 400, "messages", "must not be empty"},
    {"{" MT "\"messages\":\"hi\"}", 400, "messages", "must be an array"},
    {"{" MT "\"messages\":[{\"role\":\"system\",\"content\":\"x\"}]}", 400, "messages[0].role", "\"user\" or \"assistant\""},
    {"{" MT "\"messages\":[{\"role\":\"user\",\"content\":7}]}", 400, "messages[0].content", "a string or an array"},
    {"{" MT "\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image\",\"source\":{}}]}]}", 400,
     "messages[0].content[0]", "images are not supported"},
    {"{" MT "\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"document\"}]}]}", 400, "messages[0].content[0]",
     "documents are not supported"},
    {"{" MT "\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":\"t\",\"content\":"
     "[{\"type\":\"image\"}]}]}]}",
     400, "messages[0].content[0]", "images are not supported"},
    {"{" MT "\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"tool_use\",\"id\":\"t\",\"name\":\"f\",\"input\":{}}]}]}",
     400, "messages[0].content[0]", "only allowed in assistant"},
    {"{" MT "\"messages\":[{\"role\":\"assistant\",\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":\"t\"}]}]}", 400,
     "messages[0].content[0]", "only allowed in user"},
    {"{" MT "\"messages\":[{\"role\":\"assistant\",\"content\":[{\"type\":\"tool_use\",\"id\":\"t\",\"name\":\"f\","
     "\"input\":\"x\"}]}]}",
     400, "messages[0].content[0]", "object 'input'"},
    {"{" MT "\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"video\"}]}]}", 400, "messages[0].content[0]",
     "unsupported content block type 'video'"},
    {"{" MT MS ",\"temperature\":1.5}", 400, "temperature", "between 0 and 1"},
    {"{" MT MS ",\"top_k\":-1}", 400, "top_k", "between 0 and"},
    {"{" MT MS ",\"stop_sequences\":[1]}", 400, "stop_sequences", "a string or an array"},
    {"{" MT MS ",\"system\":5}", 400, "system", "a string or an array"},
    {"{" MT MS ",\"system\":[{\"type\":\"image\"}]}", 400, "system[0]", "text blocks"},
    {"{" MT MS ",\"tools\":[{\"type\":\"bash_20250124\",\"name\":\"bash\"}]}", 400, "tools[0]", "not supported"},
    {"{" MT MS ",\"tools\":[{\"input_schema\":{}}]}", 400, "tools[0]", "string 'name'"},
    {"{" MT MS ",\"tools\":[{\"name\":\"f\",\"input_schema\":{}}],\"tool_choice\":{\"type\":\"tool\",\"name\":\"g\"}}", 400,
     "tool_choice", "'g', which is not in 'tools'"},
    {"{" MT MS ",\"tool_choice\":{\"type\":\"sometimes\"}}", 400, "tool_choice", "must be"},
    {"{" MT MS ",\"tool_choice\":{\"type\":\"any\"}}", 400, "tool_choice", "needs 'tools'"},
    {"{" MT MS ",\"metadata\":{\"user_id\":5}}", 400, "metadata.user_id", "a string"},
    {"{" MT "\"messages\":[{\"role\":\"user\",\"content\":\"\xc3\x28\"}]}", 400, "", "invalid JSON"},
};

static void test_decode_errors(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        conv_request r;
        proto_error err;
        int rc = anthropic_decode_messages(bad[i].body, strlen(bad[i].body), &r, &err);
        if (rc == 0 || err.status != bad[i].status || strcmp(err.param, bad[i].param) != 0 ||
            !strstr(err.message, bad[i].message))
            fprintf(stderr, "case %zu: %s -> rc %d status %d param '%s' message '%s'\n", i, bad[i].body, rc, err.status,
                    err.param, err.message);
        assert_int_not_equal(rc, 0);
        assert_int_equal(err.status, bad[i].status);
        assert_string_equal(err.param, bad[i].param);
        assert_non_null(strstr(err.message, bad[i].message));
        assert_null(r.arena);
    }
}

static void test_error_json(void **state) {
    (void)state;
    static const struct { conv_error_kind k; int status; const char *type; } kinds[] = {
        {CONV_ERR_INVALID, 400, "invalid_request_error"}, {CONV_ERR_AUTH, 401, "authentication_error"},
        {CONV_ERR_NOT_FOUND, 404, "not_found_error"},     {CONV_ERR_TOO_LARGE, 413, "request_too_large"},
        {CONV_ERR_RATE, 429, "rate_limit_error"},         {CONV_ERR_INTERNAL, 500, "api_error"},
        {CONV_ERR_OVERLOADED, 529, "overloaded_error"},
    };
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        proto_error e;
        proto_error_set(&e, kinds[i].k, NULL, "msg");
        assert_int_equal(anthropic_error_status(kinds[i].k), kinds[i].status);
        char want[200], *j = anthropic_error_json(&e);
        snprintf(want, sizeof want, "{\"type\":\"error\",\"error\":{\"type\":\"%s\",\"message\":\"msg\"}}", kinds[i].type);
        assert_string_equal(j, want);
        free(j);
    }
    proto_error e;
    proto_error_set(&e, CONV_ERR_INVALID, "max_tokens", "'max_tokens' is required");
    char *j = anthropic_error_json(&e);
    assert_string_equal(j, "{\"type\":\"error\",\"error\":{\"type\":\"invalid_request_error\",\"message\":"
                           "\"max_tokens: 'max_tokens' is required\"}}");
    free(j);
}

/* ---- request round trips ---- */

static void test_request_roundtrip(void **state) {
    (void)state;
    conv_request a, b;
    proto_error err;
    sample_request(&a);
    a.messages[2].blocks[1].is_error = 1;
    a.stream = 1;
    char *body = anthropic_encode_request_ex(&a, NULL, 1, ANTHROPIC_REQ_EXTENSIONS);
    assert_non_null(body);
    assert_int_equal(anthropic_decode_messages(body, strlen(body), &b, &err), 0);
    assert_same_request(&a, &b);
    free(body);
    conv_request_free(&b);

    /* plain: no extensions, max_tokens defaulted, temperature clamped */
    a.max_tokens = -1;
    a.temperature = 1.7;
    body = anthropic_encode_request(&a, "claude-y", 0);
    assert_non_null(strstr(body, "\"max_tokens\":4096"));
    assert_non_null(strstr(body, "\"temperature\":1.0"));
    assert_non_null(strstr(body, "\"model\":\"claude-y\""));
    assert_null(strstr(body, "session_id"));
    assert_null(strstr(body, "\"stream\""));
    free(body);
    conv_request_free(&a);
}

/* Anthropic in, OpenAI out and back: messages, tools, tool results survive. */
static void test_cross_dialect(void **state) {
    (void)state;
    conv_request a, b;
    proto_error err;
    assert_int_equal(anthropic_decode_messages(claude_body, strlen(claude_body), &a, &err), 0);
    char *body = openai_encode_request_ex(&a, NULL, a.stream, OPENAI_REQ_EXTENSIONS);
    assert_int_equal(openai_decode_chat(body, strlen(body), &b, &err), 0);
    b.include_usage = 0; /* OpenAI streams ask for usage; Anthropic has no such flag */
    assert_same_request(&a, &b);
    free(body);

    /* and back to Anthropic */
    conv_request c;
    body = anthropic_encode_request_ex(&b, NULL, b.stream, ANTHROPIC_REQ_EXTENSIONS);
    assert_int_equal(anthropic_decode_messages(body, strlen(body), &c, &err), 0);
    assert_same_request(&a, &c);
    free(body);
    conv_request_free(&a);
    conv_request_free(&b);
    conv_request_free(&c);
}

/* ---- answers ---- */

static const anthropic_enc_opts stream_opts = {1, "m", "msg_1"};

static char *encode(const anthropic_enc_opts *o, const conv_event *evs, int n, int *status) {
    conv_buf out;
    conv_buf_init(&out, 1 << 20);
    anthropic_enc *e = anthropic_enc_new(o, buf_write, &out);
    assert_non_null(e);
    play(evs, n, anthropic_enc_event, e);
    if (status) *status = anthropic_enc_status(e);
    assert_int_equal(anthropic_enc_finish(e), 0);
    anthropic_enc_free(e);
    return out.p;
}

static void test_golden_stream(void **state) {
    (void)state;
    const conv_event evs[] = {
        {.kind = CONV_EV_START, .usage = {10, 0, 0}},
        {.kind = CONV_EV_TEXT, .text = "Hi", .len = 2},
        {.kind = CONV_EV_TOOL_START, .index = 0, .id = "toolu_1", .name = "get"},
        {.kind = CONV_EV_TOOL_DELTA, .index = 0, .text = "{\"a\":1}", .len = 7},
        {.kind = CONV_EV_TOOL_END, .index = 0},
        {.kind = CONV_EV_STOP, .reason = CONV_STOP_TOOL_USE, .usage = {10, 7, 0}},
    };
    char *s = encode(&stream_opts, evs, 6, NULL);
    const char *want =
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\","
        "\"role\":\"assistant\",\"content\":[],\"model\":\"m\",\"stop_reason\":null,\"stop_sequence\":null,"
        "\"usage\":{\"input_tokens\":10,\"output_tokens\":0}}}\n\n"
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":"
        "{\"type\":\"text\",\"text\":\"\"}}\n\n"
        "event: ping\ndata: {\"type\":\"ping\"}\n\n"
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":"
        "{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n"
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n"
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":"
        "{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"get\",\"input\":{}}}\n\n"
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":"
        "{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"a\\\":1}\"}}\n\n"
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}\n\n"
        "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\","
        "\"stop_sequence\":null},\"usage\":{\"output_tokens\":7}}\n\n"
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
    assert_string_equal(s, want);
    free(s);

    anthropic_enc_opts o = {0, "m", "msg_1"};
    int status;
    s = encode(&o, evs, 6, &status);
    assert_int_equal(status, 200);
    assert_string_equal(s, "{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"content\":["
                           "{\"type\":\"text\",\"text\":\"Hi\"},{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"get\","
                           "\"input\":{\"a\":1}}],\"model\":\"m\",\"stop_reason\":\"tool_use\",\"stop_sequence\":null,"
                           "\"usage\":{\"input_tokens\":10,\"output_tokens\":7}}");
    free(s);

    /* stop sequence and an error mid-stream */
    const conv_event seq[] = {{.kind = CONV_EV_START, .usage = {3, 0, 0}},
                              {.kind = CONV_EV_STOP, .reason = CONV_STOP_SEQUENCE, .stop_sequence = "END", .usage = {3, 1, 0}}};
    s = encode(&o, seq, 2, NULL);
    assert_non_null(strstr(s, "\"content\":[],\"model\":\"m\",\"stop_reason\":\"stop_sequence\",\"stop_sequence\":\"END\""));
    free(s);
    const conv_event fail[] = {{.kind = CONV_EV_START}, {.kind = CONV_EV_TEXT, .text = "x", .len = 1},
                               {.kind = CONV_EV_ERROR, .error_kind = CONV_ERR_OVERLOADED, .text = "Overloaded", .len = 10}};
    s = encode(&stream_opts, fail, 3, NULL);
    const char *tail = "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n";
    assert_true(strlen(s) > strlen(tail));
    assert_string_equal(s + strlen(s) - strlen(tail), tail);
    free(s);
    s = encode(&o, fail, 3, &status);
    assert_int_equal(status, 529);
    free(s);
}

static const conv_event answer[] = {
    {.kind = CONV_EV_START, .usage = {11, 0, 4}},
    {.kind = CONV_EV_TEXT, .text = "Let me ", .len = 7},
    {.kind = CONV_EV_TEXT, .text = "check \"that\" \xe2\x82", .len = 15},
    {.kind = CONV_EV_TEXT, .text = "\xac\n", .len = 2},
    {.kind = CONV_EV_TOOL_START, .index = 0, .id = "toolu_a", .name = "get_weather"},
    {.kind = CONV_EV_TOOL_DELTA, .index = 0, .text = "{\"city\":", .len = 8},
    {.kind = CONV_EV_TOOL_DELTA, .index = 0, .text = "\"Paris\"}", .len = 8},
    {.kind = CONV_EV_TOOL_END, .index = 0},
    {.kind = CONV_EV_TOOL_START, .index = 1, .id = "toolu_b", .name = "get_time"},
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
    char *s = encode(&stream_opts, answer, N_ANSWER, NULL);
    size_t n = strlen(s);
    for (size_t k = 0; k <= n; k++) {
        rec got;
        rec_init(&got);
        anthropic_dec *d = anthropic_dec_new(1);
        assert_int_equal(anthropic_dec_feed(d, s, k, rec_event, &got), 0);
        assert_int_equal(anthropic_dec_feed(d, s + k, n - k, rec_event, &got), 0);
        assert_int_equal(anthropic_dec_finish(d, rec_event, &got), 0);
        assert_string_equal(rec_str(&got), rec_str(&want));
        anthropic_dec_free(d);
        conv_buf_free(&got.out);
    }
    free(s);

    anthropic_enc_opts o = {0, "m", "msg_1"};
    s = encode(&o, answer, N_ANSWER, NULL);
    rec got;
    rec_init(&got);
    anthropic_dec *d = anthropic_dec_new(0);
    assert_int_equal(anthropic_dec_feed(d, s, strlen(s), rec_event, &got), 0);
    assert_int_equal(anthropic_dec_finish(d, rec_event, &got), 0);
    assert_string_equal(rec_str(&got), rec_str(&want));
    anthropic_dec_free(d);
    conv_buf_free(&got.out);
    free(s);
    conv_buf_free(&want.out);
}

static void test_decode_error_body(void **state) {
    (void)state;
    const char *body = "{\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}";
    rec got;
    rec_init(&got);
    anthropic_dec *d = anthropic_dec_new(0);
    assert_int_equal(anthropic_dec_feed(d, body, strlen(body), rec_event, &got), 0);
    assert_int_equal(anthropic_dec_finish(d, rec_event, &got), 0);
    assert_string_equal(rec_str(&got), "ERROR(7,Overloaded)\n");
    anthropic_dec_free(d);
    conv_buf_free(&got.out);

    /* a stream cut before message_stop */
    const char *cut = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":2}}}\n\n";
    rec_init(&got);
    d = anthropic_dec_new(1);
    assert_int_equal(anthropic_dec_feed(d, cut, strlen(cut), rec_event, &got), 0);
    assert_int_equal(anthropic_dec_finish(d, rec_event, &got), 0);
    assert_non_null(strstr(rec_str(&got), "START(2)\nERROR(8,"));
    anthropic_dec_free(d);
    conv_buf_free(&got.out);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decode_messages_full), cmocka_unit_test(test_decode_errors),
        cmocka_unit_test(test_error_json),           cmocka_unit_test(test_request_roundtrip),
        cmocka_unit_test(test_cross_dialect),        cmocka_unit_test(test_golden_stream),
        cmocka_unit_test(test_answer_roundtrip),     cmocka_unit_test(test_decode_error_body),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
