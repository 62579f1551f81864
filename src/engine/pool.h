/* pool.h - a persistent worker pool for data-parallel loops inside one forward step.
 *
 * pool_run() splits [0, n) into one contiguous range per thread and blocks until all are done.
 * Workers sleep on a condition variable between runs: no spinning, so a busy core elsewhere
 * does not stall the step (speed work may add a short spin later, measured). */
#ifndef SH_POOL_H
#define SH_POOL_H

#include <stdint.h>

typedef struct pool pool;
/* fn(arg, begin, end, thread_index) processes items [begin, end). */
typedef void (*pool_fn)(void *arg, int64_t begin, int64_t end, int ith);

/* n_threads >= 1 (the calling thread counts as one). Caller frees with pool_free(). */
int pool_new(pool **out, int n_threads);
void pool_free(pool *p);
int pool_threads(const pool *p);
/* Runs fn over [0, n) split in chunks that are multiples of `align` items (except the last). */
void pool_run(pool *p, pool_fn fn, void *arg, int64_t n, int64_t align);

#endif
