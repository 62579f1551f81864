/* pcache.c - prefix cache over a fixed set of sequences, LRU among the idle ones. */
#include "engine/pcache.h"

#include <stdlib.h>

#include "base/status.h"

#define PCACHE_MAX_SLOTS 256

typedef struct {
    model_seq *seq;
    int busy;
    uint64_t last_used; /* tick of the last acquire: smaller = less recently used */
} slot;

struct pcache {
    slot *slots;
    int n_slots;
    int32_t n_ctx;
    uint64_t tick;
    int64_t reused_total;
};

int pcache_new(pcache **out, const model *m, int n_slots, int32_t n_ctx, int kv_type) {
    int st = SH_OK;
    *out = NULL;
    if (n_slots < 1 || n_slots > PCACHE_MAX_SLOTS)
        return sh_error_set(SH_EINVAL, "prefix cache slots %d out of range 1..%d", n_slots,
                            PCACHE_MAX_SLOTS);
    pcache *c = calloc(1, sizeof *c);
    if (!c) return sh_error_set(SH_ENOMEM, "out of memory");
    c->slots = calloc((size_t)n_slots, sizeof *c->slots);
    if (!c->slots) {
        free(c);
        return sh_error_set(SH_ENOMEM, "out of memory");
    }
    c->n_slots = n_slots;
    c->n_ctx = n_ctx;
    for (int i = 0; i < n_slots && !st; i++) st = model_seq_new(&c->slots[i].seq, m, n_ctx, kv_type);
    if (st) {
        pcache_free(c);
        return st;
    }
    *out = c;
    return SH_OK;
}

void pcache_free(pcache *c) {
    if (!c) return;
    for (int i = 0; i < c->n_slots; i++) model_seq_free(c->slots[i].seq);
    free(c->slots);
    free(c);
}

static int32_t common_prefix(const model_seq *s, const int32_t *tokens, int32_t n) {
    const int32_t *have = model_seq_tokens(s);
    int32_t lim = model_seq_pos(s) < n ? model_seq_pos(s) : n, i = 0;
    while (i < lim && have[i] == tokens[i]) i++;
    return i;
}

int pcache_acquire(pcache *c, const int32_t *tokens, int32_t n, model_seq **seq,
                   int32_t *n_reused) {
    *seq = NULL;
    *n_reused = 0;
    if (n < 1) return sh_error_set(SH_EINVAL, "empty prompt");
    if (n > c->n_ctx)
        return sh_error_set(SH_ERANGE, "%d tokens do not fit in the context of %d tokens", n,
                            c->n_ctx);
    int best = -1;
    int32_t best_len = -1;
    for (int i = 0; i < c->n_slots; i++) {
        slot *s = &c->slots[i];
        if (s->busy) continue;
        int32_t len = common_prefix(s->seq, tokens, n);
        /* longest prefix wins; among equals the least recently used is the one to disturb */
        if (len > best_len || (len == best_len && s->last_used < c->slots[best].last_used)) {
            best = i;
            best_len = len;
        }
    }
    if (best < 0) return sh_error_set(SH_EFULL, "all %d cached sequences are busy", c->n_slots);
    slot *s = &c->slots[best];
    if (best_len > n - 1) best_len = n - 1;
    model_seq_truncate(s->seq, best_len);
    s->busy = 1;
    s->last_used = ++c->tick;
    c->reused_total += best_len;
    *seq = s->seq;
    *n_reused = best_len;
    return SH_OK;
}

void pcache_release(pcache *c, model_seq *seq) {
    for (int i = 0; i < c->n_slots; i++)
        if (c->slots[i].seq == seq) c->slots[i].busy = 0;
}

int pcache_slots(const pcache *c) {
    return c->n_slots;
}

int pcache_busy(const pcache *c) {
    int n = 0;
    for (int i = 0; i < c->n_slots; i++) n += c->slots[i].busy;
    return n;
}

int64_t pcache_reused_total(const pcache *c) {
    return c->reused_total;
}

void pcache_clear(pcache *c) {
    for (int i = 0; i < c->n_slots; i++)
        if (!c->slots[i].busy) model_seq_truncate(c->slots[i].seq, 0);
}
