/* sampler.c - penalties, top-k, top-p, min-p, temperature, and the stop-string matcher. */
#include "engine/sampler.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/status.h"

typedef struct {
    int32_t id;
    float logit;
} smp_cand;

struct smp {
    smp_params p;
    int32_t n_vocab;
    smp_cand *cand;  /* n_vocab scratch candidates */
    int32_t *counts; /* n_vocab, all zero between calls */
    uint64_t rng[4];
};

/* ---- random numbers: xoshiro256** seeded through splitmix64 ---- */

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t rotl64(uint64_t x, int k) {
    return (x << k) | (x >> (64 - k));
}

static uint64_t rng_next(uint64_t s[4]) {
    uint64_t out = rotl64(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl64(s[3], 45);
    return out;
}

/* uniform in [0, 1) with 53 random bits */
static double rng_uniform(uint64_t s[4]) {
    return (double)(rng_next(s) >> 11) * (1.0 / 9007199254740992.0);
}

void smp_reseed(smp *s, uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) s->rng[i] = splitmix64(&x);
}

/* ---- life cycle ---- */

void smp_params_default(smp_params *p) {
    memset(p, 0, sizeof *p);
    p->temperature = 0.8f;
    p->top_k = 40;
    p->top_p = 0.95f;
    p->min_p = 0.05f;
    p->repeat_penalty = 1.0f;
    p->repeat_last_n = 64;
    p->presence_penalty = 0.0f;
    p->frequency_penalty = 0.0f;
    p->seed = 0;
}

static int params_check(const smp_params *p) {
    if (isnan(p->temperature) || isnan(p->top_p) || p->top_p < 0 || isnan(p->min_p) ||
        p->min_p > 1 || !isfinite(p->repeat_penalty) || p->repeat_penalty <= 0 ||
        !isfinite(p->presence_penalty) || !isfinite(p->frequency_penalty) || p->repeat_last_n < -1)
        return sh_error_set(SH_EINVAL, "sampler: parameter out of range");
    return SH_OK;
}

int smp_init(smp **out, int32_t n_vocab, const smp_params *p) {
    *out = NULL;
    if (n_vocab <= 0) return sh_error_set(SH_EINVAL, "sampler: n_vocab %d", (int)n_vocab);
    int rc = params_check(p);
    if (rc) return rc;
    smp *s = calloc(1, sizeof *s);
    if (!s) return SH_ENOMEM;
    s->cand = malloc((size_t)n_vocab * sizeof *s->cand);
    s->counts = calloc((size_t)n_vocab, sizeof *s->counts);
    if (!s->cand || !s->counts) {
        smp_free(s);
        return SH_ENOMEM;
    }
    s->p = *p;
    s->n_vocab = n_vocab;
    smp_reseed(s, p->seed);
    *out = s;
    return SH_OK;
}

void smp_free(smp *s) {
    if (!s) return;
    free(s->cand);
    free(s->counts);
    free(s);
}

/* ---- sampling ---- */

/* Total order: higher logit first, then lower id, so results never depend on qsort's
 * instability. */
static int cand_before(const smp_cand *a, const smp_cand *b) {
    if (a->logit != b->logit) return a->logit > b->logit;
    return a->id < b->id;
}

static int cand_cmp(const void *pa, const void *pb) {
    const smp_cand *a = pa, *b = pb;
    if (cand_before(a, b)) return -1;
    if (cand_before(b, a)) return 1;
    return 0;
}

/* Move the k best candidates (unordered) into c[0..k): quickselect, O(n) on average. */
static void select_top(smp_cand *c, int32_t n, int32_t k) {
    int32_t lo = 0, hi = n - 1;
    while (lo < hi) {
        smp_cand pivot = c[lo + (hi - lo) / 2];
        int32_t i = lo, j = hi;
        while (i <= j) {
            while (cand_before(&c[i], &pivot)) i++;
            while (cand_before(&pivot, &c[j])) j--;
            if (i <= j) {
                smp_cand t = c[i];
                c[i] = c[j];
                c[j] = t;
                i++;
                j--;
            }
        }
        /* now c[lo..j] are not after the pivot, c[i..hi] not before it */
        if (k - 1 <= j)
            hi = j;
        else if (k - 1 >= i)
            lo = i;
        else
            break;
    }
}

static void apply_penalties(smp *s, const int32_t *history, int64_t n_history) {
    const smp_params *p = &s->p;
    if (p->repeat_last_n == 0 || !history || n_history <= 0) return;
    if (p->repeat_penalty == 1.0f && p->presence_penalty == 0.0f && p->frequency_penalty == 0.0f)
        return;
    int64_t from = 0;
    if (p->repeat_last_n > 0 && n_history > p->repeat_last_n) from = n_history - p->repeat_last_n;
    for (int64_t i = from; i < n_history; i++)
        if (history[i] >= 0 && history[i] < s->n_vocab) s->counts[history[i]]++;
    /* cand[] is still indexed by id here; each distinct token is penalised once, and its count
     * reset so counts[] is all zero again for the next call */
    for (int64_t i = from; i < n_history; i++) {
        int32_t t = history[i];
        if (t < 0 || t >= s->n_vocab || s->counts[t] == 0) continue;
        float l = s->cand[t].logit;
        l = l > 0 ? l / p->repeat_penalty : l * p->repeat_penalty;
        l -= (float)s->counts[t] * p->frequency_penalty + p->presence_penalty;
        s->cand[t].logit = l;
        s->counts[t] = 0;
    }
}

int smp_sample(smp *s, const float *logits, const int32_t *history, int64_t n_history,
               int32_t *out_token) {
    const smp_params *p = &s->p;
    int32_t n = s->n_vocab;
    for (int32_t i = 0; i < n; i++) {
        float l = logits[i];
        if (isnan(l))
            l = -INFINITY;
        else if (l > FLT_MAX)
            l = FLT_MAX;
        s->cand[i].id = i;
        s->cand[i].logit = l;
    }
    apply_penalties(s, history, n_history);

    /* drop impossible tokens so the exponentials below are all finite */
    int32_t m = 0;
    for (int32_t i = 0; i < n; i++)
        if (s->cand[i].logit > -INFINITY) s->cand[m++] = s->cand[i];
    n = m;
    if (n == 0) return sh_error_set(SH_EINVAL, "sampler: every logit is -inf or NaN");

    if (p->temperature <= 0.0f) {
        int32_t best = 0;
        for (int32_t i = 1; i < n; i++)
            if (cand_before(&s->cand[i], &s->cand[best])) best = i;
        *out_token = s->cand[best].id;
        return SH_OK;
    }

    if (p->top_k > 0 && p->top_k < n) {
        select_top(s->cand, n, p->top_k);
        n = p->top_k;
    }

    float max = s->cand[0].logit;
    for (int32_t i = 1; i < n; i++)
        if (s->cand[i].logit > max) max = s->cand[i].logit;
    double sum = 0;
    for (int32_t i = 0; i < n; i++) sum += exp((double)s->cand[i].logit - max);

    /* min-p before sorting: both it and top-p keep a prefix of the sorted list, and top-p's
     * cumulative sums use the full normalisation (sum above), so filtering first gives the
     * same set as top-p then min-p while sorting far fewer candidates */
    if (p->min_p > 0.0f) {
        double cut = (double)max + log((double)p->min_p);
        m = 0;
        for (int32_t i = 0; i < n; i++)
            if ((double)s->cand[i].logit >= cut) s->cand[m++] = s->cand[i];
        n = m; /* the best token always survives */
    }

    if (p->top_p < 1.0f) {
        qsort(s->cand, (size_t)n, sizeof *s->cand, cand_cmp);
        double cum = 0;
        for (int32_t i = 0; i < n; i++) {
            cum += exp((double)s->cand[i].logit - max) / sum;
            if (cum >= p->top_p) {
                n = i + 1;
                break;
            }
        }
    }

    double wsum = 0;
    for (int32_t i = 0; i < n; i++) wsum += exp(((double)s->cand[i].logit - max) / p->temperature);
    double u = rng_uniform(s->rng) * wsum;
    int32_t pick = n - 1; /* rounding can leave u just above the running sum */
    double acc = 0;
    for (int32_t i = 0; i < n; i++) {
        acc += exp(((double)s->cand[i].logit - max) / p->temperature);
        if (u < acc) {
            pick = i;
            break;
        }
    }
    *out_token = s->cand[pick].id;
    return SH_OK;
}

/* ---- stop strings ---- */

int smp_stop_init(smp_stop *m, const char *const *stops, int n_stops) {
    memset(m, 0, sizeof *m);
    m->hit = -1;
    if (n_stops < 0 || n_stops > SMP_STOP_MAX)
        return sh_error_set(SH_ERANGE, "stop strings: %d given, at most %d", n_stops, SMP_STOP_MAX);
    for (int i = 0; i < n_stops; i++) {
        size_t len = strlen(stops[i]);
        if (len == 0) return sh_error_set(SH_EINVAL, "stop strings: empty string");
        if (len >= SMP_STOP_LEN_MAX)
            return sh_error_set(SH_ERANGE, "stop strings: %zu bytes, at most %d", len,
                                SMP_STOP_LEN_MAX - 1);
        memcpy(m->str[i], stops[i], len + 1);
        m->len[i] = len;
    }
    m->n = n_stops;
    return SH_OK;
}

int smp_stop_push(smp_stop *m, const char *text, size_t len, char *out, size_t cap, size_t *n_out) {
    *n_out = 0;
    if (m->hit >= 0) return 1;
    if (cap < m->n_hold + len) return sh_error_set(SH_EFULL, "stop strings: output too small");
    /* work on held + new text in out itself: no buffer of our own is needed */
    memcpy(out, m->hold, m->n_hold);
    memcpy(out + m->n_hold, text, len);
    size_t n = m->n_hold + len;
    m->n_hold = 0;

    /* earliest complete stop string wins */
    size_t best = n;
    for (int k = 0; k < m->n; k++) {
        const char *f = memmem(out, n, m->str[k], m->len[k]);
        if (f && (size_t)(f - out) < best) {
            best = (size_t)(f - out);
            m->hit = k;
        }
    }
    if (m->hit >= 0) {
        *n_out = best;
        return 1;
    }

    /* hold back the longest tail that some stop string starts with */
    size_t keep = 0;
    for (int k = 0; k < m->n; k++) {
        size_t maxl = m->len[k] - 1 < n ? m->len[k] - 1 : n;
        for (size_t l = maxl; l > keep; l--)
            if (memcmp(out + n - l, m->str[k], l) == 0) {
                keep = l;
                break;
            }
    }
    memcpy(m->hold, out + n - keep, keep);
    m->n_hold = keep;
    *n_out = n - keep;
    return 0;
}

size_t smp_stop_flush(smp_stop *m, char *out, size_t cap) {
    size_t n = 0;
    if (m->hit < 0) {
        n = m->n_hold < cap ? m->n_hold : cap;
        memcpy(out, m->hold, n);
    }
    m->n_hold = 0;
    return n;
}
