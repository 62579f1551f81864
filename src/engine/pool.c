/* pool.c - persistent worker threads; a generation counter is the start signal.
 *
 * A forward step runs a few hundred short parallel loops, so the hand-off must be cheap:
 * workers and the caller spin briefly on atomics before falling back to sleeping on a
 * condition variable. The spin is bounded, so when another process holds the other core a
 * waiting thread soon sleeps instead of burning the time slice the worker it waits for needs.
 *
 * Work is handed out in POOL_CHUNKS chunks per thread from an atomic counter, in order: on a
 * shared machine one core is often slower than the other for a while, and with one fixed
 * share per thread the fast one waited for the slow one at the end of every loop. */
#include "engine/pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "base/status.h"

#define POOL_MAX_THREADS 256
#define POOL_SPIN 20000 /* polls before sleeping: tens of microseconds */
#define POOL_CHUNKS 4    /* chunks per thread and run */

struct pool {
    int n_threads;
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t start_cv, done_cv;
    atomic_uint_fast64_t generation; /* bumped once per run */
    atomic_int pending;              /* workers still busy in this run */
    atomic_int stop;
    int sleepers; /* workers waiting on start_cv (under mu) */
    pool_fn fn;
    void *arg;
    int64_t n, align;
    int64_t chunk, n_chunks;  /* items per chunk (a multiple of align), chunks in this run */
    atomic_int_fast64_t next; /* next chunk to hand out */
};

typedef struct {
    pool *p;
    int ith;
} worker_arg;

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static void run_share(pool *p, int ith) {
    for (;;) {
        int64_t c = atomic_fetch_add_explicit(&p->next, 1, memory_order_relaxed);
        if (c >= p->n_chunks) break;
        int64_t begin = c * p->chunk, end = begin + p->chunk;
        if (end > p->n) end = p->n;
        p->fn(p->arg, begin, end, ith);
    }
}

static void *worker(void *v) {
    worker_arg *wa = v;
    pool *p = wa->p;
    int ith = wa->ith;
    free(wa);
    uint64_t seen = 0;
    for (;;) {
        for (int i = 0; i < POOL_SPIN; i++) {
            if (atomic_load_explicit(&p->generation, memory_order_acquire) != seen ||
                atomic_load_explicit(&p->stop, memory_order_relaxed))
                break;
            cpu_relax();
        }
        if (atomic_load_explicit(&p->generation, memory_order_acquire) == seen) {
            pthread_mutex_lock(&p->mu);
            p->sleepers++;
            while (atomic_load(&p->generation) == seen && !atomic_load(&p->stop))
                pthread_cond_wait(&p->start_cv, &p->mu);
            p->sleepers--;
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load(&p->stop)) break;
        seen = atomic_load_explicit(&p->generation, memory_order_acquire);
        run_share(p, ith);
        if (atomic_fetch_sub_explicit(&p->pending, 1, memory_order_acq_rel) == 1) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done_cv);
            pthread_mutex_unlock(&p->mu);
        }
    }
    return NULL;
}

int pool_new(pool **out, int n_threads) {
    if (n_threads < 1 || n_threads > POOL_MAX_THREADS)
        return sh_error_set(SH_EINVAL, "thread count %d out of range 1..%d", n_threads,
                            POOL_MAX_THREADS);
    pool *p = calloc(1, sizeof *p);
    if (!p) return sh_error_set(SH_ENOMEM, "out of memory");
    p->n_threads = n_threads;
    atomic_init(&p->generation, 0);
    atomic_init(&p->pending, 0);
    atomic_init(&p->stop, 0);
    atomic_init(&p->next, 0);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->start_cv, NULL);
    pthread_cond_init(&p->done_cv, NULL);
    p->threads = calloc((size_t)n_threads, sizeof *p->threads);
    if (!p->threads) {
        p->n_threads = 1;
        pool_free(p);
        return sh_error_set(SH_ENOMEM, "out of memory");
    }
    for (int i = 1; i < n_threads; i++) {
        worker_arg *wa = malloc(sizeof *wa);
        if (wa) *wa = (worker_arg){p, i};
        if (!wa || pthread_create(&p->threads[i], NULL, worker, wa) != 0) {
            free(wa);
            p->n_threads = i; /* only the started ones get joined */
            pool_free(p);
            return sh_error_set(SH_ENOMEM, "cannot start worker thread");
        }
    }
    *out = p;
    return SH_OK;
}

void pool_free(pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stop, 1);
    pthread_cond_broadcast(&p->start_cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n_threads; i++)
        if (p->threads) pthread_join(p->threads[i], NULL);
    pthread_cond_destroy(&p->start_cv);
    pthread_cond_destroy(&p->done_cv);
    pthread_mutex_destroy(&p->mu);
    free(p->threads);
    free(p);
}

int pool_threads(const pool *p) {
    return p->n_threads;
}

void pool_run(pool *p, pool_fn fn, void *arg, int64_t n, int64_t align) {
    if (n <= 0) return;
    if (align < 1) align = 1;
    if (p->n_threads == 1 || n <= align) {
        fn(arg, 0, n, 0);
        return;
    }
    p->fn = fn;
    p->arg = arg;
    p->n = n;
    p->align = align;
    int64_t blocks = (n + align - 1) / align, per = (int64_t)p->n_threads * POOL_CHUNKS;
    p->chunk = (blocks + per - 1) / per * align;
    p->n_chunks = (n + p->chunk - 1) / p->chunk;
    atomic_store_explicit(&p->next, 0, memory_order_relaxed);
    atomic_store_explicit(&p->pending, p->n_threads - 1, memory_order_relaxed);
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add_explicit(&p->generation, 1, memory_order_release);
    if (p->sleepers) pthread_cond_broadcast(&p->start_cv);
    pthread_mutex_unlock(&p->mu);
    run_share(p, 0);
    for (int i = 0; i < POOL_SPIN; i++) {
        if (atomic_load_explicit(&p->pending, memory_order_acquire) == 0) return;
        cpu_relax();
    }
    pthread_mutex_lock(&p->mu);
    while (atomic_load_explicit(&p->pending, memory_order_acquire) > 0)
        pthread_cond_wait(&p->done_cv, &p->mu);
    pthread_mutex_unlock(&p->mu);
}
