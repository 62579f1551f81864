/* teacher.c - see teacher.h.
 *
 * Each attempt runs its easy handle in a private multi handle, so the loop that drives the
 * transfer can wake every TEACHER_TICK_MS to check the first-byte and idle deadlines and the
 * cancel hook (curl's own progress callback slows to one call a second when nothing moves).
 * Bytes go straight from curl's write callback into the dialect decoder, whose events go
 * through relay() to the caller: nothing is buffered beyond the decoder's partial line. */
#include "router/teacher.h"

#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "base/status.h"
#include "proto/anthropic.h"
#include "proto/openai.h"

#define TEACHER_TICK_MS 20
#define TEACHER_UA "shammah/0.1"
#define ANTHROPIC_URL "https://api.anthropic.com"
#define OPENAI_URL "https://api.openai.com/v1"
#define ANTHROPIC_VERSION "2023-06-01"

/* ---- process-wide curl state ---- */

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static int g_init_rc = SH_OK;
static CURLSH *g_share;
static pthread_mutex_t g_locks[CURL_LOCK_DATA_LAST];

static void share_lock(CURL *h, curl_lock_data d, curl_lock_access a, void *u) {
    (void)h, (void)a, (void)u;
    pthread_mutex_lock(&g_locks[d]);
}

static void share_unlock(CURL *h, curl_lock_data d, void *u) {
    (void)h, (void)u;
    pthread_mutex_unlock(&g_locks[d]);
}

static void global_init_once(void) {
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        g_init_rc = SH_EIO;
        return;
    }
    for (int i = 0; i < CURL_LOCK_DATA_LAST; i++) pthread_mutex_init(&g_locks[i], NULL);
    /* sharing is an optimisation (no new TLS handshake per request): without it calls still work */
    g_share = curl_share_init();
    if (g_share) {
        curl_share_setopt(g_share, CURLSHOPT_LOCKFUNC, share_lock);
        curl_share_setopt(g_share, CURLSHOPT_UNLOCKFUNC, share_unlock);
        curl_share_setopt(g_share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
        curl_share_setopt(g_share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
        curl_share_setopt(g_share, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT);
    }
}

int teacher_global_init(void) {
    pthread_once(&g_once, global_init_once);
    return g_init_rc == SH_OK ? SH_OK
                              : sh_error_set(SH_EIO, "teacher: libcurl initialisation failed");
}

void teacher_global_cleanup(void) {
    if (g_share) curl_share_cleanup(g_share);
    g_share = NULL;
}

void teacher_opts_default(teacher_opts *o) {
    memset(o, 0, sizeof *o);
    o->connect_timeout_ms = 10000;
    o->first_byte_timeout_ms = 30000;
    o->idle_timeout_ms = 60000;
    o->backoff_base_ms = 500;
    o->backoff_max_ms = 8000;
    o->max_retry_wait_ms = 30000;
}

int teacher_result_status(const teacher_result *res) {
    return conv_error_status(res->error_kind);
}

/* ---- small helpers ---- */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void sleep_ms(int ms) {
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static uint32_t jitter_rand(void) {
    static _Thread_local uint64_t x;
    if (!x) x = ((uint64_t)time(NULL) << 20) ^ (uint64_t)(uintptr_t)&x ^ 0x9E3779B97F4A7C15ull;
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    return (uint32_t)(x >> 32);
}

/* Copies s into out (cap bytes) with control characters turned into spaces: upstream text goes
 * into one-line messages and logs. */
static void clean_copy(char *out, size_t cap, const char *s, size_t n) {
    size_t j = 0;
    for (size_t i = 0; i < n && j + 1 < cap; i++)
        out[j++] = (unsigned char)s[i] < 0x20 ? ' ' : s[i];
    out[j] = 0;
}

static const char *or_default(const char *s, const char *d) {
    return s && *s ? s : d;
}

/* ---- one attempt ---- */

enum { TO_NONE, TO_FIRST_BYTE, TO_IDLE };

typedef struct {
    const sh_config_teacher *t;
    const teacher_opts *o;
    conv_event_fn fn;
    void *user;
    int anthropic;
    CURL *h;
    char curl_err[CURL_ERROR_SIZE];
    /* the answer */
    int classified, ok, stream;
    long status;
    anthropic_dec *adec;
    openai_dec *odec;
    conv_buf errbody;
    int dec_rc; /* the decoder failed (malformed stream) */
    char dec_msg[256];
    /* the relay */
    int have_start;
    conv_usage start_usage;
    int delivered; /* events passed to fn in this attempt */
    int stopped, canceled;
    int ev_failed; /* the answer carried an ERROR event */
    conv_error_kind ev_kind;
    char ev_msg[512]; /* "teacher NAME: message", as fn sees it */
    char ev_raw[400]; /* the message alone */
    conv_usage usage;
    /* timing */
    double t0, last_byte;
    int got_byte, timeout;
    double retry_after; /* seconds, < 0 when none */
} attempt;

static int deliver(attempt *a, const conv_event *ev) {
    a->delivered++;
    int rc = a->fn(a->user, ev);
    if (rc) a->canceled = 1;
    return rc;
}

/* The decoder's events on their way to fn (see the event contract in teacher.h). */
static int relay(void *u, const conv_event *ev) {
    attempt *a = u;
    if (a->canceled) return SH_ECANCELED;
    if (ev->kind == CONV_EV_START) {
        a->have_start = 1;
        a->start_usage = ev->usage;
        return 0;
    }
    if (ev->kind == CONV_EV_ERROR) {
        a->ev_failed = 1;
        a->ev_kind = ev->error_kind;
        clean_copy(a->ev_raw, sizeof a->ev_raw, ev->text ? ev->text : "", ev->text ? ev->len : 0);
        snprintf(a->ev_msg, sizeof a->ev_msg, "teacher %.100s: %s", a->t->name, a->ev_raw);
        if (!a->delivered) return 0;
        conv_event e = *ev;
        e.text = a->ev_msg;
        e.len = strlen(a->ev_msg);
        return deliver(a, &e);
    }
    if (!a->delivered) {
        conv_event st = {.kind = CONV_EV_START, .usage = a->start_usage};
        int rc = deliver(a, &st);
        if (rc) return rc;
    }
    if (ev->kind == CONV_EV_STOP) {
        a->stopped = 1;
        a->usage = ev->usage;
    }
    return deliver(a, ev);
}

static int dec_feed(attempt *a, const char *p, size_t n) {
    return a->anthropic ? anthropic_dec_feed(a->adec, p, n, relay, a)
                        : openai_dec_feed(a->odec, p, n, relay, a);
}

static int dec_finish(attempt *a) {
    return a->anthropic ? anthropic_dec_finish(a->adec, relay, a)
                        : openai_dec_finish(a->odec, relay, a);
}

/* Decides, at the first body byte (or at the end for an empty body), how to read the answer. */
static int classify(attempt *a) {
    a->classified = 1;
    curl_easy_getinfo(a->h, CURLINFO_RESPONSE_CODE, &a->status);
    a->ok = a->status >= 200 && a->status < 300;
    if (!a->ok) return SH_OK;
    char *ct = NULL;
    curl_easy_getinfo(a->h, CURLINFO_CONTENT_TYPE, &ct);
    /* we always ask for a stream, but some compatible servers answer one JSON body anyway */
    a->stream = !ct || strstr(ct, "event-stream") != NULL;
    if (a->anthropic)
        a->adec = anthropic_dec_new(a->stream);
    else
        a->odec = openai_dec_new(a->stream);
    return a->adec || a->odec ? SH_OK : SH_ENOMEM;
}

static void note_dec_failure(attempt *a, int rc) {
    if (a->canceled || a->dec_rc) return;
    a->dec_rc = rc;
    snprintf(a->dec_msg, sizeof a->dec_msg, "%s", sh_error_last());
}

static size_t on_body(char *p, size_t size, size_t n, void *u) {
    attempt *a = u;
    size_t len = size * n;
    a->got_byte = 1;
    a->last_byte = now_s();
    if (a->canceled || a->dec_rc) return 0;
    if (!a->classified && classify(a) != SH_OK) {
        note_dec_failure(a, sh_error_set(SH_ENOMEM, "out of memory"));
        return 0;
    }
    if (!a->ok) {
        /* an error body only matters for its message: keep the start, drop the rest */
        size_t room = a->errbody.max - a->errbody.len;
        if (room) conv_buf_append(&a->errbody, p, len < room ? len : room);
        return len;
    }
    int rc = dec_feed(a, p, len);
    a->last_byte = now_s(); /* fn may block (backpressure): that is not the teacher stalling */
    if (rc) {
        note_dec_failure(a, rc);
        return 0; /* aborts the transfer */
    }
    return len;
}

static size_t on_header(char *p, size_t size, size_t n, void *u) {
    attempt *a = u;
    size_t len = size * n;
    a->got_byte = 1;
    a->last_byte = now_s();
    if (len >= 5 && !memcmp(p, "HTTP/", 5)) {
        a->retry_after = -1; /* a new response (after a 100 Continue, say) */
        return len;
    }
    char line[128];
    clean_copy(line, sizeof line, p, len);
    int ms = 0;
    const char *v = NULL;
    if (!strncasecmp(line, "retry-after-ms:", 15))
        ms = 1, v = line + 15;
    else if (!strncasecmp(line, "retry-after:", 12))
        v = line + 12;
    if (v) {
        char *end;
        double x = strtod(v, &end);
        /* only the delta-seconds form: an HTTP-date means "later", handled as no hint */
        if (end != v && x >= 0 && x < 1e7) a->retry_after = ms ? x / 1000 : x;
    }
    return len;
}

static int xfer_progress(void *u, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un) {
    (void)dt, (void)dn, (void)ut, (void)un;
    attempt *a = u;
    return a->canceled; /* curl also checks here while blocked in a long transfer step */
}

static int poll_cancel(attempt *a) {
    if (!a->canceled && a->o->canceled && a->o->canceled(a->o->cancel_user)) a->canceled = 1;
    return a->canceled;
}

/* Runs the transfer until done, cancelled or a deadline; *cc is curl's result. */
static void run_transfer(attempt *a, CURLcode *cc) {
    CURLM *m = curl_multi_init();
    *cc = CURLE_OUT_OF_MEMORY;
    if (!m) return;
    if (curl_multi_add_handle(m, a->h) != CURLM_OK) {
        curl_multi_cleanup(m);
        return;
    }
    int running = 1, done = 0;
    while (running) {
        if (curl_multi_perform(m, &running) != CURLM_OK) break;
        if (!running || poll_cancel(a)) break;
        double now = now_s();
        if (!a->got_byte && (now - a->t0) * 1000 > a->o->first_byte_timeout_ms) {
            a->timeout = TO_FIRST_BYTE;
            break;
        }
        if (a->got_byte && (now - a->last_byte) * 1000 > a->o->idle_timeout_ms) {
            a->timeout = TO_IDLE;
            break;
        }
        curl_multi_poll(m, NULL, 0, TEACHER_TICK_MS, NULL);
    }
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(m, &left)))
        if (msg->msg == CURLMSG_DONE && msg->easy_handle == a->h) {
            *cc = msg->data.result;
            done = 1;
        }
    if (!done) *cc = CURLE_ABORTED_BY_CALLBACK;
    curl_multi_remove_handle(m, a->h);
    curl_multi_cleanup(m);
}

/* ---- the outcome of an attempt ---- */

typedef struct {
    int retryable;
    conv_error_kind kind;
    char msg[600];
} failure;

static int retryable_status(long s) {
    return s == 408 || s == 409 || s == 429 || s >= 500;
}

static int retryable_curl(CURLcode cc) {
    switch (cc) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        return 1;
    default:
        return 0;
    }
}

/* A non-2xx body's message: {"error":{"type","message"}} (both providers), {"error":"..."},
 * {"message":"..."} or {"detail":"..."} (compatible servers), else the start of the text. */
static void error_body_message(const attempt *a, char *out, size_t cap) {
    const char *body = a->errbody.p ? a->errbody.p : "";
    json_t *j = json_loadb(body, a->errbody.len, 0, NULL);
    const char *msg = NULL, *type = NULL;
    if (json_is_object(j)) {
        json_t *e = json_object_get(j, "error");
        if (json_is_object(e)) {
            msg = json_string_value(json_object_get(e, "message"));
            type = json_string_value(json_object_get(e, "type"));
            if (!type) type = json_string_value(json_object_get(e, "code"));
        } else if (json_is_string(e)) {
            msg = json_string_value(e);
        }
        if (!msg) msg = json_string_value(json_object_get(j, "message"));
        if (!msg) msg = json_string_value(json_object_get(j, "detail"));
    }
    char m[400];
    if (msg)
        clean_copy(m, sizeof m, msg, strlen(msg));
    else
        clean_copy(m, 200, body, a->errbody.len);
    snprintf(out, cap, "HTTP %ld%s%s%s%s", a->status, type ? " " : "", type ? type : "",
             *m ? ": " : "", m);
    json_decref(j);
}

/* What went wrong with an attempt that delivered nothing. */
static void describe_failure(attempt *a, CURLcode cc, int had_key, failure *f) {
    memset(f, 0, sizeof *f);
    f->kind = CONV_ERR_UPSTREAM;
    if (a->timeout == TO_FIRST_BYTE) {
        f->kind = CONV_ERR_UNAVAILABLE;
        snprintf(f->msg, sizeof f->msg, "no response within %d ms", a->o->first_byte_timeout_ms);
    } else if (a->timeout == TO_IDLE) {
        f->kind = CONV_ERR_UNAVAILABLE;
        snprintf(f->msg, sizeof f->msg, "the answer stalled for %d ms", a->o->idle_timeout_ms);
    } else if (a->classified && !a->ok) {
        f->kind = conv_error_kind_from_status((int)a->status);
        f->retryable = retryable_status(a->status);
        error_body_message(a, f->msg, sizeof f->msg);
        if (a->status == 401 && !had_key) {
            const char *env = or_default(a->t->api_key_env,
                                         a->anthropic ? "ANTHROPIC_API_KEY" : "OPENAI_API_KEY");
            size_t l = strlen(f->msg);
            snprintf(f->msg + l, sizeof f->msg - l, " (no API key: set %s or api_key)", env);
        }
    } else if (a->dec_rc) {
        snprintf(f->msg, sizeof f->msg, "malformed answer: %s", a->dec_msg);
    } else if (a->ev_failed) {
        f->kind = a->ev_kind;
        f->retryable = a->ev_kind == CONV_ERR_RATE || a->ev_kind == CONV_ERR_INTERNAL ||
                       a->ev_kind == CONV_ERR_UNAVAILABLE || a->ev_kind == CONV_ERR_OVERLOADED ||
                       a->ev_kind == CONV_ERR_UPSTREAM;
        snprintf(f->msg, sizeof f->msg, "%s", a->ev_raw);
    } else if (cc != CURLE_OK) {
        f->retryable = retryable_curl(cc);
        if (f->retryable) f->kind = CONV_ERR_UNAVAILABLE;
        snprintf(f->msg, sizeof f->msg, "%s",
                 a->curl_err[0] ? a->curl_err : curl_easy_strerror(cc));
    } else {
        snprintf(f->msg, sizeof f->msg, "empty answer");
    }
}

/* ---- building the request ---- */

typedef struct {
    char *body;
    char url[1100];
    struct curl_slist *headers;
    int had_key;
} http_req;

static int has_path(const char *url) {
    const char *p = strstr(url, "://");
    p = p ? p + 3 : url;
    return strchr(p, '/') != NULL;
}

static int build_request(const sh_config_teacher *t, int anthropic, const conv_request *req,
                         http_req *hr) {
    char base[1024];
    snprintf(base, sizeof base, "%s",
             or_default(t->base_url, anthropic ? ANTHROPIC_URL : OPENAI_URL));
    size_t bl = strlen(base);
    while (bl && base[bl - 1] == '/') base[--bl] = 0;
    int v1 = bl >= 3 && !strcmp(base + bl - 3, "/v1");
    if (anthropic) {
        if (req->api == CONV_API_COMPLETION)
            return sh_error_set(SH_EUNSUPPORTED,
                                "an anthropic teacher cannot serve raw completions");
        snprintf(hr->url, sizeof hr->url, "%s%s", base, v1 ? "/messages" : "/v1/messages");
        hr->body = anthropic_encode_request(req, t->model, 1);
    } else {
        const char *path = req->api == CONV_API_COMPLETION ? "/completions" : "/chat/completions";
        /* the SDK convention is a base_url ending in /v1; a bare host gets it added */
        snprintf(hr->url, sizeof hr->url, "%s%s%s", base, has_path(base) ? "" : "/v1", path);
        unsigned flags = strstr(base, "://api.openai.com") ? OPENAI_REQ_MAX_COMPLETION_TOKENS : 0;
        hr->body = openai_encode_request_ex(req, t->model, 1, flags);
    }
    if (!hr->body) return sh_error_set(SH_ENOMEM, "teacher %s: cannot encode the request", t->name);
    const char *key = t->api_key && *t->api_key ? t->api_key : NULL;
    if (!key)
        key =
            getenv(or_default(t->api_key_env, anthropic ? "ANTHROPIC_API_KEY" : "OPENAI_API_KEY"));
    hr->had_key = key && *key;
    char h[4200];
    struct curl_slist *l = NULL, *n;
#define ADD(s)                                                                                     \
    do {                                                                                           \
        if (!(n = curl_slist_append(l, (s)))) goto nomem;                                          \
        l = n;                                                                                     \
    } while (0)
    ADD("Content-Type: application/json");
    ADD("Accept: text/event-stream");
    ADD("Expect:"); /* no 100-continue round trip before large bodies */
    if (anthropic) ADD("anthropic-version: " ANTHROPIC_VERSION);
    if (hr->had_key) {
        if (strlen(key) > 4000 || strpbrk(key, "\r\n")) {
            curl_slist_free_all(l);
            return sh_error_set(SH_EINVAL, "teacher %s: the API key is malformed", t->name);
        }
        snprintf(h, sizeof h, anthropic ? "x-api-key: %s" : "Authorization: Bearer %s", key);
        ADD(h);
    }
#undef ADD
    hr->headers = l;
    return SH_OK;
nomem:
    curl_slist_free_all(l);
    return sh_error_set(SH_ENOMEM, "teacher %s: out of memory", t->name);
}

static void http_req_free(http_req *hr) {
    free(hr->body);
    curl_slist_free_all(hr->headers);
    memset(hr, 0, sizeof *hr);
}

/* ---- one teacher ---- */

static void result_reset_attempt(attempt *a) {
    anthropic_dec_free(a->adec);
    openai_dec_free(a->odec);
    conv_buf_free(&a->errbody);
    const sh_config_teacher *t = a->t;
    const teacher_opts *o = a->o;
    conv_event_fn fn = a->fn;
    void *user = a->user;
    int anthropic = a->anthropic;
    CURL *h = a->h;
    memset(a, 0, sizeof *a);
    a->t = t, a->o = o, a->fn = fn, a->user = user, a->anthropic = anthropic, a->h = h;
    a->retry_after = -1;
    conv_buf_init(&a->errbody, TEACHER_ERROR_BODY);
}

/* Waits ms, waking to check the cancel hook. Returns 1 when cancelled. */
static int wait_ms(const teacher_opts *o, int ms) {
    double end = now_s() + ms / 1000.0;
    for (;;) {
        if (o->canceled && o->canceled(o->cancel_user)) return 1;
        double left = (end - now_s()) * 1000;
        if (left <= 0) return 0;
        sleep_ms(left < TEACHER_TICK_MS ? (int)left + 1 : TEACHER_TICK_MS);
    }
}

static int clamp_ms(int v, int dflt) {
    return v > 0 ? v : dflt;
}

/* One teacher, retries included. On failure res->error holds "NAME: reason" and
 * res->error_kind the teacher's own kind. */
static int generate_one(const sh_config_teacher *t, const conv_request *req,
                        const teacher_opts *opts, conv_event_fn fn, void *user,
                        teacher_result *res) {
    teacher_opts o;
    teacher_opts_default(&o);
    if (opts) {
        o.connect_timeout_ms = clamp_ms(opts->connect_timeout_ms, o.connect_timeout_ms);
        o.first_byte_timeout_ms = clamp_ms(opts->first_byte_timeout_ms, o.first_byte_timeout_ms);
        o.idle_timeout_ms = clamp_ms(opts->idle_timeout_ms, o.idle_timeout_ms);
        o.backoff_base_ms = clamp_ms(opts->backoff_base_ms, o.backoff_base_ms);
        o.backoff_max_ms = clamp_ms(opts->backoff_max_ms, o.backoff_max_ms);
        o.max_retry_wait_ms = clamp_ms(opts->max_retry_wait_ms, o.max_retry_wait_ms);
        o.canceled = opts->canceled;
        o.cancel_user = opts->cancel_user;
    }
    const char *name = or_default(t->name, or_default(t->model, "?"));
    snprintf(res->teacher, sizeof res->teacher, "%s", name);
    res->error[0] = 0;
    int st = teacher_global_init();
    if (st) return st;
    if (!t->provider || (strcmp(t->provider, "anthropic") && strcmp(t->provider, "openai")) ||
        !t->model || !*t->model) {
        res->error_kind = CONV_ERR_UPSTREAM;
        snprintf(res->error, sizeof res->error,
                 "%s: bad teacher entry (provider and model are required)", name);
        return sh_error_set(SH_EINVAL, "%s", res->error);
    }
    sh_config_teacher tn = *t;
    tn.name = name;
    int anthropic = !strcmp(t->provider, "anthropic");
    http_req hr;
    memset(&hr, 0, sizeof hr);
    attempt a;
    memset(&a, 0, sizeof a);
    a.t = &tn, a.o = &o, a.fn = fn, a.user = user, a.anthropic = anthropic;
    conv_buf_init(&a.errbody, TEACHER_ERROR_BODY);
    if ((st = build_request(&tn, anthropic, req, &hr))) {
        res->error_kind = st == SH_EUNSUPPORTED ? CONV_ERR_INVALID : CONV_ERR_UPSTREAM;
        snprintf(res->error, sizeof res->error, "%s: %s", name, sh_error_last());
        goto out;
    }
    if (!(a.h = curl_easy_init())) {
        st = sh_error_set(SH_ENOMEM, "teacher %s: cannot create a curl handle", name);
        goto out;
    }
    curl_easy_setopt(a.h, CURLOPT_URL, hr.url);
    curl_easy_setopt(a.h, CURLOPT_POSTFIELDS, hr.body);
    curl_easy_setopt(a.h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(hr.body));
    curl_easy_setopt(a.h, CURLOPT_HTTPHEADER, hr.headers);
    curl_easy_setopt(a.h, CURLOPT_USERAGENT, TEACHER_UA);
    curl_easy_setopt(a.h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(a.h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(a.h, CURLOPT_CONNECTTIMEOUT_MS, (long)o.connect_timeout_ms);
    curl_easy_setopt(a.h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(a.h, CURLOPT_WRITEDATA, &a);
    curl_easy_setopt(a.h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(a.h, CURLOPT_HEADERDATA, &a);
    curl_easy_setopt(a.h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(a.h, CURLOPT_XFERINFOFUNCTION, xfer_progress);
    curl_easy_setopt(a.h, CURLOPT_XFERINFODATA, &a);
    curl_easy_setopt(a.h, CURLOPT_ERRORBUFFER, a.curl_err);
    if (g_share) curl_easy_setopt(a.h, CURLOPT_SHARE, g_share);

    int timeout_s = t->timeout_seconds > 0 ? t->timeout_seconds : 60;
    double deadline = now_s() + timeout_s;
    int max_retries = t->max_retries >= 0 ? t->max_retries : 0;
    failure f;
    memset(&f, 0, sizeof f);
    char why[700] = "";
    for (int n = 0;; n++) {
        result_reset_attempt(&a);
        a.t0 = now_s();
        double left_ms = (deadline - a.t0) * 1000;
        if (left_ms < 1) {
            snprintf(why, sizeof why, "%s", n ? f.msg : "no time left");
            res->error_kind = n ? f.kind : CONV_ERR_UNAVAILABLE;
            break;
        }
        curl_easy_setopt(a.h, CURLOPT_TIMEOUT_MS, (long)left_ms);
        res->attempts++;
        CURLcode cc;
        run_transfer(&a, &cc);
        if (!a.canceled && !a.dec_rc && !a.timeout && cc == CURLE_OK) {
            if (!a.classified) {
                if (classify(&a) != SH_OK) note_dec_failure(&a, SH_ENOMEM);
            }
            if (a.ok && !a.dec_rc) {
                int rc = dec_finish(&a);
                if (rc) note_dec_failure(&a, rc);
            }
        }
        res->events += a.delivered;
        res->http_status = a.classified ? (int)a.status : 0;
        if (a.retry_after >= 0) res->retry_after = (int)(a.retry_after + 0.999);
        if (a.canceled) {
            st = sh_error_set(SH_ECANCELED, "teacher %s: canceled", name);
            snprintf(res->error, sizeof res->error, "%s: canceled", name);
            res->error_kind = CONV_ERR_UPSTREAM;
            goto out;
        }
        if (a.stopped) {
            res->usage = a.usage;
            st = SH_OK;
            goto out;
        }
        if (a.delivered) {
            /* broken midway: fn must see the answer end, and it cannot be replayed */
            if (!a.ev_failed) {
                const char *m = a.dec_rc        ? a.dec_msg
                                : a.timeout     ? "the answer stalled"
                                : a.curl_err[0] ? a.curl_err
                                                : curl_easy_strerror(cc);
                snprintf(a.ev_msg, sizeof a.ev_msg, "teacher %s: connection lost mid-answer: %s",
                         name, m);
                a.ev_kind = CONV_ERR_UPSTREAM;
                conv_event e = {.kind = CONV_EV_ERROR,
                                .text = a.ev_msg,
                                .len = strlen(a.ev_msg),
                                .error_kind = a.ev_kind};
                res->events++;
                if (fn(user, &e)) {
                    st = sh_error_set(SH_ECANCELED, "teacher %s: canceled", name);
                    goto out;
                }
            }
            res->error_kind = a.ev_kind;
            snprintf(res->error, sizeof res->error, "%s", a.ev_msg);
            st = sh_error_set(SH_EIO, "%s", res->error);
            goto out;
        }
        describe_failure(&a, cc, hr.had_key, &f);
        res->error_kind = f.kind;
        snprintf(why, sizeof why, "%s", f.msg);
        if (!f.retryable || n >= max_retries) break;
        int wait;
        if (a.retry_after >= 0) {
            if (a.retry_after * 1000 > o.max_retry_wait_ms) {
                snprintf(why, sizeof why, "%s (retry-after %.0f s is too long)", f.msg,
                         a.retry_after);
                break;
            }
            wait = (int)(a.retry_after * 1000);
        } else {
            double b = (double)o.backoff_base_ms * (double)(1u << (n < 20 ? n : 20));
            if (b > o.backoff_max_ms) b = o.backoff_max_ms;
            wait = (int)b + (int)(jitter_rand() % (uint32_t)(b / 4 + 1));
        }
        if (now_s() + wait / 1000.0 >= deadline) {
            snprintf(why, sizeof why, "%s (no time left for a retry)", f.msg);
            break;
        }
        if (wait_ms(&o, wait)) {
            st = sh_error_set(SH_ECANCELED, "teacher %s: canceled", name);
            snprintf(res->error, sizeof res->error, "%s: canceled", name);
            goto out;
        }
    }
    if (res->attempts > 1)
        snprintf(res->error, sizeof res->error, "%s: %s (%d attempts)", name, why, res->attempts);
    else
        snprintf(res->error, sizeof res->error, "%s: %s", name, why);
    st = sh_error_set(SH_EIO, "%s", res->error);
out:
    anthropic_dec_free(a.adec);
    openai_dec_free(a.odec);
    conv_buf_free(&a.errbody);
    if (a.h) curl_easy_cleanup(a.h);
    http_req_free(&hr);
    return st;
}

int teacher_generate(const sh_config_teacher *t, const conv_request *req, const teacher_opts *opts,
                     conv_event_fn fn, void *user, teacher_result *res) {
    memset(res, 0, sizeof *res);
    return generate_one(t, req, opts, fn, user, res);
}

/* ---- the chain ---- */

enum { B_RATE = 1, B_UNAVAIL = 2, B_INVALID = 4, B_OTHER = 8 };

static int bucket(conv_error_kind k) {
    switch (k) {
    case CONV_ERR_RATE:
        return B_RATE;
    case CONV_ERR_UNAVAILABLE:
    case CONV_ERR_OVERLOADED:
        return B_UNAVAIL;
    case CONV_ERR_INVALID:
    case CONV_ERR_TOO_LARGE:
        return B_INVALID;
    default:
        return B_OTHER;
    }
}

int teacher_chain_generate(const sh_config_teacher *teachers, int n, const conv_request *req,
                           const teacher_opts *opts, conv_event_fn fn, void *user,
                           teacher_result *res) {
    memset(res, 0, sizeof *res);
    if (n <= 0) {
        res->error_kind = CONV_ERR_UNAVAILABLE;
        snprintf(res->error, sizeof res->error,
                 "no teachers are configured ([[teachers]] in config.toml)");
        return sh_error_set(SH_EIO, "%s", res->error);
    }
    char list[TEACHER_ERROR_MAX];
    int w0 = snprintf(list, sizeof list, "%s failed: ", n == 1 ? "the teacher" : "all teachers");
    size_t used = (size_t)w0, first = used;
    int buckets = 0, retry_after = 0, st = SH_EIO;
    for (int i = 0; i < n; i++) {
        teacher_result one;
        memset(&one, 0, sizeof one);
        /* res->teacher must name the current teacher while fn runs */
        snprintf(res->teacher, sizeof res->teacher, "%s",
                 or_default(teachers[i].name, or_default(teachers[i].model, "?")));
        st = generate_one(&teachers[i], req, opts, fn, user, &one);
        res->attempts += one.attempts;
        res->events += one.events;
        res->http_status = one.http_status;
        if (one.retry_after) retry_after = one.retry_after;
        snprintf(res->teacher, sizeof res->teacher, "%s", one.teacher);
        if (st == SH_OK || st == SH_ECANCELED || one.events) {
            res->usage = one.usage;
            res->error_kind = one.error_kind;
            res->retry_after = one.retry_after;
            snprintf(res->error, sizeof res->error, "%s", one.error);
            return st;
        }
        buckets |= bucket(one.error_kind);
        int w =
            snprintf(list + used, sizeof list - used, "%s%s", used > first ? "; " : "", one.error);
        if (w > 0) used = used + (size_t)w < sizeof list ? used + (size_t)w : sizeof list - 1;
    }
    res->error_kind = buckets == B_RATE      ? CONV_ERR_RATE
                      : buckets == B_UNAVAIL ? CONV_ERR_UNAVAILABLE
                      : buckets == B_INVALID ? CONV_ERR_INVALID
                                             : CONV_ERR_UPSTREAM;
    res->retry_after = retry_after;
    memcpy(res->error, list, sizeof list);
    return sh_error_set(SH_EIO, "%s", res->error);
}
