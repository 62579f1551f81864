/* pool.c - persistent worker threads with a generation counter as the start signal. */
#include "engine/pool.h"

#include <pthread.h>
#include <stdlib.h>

#include "base/status.h"

#define POOL_MAX_THREADS 256

struct pool {
    int n_threads;
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t start_cv, done_cv;
    uint64_t generation; /* bumped once per run; workers wait for a change */
    int pending;         /* workers still busy in this run */
    int stop;
    pool_fn fn;
    void *arg;
    int64_t n, align;
};

typedef struct {
    pool *p;
    int ith;
} worker_arg;

static void run_share(pool *p, int ith) {
    int64_t nt = p->n_threads;
    int64_t blocks = (p->n + p->align - 1) / p->align;
    int64_t b0 = blocks * ith / nt, b1 = blocks * (ith + 1) / nt;
    int64_t begin = b0 * p->align, end = b1 * p->align;
    if (end > p->n) end = p->n;
    if (begin < end) p->fn(p->arg, begin, end, ith);
}

static void *worker(void *v) {
    worker_arg *wa = v;
    pool *p = wa->p;
    int ith = wa->ith;
    free(wa);
    uint64_t seen = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->stop && p->generation == seen) pthread_cond_wait(&p->start_cv, &p->mu);
        if (p->stop) break;
        seen = p->generation;
        pthread_mutex_unlock(&p->mu);
        run_share(p, ith);
        pthread_mutex_lock(&p->mu);
        if (--p->pending == 0) pthread_cond_signal(&p->done_cv);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

int pool_new(pool **out, int n_threads) {
    if (n_threads < 1 || n_threads > POOL_MAX_THREADS)
        return sh_error_set(SH_EINVAL, "thread count %d out of range 1..%d", n_threads,
                            POOL_MAX_THREADS);
    pool *p = calloc(1, sizeof *p);
    if (!p) return sh_error_set(SH_ENOMEM, "out of memory");
    p->n_threads = n_threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->start_cv, NULL);
    pthread_cond_init(&p->done_cv, NULL);
    p->threads = calloc((size_t)n_threads, sizeof *p->threads);
    if (!p->threads) {
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
    p->stop = 1;
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
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->arg = arg;
    p->n = n;
    p->align = align;
    p->pending = p->n_threads - 1;
    p->generation++;
    pthread_cond_broadcast(&p->start_cv);
    pthread_mutex_unlock(&p->mu);
    run_share(p, 0);
    pthread_mutex_lock(&p->mu);
    while (p->pending > 0) pthread_cond_wait(&p->done_cv, &p->mu);
    pthread_mutex_unlock(&p->mu);
}
