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

/* whether apply_penalties changes anything for this history */
static int penalties_apply(const smp_params *p, const int32_t *history, int64_t n_history) {
    if (p->repeat_last_n == 0 || !history || n_history <= 0) return 0;
    return !(p->repeat_penalty == 1.0f && p->presence_penalty == 0.0f &&
             p->frequency_penalty == 0.0f);
}

static void apply_penalties(smp *s, const int32_t *history, int64_t n_history) {
    const smp_params *p = &s->p;
    if (!penalties_apply(p, history, n_history)) return;
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

/* Load logits into cand[], apply the penalties and drop impossible tokens (so the exponentials
 * later are all finite). Returns the number of candidates left, in cand[0..n). */
static int32_t load_candidates(smp *s, const float *logits, const int32_t *history,
                               int64_t n_history) {
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
    int32_t m = 0;
    for (int32_t i = 0; i < n; i++)
        if (s->cand[i].logit > -INFINITY) s->cand[m++] = s->cand[i];
    return m;
}

/* The random draw among c[0..n) with weights exp((logit - max) / temperature). */
static int32_t draw(smp *s, const smp_cand *c, int32_t n, float max) {
    double t = s->p.temperature;
    double wsum = 0;
    for (int32_t i = 0; i < n; i++) wsum += exp(((double)c[i].logit - max) / t);
    double u = rng_uniform(s->rng) * wsum;
    int32_t pick = n - 1; /* rounding can leave u just above the running sum */
    double acc = 0;
    for (int32_t i = 0; i < n; i++) {
        acc += exp(((double)c[i].logit - max) / t);
        if (u < acc) {
            pick = i;
            break;
        }
    }
    return c[pick].id;
}

/* Greedy without penalties: the argmax of the logits as load_candidates maps them (NaN as
 * -inf, +inf as FLT_MAX), lowest id first among equals; no copy of the vocabulary (it was
 * ~4 % of a decoded token with a 152k vocabulary). -1 when every logit is -inf or NaN. */
static int32_t greedy_plain(const smp *s, const float *logits) {
    int32_t best = -1;
    float bl = -INFINITY;
    for (int32_t i = 0; i < s->n_vocab; i++) {
        float l = logits[i] > FLT_MAX ? FLT_MAX : logits[i];
        if (l > bl) { /* false for NaN */
            bl = l;
            best = i;
        }
    }
    return best;
}

int smp_sample(smp *s, const float *logits, const int32_t *history, int64_t n_history,
               int32_t *out_token) {
    const smp_params *p = &s->p;
    if (p->temperature <= 0.0f && !penalties_apply(p, history, n_history)) {
        int32_t best = greedy_plain(s, logits);
        if (best < 0) return sh_error_set(SH_EINVAL, "sampler: every logit is -inf or NaN");
        *out_token = best;
        return SH_OK;
    }
    int32_t n = load_candidates(s, logits, history, n_history), m;
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

    *out_token = draw(s, s->cand, n, max);
    return SH_OK;
}

/* ---- constrained sampling ----
 *
 * The result must be what smp_sample() would give if every refused token had logit -inf, without
 * asking accept() about the whole vocabulary each time (a JSON check per token is far dearer
 * than a comparison). Candidates are taken by logit in batches (the best 64, then 8x more each
 * time, the whole rest once a batch would cover half of it) and tested; small batches are
 * sorted and tested best first, large ones tested whole (sorting them would cost more than the
 * tests saved). The accepted ones collect, in rank order, at the front of cand[]. Scanning
 * stops as soon as the outcome is settled:
 *   - greedy: the first accepted token is the answer (exact);
 *   - top-k: k tokens accepted; top-k normalises over exactly these (exact);
 *   - otherwise the survivor count L = min(min-p length, top-p length) is bracketed: every
 *     unscanned token has logit <= the lowest one taken (bound), so min-p's length is known once
 *     bound is below its cut, and top-p's lies between its values for the accepted mass seen
 *     and that mass plus what the unscanned tokens could add (the smaller of their count times
 *     exp(bound - max) and their total mass, accepted or not); when both ends agree the
 *     survivors are exactly known (exact);
 *   - failing that, when the unscanned mass bound is below SMP_TAIL_EPS of the accepted mass
 *     (at temperature 1 and at the sampling temperature), the rest is treated as zero. This is
 *     the only approximation: it moves no probability by more than that relative amount, and
 *     only matters when neither top-k nor min-p settles the set (top-p alone, or no filter);
 *   - after the whole vocabulary everything is exact.
 * The draw itself is smp_sample()'s, over the survivors sorted best first (the order
 * smp_sample() uses whenever top-p is on, so both give the same token for the same seed). */

#define SMP_TAIL_EPS 1e-6

enum { SMP_BATCH_FIRST = 64, SMP_SORT_MAX = 512 };

/* Leading candidates of c[0..n) (sorted) that top-p keeps when the mass, relative to max,
 * is sum; n + 1 if the share never reaches top_p. */
static int32_t top_p_len(const smp_cand *c, int32_t n, float max, double sum, float top_p) {
    double cum = 0;
    for (int32_t i = 0; i < n; i++) {
        cum += exp((double)c[i].logit - max) / sum;
        if (cum >= top_p) return i + 1;
    }
    return n + 1;
}

/* Leading candidates of c[0..n) (sorted) at or above min-p's cut. */
static int32_t min_p_len(const smp_cand *c, int32_t n, double cut) {
    int32_t l = 0;
    while (l < n && (double)c[l].logit >= cut) l++;
    return l;
}

/* Can scanning stop? cand[0..na) are the accepted tokens so far, sorted, na >= 1 and below
 * top-k; cand[n_scanned..n_scanned + rem) are unscanned, none with a logit above bound. */
static int settled(const smp *s, int32_t na, float bound, int32_t n_scanned, int32_t rem) {
    const smp_params *p = &s->p;
    const smp_cand *c = s->cand;
    float max = c[0].logit;
    /* lengths bracket the true survivor count L: lo <= L <= hi; INT32_MAX is "unbounded" */
    int32_t m_lo = na, m_hi = INT32_MAX, p_lo = INT32_MAX, p_hi = INT32_MAX;
    if (p->min_p > 0.0f) {
        double cut = (double)max + log((double)p->min_p);
        if ((double)bound < cut) m_lo = m_hi = min_p_len(c, na, cut);
    }
    /* with top-k on, at most k - na more tokens enter its normalisation */
    double n_more = rem;
    if (p->top_k > 0 && p->top_k - na < rem) n_more = p->top_k - na;
    double s1 = 0, st = 0;
    for (int32_t i = 0; i < na; i++) {
        s1 += exp((double)c[i].logit - max);
        st += exp(((double)c[i].logit - max) / p->temperature);
    }
    /* mass the unscanned tokens could add: at most n_more at the bound each, and at most all
     * of them (accepted or not); the second costs a pass over them, worth it only when top-k
     * does not already bound their number */
    double u1 = n_more * exp((double)bound - max);
    double ut = n_more * exp(((double)bound - max) / p->temperature);
    if (n_more == rem && u1 > SMP_TAIL_EPS * s1) {
        double a1 = 0, at = 0;
        for (int32_t i = n_scanned; i < n_scanned + rem; i++) {
            a1 += exp((double)c[i].logit - max);
            at += exp(((double)c[i].logit - max) / p->temperature);
        }
        if (a1 < u1) u1 = a1;
        if (at < ut) ut = at;
    }
    if (p->top_p < 1.0f) {
        p_lo = top_p_len(c, na, max, s1, p->top_p);
        if (p_lo > na) p_lo = na; /* rounding: the seen mass is the whole of s1 */
        p_hi = top_p_len(c, na, max, s1 + u1, p->top_p);
        if (p_hi > na) p_hi = INT32_MAX;
    }
    int32_t lo = m_lo < p_lo ? m_lo : p_lo, hi = m_hi < p_hi ? m_hi : p_hi;
    if (hi <= na && lo == hi) return 1;
    return u1 <= SMP_TAIL_EPS * s1 && (hi <= na || ut <= SMP_TAIL_EPS * st);
}

int smp_sample_constrained(smp *s, const float *logits, const int32_t *history, int64_t n_history,
                           smp_accept_fn accept, void *user, int32_t *out_token) {
    const smp_params *p = &s->p;
    if (!accept) return smp_sample(s, logits, history, n_history, out_token);
    int32_t n = load_candidates(s, logits, history, n_history);
    if (n == 0) return sh_error_set(SH_EINVAL, "sampler: every logit is -inf or NaN");
    int greedy = p->temperature <= 0.0f;
    int32_t k = greedy ? 1 : p->top_k > 0 ? p->top_k : INT32_MAX;

    smp_cand *c = s->cand;
    int32_t na = 0, done = 0, batch = SMP_BATCH_FIRST;
    int32_t unsorted_from = -1; /* accepted tokens from here on still need sorting */
    while (done < n) {
        int32_t rem = n - done;
        if (batch >= rem / 2) {
            /* the whole rest: test it unordered, sort only what passes */
            unsorted_from = na;
            for (int32_t i = done; i < n; i++)
                if (accept(user, c[i].id)) c[na++] = c[i];
            done = n;
            break;
        }
        select_top(c + done, rem, batch);
        float bound = c[done].logit;
        for (int32_t i = done + 1; i < done + batch; i++)
            if (c[i].logit < bound) bound = c[i].logit;
        /* na <= done + i always, so moving accepted ones forward never overwrites unread ones */
        if (batch <= SMP_SORT_MAX) {
            /* in rank order, to stop at the k-th accepted token */
            qsort(c + done, (size_t)batch, sizeof *c, cand_cmp);
            for (int32_t i = done; i < done + batch && na < k; i++)
                if (accept(user, c[i].id)) c[na++] = c[i];
        } else {
            /* sorting a large batch costs more than testing all of it */
            int32_t from = na;
            for (int32_t i = done; i < done + batch; i++)
                if (accept(user, c[i].id)) c[na++] = c[i];
            qsort(c + from, (size_t)(na - from), sizeof *c, cand_cmp);
        }
        done += batch;
        if (na >= k || (na > 0 && settled(s, na, bound, done, n - done))) break;
        batch = batch > INT32_MAX / 8 ? INT32_MAX : batch * 8;
    }
    if (na == 0) return sh_error_set(SH_ENOTFOUND, "sampler: no token allowed by the constraint");
    if (unsorted_from >= 0)
        qsort(c + unsorted_from, (size_t)(na - unsorted_from), sizeof *c, cand_cmp);
    if (na > k) na = k;
    if (greedy) {
        *out_token = c[0].id;
        return SH_OK;
    }

    /* the chain of smp_sample() on the sorted accepted candidates */
    float max = c[0].logit;
    double sum = 0;
    for (int32_t i = 0; i < na; i++) sum += exp((double)c[i].logit - max);
    if (p->min_p > 0.0f) na = min_p_len(c, na, (double)max + log((double)p->min_p));
    if (p->top_p < 1.0f) {
        int32_t l = top_p_len(c, na, max, sum, p->top_p);
        if (l < na) na = l;
    }
    *out_token = draw(s, c, na, max);
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
