/* router.c - see router.h. */
#include "router/router.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "base/status.h"

#define ROUTER_TEXT_MAX 4096 /* bytes of the query looked at: the start says what it is */
#define ROUTER_BUSY_MS 5000

/* ======================================================================================
 * categories
 * ==================================================================================== */

static const char *const cat_names[RCAT_COUNT] = {"greeting",    "definition", "how-to",
                                                  "explanation", "code",       "debugging",
                                                  "comparison",  "opinion",    "other"};

const char *router_category_name(router_category c) {
    return (unsigned)c < RCAT_COUNT ? cat_names[c] : "other";
}

int router_category_parse(const char *name) {
    for (int i = 0; name && i < RCAT_COUNT; i++)
        if (!strcmp(name, cat_names[i])) return i;
    return -1;
}

static int is_word(char c) {
    return isalnum((unsigned char)c) || c == '_';
}

/* phrase at s[pos], at word boundaries where the phrase itself begins/ends with a word char */
static int match_at(const char *s, size_t n, size_t pos, const char *ph) {
    size_t l = strlen(ph);
    if (pos + l > n || memcmp(s + pos, ph, l)) return 0;
    if (is_word(ph[0]) && pos > 0 && is_word(s[pos - 1])) return 0;
    if (is_word(ph[l - 1]) && pos + l < n && is_word(s[pos + l])) return 0;
    return 1;
}

static int contains(const char *s, size_t n, const char *ph) {
    for (const char *p = s; (p = memmem(p, n - (size_t)(p - s), ph, strlen(ph))); p++)
        if (match_at(s, n, (size_t)(p - s), ph)) return 1;
    return 0;
}

static int any(const char *s, size_t n, const char *const *list) {
    for (; *list; list++)
        if (contains(s, n, *list)) return 1;
    return 0;
}

static int starts_any(const char *s, size_t n, const char *const *list) {
    for (; *list; list++)
        if (match_at(s, n, 0, *list)) return 1;
    return 0;
}

/* Lowercases, folds the typographic apostrophe to ', collapses blanks; returns the length. */
static size_t normalise(const char *in, size_t len, char *out, size_t cap) {
    size_t j = 0;
    int space = 1;
    for (size_t i = 0; i < len && j + 1 < cap; i++) {
        unsigned char c = (unsigned char)in[i];
        if (c == 0xE2 && i + 2 < len && (unsigned char)in[i + 1] == 0x80 &&
            (unsigned char)in[i + 2] == 0x99) {
            c = '\'';
            i += 2;
        }
        if (isspace(c)) {
            if (!space) out[j++] = ' ';
            space = 1;
            continue;
        }
        out[j++] = (char)tolower(c);
        space = 0;
    }
    while (j && out[j - 1] == ' ') j--;
    out[j] = 0;
    return j;
}

static size_t skip_punct(const char *s, size_t n, size_t i) {
    while (i < n &&
           (s[i] == ' ' || s[i] == ',' || s[i] == '!' || s[i] == '.' || s[i] == '-' || s[i] == ':'))
        i++;
    return i;
}

static const char *const greet_words[] = {
    "hi there", "hello there", "hey there", "good morning", "good afternoon", "good evening",
    "hello",    "hiya",        "hi",        "hey",          "howdy",          "greetings",
    "yo",       NULL};
static const char *const pleasantries[] = {"how are you",
                                           "how are you doing",
                                           "how's it going",
                                           "how is it going",
                                           "what's up",
                                           "whats up",
                                           "sup",
                                           "nice to meet you",
                                           "thanks",
                                           "thank you",
                                           "thank you very much",
                                           "thanks a lot",
                                           "thx",
                                           "cheers",
                                           "good night",
                                           "bye",
                                           "goodbye",
                                           NULL};

/* 1 when s[0..n) is exactly one of list, give or take trailing punctuation and "?" */
static int exactly_one_of(const char *s, size_t n, const char *const *list) {
    for (; *list; list++) {
        size_t l = strlen(*list);
        if (n < l || memcmp(s, *list, l)) continue;
        size_t k = l;
        while (k < n && strchr(" ,.!?:)(", s[k])) k++;
        if (k == n) return 1;
    }
    return 0;
}

router_category router_categorize_text(const char *text, size_t len) {
    char buf[ROUTER_TEXT_MAX + 1];
    size_t n = normalise(text ? text : "", text ? len : 0, buf, sizeof buf);
    const char *s = buf;
    if (!n) return RCAT_OTHER;
    /* strip a leading greeting: "hi, what is a monad?" is a definition */
    int greeted = 0;
    for (int again = 1; again;) {
        again = 0;
        for (const char *const *g = greet_words; *g; g++)
            if (match_at(s, n, 0, *g)) {
                size_t k = skip_punct(s, n, strlen(*g));
                s += k, n -= k, greeted = again = 1;
                break;
            }
    }
    if (!n || exactly_one_of(s, n, pleasantries) || (greeted && n <= 3)) return RCAT_GREETING;

    static const char *const debugging[] = {"error",
                                            "errors",
                                            "exception",
                                            "traceback",
                                            "stack trace",
                                            "stacktrace",
                                            "segfault",
                                            "segmentation fault",
                                            "crash",
                                            "crashes",
                                            "crashed",
                                            "crashing",
                                            "bug",
                                            "bugs",
                                            "debug",
                                            "debugging",
                                            "panic",
                                            "panicked",
                                            "doesn't work",
                                            "does not work",
                                            "isn't working",
                                            "not working",
                                            "fails",
                                            "failing",
                                            "failed",
                                            "fix",
                                            "undefined reference",
                                            "core dumped",
                                            "nullpointerexception",
                                            "undefined is not",
                                            NULL};
    if (any(s, n, debugging)) return RCAT_DEBUGGING;

    static const char *const code[] = {"```",
                                       "#include",
                                       "def ",
                                       "();",
                                       "=>",
                                       "::",
                                       "code",
                                       "function",
                                       "functions",
                                       "regex",
                                       "regular expression",
                                       "sql",
                                       "query",
                                       "compile",
                                       "compiler",
                                       "script",
                                       "python",
                                       "javascript",
                                       "typescript",
                                       "rust",
                                       "golang",
                                       "java",
                                       "c++",
                                       "c#",
                                       "ruby",
                                       "php",
                                       "bash",
                                       "shell",
                                       "kotlin",
                                       "swift",
                                       "haskell",
                                       "html",
                                       "css",
                                       "json",
                                       "yaml",
                                       "api",
                                       "algorithm",
                                       "implement",
                                       "implementation",
                                       "refactor",
                                       "unit test",
                                       "git",
                                       NULL};
    if (any(s, n, code)) return RCAT_CODE;

    static const char *const comparison[] = {"vs",
                                             "vs.",
                                             "versus",
                                             "compare",
                                             "compared",
                                             "comparison",
                                             "difference between",
                                             "differences between",
                                             "better than",
                                             "pros and cons",
                                             "which is better",
                                             "worse than",
                                             NULL};
    if (any(s, n, comparison)) return RCAT_COMPARISON;

    static const char *const howto_start[] = {"how do i",     "how can i",   "how to",
                                              "how should i", "how would i", "how do you",
                                              "steps to",     "teach me",    NULL};
    static const char *const howto_any[] = {"step by step", "step-by-step", "tutorial",
                                            "guide to",     "best way to",  "instructions for",
                                            "how do i",     "how can i",    NULL};
    if (starts_any(s, n, howto_start) || any(s, n, howto_any)) return RCAT_HOWTO;

    static const char *const opinion[] = {
        "do you think",  "what do you think", "your opinion", "should i",       "would you",
        "do you prefer", "do you like",       "recommend",    "recommendation", "favorite",
        "favourite",     "worth it",          "is it better", "best",           NULL};
    if (any(s, n, opinion)) return RCAT_OPINION;

    static const char *const def_start[] = {"what is",       "what's",     "whats",   "what are",
                                            "who is",        "who was",    "who are", "define",
                                            "definition of", "meaning of", NULL};
    static const char *const def_any[] = {"definition of", "meaning of", "what is meant by", NULL};
    if (starts_any(s, n, def_start) || any(s, n, def_any) ||
        (contains(s, n, "what does") && contains(s, n, "mean")))
        return RCAT_DEFINITION;

    static const char *const expl_start[] = {"why",          "how does",    "how do",
                                             "how is",       "how are",     "how did",
                                             "what happens", "what causes", NULL};
    static const char *const expl_any[] = {
        "explain", "explanation", "describe", "tell me about", "walk me through", "why", NULL};
    if (starts_any(s, n, expl_start) || any(s, n, expl_any)) return RCAT_EXPLANATION;
    return RCAT_OTHER;
}

router_category router_categorize(const conv_request *req) {
    if (req->api == CONV_API_COMPLETION)
        return router_categorize_text(req->prompt, req->prompt ? strlen(req->prompt) : 0);
    for (int i = req->n_messages - 1; i >= 0; i--) {
        const conv_message *m = &req->messages[i];
        if (m->role != CONV_USER) continue;
        /* the text blocks joined; only the first ROUTER_TEXT_MAX bytes matter */
        char buf[ROUTER_TEXT_MAX];
        size_t len = 0;
        for (int b = 0; b < m->n_blocks && len < sizeof buf; b++) {
            if (m->blocks[b].kind != CONV_TEXT || !m->blocks[b].text) continue;
            size_t l = strlen(m->blocks[b].text);
            if (len && len < sizeof buf) buf[len++] = ' ';
            if (l > sizeof buf - len) l = sizeof buf - len;
            memcpy(buf + len, m->blocks[b].text, l);
            len += l;
        }
        return router_categorize_text(buf, len);
    }
    return RCAT_OTHER;
}

/* ======================================================================================
 * state
 * ==================================================================================== */

#define N_ROUTES (CONFIG_MAX_TEACHERS + 3) /* local, error, teachers, teacher:other */
enum { R_LOCAL = 0, R_ERROR = 1, R_TEACHER0 = 2 };

struct router {
    pthread_mutex_t mu;
    const sh_config_teacher *teachers; /* borrowed */
    int n_teachers;
    router_opts o;
    sqlite3 *db;
    double theta;
    int64_t succ[RCAT_COUNT], fail[RCAT_COUNT], n_local[RCAT_COUNT], n_fwd[RCAT_COUNT];
    int64_t policy_decisions, policy_forwarded;
    int64_t routes[N_ROUTES];
    int unsaved; /* decisions since the last save */
};

void router_opts_default(router_opts *o) {
    o->target_forward_rate = 0.1;
    o->eta = 0.01;
    o->theta_initial = 0.5;
    o->theta_min = 0.05;
    o->theta_max = 0.9;
    o->min_evidence = 5;
}

static double clampd(double v, double lo, double hi) {
    return v < lo ? lo : v > hi ? hi : v;
}

static const char *teacher_name(const sh_config_teacher *t) {
    return t->name && *t->name ? t->name : t->model ? t->model : "?";
}

static int n_teachers(const router *r) {
    return r->n_teachers;
}

/* ---- SQLite ---- */

static int db_fail(router *r, int rc, const char *what) {
    int st = (rc & 0xff) == SQLITE_NOTADB || (rc & 0xff) == SQLITE_CORRUPT ? SH_EFORMAT : SH_EIO;
    return sh_error_set(st, "router store: %s: %s", what,
                        r->db ? sqlite3_errmsg(r->db) : sqlite3_errstr(rc));
}

static int exec(router *r, const char *sql, const char *what) {
    int rc = sqlite3_exec(r->db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? SH_OK : db_fail(r, rc, what);
}

static const char *const schema[] = {
    "CREATE TABLE IF NOT EXISTS router_stats ("
    " category TEXT PRIMARY KEY NOT NULL,"
    " successes INTEGER NOT NULL DEFAULT 0,"
    " failures INTEGER NOT NULL DEFAULT 0,"
    " routed_local INTEGER NOT NULL DEFAULT 0,"
    " routed_teacher INTEGER NOT NULL DEFAULT 0,"
    " updated_at INTEGER NOT NULL DEFAULT 0"
    ") WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS router_params ("
    " key TEXT PRIMARY KEY NOT NULL,"
    " value REAL NOT NULL"
    ") WITHOUT ROWID",
};

static int save_locked(router *r) {
    if (!r->db) return SH_OK;
    sqlite3_stmt *q = NULL, *p = NULL;
    int st = exec(r, "BEGIN IMMEDIATE", "begin");
    if (st) return st;
    int rc = sqlite3_prepare_v2(
        r->db,
        "INSERT INTO router_stats(category, successes, failures, routed_local, routed_teacher,"
        " updated_at) VALUES(?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT(category) DO UPDATE SET"
        " successes = ?2, failures = ?3, routed_local = ?4, routed_teacher = ?5,"
        " updated_at = ?6",
        -1, &q, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(r->db,
                                "INSERT INTO router_params(key, value) VALUES(?1, ?2)"
                                " ON CONFLICT(key) DO UPDATE SET value = ?2",
                                -1, &p, NULL);
    for (int c = 0; rc == SQLITE_OK && c < RCAT_COUNT; c++) {
        sqlite3_bind_text(q, 1, cat_names[c], -1, SQLITE_STATIC);
        sqlite3_bind_int64(q, 2, r->succ[c]);
        sqlite3_bind_int64(q, 3, r->fail[c]);
        sqlite3_bind_int64(q, 4, r->n_local[c]);
        sqlite3_bind_int64(q, 5, r->n_fwd[c]);
        sqlite3_bind_int64(q, 6, (sqlite3_int64)time(NULL));
        rc = sqlite3_step(q);
        rc = rc == SQLITE_DONE ? SQLITE_OK : rc;
        sqlite3_reset(q);
    }
    const char *keys[] = {"threshold", "policy_decisions", "policy_forwarded"};
    double vals[] = {r->theta, (double)r->policy_decisions, (double)r->policy_forwarded};
    for (int i = 0; rc == SQLITE_OK && i < 3; i++) {
        sqlite3_bind_text(p, 1, keys[i], -1, SQLITE_STATIC);
        sqlite3_bind_double(p, 2, vals[i]);
        rc = sqlite3_step(p);
        rc = rc == SQLITE_DONE ? SQLITE_OK : rc;
        sqlite3_reset(p);
    }
    if (rc != SQLITE_OK) st = db_fail(r, rc, "save");
    sqlite3_finalize(q);
    sqlite3_finalize(p);
    if (st == SH_OK) st = exec(r, "COMMIT", "commit");
    if (st && !sqlite3_get_autocommit(r->db)) sqlite3_exec(r->db, "ROLLBACK", NULL, NULL, NULL);
    if (st == SH_OK) r->unsaved = 0;
    return st;
}

static int load(router *r) {
    sqlite3_stmt *q = NULL;
    int rc = sqlite3_prepare_v2(
        r->db,
        "SELECT category, successes, failures, routed_local, routed_teacher FROM router_stats", -1,
        &q, NULL);
    if (rc != SQLITE_OK) return db_fail(r, rc, "read");
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        int c = router_category_parse((const char *)sqlite3_column_text(q, 0));
        if (c < 0) continue; /* a category of a newer version */
        int64_t v[4];
        for (int i = 0; i < 4; i++) {
            v[i] = sqlite3_column_int64(q, i + 1);
            if (v[i] < 0) v[i] = 0;
        }
        r->succ[c] = v[0], r->fail[c] = v[1], r->n_local[c] = v[2], r->n_fwd[c] = v[3];
    }
    sqlite3_finalize(q);
    if (rc != SQLITE_DONE) return db_fail(r, rc, "read");
    rc = sqlite3_prepare_v2(r->db, "SELECT key, value FROM router_params", -1, &q, NULL);
    if (rc != SQLITE_OK) return db_fail(r, rc, "read");
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        const char *k = (const char *)sqlite3_column_text(q, 0);
        double v = sqlite3_column_double(q, 1);
        if (!k || !isfinite(v) || v < 0) continue;
        if (!strcmp(k, "threshold"))
            r->theta = clampd(v, r->o.theta_min, r->o.theta_max);
        else if (!strcmp(k, "policy_decisions"))
            r->policy_decisions = (int64_t)v;
        else if (!strcmp(k, "policy_forwarded"))
            r->policy_forwarded = (int64_t)v;
    }
    sqlite3_finalize(q);
    return rc == SQLITE_DONE ? SH_OK : db_fail(r, rc, "read");
}

static int open_db(router *r, const char *path) {
    /* created here so it is private (0600) when it does not exist yet; SQLite gives -wal/-shm
     * the same mode */
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return sh_error_set(SH_EIO, "router store: cannot open %s: %s", path, strerror(errno));
    close(fd);
    int rc = sqlite3_open_v2(
        path, &r->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK)
        return r->db ? db_fail(r, rc, "open")
                     : sh_error_set(SH_ENOMEM, "router store: out of memory");
    sqlite3_busy_timeout(r->db, ROUTER_BUSY_MS);
    int st = exec(r, "PRAGMA journal_mode=WAL", "set WAL");
    /* NORMAL: a crash may lose the last feedback, never corrupt the file */
    if (st == SH_OK) st = exec(r, "PRAGMA synchronous=NORMAL", "set synchronous");
    for (size_t i = 0; st == SH_OK && i < sizeof schema / sizeof *schema; i++)
        st = exec(r, schema[i], "create tables");
    if (st == SH_OK) st = load(r);
    return st;
}

int router_open(router **out, const sh_config_teacher *teachers, int n_teachers,
                const char *db_path, const router_opts *opts) {
    *out = NULL;
    if (n_teachers < 0 || n_teachers > CONFIG_MAX_TEACHERS || (n_teachers && !teachers))
        return sh_error_set(SH_EINVAL, "router: %d teachers (0..%d)", n_teachers,
                            CONFIG_MAX_TEACHERS);
    router *r = calloc(1, sizeof *r);
    if (!r) return sh_error_set(SH_ENOMEM, "router: out of memory");
    r->teachers = teachers;
    r->n_teachers = n_teachers;
    router_opts_default(&r->o);
    if (opts) {
        r->o = *opts;
        router_opts d;
        router_opts_default(&d);
        if (!(r->o.target_forward_rate >= 0 && r->o.target_forward_rate <= 1))
            r->o.target_forward_rate = d.target_forward_rate;
        if (!(r->o.eta >= 0 && r->o.eta <= 1)) r->o.eta = d.eta; /* 0: a fixed threshold */
        if (!(r->o.theta_min >= 0 && r->o.theta_max <= 1 && r->o.theta_min <= r->o.theta_max))
            r->o.theta_min = d.theta_min, r->o.theta_max = d.theta_max;
        if (!(r->o.theta_initial >= 0 && r->o.theta_initial <= 1))
            r->o.theta_initial = d.theta_initial;
        if (r->o.min_evidence < 0) r->o.min_evidence = d.min_evidence;
    }
    r->theta = clampd(r->o.theta_initial, r->o.theta_min, r->o.theta_max);
    if (pthread_mutex_init(&r->mu, NULL)) {
        free(r);
        return sh_error_set(SH_ENOMEM, "router: cannot create mutex");
    }
    if (db_path) {
        int st = open_db(r, db_path);
        if (st) {
            sqlite3_close(r->db);
            pthread_mutex_destroy(&r->mu);
            free(r);
            return st;
        }
    }
    *out = r;
    return SH_OK;
}

void router_close(router *r) {
    if (!r) return;
    if (r->unsaved) save_locked(r);
    sqlite3_close(r->db);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

/* ======================================================================================
 * decisions
 * ==================================================================================== */

static void set_teachers(router *r, router_decision *d, int first, int count) {
    d->kind = ROUTE_TEACHER;
    d->first = first;
    d->count = count;
    snprintf(d->label, sizeof d->label, "teacher:%s", teacher_name(&r->teachers[first]));
}

static void set_error(router_decision *d, conv_error_kind k, const char *fmt, const char *arg) {
    d->kind = ROUTE_ERROR;
    d->error_kind = k;
    snprintf(d->error, sizeof d->error, fmt, arg);
    snprintf(d->label, sizeof d->label, "error");
}

static const char *local_state_name(router_local_state s) {
    switch (s) {
    case ROUTER_LOCAL_DISABLED:
        return "disabled ([backend] enabled = false)";
    case ROUTER_LOCAL_ABSENT:
        return "not configured";
    case ROUTER_LOCAL_LOADING:
        return "still loading";
    case ROUTER_LOCAL_FAILED:
        return "failed to load";
    default:
        return "ready";
    }
}

static int model_teacher(const router *r, const char *model) {
    if (!model || !*model) return -1;
    if (!strncasecmp(model, "teacher:", 8)) model += 8;
    for (int i = 0; i < n_teachers(r); i++) {
        const sh_config_teacher *t = &r->teachers[i];
        if ((t->name && !strcasecmp(t->name, model)) || (t->model && !strcasecmp(t->model, model)))
            return i;
    }
    return -1;
}

void router_decide(router *r, const conv_request *req, router_local_state local,
                   router_decision *d) {
    memset(d, 0, sizeof *d);
    d->category = router_categorize(req);
    snprintf(d->label, sizeof d->label, "local");
    int nt = n_teachers(r);
    int ti = model_teacher(r, req->model);
    if (ti >= 0) {
        d->rule = RULE_MODEL;
        set_teachers(r, d, ti, 1);
        return;
    }
    if (req->local_only) {
        d->rule = RULE_LOCAL_ONLY;
        if (local != ROUTER_LOCAL_READY)
            set_error(d, CONV_ERR_UNAVAILABLE, "local_only was asked but the local model is %s",
                      local_state_name(local));
        return;
    }
    if (local != ROUTER_LOCAL_READY) {
        d->rule = RULE_UNAVAILABLE;
        if (nt)
            set_teachers(r, d, 0, nt);
        else
            set_error(d, CONV_ERR_UNAVAILABLE,
                      "the local model is %s and no teachers are configured",
                      local_state_name(local));
        return;
    }
    d->rule = RULE_POLICY;
    pthread_mutex_lock(&r->mu);
    router_category c = d->category;
    int64_t n = r->succ[c] + r->fail[c];
    d->estimate = (double)(r->succ[c] + 1) / (double)(n + 2);
    d->threshold = r->theta;
    if (nt) {
        int fwd = n >= r->o.min_evidence && d->estimate < r->theta;
        r->theta = clampd(r->theta + r->o.eta * (r->o.target_forward_rate - fwd), r->o.theta_min,
                          r->o.theta_max);
        r->policy_decisions++;
        r->policy_forwarded += fwd;
        if (fwd)
            r->n_fwd[c]++;
        else
            r->n_local[c]++;
        if (++r->unsaved >= ROUTER_SAVE_EVERY)
            save_locked(r); /* best effort: kept in memory anyway */
        if (fwd) set_teachers(r, d, 0, nt);
    } else {
        r->n_local[c]++;
    }
    pthread_mutex_unlock(&r->mu);
}

int router_fallback(router *r, const conv_request *req, router_decision *d) {
    int nt = n_teachers(r);
    if (req->local_only || !nt) return 0;
    memset(d, 0, sizeof *d);
    d->rule = RULE_FALLBACK;
    d->category = router_categorize(req);
    set_teachers(r, d, 0, nt);
    return 1;
}

int router_feedback(router *r, router_category c, int good) {
    if ((unsigned)c >= RCAT_COUNT)
        return sh_error_set(SH_EINVAL, "router: unknown category %d", (int)c);
    pthread_mutex_lock(&r->mu);
    if (good)
        r->succ[c]++;
    else
        r->fail[c]++;
    r->unsaved++;
    int st = save_locked(r);
    pthread_mutex_unlock(&r->mu);
    return st;
}

void router_count_route(router *r, const char *label) {
    int i = R_TEACHER0 + CONFIG_MAX_TEACHERS; /* teacher:other */
    if (!label || !strcmp(label, "local"))
        i = R_LOCAL;
    else if (!strcmp(label, "error"))
        i = R_ERROR;
    else if (!strncmp(label, "teacher:", 8))
        for (int k = 0; k < n_teachers(r); k++)
            if (!strcmp(label + 8, teacher_name(&r->teachers[k]))) {
                i = R_TEACHER0 + k;
                break;
            }
    pthread_mutex_lock(&r->mu);
    r->routes[i]++;
    pthread_mutex_unlock(&r->mu);
}

/* ======================================================================================
 * reporting
 * ==================================================================================== */

struct json_t *router_stats_json(router *r) {
    json_t *o = json_object(), *cats = json_array(), *routes = json_object();
    if (!o || !cats || !routes) goto fail;
    pthread_mutex_lock(&r->mu);
    for (int c = 0; c < RCAT_COUNT; c++) {
        int64_t n = r->succ[c] + r->fail[c];
        double p = (double)(r->succ[c] + 1) / (double)(n + 2);
        json_array_append_new(
            cats, json_pack("{s:s,s:I,s:I,s:f,s:b,s:I,s:I}", "name", cat_names[c], "successes",
                            (json_int_t)r->succ[c], "failures", (json_int_t)r->fail[c], "estimate",
                            p, "forward", n >= r->o.min_evidence && p < r->theta, "local",
                            (json_int_t)r->n_local[c], "forwarded", (json_int_t)r->n_fwd[c]));
    }
    json_object_set_new(routes, "local", json_integer(r->routes[R_LOCAL]));
    json_object_set_new(routes, "error", json_integer(r->routes[R_ERROR]));
    for (int k = 0; k < n_teachers(r); k++) {
        char key[160];
        snprintf(key, sizeof key, "teacher:%s", teacher_name(&r->teachers[k]));
        json_object_set_new(routes, key, json_integer(r->routes[R_TEACHER0 + k]));
    }
    if (r->routes[R_TEACHER0 + CONFIG_MAX_TEACHERS])
        json_object_set_new(routes, "teacher:other",
                            json_integer(r->routes[R_TEACHER0 + CONFIG_MAX_TEACHERS]));
    json_object_set_new(o, "threshold", json_real(r->theta));
    json_object_set_new(o, "target_forward_rate", json_real(r->o.target_forward_rate));
    json_object_set_new(o, "min_evidence", json_integer(r->o.min_evidence));
    json_object_set_new(o, "policy_decisions", json_integer(r->policy_decisions));
    json_object_set_new(o, "policy_forwarded", json_integer(r->policy_forwarded));
    pthread_mutex_unlock(&r->mu);
    json_object_set_new(o, "categories", cats);
    json_object_set_new(o, "routes", routes);
    return o;
fail:
    json_decref(o);
    json_decref(cats);
    json_decref(routes);
    return NULL;
}

/* Prometheus label value: \ " and newline escaped. */
static int label_value(conv_buf *b, const char *s) {
    int rc = 0;
    for (; *s && !rc; s++) {
        if (*s == '\\')
            rc = conv_buf_puts(b, "\\\\");
        else if (*s == '"')
            rc = conv_buf_puts(b, "\\\"");
        else if (*s == '\n')
            rc = conv_buf_puts(b, "\\n");
        else
            rc = conv_buf_append(b, s, 1);
    }
    return rc;
}

static int route_line(conv_buf *b, const char *prefix, const char *name, int64_t v) {
    int rc;
    if ((rc = conv_buf_printf(b, "shammah_route_requests_total{route=\"%s", prefix)) ||
        (rc = label_value(b, name)))
        return rc;
    return conv_buf_printf(b, "\"} %lld\n", (long long)v);
}

int router_metrics(router *r, conv_buf *b) {
    pthread_mutex_lock(&r->mu);
    int rc = conv_buf_puts(
        b, "# HELP shammah_route_requests_total Requests served, by route (x-shammah-route).\n"
           "# TYPE shammah_route_requests_total counter\n");
    if (!rc) rc = route_line(b, "", "local", r->routes[R_LOCAL]);
    if (!rc) rc = route_line(b, "", "error", r->routes[R_ERROR]);
    for (int k = 0; !rc && k < n_teachers(r); k++)
        rc = route_line(b, "teacher:", teacher_name(&r->teachers[k]), r->routes[R_TEACHER0 + k]);
    if (!rc && r->routes[R_TEACHER0 + CONFIG_MAX_TEACHERS])
        rc = route_line(b, "teacher:", "other", r->routes[R_TEACHER0 + CONFIG_MAX_TEACHERS]);
    if (!rc)
        rc =
            conv_buf_printf(b,
                            "# HELP shammah_router_threshold Forward when a category's local "
                            "success estimate is below this.\n"
                            "# TYPE shammah_router_threshold gauge\nshammah_router_threshold %.6f\n"
                            "# HELP shammah_router_category_estimate Estimated local success rate "
                            "per query category.\n"
                            "# TYPE shammah_router_category_estimate gauge\n",
                            r->theta);
    for (int c = 0; !rc && c < RCAT_COUNT; c++)
        rc = conv_buf_printf(b, "shammah_router_category_estimate{category=\"%s\"} %.6f\n",
                             cat_names[c],
                             (double)(r->succ[c] + 1) / (double)(r->succ[c] + r->fail[c] + 2));
    pthread_mutex_unlock(&r->mu);
    return rc;
}
