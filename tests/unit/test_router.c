/* test_router.c - routing rules, categorisation, the learned threshold and its persistence. */
#include "testutil.h"

#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <sqlite3.h>
#include <unistd.h>

#include "base/config.h"
#include "base/status.h"
#include "proto/anthropic.h"
#include "proto/openai.h"
#include "router/router.h"

static const char TOML[] =
    "[[teachers]]\n"
    "name = \"claude\"\nprovider = \"anthropic\"\nmodel = \"claude-sonnet-4-5\"\n"
    "[[teachers]]\n"
    "name = \"gpt\"\nprovider = \"openai\"\nmodel = \"gpt-4o\"\n";

static void load_cfg(sh_config *c, int with_teachers) {
    const char *t = with_teachers ? TOML : "";
    assert_int_equal(config_parse(c, t, strlen(t), "test.toml"), 0);
}

/* A request with one user message (text), model and local_only as given. */
static void make_req(conv_request *r, const char *model, const char *text, int local_only) {
    json_t *j =
        json_pack("{s:s,s:i,s:[{s:s,s:s}],s:b}", "model", model ? model : "local", "max_tokens", 50,
                  "messages", "role", "user", "content", text, "local_only", local_only);
    char *body = json_dumps(j, 0);
    proto_error err;
    conv_request_zero(r);
    assert_int_equal(anthropic_decode_messages(body, strlen(body), r, &err), 0);
    free(body);
    json_decref(j);
}

/* ---- categorisation ---- */

static void test_categories(void **state) {
    (void)state;
    static const struct {
        const char *text;
        router_category want;
    } cases[] = {
        {"hi", RCAT_GREETING},
        {"Hello there!", RCAT_GREETING},
        {"hey, how are you?", RCAT_GREETING},
        {"Good morning", RCAT_GREETING},
        {"thanks!", RCAT_GREETING},
        {"Thank you very much.", RCAT_GREETING},
        {"hi, what is a monad?", RCAT_DEFINITION},
        {"What is photosynthesis?", RCAT_DEFINITION},
        {"what\u2019s entropy", RCAT_DEFINITION},
        {"Who was Ada Lovelace?", RCAT_DEFINITION},
        {"define   serendipity", RCAT_DEFINITION},
        {"What does 'ephemeral' mean?", RCAT_DEFINITION},
        {"How do I change a bike tire?", RCAT_HOWTO},
        {"how to make sourdough bread", RCAT_HOWTO},
        {"Give me a step by step plan for moving house", RCAT_HOWTO},
        {"What's the best way to learn chess?", RCAT_HOWTO},
        {"Why is the sky blue?", RCAT_EXPLANATION},
        {"How does a refrigerator keep things cold?", RCAT_EXPLANATION},
        {"Can you explain inflation to me", RCAT_EXPLANATION},
        {"Tell me about the French revolution", RCAT_EXPLANATION},
        {"Write a Python function that reverses a list", RCAT_CODE},
        {"```\nint main() { return 0; }\n```", RCAT_CODE},
        {"implement quicksort", RCAT_CODE},
        {"a regex for email addresses", RCAT_CODE},
        {"I get a segmentation fault when I run this", RCAT_DEBUGGING},
        {"Traceback (most recent call last): KeyError 'x'", RCAT_DEBUGGING},
        {"my python script doesn't work", RCAT_DEBUGGING},
        {"why does my program crash on startup?", RCAT_DEBUGGING},
        {"Vim vs Emacs?", RCAT_COMPARISON},
        {"What is the difference between a virus and a bacterium?", RCAT_COMPARISON},
        {"pros and cons of renting", RCAT_COMPARISON},
        {"compare Rust and Go for web servers", RCAT_CODE}, /* code is checked before comparison */
        {"Do you think remote work is here to stay?", RCAT_OPINION},
        {"Which book would you recommend for a long flight?", RCAT_OPINION},
        {"What is the best pizza topping?", RCAT_OPINION},
        {"Should I buy a house now?", RCAT_OPINION},
        {"The quick brown fox jumps over the lazy dog.", RCAT_OTHER},
        {"", RCAT_OTHER},
        {"   ", RCAT_OTHER},
        {"prefix the list with zeros", RCAT_OTHER}, /* "fix" only at word boundaries */
        {"hijack the conversation", RCAT_OTHER},    /* "hi" only as a word */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        router_category got = router_categorize_text(cases[i].text, strlen(cases[i].text));
        if (got != cases[i].want)
            fail_msg("'%s': got %s, want %s", cases[i].text, router_category_name(got),
                     router_category_name(cases[i].want));
    }
    for (int c = 0; c < RCAT_COUNT; c++)
        assert_int_equal(router_category_parse(router_category_name(c)), c);
    assert_int_equal(router_category_parse("nope"), -1);
    assert_string_equal(router_category_name(RCAT_HOWTO), "how-to");
}

static void test_categorize_request(void **state) {
    (void)state;
    /* the last user message decides; tool results and assistant turns are skipped */
    const char *body = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hello\"},"
                       "{\"role\":\"assistant\",\"content\":\"hi! how can I help?\"},"
                       "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"why "
                       "is\"},{\"type\":\"text\","
                       "\"text\":\"ice slippery?\"}]}]}";
    conv_request r;
    proto_error err;
    conv_request_zero(&r);
    assert_int_equal(openai_decode_chat(body, strlen(body), &r, &err), 0);
    assert_int_equal(router_categorize(&r), RCAT_EXPLANATION);
    conv_request_free(&r);
    conv_request_zero(&r);
    assert_int_equal(conv_request_init(&r, 4096), 0);
    assert_int_equal(router_categorize(&r), RCAT_OTHER); /* no messages */
    r.api = CONV_API_COMPLETION;
    r.prompt = "def fib(n):";
    assert_int_equal(router_categorize(&r), RCAT_CODE);
    conv_request_free(&r);
}

/* ---- rules ---- */

static void test_rule_model(void **state) {
    (void)state;
    sh_config c;
    load_cfg(&c, 1);
    router *r;
    assert_int_equal(router_open(&r, c.teachers, c.n_teachers, NULL, NULL), 0);
    router_decision d;
    const char *names[] = {"gpt", "GPT-4o", "teacher:gpt"};
    for (int i = 0; i < 3; i++) {
        conv_request q;
        make_req(&q, names[i], "hi", 0);
        router_decide(r, &q, ROUTER_LOCAL_READY, &d);
        assert_int_equal(d.kind, ROUTE_TEACHER);
        assert_int_equal(d.rule, RULE_MODEL);
        assert_int_equal(d.first, 1);
        assert_int_equal(d.count, 1);
        assert_string_equal(d.label, "teacher:gpt");
        conv_request_free(&q);
    }
    /* it wins over local_only and over a missing local model */
    conv_request q;
    make_req(&q, "claude", "hi", 1);
    router_decide(r, &q, ROUTER_LOCAL_FAILED, &d);
    assert_int_equal(d.rule, RULE_MODEL);
    assert_string_equal(d.label, "teacher:claude");
    conv_request_free(&q);
    /* another model name: not a teacher */
    make_req(&q, "qwen2.5-0.5b", "hi", 0);
    router_decide(r, &q, ROUTER_LOCAL_READY, &d);
    assert_int_equal(d.kind, ROUTE_LOCAL);
    assert_int_equal(d.rule, RULE_POLICY);
    assert_string_equal(d.label, "local");
    assert_int_equal(d.category, RCAT_GREETING);
    conv_request_free(&q);
    router_close(r);
    config_free(&c);
}

static void test_rule_local_only(void **state) {
    (void)state;
    sh_config c;
    load_cfg(&c, 1);
    router *r;
    assert_int_equal(router_open(&r, c.teachers, c.n_teachers, NULL, NULL), 0);
    router_decision d;
    conv_request q;
    make_req(&q, NULL, "explain monads", 1);
    router_decide(r, &q, ROUTER_LOCAL_READY, &d);
    assert_int_equal(d.kind, ROUTE_LOCAL);
    assert_int_equal(d.rule, RULE_LOCAL_ONLY);
    router_decide(r, &q, ROUTER_LOCAL_LOADING, &d);
    assert_int_equal(d.kind, ROUTE_ERROR);
    assert_int_equal(d.error_kind, CONV_ERR_UNAVAILABLE);
    assert_string_equal(d.label, "error");
    assert_non_null(strstr(d.error, "local_only"));
    assert_non_null(strstr(d.error, "loading"));
    /* rule 4 never applies to local_only */
    assert_int_equal(router_fallback(r, &q, &d), 0);
    conv_request_free(&q);
    router_close(r);
    config_free(&c);
}

static void test_rule_unavailable_and_fallback(void **state) {
    (void)state;
    sh_config c, none;
    load_cfg(&c, 1);
    load_cfg(&none, 0);
    router *r, *r0;
    assert_int_equal(router_open(&r, c.teachers, c.n_teachers, NULL, NULL), 0);
    assert_int_equal(router_open(&r0, none.teachers, none.n_teachers, NULL, NULL), 0);
    router_decision d;
    conv_request q;
    make_req(&q, NULL, "what is a monad", 0);
    router_local_state states[] = {ROUTER_LOCAL_DISABLED, ROUTER_LOCAL_ABSENT, ROUTER_LOCAL_LOADING,
                                   ROUTER_LOCAL_FAILED};
    for (int i = 0; i < 4; i++) {
        router_decide(r, &q, states[i], &d);
        assert_int_equal(d.kind, ROUTE_TEACHER);
        assert_int_equal(d.rule, RULE_UNAVAILABLE);
        assert_int_equal(d.first, 0);
        assert_int_equal(d.count, 2);
        assert_string_equal(d.label, "teacher:claude");
        router_decide(r0, &q, states[i], &d);
        assert_int_equal(d.kind, ROUTE_ERROR);
        assert_int_equal(d.error_kind, CONV_ERR_UNAVAILABLE);
        assert_non_null(strstr(d.error, "no teachers are configured"));
    }
    router_decide(r, &q, ROUTER_LOCAL_DISABLED, &d);
    assert_non_null(strstr(d.label, "claude"));
    /* rule 4 */
    assert_int_equal(router_fallback(r, &q, &d), 1);
    assert_int_equal(d.kind, ROUTE_TEACHER);
    assert_int_equal(d.rule, RULE_FALLBACK);
    assert_int_equal(d.count, 2);
    assert_int_equal(d.category, RCAT_DEFINITION);
    assert_int_equal(router_fallback(r0, &q, &d), 0);
    /* without teachers the policy is always local */
    for (int i = 0; i < 10; i++) assert_int_equal(router_feedback(r0, RCAT_DEFINITION, 0), 0);
    router_decide(r0, &q, ROUTER_LOCAL_READY, &d);
    assert_int_equal(d.kind, ROUTE_LOCAL);
    conv_request_free(&q);
    router_close(r);
    router_close(r0);
    config_free(&c);
    config_free(&none);
}

/* ---- policy ---- */

static void test_policy_forwards_weak_categories(void **state) {
    (void)state;
    sh_config c;
    load_cfg(&c, 1);
    router_opts o;
    router_opts_default(&o);
    o.eta = 0; /* fixed threshold 0.5 */
    router *r;
    assert_int_equal(router_open(&r, c.teachers, c.n_teachers, NULL, &o), 0);
    router_decision d;
    conv_request code, hi;
    make_req(&code, NULL, "write a python function to parse dates", 0);
    make_req(&hi, NULL, "hello!", 0);
    router_decide(r, &code, ROUTER_LOCAL_READY, &d);
    assert_int_equal(d.kind, ROUTE_LOCAL); /* no evidence: local */
    assert_true(fabs(d.estimate - 0.5) < 1e-12);
    /* four failures: still below min_evidence (5) */
    for (int i = 0; i < 4; i++) router_feedback(r, RCAT_CODE, 0);
    router_decide(r, &code, ROUTER_LOCAL_READY, &d);
    assert_int_equal(d.kind, ROUTE_LOCAL);
    router_feedback(r, RCAT_CODE, 0);
    router_decide(r, &code, ROUTER_LOCAL_READY, &d);
    assert_int_equal(d.kind, ROUTE_TEACHER);
    assert_int_equal(d.rule, RULE_POLICY);
    assert_int_equal(d.count, 2);
    assert_true(fabs(d.estimate - 1.0 / 7.0) < 1e-12); /* Beta(1,1): (0+1)/(5+2) */
    assert_true(fabs(d.threshold - 0.5) < 1e-12);
    /* successes bring it back: (5+1)/(10+2) = 0.5, not below 0.5 */
    for (int i = 0; i < 5; i++) router_feedback(r, RCAT_CODE, 1);
    router_decide(r, &code, ROUTER_LOCAL_READY, &d);
    assert_int_equal(d.kind, ROUTE_LOCAL);
    /* other categories are unaffected */
    router_decide(r, &hi, ROUTER_LOCAL_READY, &d);
    assert_int_equal(d.kind, ROUTE_LOCAL);
    assert_int_equal(d.category, RCAT_GREETING);
    assert_int_equal(router_feedback(r, RCAT_COUNT, 1), SH_EINVAL);
    conv_request_free(&code);
    conv_request_free(&hi);
    router_close(r);
    config_free(&c);
}

static void test_threshold_adapts(void **state) {
    (void)state;
    sh_config c;
    load_cfg(&c, 1);
    router_opts o;
    router_opts_default(&o);
    o.target_forward_rate = 0.3;
    o.eta = 0.02;
    router *r;
    assert_int_equal(router_open(&r, c.teachers, c.n_teachers, NULL, &o), 0);
    router_decision d;
    conv_request q;
    make_req(&q, NULL, "why do cats purr?", 0);
    /* no evidence: every decision is local, theta rises by eta * rho each time up to theta_max */
    router_decide(r, &q, ROUTER_LOCAL_READY, &d);
    assert_true(fabs(d.threshold - 0.5) < 1e-12);
    router_decide(r, &q, ROUTER_LOCAL_READY, &d);
    assert_true(fabs(d.threshold - (0.5 + 0.02 * 0.3)) < 1e-12);
    for (int i = 0; i < 200; i++) router_decide(r, &q, ROUTER_LOCAL_READY, &d);
    assert_true(fabs(d.threshold - 0.9) < 1e-9);
    /* explanation answers are good 60% of the time locally: estimate (6+1)/(10+2) = 0.583 */
    for (int i = 0; i < 10; i++) router_feedback(r, RCAT_EXPLANATION, i < 6);
    int fwd = 0, n = 2000;
    for (int i = 0; i < n; i++) {
        router_decide(r, &q, ROUTER_LOCAL_READY, &d);
        fwd += d.kind == ROUTE_TEACHER;
    }
    /* the first ~ (0.9 - 0.583) / (eta * (1 - rho)) decisions all forward, then the rate settles at
     * rho */
    double rate = (double)fwd / n;
    assert_true(rate > 0.3 - 0.03 && rate < 0.3 + 0.05);
    int tail = 0;
    for (int i = 0; i < 1000; i++) {
        router_decide(r, &q, ROUTER_LOCAL_READY, &d);
        tail += d.kind == ROUTE_TEACHER;
    }
    assert_true(fabs(tail / 1000.0 - 0.3) < 0.02);
    assert_true(fabs(d.threshold - 7.0 / 12.0) <
                0.03); /* theta hovers at the category's estimate */
    /* a category that is always good locally is never forwarded, whatever theta does */
    for (int i = 0; i < 50; i++) router_feedback(r, RCAT_GREETING, 1);
    conv_request hi;
    make_req(&hi, NULL, "hi", 0);
    for (int i = 0; i < 200; i++) {
        router_decide(r, &hi, ROUTER_LOCAL_READY, &d);
        assert_int_equal(d.kind, ROUTE_LOCAL);
    }
    json_t *j = router_stats_json(r);
    assert_int_equal(json_integer_value(json_object_get(j, "policy_decisions")),
                     202 + n + 1000 + 200);
    json_decref(j);
    conv_request_free(&hi);
    conv_request_free(&q);
    router_close(r);
    config_free(&c);
}

/* ---- persistence ---- */

static void tmp_db(char *path, size_t cap) {
    snprintf(path, cap, "/tmp/shammah-test-router-%d.db", (int)getpid());
    unlink(path);
    char side[300];
    snprintf(side, sizeof side, "%s-wal", path);
    unlink(side);
    snprintf(side, sizeof side, "%s-shm", path);
    unlink(side);
}

static void test_persistence(void **state) {
    (void)state;
    char path[256];
    tmp_db(path, sizeof path);
    /* another module's table in the same file, created first, must be left alone */
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(
        sqlite3_exec(db, "CREATE TABLE other_stuff(x); INSERT INTO other_stuff VALUES(42);", NULL,
                     NULL, NULL),
        0);
    sqlite3_close(db);

    sh_config c;
    load_cfg(&c, 1);
    router *r;
    assert_int_equal(router_open(&r, c.teachers, c.n_teachers, path, NULL), 0);
    for (int i = 0; i < 7; i++) router_feedback(r, RCAT_DEBUGGING, 0);
    for (int i = 0; i < 3; i++) router_feedback(r, RCAT_DEBUGGING, 1);
    router_feedback(r, RCAT_OPINION, 1);
    conv_request q;
    make_req(&q, NULL, "my build fails with an error", 0);
    router_decision d;
    for (int i = 0; i < 5; i++) router_decide(r, &q, ROUTER_LOCAL_READY, &d);
    json_t *before = router_stats_json(r);
    double theta = json_real_value(json_object_get(before, "threshold"));
    router_close(r); /* saves the decisions made since the last save */

    assert_int_equal(router_open(&r, c.teachers, c.n_teachers, path, NULL), 0);
    json_t *after = router_stats_json(r);
    assert_true(fabs(json_real_value(json_object_get(after, "threshold")) - theta) < 1e-12);
    assert_true(theta != 0.5);
    json_t *cats = json_object_get(after, "categories");
    json_t *dbg = json_array_get(cats, RCAT_DEBUGGING);
    assert_string_equal(json_string_value(json_object_get(dbg, "name")), "debugging");
    assert_int_equal(json_integer_value(json_object_get(dbg, "successes")), 3);
    assert_int_equal(json_integer_value(json_object_get(dbg, "failures")), 7);
    assert_int_equal(json_integer_value(json_object_get(dbg, "forwarded")) +
                         json_integer_value(json_object_get(dbg, "local")),
                     5);
    assert_int_equal(
        json_integer_value(json_object_get(json_array_get(cats, RCAT_OPINION), "successes")), 1);
    assert_int_equal(json_integer_value(json_object_get(after, "policy_decisions")), 5);
    assert_true(json_is_true(json_object_get(dbg, "forward")));
    json_decref(before);
    json_decref(after);
    router_close(r);

    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT x FROM other_stuff", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(st, 0), 42);
    sqlite3_finalize(st);
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(st, 0), 0);
    sqlite3_finalize(st);
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "wal");
    sqlite3_finalize(st);
    sqlite3_close(db);
    conv_request_free(&q);

    /* not a database */
    FILE *f = fopen(path, "w");
    fputs("this is not a database, just some text that is long enough to have a "
          "header.......................",
          f);
    fclose(f);
    char side[300];
    snprintf(side, sizeof side, "%s-wal", path);
    unlink(side);
    snprintf(side, sizeof side, "%s-shm", path);
    unlink(side);
    assert_int_equal(router_open(&r, c.teachers, c.n_teachers, path, NULL), SH_EFORMAT);
    assert_null(r);
    assert_int_equal(router_open(&r, c.teachers, c.n_teachers, "/nonexistent-dir/x.db", NULL),
                     SH_EIO);
    tmp_db(path, sizeof path);
    config_free(&c);
}

/* ---- reporting ---- */

static void test_counts_and_metrics(void **state) {
    (void)state;
    sh_config c;
    load_cfg(&c, 1);
    router *r;
    assert_int_equal(router_open(&r, c.teachers, c.n_teachers, NULL, NULL), 0);
    router_count_route(r, "local");
    router_count_route(r, "local");
    router_count_route(r, "teacher:gpt");
    router_count_route(r, "error");
    router_count_route(r, "teacher:renamed");
    json_t *j = router_stats_json(r);
    json_t *routes = json_object_get(j, "routes");
    assert_int_equal(json_integer_value(json_object_get(routes, "local")), 2);
    assert_int_equal(json_integer_value(json_object_get(routes, "teacher:gpt")), 1);
    assert_int_equal(json_integer_value(json_object_get(routes, "teacher:claude")), 0);
    assert_int_equal(json_integer_value(json_object_get(routes, "error")), 1);
    assert_int_equal(json_integer_value(json_object_get(routes, "teacher:other")), 1);
    assert_int_equal(json_array_size(json_object_get(j, "categories")), RCAT_COUNT);
    assert_true(json_is_real(json_object_get(j, "target_forward_rate")));
    json_decref(j);
    conv_buf b;
    conv_buf_init(&b, 1 << 16);
    assert_int_equal(router_metrics(r, &b), 0);
    assert_non_null(strstr(b.p, "shammah_route_requests_total{route=\"local\"} 2\n"));
    assert_non_null(strstr(b.p, "shammah_route_requests_total{route=\"teacher:gpt\"} 1\n"));
    assert_non_null(strstr(b.p, "shammah_route_requests_total{route=\"teacher:claude\"} 0\n"));
    assert_non_null(strstr(b.p, "shammah_router_threshold 0.5"));
    assert_non_null(strstr(b.p, "shammah_router_category_estimate{category=\"how-to\"} 0.5"));
    conv_buf_free(&b);
    router_close(r);
    config_free(&c);
}

/* ---- threads ---- */

typedef struct {
    router *r;
    conv_request *q;
    int i;
} worker;

static void *work(void *u) {
    worker *w = u;
    router_decision d;
    for (int k = 0; k < 500; k++) {
        router_decide(w->r, w->q, ROUTER_LOCAL_READY, &d);
        router_count_route(w->r, d.label);
        if (k % 10 == 0) router_feedback(w->r, RCAT_COMPARISON, (k + w->i) % 3 != 0);
    }
    return NULL;
}

static void test_threads(void **state) {
    (void)state;
    char path[256];
    tmp_db(path, sizeof path);
    sh_config c;
    load_cfg(&c, 1);
    router *r;
    assert_int_equal(router_open(&r, c.teachers, c.n_teachers, path, NULL), 0);
    conv_request q;
    make_req(&q, NULL, "tabs versus spaces", 0);
    pthread_t th[4];
    worker w[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (worker){r, &q, i};
        pthread_create(&th[i], NULL, work, &w[i]);
    }
    for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
    json_t *j = router_stats_json(r);
    json_t *cmp = json_array_get(json_object_get(j, "categories"), RCAT_COMPARISON);
    assert_int_equal(json_integer_value(json_object_get(cmp, "successes")) +
                         json_integer_value(json_object_get(cmp, "failures")),
                     200);
    assert_int_equal(json_integer_value(json_object_get(j, "policy_decisions")), 2000);
    json_t *routes = json_object_get(j, "routes");
    assert_int_equal(json_integer_value(json_object_get(routes, "local")) +
                         json_integer_value(json_object_get(routes, "teacher:claude")),
                     2000);
    json_decref(j);
    conv_request_free(&q);
    router_close(r);
    tmp_db(path, sizeof path);
    config_free(&c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_categories),
        cmocka_unit_test(test_categorize_request),
        cmocka_unit_test(test_rule_model),
        cmocka_unit_test(test_rule_local_only),
        cmocka_unit_test(test_rule_unavailable_and_fallback),
        cmocka_unit_test(test_policy_forwards_weak_categories),
        cmocka_unit_test(test_threshold_adapts),
        cmocka_unit_test(test_persistence),
        cmocka_unit_test(test_counts_and_metrics),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
