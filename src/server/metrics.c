/* metrics.c - Prometheus counters, gauges and histograms. */
#include "server/metrics.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/status.h"

#define MAX_SERIES 128 /* (endpoint, status) pairs; further ones are counted as "other" */
#define N_BUCKETS 14

static const double buckets[N_BUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                          1,     2.5,  5,     10,   30,  60,  120};

typedef struct {
    uint64_t counts[N_BUCKETS + 1]; /* last: +Inf */
    double sum;
    uint64_t n;
} histogram;

typedef struct {
    char endpoint[48];
    int status;
    uint64_t n;
} series;

struct metrics {
    pthread_mutex_t mu;
    series req[MAX_SERIES];
    int n_req;
    uint64_t other_requests;
    int64_t prompt_tokens, generated_tokens, cached_tokens;
    int64_t active_streams;
    histogram ttft, gap;
};

int metrics_new(metrics **out) {
    *out = calloc(1, sizeof **out);
    if (!*out) return sh_error_set(SH_ENOMEM, "out of memory");
    pthread_mutex_init(&(*out)->mu, NULL);
    return SH_OK;
}

void metrics_free(metrics *m) {
    if (!m) return;
    pthread_mutex_destroy(&m->mu);
    free(m);
}

void metrics_request(metrics *m, const char *endpoint, int status) {
    pthread_mutex_lock(&m->mu);
    int i;
    for (i = 0; i < m->n_req; i++)
        if (m->req[i].status == status && !strcmp(m->req[i].endpoint, endpoint)) break;
    if (i == m->n_req && m->n_req < MAX_SERIES) {
        snprintf(m->req[i].endpoint, sizeof m->req[i].endpoint, "%s", endpoint);
        m->req[i].status = status;
        m->n_req++;
    }
    if (i < m->n_req) m->req[i].n++;
    else m->other_requests++;
    pthread_mutex_unlock(&m->mu);
}

void metrics_tokens(metrics *m, int64_t prompt, int64_t generated, int64_t cached) {
    pthread_mutex_lock(&m->mu);
    m->prompt_tokens += prompt;
    m->generated_tokens += generated;
    m->cached_tokens += cached;
    pthread_mutex_unlock(&m->mu);
}

static void observe(histogram *h, double v) {
    int b = 0;
    while (b < N_BUCKETS && v > buckets[b]) b++;
    h->counts[b]++;
    h->sum += v;
    h->n++;
}

void metrics_ttft(metrics *m, double seconds) {
    pthread_mutex_lock(&m->mu);
    observe(&m->ttft, seconds);
    pthread_mutex_unlock(&m->mu);
}

void metrics_token_gap(metrics *m, double seconds) {
    pthread_mutex_lock(&m->mu);
    observe(&m->gap, seconds);
    pthread_mutex_unlock(&m->mu);
}

void metrics_stream(metrics *m, int delta) {
    pthread_mutex_lock(&m->mu);
    m->active_streams += delta;
    pthread_mutex_unlock(&m->mu);
}

int64_t metrics_active_streams(metrics *m) {
    pthread_mutex_lock(&m->mu);
    int64_t v = m->active_streams;
    pthread_mutex_unlock(&m->mu);
    return v;
}

int64_t metrics_total_requests(metrics *m) {
    pthread_mutex_lock(&m->mu);
    int64_t v = (int64_t)m->other_requests;
    for (int i = 0; i < m->n_req; i++) v += (int64_t)m->req[i].n;
    pthread_mutex_unlock(&m->mu);
    return v;
}

typedef struct {
    char *buf;
    size_t len, cap;
} strbuf;

static void add(strbuf *s, const char *fmt, ...) {
    va_list ap;
    for (;;) {
        va_start(ap, fmt);
        int n = vsnprintf(s->buf ? s->buf + s->len : NULL, s->buf ? s->cap - s->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) return;
        if (s->buf && s->len + (size_t)n < s->cap) {
            s->len += (size_t)n;
            return;
        }
        size_t cap = s->cap ? s->cap * 2 : 8192;
        while (cap < s->len + (size_t)n + 1) cap *= 2;
        char *b = realloc(s->buf, cap);
        if (!b) return;
        s->buf = b;
        s->cap = cap;
    }
}

static void render_hist(strbuf *s, const char *name, const char *help, const histogram *h) {
    add(s, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cum = 0;
    for (int b = 0; b < N_BUCKETS; b++) {
        cum += h->counts[b];
        add(s, "%s_bucket{le=\"%g\"} %llu\n", name, buckets[b], (unsigned long long)cum);
    }
    cum += h->counts[N_BUCKETS];
    add(s, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", name,
        (unsigned long long)cum, name, h->sum, name, (unsigned long long)h->n);
}

static long rss_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, rss = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &rss) != 2) rss = 0;
        fclose(f);
    }
    return rss * sysconf(_SC_PAGESIZE);
}

char *metrics_render(metrics *m, const metrics_gauges *g) {
    strbuf s = {0};
    pthread_mutex_lock(&m->mu);
    add(&s, "# HELP shammah_requests_total HTTP requests by endpoint and status.\n"
            "# TYPE shammah_requests_total counter\n");
    for (int i = 0; i < m->n_req; i++)
        add(&s, "shammah_requests_total{endpoint=\"%s\",status=\"%d\"} %llu\n", m->req[i].endpoint,
            m->req[i].status, (unsigned long long)m->req[i].n);
    if (m->other_requests)
        add(&s, "shammah_requests_total{endpoint=\"other\",status=\"0\"} %llu\n",
            (unsigned long long)m->other_requests);
    add(&s, "# HELP shammah_prompt_tokens_total Prompt tokens of local requests.\n"
            "# TYPE shammah_prompt_tokens_total counter\nshammah_prompt_tokens_total %lld\n",
        (long long)m->prompt_tokens);
    add(&s, "# HELP shammah_prompt_tokens_cached_total Prompt tokens served from the prefix cache.\n"
            "# TYPE shammah_prompt_tokens_cached_total counter\n"
            "shammah_prompt_tokens_cached_total %lld\n",
        (long long)m->cached_tokens);
    add(&s, "# HELP shammah_generated_tokens_total Generated tokens.\n"
            "# TYPE shammah_generated_tokens_total counter\nshammah_generated_tokens_total %lld\n",
        (long long)m->generated_tokens);
    render_hist(&s, "shammah_time_to_first_token_seconds", "Time from request to first token.",
                &m->ttft);
    render_hist(&s, "shammah_time_per_token_seconds", "Time between generated tokens.", &m->gap);
    add(&s, "# HELP shammah_active_streams Streaming responses in progress.\n"
            "# TYPE shammah_active_streams gauge\nshammah_active_streams %lld\n",
        (long long)m->active_streams);
    pthread_mutex_unlock(&m->mu);
    add(&s, "# HELP shammah_queue_depth Requests waiting for the engine.\n"
            "# TYPE shammah_queue_depth gauge\nshammah_queue_depth %lld\n",
        (long long)g->queue_depth);
    add(&s, "# HELP shammah_active_generations Requests being generated.\n"
            "# TYPE shammah_active_generations gauge\nshammah_active_generations %lld\n",
        (long long)g->active_jobs);
    add(&s, "# HELP shammah_kv_cache_bytes Memory of the KV caches.\n"
            "# TYPE shammah_kv_cache_bytes gauge\nshammah_kv_cache_bytes %llu\n",
        (unsigned long long)g->kv_bytes);
    add(&s, "# HELP shammah_kv_cache_usage_ratio Share of KV cache sequences in use.\n"
            "# TYPE shammah_kv_cache_usage_ratio gauge\nshammah_kv_cache_usage_ratio %.4f\n",
        g->kv_used_ratio);
    add(&s, "# HELP shammah_model_ready 1 when the local model is loaded.\n"
            "# TYPE shammah_model_ready gauge\nshammah_model_ready %d\n",
        g->model_ready);
    add(&s, "# HELP shammah_resident_memory_bytes Resident memory of the daemon.\n"
            "# TYPE shammah_resident_memory_bytes gauge\nshammah_resident_memory_bytes %ld\n",
        rss_bytes());
    return s.buf;
}
