/* test_jsonc.c - the incremental JSON validator (every prefix of valid documents, invalid
 * documents with the exact byte where they fail, numbers, escapes, UTF-8, depth, whitespace
 * bound, random documents and mutations against jansson) and constrained sampling (against
 * smp_sample() on masked logits, and JSON generation over the real Qwen2 vocabulary). */
#include "testutil.h"

#include <jansson.h>
#include <math.h>

#include "base/status.h"
#include "engine/gguf.h"
#include "engine/jsonc.h"
#include "engine/sampler.h"
#include "engine/tokenizer.h"

/* ---- helpers ---- */

static uint64_t rnd_state;
static uint64_t rnd(void) {
    rnd_state = rnd_state * 6364136223846793005ull + 1442695040888963407ull;
    return rnd_state >> 33;
}
static double rnd_unit(void) {
    return (double)rnd() / (double)(1ull << 31);
}

/* Index of the first byte that makes the input invalid, -1 if none. */
static long fail_at(const char *s, size_t n, int require_object) {
    jsonc j;
    jsonc_init(&j, require_object);
    for (size_t i = 0; i < n; i++)
        if (jsonc_feed(&j, s + i, 1)) return (long)i;
    return -1;
}

static int valid_complete(const char *s, size_t n, int require_object) {
    jsonc j;
    jsonc_init(&j, require_object);
    return jsonc_feed(&j, s, n) == 0 && jsonc_complete(&j);
}

/* 1 if jansson parses it, 0 if not, -1 if only because a number does not fit its types (the
 * grammar has no limit there) */
static int jansson_ok(const char *s, size_t n, int require_object) {
    json_error_t e;
    json_t *v = json_loadb(s, n, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
    int ok = v && (!require_object || json_is_object(v));
    if (!v && (strstr(e.text, "overflow") || strstr(e.text, "too big"))) ok = -1;
    json_decref(v);
    return ok;
}

/* Every proper prefix is valid and incomplete, the whole is valid and complete, fed at once or
 * byte by byte; jansson agrees. */
static void check_valid_doc(const char *s, int require_object) {
    size_t n = strlen(s), end = n; /* the top-level value ends at end */
    while (end > 0 && strchr(" \t\r\n", s[end - 1])) end--;
    for (size_t l = 0; l <= n; l++) {
        jsonc j;
        jsonc_init(&j, require_object);
        if (jsonc_feed(&j, s, l) != 0) fail_msg("prefix %zu of <%s> refused", l, s);
        if (jsonc_complete(&j) != (l >= end)) fail_msg("prefix %zu of <%s>: complete wrong", l, s);
    }
    assert_int_equal(fail_at(s, n, require_object), -1);
    if (jansson_ok(s, n, require_object) != 1) fail_msg("jansson refuses <%s>", s);
}

/* ---- validator ---- */

static const char *const valid_objects[] = {
    "{}",
    " { } ",
    "\n\t{\r\n}\n",
    "{\"a\":1}",
    "{\"a\" : [1, 2.5, -3e4, true, false, null, \"x\"], \"b\": {\"c\": {}}}",
    "{\"\":\"\"}",
    "{\"k\":[[],[[]],{},[{}]]}",
    "{\"esc\":\"\\\" \\\\ \\/ \\b \\f \\n \\r \\t\"}",
    "{\"u\":\"\\u0041\\u00e9\\u20AC\\uD83D\\uDE00\\u0000\"}",
    "{\"utf8\":\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xef\xbf\xbf \xf4\x8f\xbf\xbf\"}",
    "{\"n\":[0,-0,0.0,-0.5,1e0,1E+2,1e-2,12345678,3.25e10,0e0]}",
    "{\"a\":{\"b\":{\"c\":[1,{\"d\":null}]}},\"e\":\"\\u00e9\"}",
    "{\n  \"name\": \"x\",\n  \"list\": [\n    1,\n    2\n  ]\n}",
};

static void test_valid_objects(void **st) {
    (void)st;
    for (size_t i = 0; i < sizeof valid_objects / sizeof *valid_objects; i++) {
        check_valid_doc(valid_objects[i], 1);
        check_valid_doc(valid_objects[i], 0);
    }
}

static void test_valid_values(void **st) {
    (void)st;
    /* top-level values other than objects (numbers apart: their prefixes can be complete) */
    static const char *const docs[] = {
        "[]",      " [1, [2], {\"a\": []}] ",
        "\"str\"", "\"\\uD834\\uDD1E\"",
        "true",    "false",
        "null",    " null ",
    };
    for (size_t i = 0; i < sizeof docs / sizeof *docs; i++) check_valid_doc(docs[i], 0);
    /* ... which the object mode refuses at the first byte of the value */
    assert_int_equal(fail_at("[]", 2, 1), 0);
    assert_int_equal(fail_at("  \"a\"", 5, 1), 2);
    assert_int_equal(fail_at("true", 4, 1), 0);
    assert_int_equal(fail_at("1", 1, 1), 0);
}

typedef struct {
    const char *s;
    long at; /* first failing byte; -1: valid prefix but not complete */
} bad_case;

static void check_bad(const bad_case *c, size_t n, int require_object) {
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(c[i].s);
        long at = fail_at(c[i].s, len, require_object);
        if (at != c[i].at) fail_msg("<%s>: fails at %ld, want %ld", c[i].s, at, c[i].at);
        if (valid_complete(c[i].s, len, require_object)) fail_msg("<%s> complete", c[i].s);
        if (jansson_ok(c[i].s, len, require_object) == 1) fail_msg("jansson accepts <%s>", c[i].s);
    }
}

static void test_invalid(void **st) {
    (void)st;
    static const bad_case objs[] = {
        {"", -1},
        {"   ", -1},
        {"{", -1},
        {"{\"a\"", -1},
        {"{\"a\":", -1},
        {"{\"a\":1", -1},
        {"{\"a\":1,", -1},
        {"{\"a\":[1,2]", -1},
        {"{\"a", -1},
        {"{,}", 1},
        {"{\"a\":1,}", 7},
        {"{\"a\" 1}", 5},
        {"{\"a\":}", 5},
        {"{a:1}", 1},
        {"{'a':1}", 1},
        {"{\"a\":1}}", 7},
        {"{\"a\":1} x", 8},
        {"{}{}", 2},
        {"{\"a\":[1,]}", 8},
        {"{\"a\":[,1]}", 6},
        {"{\"a\":[1 2]}", 8},
        {"{\"a\":[1}", 7},
        {"{\"a\":{]}", 6},
        {"{\"a\":tru}", 8},
        {"{\"a\":True}", 5},
        {"{\"a\":nul1}", 8},
        {"{\"a\":falsey}", 10},
        {"{\"a\":01}", 6},
        {"{\"a\":-01}", 7},
        {"{\"a\":+1}", 5},
        {"{\"a\":.5}", 5},
        {"{\"a\":1.}", 7},
        {"{\"a\":1.e5}", 7},
        {"{\"a\":1e}", 7},
        {"{\"a\":1e+}", 8},
        {"{\"a\":1e5.0}", 8},
        {"{\"a\":1.5.0}", 8},
        {"{\"a\":--1}", 6},
        {"{\"a\":-}", 6},
        {"{\"a\":0x10}", 6},
        {"{\"a\":Infinity}", 5},
        {"{\"a\":NaN}", 5},
        {"{\"a\":\"x\ty\"}", 7},
        {"{\"a\":\"x\ny\"}", 7},
        {"{\"a\":\"\\x\"}", 7},
        {"{\"a\":\"\\U0041\"}", 7},
        {"{\"a\":\"\\u00G0\"}", 10},
        {"{\"a\":\"\\u12\"}", 10},
        /* surrogates: a lone low one fails at its second digit, a high one needs \uDC00-DFFF */
        {"{\"a\":\"\\uDC00\"}", 9},
        {"{\"a\":\"\\udfff\"}", 9},
        {"{\"a\":\"\\uD800\"}", 12},
        {"{\"a\":\"\\uD800x\"}", 12},
        {"{\"a\":\"\\uD800\\n\"}", 13},
        {"{\"a\":\"\\uD800\\u0041\"}", 14},
        {"{\"a\":\"\\uD800\\uD800\"}", 15},
        {"{\"a\":\"\\uDBFF\\uE000\"}", 14},
        /* UTF-8 */
        {"{\"a\":\"\x80\"}", 6},
        {"{\"a\":\"\xc0\xaf\"}", 6},
        {"{\"a\":\"\xc1\xbf\"}", 6},
        {"{\"a\":\"\xc3\"}", 7},
        {"{\"a\":\"\xc3\xc3\"}", 7},
        {"{\"a\":\"\xe0\x80\x80\"}", 7},
        {"{\"a\":\"\xe0\x9f\xbf\"}", 7},
        {"{\"a\":\"\xed\xa0\x80\"}", 7},
        {"{\"a\":\"\xe2\x82\"}", 8},
        {"{\"a\":\"\xf0\x8f\xbf\xbf\"}", 7},
        {"{\"a\":\"\xf4\x90\x80\x80\"}", 7},
        {"{\"a\":\"\xf5\x80\x80\x80\"}", 6},
        {"{\"a\":\"\xff\"}", 6},
        {"{\xc3\xa9:1}", 1},
        {"\xef\xbb\xbf{}", 0}, /* no byte order mark */
        {"{\"a\":\"b\"\x01}", 8},
    };
    check_bad(objs, sizeof objs / sizeof *objs, 1);
    static const bad_case vals[] = {
        {"-", -1},  {"1.", -1},   {"1e", -1},  {"1e-", -1},   {"\"", -1}, {"\"\\u12", -1},
        {"tr", -1}, {"[", -1},    {"01", 1},   {"1 2", 2},    {"- 1", 1}, {"\"a\" \"b\"", 4},
        {"[]]", 2}, {"nulll", 4}, {"1.2.", 3}, {"[1,,2]", 3}, {"]", 0},   {"\x01", 0},
    };
    check_bad(vals, sizeof vals / sizeof *vals, 0);
}

/* Numbers at top level: prefixes that end where a number can end are complete. */
static void test_numbers(void **st) {
    (void)st;
    static const struct {
        const char *s;
        int prefix_ok, complete;
    } cases[] = {
        {"0", 1, 1},    {"-", 1, 0},   {"-0", 1, 1},    {"-0.", 1, 0},
        {"-0.0", 1, 1}, {"7", 1, 1},   {"123", 1, 1},   {"1.", 1, 0},
        {"1.5", 1, 1},  {"1e", 1, 0},  {"1E", 1, 0},    {"1e+", 1, 0},
        {"1e-", 1, 0},  {"1e5", 1, 1}, {"1E+05", 1, 1}, {"1.5e-3", 1, 1},
        {"0e0", 1, 1},  {"00", 0, 0},  {"-00", 0, 0},   {"0.", 1, 0},
        {"1..", 0, 0},  {"1ee", 0, 0}, {"1e+-", 0, 0},  {"1e5e", 0, 0},
        {"1.e", 0, 0},  {"-.", 0, 0},  {"+1", 0, 0},    {"-a", 0, 0},
        {"1 ", 1, 1},   {" 1 ", 1, 1}, {"1 1", 0, 0},   {"12345678901234567890", 1, 1},
        {"1\n", 1, 1},  {"1,", 0, 0},  {"-1e-0", 1, 1}, {"0123", 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const char *s = cases[i].s;
        size_t n = strlen(s);
        int ok = fail_at(s, n, 0) < 0;
        if (ok != cases[i].prefix_ok) fail_msg("<%s>: valid prefix %d", s, ok);
        if (valid_complete(s, n, 0) != cases[i].complete) fail_msg("<%s>: complete wrong", s);
        /* completeness agrees with jansson wherever jansson can represent the value */
        if (n < 18 && valid_complete(s, n, 0) != jansson_ok(s, n, 0))
            fail_msg("<%s>: jansson disagrees", s);
        /* a number never completes a document by itself in object mode */
        assert_int_equal(fail_at(s, n, 1), s[0] == ' ' ? 1 : 0);
    }
    /* numbers inside containers end at the delimiter */
    check_valid_doc("{\"a\":-0.5e+10}", 1);
    check_valid_doc("[0,1,-1,1.0e1]", 0);
    jsonc j;
    jsonc_init(&j, 0);
    assert_int_equal(jsonc_feed(&j, "12", 2), 0);
    assert_true(jsonc_complete(&j));
    assert_false(jsonc_done(&j)); /* more digits may come */
    assert_int_equal(jsonc_feed(&j, " ", 1), 0);
    assert_true(jsonc_done(&j));
}

static void test_depth(void **st) {
    (void)st;
    char buf[2 * JSONC_DEPTH_MAX + 8];
    memset(buf, '[', JSONC_DEPTH_MAX);
    memset(buf + JSONC_DEPTH_MAX, ']', JSONC_DEPTH_MAX);
    buf[2 * JSONC_DEPTH_MAX] = 0;
    check_valid_doc(buf, 0);
    /* one more level is refused at the opening bracket */
    memset(buf, '[', JSONC_DEPTH_MAX + 1);
    assert_int_equal(fail_at(buf, JSONC_DEPTH_MAX + 1, 0), JSONC_DEPTH_MAX);
    /* objects and arrays mixed, in object mode */
    char obj[8 * JSONC_DEPTH_MAX];
    size_t n = 0;
    for (int i = 0; i < JSONC_DEPTH_MAX; i++)
        n += (size_t)sprintf(obj + n, i % 2 ? "[" : "{\"k\":");
    size_t open = n;
    for (int i = JSONC_DEPTH_MAX - 1; i >= 0; i--) obj[n++] = i % 2 ? ']' : '}';
    obj[n] = 0;
    check_valid_doc(obj, 1);
    memcpy(obj + open, "{", 2);
    assert_int_equal(fail_at(obj, open + 1, 1), (long)open);
}

static void test_ws_max(void **st) {
    (void)st;
    jsonc j;
    jsonc_init(&j, 1);
    jsonc_set_ws_max(&j, 3);
    const char *d = "   {   \"a  b   c\"   :\n\t [ 1   ,   2 ]   }   ";
    assert_int_equal(jsonc_feed(&j, d, strlen(d)), 0);
    assert_true(jsonc_complete(&j));
    jsonc k = j;
    assert_int_equal(jsonc_feed(&k, " ", 1), -1);
    jsonc_init(&j, 1);
    jsonc_set_ws_max(&j, 3);
    assert_int_equal(jsonc_feed(&j, "{    }", 6), -1);
    /* a number ended by whitespace counts that whitespace once */
    jsonc_init(&j, 0);
    jsonc_set_ws_max(&j, 2);
    assert_int_equal(jsonc_feed(&j, "[1  ]", 5), 0);
}

/* ---- random documents against jansson ---- */

static void gen_string(char *b, size_t *n) {
    static const char *const parts[] = {"a",
                                        "Z",
                                        " ",
                                        "\\\"",
                                        "\\\\",
                                        "\\/",
                                        "\\n",
                                        "\\t",
                                        "\\u0041",
                                        "\\u00e9",
                                        "\\uD83D\\uDE00",
                                        "\xc3\xa9",
                                        "\xe2\x82\xac",
                                        "\xf0\x9f\x98\x80",
                                        "{",
                                        "]",
                                        ":",
                                        ","};
    b[(*n)++] = '"';
    int len = (int)(rnd() % 5);
    for (int i = 0; i < len; i++) {
        const char *p = parts[rnd() % (sizeof parts / sizeof *parts)];
        memcpy(b + *n, p, strlen(p));
        *n += strlen(p);
    }
    b[(*n)++] = '"';
}

static void gen_ws(char *b, size_t *n) {
    static const char ws[] = " \t\n\r";
    while (rnd() % 4 == 0) b[(*n)++] = ws[rnd() % 4];
}

static void gen_value(char *b, size_t *n, int depth, int object) {
    int kind = object ? 0 : (int)(rnd() % (depth > 4 ? 5 : 7));
    gen_ws(b, n);
    switch (kind) {
    case 0:
    case 1: {
        int obj = kind == 0;
        b[(*n)++] = obj ? '{' : '[';
        int m = (int)(rnd() % 4);
        for (int i = 0; i < m; i++) {
            if (i) b[(*n)++] = ',';
            if (obj) {
                gen_ws(b, n);
                gen_string(b, n);
                gen_ws(b, n);
                b[(*n)++] = ':';
            }
            gen_value(b, n, depth + 1, 0);
        }
        gen_ws(b, n);
        b[(*n)++] = obj ? '}' : ']';
        break;
    }
    case 2:
        gen_string(b, n);
        break;
    case 3: {
        static const char *const lit[] = {"true", "false", "null"};
        const char *l = lit[rnd() % 3];
        memcpy(b + *n, l, strlen(l));
        *n += strlen(l);
        break;
    }
    default: {
        static const char *const num[] = {"0",   "-0",   "7",       "-12", "3.5",      "0.25",
                                          "1e5", "2E-3", "-4.5e+2", "99",  "123456789"};
        const char *l = num[rnd() % (sizeof num / sizeof *num)];
        memcpy(b + *n, l, strlen(l));
        *n += strlen(l);
        break;
    }
    }
    gen_ws(b, n);
}

static void test_random_vs_jansson(void **st) {
    (void)st;
    static const char noise[] =
        "{}[],:\"\\u0123456789.eE+-tfnlrsaxD8C \n\t\x80\xbf\xc3\xe2\xed\xf0\xf4";
    char doc[8192], mut[8192 + 8];
    rnd_state = 42;
    int n_valid = 0, n_mut_valid = 0;
    for (int iter = 0; iter < 4000; iter++) {
        size_t n = 0;
        int object = iter % 2 == 0;
        gen_value(doc, &n, 0, object);
        assert_true(n < sizeof doc - 64);
        doc[n] = 0;
        if (iter < 300 && !strchr("-0123456789", doc[strspn(doc, " \t\r\n")]))
            check_valid_doc(doc, object); /* every prefix: quadratic, so fewer */
        assert_true(valid_complete(doc, n, object));
        assert_int_equal(jansson_ok(doc, n, object), 1);
        n_valid++;
        /* a few random edits; then both must agree on validity */
        for (int e = 0; e < 4; e++) {
            memcpy(mut, doc, n);
            size_t m = n, pos = rnd() % (n + 1);
            int op = (int)(rnd() % 3);
            char c = noise[rnd() % (sizeof noise - 1)];
            if (op == 0) { /* insert */
                memmove(mut + pos + 1, mut + pos, m - pos);
                mut[pos] = c;
                m++;
            } else if (pos < m) {
                if (op == 1) /* delete */
                    memmove(mut + pos, mut + pos + 1, --m - pos);
                else
                    mut[pos] = c;
            }
            int ours = valid_complete(mut, m, object), theirs = jansson_ok(mut, m, object);
            if (theirs >= 0 && ours != theirs)
                fail_msg("disagree (ours %d) on <%.*s>", ours, (int)m, mut);
            n_mut_valid += ours;
            /* anything jansson accepts has only valid prefixes (implied by feeding), and
             * anything we refuse partway is refused by jansson whatever follows */
        }
    }
    assert_true(n_valid == 4000);
    assert_true(n_mut_valid > 100);
}

/* ---- constrained sampling: small synthetic vocabularies ---- */

typedef struct {
    int mode;
    int32_t n;
    const float *logits;
    long calls;
} pred;

static int pred_ok(const pred *p, int32_t id) {
    switch (p->mode) {
    case 0:
        return 1;
    case 1:
        return id % 7 == 3;
    case 2:
        return id == 5 || id == p->n / 2 || id == p->n - 3; /* rare */
    case 3:
        return p->logits[id] < -3.0f; /* only unlikely ones */
    case 4:
        return id % 2 == 0;
    case 5:
        return (id * 2654435761u) % 1000 < 3; /* sparse, scattered */
    default:
        return 0; /* nothing */
    }
}

static int pred_cb(void *user, int32_t id) {
    pred *p = user;
    p->calls++;
    return pred_ok(p, id);
}

static void fill_random(float *l, int32_t n, double scale) {
    for (int32_t i = 0; i < n; i++) l[i] = (float)((rnd_unit() * 2 - 1) * scale);
}

static void test_constrained_greedy(void **st) {
    (void)st;
    enum { NV = 5000 };
    float *l = malloc(NV * sizeof *l);
    smp_params p;
    smp_params_default(&p);
    p.temperature = 0;
    smp *s = NULL;
    assert_int_equal(smp_init(&s, NV, &p), SH_OK);
    rnd_state = 7;
    for (int mode = 0; mode <= 6; mode++)
        for (int k = 0; k < 30; k++) {
            fill_random(l, NV, 5);
            if (k % 5 == 0) l[rnd() % NV] = -INFINITY;
            if (k % 7 == 0) l[rnd() % NV] = NAN;
            if (k % 3 == 0) l[10] = l[20] = l[30] = 6; /* ties go to the lower id */
            pred pr = {mode, NV, l, 0};
            int32_t want = -1;
            for (int32_t i = 0; i < NV; i++)
                if (isfinite(l[i]) && pred_ok(&pr, i) && (want < 0 || l[i] > l[want])) want = i;
            int32_t got = -1;
            int rc = smp_sample_constrained(s, l, NULL, 0, pred_cb, &pr, &got);
            if (want < 0) {
                assert_int_equal(rc, SH_ENOTFOUND);
                continue;
            }
            assert_int_equal(rc, SH_OK);
            assert_int_equal(got, want);
            if (mode == 0) assert_int_equal(pr.calls, 1); /* the best token, nothing else */
            if (mode == 1) assert_true(pr.calls <= 64);
        }
    /* all impossible: the caller's logits are broken, not the constraint */
    for (int32_t i = 0; i < NV; i++) l[i] = -INFINITY;
    pred pr = {0, NV, l, 0};
    int32_t got;
    assert_int_equal(smp_sample_constrained(s, l, NULL, 0, pred_cb, &pr, &got), SH_EINVAL);
    smp_free(s);
    free(l);
}

/* With top-p on, smp_sample() sorts its survivors, so on logits where refused tokens are -inf
 * it must pick exactly what the constrained sampler picks from the same seed. */
static void test_constrained_matches_masked(void **st) {
    (void)st;
    enum { NV = 3000 };
    float *l = malloc(NV * sizeof *l), *masked = malloc(NV * sizeof *masked);
    static const struct {
        float temp;
        int32_t top_k;
        float top_p, min_p, rep;
    } cfg[] = {
        {0.8f, 40, 0.95f, 0.05f, 1.0f}, {1.0f, 0, 0.9f, 0.0f, 1.0f},
        {1.5f, 0, 0.5f, 0.1f, 1.1f},    {0.7f, 5, 0.99f, 0.0f, 1.0f},
        {1.0f, 0, 0.999f, 0.0f, 1.0f},  {2.0f, 100, 0.8f, 0.02f, 1.3f},
        {1.0f, 0, 0.97f, 0.3f, 1.0f},
    };
    int32_t hist[32];
    rnd_state = 99;
    for (size_t c = 0; c < sizeof cfg / sizeof *cfg; c++) {
        smp_params p;
        smp_params_default(&p);
        p.temperature = cfg[c].temp;
        p.top_k = cfg[c].top_k;
        p.top_p = cfg[c].top_p;
        p.min_p = cfg[c].min_p;
        p.repeat_penalty = cfg[c].rep;
        p.seed = 1000 + c;
        smp *a = NULL, *b = NULL;
        assert_int_equal(smp_init(&a, NV, &p), SH_OK);
        assert_int_equal(smp_init(&b, NV, &p), SH_OK);
        for (int mode = 0; mode <= 5; mode++)
            for (int k = 0; k < 60; k++) {
                /* peaked like real logits on some rounds, flat on others */
                fill_random(l, NV, k % 2 ? 3 : 12);
                for (int i = 0; i < 32; i++) hist[i] = (int32_t)(rnd() % NV);
                pred pr = {mode, NV, l, 0};
                for (int32_t i = 0; i < NV; i++) masked[i] = pred_ok(&pr, i) ? l[i] : -INFINITY;
                int32_t ta = -1, tb = -2, any = 0;
                for (int32_t i = 0; i < NV; i++) any |= masked[i] > -INFINITY;
                if (!any) {
                    assert_int_equal(smp_sample(a, masked, hist, 32, &ta), SH_EINVAL);
                    assert_int_equal(smp_sample_constrained(b, l, hist, 32, pred_cb, &pr, &tb),
                                     SH_ENOTFOUND);
                    continue;
                }
                assert_int_equal(smp_sample(a, masked, hist, 32, &ta), SH_OK);
                assert_int_equal(smp_sample_constrained(b, l, hist, 32, pred_cb, &pr, &tb), SH_OK);
                if (ta != tb) fail_msg("cfg %zu mode %d round %d: %d vs %d", c, mode, k, ta, tb);
                assert_true(pred_ok(&pr, tb));
                /* with top-k and dense acceptance, a batch or two is enough */
                if (p.top_k > 0 && mode == 0) assert_int_equal(pr.calls, p.top_k);
                if (p.top_k > 0 && mode == 4) assert_true(pr.calls <= 4 * p.top_k + 64);
            }
        smp_free(a);
        smp_free(b);
    }
    free(l);
    free(masked);
}

/* accept NULL is plain smp_sample() */
static void test_constrained_null(void **st) {
    (void)st;
    enum { NV = 200 };
    float l[NV];
    smp_params p;
    smp_params_default(&p);
    smp *a = NULL, *b = NULL;
    assert_int_equal(smp_init(&a, NV, &p), SH_OK);
    assert_int_equal(smp_init(&b, NV, &p), SH_OK);
    rnd_state = 5;
    for (int k = 0; k < 100; k++) {
        fill_random(l, NV, 4);
        int32_t ta, tb;
        assert_int_equal(smp_sample(a, l, NULL, 0, &ta), SH_OK);
        assert_int_equal(smp_sample_constrained(b, l, NULL, 0, NULL, NULL, &tb), SH_OK);
        assert_int_equal(ta, tb);
    }
    smp_free(a);
    smp_free(b);
}

/* ---- JSON generation over the Qwen2 vocabulary ---- */

typedef struct {
    gguf *g;
    tok *t;
    int32_t nv;
    float *bias; /* per token: pushes towards structure so documents finish */
} qwen;

static qwen *qwen_open(void) {
    qwen *q = calloc(1, sizeof *q);
    assert_non_null(q);
    int rc = gguf_open(&q->g, FIXTURES "/vocab/ggml-vocab-qwen2.gguf");
    if (rc) fail_msg("gguf_open: %s", sh_error_last());
    rc = tok_load(&q->t, q->g);
    if (rc) fail_msg("tok_load: %s", sh_error_last());
    q->nv = tok_n_vocab(q->t);
    assert_true(q->nv > 150000);
    q->bias = calloc((size_t)q->nv, sizeof *q->bias);
    assert_non_null(q->bias);
    for (int32_t i = 0; i < q->nv; i++) {
        char b[JSONC_PIECE_MAX];
        int64_t n = tok_piece(q->t, i, 0, b, sizeof b);
        float bias = tok_is_eog(q->t, i) ? 6 : 0;
        for (int64_t k = 0; k < n && k < (int64_t)sizeof b; k++) {
            const char *c = b[k] ? strchr("\":,}]{[0123456789", b[k]) : NULL;
            static const float w[] = {4, 3, 3, 2.5f, 2.5f, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
            if (c && w[c - "\":,}]{[0123456789"] > bias) bias = w[c - "\":,}]{[0123456789"];
        }
        q->bias[i] = bias;
    }
    return q;
}

static void qwen_close(qwen *q) {
    tok_free(q->t);
    gguf_close(q->g);
    free(q->bias);
    free(q);
}

/* Highest-logit accepted token by brute force; -1 if none. */
static int32_t best_accepted(const qwen *q, const jsonc *j, const float *l) {
    int32_t best = -1;
    for (int32_t i = 0; i < q->nv; i++)
        if (jsonc_accept_token(j, q->t, i) && (best < 0 || l[i] > l[best])) best = i;
    return best;
}

/* Generate up to max_tokens under the constraint; returns 1 if the document completed. */
static int generate(const qwen *q, const smp_params *p, int max_tokens, int brute_steps,
                    int ws_max) {
    smp *s = NULL;
    assert_int_equal(smp_init(&s, q->nv, p), SH_OK);
    float *l = malloc((size_t)q->nv * sizeof *l);
    int32_t *hist = malloc((size_t)max_tokens * sizeof *hist);
    size_t cap = (size_t)max_tokens * JSONC_PIECE_MAX, len = 0;
    char *text = malloc(cap);
    assert_true(l && hist && text);
    jsonc j;
    jsonc_init(&j, 1);
    jsonc_set_ws_max(&j, ws_max);
    int finished = 0;
    for (int step = 0; step < max_tokens; step++) {
        for (int32_t i = 0; i < q->nv; i++) l[i] = (float)(rnd_unit() * 8 - 4) + q->bias[i];
        jsonc_acceptor acc = {&j, q->t};
        int32_t id = -1;
        int rc = smp_sample_constrained(s, l, hist, step, jsonc_accept_cb, &acc, &id);
        if (rc) fail_msg("step %d: %s (%s)", step, sh_strerror(rc), sh_error_last());
        assert_true(jsonc_accept_token(&j, q->t, id));
        if (step < brute_steps) assert_int_equal(id, best_accepted(q, &j, l));
        hist[step] = id;
        if (tok_is_eog(q->t, id)) {
            assert_true(jsonc_complete(&j));
            finished = 1;
            break;
        }
        assert_int_equal(jsonc_advance(&j, q->t, id), SH_OK);
        len += (size_t)tok_piece(q->t, id, 0, text + len, (int64_t)(cap - len));
        /* the text so far, fed from scratch, is a valid prefix */
        jsonc fresh;
        jsonc_init(&fresh, 1);
        assert_int_equal(jsonc_feed(&fresh, text, len), 0);
        assert_int_equal(jsonc_complete(&fresh), jsonc_complete(&j));
    }
    if (finished) {
        json_error_t e;
        json_t *v = json_loadb(text, len, JSON_ALLOW_NUL, &e);
        if (!v) fail_msg("jansson: %s on <%.*s>", e.text, (int)len, text);
        assert_true(json_is_object(v));
        json_decref(v);
    }
    free(l);
    free(hist);
    free(text);
    smp_free(s);
    return finished;
}

static void test_qwen_json(void **st) {
    (void)st;
    qwen *q = qwen_open();
    /* a token that is refused outright: control tokens, and EOG before the document ends */
    jsonc j;
    jsonc_init(&j, 1);
    int32_t im_end = tok_find(q->t, "<|im_end|>");
    assert_true(im_end >= 0 && tok_is_eog(q->t, im_end));
    assert_false(jsonc_accept_token(&j, q->t, im_end));
    assert_int_equal(jsonc_advance(&j, q->t, im_end), SH_EINVAL);
    int32_t im_start = tok_find(q->t, "<|im_start|>");
    assert_true(im_start >= 0);
    assert_false(jsonc_accept_token(&j, q->t, im_start));
    int32_t brace = tok_find(q->t, "{");
    assert_true(brace >= 0 && jsonc_accept_token(&j, q->t, brace));
    assert_int_equal(jsonc_advance(&j, q->t, brace), SH_OK);
    assert_false(jsonc_accept_token(&j, q->t, im_end));
    int32_t close = tok_find(q->t, "}");
    assert_int_equal(jsonc_advance(&j, q->t, close), SH_OK);
    assert_true(jsonc_accept_token(&j, q->t, im_end));
    assert_false(jsonc_accept_token(&j, q->t, tok_find(q->t, " "))); /* done: only EOG */

    rnd_state = 2024;
    smp_params p;
    smp_params_default(&p);
    p.temperature = 0;
    int done = 0;
    for (int run = 0; run < 3; run++) done += generate(q, &p, 120, run == 0 ? 12 : 0, 0);
    static const struct {
        float temp;
        int32_t top_k;
        float top_p, min_p;
    } cfg[] = {{0.8f, 40, 0.95f, 0.05f},
               {1.0f, 0, 0.9f, 0.0f},
               {1.2f, 0, 1.0f, 0.05f},
               {1.0f, 0, 1.0f, 0.0f}};
    for (size_t c = 0; c < sizeof cfg / sizeof *cfg; c++) {
        smp_params_default(&p);
        p.temperature = cfg[c].temp;
        p.top_k = cfg[c].top_k;
        p.top_p = cfg[c].top_p;
        p.min_p = cfg[c].min_p;
        p.repeat_penalty = 1.1f;
        for (int run = 0; run < 3; run++) {
            p.seed = 77 + (uint64_t)run;
            done += generate(q, &p, 150, 0, JSONC_WS_GEN);
        }
    }
    assert_true(done >= 5); /* the bias makes most runs finish */
    qwen_close(q);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_objects),
        cmocka_unit_test(test_valid_values),
        cmocka_unit_test(test_invalid),
        cmocka_unit_test(test_numbers),
        cmocka_unit_test(test_depth),
        cmocka_unit_test(test_ws_max),
        cmocka_unit_test(test_random_vs_jansson),
        cmocka_unit_test(test_constrained_greedy),
        cmocka_unit_test(test_constrained_matches_masked),
        cmocka_unit_test(test_constrained_null),
        cmocka_unit_test(test_qwen_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
