/* test_sessions.c - the durable session store: CRUD, 404 semantics, persistence, crash
 * durability, LRU eviction, idle expiry, limits, concurrency, trimming. */
#include "testutil.h"

#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/status.h"
#include "server/sessions.h"

static char g_dir[256];
static char g_db[300];

static int setup(void **state) {
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/sh_sessions_XXXXXX");
    if (!mkdtemp(g_dir)) return -1;
    snprintf(g_db, sizeof g_db, "%s/shammah.db", g_dir);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    static const char *const suffix[] = {"", "-wal", "-shm", "-journal"};
    char p[400];
    for (size_t i = 0; i < sizeof suffix / sizeof *suffix; i++) {
        snprintf(p, sizeof p, "%s%s", g_db, suffix[i]);
        unlink(p);
    }
    rmdir(g_dir);
    return 0;
}

static int64_t fake_clock(void *ctx) {
    return *(int64_t *)ctx;
}

static const char *U1 = "{\"role\":\"user\",\"content\":\"hello\"}";
static const char *A1 =
    "{\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":\"hi\"}]}";

static char *arr2(const char *a, const char *b) {
    size_t n = strlen(a) + strlen(b) + 4;
    char *s = malloc(n);
    snprintf(s, n, "[%s,%s]", a, b);
    return s;
}

static int64_t history_len(sessions *s, const char *id) {
    char *h = NULL;
    int64_t n = -1;
    int st = sessions_get_history(s, id, &h, &n);
    free(h);
    return st < 0 ? st : n;
}

static void test_crud(void **state) {
    (void)state;
    sessions *s;
    assert_int_equal(sessions_open(&s, g_db, 100, 60), SH_OK);
    int64_t t = 1000;
    sessions_set_clock(s, fake_clock, &t);
    assert_int_equal(sessions_count(s), 0);
    char *two = arr2(U1, A1);
    assert_int_equal(sessions_append(s, "abc", two), SH_OK);
    assert_int_equal(sessions_count(s), 1);

    char *h = NULL;
    int64_t n = 0;
    assert_int_equal(sessions_get_history(s, "abc", &h, &n), SH_OK);
    assert_int_equal(n, 2);
    json_t *j = json_loads(h, 0, NULL);
    assert_non_null(j);
    assert_int_equal(json_array_size(j), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(j, 0), "content")),
                        "hello");
    assert_string_equal(json_string_value(json_object_get(json_array_get(j, 1), "role")),
                        "assistant");
    json_decref(j);

    session_info info;
    t = 1010;
    assert_int_equal(sessions_append(s, "abc", "[{\"role\":\"user\",\"content\":\"more\"}]"),
                     SH_OK);
    assert_int_equal(sessions_info(s, "abc", &info), SH_OK);
    assert_string_equal(info.id, "abc");
    assert_int_equal(info.created_at, 1000);
    assert_int_equal(info.last_activity, 1010);
    assert_int_equal(info.message_count, 3);
    free(h);
    assert_int_equal(sessions_get_history(s, "abc", &h, &n), SH_OK);
    assert_int_equal(n, 3);
    assert_int_equal((int64_t)strlen(h), info.bytes);
    free(h);

    /* appending nothing still creates/touches */
    assert_int_equal(sessions_append(s, "empty", "[]"), SH_OK);
    assert_int_equal(sessions_get_history(s, "empty", &h, &n), SH_OK);
    assert_string_equal(h, "[]");
    assert_int_equal(n, 0);
    free(h);

    /* replace */
    assert_int_equal(sessions_put_history(s, "abc", "[{\"role\":\"user\",\"content\":\"x\"}]"),
                     SH_OK);
    assert_int_equal(sessions_info(s, "abc", &info), SH_OK);
    assert_int_equal(info.message_count, 1);
    assert_int_equal(info.created_at, 1000);
    assert_int_equal(sessions_get_history(s, "abc", &h, &n), SH_OK);
    assert_string_equal(h, "[{\"role\":\"user\",\"content\":\"x\"}]");
    free(h);
    assert_int_equal(sessions_append(s, "abc", "[{\"role\":\"assistant\",\"content\":\"y\"}]"),
                     SH_OK);
    assert_int_equal(history_len(s, "abc"), 2);

    assert_int_equal(sessions_delete(s, "abc"), SH_OK);
    assert_int_equal(sessions_count(s), 1);
    assert_int_equal(sessions_get_history(s, "abc", &h, &n), SH_ENOTFOUND);
    assert_null(h);
    assert_int_equal(sessions_delete(s, "abc"), SH_ENOTFOUND);
    free(two);
    sessions_close(s);
}

static void test_not_found(void **state) {
    (void)state;
    sessions *s;
    assert_int_equal(sessions_open(&s, g_db, 100, 60), SH_OK);
    session_info info;
    char *h = NULL;
    assert_int_equal(sessions_info(s, "nope", &info), SH_ENOTFOUND);
    assert_int_equal(sessions_get_history(s, "nope", &h, NULL), SH_ENOTFOUND);
    assert_int_equal(sessions_delete(s, "nope"), SH_ENOTFOUND);
    /* looking never creates */
    assert_int_equal(sessions_count(s), 0);
    /* append_at with an expected history on a missing session: gone, not silently new */
    assert_int_equal(sessions_append_at(s, "nope", 2, "[]"), SH_ENOTFOUND);
    assert_int_equal(sessions_count(s), 0);
    assert_int_equal(sessions_append_at(s, "new", 0, "[{\"role\":\"user\",\"content\":\"a\"}]"),
                     SH_OK);
    assert_int_equal(sessions_append_at(s, "new", 0, "[]"), SH_ECANCELED);
    assert_int_equal(
        sessions_append_at(s, "new", 1, "[{\"role\":\"assistant\",\"content\":\"b\"}]"), SH_OK);
    assert_int_equal(history_len(s, "new"), 2);
    sessions_close(s);
}

static void test_persistence(void **state) {
    (void)state;
    sessions *s;
    assert_int_equal(sessions_open(&s, g_db, 100, 60), SH_OK);
    char *two = arr2(U1, A1);
    assert_int_equal(sessions_append(s, "keep", two), SH_OK);
    session_info before, after;
    assert_int_equal(sessions_info(s, "keep", &before), SH_OK);
    sessions_close(s);

    struct stat stbuf;
    assert_int_equal(stat(g_db, &stbuf), 0);
    assert_int_equal(stbuf.st_mode & 0777, 0600);

    assert_int_equal(sessions_open(&s, g_db, 100, 60), SH_OK);
    assert_int_equal(sessions_info(s, "keep", &after), SH_OK);
    assert_int_equal(after.created_at, before.created_at);
    assert_int_equal(after.message_count, 2);
    char *h = NULL;
    assert_int_equal(sessions_get_history(s, "keep", &h, NULL), SH_OK);
    assert_string_equal(h, two);
    free(h);
    free(two);
    sessions_close(s);
}

/* A child appends turn after turn and reports each accepted one on a pipe; the parent kills it
 * with SIGKILL mid-stream. Every reported append must be in the file afterwards. */
static void test_crash(void **state) {
    (void)state;
    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(p[0]);
        sessions *c;
        if (sessions_open(&c, g_db, 100, 60) != SH_OK) _exit(2);
        for (int i = 0; i < 100000; i++) {
            if (sessions_append(c, "crash", "[{\"role\":\"user\",\"content\":\"turn\"}]") != SH_OK)
                _exit(3);
            int v = i + 1;
            if (write(p[1], &v, sizeof v) != (ssize_t)sizeof v) _exit(4);
        }
        _exit(0); /* never closes: like a crash */
    }
    close(p[1]);
    int v = 0, last = 0;
    while (last < 20 && read(p[0], &v, sizeof v) == (ssize_t)sizeof v) last = v;
    kill(pid, SIGKILL);
    int wst;
    waitpid(pid, &wst, 0);
    /* drain what was reported before the kill */
    while (read(p[0], &v, sizeof v) == (ssize_t)sizeof v) last = v;
    close(p[0]);
    assert_true(last >= 20);

    sessions *s;
    assert_int_equal(sessions_open(&s, g_db, 100, 60), SH_OK);
    int64_t n = history_len(s, "crash");
    assert_true(n >= last);
    /* the append in flight at the kill is all or nothing: the count says so */
    session_info info;
    assert_int_equal(sessions_info(s, "crash", &info), SH_OK);
    assert_int_equal(info.message_count, n);
    sessions_close(s);

    /* _exit right after an append, without closing */
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        sessions *c;
        if (sessions_open(&c, g_db, 100, 60) != SH_OK) _exit(2);
        if (sessions_append(c, "exit", "[{\"role\":\"user\",\"content\":\"z\"}]") != SH_OK)
            _exit(3);
        _exit(0);
    }
    waitpid(pid, &wst, 0);
    assert_true(WIFEXITED(wst) && WEXITSTATUS(wst) == 0);
    assert_int_equal(sessions_open(&s, g_db, 100, 60), SH_OK);
    assert_int_equal(history_len(s, "exit"), 1);
    sessions_close(s);
}

static void test_lru(void **state) {
    (void)state;
    sessions *s;
    assert_int_equal(sessions_open(&s, g_db, 3, 60), SH_OK);
    int64_t t = 100;
    sessions_set_clock(s, fake_clock, &t);
    const char *m = "[{\"role\":\"user\",\"content\":\"q\"}]";
    assert_int_equal(sessions_append(s, "a", m), SH_OK);
    t = 101;
    assert_int_equal(sessions_append(s, "b", m), SH_OK);
    t = 102;
    assert_int_equal(sessions_append(s, "c", m), SH_OK);
    t = 103;
    assert_int_equal(sessions_append(s, "a", m), SH_OK); /* a is now the most recent */
    t = 104;
    session_info info;
    assert_int_equal(sessions_info(s, "b", &info), SH_OK); /* info does not touch */
    assert_int_equal(info.last_activity, 101);
    assert_int_equal(sessions_append(s, "d", m), SH_OK);
    assert_int_equal(sessions_count(s), 3);
    assert_int_equal(sessions_info(s, "b", &info), SH_ENOTFOUND);
    assert_int_equal(sessions_info(s, "a", &info), SH_OK);
    assert_int_equal(info.message_count, 2);
    t = 105; /* reading touches: c (102) becomes the most recent, a (103) the least */
    assert_int_equal(history_len(s, "c"), 1);
    t = 106;
    assert_int_equal(sessions_append(s, "e", m), SH_OK);
    assert_int_equal(sessions_info(s, "a", &info), SH_ENOTFOUND);
    assert_int_equal(sessions_info(s, "c", &info), SH_OK);
    assert_int_equal(sessions_info(s, "d", &info), SH_OK);
    assert_int_equal(sessions_count(s), 3);
    /* appending to an existing session never evicts */
    assert_int_equal(sessions_append(s, "e", m), SH_OK);
    assert_int_equal(sessions_count(s), 3);
    sessions_close(s);

    /* a smaller limit after reopening is applied at the next creation */
    assert_int_equal(sessions_open(&s, g_db, 1, 60), SH_OK);
    sessions_set_clock(s, fake_clock, &t);
    t = 107;
    assert_int_equal(sessions_append(s, "f", m), SH_OK);
    assert_int_equal(sessions_count(s), 1);
    assert_int_equal(history_len(s, "f"), 1);
    sessions_close(s);
}

static void test_idle(void **state) {
    (void)state;
    sessions *s;
    assert_int_equal(sessions_open(&s, g_db, 100, 1), SH_OK);
    int64_t t = 0;
    sessions_set_clock(s, fake_clock, &t);
    const char *m = "[{\"role\":\"user\",\"content\":\"q\"}]";
    assert_int_equal(sessions_append(s, "x", m), SH_OK);
    t = 60; /* idle exactly the limit: still alive, and reading touches it */
    assert_int_equal(history_len(s, "x"), 1);
    t = 120;
    assert_int_equal(history_len(s, "x"), 1);
    t = 181; /* idle 61 s */
    session_info info;
    assert_int_equal(sessions_count(s), 0);
    assert_int_equal(sessions_info(s, "x", &info), SH_ENOTFOUND);
    assert_int_equal(sessions_delete(s, "x"), SH_ENOTFOUND);
    /* an expired id appended to starts afresh */
    assert_int_equal(sessions_append(s, "x", m), SH_OK);
    assert_int_equal(sessions_info(s, "x", &info), SH_OK);
    assert_int_equal(info.message_count, 1);
    assert_int_equal(info.created_at, 181);

    /* purge */
    for (int i = 0; i < 5; i++) {
        char id[16];
        snprintf(id, sizeof id, "p%d", i);
        t = 200 + i;
        assert_int_equal(sessions_append(s, id, m), SH_OK);
    }
    assert_int_equal(sessions_count(s), 6);
    t = 262; /* x (181), p0 (200), p1 (201) are idle > 60 s */
    assert_int_equal(sessions_count(s), 3);
    assert_int_equal(sessions_purge(s), 3);
    assert_int_equal(sessions_purge(s), 0);
    assert_int_equal(sessions_count(s), 3);
    sessions_close(s);
    /* the purge is durable and the rows are gone */
    sqlite3 *db;
    assert_int_equal(sqlite3_open(g_db, &db), SQLITE_OK);
    sqlite3_stmt *q;
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*) FROM messages", -1, &q, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(q, 0), 3);
    sqlite3_finalize(q);
    sqlite3_close(db);
}

static void test_invalid_ids(void **state) {
    (void)state;
    sessions *s;
    assert_int_equal(sessions_open(&s, g_db, 100, 60), SH_OK);
    char long_id[200];
    memset(long_id, 'a', sizeof long_id);
    long_id[129] = 0;
    const char *bad[] = {
        "", long_id, "a b", "a/b", "../x", "caf\xc3\xa9", "x;DROP TABLE sessions", "a'b", "a\nb"};
    const char *m = "[{\"role\":\"user\",\"content\":\"q\"}]";
    session_info info;
    char *h = NULL;
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_int_equal(sessions_append(s, bad[i], m), SH_EINVAL);
        assert_int_equal(sessions_put_history(s, bad[i], m), SH_EINVAL);
        assert_int_equal(sessions_get_history(s, bad[i], &h, NULL), SH_EINVAL);
        assert_int_equal(sessions_info(s, bad[i], &info), SH_EINVAL);
        assert_int_equal(sessions_delete(s, bad[i]), SH_EINVAL);
    }
    assert_int_equal(sessions_append(s, NULL, m), SH_EINVAL);
    assert_int_equal(sessions_count(s), 0);
    long_id[128] = 0; /* exactly the maximum */
    assert_int_equal(sessions_append(s, long_id, m), SH_OK);
    assert_int_equal(sessions_info(s, long_id, &info), SH_OK);
    assert_string_equal(info.id, long_id);
    assert_int_equal(sessions_append(s, "A-z_0.9:x", m), SH_OK);
    sessions_close(s);
}

static void test_malformed(void **state) {
    (void)state;
    sessions *s;
    assert_int_equal(sessions_open(&s, g_db, 100, 60), SH_OK);
    const char *bad[] = {
        "{",
        "{\"role\":\"user\",\"content\":\"x\"}",
        "[1]",
        "[{\"role\":\"system\",\"content\":\"x\"}]",
        "[{\"role\":\"user\"}]",
        "[{\"role\":\"user\",\"content\":5}]",
        "[{\"role\":\"user\",\"content\":[\"text\"]}]",
        "[{\"role\":\"user\",\"content\":\"ok\"},{\"role\":7,\"content\":\"x\"}]",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_int_equal(sessions_append(s, "m", bad[i]), SH_EFORMAT);
        assert_int_equal(sessions_put_history(s, "m", bad[i]), SH_EFORMAT);
    }
    assert_int_equal(sessions_append(s, "m", NULL), SH_EINVAL);
    /* nothing was created by the failures (all or nothing) */
    assert_int_equal(sessions_count(s), 0);
    sessions_close(s);
}

static char *big_message(size_t text_len) {
    char *buf = malloc(text_len + 64);
    int n = snprintf(buf, 64, "[{\"role\":\"user\",\"content\":\"");
    memset(buf + n, 'x', text_len);
    strcpy(buf + n + text_len, "\"}]");
    return buf;
}

static void test_oversized(void **state) {
    (void)state;
    sessions *s;
    assert_int_equal(sessions_open(&s, g_db, 100, 60), SH_OK);
    char *five = big_message(5u << 20);
    assert_int_equal(sessions_append(s, "big", five), SH_OK);
    assert_int_equal(sessions_append(s, "big", five), SH_EFULL);
    assert_int_equal(history_len(s, "big"), 1); /* unchanged */
    char *nine = big_message(9u << 20);
    assert_int_equal(sessions_append(s, "other", nine), SH_EFULL);
    assert_int_equal(sessions_put_history(s, "big", nine), SH_EFULL);
    session_info info;
    assert_int_equal(sessions_info(s, "other", &info), SH_ENOTFOUND);
    /* replacing with something smaller makes room again */
    assert_int_equal(sessions_put_history(s, "big", "[{\"role\":\"user\",\"content\":\"s\"}]"),
                     SH_OK);
    assert_int_equal(sessions_append(s, "big", five), SH_OK);
    assert_int_equal(history_len(s, "big"), 2);
    /* the boundary: exactly the maximum fits */
    size_t overhead = strlen("[{\"role\":\"user\",\"content\":\"\"}]");
    char *exact = big_message(SESSIONS_MAX_HISTORY_BYTES - overhead);
    assert_int_equal(strlen(exact), SESSIONS_MAX_HISTORY_BYTES);
    assert_int_equal(sessions_put_history(s, "edge", exact), SH_OK);
    assert_int_equal(sessions_info(s, "edge", &info), SH_OK);
    assert_int_equal(info.bytes, SESSIONS_MAX_HISTORY_BYTES);
    char *h = NULL;
    assert_int_equal(sessions_get_history(s, "edge", &h, NULL), SH_OK);
    assert_string_equal(h, exact);
    free(h);
    assert_int_equal(sessions_append(s, "edge", "[]"), SH_OK);
    assert_int_equal(sessions_append(s, "edge", "[{\"role\":\"user\",\"content\":\"\"}]"),
                     SH_EFULL);
    free(exact);
    free(five);
    free(nine);
    sessions_close(s);
}

enum { N_THREADS = 4, N_APPENDS = 40 };

typedef struct {
    sessions *s;
    int idx;
    int fails;
} worker;

static void *append_worker(void *p) {
    worker *w = p;
    char own[32], msg[96];
    snprintf(own, sizeof own, "own-%d", w->idx);
    for (int i = 0; i < N_APPENDS; i++) {
        snprintf(msg, sizeof msg, "[{\"role\":\"user\",\"content\":\"t%d-%d\"}]", w->idx, i);
        if (sessions_append(w->s, "shared", msg) != SH_OK) w->fails++;
        if (sessions_append(w->s, own, msg) != SH_OK) w->fails++;
        if (i % 8 == 0) {
            char *h = NULL;
            if (sessions_get_history(w->s, "shared", &h, NULL) != SH_OK) w->fails++;
            free(h);
        }
    }
    return NULL;
}

static void test_concurrent(void **state) {
    (void)state;
    sessions *s;
    assert_int_equal(sessions_open(&s, g_db, 100, 60), SH_OK);
    pthread_t th[N_THREADS];
    worker w[N_THREADS];
    for (int i = 0; i < N_THREADS; i++) {
        w[i] = (worker){.s = s, .idx = i};
        assert_int_equal(pthread_create(&th[i], NULL, append_worker, &w[i]), 0);
    }
    for (int i = 0; i < N_THREADS; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(w[i].fails, 0);
    }
    assert_int_equal(history_len(s, "shared"), N_THREADS * N_APPENDS);
    assert_int_equal(sessions_count(s), N_THREADS + 1);
    /* every thread's messages are there, each thread's in its order */
    char *h = NULL;
    assert_int_equal(sessions_get_history(s, "shared", &h, NULL), SH_OK);
    json_t *a = json_loads(h, 0, NULL);
    assert_non_null(a);
    int next[N_THREADS] = {0};
    size_t i;
    json_t *m;
    json_array_foreach(a, i, m) {
        int t, k;
        assert_int_equal(sscanf(json_string_value(json_object_get(m, "content")), "t%d-%d", &t, &k),
                         2);
        assert_int_equal(k, next[t]);
        next[t]++;
    }
    json_decref(a);
    free(h);
    for (int t = 0; t < N_THREADS; t++) {
        char own[32];
        snprintf(own, sizeof own, "own-%d", t);
        assert_int_equal(history_len(s, own), N_APPENDS);
    }
    sessions_close(s);
}

static void test_open_errors(void **state) {
    (void)state;
    sessions *s = NULL;
    assert_int_equal(sessions_open(&s, g_db, 0, 60), SH_EINVAL);
    assert_int_equal(sessions_open(&s, g_db, 10, 0), SH_EINVAL);
    assert_null(s);
    char path[400];
    snprintf(path, sizeof path, "%s/no/such/dir/x.db", g_dir);
    assert_int_equal(sessions_open(&s, path, 10, 60), SH_EIO);

    /* a newer schema is refused, not clobbered */
    assert_int_equal(sessions_open(&s, g_db, 10, 60), SH_OK);
    sessions_close(s);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(g_db, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    assert_int_equal(sessions_open(&s, g_db, 10, 60), SH_EUNSUPPORTED);
    assert_null(s);

    /* not a database */
    snprintf(path, sizeof path, "%s/junk.db", g_dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    for (int i = 0; i < 200; i++) fputs("this is not an sqlite database file. ", f);
    fclose(f);
    assert_int_equal(sessions_open(&s, path, 10, 60), SH_EFORMAT);
    unlink(path);
}

/* ---- trimming ---- */

static void expect_trim(const char *in, int64_t units, const char *want, int64_t want_dropped) {
    char *out = NULL;
    int64_t dropped = -1;
    assert_int_equal(sessions_trim_json(in, units, &out, &dropped), SH_OK);
    json_t *a = json_loads(out, 0, NULL), *b = json_loads(want, 0, NULL);
    assert_non_null(a);
    assert_non_null(b);
    if (!json_equal(a, b)) fail_msg("trim(%lld): got %s want %s", (long long)units, out, want);
    assert_int_equal(dropped, want_dropped);
    json_decref(a);
    json_decref(b);
    free(out);
}

#define U(x) "{\"role\":\"user\",\"content\":\"" x "\"}"
#define A(x) "{\"role\":\"assistant\",\"content\":\"" x "\"}"
#define A_TOOL(x)                                                                                  \
    "{\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":\"t\"},{\"type\":\"tool_"    \
    "use\","                                                                                       \
    "\"id\":\"" x "\",\"name\":\"f\",\"input\":{}}]}"
#define U_RES(x)                                                                                   \
    "{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":\"" x               \
    "\",\"content\":\"r\"}]}"
#define U_BLK(x) "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"" x "\"}]}"

static void test_trim(void **state) {
    (void)state;
    const char *plain = "[" U("1") "," A("1") "," U("2") "," A("2") "," U("3") "]";
    expect_trim(plain, 0, plain, 0);
    expect_trim(plain, 1, "[" U("2") "," A("2") "," U("3") "]", 2);
    expect_trim(plain, 2, "[" U("3") "]", 4);
    expect_trim(plain, 3, "[]", 5);
    expect_trim(plain, 99, "[]", 5);

    int64_t *cuts = NULL, nc = 0;
    assert_int_equal(sessions_cut_points(plain, &cuts, &nc), SH_OK);
    assert_int_equal(nc, 3);
    assert_int_equal(cuts[0], 2);
    assert_int_equal(cuts[1], 4);
    assert_int_equal(cuts[2], 5);
    free(cuts);

    /* a tool exchange is never split: u1 a(tool_use) u(tool_result) a u2 a(tool_use) u(result) a */
    const char *tools = "[" U("1") "," A_TOOL("c1") "," U_RES("c1") "," A("done") "," U_BLK(
        "2") "," A_TOOL("c2") "," U_RES("c2") "," A_TOOL("c3") "," U_RES("c3") "," A("ok") "]";
    expect_trim(tools, 1,
                "[" U_BLK("2") "," A_TOOL("c2") "," U_RES("c2") "," A_TOOL("c3") "," U_RES(
                    "c3") "," A("ok") "]",
                4);
    expect_trim(tools, 2, "[]", 10);
    assert_int_equal(sessions_cut_points(tools, &cuts, &nc), SH_OK);
    assert_int_equal(nc, 2);
    assert_int_equal(cuts[0], 4);
    assert_int_equal(cuts[1], 10);
    free(cuts);

    /* trimming one unit at a time in a loop converges */
    char *cur = strdup(tools);
    int rounds = 0;
    while (strcmp(cur, "[]") != 0) {
        char *next = NULL;
        assert_int_equal(sessions_trim_json(cur, 1, &next, NULL), SH_OK);
        free(cur);
        cur = next;
        rounds++;
        assert_true(rounds <= 2);
    }
    free(cur);

    /* a history that starts oddly (assistant first) loses that message with the first unit */
    expect_trim("[" A("0") "," U("1") "," A("1") "]", 1, "[" U("1") "," A("1") "]", 1);
    /* consecutive user messages: each plain user message is a turn start */
    expect_trim("[" U("1") "," U("2") "," A("2") "]", 1, "[" U("2") "," A("2") "]", 1);

    /* empty and malformed */
    expect_trim("[]", 1, "[]", 0);
    assert_int_equal(sessions_cut_points("[]", &cuts, &nc), SH_OK);
    assert_int_equal(nc, 0);
    assert_null(cuts);
    char *out = NULL;
    assert_int_equal(sessions_trim_json("[{\"role\":\"x\"}]", 1, &out, NULL), SH_EFORMAT);
    assert_int_equal(sessions_trim_json("nope", 1, &out, NULL), SH_EFORMAT);
    assert_null(out);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_crud, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_found, setup, teardown),
        cmocka_unit_test_setup_teardown(test_persistence, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crash, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lru, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_ids, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oversized, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_errors, setup, teardown),
        cmocka_unit_test(test_trim),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
