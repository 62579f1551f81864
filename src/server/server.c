/* server.c - the daemon's HTTP API and life cycle.
 *
 * libmicrohttpd runs one thread per connection, so a streaming response simply blocks in its
 * reader callback until the scheduler has the next event (with a keep-alive timeout); nothing
 * spins. A client that goes away makes the write fail: MHD frees the response, which releases
 * (cancels) the job, and the scheduler drops it at its next step. */
#include "server/server.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "base/paths.h"
#include "base/status.h"
#include "engine/model.h"
#include "engine/tokenizer.h"
#include "proto/anthropic.h"
#include "proto/conv.h"
#include "proto/openai.h"
#include "router/router.h"
#include "router/teacher.h"
#include "engine/lora.h"
#include "server/feedback.h"
#include "server/local.h"
#include "server/metrics.h"
#include "engine/registry.h"
#include "server/pidfile.h"
#include "server/sched.h"
#include "server/sessions.h"
#include "train/lora_adapter.h"
#include "train/lora_train.h"
#include "train/train_data.h"

#define SRV_VERSION "0.1.0"
#define SRV_KEEPALIVE_MS 10000 /* a comment/ping when a stream has been quiet this long */
#define SRV_MAX_CONNECTIONS 256
#define SRV_OUTPUT_MAX (64u << 20) /* one response body */

enum { MODEL_NONE, MODEL_LOADING, MODEL_READY, MODEL_FAILED };

/* A model loaded on demand because a request named it (Ollama's semantics): kept while in use,
 * unloaded after keep_alive seconds idle, or earlier when a slot is needed (least recently
 * used first). The default model is not a slot: it stays loaded. */
#define SRV_MAX_SLOTS 16
typedef struct {
    char name[REG_NAME_MAX], path[REG_PATH_MAX];
    int state; /* MODEL_LOADING / MODEL_READY / MODEL_FAILED */
    char error[512];
    model *m;
    tok *t;
    sched *sc;
    local_model lm;
    int32_t n_ctx;
    int users;        /* requests holding it */
    double last_used; /* monotonic seconds */
} xslot;
enum { DIALECT_OPENAI, DIALECT_ANTHROPIC };

typedef struct {
    server_opts o;
    struct MHD_Daemon *mhd;
    metrics *met;
    time_t started;
    pthread_mutex_t mu; /* model state */
    int state;
    char error[512];
    char model_name[256];
    model *m;
    tok *t;
    sched *sc;
    local_model lm;
    int32_t n_ctx;
    pthread_t loader;
    int loader_started;
    atomic_uint_fast64_t ids;
    sessions *sess;
    router *rt;
    feedback_store *fb;
    /* training worker and adapters (under tr_mu) */
    pthread_mutex_t tr_mu;
    pthread_cond_t tr_cv;
    pthread_t tr_th;
    int tr_started, tr_requested, tr_stop, tr_active;
    int tr_step, tr_steps;
    double tr_loss;
    int64_t last_started, last_finished, last_examples;
    double loss_before, loss_after;
    char last_adapter[256], last_error[256];
    lora *ad_active, *ad_prev;
    char ad_active_name[128], ad_prev_name[128];
    /* models loaded on demand (under mu; x_cv signals a finished load) */
    xslot *slots[SRV_MAX_SLOTS];
    pthread_cond_t x_cv;
    char default_real[REG_PATH_MAX]; /* realpath of the default model */
    int loopback_only; /* listening on a loopback address: Host headers must name it */
} srv;

/* What one generation runs on: the default model or a slot. */
typedef struct {
    local_model *lm;
    int32_t n_ctx;
    sched *sc;
    const char *name;
    xslot *slot; /* NULL: the default model */
} mview;

/* ---- per-request state ---- */

typedef struct {
    char *body;
    size_t len, cap;
    int too_big;
    const char *endpoint; /* metrics label */
    int status;
    char route[160]; /* x-shammah-route: "local" or "teacher:<name>" */
    /* the request's Origin (a browser's): none, allowed (echoed back), or refused (403) */
    enum { ORIGIN_NONE, ORIGIN_ALLOWED, ORIGIN_REFUSED } origin;
    char origin_value[320];
    int host_refused; /* a Host header that is not a loopback name on a loopback-only daemon */
} req_ctx;

static const char *route_label(const char *url) {
    static const char *const known[] = {"/v1/chat/completions", "/v1/completions", "/v1/messages",
                                        "/v1/messages/count_tokens", "/v1/models", "/v1/status",
                                        "/health", "/metrics"};
    for (size_t i = 0; i < sizeof known / sizeof *known; i++)
        if (!strcmp(url, known[i])) return known[i];
    if (!strncmp(url, "/v1/session/", 12)) return "/v1/session";
    if (!strcmp(url, "/v1/feedback")) return "/v1/feedback";
    if (!strncmp(url, "/v1/training/", 13)) return "/v1/training";
    if (!strncmp(url, "/v1/adapters", 12)) return "/v1/adapters";
    return "other";
}

static int dialect_of(const char *url) {
    return strncmp(url, "/v1/messages", 12) == 0 ? DIALECT_ANTHROPIC : DIALECT_OPENAI;
}

/* ---- responses ---- */

/* Browsers may call the API only from pages served by this machine (a page elsewhere must not
 * drive a local daemon) and from the origins [server] cors_origins names: the Origin is echoed
 * back only then. */
static int local_origin(const char *o) {
    static const char *const prefixes[] = {"http://localhost", "https://localhost", "http://127.",
                                           "https://127.", "http://[::1]", "https://[::1]"};
    if (!o) return 0;
    for (size_t i = 0; i < sizeof prefixes / sizeof *prefixes; i++) {
        size_t n = strlen(prefixes[i]);
        if (!strncmp(o, prefixes[i], n)) {
            const char *rest = o + n;
            if (prefixes[i][n - 1] == '.') /* 127.x.y.z */
                rest += strspn(rest, "0123456789.");
            if (*rest == ':') rest += 1 + strspn(rest + 1, "0123456789");
            return *rest == 0;
        }
    }
    return 0;
}

static int origin_allowed(const server_opts *o, const char *origin) {
    if (local_origin(origin)) return 1;
    for (int i = 0; i < o->n_cors_origins; i++)
        if (!strcmp(o->cors_origins[i], "*") || !strcasecmp(o->cors_origins[i], origin)) return 1;
    return 0;
}

/* A Host a browser sends for a loopback address: localhost (or a name under .localhost, which
 * browsers resolve to loopback themselves), 127.x.y.z or [::1], with an optional port. Any
 * other name reaching a loopback-only daemon comes from DNS rebinding: a page whose name was
 * re-pointed at 127.0.0.1 to make its requests same-origin. */
static int local_host(const char *h) {
    size_t n = strcspn(h, ":");
    if (h[0] == '[') {
        const char *rb = strchr(h, ']');
        if (!rb) return 0;
        n = (size_t)(rb - h) + 1;
    }
    const char *port = h + n;
    if (*port == ':') port += 1 + strspn(port + 1, "0123456789");
    if (*port) return 0;
    if ((n == 9 && !strncasecmp(h, "localhost", 9)) || (n > 10 && !strncasecmp(h + n - 10, ".localhost", 10)))
        return 1;
    if (n == 5 && !strncmp(h, "[::1]", 5)) return 1;
    return n > 4 && !strncmp(h, "127.", 4) && strspn(h, "0123456789.") == n;
}

static void common_headers(struct MHD_Response *r, const req_ctx *rc) {
    MHD_add_response_header(r, "x-shammah-route", rc->route[0] ? rc->route : "local");
    if (rc->origin != ORIGIN_ALLOWED) return;
    MHD_add_response_header(r, "Access-Control-Allow-Origin", rc->origin_value);
    MHD_add_response_header(r, "Vary", "Origin");
    MHD_add_response_header(r, "Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS");
    MHD_add_response_header(r, "Access-Control-Allow-Headers",
                            "authorization, content-type, x-api-key, anthropic-version, "
                            "anthropic-beta, x-stainless-os, x-stainless-lang, "
                            "x-stainless-package-version, x-stainless-runtime, "
                            "x-stainless-runtime-version, x-stainless-arch, "
                            "x-stainless-retry-count, x-stainless-timeout, "
                            "anthropic-dangerous-direct-browser-access");
    MHD_add_response_header(r, "Access-Control-Max-Age", "600"); /* preflights are cached */
}

static enum MHD_Result send_buf(struct MHD_Connection *c, req_ctx *rc, int status,
                                const char *type, const char *body, size_t len) {
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!r) return MHD_NO;
    if (status != 204) MHD_add_response_header(r, "Content-Type", type);
    common_headers(r, rc);
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    rc->status = status;
    return ret;
}

static enum MHD_Result send_json(struct MHD_Connection *c, req_ctx *rc, int status, json_t *j) {
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (!s) return MHD_NO;
    enum MHD_Result r = send_buf(c, rc, status, "application/json", s, strlen(s));
    free(s);
    return r;
}

static enum MHD_Result send_error(struct MHD_Connection *c, req_ctx *rc, int dialect,
                                  const proto_error *e) {
    char *s = dialect == DIALECT_ANTHROPIC ? anthropic_error_json(e) : openai_error_json(e);
    int status = dialect == DIALECT_ANTHROPIC ? anthropic_error_status(e->kind)
                                              : openai_error_status(e->kind);
    if (!s) return MHD_NO;
    enum MHD_Result r = send_buf(c, rc, status, "application/json", s, strlen(s));
    free(s);
    return r;
}

static enum MHD_Result send_errorf(struct MHD_Connection *c, req_ctx *rc, int dialect,
                                   conv_error_kind kind, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
static enum MHD_Result send_errorf(struct MHD_Connection *c, req_ctx *rc, int dialect,
                                   conv_error_kind kind, const char *param, const char *fmt, ...) {
    proto_error e;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    proto_error_set(&e, kind, param, "%s", msg);
    return send_error(c, rc, dialect, &e);
}

/* 403 in the dialect's error shape (the codecs have no kind for it: only the daemon refuses a
 * request for where it comes from). */
static enum MHD_Result send_forbidden(struct MHD_Connection *c, req_ctx *rc, int dialect,
                                      const char *msg) {
    json_t *j = dialect == DIALECT_ANTHROPIC
                    ? json_pack("{s:s,s:{s:s,s:s}}", "type", "error", "error", "type",
                                "permission_error", "message", msg)
                    : json_pack("{s:{s:s,s:s,s:n,s:n}}", "error", "message", msg, "type",
                                "permission_error", "param", "code");
    return j ? send_json(c, rc, 403, j) : MHD_NO;
}

/* ---- model state ---- */

static int model_state(srv *s, char *err, size_t cap) {
    pthread_mutex_lock(&s->mu);
    int st = s->state;
    if (err) snprintf(err, cap, "%s", s->error);
    pthread_mutex_unlock(&s->mu);
    return st;
}

/* 503 unless the local model is ready */
static enum MHD_Result unavailable(srv *s, struct MHD_Connection *c, req_ctx *rc, int dialect) {
    char err[512];
    int st = model_state(s, err, sizeof err);
    if (st == MODEL_LOADING)
        return send_errorf(c, rc, dialect, CONV_ERR_UNAVAILABLE, NULL,
                           "the local model is still loading; retry in a moment");
    if (st == MODEL_FAILED)
        return send_errorf(c, rc, dialect, CONV_ERR_UNAVAILABLE, NULL,
                           "the local model failed to load: %s", err);
    return send_errorf(c, rc, dialect, CONV_ERR_UNAVAILABLE, NULL,
                       "no local model is configured (set [backend] model or pass -m)");
}

static void *load_model(void *arg) {
    srv *s = arg;
    model *m = NULL;
    tok *t = NULL;
    sched *sc = NULL;
    int st = model_load(&m, s->o.model_path);
    if (!st) st = tok_load(&t, model_gguf(m));
    int32_t n_ctx = 0;
    if (!st) {
        n_ctx = s->o.ctx > 0 ? s->o.ctx : 32768;
        if (n_ctx > model_hp(m)->n_ctx_train) n_ctx = model_hp(m)->n_ctx_train;
        int threads = s->o.threads;
        if (threads <= 0) {
            long n = sysconf(_SC_NPROCESSORS_ONLN);
            threads = n < 1 ? 1 : n > 8 ? 8 : (int)n;
        }
        sched_opts so = {.n_threads = threads,
                         .n_ctx = n_ctx,
                         .kv_type = s->o.kv_type,
                         .parallel = s->o.parallel > 0 ? s->o.parallel : 4,
                         .prefill_chunk = 256};
        st = sched_new(&sc, m, t, &so);
    }
    pthread_mutex_lock(&s->mu);
    if (st) {
        s->state = MODEL_FAILED;
        snprintf(s->error, sizeof s->error, "%s", sh_error_last());
        fprintf(stderr, "shammah daemon: model %s: %s\n", s->o.model_path, s->error);
    } else {
        gguf_str js;
        char *jinja = NULL;
        if (gguf_get_str(model_gguf(m), "tokenizer.chat_template", &js) == SH_OK)
            jinja = strndup(js.ptr, js.len);
        local_model_init(&s->lm, t, jinja);
        free(jinja);
        s->m = m;
        s->t = t;
        s->sc = sc;
        s->n_ctx = n_ctx;
        s->state = MODEL_READY;
        fprintf(stderr, "shammah daemon: model %s ready (%s, context %d, chat template %s)\n",
                s->model_name, model_arch_name(model_hp(m)->arch), n_ctx,
                chat_kind_name(s->lm.tmpl.kind));
    }
    pthread_mutex_unlock(&s->mu);
    if (st) {
        sched_free(sc);
        tok_free(t);
        model_free(m);
    }
    return NULL;
}

/* ---- generation ---- */

/* The dialect's encoder for one answer, behind a small vtable so producers need not care. */
typedef struct {
    void *enc;
    int (*event)(void *enc, const conv_event *ev);
    int (*finish)(void *enc);
    void (*free)(void *enc);
} encoder;


typedef struct {
    srv *s;
    xslot *slot; /* held until the answer is complete (NULL: the default model) */
    sched_job *job;
    int dialect;
    encoder enc;
    conv_buf out;   /* bytes produced by the encoder, not yet sent */
    size_t out_off;
    int finished;
    double t_start, t_last;
    int64_t n_tokens;
    /* a session turn to store when the answer is complete */
    char *session_id;
    char *session_prefix; /* JSON array: trimmed history (when put) and the new messages */
    int64_t session_expect; /* message count for sessions_append_at, or -1: replace (put) */
    conv_accum answer;
} gen;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int gen_write(void *user, const char *data, size_t len) {
    gen *g = user;
    return conv_buf_append(&g->out, data, len);
}

static int enc_openai_event(void *e, const conv_event *ev) {
    return openai_enc_event(e, ev);
}
static int enc_openai_finish(void *e) {
    return openai_enc_finish(e);
}
static void enc_openai_free(void *e) {
    openai_enc_free(e);
}
static int enc_anthropic_event(void *e, const conv_event *ev) {
    return anthropic_enc_event(e, ev);
}
static int enc_anthropic_finish(void *e) {
    return anthropic_enc_finish(e);
}
static void enc_anthropic_free(void *e) {
    anthropic_enc_free(e);
}

static char *new_id(srv *s, const char *prefix) {
    static const char hex[] = "0123456789abcdef";
    uint64_t x = atomic_fetch_add(&s->ids, 1) * 0x9E3779B97F4A7C15ull ^ (uint64_t)time(NULL) << 20 ^
                 (uint64_t)getpid();
    char *id = malloc(strlen(prefix) + 25);
    if (!id) return NULL;
    size_t p = strlen(prefix);
    memcpy(id, prefix, p);
    for (int i = 0; i < 24; i++) {
        id[p + (size_t)i] = hex[x & 15];
        x = (x >> 4) | (x << 60);
        if (i == 11) x *= 0xBF58476D1CE4E5B9ull;
    }
    id[p + 24] = 0;
    return id;
}

static int encoder_init(encoder *e, srv *s, int dialect, const conv_request *req, const char *model,
                        conv_write_fn write, void *user) {
    char *id = new_id(s, dialect == DIALECT_ANTHROPIC ? "msg_"
                         : req->api == CONV_API_COMPLETION ? "cmpl-"
                                                           : "chatcmpl-");
    if (dialect == DIALECT_ANTHROPIC) {
        anthropic_enc_opts ao = {.stream = req->stream, .model = model, .id = id ? id : "msg_0"};
        *e = (encoder){anthropic_enc_new(&ao, write, user), enc_anthropic_event, enc_anthropic_finish,
                       enc_anthropic_free};
    } else {
        openai_enc_opts oo = {.api = req->api,
                              .stream = req->stream,
                              .include_usage = req->include_usage,
                              .model = model,
                              .id = id ? id : "chatcmpl-0",
                              .created = (int64_t)time(NULL)};
        *e = (encoder){openai_enc_new(&oo, write, user), enc_openai_event, enc_openai_finish,
                       enc_openai_free};
    }
    free(id);
    return e->enc ? SH_OK : sh_error_set(SH_ENOMEM, "out of memory");
}

static void slot_release(srv *s, xslot *x);

static void gen_free(gen *g) {
    if (!g) return;
    if (g->slot) {
        if (g->job) sched_job_release(g->job);
        g->job = NULL;
        slot_release(g->s, g->slot);
    }
    free(g->session_id);
    free(g->session_prefix);
    conv_accum_free(&g->answer);
    if (g->job) sched_job_release(g->job);
    if (g->enc.enc) g->enc.free(g->enc.enc);
    conv_buf_free(&g->out);
    free(g);
}

/* The new messages and the reply become part of the session (a failure is logged: the client
 * already has its answer). */
static void session_store(gen *g) {
    json_t *arr = json_loads(g->session_prefix, 0, NULL), *content = json_array();
    for (int i = 0; arr && i < g->answer.n_blocks; i++) {
        const conv_accum_block *b = &g->answer.blocks[i];
        const char *text = b->text.p ? b->text.p : "";
        if (b->kind == CONV_TEXT) {
            if (*text) json_array_append_new(content, json_pack("{s:s,s:s}", "type", "text", "text", text));
        } else {
            json_t *input = json_loads(*text ? text : "{}", 0, NULL);
            if (!json_is_object(input)) {
                json_decref(input);
                input = json_object();
            }
            json_array_append_new(content, json_pack("{s:s,s:s,s:s,s:o}", "type", "tool_use", "id",
                                                     b->id ? b->id : "", "name", b->name ? b->name : "",
                                                     "input", input));
        }
    }
    if (json_array_size(content) == 0)
        json_array_append_new(content, json_pack("{s:s,s:s}", "type", "text", "text", ""));
    int st = SH_ENOMEM;
    if (arr) {
        json_array_append_new(arr, json_pack("{s:s,s:o}", "role", "assistant", "content", content));
        content = NULL;
        char *text = json_dumps(arr, JSON_COMPACT);
        if (text) {
            st = g->session_expect >= 0
                     ? sessions_append_at(g->s->sess, g->session_id, g->session_expect, text)
                     : sessions_put_history(g->s->sess, g->session_id, text);
            free(text);
        }
    }
    json_decref(content);
    json_decref(arr);
    if (st)
        fprintf(stderr, "shammah daemon: session %s: the turn was not stored: %s\n", g->session_id,
                st == SH_ECANCELED ? "another request changed the session meanwhile" : sh_error_last());
}

/* Feeds one event to the encoder and the metrics. Returns 1 when it was the last. */
static int gen_event(gen *g, const sched_event *se) {
    const conv_event *ev = &se->ev;
    double t = now_s();
    if (ev->kind == CONV_EV_TEXT || ev->kind == CONV_EV_TOOL_DELTA) {
        if (g->n_tokens == 0) metrics_ttft(g->s->met, t - g->t_start);
        else metrics_token_gap(g->s->met, t - g->t_last);
        g->n_tokens++;
        g->t_last = t;
    }
    if (ev->kind == CONV_EV_STOP)
        metrics_tokens(g->s->met, ev->usage.prompt_tokens, ev->usage.completion_tokens,
                       ev->usage.cached_tokens);
    g->enc.event(g->enc.enc, ev);
    if (g->session_id) conv_accum_event(&g->answer, ev);
    if (ev->kind == CONV_EV_STOP && g->session_id) session_store(g);
    if (ev->kind == CONV_EV_STOP || ev->kind == CONV_EV_ERROR) {
        g->enc.finish(g->enc.enc);
        g->finished = 1;
        return 1;
    }
    return 0;
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    gen *g = cls;
    (void)pos;
    while (g->out_off == g->out.len) {
        if (g->finished) return MHD_CONTENT_READER_END_OF_STREAM;
        g->out.len = 0;
        g->out_off = 0;
        if (g->out.p) g->out.p[0] = 0;
        sched_event se;
        if (!sched_job_next(g->job, &se, SRV_KEEPALIVE_MS)) {
            /* quiet (a long prompt being read): keep proxies and clients from timing out */
            const char *ka = g->dialect == DIALECT_ANTHROPIC
                                 ? "event: ping\ndata: {\"type\": \"ping\"}\n\n"
                                 : ": keep-alive\n\n";
            conv_buf_puts(&g->out, ka);
            continue;
        }
        gen_event(g, &se);
    }
    size_t n = g->out.len - g->out_off;
    if (n > max) n = max;
    memcpy(buf, g->out.p + g->out_off, n);
    g->out_off += n;
    return (ssize_t)n;
}

static void stream_free(void *cls) {
    gen *g = cls;
    metrics_stream(g->s->met, -1);
    gen_free(g);
}


static enum MHD_Result teacher_answer(srv *s, struct MHD_Connection *c, req_ctx *rc, int dialect,
                                      conv_request *req, int first, int count);

typedef struct {
    const char *id;
    char *prefix; /* owned until handed to the gen */
    int64_t expect;
} session_turn;

static enum MHD_Result generate(srv *s, struct MHD_Connection *c, req_ctx *rc, int dialect,
                                conv_request *req, session_turn *turn, const mview *v) {
    local_req lr;
    int st = local_prepare(v->lm, req, &lr);
    if (st) {
        enum MHD_Result r = send_errorf(c, rc, dialect, st == SH_ENOMEM ? CONV_ERR_INTERNAL : CONV_ERR_INVALID,
                                        NULL, "%s", sh_error_last());
        local_req_free(&lr);
        return r;
    }
    if (lr.p.n_prompt >= v->n_ctx && !turn) {
        router_decision d;
        if (router_fallback(s->rt, req, &d) == 1) { /* rule 4: a teacher can take it */
            local_req_free(&lr);
            return teacher_answer(s, c, rc, dialect, req, d.first, d.count);
        }
    }
    if (lr.p.n_prompt >= v->n_ctx) {
        enum MHD_Result r = send_errorf(
            c, rc, dialect, CONV_ERR_INVALID, "messages",
            "the prompt has %d tokens, more than the context of %d tokens allows (at least one "
            "token must be left to generate)",
            lr.p.n_prompt, v->n_ctx);
        local_req_free(&lr);
        return r;
    }
    gen *g = calloc(1, sizeof *g);
    if (!g) {
        local_req_free(&lr);
        return MHD_NO;
    }
    g->s = s;
    if (v->slot) { /* the answer holds the model until it is complete */
        pthread_mutex_lock(&s->mu);
        v->slot->users++;
        pthread_mutex_unlock(&s->mu);
        g->slot = v->slot;
    }
    g->dialect = dialect;
    g->t_start = now_s();
    conv_accum_init(&g->answer);
    if (turn && turn->id) {
        g->session_id = strdup(turn->id);
        g->session_prefix = turn->prefix;
        turn->prefix = NULL;
        g->session_expect = turn->expect;
    }
    conv_buf_init(&g->out, SRV_OUTPUT_MAX);
    encoder_init(&g->enc, s, dialect, req, v->name, gen_write, g);
    if (!g->enc.enc) {
        gen_free(g);
        local_req_free(&lr);
        return MHD_NO;
    }
    st = sched_submit(v->sc, &lr.p, &g->job);
    local_req_free(&lr);
    if (st) {
        gen_free(g);
        /* rule 4: the local model could not take it (queue full, stopping): a teacher may */
        router_decision d;
        if (st != SH_ERANGE && !turn && router_fallback(s->rt, req, &d) == 1)
            return teacher_answer(s, c, rc, dialect, req, d.first, d.count);
        router_count_route(s->rt, "local");
        return send_errorf(c, rc, dialect, st == SH_ERANGE ? CONV_ERR_INVALID : CONV_ERR_UNAVAILABLE,
                           NULL, "%s", sh_error_last());
    }
    router_count_route(s->rt, "local");
    if (req->stream) {
        struct MHD_Response *r =
            MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_read, g, stream_free);
        if (!r) {
            gen_free(g);
            return MHD_NO;
        }
        metrics_stream(s->met, +1);
        MHD_add_response_header(r, "Content-Type", "text/event-stream");
        MHD_add_response_header(r, "Cache-Control", "no-cache");
        common_headers(r, rc);
        enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_OK, r);
        MHD_destroy_response(r);
        rc->status = 200;
        return ret;
    }
    /* not streaming: collect the whole answer, then send it */
    sched_event se;
    int error = 0;
    char errmsg[SCHED_TEXT_MAX] = "";
    conv_error_kind ek = CONV_ERR_INTERNAL;
    while (!g->finished) {
        if (!sched_job_next(g->job, &se, -1)) continue;
        if (se.ev.kind == CONV_EV_ERROR) {
            error = 1;
            snprintf(errmsg, sizeof errmsg, "%s", se.text);
            ek = se.ev.error_kind;
            break;
        }
        gen_event(g, &se);
    }
    enum MHD_Result ret;
    router_decision d;
    if (error && !turn && router_fallback(s->rt, req, &d) == 1) {
        /* rule 4 after the start: nothing was sent yet, so a teacher answers instead */
        fprintf(stderr, "shammah daemon: local generation failed (%s); asking a teacher\n", errmsg);
        gen_free(g);
        return teacher_answer(s, c, rc, dialect, req, d.first, d.count);
    }
    if (error)
        ret = send_errorf(c, rc, dialect, ek, NULL, "generation failed: %s", errmsg);
    else
        ret = send_buf(c, rc, 200, "application/json", g->out.p ? g->out.p : "{}", g->out.len);
    gen_free(g);
    return ret;
}

/* ---- teachers ---- */

/* A request answered by the teacher chain. Streaming: a worker thread runs the chain and
 * encodes its events into a bounded buffer that the connection drains; a full buffer makes
 * the worker wait (backpressure), a client that leaves cancels the transfer. */
typedef struct {
    srv *s;
    conv_request req; /* owned (moved from the handler) */
    int first, count;
    int dialect;
    encoder enc;
    pthread_t th;
    int started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    conv_buf out;
    size_t out_off;
    int events, done, gone;
    teacher_result res;
    conv_accum answer; /* for distillation */
} tgen;

#define TGEN_BUFFER (1u << 20) /* encoded bytes waiting for the client */

static int tgen_write(void *user, const char *data, size_t len) {
    tgen *t = user; /* called with t->mu held */
    return conv_buf_append(&t->out, data, len);
}

static int tgen_event(void *user, const conv_event *ev) {
    tgen *t = user;
    pthread_mutex_lock(&t->mu);
    while (!t->gone && t->out.len - t->out_off > TGEN_BUFFER / 2) pthread_cond_wait(&t->cv, &t->mu);
    if (!t->gone) {
        t->enc.event(t->enc.enc, ev);
        conv_accum_event(&t->answer, ev);
        t->events++;
        pthread_cond_broadcast(&t->cv);
    }
    int gone = t->gone;
    pthread_mutex_unlock(&t->mu);
    return gone;
}

static int tgen_canceled(void *user) {
    tgen *t = user;
    pthread_mutex_lock(&t->mu);
    int g = t->gone;
    pthread_mutex_unlock(&t->mu);
    return g;
}

/* A teacher's answer becomes a training example (weight 1): the conversation's user and
 * assistant text, then the answer's text. Answers that are only tool calls are skipped. */
static void distill(tgen *t) {
    const conv_accum *a = &t->answer;
    if (!t->s->o.distill || !t->s->fb || !a->stopped || a->failed) return;
    conv_buf text;
    conv_buf_init(&text, 8u << 20);
    for (int i = 0; i < a->n_blocks; i++)
        if (a->blocks[i].kind == CONV_TEXT && a->blocks[i].text.p) conv_buf_puts(&text, a->blocks[i].text.p);
    json_t *msgs = json_array();
    const char *last_user = NULL;
    for (int i = 0; i < t->req.n_messages; i++) {
        const conv_message *m = &t->req.messages[i];
        if (m->role != CONV_USER && m->role != CONV_ASSISTANT) continue;
        for (int k = 0; k < m->n_blocks; k++) {
            if (m->blocks[k].kind != CONV_TEXT || !m->blocks[k].text) continue;
            json_array_append_new(msgs, json_pack("{s:s,s:s}", "role", m->role == CONV_USER ? "user" : "assistant",
                                                  "content", m->blocks[k].text));
            if (m->role == CONV_USER) last_user = m->blocks[k].text;
        }
    }
    if (text.len > 0 && last_user) {
        json_array_append_new(msgs, json_pack("{s:s,s:s}", "role", "assistant", "content", text.p));
        feedback_item it = {.messages = json_dumps(msgs, JSON_COMPACT), .weight = 1, .query = strdup(last_user)};
        int64_t id;
        if (it.messages && it.query) feedback_add(t->s->fb, &it, "teacher", &id);
        feedback_item_free(&it);
    }
    json_decref(msgs);
    conv_buf_free(&text);
}

static void *tgen_main(void *arg) {
    tgen *t = arg;
    teacher_opts o;
    teacher_opts_default(&o);
    o.canceled = tgen_canceled;
    o.cancel_user = t;
    teacher_chain_generate(&t->s->o.teachers[t->first], t->count, &t->req, &o, tgen_event, t, &t->res);
    distill(t);
    pthread_mutex_lock(&t->mu);
    if (t->events > 0 && !t->gone) t->enc.finish(t->enc.enc);
    t->done = 1;
    pthread_cond_broadcast(&t->cv);
    pthread_mutex_unlock(&t->mu);
    return NULL;
}

static void tgen_free(tgen *t) {
    if (t->started) {
        pthread_mutex_lock(&t->mu);
        t->gone = 1;
        pthread_cond_broadcast(&t->cv);
        pthread_mutex_unlock(&t->mu);
        pthread_join(t->th, NULL);
    }
    if (t->enc.enc) t->enc.free(t->enc.enc);
    conv_buf_free(&t->out);
    conv_accum_free(&t->answer);
    conv_request_free(&t->req);
    pthread_cond_destroy(&t->cv);
    pthread_mutex_destroy(&t->mu);
    free(t);
}

static ssize_t tgen_read(void *cls, uint64_t pos, char *buf, size_t max) {
    tgen *t = cls;
    (void)pos;
    pthread_mutex_lock(&t->mu);
    while (t->out_off == t->out.len && !t->done) pthread_cond_wait(&t->cv, &t->mu);
    ssize_t n;
    if (t->out_off == t->out.len) {
        n = MHD_CONTENT_READER_END_OF_STREAM;
    } else {
        size_t k = t->out.len - t->out_off;
        if (k > max) k = max;
        memcpy(buf, t->out.p + t->out_off, k);
        t->out_off += k;
        if (t->out_off == t->out.len) t->out_off = t->out.len = 0;
        pthread_cond_broadcast(&t->cv);
        n = (ssize_t)k;
    }
    pthread_mutex_unlock(&t->mu);
    return n;
}

static void tgen_stream_free(void *cls) {
    tgen *t = cls;
    metrics_stream(t->s->met, -1);
    tgen_free(t);
}

/* Answers req (ownership taken: *req is left zeroed) with teachers[first, first + count). */
static enum MHD_Result teacher_answer(srv *s, struct MHD_Connection *c, req_ctx *rc, int dialect,
                                      conv_request *req, int first, int count) {
    tgen *t = calloc(1, sizeof *t);
    if (!t) return MHD_NO;
    t->s = s;
    t->req = *req;
    conv_request_zero(req);
    t->first = first;
    t->count = count;
    t->dialect = dialect;
    pthread_mutex_init(&t->mu, NULL);
    pthread_cond_init(&t->cv, NULL);
    conv_buf_init(&t->out, SRV_OUTPUT_MAX);
    conv_accum_init(&t->answer);
    const char *model = t->req.model ? t->req.model : s->o.teachers[first].model;
    encoder_init(&t->enc, s, dialect, &t->req, model, tgen_write, t);
    if (!t->enc.enc || pthread_create(&t->th, NULL, tgen_main, t) != 0) {
        tgen_free(t);
        return MHD_NO;
    }
    t->started = 1;
    /* wait for the first event (then the answer is under way) or the end of the chain */
    pthread_mutex_lock(&t->mu);
    while (t->events == 0 && !t->done) pthread_cond_wait(&t->cv, &t->mu);
    int failed = t->events == 0;
    int streaming = t->req.stream && !failed;
    if (!streaming && !failed)
        while (!t->done) pthread_cond_wait(&t->cv, &t->mu);
    pthread_mutex_unlock(&t->mu);
    snprintf(rc->route, sizeof rc->route, "teacher:%s", t->res.teacher);
    router_count_route(s->rt, rc->route);
    if (failed) {
        pthread_join(t->th, NULL);
        t->started = 0;
        proto_error e;
        proto_error_set(&e, t->res.error_kind, NULL, "%s", t->res.error[0] ? t->res.error : "no teacher answered");
        enum MHD_Result r = send_error(c, rc, dialect, &e);
        tgen_free(t);
        return r;
    }
    if (!streaming) {
        enum MHD_Result r = send_buf(c, rc, 200, "application/json", t->out.p ? t->out.p : "{}", t->out.len);
        tgen_free(t);
        return r;
    }
    struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, tgen_read, t, tgen_stream_free);
    if (!r) {
        tgen_free(t);
        return MHD_NO;
    }
    metrics_stream(s->met, +1);
    MHD_add_response_header(r, "Content-Type", "text/event-stream");
    MHD_add_response_header(r, "Cache-Control", "no-cache");
    common_headers(r, rc);
    enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    rc->status = 200;
    return ret;
}

static router_local_state local_state(srv *s) {
    if (s->o.backend_disabled) return ROUTER_LOCAL_DISABLED;
    switch (model_state(s, NULL, 0)) {
    case MODEL_READY: return ROUTER_LOCAL_READY;
    case MODEL_LOADING: return ROUTER_LOCAL_LOADING;
    case MODEL_FAILED: return ROUTER_LOCAL_FAILED;
    default: return ROUTER_LOCAL_ABSENT;
    }
}

/* ---- training worker and adapters ----
 *
 * One run at a time, on request (POST /v1/training/run): the pending feedback becomes
 * examples rendered exactly as chat requests are (td_add uses the daemon's own prompt code),
 * a LoRA adapter is trained ([training] rank, alpha, targets, learning_rate, epochs, ...;
 * by default rank 16, alpha 32, lr 1e-3, 4 epochs: few, heavily weighted examples), saved
 * under SHAMMAH_HOME/adapters/, the examples marked consumed only then, and
 * the adapter swapped in between two decoding steps. The trainer uses one thread and pauses
 * between layers and between optimizer steps while requests are being generated, so serving
 * keeps priority. */

static int valid_adapter_id(const char *id) {
    size_t n = strlen(id);
    if (n == 0 || n > 100 || id[0] == '.') return 0;
    return strspn(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") == n;
}

/* Makes the adapter file `id` (or none) the served one. Called with tr_mu held. */
static int activate_adapter_locked(srv *s, const char *id) {
    lora *l = NULL;
    if (strcmp(id, "none") != 0) {
        char path[4400];
        snprintf(path, sizeof path, "%s/adapters/%s.gguf", s->o.home, id);
        int st = lora_load(&l, path, s->m, 1.0f);
        if (st) return st;
    }
    sched_set_lora(s->sc, l);
    for (int i = 0; i < 2500 && !sched_lora_applied(s->sc); i++) { /* bounded: 5 s */
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
    }
    lora_free(s->ad_prev); /* no longer served by anything */
    s->ad_prev = s->ad_active;
    snprintf(s->ad_prev_name, sizeof s->ad_prev_name, "%s", s->ad_active_name);
    s->ad_active = l;
    snprintf(s->ad_active_name, sizeof s->ad_active_name, "%s", l ? id : "");
    return SH_OK;
}

typedef struct {
    srv *s;
    td_set set;
    int64_t *ids;
    int n, cap;
} collect_ctx;

static int collect_one(void *user, int64_t id, const char *messages, double weight) {
    collect_ctx *cc = user;
    json_t *arr = json_loads(messages, 0, NULL);
    int n = (int)json_array_size(arr), st = SH_OK;
    td_msg *m = calloc((size_t)(n ? n : 1), sizeof *m);
    for (int i = 0; m && i < n; i++) {
        json_t *it = json_array_get(arr, (size_t)i);
        m[i].role = json_string_value(json_object_get(it, "role"));
        m[i].content = json_string_value(json_object_get(it, "content"));
    }
    /* an example the template cannot take is skipped, not fatal */
    if (m && n >= 2 && td_add(&cc->set, &cc->s->lm, m, n, (float)weight) == SH_OK) {
        if (cc->n == cc->cap) {
            int cap = cc->cap ? cc->cap * 2 : 64;
            int64_t *ids = realloc(cc->ids, sizeof *ids * (size_t)cap);
            if (!ids) st = SH_ENOMEM;
            else cc->ids = ids, cc->cap = cap;
        }
        if (!st) cc->ids[cc->n++] = id;
    }
    free(m);
    json_decref(arr);
    return st;
}

static int train_progress(void *user, const lt_progress *p) {
    srv *s = user;
    pthread_mutex_lock(&s->tr_mu);
    s->tr_step = p->step;
    s->tr_steps = p->steps;
    s->tr_loss = p->loss;
    int stop = s->tr_stop;
    pthread_mutex_unlock(&s->tr_mu);
    /* serving first: wait while requests are being generated (bounded per step) */
    sched_stats ss;
    for (int i = 0; i < 100 && !stop; i++) {
        sched_get_stats(s->sc, &ss);
        if (ss.active == 0 && ss.queued == 0) break;
        struct timespec ts = {0, 20000000};
        nanosleep(&ts, NULL);
    }
    return stop;
}

/* Between two layers of a training step: while requests are being generated the trainer waits
 * (at most 2 s a call, so a busy daemon still trains, slowly), so serving gets the cores. */
static void train_pause(void *user) {
    srv *s = user;
    sched_stats ss;
    for (int i = 0; i < 400; i++) {
        pthread_mutex_lock(&s->tr_mu);
        int stop = s->tr_stop;
        pthread_mutex_unlock(&s->tr_mu);
        if (stop) return;
        sched_get_stats(s->sc, &ss);
        if (ss.active == 0 && ss.queued == 0) return;
        struct timespec ts = {0, 5000000};
        nanosleep(&ts, NULL);
    }
}

static void train_run(srv *s) {
    collect_ctx cc = {.s = s};
    lora_adapter *ad = NULL;
    lt_trainer *lt = NULL;
    char err[256] = "";
    int st = feedback_each_pending(s->fb, 10000, collect_one, &cc);
    if (!st && cc.n == 0) {
        snprintf(err, sizeof err, "no pending feedback to train on");
        goto out;
    }
    const struct sh_config_training *tc = s->o.training;
    unsigned targets = lora_targets_default();
    if (!st && tc && tc->targets && *tc->targets && lora_targets_parse(tc->targets, &targets)) {
        snprintf(err, sizeof err, "[training] targets: %s", sh_error_last());
        st = SH_EINVAL;
    }
    if (!st)
        st = lora_adapter_new(&ad, s->m, targets, tc ? tc->lora_rank : 16,
                              tc ? (float)tc->alpha : 32.0f, (uint64_t)time(NULL));
    lt_params lp;
    lt_params_default(&lp);
    lp.lr = tc ? (float)tc->learning_rate : 1e-3f;
    lp.epochs = tc ? tc->epochs : 4;
    lp.batch_size = tc ? tc->batch_size : 4;
    lp.max_seq_len = tc ? tc->max_seq_len : 512;
    lp.dropout = tc ? (float)(tc->dropout < 0 ? 0 : tc->dropout > 0.95 ? 0.95 : tc->dropout) : 0;
    lp.n_threads = 1;
    lp.pause = train_pause;
    lp.pause_user = s;
    if (!st) st = lt_new(&lt, s->m, ad, &lp);
    lt_result res;
    memset(&res, 0, sizeof res);
    if (!st) st = lt_train(lt, cc.set.ex, cc.set.n, train_progress, s, &res);
    char name[128], path[4400], dir[4200];
    static atomic_int run_seq;
    /* unique across runs and daemons: never overwrite an adapter someone may roll back to */
    snprintf(name, sizeof name, "adapter-%lld-%d-%d", (long long)time(NULL), (int)getpid(),
             atomic_fetch_add(&run_seq, 1));
    snprintf(dir, sizeof dir, "%s/adapters", s->o.home);
    snprintf(path, sizeof path, "%s/%s.gguf", dir, name);
    if (!st) st = paths_mkdirs(dir, 0700);
    if (!st) st = lora_adapter_save(ad, path);
    if (!st) st = feedback_mark_consumed(s->fb, cc.ids, cc.n);
    pthread_mutex_lock(&s->tr_mu);
    if (!st) {
        s->loss_before = res.loss_before;
        s->loss_after = res.loss_after;
        s->last_examples = cc.n;
        snprintf(s->last_adapter, sizeof s->last_adapter, "%s", name);
        st = activate_adapter_locked(s, name);
        fprintf(stderr, "shammah daemon: trained %s on %d examples (loss %.3f -> %.3f), now served\n",
                name, cc.n, res.loss_before, res.loss_after);
    }
    if (st) snprintf(err, sizeof err, "%s", sh_error_last());
    pthread_mutex_unlock(&s->tr_mu);
out:
    pthread_mutex_lock(&s->tr_mu);
    snprintf(s->last_error, sizeof s->last_error, "%s", err);
    s->last_finished = time(NULL);
    pthread_mutex_unlock(&s->tr_mu);
    lt_free(lt);
    lora_adapter_free(ad);
    td_set_free(&cc.set);
    free(cc.ids);
}

static void *train_main(void *arg) {
    srv *s = arg;
    pthread_mutex_lock(&s->tr_mu);
    for (;;) {
        while (!s->tr_requested && !s->tr_stop) pthread_cond_wait(&s->tr_cv, &s->tr_mu);
        if (s->tr_stop) break;
        s->tr_requested = 0;
        s->tr_active = 1;
        s->tr_step = s->tr_steps = 0;
        s->last_started = time(NULL);
        pthread_mutex_unlock(&s->tr_mu);
        train_run(s);
        pthread_mutex_lock(&s->tr_mu);
        s->tr_active = 0;
    }
    pthread_mutex_unlock(&s->tr_mu);
    return NULL;
}

/* Starts a run unless one is under way; returns 1 when it was started. */
static int request_training(srv *s) {
    pthread_mutex_lock(&s->tr_mu);
    int busy = s->tr_active || s->tr_requested;
    if (!busy) {
        s->tr_requested = 1;
        pthread_cond_signal(&s->tr_cv);
    }
    pthread_mutex_unlock(&s->tr_mu);
    return !busy;
}

/* [training] enabled: a run starts when min_examples are pending, or interval_minutes after the
 * last one when at least one is (checked on each feedback and on the daemon's minute tick). */
static void maybe_train(srv *s, int tick) {
    if (!s->o.train_auto || !s->fb || model_state(s, NULL, 0) != MODEL_READY) return;
    int64_t pending = feedback_pending(s->fb);
    pthread_mutex_lock(&s->tr_mu);
    int64_t since = time(NULL) - (s->last_finished ? s->last_finished : s->started);
    pthread_mutex_unlock(&s->tr_mu);
    int threshold = s->o.train_threshold > 0 ? s->o.train_threshold : 10;
    int64_t interval = 60 * (int64_t)(s->o.training ? s->o.training->interval_minutes : 5);
    if (pending >= threshold || (tick && pending > 0 && since >= interval)) request_training(s);
}

static enum MHD_Result route_training(srv *s, struct MHD_Connection *c, req_ctx *rc,
                                      const char *method, const char *url) {
    if (!strcmp(url, "/v1/training/run") && !strcmp(method, "POST")) {
        if (model_state(s, NULL, 0) != MODEL_READY) return unavailable(s, c, rc, DIALECT_OPENAI);
        if (!request_training(s)) return send_errorf(c, rc, DIALECT_OPENAI, CONV_ERR_RATE, NULL, "a training run is already in progress");
        return send_json(c, rc, 202, json_pack("{s:s}", "status", "started"));
    }
    if (!strcmp(url, "/v1/training/status") && !strcmp(method, "GET")) {
        int64_t pending = s->fb ? feedback_pending(s->fb) : 0;
        pthread_mutex_lock(&s->tr_mu);
        json_t *j = json_pack("{s:b,s:b,s:I,s:{s:i,s:i,s:f},s:{s:I,s:I,s:I,s:f,s:f,s:s,s:s}}", "enabled", s->o.train_auto,
                              "active", s->tr_active || s->tr_requested, "pending", (json_int_t)pending,
                              "progress", "step", s->tr_step, "steps", s->tr_steps, "loss", s->tr_loss,
                              "last_run", "started", (json_int_t)s->last_started, "finished",
                              (json_int_t)s->last_finished, "examples", (json_int_t)s->last_examples,
                              "loss_before", s->loss_before, "loss_after", s->loss_after, "adapter",
                              s->last_adapter, "error", s->last_error);
        pthread_mutex_unlock(&s->tr_mu);
        return send_json(c, rc, 200, j);
    }
    return send_errorf(c, rc, DIALECT_OPENAI, CONV_ERR_NOT_FOUND, NULL, "no route for %s %s", method, url);
}

static enum MHD_Result route_adapters(srv *s, struct MHD_Connection *c, req_ctx *rc,
                                      const char *method, const char *url) {
    if (!strcmp(url, "/v1/adapters") && !strcmp(method, "GET")) {
        char dir[4200];
        snprintf(dir, sizeof dir, "%s/adapters", s->o.home);
        json_t *list = json_array();
        DIR *d = opendir(dir);
        struct dirent *e;
        pthread_mutex_lock(&s->tr_mu);
        while (d && (e = readdir(d)) && json_array_size(list) < 1000) {
            size_t n = strlen(e->d_name);
            if (n < 6 || strcmp(e->d_name + n - 5, ".gguf") || e->d_name[0] == '.') continue;
            char id[256];
            snprintf(id, sizeof id, "%.*s", (int)(n - 5), e->d_name);
            json_array_append_new(list, json_pack("{s:s,s:b}", "id", id, "active", !strcmp(id, s->ad_active_name)));
        }
        if (d) closedir(d);
        json_t *j = json_pack("{s:o,s:s?,s:s?}", "adapters", list, "active",
                              s->ad_active_name[0] ? s->ad_active_name : NULL, "previous",
                              s->ad_prev_name[0] ? s->ad_prev_name : NULL);
        pthread_mutex_unlock(&s->tr_mu);
        return send_json(c, rc, 200, j);
    }
    /* POST /v1/adapters/{id}/activate ("none" serves the base model; rollback = the previous) */
    const char *p = url + strlen("/v1/adapters/");
    const char *slash = strchr(p, '/');
    if (!strcmp(method, "POST") && slash && !strcmp(slash, "/activate") && slash - p < 128) {
        char id[128];
        snprintf(id, sizeof id, "%.*s", (int)(slash - p), p);
        if (!valid_adapter_id(id))
            return send_errorf(c, rc, DIALECT_OPENAI, CONV_ERR_INVALID, NULL, "bad adapter id '%s'", id);
        if (model_state(s, NULL, 0) != MODEL_READY) return unavailable(s, c, rc, DIALECT_OPENAI);
        pthread_mutex_lock(&s->tr_mu);
        if (!strcmp(id, "previous")) snprintf(id, sizeof id, "%s", s->ad_prev_name[0] ? s->ad_prev_name : "none");
        int st = activate_adapter_locked(s, id);
        pthread_mutex_unlock(&s->tr_mu);
        if (st == SH_ENOTFOUND)
            return send_errorf(c, rc, DIALECT_OPENAI, CONV_ERR_NOT_FOUND, NULL, "adapter '%s' not found", id);
        if (st) return send_errorf(c, rc, DIALECT_OPENAI, CONV_ERR_INVALID, NULL, "%s", sh_error_last());
        return send_json(c, rc, 200, json_pack("{s:s,s:s}", "status", "active", "id", id));
    }
    return send_errorf(c, rc, DIALECT_OPENAI, CONV_ERR_NOT_FOUND, NULL, "no route for %s %s", method, url);
}

/* ---- sessions ---- */

/* "session_id" continues a stored conversation: its history goes before the request's
 * messages. Trimming rule: when history + request does not fit in the context with room for
 * min(max_tokens, 1/4 of the context) generated tokens, the oldest turns are dropped (whole
 * user/assistant turns, never a tool_use without its tool_result) until it does. */
static enum MHD_Result generate_in_session(srv *s, struct MHD_Connection *c, req_ctx *rc,
                                           conv_request *req) {
    const char *id = req->session_id;
    char *hist_text = NULL;
    int64_t n_hist = 0, *cuts = NULL, n_cuts = 0;
    json_t *body = NULL, *hist = NULL;
    session_turn turn = {.id = id, .prefix = NULL, .expect = 0};
    conv_request merged;
    conv_request_zero(&merged);
    proto_error err;
    memset(&err, 0, sizeof err);
    enum MHD_Result ret;
    if (!sessions_id_valid(id)) {
        ret = send_errorf(c, rc, DIALECT_ANTHROPIC, CONV_ERR_INVALID, "session_id",
                          "session_id must be 1..128 characters of A-Z a-z 0-9 . _ : -");
        goto out;
    }
    int st = sessions_get_history(s->sess, id, &hist_text, &n_hist);
    if (st == SH_ENOTFOUND) {
        n_hist = 0;
    } else if (st) {
        ret = send_errorf(c, rc, DIALECT_ANTHROPIC, CONV_ERR_INTERNAL, NULL, "session store: %s", sh_error_last());
        goto out;
    }
    body = json_loadb(rc->body, rc->len, 0, NULL);
    hist = hist_text ? json_loads(hist_text, 0, NULL) : json_array();
    json_t *msgs = body ? json_object_get(body, "messages") : NULL;
    if (!json_is_array(msgs) || !json_is_array(hist)) {
        ret = send_errorf(c, rc, DIALECT_ANTHROPIC, CONV_ERR_INTERNAL, NULL, "session history unreadable");
        goto out;
    }
    if (hist_text && sessions_cut_points(hist_text, &cuts, &n_cuts)) n_cuts = 0;
    /* a request answering tool calls needs the turn that made them */
    json_t *first = json_array_get(msgs, 0);
    json_t *fc = first ? json_object_get(first, "content") : NULL;
    int answers_tools = 0;
    for (size_t i = 0; json_is_array(fc) && i < json_array_size(fc); i++) {
        const char *ty = json_string_value(json_object_get(json_array_get(fc, i), "type"));
        answers_tools |= ty && !strcmp(ty, "tool_result");
    }
    if (answers_tools && n_cuts > 0) n_cuts--;
    int64_t reserve = req->max_tokens > 0 ? req->max_tokens : 256;
    if (reserve > s->n_ctx / 4) reserve = s->n_ctx / 4;
    json_t *orig_msgs = json_incref(msgs);
    for (int64_t k = 0;; k++) {
        int64_t drop = k == 0 ? 0 : cuts[k - 1];
        json_t *all = json_array();
        for (size_t i = (size_t)drop; i < json_array_size(hist); i++)
            json_array_append(all, json_array_get(hist, i));
        json_array_extend(all, orig_msgs);
        json_object_set_new(body, "messages", all);
        char *text = json_dumps(body, JSON_COMPACT);
        conv_request_free(&merged);
        conv_request_zero(&merged);
        st = text ? anthropic_decode_messages(text, strlen(text), &merged, &err) : SH_ENOMEM;
        free(text);
        if (st) {
            json_decref(orig_msgs);
            ret = send_error(c, rc, DIALECT_ANTHROPIC, &err);
            goto out;
        }
        int64_t n = 0;
        if (local_count_tokens(&s->lm, &merged, &n) == SH_OK && n + reserve > s->n_ctx && k < n_cuts)
            continue;
        /* what is stored after the answer: the kept history (when trimmed) and the new turn */
        json_t *prefix = json_array();
        if (drop > 0)
            for (size_t i = (size_t)drop; i < json_array_size(hist); i++)
                json_array_append(prefix, json_array_get(hist, i));
        json_array_extend(prefix, orig_msgs);
        turn.prefix = json_dumps(prefix, JSON_COMPACT);
        turn.expect = drop > 0 ? -1 : n_hist;
        json_decref(prefix);
        break;
    }
    json_decref(orig_msgs);
    mview dv = {&s->lm, s->n_ctx, s->sc, s->model_name, NULL};
    ret = generate(s, c, rc, DIALECT_ANTHROPIC, &merged, &turn, &dv);
out:
    free(turn.prefix);
    free(cuts);
    free(hist_text);
    json_decref(body);
    json_decref(hist);
    conv_request_free(&merged);
    return ret;
}

/* POST /v1/feedback: validated, stored durably, then acknowledged; the query's category
 * teaches the router (weight 1, "good", counts as a good local answer; heavier feedback marks a
 * correction: a bad one). */
static enum MHD_Result route_feedback(srv *s, struct MHD_Connection *c, req_ctx *rc) {
    if (rc->too_big)
        return send_errorf(c, rc, DIALECT_OPENAI, CONV_ERR_TOO_LARGE, NULL, "feedback body too large");
    feedback_item it;
    if (feedback_parse(rc->body ? rc->body : "", rc->len, &it))
        return send_errorf(c, rc, DIALECT_OPENAI, CONV_ERR_INVALID, NULL, "%s", sh_error_last());
    int64_t id = 0;
    int st = feedback_add(s->fb, &it, "user", &id);
    if (!st) router_feedback(s->rt, router_categorize_text(it.query, strlen(it.query)), it.weight <= 1);
    feedback_item_free(&it);
    if (st) return send_errorf(c, rc, DIALECT_OPENAI, CONV_ERR_INTERNAL, NULL, "%s", sh_error_last());
    maybe_train(s, 0);
    return send_json(c, rc, 200, json_pack("{s:s,s:I,s:I}", "status", "queued", "id", (json_int_t)id,
                                           "pending", (json_int_t)feedback_pending(s->fb)));
}

static enum MHD_Result route_session(srv *s, struct MHD_Connection *c, req_ctx *rc,
                                     const char *method, const char *id) {
    if (!sessions_id_valid(id))
        return send_errorf(c, rc, DIALECT_ANTHROPIC, CONV_ERR_NOT_FOUND, NULL, "session '%.128s' not found", id);
    if (!strcmp(method, "GET")) {
        session_info si;
        int st = sessions_info(s->sess, id, &si);
        if (st == SH_ENOTFOUND)
            return send_errorf(c, rc, DIALECT_ANTHROPIC, CONV_ERR_NOT_FOUND, NULL, "session '%s' not found", id);
        if (st) return send_errorf(c, rc, DIALECT_ANTHROPIC, CONV_ERR_INTERNAL, NULL, "%s", sh_error_last());
        return send_json(c, rc, 200,
                         json_pack("{s:s,s:I,s:I,s:I}", "id", si.id, "created_at", (json_int_t)si.created_at,
                                   "last_activity", (json_int_t)si.last_activity, "message_count",
                                   (json_int_t)si.message_count));
    }
    if (!strcmp(method, "DELETE")) {
        int st = sessions_delete(s->sess, id);
        if (st == SH_ENOTFOUND)
            return send_errorf(c, rc, DIALECT_ANTHROPIC, CONV_ERR_NOT_FOUND, NULL, "session '%s' not found", id);
        if (st) return send_errorf(c, rc, DIALECT_ANTHROPIC, CONV_ERR_INTERNAL, NULL, "%s", sh_error_last());
        return send_buf(c, rc, 204, "application/json", "", 0);
    }
    return send_errorf(c, rc, DIALECT_ANTHROPIC, CONV_ERR_INVALID, NULL, "/v1/session/:id takes GET or DELETE");
}

/* ---- routes ---- */

/* ---- models loaded on demand ---- */

static void slot_free(xslot *x) {
    if (!x) return;
    if (x->sc) sched_stop(x->sc);
    sched_free(x->sc);
    tok_free(x->t);
    model_free(x->m);
    free(x);
}

static void slot_release(srv *s, xslot *x) {
    pthread_mutex_lock(&s->mu);
    x->users--;
    x->last_used = now_s();
    int unload_now = s->o.keep_alive_seconds == 0 && x->users == 0;
    if (unload_now)
        for (int i = 0; i < SRV_MAX_SLOTS; i++)
            if (s->slots[i] == x) s->slots[i] = NULL;
    pthread_mutex_unlock(&s->mu);
    if (unload_now) {
        fprintf(stderr, "shammah daemon: model %s unloaded (keep_alive 0)\n", x->name);
        slot_free(x);
    }
}

/* Unloads slots idle for keep_alive seconds (called about once a second). */
static void slots_expire(srv *s) {
    xslot *gone[SRV_MAX_SLOTS];
    int n = 0;
    double now = now_s();
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < SRV_MAX_SLOTS; i++) {
        xslot *x = s->slots[i];
        if (x && x->users == 0 && x->state != MODEL_LOADING && s->o.keep_alive_seconds >= 0 &&
            now - x->last_used >= (double)s->o.keep_alive_seconds) {
            gone[n++] = x;
            s->slots[i] = NULL;
        }
    }
    pthread_mutex_unlock(&s->mu);
    for (int i = 0; i < n; i++) {
        fprintf(stderr, "shammah daemon: model %s unloaded (idle %llds)\n", gone[i]->name,
                (long long)s->o.keep_alive_seconds);
        slot_free(gone[i]);
    }
}

/* The registry path of a model a request names, when it is one this daemon may load: a name
 * `shammah models` lists (SHAMMAH_HOME/models, the config's models, Ollama's store), never a
 * file path a client makes up. 0 when the name means the default model or is unknown (then the
 * default model answers, as OpenAI-dialect clients send names of their own). */
static int requested_model(srv *s, const char *name, char *path, size_t cap) {
    if (!name || !*name || !strcmp(name, "local") || !strcmp(name, s->model_name) ||
        !strcmp(name, "default") || strchr(name + (strncmp(name, "ollama:", 7) ? 0 : 7), '/') ||
        name[0] == '.')
        return 0;
    const char *extra[1] = {s->o.model_path};
    reg_opts ro = {.home = s->o.home, .extra = extra, .n_extra = s->o.model_path ? 1 : 0};
    char found[REG_PATH_MAX], real[PATH_MAX];
    if (reg_resolve(name, &ro, found, sizeof found) != SH_OK) return 0;
    if (!realpath(found, real) || !strcmp(real, s->default_real)) return 0;
    /* only what the registry lists: reg_resolve also accepts existing paths */
    reg_models all;
    int listed = 0;
    if (reg_list(&all, &ro) == SH_OK) {
        for (int i = 0; i < all.n && !listed; i++) {
            char r2[PATH_MAX];
            listed = realpath(all.v[i].path, r2) && !strcmp(r2, real);
        }
        reg_models_free(&all);
    }
    if (!listed || strlen(found) >= cap) return 0;
    snprintf(path, cap, "%s", found);
    return 1;
}

static int slot_load(srv *s, xslot *x) {
    int st = model_load(&x->m, x->path);
    if (!st) st = tok_load(&x->t, model_gguf(x->m));
    if (st) return st;
    x->n_ctx = s->o.ctx > 0 ? s->o.ctx : 32768;
    if (x->n_ctx > model_hp(x->m)->n_ctx_train) x->n_ctx = model_hp(x->m)->n_ctx_train;
    int threads = s->o.threads;
    if (threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        threads = n < 1 ? 1 : n > 8 ? 8 : (int)n;
    }
    sched_opts so = {.n_threads = threads, .n_ctx = x->n_ctx, .kv_type = s->o.kv_type,
                     .parallel = s->o.parallel > 0 ? s->o.parallel : 4, .prefill_chunk = 256};
    if ((st = sched_new(&x->sc, x->m, x->t, &so))) return st;
    gguf_str js;
    char *jinja = NULL;
    if (gguf_get_str(model_gguf(x->m), "tokenizer.chat_template", &js) == SH_OK)
        jinja = strndup(js.ptr, js.len);
    local_model_init(&x->lm, x->t, jinja);
    free(jinja);
    return SH_OK;
}

/* Holds the slot of model `name` at path, loading it first when needed (the request waits;
 * others asking for the same model wait for the same load). *out is held: slot_release().
 * A 503-worthy error (with sh_error_last()) when it cannot be loaded or every slot is busy. */
static int slot_acquire(srv *s, const char *name, const char *path, xslot **out) {
    xslot *x = NULL, *evict = NULL;
    int st = SH_OK, max = s->o.max_loaded_models > 1 ? s->o.max_loaded_models - 1 : 1;
    if (max > SRV_MAX_SLOTS) max = SRV_MAX_SLOTS;
    *out = NULL;
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < SRV_MAX_SLOTS && !x; i++)
        if (s->slots[i] && !strcmp(s->slots[i]->path, path)) x = s->slots[i];
    if (x) {
        x->users++;
        for (int w = 0; x->state == MODEL_LOADING && w < 600; w++) { /* bounded: 10 min */
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += 1;
            pthread_cond_timedwait(&s->x_cv, &s->mu, &ts);
        }
        if (x->state != MODEL_READY) {
            st = sh_error_set(SH_EUNSUPPORTED, "model %s could not be loaded: %s", name,
                              x->state == MODEL_FAILED ? x->error : "still loading");
            x->users--;
            x = NULL;
        }
        pthread_mutex_unlock(&s->mu);
        *out = x;
        return st;
    }
    int n_used = 0, free_i = -1;
    for (int i = 0; i < SRV_MAX_SLOTS; i++) {
        if (!s->slots[i]) {
            if (free_i < 0) free_i = i;
            continue;
        }
        n_used++;
        xslot *y = s->slots[i];
        if (y->users == 0 && y->state != MODEL_LOADING && (!evict || y->last_used < evict->last_used))
            evict = y;
    }
    if (n_used >= max) { /* least recently used idle model makes room */
        if (!evict) {
            pthread_mutex_unlock(&s->mu);
            return sh_error_set(SH_EFULL, "every loaded model is busy (max_loaded_models = %d); "
                                          "retry in a moment", s->o.max_loaded_models);
        }
        for (int i = 0; i < SRV_MAX_SLOTS; i++)
            if (s->slots[i] == evict) free_i = i, s->slots[i] = NULL;
    } else {
        evict = NULL;
    }
    x = calloc(1, sizeof *x);
    if (!x) {
        pthread_mutex_unlock(&s->mu);
        slot_free(evict);
        return sh_error_set(SH_ENOMEM, "out of memory");
    }
    snprintf(x->name, sizeof x->name, "%s", name);
    snprintf(x->path, sizeof x->path, "%s", path);
    x->state = MODEL_LOADING;
    x->users = 1;
    s->slots[free_i] = x;
    pthread_mutex_unlock(&s->mu);
    if (evict) {
        fprintf(stderr, "shammah daemon: model %s unloaded to make room for %s\n", evict->name, name);
        slot_free(evict);
    }
    double t0 = now_s();
    st = slot_load(s, x);
    pthread_mutex_lock(&s->mu);
    x->last_used = now_s();
    if (st) {
        x->state = MODEL_FAILED;
        snprintf(x->error, sizeof x->error, "%s", sh_error_last());
        x->users--;
        for (int i = 0; i < SRV_MAX_SLOTS; i++) /* the next request tries again */
            if (s->slots[i] == x && x->users == 0) s->slots[i] = NULL;
    } else {
        x->state = MODEL_READY;
    }
    pthread_cond_broadcast(&s->x_cv);
    int orphan = st && x->users == 0;
    char err[512];
    snprintf(err, sizeof err, "%s", x->error);
    pthread_mutex_unlock(&s->mu);
    if (st) {
        fprintf(stderr, "shammah daemon: model %s: %s\n", name, err);
        if (orphan) slot_free(x);
        return sh_error_set(SH_EUNSUPPORTED, "model %s could not be loaded: %s", name, err);
    }
    fprintf(stderr, "shammah daemon: model %s loaded on demand in %.1f s (context %d)\n", name,
            now_s() - t0, x->n_ctx);
    *out = x;
    return SH_OK;
}

static enum MHD_Result route_generate(srv *s, struct MHD_Connection *c, req_ctx *rc,
                                      const char *url) {
    int dialect = dialect_of(url);
    if (rc->too_big)
        return send_errorf(c, rc, dialect, CONV_ERR_TOO_LARGE, NULL,
                           "request body larger than %lld bytes ([server] max_body_bytes)",
                           (long long)s->o.max_body_bytes);
    conv_request req;
    proto_error err;
    memset(&err, 0, sizeof err);
    conv_request_zero(&req);
    int st;
    const char *body = rc->body ? rc->body : "";
    int count_only = !strcmp(url, "/v1/messages/count_tokens");
    if (!strcmp(url, "/v1/chat/completions")) st = openai_decode_chat(body, rc->len, &req, &err);
    else if (!strcmp(url, "/v1/completions")) st = openai_decode_completion(body, rc->len, &req, &err);
    else if (count_only) st = anthropic_decode_count_tokens(body, rc->len, &req, &err);
    else st = anthropic_decode_messages(body, rc->len, &req, &err);
    int max_messages = s->o.max_messages > 0 ? s->o.max_messages : 10000;
    if (!st && req.n_messages > max_messages) {
        int n = req.n_messages;
        conv_request_free(&req);
        return send_errorf(c, rc, dialect, CONV_ERR_INVALID, "messages",
                           "the request has %d messages, more than the limit of %d "
                           "([server] max_messages)", n, max_messages);
    }
    enum MHD_Result ret;
    router_decision d;
    char xpath[REG_PATH_MAX];
    memset(&d, 0, sizeof d);
    /* a request naming another local model is served by it (loaded on demand), not routed */
    int on_demand = !st && !s->o.backend_disabled && requested_model(s, req.model, xpath, sizeof xpath);
    if (!st && !count_only && !on_demand) router_decide(s->rt, &req, local_state(s), &d);
    if (st) {
        ret = send_error(c, rc, dialect, &err);
    } else if (!count_only && d.kind == ROUTE_ERROR) {
        router_count_route(s->rt, "error");
        ret = send_errorf(c, rc, dialect, d.error_kind, NULL, "%s", d.error);
    } else if (!count_only && d.kind == ROUTE_TEACHER) {
        ret = teacher_answer(s, c, rc, dialect, &req, d.first, d.count);
    } else if (on_demand) {
        xslot *x = NULL;
        if (slot_acquire(s, req.model, xpath, &x)) {
            ret = send_errorf(c, rc, dialect, CONV_ERR_UNAVAILABLE, "model", "%s", sh_error_last());
        } else if (count_only) {
            int64_t n = 0;
            st = local_count_tokens(&x->lm, &req, &n);
            ret = st ? send_errorf(c, rc, dialect, CONV_ERR_INVALID, NULL, "%s", sh_error_last())
                     : send_json(c, rc, 200, json_pack("{s:I}", "input_tokens", (json_int_t)n));
        } else {
            mview xv = {&x->lm, x->n_ctx, x->sc, x->name, x};
            ret = generate(s, c, rc, dialect, &req, NULL, &xv);
        }
        if (x) slot_release(s, x);
    } else if (model_state(s, NULL, 0) != MODEL_READY) {
        ret = unavailable(s, c, rc, dialect);
    } else if (count_only) {
        int64_t n = 0;
        st = local_count_tokens(&s->lm, &req, &n);
        ret = st ? send_errorf(c, rc, dialect, CONV_ERR_INVALID, NULL, "%s", sh_error_last())
                 : send_json(c, rc, 200, json_pack("{s:I}", "input_tokens", (json_int_t)n));
    } else if (req.session_id && dialect == DIALECT_ANTHROPIC) {
        ret = generate_in_session(s, c, rc, &req);
    } else {
        mview dv = {&s->lm, s->n_ctx, s->sc, s->model_name, NULL};
        ret = generate(s, c, rc, dialect, &req, NULL, &dv);
    }
    conv_request_free(&req);
    return ret;
}

static json_t *model_entry(srv *s) {
    return json_pack("{s:s,s:s,s:s,s:I,s:s,s:s,s:s}", "id", s->model_name, "object", "model",
                     "type", "model", "created", (json_int_t)s->started, "created_at",
                     "1970-01-01T00:00:00Z", "owned_by", "shammah", "display_name", s->model_name);
}

static enum MHD_Result route_get(srv *s, struct MHD_Connection *c, req_ctx *rc, const char *url) {
    char err[512];
    int st = model_state(s, err, sizeof err);
    if (!strcmp(url, "/health")) {
        if (st == MODEL_READY)
            return send_json(c, rc, 200, json_pack("{s:s,s:s}", "status", "ok", "model", s->model_name));
        if (st == MODEL_LOADING) return send_json(c, rc, 503, json_pack("{s:s}", "status", "loading"));
        if (st == MODEL_FAILED)
            return send_json(c, rc, 503, json_pack("{s:s,s:s}", "status", "failed", "error", err));
        return send_json(c, rc, 503, json_pack("{s:s}", "status", "no_model"));
    }
    if (!strcmp(url, "/v1/models")) {
        json_t *data = json_array();
        if (st == MODEL_READY || st == MODEL_LOADING) json_array_append_new(data, model_entry(s));
        /* and every model a request may name (loaded on demand) */
        const char *extra[1] = {s->o.model_path};
        reg_opts ro = {.home = s->o.home, .extra = extra, .n_extra = s->o.model_path ? 1 : 0};
        reg_models all;
        if (!s->o.backend_disabled && reg_list(&all, &ro) == SH_OK) {
            for (int i = 0; i < all.n; i++) {
                char real[PATH_MAX];
                if (all.v[i].error[0] || !realpath(all.v[i].path, real) || !strcmp(real, s->default_real))
                    continue;
                json_t *e = json_pack("{s:s,s:s,s:s,s:I,s:s,s:s,s:s}", "id", all.v[i].name, "object",
                                      "model", "type", "model", "created", (json_int_t)s->started,
                                      "created_at", "1970-01-01T00:00:00Z", "owned_by", "shammah",
                                      "display_name", all.v[i].name);
                if (e) json_array_append_new(data, e);
            }
            reg_models_free(&all);
        }
        json_t *j = json_pack("{s:s,s:o,s:b}", "object", "list", "data", data, "has_more", 0);
        if (json_array_size(data)) {
            json_object_set_new(j, "first_id", json_incref(json_object_get(json_array_get(data, 0), "id")));
            json_object_set_new(j, "last_id", json_incref(json_object_get(
                                                   json_array_get(data, json_array_size(data) - 1), "id")));
        }
        return send_json(c, rc, 200, j);
    }
    sched_stats ss;
    memset(&ss, 0, sizeof ss);
    if (st == MODEL_READY) sched_get_stats(s->sc, &ss);
    if (!strcmp(url, "/metrics")) {
        metrics_gauges g = {.queue_depth = ss.queued,
                            .active_jobs = ss.active,
                            .kv_bytes = ss.kv_bytes,
                            .kv_used_ratio = st == MODEL_READY && s->o.parallel > 0
                                                 ? (double)ss.active / s->o.parallel
                                                 : 0,
                            .model_ready = st == MODEL_READY};
        char *text = metrics_render(s->met, &g);
        if (!text) return MHD_NO;
        conv_buf b;
        conv_buf_init(&b, 16u << 20);
        conv_buf_puts(&b, text);
        free(text);
        router_metrics(s->rt, &b);
        enum MHD_Result r =
            send_buf(c, rc, 200, "text/plain; version=0.0.4", b.p ? b.p : "", b.len);
        conv_buf_free(&b);
        return r;
    }
    if (!strcmp(url, "/v1/status")) {
        static const char *const names[] = {"none", "loading", "ready", "failed"};
        json_t *mj = json_pack("{s:s,s:s,s:s}", "state", names[st], "name", s->model_name, "path",
                               s->o.model_path ? s->o.model_path : "");
        if (st == MODEL_FAILED) json_object_set_new(mj, "error", json_string(err));
        if (st == MODEL_READY) {
            const model_hparams *hp = model_hp(s->m);
            json_object_set_new(mj, "architecture", json_string(model_arch_name(hp->arch)));
            json_object_set_new(mj, "parameters", json_integer((json_int_t)model_n_params(s->m)));
            json_object_set_new(mj, "context", json_integer(s->n_ctx));
            json_object_set_new(mj, "chat_template", json_string(chat_kind_name(s->lm.tmpl.kind)));
        }
        json_t *j = json_pack(
            "{s:s,s:o,s:I,s:I,s:I,s:I,s:{s:I,s:I,s:I},s:{s:i}}", "version", SRV_VERSION, "model",
            mj, "uptime_seconds", (json_int_t)(time(NULL) - s->started), "queue_depth",
            (json_int_t)ss.queued, "active_generations", (json_int_t)ss.active, "active_streams",
            (json_int_t)metrics_active_streams(s->met), "tokens", "prompt",
            (json_int_t)ss.prompt_tokens, "generated", (json_int_t)ss.generated_tokens, "cached",
            (json_int_t)ss.cached_tokens, "sessions", "active", (int)sessions_count(s->sess));
        json_t *rj = router_stats_json(s->rt);
        if (rj) json_object_set_new(j, "router", rj);
        json_t *lm = json_array();
        pthread_mutex_lock(&s->mu);
        static const char *const xs[] = {"none", "loading", "ready", "failed"};
        for (int i = 0; i < SRV_MAX_SLOTS; i++)
            if (s->slots[i])
                json_array_append_new(lm, json_pack("{s:s,s:s,s:i,s:f}", "name", s->slots[i]->name,
                                                    "state", xs[s->slots[i]->state], "in_use",
                                                    s->slots[i]->users, "idle_seconds",
                                                    s->slots[i]->users ? 0.0 : now_s() - s->slots[i]->last_used));
        pthread_mutex_unlock(&s->mu);
        json_object_set_new(j, "models_on_demand", lm);
        return send_json(c, rc, 200, j);
    }
    return send_errorf(c, rc, DIALECT_OPENAI, CONV_ERR_NOT_FOUND, NULL, "no route for GET %s", url);
}

/* Compares in time that depends only on the lengths, not on where the strings differ. */
static int key_equal(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b), n = la > lb ? la : lb;
    unsigned char diff = la != lb;
    for (size_t i = 0; i < n; i++)
        diff |= (unsigned char)((i < la ? a[i] : 0) ^ (i < lb ? b[i] : 0));
    return diff == 0;
}

static int authorized(srv *s, struct MHD_Connection *c) {
    if (s->o.n_api_keys == 0) return 1;
    const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    const char *xkey = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "x-api-key");
    const char *key = xkey;
    if (auth && !strncasecmp(auth, "Bearer ", 7)) key = auth + 7;
    if (!key) return 0;
    int ok = 0;
    for (int i = 0; i < s->o.n_api_keys; i++) ok |= key_equal(key, s->o.api_keys[i]);
    return ok;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_size, void **con_cls) {
    srv *s = cls;
    (void)version;
    req_ctx *rc = *con_cls;
    if (!rc) {
        rc = calloc(1, sizeof *rc);
        if (!rc) return MHD_NO;
        rc->endpoint = route_label(url);
        /* decided once, before any byte of the body is taken */
        const char *origin = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Origin");
        if (origin) {
            int fits = strlen(origin) < sizeof rc->origin_value;
            rc->origin = fits && origin_allowed(&s->o, origin) ? ORIGIN_ALLOWED : ORIGIN_REFUSED;
            if (rc->origin == ORIGIN_ALLOWED)
                snprintf(rc->origin_value, sizeof rc->origin_value, "%s", origin);
        }
        const char *host = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Host");
        rc->host_refused = s->loopback_only && host && !local_host(host);
        *con_cls = rc;
        return MHD_YES;
    }
    if (*upload_size) {
        size_t n = *upload_size;
        *upload_size = 0;
        if (rc->too_big || rc->len + n > (size_t)s->o.max_body_bytes) {
            rc->too_big = 1;
            return MHD_YES;
        }
        if (rc->len + n + 1 > rc->cap) {
            size_t cap = rc->cap ? rc->cap : 16384;
            while (cap < rc->len + n + 1) cap *= 2;
            char *b = realloc(rc->body, cap);
            if (!b) return MHD_NO;
            rc->body = b;
            rc->cap = cap;
        }
        memcpy(rc->body + rc->len, upload_data, n);
        rc->len += n;
        rc->body[rc->len] = 0;
        return MHD_YES;
    }
    int dialect = dialect_of(url);
    int is_post = !strcmp(method, "POST"), is_get = !strcmp(method, "GET");
    snprintf(rc->route, sizeof rc->route, "local");
    /* a browser's request from a page not allowed: refused before it has any effect (a CORS
     * "simple" POST reaches the server without a preflight; only its answer would be hidden) */
    if (rc->origin == ORIGIN_REFUSED)
        return send_forbidden(c, rc, dialect, "this origin is not allowed (loopback pages and "
                                              "[server] cors_origins are)");
    if (rc->host_refused)
        return send_forbidden(c, rc, dialect, "the Host header does not name a loopback address, "
                                              "and this daemon listens only on one");
    if (!strcmp(method, "OPTIONS")) return send_buf(c, rc, 204, "text/plain", "", 0); /* CORS */
    if (strcmp(url, "/health") != 0 && !authorized(s, c))
        return send_errorf(c, rc, dialect, CONV_ERR_AUTH, NULL, "invalid or missing API key");
    if (!strcmp(url, "/v1/chat/completions") || !strcmp(url, "/v1/completions") ||
        !strcmp(url, "/v1/messages") || !strcmp(url, "/v1/messages/count_tokens")) {
        if (!is_post)
            return send_errorf(c, rc, dialect, CONV_ERR_INVALID, NULL, "%s takes POST, not %s", url, method);
        return route_generate(s, c, rc, url);
    }
    if (!strcmp(url, "/health") || !strcmp(url, "/v1/models") || !strcmp(url, "/v1/status") ||
        !strcmp(url, "/metrics")) {
        if (!is_get && strcmp(method, "HEAD") != 0)
            return send_errorf(c, rc, dialect, CONV_ERR_INVALID, NULL, "%s takes GET, not %s", url, method);
        return route_get(s, c, rc, url);
    }
    if (!strncmp(url, "/v1/session/", 12)) return route_session(s, c, rc, method, url + 12);
    if (!strncmp(url, "/v1/training/", 13)) return route_training(s, c, rc, method, url);
    if (!strncmp(url, "/v1/adapters", 12)) return route_adapters(s, c, rc, method, url);
    if (!strcmp(url, "/v1/feedback")) {
        if (!is_post) return send_errorf(c, rc, dialect, CONV_ERR_INVALID, NULL, "/v1/feedback takes POST");
        return route_feedback(s, c, rc);
    }
    return send_errorf(c, rc, dialect, CONV_ERR_NOT_FOUND, NULL, "no route for %s %s", method, url);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
    srv *s = cls;
    (void)c;
    (void)toe;
    req_ctx *rc = *con_cls;
    if (!rc) return;
    metrics_request(s->met, rc->endpoint, rc->status ? rc->status : 499);
    free(rc->body);
    free(rc);
    *con_cls = NULL;
}

/* Binds the listening socket ourselves, so "address in use" can be told apart and named. */
static int is_loopback(const struct sockaddr *sa) {
    if (sa->sa_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_LOOPBACK(a)) return 1;
        if (IN6_IS_ADDR_V4MAPPED(a)) return a->s6_addr[12] == 127;
    }
    return 0;
}

/* require_loopback: refuse (SH_EINVAL) unless the resolved address is a loopback one, so a
 * name that merely looks local cannot expose an unauthenticated daemon. *loopback_out: whether
 * it is one. */
static int listen_on(const char *host, int port, int require_loopback, int *fd_out,
                     int *loopback_out) {
    char portstr[16];
    snprintf(portstr, sizeof portstr, "%d", port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    struct addrinfo *ai = NULL;
    int rc = getaddrinfo(host, portstr, &hints, &ai);
    if (rc != 0) return sh_error_set(SH_EINVAL, "cannot resolve bind address '%s': %s", host, gai_strerror(rc));
    *loopback_out = is_loopback(ai->ai_addr);
    if (require_loopback && !*loopback_out) {
        freeaddrinfo(ai);
        return sh_error_set(SH_EINVAL, "refusing to listen on %s without API keys: anyone who can "
                                       "reach it could use it. Set [server] api_keys (or "
                                       "api_keys_file) in config.toml, or pass --insecure-no-auth",
                            host);
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1, st = SH_OK;
    if (fd < 0) {
        st = sh_error_set(SH_EIO, "socket: %s", strerror(errno));
    } else {
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
            if (errno == EADDRINUSE)
                st = sh_error_set(SH_EFULL, "%s:%d is already in use (another shammah daemon, or "
                                            "Ollama, which listens on 11434 by default?)", host, port);
            else
                st = sh_error_set(SH_EIO, "cannot bind %s:%d: %s", host, port, strerror(errno));
        } else if (listen(fd, 128) != 0) {
            st = sh_error_set(SH_EIO, "listen: %s", strerror(errno));
        }
    }
    freeaddrinfo(ai);
    if (st && fd >= 0) close(fd);
    if (!st) *fd_out = fd;
    return st;
}

/* An adapter save killed mid-write leaves its temporary file (gguf_writer_write writes
 * NAME.gguf.tmp.PID, then renames): never listed nor activatable (not NAME.gguf), so only
 * space is lost; removed here once the process that wrote it is gone. */
static void adapters_sweep(const char *home) {
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/adapters", home);
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *t = strstr(e->d_name, ".gguf.tmp.");
        if (!t || e->d_name[0] == '.') continue;
        const char *digits = t + 10;
        size_t nd = strlen(digits);
        if (nd == 0 || nd > 9 || strspn(digits, "0123456789") != nd) continue;
        pid_t writer = (pid_t)strtol(digits, NULL, 10);
        if (writer <= 0 || kill(writer, 0) == 0 || errno != ESRCH) continue; /* alive, or unknown */
        if (unlinkat(dirfd(d), e->d_name, 0) == 0)
            fprintf(stderr, "shammah daemon: removed %s/%s, left by an interrupted adapter save\n",
                    dir, e->d_name);
    }
    closedir(d);
}

int server_run(const server_opts *o) {
    srv *s = calloc(1, sizeof *s);
    if (!s) return 1;
    s->o = *o;
    s->started = time(NULL);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->x_cv, NULL);
    int rc = 1, fd = -1;
    pidfile pf = {.fd = -1};
    if (metrics_new(&s->met)) goto out;

    /* signals are taken synchronously by this thread: block them before any thread starts */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    /* a file size limit (ulimit -f) must make a write fail (EFBIG, reported), not kill us */
    signal(SIGXFSZ, SIG_IGN);

    if (listen_on(o->bind_host, o->bind_port, o->n_api_keys == 0 && !o->insecure_no_auth, &fd,
                  &s->loopback_only)) {
        fprintf(stderr, "shammah daemon: %s\n", sh_error_last());
        goto out;
    }
    for (int i = 0; i < o->n_cors_origins; i++)
        if (!strcmp(o->cors_origins[i], "*") && o->n_api_keys == 0)
            fprintf(stderr, "shammah daemon: warning: [server] cors_origins = [\"*\"] without "
                            "api_keys: any web page you visit can use this daemon\n");
    char pid_path[4096];
    snprintf(pid_path, sizeof pid_path, "%s/daemon.pid", o->home);
    pid_t other = 0;
    if (pidfile_acquire(&pf, pid_path, &other)) {
        fprintf(stderr, "shammah daemon: %s\n", sh_error_last());
        goto out;
    }
    adapters_sweep(o->home); /* after the PID file: no other daemon is saving one */
    char db_path[4096];
    snprintf(db_path, sizeof db_path, "%s/shammah.db", o->home);
    if (sessions_open(&s->sess, db_path, o->max_sessions > 0 ? o->max_sessions : 100,
                      o->session_idle_minutes > 0 ? o->session_idle_minutes : 60)) {
        fprintf(stderr, "shammah daemon: %s: %s\n", db_path, sh_error_last());
        goto out;
    }
    sessions_purge(s->sess);
    pthread_mutex_init(&s->tr_mu, NULL);
    pthread_cond_init(&s->tr_cv, NULL);
    if (pthread_create(&s->tr_th, NULL, train_main, s) == 0) s->tr_started = 1;
    if (feedback_open(&s->fb, db_path)) {
        fprintf(stderr, "shammah daemon: %s\n", sh_error_last());
        goto out;
    }
    if (teacher_global_init() || router_open(&s->rt, o->teachers, o->n_teachers, db_path, NULL)) {
        fprintf(stderr, "shammah daemon: router: %s\n", sh_error_last());
        goto out;
    }
    if (o->n_teachers)
        fprintf(stderr, "shammah daemon: %d teacher(s) configured, first '%s'\n", o->n_teachers,
                o->teachers[0].name);
    if (o->model_path && *o->model_path && !realpath(o->model_path, s->default_real))
        snprintf(s->default_real, sizeof s->default_real, "%s", o->model_path);
    if (o->model_path && *o->model_path && !o->backend_disabled) {
        const char *base = strrchr(o->model_path, '/');
        snprintf(s->model_name, sizeof s->model_name, "%s", base ? base + 1 : o->model_path);
        char *dot = strstr(s->model_name, ".gguf");
        if (dot && dot[5] == 0) *dot = 0;
        s->state = MODEL_LOADING;
        if (pthread_create(&s->loader, NULL, load_model, s) == 0) s->loader_started = 1;
    } else {
        snprintf(s->model_name, sizeof s->model_name, "none");
        s->state = MODEL_NONE;
    }
    s->mhd = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION,
                              0, NULL, NULL, on_request, s, MHD_OPTION_LISTEN_SOCKET, fd,
                              MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
                              MHD_OPTION_CONNECTION_LIMIT, (unsigned)SRV_MAX_CONNECTIONS,
                              /* idle connections go after 2 minutes (streams send a
                                 keep-alive every 10 s) */
                              MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)120,
                              /* request line + headers of one request (431/413 beyond) */
                              MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(64 * 1024),
                              MHD_OPTION_END);
    if (!s->mhd) {
        fprintf(stderr, "shammah daemon: cannot start the HTTP server\n");
        goto out;
    }
    fd = -1; /* MHD owns it now */
    fprintf(stderr, "shammah daemon: listening on http://%s:%d (pid %d, home %s)\n", o->bind_host,
            o->bind_port, (int)getpid(), o->home);

    /* wait for a signal; meanwhile unload idle on-demand models (each second) and expire idle
     * sessions (each minute) */
    int sig = 0;
    for (int tick = 1;; tick++) {
        struct timespec ts = {1, 0};
        sig = sigtimedwait(&sigs, NULL, &ts);
        if (sig == SIGINT || sig == SIGTERM) break;
        slots_expire(s);
        if (tick % 60) continue;
        sessions_purge(s->sess);
        maybe_train(s, 1);
    }
    fprintf(stderr, "shammah daemon: %s received, shutting down\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
    MHD_quiesce_daemon(s->mhd); /* no new connections */
    if (s->loader_started) pthread_join(s->loader, NULL);
    s->loader_started = 0;
    if (s->tr_started) { /* a training run is cancelled; its examples stay pending */
        pthread_mutex_lock(&s->tr_mu);
        s->tr_stop = 1;
        pthread_cond_signal(&s->tr_cv);
        pthread_mutex_unlock(&s->tr_mu);
        pthread_join(s->tr_th, NULL);
        s->tr_started = 0;
    }
    if (s->sc) sched_stop(s->sc); /* in-flight streams get their final event */
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < SRV_MAX_SLOTS; i++)
        if (s->slots[i] && s->slots[i]->sc) sched_stop(s->slots[i]->sc);
    pthread_mutex_unlock(&s->mu);
    /* let the connection threads write those final events before the sockets are closed
     * (bounded: SIGTERM must end the process within 5 s) */
    for (int i = 0; i < 300 && metrics_active_streams(s->met) > 0; i++) {
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
    }
    MHD_stop_daemon(s->mhd); /* waits for the connection threads */
    s->mhd = NULL;
    rc = 0;
out:
    if (s->tr_started) {
        pthread_mutex_lock(&s->tr_mu);
        s->tr_stop = 1;
        pthread_cond_signal(&s->tr_cv);
        pthread_mutex_unlock(&s->tr_mu);
        pthread_join(s->tr_th, NULL);
    }
    if (s->loader_started) pthread_join(s->loader, NULL);
    if (s->mhd) MHD_stop_daemon(s->mhd);
    if (fd >= 0) close(fd);
    sched_free(s->sc);
    for (int i = 0; i < SRV_MAX_SLOTS; i++) slot_free(s->slots[i]);
    lora_free(s->ad_active);
    lora_free(s->ad_prev);
    tok_free(s->t);
    model_free(s->m);
    metrics_free(s->met);
    sessions_close(s->sess);
    router_close(s->rt);
    feedback_close(s->fb);
    pidfile_release(&pf);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->x_cv);
    free(s);
    if (rc == 0) fprintf(stderr, "shammah daemon: stopped\n");
    return rc;
}
