/* test_teacher.c - teacher clients against a real HTTP server on loopback.
 *
 * The server is a thread with a listening socket on 127.0.0.1:0 serving a script of canned
 * replies, one per connection, with chunked bodies shaped as the providers document them
 * (Anthropic Messages streaming events, OpenAI chat.completion.chunk with tool-call deltas,
 * error bodies). A reply may hold its second half until the test's event callback opens a gate,
 * which proves events are delivered as they arrive rather than after the body ends. */
#include "testutil.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "base/status.h"
#include "proto/anthropic.h"
#include "router/teacher.h"

/* ---- the loopback server ---- */

typedef struct {
    const char *status;  /* "200 OK" */
    const char *headers; /* extra header lines, each ending "\r\n"; may be NULL */
    const char *part1;   /* body sent first */
    const char *part2;   /* body sent after the gate opens (when gate) */
    int gate;            /* hold part2 until srv_open_gate() (5 s at most) */
    int hang;            /* send nothing until the server stops */
    int cut;             /* close after part1 without ending the chunked body */
} reply;

#define MAX_REQS 8

typedef struct {
    int fd, port;
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;
    int gate_open, gate_timed_out;
    const reply *replies;
    int n_replies;
    int n_reqs;
    double req_time[MAX_REQS];
    char *req[MAX_REQS]; /* request line + headers + body */
} srv;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void send_all(int fd, const char *p, size_t n) {
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0) return;
        p += w, n -= (size_t)w;
    }
}

static void send_chunk(int fd, const char *s) {
    if (!s || !*s) return;
    char h[32];
    snprintf(h, sizeof h, "%zx\r\n", strlen(s));
    send_all(fd, h, strlen(h));
    send_all(fd, s, strlen(s));
    send_all(fd, "\r\n", 2);
}

/* Reads one request (headers, then Content-Length bytes). Caller frees. */
static char *read_request(int fd) {
    size_t cap = 1 << 16, len = 0;
    char *b = malloc(cap + 1);
    long want = -1;
    for (;;) {
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        if (poll(&pf, 1, 3000) <= 0) break;
        ssize_t r = recv(fd, b + len, cap - len, 0);
        if (r <= 0) break;
        len += (size_t)r;
        b[len] = 0;
        char *end = strstr(b, "\r\n\r\n");
        if (end && want < 0) {
            char *cl = strcasestr(b, "content-length:");
            want = (long)(end + 4 - b) + (cl ? atol(cl + 15) : 0);
        }
        if (want >= 0 && (long)len >= want) break;
        if (len == cap) break;
    }
    b[len] = 0;
    return b;
}

static int wait_flag(srv *s, int *flag, double seconds) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += (time_t)seconds;
    ts.tv_nsec += (long)((seconds - (double)(time_t)seconds) * 1e9);
    if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
    pthread_mutex_lock(&s->mu);
    while (!*flag && !s->stop)
        if (pthread_cond_timedwait(&s->cv, &s->mu, &ts)) break;
    int ok = *flag;
    pthread_mutex_unlock(&s->mu);
    return ok;
}

static void serve(srv *s, int c, const reply *r) {
    char head[1024];
    snprintf(head, sizeof head,
             "HTTP/1.1 %s\r\n%sTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n", r->status,
             r->headers ? r->headers : "");
    if (r->hang) {
        int never = 0;
        wait_flag(s, &never, 10);
        return;
    }
    send_all(c, head, strlen(head));
    send_chunk(c, r->part1);
    if (r->cut) return;
    if (r->gate && !wait_flag(s, &s->gate_open, 5)) {
        pthread_mutex_lock(&s->mu);
        s->gate_timed_out = 1;
        pthread_mutex_unlock(&s->mu);
    }
    send_chunk(c, r->part2);
    send_all(c, "0\r\n\r\n", 5);
}

static void *srv_main(void *u) {
    srv *s = u;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        int stop = s->stop;
        pthread_mutex_unlock(&s->mu);
        if (stop) break;
        struct pollfd pf = {.fd = s->fd, .events = POLLIN};
        if (poll(&pf, 1, 20) <= 0) continue;
        int c = accept(s->fd, NULL, NULL);
        if (c < 0) continue;
        char *req = read_request(c);
        pthread_mutex_lock(&s->mu);
        int i = s->n_reqs++;
        if (i < MAX_REQS) {
            s->req[i] = req;
            s->req_time[i] = now_s();
            req = NULL;
        }
        pthread_mutex_unlock(&s->mu);
        free(req);
        const reply *r = &s->replies[i < s->n_replies ? i : s->n_replies - 1];
        serve(s, c, r);
        close(c);
    }
    return NULL;
}

static int listen_any(int *port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fd, 16), 0);
    socklen_t l = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &l);
    *port = ntohs(a.sin_port);
    return fd;
}

static srv *srv_start(const reply *replies, int n) {
    srv *s = calloc(1, sizeof *s);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    s->replies = replies;
    s->n_replies = n;
    s->fd = listen_any(&s->port);
    pthread_create(&s->th, NULL, srv_main, s);
    return s;
}

static void srv_open_gate(srv *s) {
    pthread_mutex_lock(&s->mu);
    s->gate_open = 1;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

static int srv_requests(srv *s) {
    pthread_mutex_lock(&s->mu);
    int n = s->n_reqs;
    pthread_mutex_unlock(&s->mu);
    return n;
}

/* The recorded request i (read under the lock: the server thread wrote it). */
static const char *srv_req(srv *s, int i) {
    pthread_mutex_lock(&s->mu);
    const char *r = s->req[i];
    pthread_mutex_unlock(&s->mu);
    assert_non_null(r);
    return r;
}

static double srv_req_time(srv *s, int i) {
    pthread_mutex_lock(&s->mu);
    double t = s->req_time[i];
    pthread_mutex_unlock(&s->mu);
    return t;
}

static int srv_gate_timed_out(srv *s) {
    pthread_mutex_lock(&s->mu);
    int t = s->gate_timed_out;
    pthread_mutex_unlock(&s->mu);
    return t;
}

static void srv_stop(srv *s) {
    pthread_mutex_lock(&s->mu);
    s->stop = 1;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->th, NULL);
    close(s->fd);
    for (int i = 0; i < MAX_REQS; i++) free(s->req[i]);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

/* A port where nothing listens: connections are refused. */
static int dead_port(void) {
    int port;
    int fd = listen_any(&port);
    close(fd);
    return port;
}

/* ---- recorded provider streams (shapes from the providers' API reference) ---- */

#define A_START                                                                                    \
    "event: message_start\n"                                                                       \
    "data: "                                                                                       \
    "{\"type\":\"message_start\",\"message\":{\"id\":\"msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY\","  \
    "\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude-sonnet-4-5\","  \
    "\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":25,\"output_"         \
    "tokens\":1}}}\n\n"

static const char A_TEXT1[] = A_START "event: content_block_start\n"
                                      "data: "
                                      "{\"type\":\"content_block_start\",\"index\":0,\"content_"
                                      "block\":{\"type\":\"text\",\"text\":\"\"}}\n\n"
                                      "event: ping\n"
                                      "data: {\"type\": \"ping\"}\n\n"
                                      "event: content_block_delta\n"
                                      "data: "
                                      "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{"
                                      "\"type\":\"text_delta\",\"text\":\"Hello\"}}\n\n";

static const char A_TEXT2[] =
    "event: content_block_delta\n"
    "data: "
    "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"!"
    "\"}}\n\n"
    "event: content_block_stop\n"
    "data: {\"type\":\"content_block_stop\",\"index\":0}\n\n"
    "event: message_delta\n"
    "data: "
    "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},"
    "\"usage\":{\"output_tokens\":15}}\n\n"
    "event: message_stop\n"
    "data: {\"type\":\"message_stop\"}\n\n";

static const char A_TOOL[] = A_START
    "event: content_block_start\n"
    "data: "
    "{\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":"
    "\"\"}}\n\n"
    "event: content_block_delta\n"
    "data: "
    "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":"
    "\"Okay, let me check.\"}}\n\n"
    "event: content_block_stop\n"
    "data: {\"type\":\"content_block_stop\",\"index\":0}\n\n"
    "event: content_block_start\n"
    "data: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\","
    "\"id\":\"toolu_01T1x1fJ34qAmk2tNTrN7Up6\",\"name\":\"get_weather\",\"input\":{}}}\n\n"
    "event: content_block_delta\n"
    "data: "
    "{\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\","
    "\"partial_json\":\"\"}}\n\n"
    "event: content_block_delta\n"
    "data: "
    "{\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\","
    "\"partial_json\":\"{\\\"location\\\":\"}}\n\n"
    "event: content_block_delta\n"
    "data: "
    "{\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\","
    "\"partial_json\":\" \\\"San Francisco, CA\\\"}\"}}\n\n"
    "event: content_block_stop\n"
    "data: {\"type\":\"content_block_stop\",\"index\":1}\n\n"
    "event: message_delta\n"
    "data: "
    "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},"
    "\"usage\":{\"output_tokens\":89}}\n\n"
    "event: message_stop\n"
    "data: {\"type\":\"message_stop\"}\n\n";

static const char A_OVERLOADED[] = A_START
    "event: error\n"
    "data: "
    "{\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n";

static const char A_ERR_AUTH[] = "{\"type\":\"error\",\"error\":{\"type\":\"authentication_error\","
                                 "\"message\":\"invalid x-api-key\"}}";
static const char A_ERR_RATE[] = "{\"type\":\"error\",\"error\":{\"type\":\"rate_limit_error\","
                                 "\"message\":\"Number of request tokens has "
                                 "exceeded your per-minute rate limit\"}}";
static const char A_ERR_API[] =
    "{\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"Internal server error\"}}";

#define O_CHUNK(delta, finish)                                                                     \
    "data: {\"id\":\"chatcmpl-123\",\"object\":\"chat.completion.chunk\",\"created\":1694268190,"  \
    "\"model\":\"gpt-4o-mini\",\"system_fingerprint\":\"fp_44709d6fcb\",\"choices\":[{\"index\":"  \
    "0,"                                                                                           \
    "\"delta\":" delta ",\"logprobs\":null,\"finish_reason\":" finish "}]}\n\n"

static const char O_TOOL[] = O_CHUNK(
    "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"index\":0,\"id\":\"call_"
    "DdmO9pD3xa9XTPNJ32zg2hcA\","
    "\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"\"}}],"
    "\"refusal\":null}",
    "null") O_CHUNK("{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"\"}}]}",
                    "null") O_CHUNK("{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":"
                                    "\"location\"}}]}",
                                    "null")
    O_CHUNK("{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"\\\":\\\"\"}}]}", "null")
        O_CHUNK("{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"Paris\"}}]}", "null")
            O_CHUNK("{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"\\\"}\"}}]}",
                    "null")
                O_CHUNK(
                    "{}",
                    "\"tool_calls\"") "data: "
                                      "{\"id\":\"chatcmpl-123\",\"object\":\"chat.completion."
                                      "chunk\",\"created\":1694268190,\"model\":\"gpt-4o-mini\","
                                      "\"choices\":[],\"usage\":{\"prompt_tokens\":82,\"completion_"
                                      "tokens\":17,\"total_tokens\":99}}\n\n"
                                      "data: [DONE]\n\n";

static const char O_TEXT[] = O_CHUNK("{\"role\":\"assistant\",\"content\":\"\"}", "null")
    O_CHUNK("{\"content\":\"Hi\"}", "null") O_CHUNK("{\"content\":\" there\"}", "null")
        O_CHUNK("{}", "\"stop\"") "data: [DONE]\n\n";

static const char O_ERR_KEY[] =
    "{\"error\":{\"message\":\"Incorrect API key provided: sk-test. You can find your API key at "
    "https://platform.openai.com/account/"
    "api-keys.\",\"type\":\"invalid_request_error\",\"param\":null,"
    "\"code\":\"invalid_api_key\"}}";

#define SSE "Content-Type: text/event-stream\r\n"
#define JSON "Content-Type: application/json\r\n"

/* ---- helpers ---- */

typedef struct {
    conv_accum acc;
    int n, n_text, n_error, saw_start_first;
    conv_event_kind kinds[64];
    srv *gate;           /* open its gate at the first text */
    int gate_was_closed; /* the first text came while the server still held the rest */
    int cancel_at_text;  /* return non-zero at the first text */
    teacher_result *res; /* to read res->teacher while fn runs */
    char teacher_at_first[128];
} sink;

static int on_event(void *u, const conv_event *ev) {
    sink *k = u;
    if (k->n == 0) {
        k->saw_start_first = ev->kind == CONV_EV_START;
        if (k->res)
            snprintf(k->teacher_at_first, sizeof k->teacher_at_first, "%s", k->res->teacher);
    }
    if (k->n < 64) k->kinds[k->n] = ev->kind;
    k->n++;
    if (ev->kind == CONV_EV_ERROR) k->n_error++;
    conv_accum_event(&k->acc, ev);
    if (ev->kind == CONV_EV_TEXT) {
        if (k->n_text++ == 0) {
            if (k->gate) {
                pthread_mutex_lock(&k->gate->mu);
                k->gate_was_closed = !k->gate->gate_open;
                pthread_mutex_unlock(&k->gate->mu);
                srv_open_gate(k->gate);
            }
            if (k->cancel_at_text) return 1;
        }
    }
    return 0;
}

static void sink_init(sink *k) {
    memset(k, 0, sizeof *k);
    conv_accum_init(&k->acc);
}

static const char *block_text(sink *k, int i) {
    return i < k->acc.n_blocks && k->acc.blocks[i].text.p ? k->acc.blocks[i].text.p : "";
}

static void make_req(conv_request *r) {
    const char *body =
        "{\"model\":\"shammah-local\",\"max_tokens\":300,\"system\":\"Be "
        "brief.\",\"temperature\":0.5,"
        "\"stop_sequences\":[\"END\"],"
        "\"tools\":[{\"name\":\"get_weather\",\"description\":\"Weather of a "
        "place\",\"input_schema\":"
        "{\"type\":\"object\",\"properties\":{\"location\":{\"type\":\"string\"}},\"required\":["
        "\"location\"]}}],"
        "\"messages\":[{\"role\":\"user\",\"content\":\"What is the weather in Paris?\"},"
        "{\"role\":\"assistant\",\"content\":[{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":"
        "\"get_weather\","
        "\"input\":{\"location\":\"Paris\"}}]},"
        "{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":\"toolu_1\","
        "\"content\":\"18C sunny\"}]}]}";
    proto_error err;
    conv_request_zero(r);
    assert_int_equal(anthropic_decode_messages(body, strlen(body), r, &err), 0);
}

static sh_config_teacher teacher(const char *name, const char *provider, int port,
                                 const char *path) {
    static char urls[8][128];
    static int next;
    char *u = urls[next++ % 8];
    snprintf(u, 128, "http://127.0.0.1:%d%s", port, path);
    sh_config_teacher t = {.name = name,
                           .provider = provider,
                           .base_url = u,
                           .api_key = "",
                           .api_key_env = "SHAMMAH_TEST_KEY",
                           .model = "teacher-model-x",
                           .timeout_seconds = 20,
                           .max_retries = 2};
    return t;
}

static teacher_opts fast_opts(void) {
    teacher_opts o;
    teacher_opts_default(&o);
    o.backoff_base_ms = 30;
    o.backoff_max_ms = 100;
    o.first_byte_timeout_ms = 3000;
    o.connect_timeout_ms = 2000;
    return o;
}

static json_t *req_body(srv *s, int i) {
    const char *b = strstr(srv_req(s, i), "\r\n\r\n");
    assert_non_null(b);
    json_t *j = json_loads(b + 4, 0, NULL);
    assert_non_null(j);
    return j;
}

/* ---- tests ---- */

static void test_anthropic_stream_incremental(void **state) {
    (void)state;
    reply rp[] = {
        {.status = "200 OK", .headers = SSE, .part1 = A_TEXT1, .part2 = A_TEXT2, .gate = 1}};
    srv *s = srv_start(rp, 1);
    sh_config_teacher t = teacher("claude", "anthropic", s->port, "");
    conv_request r;
    make_req(&r);
    sink k;
    sink_init(&k);
    k.gate = s;
    teacher_result res;
    teacher_opts o = fast_opts();
    assert_int_equal(teacher_generate(&t, &r, &o, on_event, &k, &res), SH_OK);
    assert_true(k.gate_was_closed); /* the first text came before the server sent the rest */
    assert_false(srv_gate_timed_out(s));
    assert_true(k.saw_start_first);
    assert_int_equal(k.acc.n_blocks, 1);
    assert_string_equal(block_text(&k, 0), "Hello!");
    assert_true(k.acc.stopped);
    assert_int_equal(k.acc.reason, CONV_STOP_END);
    assert_int_equal(res.usage.prompt_tokens, 25);
    assert_int_equal(res.usage.completion_tokens, 15);
    assert_int_equal(res.attempts, 1);
    assert_int_equal(res.http_status, 200);
    assert_string_equal(res.teacher, "claude");
    /* the request: path, headers, body = the client's with the teacher's model, streaming */
    assert_int_equal(srv_requests(s), 1);
    assert_true(!strncmp(srv_req(s, 0), "POST /v1/messages HTTP/1.1\r\n", 28));
    assert_non_null(strcasestr(srv_req(s, 0), "\r\nx-api-key: sk-test-anthropic\r\n"));
    assert_non_null(strcasestr(srv_req(s, 0), "\r\nanthropic-version: 2023-06-01\r\n"));
    json_t *j = req_body(s, 0);
    assert_string_equal(json_string_value(json_object_get(j, "model")), "teacher-model-x");
    assert_true(json_is_true(json_object_get(j, "stream")));
    assert_int_equal(json_integer_value(json_object_get(j, "max_tokens")), 300);
    assert_true(json_real_value(json_object_get(j, "temperature")) == 0.5);
    assert_string_equal(json_string_value(json_array_get(json_object_get(j, "stop_sequences"), 0)),
                        "END");
    json_t *sys = json_object_get(j, "system");
    const char *systext = json_is_string(sys)
                              ? json_string_value(sys)
                              : json_string_value(json_object_get(json_array_get(sys, 0), "text"));
    assert_string_equal(systext, "Be brief.");
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(json_object_get(j, "tools"), 0), "name")),
        "get_weather");
    json_t *msgs = json_object_get(j, "messages");
    assert_int_equal(json_array_size(msgs), 3);
    json_t *tr = json_array_get(json_object_get(json_array_get(msgs, 2), "content"), 0);
    assert_string_equal(json_string_value(json_object_get(tr, "type")), "tool_result");
    assert_string_equal(json_string_value(json_object_get(tr, "tool_use_id")), "toolu_1");
    json_decref(j);
    conv_accum_free(&k.acc);
    conv_request_free(&r);
    srv_stop(s);
}

static void test_anthropic_tool_use(void **state) {
    (void)state;
    reply rp[] = {{.status = "200 OK", .headers = SSE, .part1 = A_TOOL}};
    srv *s = srv_start(rp, 1);
    /* a base_url ending in /v1 gets /messages only */
    sh_config_teacher t = teacher("claude", "anthropic", s->port, "/v1/");
    conv_request r;
    make_req(&r);
    sink k;
    sink_init(&k);
    teacher_result res;
    teacher_opts o = fast_opts();
    assert_int_equal(teacher_generate(&t, &r, &o, on_event, &k, &res), SH_OK);
    assert_true(!strncmp(srv_req(s, 0), "POST /v1/messages ", 18));
    assert_int_equal(k.acc.n_blocks, 2);
    assert_string_equal(block_text(&k, 0), "Okay, let me check.");
    assert_int_equal(k.acc.blocks[1].kind, CONV_TOOL_USE);
    assert_string_equal(k.acc.blocks[1].id, "toolu_01T1x1fJ34qAmk2tNTrN7Up6");
    assert_string_equal(k.acc.blocks[1].name, "get_weather");
    assert_string_equal(block_text(&k, 1), "{\"location\": \"San Francisco, CA\"}");
    assert_int_equal(k.acc.reason, CONV_STOP_TOOL_USE);
    conv_accum_free(&k.acc);
    conv_request_free(&r);
    srv_stop(s);
}

static void test_openai_tool_call_deltas(void **state) {
    (void)state;
    reply rp[] = {{.status = "200 OK", .headers = SSE, .part1 = O_TOOL}};
    srv *s = srv_start(rp, 1);
    sh_config_teacher t = teacher("gpt", "openai", s->port, "/v1");
    conv_request r;
    make_req(&r);
    sink k;
    sink_init(&k);
    teacher_result res;
    teacher_opts o = fast_opts();
    assert_int_equal(teacher_generate(&t, &r, &o, on_event, &k, &res), SH_OK);
    assert_true(!strncmp(srv_req(s, 0), "POST /v1/chat/completions HTTP/1.1\r\n", 36));
    assert_non_null(strcasestr(srv_req(s, 0), "\r\nAuthorization: Bearer sk-test-anthropic\r\n"));
    json_t *j = req_body(s, 0);
    assert_string_equal(json_string_value(json_object_get(j, "model")), "teacher-model-x");
    assert_true(json_is_true(json_object_get(j, "stream")));
    assert_int_equal(json_integer_value(json_object_get(j, "max_tokens")), 300);
    json_t *msgs = json_object_get(j, "messages");
    assert_string_equal(json_string_value(json_object_get(json_array_get(msgs, 0), "role")),
                        "system");
    assert_string_equal(json_string_value(json_object_get(json_array_get(msgs, 3), "role")),
                        "tool");
    assert_string_equal(json_string_value(json_object_get(json_array_get(msgs, 3), "tool_call_id")),
                        "toolu_1");
    json_decref(j);
    assert_int_equal(k.acc.n_blocks, 1);
    assert_int_equal(k.acc.blocks[0].kind, CONV_TOOL_USE);
    assert_string_equal(k.acc.blocks[0].id, "call_DdmO9pD3xa9XTPNJ32zg2hcA");
    assert_string_equal(k.acc.blocks[0].name, "get_weather");
    assert_string_equal(block_text(&k, 0), "{\"location\":\"Paris\"}");
    assert_int_equal(k.acc.reason, CONV_STOP_TOOL_USE);
    assert_int_equal(res.usage.prompt_tokens, 82);
    assert_int_equal(res.usage.completion_tokens, 17);
    conv_accum_free(&k.acc);
    conv_request_free(&r);
    srv_stop(s);
}

static void test_error_bodies(void **state) {
    (void)state;
    reply rp[] = {{.status = "401 Unauthorized", .headers = JSON, .part1 = A_ERR_AUTH},
                  {.status = "401 Unauthorized", .headers = JSON, .part1 = O_ERR_KEY},
                  {.status = "502 Bad Gateway",
                   .headers = "Content-Type: text/html\r\n",
                   .part1 = "<html>\n<body>bad gateway</body></html>"}};
    srv *s = srv_start(rp, 3);
    conv_request r;
    make_req(&r);
    teacher_opts o = fast_opts();
    sink k;
    sink_init(&k);
    teacher_result res;

    sh_config_teacher t = teacher("claude", "anthropic", s->port, "");
    assert_int_equal(teacher_generate(&t, &r, &o, on_event, &k, &res), SH_EIO);
    assert_int_equal(res.attempts, 1); /* a 401 is not retried */
    assert_int_equal(res.http_status, 401);
    assert_int_equal(res.error_kind, CONV_ERR_AUTH);
    assert_non_null(strstr(res.error, "claude: HTTP 401 authentication_error: invalid x-api-key"));
    assert_int_equal(k.n, 0); /* nothing reached fn */

    t = teacher("gpt", "openai", s->port, "/v1");
    assert_int_equal(teacher_generate(&t, &r, &o, on_event, &k, &res), SH_EIO);
    assert_int_equal(res.error_kind, CONV_ERR_AUTH);
    assert_non_null(
        strstr(res.error, "HTTP 401 invalid_request_error: Incorrect API key provided"));

    /* a non-JSON error page: its text, control characters flattened; 502 is retried */
    t.max_retries = 0;
    assert_int_equal(teacher_generate(&t, &r, &o, on_event, &k, &res), SH_EIO);
    assert_int_equal(res.http_status, 502);
    assert_non_null(strstr(res.error, "HTTP 502: <html> <body>bad gateway"));
    assert_int_equal(k.n, 0);
    conv_accum_free(&k.acc);
    conv_request_free(&r);
    srv_stop(s);
}

static void test_no_key_hint(void **state) {
    (void)state;
    reply rp[] = {{.status = "401 Unauthorized", .headers = JSON, .part1 = A_ERR_AUTH}};
    srv *s = srv_start(rp, 1);
    conv_request r;
    make_req(&r);
    teacher_opts o = fast_opts();
    sink k;
    sink_init(&k);
    teacher_result res;
    sh_config_teacher t = teacher("claude", "anthropic", s->port, "");
    t.api_key_env = "SHAMMAH_TEST_NO_SUCH_KEY";
    assert_int_equal(teacher_generate(&t, &r, &o, on_event, &k, &res), SH_EIO);
    assert_null(strcasestr(srv_req(s, 0), "x-api-key"));
    assert_non_null(strstr(res.error, "no API key: set SHAMMAH_TEST_NO_SUCH_KEY"));
    conv_accum_free(&k.acc);
    conv_request_free(&r);
    srv_stop(s);
}

static void test_429_retry_after(void **state) {
    (void)state;
    reply rp[] = {{.status = "429 Too Many Requests",
                   .headers = JSON "retry-after: 1\r\n",
                   .part1 = A_ERR_RATE},
                  {.status = "200 OK", .headers = SSE, .part1 = A_TEXT1, .part2 = A_TEXT2}};
    srv *s = srv_start(rp, 2);
    sh_config_teacher t = teacher("claude", "anthropic", s->port, "");
    conv_request r;
    make_req(&r);
    sink k;
    sink_init(&k);
    teacher_result res;
    teacher_opts o = fast_opts();
    double t0 = now_s();
    assert_int_equal(teacher_generate(&t, &r, &o, on_event, &k, &res), SH_OK);
    double took = now_s() - t0;
    assert_int_equal(res.attempts, 2);
    assert_int_equal(srv_requests(s), 2);
    assert_true(srv_req_time(s, 1) - srv_req_time(s, 0) >=
                0.95); /* waited retry-after, not the 30 ms backoff */
    assert_true(took < 5);
    assert_int_equal(res.retry_after, 1);
    assert_string_equal(block_text(&k, 0), "Hello!");
    assert_int_equal(k.n_error, 0);
    conv_accum_free(&k.acc);
    conv_request_free(&r);
    srv_stop(s);
}

static void test_429_retry_after_too_long(void **state) {
    (void)state;
    reply rp[] = {{.status = "429 Too Many Requests",
                   .headers = JSON "retry-after: 120\r\n",
                   .part1 = A_ERR_RATE}};
    srv *s = srv_start(rp, 1);
    sh_config_teacher t = teacher("claude", "anthropic", s->port, "");
    conv_request r;
    make_req(&r);
    sink k;
    sink_init(&k);
    teacher_result res;
    teacher_opts o = fast_opts();
    double t0 = now_s();
    assert_int_equal(teacher_chain_generate(&t, 1, &r, &o, on_event, &k, &res), SH_EIO);
    assert_true(now_s() - t0 < 2);
    assert_int_equal(res.attempts, 1);
    assert_int_equal(res.retry_after, 120);
    assert_int_equal(res.error_kind, CONV_ERR_RATE);
    assert_int_equal(teacher_result_status(&res), 429);
    assert_non_null(strstr(res.error, "rate_limit_error"));
    assert_non_null(strstr(res.error, "retry-after 120 s is too long"));
    conv_accum_free(&k.acc);
    conv_request_free(&r);
    srv_stop(s);
}

static void test_500_then_success(void **state) {
    (void)state;
    reply rp[] = {{.status = "500 Internal Server Error", .headers = JSON, .part1 = A_ERR_API},
                  {.status = "529 Overloaded", .headers = JSON, .part1 = A_ERR_API},
                  {.status = "200 OK", .headers = SSE, .part1 = O_TEXT}};
    srv *s = srv_start(rp, 3);
    sh_config_teacher t = teacher("gpt", "openai", s->port, ""); /* a bare host gets /v1 */
    conv_request r;
    make_req(&r);
    sink k;
    sink_init(&k);
    teacher_result res;
    teacher_opts o = fast_opts();
    assert_int_equal(teacher_generate(&t, &r, &o, on_event, &k, &res), SH_OK);
    assert_true(!strncmp(srv_req(s, 0), "POST /v1/chat/completions ", 26));
    assert_int_equal(res.attempts, 3);
    double gap1 = srv_req_time(s, 1) - srv_req_time(s, 0),
           gap2 = srv_req_time(s, 2) - srv_req_time(s, 1);
    assert_true(gap1 >= 0.025 && gap2 >= 0.055); /* 30 ms, then 60 ms (+ jitter) */
    assert_string_equal(block_text(&k, 0), "Hi there");
    conv_accum_free(&k.acc);
    conv_request_free(&r);
    srv_stop(s);
}

static void test_stream_error_before_content_is_retried(void **state) {
    (void)state;
    reply rp[] = {{.status = "200 OK", .headers = SSE, .part1 = A_OVERLOADED},
                  {.status = "200 OK", .headers = SSE, .part1 = A_TEXT1, .part2 = A_TEXT2}};
    srv *s = srv_start(rp, 2);
    sh_config_teacher t = teacher("claude", "anthropic", s->port, "");
    conv_request r;
    make_req(&r);
    sink k;
    sink_init(&k);
    teacher_result res;
    teacher_opts o = fast_opts();
    assert_int_equal(teacher_generate(&t, &r, &o, on_event, &k, &res), SH_OK);
    assert_int_equal(res.attempts, 2);
    assert_int_equal(k.n_error, 0);
    assert_int_equal(k.kinds[0], CONV_EV_START); /* one START: the failed attempt's was held back */
    assert_int_equal(k.kinds[1], CONV_EV_TEXT);
    assert_string_equal(block_text(&k, 0), "Hello!");
    conv_accum_free(&k.acc);
    conv_request_free(&r);
    srv_stop(s);
}

static void test_first_byte_timeout(void **state) {
    (void)state;
    reply rp[] = {{.hang = 1}};
    srv *s = srv_start(rp, 1);
    sh_config_teacher t = teacher("slow", "anthropic", s->port, "");
    conv_request r;
    make_req(&r);
    sink k;
    sink_init(&k);
    teacher_result res;
    teacher_opts o = fast_opts();
    o.first_byte_timeout_ms = 300;
    double t0 = now_s();
    assert_int_equal(teacher_generate(&t, &r, &o, on_event, &k, &res), SH_EIO);
    double took = now_s() - t0;
    assert_true(took >= 0.29 && took < 1.0);
    assert_int_equal(res.attempts, 1); /* a hung server is not asked again */
    assert_int_equal(res.error_kind, CONV_ERR_UNAVAILABLE);
    assert_non_null(strstr(res.error, "slow: no response within 300 ms"));
    assert_int_equal(k.n, 0);
    conv_accum_free(&k.acc);
    conv_request_free(&r);
    srv_stop(s);
}

static void test_midstream_disconnect(void **state) {
    (void)state;
    reply rp[] = {{.status = "200 OK", .headers = SSE, .part1 = A_TEXT1, .cut = 1},
                  {.status = "200 OK", .headers = SSE, .part1 = A_TEXT1, .part2 = A_TEXT2}};
    srv *s = srv_start(rp, 2);
    sh_config_teacher t = teacher("claude", "anthropic", s->port, "");
    t.max_retries = 3;
    conv_request r;
    make_req(&r);
    sink k;
    sink_init(&k);
    teacher_result res;
    teacher_opts o = fast_opts();
    assert_int_equal(teacher_chain_generate(&t, 1, &r, &o, on_event, &k, &res), SH_EIO);
    assert_int_equal(srv_requests(s), 1); /* never replayed */
    assert_int_equal(res.attempts, 1);
    assert_int_equal(k.n, 3);
    assert_int_equal(k.kinds[0], CONV_EV_START);
    assert_int_equal(k.kinds[1], CONV_EV_TEXT);
    assert_int_equal(k.kinds[2], CONV_EV_ERROR);
    assert_true(k.acc.failed);
    assert_non_null(strstr(k.acc.error_text.p, "teacher claude:"));
    assert_int_equal(k.acc.error_kind, CONV_ERR_UPSTREAM);
    assert_int_equal(res.error_kind, CONV_ERR_UPSTREAM);
    assert_true(res.events == 3);
    conv_accum_free(&k.acc);
    conv_request_free(&r);
    srv_stop(s);
}

static void test_chain_falls_through(void **state) {
    (void)state;
    reply rp[] = {{.status = "200 OK", .headers = SSE, .part1 = O_TEXT}};
    srv *s = srv_start(rp, 1);
    sh_config_teacher ts[2] = {teacher("dead", "anthropic", dead_port(), ""),
                               teacher("backup", "openai", s->port, "/v1")};
    ts[0].max_retries = 1;
    conv_request r;
    make_req(&r);
    sink k;
    sink_init(&k);
    teacher_result res;
    k.res = &res;
    teacher_opts o = fast_opts();
    assert_int_equal(teacher_chain_generate(ts, 2, &r, &o, on_event, &k, &res), SH_OK);
    assert_string_equal(res.teacher, "backup");
    assert_string_equal(k.teacher_at_first, "backup");
    assert_int_equal(res.attempts, 3); /* dead twice, backup once */
    assert_string_equal(block_text(&k, 0), "Hi there");
    conv_accum_free(&k.acc);
    conv_request_free(&r);
    srv_stop(s);
}

static void test_chain_all_fail(void **state) {
    (void)state;
    reply rl[] = {{.status = "429 Too Many Requests",
                   .headers = JSON "retry-after: 7\r\n",
                   .part1 = A_ERR_RATE}};
    reply un[] = {{.status = "503 Service Unavailable",
                   .headers = JSON,
                   .part1 = "{\"detail\":\"warming up\"}"}};
    srv *a = srv_start(rl, 1), *b = srv_start(rl, 1), *c = srv_start(un, 1);
    conv_request r;
    make_req(&r);
    sink k;
    sink_init(&k);
    teacher_result res;
    teacher_opts o = fast_opts();
    /* every teacher rate limited: 429 */
    sh_config_teacher ts[2] = {teacher("one", "anthropic", a->port, ""),
                               teacher("two", "anthropic", b->port, "")};
    ts[0].max_retries = ts[1].max_retries = 0;
    assert_int_equal(teacher_chain_generate(ts, 2, &r, &o, on_event, &k, &res), SH_EIO);
    assert_int_equal(res.error_kind, CONV_ERR_RATE);
    assert_int_equal(res.retry_after, 7);
    assert_non_null(strstr(res.error, "all teachers failed: one: HTTP 429"));
    assert_non_null(strstr(res.error, "; two: HTTP 429"));
    /* unreachable + 503: 503 */
    sh_config_teacher tu[2] = {teacher("gone", "openai", dead_port(), "/v1"),
                               teacher("warm", "openai", c->port, "/v1")};
    tu[0].max_retries = tu[1].max_retries = 0;
    assert_int_equal(teacher_chain_generate(tu, 2, &r, &o, on_event, &k, &res), SH_EIO);
    assert_int_equal(res.error_kind, CONV_ERR_UNAVAILABLE);
    assert_int_equal(teacher_result_status(&res), 503);
    assert_non_null(strstr(res.error, "gone: "));
    assert_non_null(strstr(res.error, "warm: HTTP 503: warming up"));
    /* rate limited + unreachable: 502 */
    sh_config_teacher tm[2] = {ts[0], tu[0]};
    assert_int_equal(teacher_chain_generate(tm, 2, &r, &o, on_event, &k, &res), SH_EIO);
    assert_int_equal(res.error_kind, CONV_ERR_UPSTREAM);
    /* no teachers: 503 */
    assert_int_equal(teacher_chain_generate(NULL, 0, &r, &o, on_event, &k, &res), SH_EIO);
    assert_int_equal(res.error_kind, CONV_ERR_UNAVAILABLE);
    assert_int_equal(k.n, 0);
    conv_accum_free(&k.acc);
    conv_request_free(&r);
    srv_stop(a);
    srv_stop(b);
    srv_stop(c);
}

static void test_cancel_by_fn(void **state) {
    (void)state;
    reply rp[] = {
        {.status = "200 OK", .headers = SSE, .part1 = A_TEXT1, .part2 = A_TEXT2, .gate = 1}};
    srv *s = srv_start(rp, 1);
    sh_config_teacher ts[2] = {teacher("claude", "anthropic", s->port, ""),
                               teacher("other", "openai", dead_port(), "")};
    conv_request r;
    make_req(&r);
    sink k;
    sink_init(&k);
    k.cancel_at_text = 1;
    teacher_result res;
    teacher_opts o = fast_opts();
    assert_int_equal(teacher_chain_generate(ts, 2, &r, &o, on_event, &k, &res), SH_ECANCELED);
    assert_int_equal(k.n, 2); /* START, TEXT, then nothing */
    assert_int_equal(res.attempts, 1);
    assert_string_equal(res.teacher, "claude");
    conv_accum_free(&k.acc);
    conv_request_free(&r);
    srv_stop(s);
}

static int cancel_after(void *u) {
    return now_s() > *(double *)u;
}

static void test_cancel_hook_while_waiting(void **state) {
    (void)state;
    reply rp[] = {{.hang = 1}};
    srv *s = srv_start(rp, 1);
    sh_config_teacher t = teacher("slow", "anthropic", s->port, "");
    conv_request r;
    make_req(&r);
    sink k;
    sink_init(&k);
    teacher_result res;
    teacher_opts o = fast_opts();
    double when = now_s() + 0.2;
    o.canceled = cancel_after;
    o.cancel_user = &when;
    double t0 = now_s();
    assert_int_equal(teacher_generate(&t, &r, &o, on_event, &k, &res), SH_ECANCELED);
    assert_true(now_s() - t0 < 0.8);
    assert_int_equal(k.n, 0);
    conv_accum_free(&k.acc);
    conv_request_free(&r);
    srv_stop(s);
}

static void test_bad_entries(void **state) {
    (void)state;
    conv_request r;
    conv_request_zero(&r);
    assert_int_equal(conv_request_init(&r, 1 << 16), 0);
    r.api = CONV_API_COMPLETION;
    r.prompt = "def f(";
    sink k;
    sink_init(&k);
    teacher_result res;
    sh_config_teacher t = teacher("claude", "anthropic", dead_port(), "");
    assert_int_equal(teacher_generate(&t, &r, NULL, on_event, &k, &res), SH_EUNSUPPORTED);
    assert_int_equal(res.attempts, 0);
    assert_non_null(strstr(res.error, "cannot serve raw completions"));
    t.provider = "gemini";
    assert_int_equal(teacher_generate(&t, &r, NULL, on_event, &k, &res), SH_EINVAL);
    conv_accum_free(&k.acc);
    conv_request_free(&r);
}

int main(void) {
    /* loopback must not go through a proxy of the environment */
    const char *proxies[] = {"http_proxy",  "HTTP_PROXY", "https_proxy",
                             "HTTPS_PROXY", "all_proxy",  "ALL_PROXY"};
    for (size_t i = 0; i < sizeof proxies / sizeof *proxies; i++) unsetenv(proxies[i]);
    setenv("SHAMMAH_TEST_KEY", "sk-test-anthropic", 1);
    unsetenv("SHAMMAH_TEST_NO_SUCH_KEY");
    assert_int_equal(teacher_global_init(), SH_OK);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_anthropic_stream_incremental),
        cmocka_unit_test(test_anthropic_tool_use),
        cmocka_unit_test(test_openai_tool_call_deltas),
        cmocka_unit_test(test_error_bodies),
        cmocka_unit_test(test_no_key_hint),
        cmocka_unit_test(test_429_retry_after),
        cmocka_unit_test(test_429_retry_after_too_long),
        cmocka_unit_test(test_500_then_success),
        cmocka_unit_test(test_stream_error_before_content_is_retried),
        cmocka_unit_test(test_first_byte_timeout),
        cmocka_unit_test(test_midstream_disconnect),
        cmocka_unit_test(test_chain_falls_through),
        cmocka_unit_test(test_chain_all_fail),
        cmocka_unit_test(test_cancel_by_fn),
        cmocka_unit_test(test_cancel_hook_while_waiting),
        cmocka_unit_test(test_bad_entries),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    teacher_global_cleanup();
    return rc;
}
