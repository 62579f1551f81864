/* proto_testutil.h - shared by the codec tests: an event recorder rendering a normalised
 * event list, and request comparison. Included by test_openai.c and test_anthropic.c. */
#ifndef SH_PROTO_TESTUTIL_H
#define SH_PROTO_TESTUTIL_H

#include <math.h>

#include "proto/conv.h"

typedef struct {
    conv_buf out;
    int last_kind, last_index;
    int no_start_usage; /* the dialect's stream does not carry prompt tokens at START */
} rec;

static void rec_init(rec *r) {
    memset(r, 0, sizeof *r);
    conv_buf_init(&r->out, 1 << 20);
    r->last_kind = -1;
}

static const char *reason_name(conv_stop_reason s) {
    static const char *const n[] = {"end", "length", "sequence", "tool_use"};
    return n[s];
}

/* Adjacent TEXT events (and deltas of one tool call) merge, so a stream and a body compare equal. */
static int rec_event(void *user, const conv_event *ev) {
    rec *r = user;
    conv_buf *b = &r->out;
    if ((ev->kind == CONV_EV_TEXT || ev->kind == CONV_EV_TOOL_DELTA) && (int)ev->kind == r->last_kind &&
        ev->index == r->last_index) {
        b->len -= 2; /* reopen ")\n" */
        conv_buf_append(b, ev->text, ev->len);
        conv_buf_puts(b, ")\n");
        return 0;
    }
    r->last_kind = (int)ev->kind;
    r->last_index = ev->index;
    switch (ev->kind) {
    case CONV_EV_START:
        conv_buf_printf(b, "START(%lld)\n", r->no_start_usage ? 0LL : (long long)ev->usage.prompt_tokens);
        break;
    case CONV_EV_TEXT:
        conv_buf_puts(b, "TEXT(");
        conv_buf_append(b, ev->text, ev->len);
        conv_buf_puts(b, ")\n");
        break;
    case CONV_EV_TOOL_START: conv_buf_printf(b, "TOOL_START(%d,%s,%s)\n", ev->index, ev->id, ev->name); break;
    case CONV_EV_TOOL_DELTA:
        conv_buf_printf(b, "TOOL_DELTA(%d,", ev->index);
        conv_buf_append(b, ev->text, ev->len);
        conv_buf_puts(b, ")\n");
        break;
    case CONV_EV_TOOL_END: conv_buf_printf(b, "TOOL_END(%d)\n", ev->index); break;
    case CONV_EV_STOP:
        conv_buf_printf(b, "STOP(%s,%s,%lld,%lld,%lld)\n", reason_name(ev->reason),
                        ev->stop_sequence ? ev->stop_sequence : "-", (long long)ev->usage.prompt_tokens,
                        (long long)ev->usage.completion_tokens, (long long)ev->usage.cached_tokens);
        break;
    case CONV_EV_ERROR:
        conv_buf_printf(b, "ERROR(%d,", (int)ev->error_kind);
        conv_buf_append(b, ev->text, ev->len);
        conv_buf_puts(b, ")\n");
        break;
    }
    return 0;
}

static const char *rec_str(rec *r) { return r->out.p ? r->out.p : ""; }

/* Collects an encoder's output. */
static int buf_write(void *user, const char *data, size_t len) { return conv_buf_append(user, data, len); }

/* Feeds a list of events to a conv_event_fn. */
static void play(const conv_event *evs, int n, conv_event_fn fn, void *user) {
    for (int i = 0; i < n; i++) assert_int_equal(fn(user, &evs[i]), 0);
}

/* ---- building requests by hand ---- */
static conv_message *add_msg(conv_request *r, conv_role role, int n_blocks) {
    if (!r->messages) r->messages = conv_alloc(r->arena, 32 * sizeof *r->messages);
    conv_message *m = &r->messages[r->n_messages++];
    m->role = role;
    m->n_blocks = n_blocks;
    m->blocks = conv_alloc(r->arena, (size_t)n_blocks * sizeof *m->blocks);
    memset(m->blocks, 0, (size_t)n_blocks * sizeof *m->blocks);
    return m;
}

static void text_block(conv_block *b, const char *t) { b->kind = CONV_TEXT, b->text = t; }
static void use_block(conv_block *b, const char *id, const char *name, const char *in) {
    b->kind = CONV_TOOL_USE, b->id = id, b->name = name, b->input_json = in;
}
static void result_block(conv_block *b, const char *id, const char *t, int is_error) {
    b->kind = CONV_TOOL_RESULT, b->id = id, b->text = t, b->is_error = is_error;
}

/* The conversation used by the round trips: system, text, tool calls, tool results, stop. */
static void sample_request(conv_request *r) {
    assert_int_equal(conv_request_init(r, 1 << 20), 0);
    r->model = "m1";
    r->system = "You are terse.";
    conv_message *m = add_msg(r, CONV_USER, 1);
    text_block(&m->blocks[0], "What's the weather in Paris? \"quoted\" \xc3\xa9t\xc3\xa9\n");
    m = add_msg(r, CONV_ASSISTANT, 3);
    text_block(&m->blocks[0], "Checking.");
    use_block(&m->blocks[1], "call_1", "get_weather", "{\"city\":\"Paris\",\"units\":\"c\",\"n\":0.1}");
    use_block(&m->blocks[2], "call_2", "get_time", "{\"tz\":\"CET\"}");
    m = add_msg(r, CONV_TOOL, 2);
    result_block(&m->blocks[0], "call_1", "18C, cloudy", 0);
    result_block(&m->blocks[1], "call_2", "14:05", 0);
    m = add_msg(r, CONV_USER, 2);
    text_block(&m->blocks[0], "Thanks");
    text_block(&m->blocks[1], "Bye");
    r->tools = conv_alloc(r->arena, 2 * sizeof *r->tools);
    r->n_tools = 2;
    r->tools[0] = (conv_tool){"get_weather", "Weather for a city",
                              "{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}},\"required\":[\"city\"]}"};
    r->tools[1] = (conv_tool){"get_time", NULL, "{\"type\":\"object\",\"properties\":{}}"};
    r->tool_choice = CONV_TOOLS_NAMED;
    r->tool_choice_name = "get_weather";
    static const char *stop[] = {"\n\nUser:", "END"};
    r->stop = stop;
    r->n_stop = 2;
    r->temperature = 0.5;
    r->top_p = 0.9;
    r->top_k = 40;
    r->max_tokens = 256;
    r->session_id = "s1";
    r->local_only = 1;
    r->user = "u1";
    conv_request_link_tool_results(r);
}

static void assert_same_request(const conv_request *a, const conv_request *b) {
    char *ja = conv_request_debug_json(a), *jb = conv_request_debug_json(b);
    assert_non_null(ja);
    assert_non_null(jb);
    if (strcmp(ja, jb) != 0) fprintf(stderr, "--- expected\n%s\n--- got\n%s\n", ja, jb);
    assert_string_equal(ja, jb);
    free(ja);
    free(jb);
}

#endif
