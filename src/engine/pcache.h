/* pcache.h - the prefix cache: a bounded set of sequences (KV caches) kept between requests.
 *
 * A new prompt takes the idle sequence sharing its longest prefix (a previous turn of the same
 * conversation, a shared system prompt or tool list) and only the rest is evaluated. When no
 * idle sequence shares anything, the least recently used one is reused (evicted). Memory is
 * bounded: n_slots sequences of n_ctx tokens each, allocated once. Not thread-safe: the caller
 * (the scheduler thread) serialises use. */
#ifndef SH_PCACHE_H
#define SH_PCACHE_H

#include <stdint.h>

#include "engine/model.h"

typedef struct pcache pcache;

/* m borrowed, must outlive the cache. Caller frees. */
int pcache_new(pcache **out, const model *m, int n_slots, int32_t n_ctx, int kv_type);
void pcache_free(pcache *c);

/* Takes the best idle sequence for tokens[0..n) and truncates it to the common prefix, keeping
 * at most n - 1 tokens so that the last prompt token is always evaluated (its logits start the
 * reply). *n_reused receives the number of cached tokens kept. The sequence is busy until
 * pcache_release(). SH_EFULL when every sequence is busy; SH_ERANGE when n exceeds n_ctx. */
int pcache_acquire(pcache *c, const int32_t *tokens, int32_t n, model_seq **seq,
                   int32_t *n_reused);
void pcache_release(pcache *c, model_seq *seq);

/* Forgets what the idle sequences hold (their keys and values were computed with other
 * weights, e.g. before a new adapter). */
void pcache_clear(pcache *c);

/* ---- statistics ---- */
int pcache_slots(const pcache *c);
int pcache_busy(const pcache *c);
int64_t pcache_reused_total(const pcache *c); /* tokens not evaluated thanks to the cache */

#endif
