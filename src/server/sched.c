/* sched.c - continuous batching over generation jobs (see sched.h). */
#include "server/sched.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/status.h"
#include "engine/jsonc.h"
#include "engine/lora.h"
#include "engine/pcache.h"

#define SCHED_RING 512        /* events a job may have waiting for its reader */
#define SCHED_RING_RESERVE 64 /* a job is stepped only with this much room left */
#define SCHED_MAX_PARALLEL 64

enum { JOB_QUEUED, JOB_RUNNING, JOB_DONE };

struct sched_job {
    sched *s;
    int refs; /* under s->mu */
    /* parameters */
    int32_t *hist; /* (n_prompt + max_gen) prompt then generated tokens */
    int32_t n_prompt;
    int64_t max_tokens;
    smp_params sp;
    smp_stop stop;
    int parse_tools;
    chat_template tmpl;
    char *forced_prefix;
    int json_mode;
    jsonc json; /* the reply so far, when json_mode */
    /* scheduler-thread state */
    int state;
    int slot;
    model_seq *seq;
    int32_t n_evaluated; /* prompt tokens in the KV cache */
    int32_t n_reused;
    int64_t n_gen;
    int n_calls;
    int saw_stop;
    smp *sampler;
    chat_tcp *tcp;
    tok_utf8_stream us;
    float *logits;
    uint64_t id_seed;
    /* shared with the reader, under s->mu */
    sched_event ring[SCHED_RING];
    int head, count;
    int cancelled, closed;
    pthread_cond_t cv;
    struct sched_job *next_queued;
};

struct sched {
    const model *m;
    const tok *t;
    sched_opts o;
    model_ws *ws;
    pcache *pc;
    float *logits; /* (parallel, n_vocab) */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* work arrived or stop */
    int stop, joined;
    sched_job *queue_head, *queue_tail;
    sched_job *active[SCHED_MAX_PARALLEL];
    int n_queued;
    sched_stats stats;
    const lora *lora_cur, *lora_next; /* swap requested when they differ */
};

/* ---- events (called with s->mu held) ---- */

static sched_event *ev_slot(sched_job *j) {
    if (j->count == SCHED_RING) return NULL; /* cannot happen: steps keep a reserve */
    sched_event *e = &j->ring[(j->head + j->count) % SCHED_RING];
    memset(&e->ev, 0, sizeof e->ev);
    e->text[0] = e->id[0] = e->name[0] = 0;
    j->count++;
    return e;
}

static void emit_locked(sched_job *j, conv_event_kind kind, const char *text, size_t len) {
    sched_event *e = ev_slot(j);
    if (!e) return;
    if (len >= SCHED_TEXT_MAX) len = SCHED_TEXT_MAX - 1;
    if (text) memcpy(e->text, text, len);
    e->text[len] = 0;
    e->ev.kind = kind;
    e->ev.len = len;
    pthread_cond_signal(&j->cv);
}

/* text split in pieces that fit an event */
static void emit_text(sched_job *j, conv_event_kind kind, int index, const char *text, size_t len) {
    sched *s = j->s;
    pthread_mutex_lock(&s->mu);
    do {
        size_t n = len < SCHED_TEXT_MAX - 1 ? len : SCHED_TEXT_MAX - 1;
        /* keep UTF-8 characters whole across pieces */
        while (n < len && n > 0 && ((unsigned char)text[n] & 0xC0) == 0x80) n--;
        if (n == 0) n = len < SCHED_TEXT_MAX - 1 ? len : SCHED_TEXT_MAX - 1;
        emit_locked(j, kind, text, n);
        j->ring[(j->head + j->count - 1) % SCHED_RING].ev.index = index;
        text += n;
        len -= n;
    } while (len > 0);
    pthread_mutex_unlock(&s->mu);
}

static int on_chat_event(void *user, const chat_event *ce) {
    sched_job *j = user;
    if (ce->kind == CHAT_EV_TEXT) {
        if (ce->len) emit_text(j, CONV_EV_TEXT, 0, ce->text, ce->len);
        return 0;
    }
    int index = j->n_calls++;
    sched *s = j->s;
    pthread_mutex_lock(&s->mu);
    sched_event *e = ev_slot(j);
    if (e) {
        e->ev.kind = CONV_EV_TOOL_START;
        e->ev.index = index;
        j->id_seed = j->id_seed * 6364136223846793005ull + 1442695040888963407ull;
        snprintf(e->id, sizeof e->id, "call_%016llx", (unsigned long long)j->id_seed);
        snprintf(e->name, sizeof e->name, "%s", ce->name);
    }
    pthread_mutex_unlock(&s->mu);
    emit_text(j, CONV_EV_TOOL_DELTA, index, ce->arguments, strlen(ce->arguments));
    pthread_mutex_lock(&s->mu);
    e = ev_slot(j);
    if (e) {
        e->ev.kind = CONV_EV_TOOL_END;
        e->ev.index = index;
    }
    pthread_cond_signal(&j->cv);
    pthread_mutex_unlock(&s->mu);
    return 0;
}

/* generated text after stop strings: to the tool-call parser or straight out */
static void out_text(sched_job *j, const char *text, size_t len) {
    if (!len) return;
    if (j->parse_tools)
        chat_tcp_feed(j->tcp, text, len, on_chat_event, j);
    else
        emit_text(j, CONV_EV_TEXT, 0, text, len);
}

/* ---- job life ---- */

static void job_free(sched_job *j) {
    smp_free(j->sampler);
    chat_tcp_free(j->tcp);
    free(j->hist);
    free(j->forced_prefix);
    pthread_cond_destroy(&j->cv);
    free(j);
}

/* drop one reference; s->mu held */
static void job_unref_locked(sched_job *j) {
    if (--j->refs == 0) job_free(j);
}

static void job_finish(sched *s, sched_job *j, conv_stop_reason reason, const char *error) {
    char buf[512 + SMP_STOP_LEN_MAX];
    if (!error && !j->saw_stop) {
        int64_t n = tok_stream_flush(&j->us, buf, sizeof buf);
        size_t nr = 0;
        char rel[sizeof buf + SMP_STOP_LEN_MAX];
        if (smp_stop_push(&j->stop, buf, (size_t)n, rel, sizeof rel, &nr) == 1) {
            reason = CONV_STOP_SEQUENCE;
            j->saw_stop = 1;
        }
        out_text(j, rel, nr);
        if (!j->saw_stop) out_text(j, buf, smp_stop_flush(&j->stop, buf, sizeof buf));
    }
    if (!error && j->parse_tools) chat_tcp_finish(j->tcp, on_chat_event, j);
    if (j->n_calls > 0 && reason == CONV_STOP_END) reason = CONV_STOP_TOOL_USE;
    pthread_mutex_lock(&s->mu);
    if (!j->cancelled) {
        if (error) {
            emit_locked(j, CONV_EV_ERROR, error, strlen(error));
            j->ring[(j->head + j->count - 1) % SCHED_RING].ev.error_kind = CONV_ERR_INTERNAL;
        } else {
            const char *sq = reason == CONV_STOP_SEQUENCE && j->stop.hit >= 0 ? j->stop.str[j->stop.hit] : NULL;
            emit_locked(j, CONV_EV_STOP, sq, sq ? strlen(sq) : 0);
            sched_event *e = &j->ring[(j->head + j->count - 1) % SCHED_RING];
            e->ev.reason = reason;
            e->ev.usage.prompt_tokens = j->n_prompt;
            e->ev.usage.completion_tokens = j->n_gen;
            e->ev.usage.cached_tokens = j->n_reused;
        }
    }
    j->closed = 1;
    pthread_cond_broadcast(&j->cv);
    if (j->seq) pcache_release(s->pc, j->seq);
    j->seq = NULL;
    if (j->slot >= 0) s->active[j->slot] = NULL;
    j->state = JOB_DONE;
    job_unref_locked(j);
    pthread_mutex_unlock(&s->mu);
}

/* admit queued jobs into free slots; s->mu held */
static void admit_locked(sched *s) {
    for (int slot = 0; slot < s->o.parallel && s->queue_head; slot++) {
        if (s->active[slot]) continue;
        sched_job *j = s->queue_head;
        if (j->cancelled) { /* never started: just drop it */
            s->queue_head = j->next_queued;
            if (!s->queue_head) s->queue_tail = NULL;
            s->n_queued--;
            j->closed = 1;
            j->state = JOB_DONE;
            pthread_cond_broadcast(&j->cv);
            job_unref_locked(j);
            slot--;
            continue;
        }
        if (pcache_acquire(s->pc, j->hist, j->n_prompt, &j->seq, &j->n_reused) != SH_OK) break;
        s->queue_head = j->next_queued;
        if (!s->queue_head) s->queue_tail = NULL;
        s->n_queued--;
        j->slot = slot;
        j->state = JOB_RUNNING;
        j->n_evaluated = j->n_reused;
        j->logits = s->logits + (size_t)slot * (size_t)model_hp(s->m)->n_vocab;
        s->active[slot] = j;
        s->stats.cached_tokens += j->n_reused;
        /* the reply starts with a user-chosen prefix (a forced tool call): parse, don't emit */
        if (j->forced_prefix && j->parse_tools)
            chat_tcp_feed(j->tcp, j->forced_prefix, strlen(j->forced_prefix), on_chat_event, j);
        emit_locked(j, CONV_EV_START, NULL, 0);
        j->ring[(j->head + j->count - 1) % SCHED_RING].ev.usage.prompt_tokens = j->n_prompt;
        j->ring[(j->head + j->count - 1) % SCHED_RING].ev.usage.cached_tokens = j->n_reused;
    }
}

/* a token was sampled for j: turn it into events, decide whether it goes on */
static void handle_token(sched *s, sched_job *j, int32_t id) {
    j->hist[j->n_prompt + j->n_gen++] = id;
    if (tok_is_eog(s->t, id)) {
        job_finish(s, j, CONV_STOP_END, NULL);
        return;
    }
    char piece[512], rel[512 + SMP_STOP_LEN_MAX];
    int64_t np = tok_stream_push(s->t, &j->us, id, 0, piece, sizeof piece);
    size_t nr = 0;
    int hit = np > 0 && smp_stop_push(&j->stop, piece, (size_t)np, rel, sizeof rel, &nr) == 1;
    out_text(j, rel, nr);
    if (hit) {
        j->saw_stop = 1;
        job_finish(s, j, CONV_STOP_SEQUENCE, NULL);
    } else if (j->n_gen >= j->max_tokens || model_seq_pos(j->seq) >= model_seq_n_ctx(j->seq)) {
        job_finish(s, j, CONV_STOP_LENGTH, NULL);
    }
}

static void *sched_main(void *arg) {
    sched *s = arg;
    model_batch items[SCHED_MAX_PARALLEL];
    sched_job *jobs[SCHED_MAX_PARALLEL];
    int32_t next_tok[SCHED_MAX_PARALLEL];
    for (;;) {
        pthread_mutex_lock(&s->mu);
        for (;;) {
            admit_locked(s);
            int any = 0;
            for (int i = 0; i < s->o.parallel; i++) any |= s->active[i] != NULL;
            if (s->stop || any || s->lora_next != s->lora_cur) break;
            pthread_cond_wait(&s->cv, &s->mu);
        }
        if (s->stop) {
            pthread_mutex_unlock(&s->mu);
            break;
        }
        if (s->lora_next != s->lora_cur) { /* between steps: no evaluation is running */
            model_ws_set_lora(s->ws, s->lora_next);
            pcache_clear(s->pc);
            s->lora_cur = s->lora_next;
            int any = 0;
            for (int i = 0; i < s->o.parallel; i++) any |= s->active[i] != NULL;
            if (!any) {
                pthread_mutex_unlock(&s->mu);
                continue;
            }
        }
        /* pick what to evaluate: prompt chunks and one decode token per job */
        int n = 0;
        sched_job *cancelled[SCHED_MAX_PARALLEL];
        int n_cancelled = 0;
        for (int i = 0; i < s->o.parallel; i++) {
            sched_job *j = s->active[i];
            if (!j) continue;
            if (j->cancelled) {
                cancelled[n_cancelled++] = j;
                continue;
            }
            if (SCHED_RING - j->count < SCHED_RING_RESERVE) continue; /* reader is behind */
            model_batch *b = &items[n];
            b->seq = j->seq;
            b->logits = NULL;
            if (j->n_evaluated < j->n_prompt) {
                int32_t left = j->n_prompt - j->n_evaluated;
                b->n = left < s->o.prefill_chunk ? left : s->o.prefill_chunk;
                b->tokens = j->hist + j->n_evaluated;
                if (b->n == left) b->logits = j->logits;
            } else {
                next_tok[n] = j->hist[j->n_prompt + j->n_gen - 1];
                b->tokens = &next_tok[n];
                b->n = 1;
                b->logits = j->logits;
            }
            jobs[n++] = j;
        }
        pthread_mutex_unlock(&s->mu);
        for (int i = 0; i < n_cancelled; i++) job_finish(s, cancelled[i], CONV_STOP_END, NULL);
        if (n == 0) {
            if (n_cancelled == 0) { /* every job waits for its reader: let them read */
                struct timespec ts = {0, 2000000};
                nanosleep(&ts, NULL);
            }
            continue;
        }
        int st = model_eval_batch(s->ws, items, n);
        int64_t step_prompt = 0, step_gen = 0;
        for (int i = 0; i < n; i++) {
            sched_job *j = jobs[i];
            if (st) {
                job_finish(s, j, CONV_STOP_END, sh_error_last());
                continue;
            }
            int prefill = j->n_evaluated < j->n_prompt;
            if (prefill) {
                j->n_evaluated += items[i].n;
                step_prompt += items[i].n;
                if (!items[i].logits) continue;
            }
            int32_t id;
            int sst;
            if (j->json_mode) {
                jsonc_acceptor acc = {&j->json, s->t};
                sst = smp_sample_constrained(j->sampler, j->logits, j->hist, j->n_prompt + j->n_gen,
                                             jsonc_accept_cb, &acc, &id);
                if (sst == SH_ENOTFOUND) { /* nothing can continue the document: end here */
                    job_finish(s, j, CONV_STOP_END, NULL);
                    continue;
                }
                if (!sst) jsonc_advance(&j->json, s->t, id);
            } else {
                sst = smp_sample(j->sampler, j->logits, j->hist, j->n_prompt + j->n_gen, &id);
            }
            if (sst) {
                job_finish(s, j, CONV_STOP_END, "sampling failed");
                continue;
            }
            step_gen++;
            handle_token(s, j, id);
        }
        pthread_mutex_lock(&s->mu);
        s->stats.steps++;
        s->stats.prompt_tokens += step_prompt;
        s->stats.generated_tokens += step_gen;
        pthread_mutex_unlock(&s->mu);
    }
    /* shutting down: every job gets an error event */
    pthread_mutex_lock(&s->mu);
    sched_job *left[SCHED_MAX_PARALLEL * 2];
    int nl = 0;
    for (int i = 0; i < s->o.parallel; i++)
        if (s->active[i]) left[nl++] = s->active[i];
    pthread_mutex_unlock(&s->mu);
    for (int i = 0; i < nl; i++) job_finish(s, left[i], CONV_STOP_END, "the server is shutting down");
    pthread_mutex_lock(&s->mu);
    while (s->queue_head) {
        sched_job *j = s->queue_head;
        s->queue_head = j->next_queued;
        if (!j->cancelled) {
            emit_locked(j, CONV_EV_ERROR, "the server is shutting down", 27);
            j->ring[(j->head + j->count - 1) % SCHED_RING].ev.error_kind = CONV_ERR_UNAVAILABLE;
        }
        j->closed = 1;
        pthread_cond_broadcast(&j->cv);
        job_unref_locked(j);
    }
    s->queue_tail = NULL;
    s->n_queued = 0;
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* ---- public API ---- */

int sched_new(sched **out, const model *m, const tok *t, const sched_opts *o) {
    int st = SH_OK;
    *out = NULL;
    if (o->parallel < 1 || o->parallel > SCHED_MAX_PARALLEL || o->n_ctx < 1 || o->prefill_chunk < 1)
        return sh_error_set(SH_EINVAL, "bad scheduler options");
    sched *s = calloc(1, sizeof *s);
    if (!s) return sh_error_set(SH_ENOMEM, "out of memory");
    s->m = m;
    s->t = t;
    s->o = *o;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    if ((st = model_ws_new(&s->ws, m, o->n_threads, o->n_ctx)) ||
        (st = pcache_new(&s->pc, m, o->parallel, o->n_ctx, o->kv_type)))
        goto out;
    s->logits = calloc((size_t)o->parallel * (size_t)model_hp(m)->n_vocab, sizeof(float));
    if (!s->logits) {
        st = sh_error_set(SH_ENOMEM, "out of memory");
        goto out;
    }
    s->stats.kv_bytes = model_seq_bytes(m, o->n_ctx, o->kv_type) * (uint64_t)o->parallel;
    if (pthread_create(&s->thread, NULL, sched_main, s) != 0) {
        st = sh_error_set(SH_ENOMEM, "cannot start the scheduler thread");
        goto out;
    }
out:
    if (st) {
        pcache_free(s->pc);
        model_ws_free(s->ws);
        free(s->logits);
        free(s);
        return st;
    }
    *out = s;
    return SH_OK;
}

void sched_stop(sched *s) {
    pthread_mutex_lock(&s->mu);
    int joined = s->joined;
    s->stop = 1;
    s->joined = 1;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    if (!joined) pthread_join(s->thread, NULL);
}

void sched_free(sched *s) {
    if (!s) return;
    sched_stop(s);
    pcache_free(s->pc);
    model_ws_free(s->ws);
    free(s->logits);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

int32_t sched_n_ctx(const sched *s) {
    return s->o.n_ctx;
}

int sched_submit(sched *s, const sched_params *p, sched_job **out) {
    *out = NULL;
    if (p->n_prompt < 1) return sh_error_set(SH_EINVAL, "empty prompt");
    if (p->n_prompt >= s->o.n_ctx)
        return sh_error_set(SH_ERANGE, "the prompt has %d tokens; the context holds %d (with room "
                            "for at least one generated token)", p->n_prompt, s->o.n_ctx);
    int64_t max_gen = s->o.n_ctx - p->n_prompt;
    if (p->max_tokens > 0 && p->max_tokens < max_gen) max_gen = p->max_tokens;
    sched_job *j = calloc(1, sizeof *j);
    if (!j) return sh_error_set(SH_ENOMEM, "out of memory");
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&j->cv, &ca);
    pthread_condattr_destroy(&ca);
    j->s = s;
    j->refs = 2;
    j->slot = -1;
    j->n_prompt = p->n_prompt;
    j->max_tokens = max_gen;
    j->sp = p->sampling;
    j->json_mode = p->json_mode;
    if (j->json_mode) {
        jsonc_init(&j->json, 1);
        jsonc_set_ws_max(&j->json, JSONC_WS_GEN);
    }
    j->id_seed = (uint64_t)time(NULL) ^ ((uint64_t)(uintptr_t)j << 16);
    int st = SH_OK;
    j->hist = malloc(sizeof(int32_t) * (size_t)(p->n_prompt + max_gen + 1));
    if (!j->hist) st = sh_error_set(SH_ENOMEM, "out of memory");
    if (!st) {
        memcpy(j->hist, p->prompt, sizeof(int32_t) * (size_t)p->n_prompt);
        st = smp_init(&j->sampler, model_hp(s->m)->n_vocab, &p->sampling);
    }
    if (!st) st = smp_stop_init(&j->stop, p->stop, p->n_stop);
    if (!st && p->tools_template) {
        j->tmpl = *p->tools_template;
        j->parse_tools = 1;
        st = chat_tcp_new(&j->tcp, &j->tmpl);
    }
    if (!st && p->forced_prefix && !(j->forced_prefix = strdup(p->forced_prefix)))
        st = sh_error_set(SH_ENOMEM, "out of memory");
    if (st) {
        job_free(j);
        return st;
    }
    pthread_mutex_lock(&s->mu);
    if (s->stop) {
        pthread_mutex_unlock(&s->mu);
        job_free(j);
        return sh_error_set(SH_ECANCELED, "the server is shutting down");
    }
    if (s->queue_tail) s->queue_tail->next_queued = j;
    else s->queue_head = j;
    s->queue_tail = j;
    s->n_queued++;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    *out = j;
    return SH_OK;
}

int sched_job_next(sched_job *j, sched_event *ev, int timeout_ms) {
    sched *s = j->s;
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    if (timeout_ms > 0) {
        deadline.tv_sec += timeout_ms / 1000;
        deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (deadline.tv_nsec >= 1000000000L) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000L;
        }
    }
    pthread_mutex_lock(&s->mu);
    while (j->count == 0 && !j->closed && timeout_ms != 0) {
        if (timeout_ms < 0) {
            pthread_cond_wait(&j->cv, &s->mu);
        } else if (pthread_cond_timedwait(&j->cv, &s->mu, &deadline) == ETIMEDOUT) {
            break;
        }
    }
    int got = 0;
    if (j->count > 0) {
        *ev = j->ring[j->head];
        j->head = (j->head + 1) % SCHED_RING;
        j->count--;
        got = 1;
    }
    pthread_mutex_unlock(&s->mu);
    if (got) {
        ev->ev.text = ev->text;
        ev->ev.id = ev->id;
        ev->ev.name = ev->name;
        ev->ev.stop_sequence = ev->ev.kind == CONV_EV_STOP && ev->ev.len ? ev->text : NULL;
    }
    return got;
}

int sched_job_done(sched_job *j) {
    pthread_mutex_lock(&j->s->mu);
    int done = j->closed && j->count == 0;
    pthread_mutex_unlock(&j->s->mu);
    return done;
}

void sched_job_cancel(sched_job *j) {
    sched *s = j->s;
    pthread_mutex_lock(&s->mu);
    j->cancelled = 1;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

void sched_job_release(sched_job *j) {
    if (!j) return;
    sched *s = j->s;
    pthread_mutex_lock(&s->mu);
    j->cancelled = 1;
    pthread_cond_signal(&s->cv);
    job_unref_locked(j);
    pthread_mutex_unlock(&s->mu);
}

void sched_get_stats(sched *s, sched_stats *out) {
    pthread_mutex_lock(&s->mu);
    *out = s->stats;
    out->active = 0;
    for (int i = 0; i < s->o.parallel; i++) out->active += s->active[i] != NULL;
    out->queued = s->n_queued;
    pthread_mutex_unlock(&s->mu);
}

const void *sched_set_lora(sched *s, const void *l) {
    pthread_mutex_lock(&s->mu);
    const void *old = s->lora_next;
    s->lora_next = l;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return old;
}

int sched_lora_applied(sched *s) {
    pthread_mutex_lock(&s->mu);
    int done = s->lora_cur == s->lora_next;
    pthread_mutex_unlock(&s->mu);
    return done;
}
