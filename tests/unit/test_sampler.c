/* test_sampler.c - sampling chain and stop-string matcher. */
#include "testutil.h"

#include <float.h>
#include <math.h>

#include "base/status.h"
#include "engine/sampler.h"

enum { NV = 64 };

static void fill_logits(float *l, uint64_t salt) {
    uint64_t x = salt * 2654435761u + 12345;
    for (int i = 0; i < NV; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        l[i] = (float)((x >> 40) % 1000) / 100.0f - 5.0f;
    }
}

static int argmax(const float *l) {
    int b = 0;
    for (int i = 1; i < NV; i++)
        if (l[i] > l[b]) b = i;
    return b;
}

static smp *make(const smp_params *p) {
    smp *s = NULL;
    assert_int_equal(smp_init(&s, NV, p), SH_OK);
    return s;
}

static void test_greedy(void **st) {
    (void)st;
    smp_params p;
    smp_params_default(&p);
    p.temperature = 0;
    smp *s = make(&p);
    float l[NV];
    for (uint64_t k = 0; k < 20; k++) {
        fill_logits(l, k);
        int32_t t = -1;
        assert_int_equal(smp_sample(s, l, NULL, 0, &t), SH_OK);
        assert_int_equal(t, argmax(l));
    }
    smp_free(s);
}

/* Greedy without penalties skips the candidate copy: it must pick what the full path picks
 * (a penalty of 1.0001 on a token that is never in play forces the full path) on ties, NaN,
 * +inf next to FLT_MAX and all -inf. */
static void test_greedy_fast_path(void **st) {
    (void)st;
    smp_params p, q;
    smp_params_default(&p);
    p.temperature = 0;
    q = p;
    q.repeat_penalty = 1.0001f;
    smp *fast = make(&p), *full = make(&q);
    float l[NV];
    int32_t hist[1] = {NV - 1};
    for (int c = 0; c < 6; c++) {
        for (int i = 0; i < NV; i++) l[i] = (float)(i % 7) - 10.0f;
        l[NV - 1] = -1000.0f; /* the penalised token: never the best */
        if (c == 1) {         /* tie: lowest id */
            l[5] = 3.0f;
            l[9] = 3.0f;
        }
        if (c == 2) { /* NaN ignored */
            l[4] = NAN;
            l[6] = 2.0f;
        }
        if (c == 3) { /* +inf counts as FLT_MAX: the lower id wins */
            l[3] = FLT_MAX;
            l[8] = INFINITY;
        }
        if (c == 4) {
            l[2] = INFINITY;
            l[8] = FLT_MAX;
        }
        if (c == 5)
            for (int i = 0; i < NV; i++) l[i] = -INFINITY;
        int32_t a = -7, b = -7;
        int ra = smp_sample(fast, l, NULL, 0, &a), rb = smp_sample(full, l, hist, 1, &b);
        assert_int_equal(ra, rb);
        if (ra == SH_OK) assert_int_equal(a, b);
    }
    smp_free(fast);
    smp_free(full);
}

static void test_topk1_is_greedy(void **st) {
    (void)st;
    smp_params p;
    smp_params_default(&p);
    p.top_k = 1;
    p.temperature = 1.5f;
    p.top_p = 1.0f;
    p.min_p = 0;
    smp *s = make(&p);
    float l[NV];
    for (uint64_t k = 0; k < 50; k++) {
        fill_logits(l, k);
        int32_t t = -1;
        assert_int_equal(smp_sample(s, l, NULL, 0, &t), SH_OK);
        assert_int_equal(t, argmax(l));
    }
    smp_free(s);
}

static void run_seq(uint64_t seed, int32_t *seq, int n) {
    smp_params p;
    smp_params_default(&p);
    p.temperature = 1.0f;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0;
    p.seed = seed;
    smp *s = make(&p);
    float l[NV];
    for (int i = 0; i < NV; i++) l[i] = 0; /* uniform: every draw is pure randomness */
    for (int i = 0; i < n; i++) assert_int_equal(smp_sample(s, l, NULL, 0, &seq[i]), SH_OK);
    smp_free(s);
}

static void test_seed(void **st) {
    (void)st;
    int32_t a[64], b[64], c[64];
    run_seq(42, a, 64);
    run_seq(42, b, 64);
    run_seq(43, c, 64);
    assert_memory_equal(a, b, sizeof a);
    assert_memory_not_equal(a, c, sizeof a);
    /* reseed restarts the sequence */
    smp_params p;
    smp_params_default(&p);
    p.temperature = 1.0f;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0;
    p.seed = 7;
    smp *s = make(&p);
    float l[NV] = {0};
    int32_t x[16], y[16];
    for (int i = 0; i < 16; i++) smp_sample(s, l, NULL, 0, &x[i]);
    smp_reseed(s, 7);
    for (int i = 0; i < 16; i++) smp_sample(s, l, NULL, 0, &y[i]);
    assert_memory_equal(x, y, sizeof x);
    smp_free(s);
}

/* probabilities: token 0: ~0.5, 1: ~0.3, 2: ~0.15, others share the rest */
static void skewed(float *l) {
    for (int i = 0; i < NV; i++) l[i] = logf(0.05f / (NV - 3));
    l[0] = logf(0.5f);
    l[1] = logf(0.3f);
    l[2] = logf(0.15f);
}

static void histogram(const smp_params *p, int *hist, int draws) {
    smp *s = make(p);
    float l[NV];
    skewed(l);
    memset(hist, 0, NV * sizeof *hist);
    for (int i = 0; i < draws; i++) {
        int32_t t;
        assert_int_equal(smp_sample(s, l, NULL, 0, &t), SH_OK);
        assert_true(t >= 0 && t < NV);
        hist[t]++;
    }
    smp_free(s);
}

static void test_top_p_min_p(void **st) {
    (void)st;
    smp_params p;
    smp_params_default(&p);
    p.temperature = 1.0f;
    p.top_k = 0;
    p.min_p = 0;
    p.seed = 1;
    int hist[NV];

    /* no filter: the tail shows up */
    p.top_p = 1.0f;
    histogram(&p, hist, 20000);
    int tail = 0;
    for (int i = 3; i < NV; i++) tail += hist[i];
    assert_true(tail > 500);

    /* top_p 0.7: 0.5 + 0.3 reaches it, so only tokens 0 and 1 */
    p.top_p = 0.7f;
    histogram(&p, hist, 20000);
    assert_true(hist[0] > 0 && hist[1] > 0);
    for (int i = 2; i < NV; i++) assert_int_equal(hist[i], 0);
    /* renormalised 0.5 : 0.3 */
    assert_true(fabs((double)hist[0] / 20000 - 0.625) < 0.02);

    /* min_p 0.2: threshold 0.1, keeps 0, 1, 2 */
    p.top_p = 1.0f;
    p.min_p = 0.2f;
    histogram(&p, hist, 20000);
    assert_true(hist[0] > 0 && hist[1] > 0 && hist[2] > 0);
    for (int i = 3; i < NV; i++) assert_int_equal(hist[i], 0);

    /* min_p 0.5: threshold 0.25, keeps 0 and 1 */
    p.min_p = 0.5f;
    histogram(&p, hist, 5000);
    for (int i = 2; i < NV; i++) assert_int_equal(hist[i], 0);

    /* top_k 2 with a high temperature still never leaves the top two */
    p.min_p = 0;
    p.top_k = 2;
    p.temperature = 5.0f;
    histogram(&p, hist, 5000);
    for (int i = 2; i < NV; i++) assert_int_equal(hist[i], 0);
    assert_true(hist[1] > 1500); /* temperature flattens 0.5:0.3 towards 1:1 */
}

static void test_penalties(void **st) {
    (void)st;
    float l[NV];
    for (int i = 0; i < NV; i++) l[i] = 0;
    l[5] = 3.0f;
    l[6] = 2.5f;
    int32_t hist[] = {5, 5, 5, 9};
    int32_t t;

    smp_params p;
    smp_params_default(&p);
    p.temperature = 0;
    smp *s = make(&p);
    assert_int_equal(smp_sample(s, l, hist, 4, &t), SH_OK);
    assert_int_equal(t, 5); /* no penalties by default */
    smp_free(s);

    p.repeat_penalty = 1.3f; /* 3.0 / 1.3 = 2.31 < 2.5 */
    s = make(&p);
    assert_int_equal(smp_sample(s, l, hist, 4, &t), SH_OK);
    assert_int_equal(t, 6);
    /* the window only sees the last token (9): 5 is not penalised */
    smp_free(s);
    p.repeat_last_n = 1;
    s = make(&p);
    assert_int_equal(smp_sample(s, l, hist, 4, &t), SH_OK);
    assert_int_equal(t, 5);
    smp_free(s);

    /* frequency: 3 * 0.2 = 0.6 brings 3.0 to 2.4 < 2.5 */
    smp_params_default(&p);
    p.temperature = 0;
    p.frequency_penalty = 0.2f;
    s = make(&p);
    assert_int_equal(smp_sample(s, l, hist, 4, &t), SH_OK);
    assert_int_equal(t, 6);
    smp_free(s);
    /* presence counts once: 0.2 brings 3.0 to 2.8 > 2.5 */
    p.frequency_penalty = 0;
    p.presence_penalty = 0.2f;
    s = make(&p);
    assert_int_equal(smp_sample(s, l, hist, 4, &t), SH_OK);
    assert_int_equal(t, 5);
    /* counts are reset between calls: a second call gives the same answer */
    assert_int_equal(smp_sample(s, l, hist, 4, &t), SH_OK);
    assert_int_equal(t, 5);
    smp_free(s);
    /* negative penalty favours repeats; out-of-vocab ids in the history are ignored */
    p.presence_penalty = -1.0f;
    s = make(&p);
    int32_t h2[] = {7, -3, 1000};
    assert_int_equal(smp_sample(s, l, h2, 3, &t), SH_OK);
    assert_int_equal(t, 5);
    int32_t h3[] = {8};
    p.presence_penalty = -3.5f;
    smp_free(s);
    s = make(&p);
    assert_int_equal(smp_sample(s, l, h3, 1, &t), SH_OK);
    assert_int_equal(t, 8);
    smp_free(s);
}

static void test_bad_input(void **st) {
    (void)st;
    smp_params p;
    smp_params_default(&p);
    smp *s = NULL;
    assert_int_equal(smp_init(&s, 0, &p), SH_EINVAL);
    p.top_p = NAN;
    assert_int_equal(smp_init(&s, NV, &p), SH_EINVAL);
    assert_null(s);
    smp_params_default(&p);
    s = make(&p);
    float l[NV];
    for (int i = 0; i < NV; i++) l[i] = -INFINITY;
    int32_t t;
    assert_int_equal(smp_sample(s, l, NULL, 0, &t), SH_EINVAL);
    l[17] = NAN;
    l[30] = -1.0f; /* the only finite logit wins whatever the settings */
    assert_int_equal(smp_sample(s, l, NULL, 0, &t), SH_OK);
    assert_int_equal(t, 30);
    smp_free(s);
}

/* ---- stop strings ---- */

/* Feed text split at every pair of points (three pieces), check the released text. */
static void stop_all_splits(const char *const *stops, int n, const char *text, const char *want,
                            int want_hit) {
    size_t len = strlen(text);
    char out[1024], buf[SMP_STOP_LEN_MAX + 512];
    for (size_t a = 0; a <= len; a++)
        for (size_t b = a; b <= len; b++) {
            smp_stop m;
            assert_int_equal(smp_stop_init(&m, stops, n), SH_OK);
            size_t cuts[4] = {0, a, b, len}, total = 0;
            int hit = 0;
            for (int k = 0; k < 3; k++) {
                size_t got;
                int r =
                    smp_stop_push(&m, text + cuts[k], cuts[k + 1] - cuts[k], buf, sizeof buf, &got);
                assert_true(r == 0 || r == 1);
                if (r == 1) hit = 1;
                memcpy(out + total, buf, got);
                total += got;
            }
            total += smp_stop_flush(&m, out + total, sizeof out - total);
            out[total] = 0;
            assert_string_equal(out, want);
            assert_int_equal(hit, want_hit);
        }
}

static void test_stop(void **st) {
    (void)st;
    const char *s1[] = {"</s>", "\nUser:", "ééx"};
    stop_all_splits(s1, 3, "Hello <world> and </ok> then\nUse it</s> after",
                    "Hello <world> and </ok> then\nUse it", 1);
    stop_all_splits(s1, 3, "no stop here <", "no stop here <", 0);
    stop_all_splits(s1, 3, "tail </", "tail </", 0);
    stop_all_splits(s1, 3, "a\nUser: b</s>", "a", 1);
    stop_all_splits(s1, 3, "café éé ééx!", "café éé ", 1);
    /* overlapping candidates: "abc" must be found inside "ababc" */
    const char *s2[] = {"abc"};
    stop_all_splits(s2, 1, "xxababcyy", "xxab", 1);
    stop_all_splits(s2, 1, "", "", 0);
    /* no stop strings: everything passes straight through */
    stop_all_splits(NULL, 0, "plain </s>", "plain </s>", 0);

    /* immediate release of text that cannot start a stop string */
    smp_stop m;
    assert_int_equal(smp_stop_init(&m, s1, 3), SH_OK);
    char buf[512];
    size_t got;
    assert_int_equal(smp_stop_push(&m, "abc<", 4, buf, sizeof buf, &got), 0);
    assert_int_equal(got, 3); /* "<" may begin "</s>" */
    assert_int_equal(smp_stop_push(&m, "x </", 4, buf, sizeof buf, &got), 0);
    assert_int_equal(got, 3);
    assert_memory_equal(buf, "<x ", 3);
    assert_int_equal(smp_stop_push(&m, "s", 1, buf, 2, &got), SH_EFULL);

    /* limits */
    const char *empty[] = {""};
    assert_int_equal(smp_stop_init(&m, empty, 1), SH_EINVAL);
    char longs[SMP_STOP_LEN_MAX + 1];
    memset(longs, 'a', SMP_STOP_LEN_MAX);
    longs[SMP_STOP_LEN_MAX] = 0;
    const char *lp[] = {longs};
    assert_int_equal(smp_stop_init(&m, lp, 1), SH_ERANGE);
    assert_int_equal(smp_stop_init(&m, s1, SMP_STOP_MAX + 1), SH_ERANGE);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy),          cmocka_unit_test(test_greedy_fast_path),
        cmocka_unit_test(test_topk1_is_greedy), cmocka_unit_test(test_seed),
        cmocka_unit_test(test_top_p_min_p),     cmocka_unit_test(test_penalties),
        cmocka_unit_test(test_bad_input),       cmocka_unit_test(test_stop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
