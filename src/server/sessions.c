/* sessions.c - durable session store on SQLite (see sessions.h for the contract).
 *
 * Every public call is one transaction (BEGIN IMMEDIATE ... COMMIT) under the module's mutex:
 * the mutex makes multi-statement operations atomic with respect to other threads on our one
 * connection, BEGIN IMMEDIATE makes them atomic with respect to any other process that opens
 * the file (the CLI, a second daemon refused by the pidfile but racing at start-up), and the
 * commit is the durability point. JSON is parsed and serialized before the lock is taken. */
#include "server/sessions.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/status.h"

#define SESS_BUSY_TIMEOUT_MS 5000
#define SESS_TRIM_MAX_BYTES ((size_t)64 << 20) /* input of the trimming helpers */

/* ---- statements ---- */

enum {
    ST_BEGIN,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_SEL_SESS,
    ST_INS_SESS,
    ST_UPD_SESS,
    ST_DEL_MSGS,
    ST_DEL_SESS,
    ST_INS_MSG,
    ST_SEL_MSGS,
    ST_PURGE_MSGS,
    ST_PURGE_SESS,
    ST_COUNT_LIVE,
    ST_LRU,
    ST_N
};

static const char *const stmt_sql[ST_N] = {
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_SEL_SESS] = "SELECT created_at, last_activity, message_count, body_bytes FROM sessions "
                    "WHERE id = ?1",
    [ST_INS_SESS] =
        "INSERT INTO sessions(id, created_at, last_activity, message_count, body_bytes) "
        "VALUES (?1, ?2, ?2, 0, 0)",
    [ST_UPD_SESS] = "UPDATE sessions SET last_activity = ?2, message_count = ?3, body_bytes = ?4 "
                    "WHERE id = ?1",
    [ST_DEL_MSGS] = "DELETE FROM messages WHERE session_id = ?1",
    [ST_DEL_SESS] = "DELETE FROM sessions WHERE id = ?1",
    [ST_INS_MSG] = "INSERT INTO messages(session_id, seq, body) VALUES (?1, ?2, ?3)",
    [ST_SEL_MSGS] = "SELECT body FROM messages WHERE session_id = ?1 ORDER BY seq",
    [ST_PURGE_MSGS] = "DELETE FROM messages WHERE session_id IN "
                      "(SELECT id FROM sessions WHERE last_activity < ?1)",
    [ST_PURGE_SESS] = "DELETE FROM sessions WHERE last_activity < ?1",
    [ST_COUNT_LIVE] = "SELECT count(*) FROM sessions WHERE last_activity >= ?1",
    [ST_LRU] = "SELECT id FROM sessions ORDER BY last_activity, created_at, id LIMIT 1",
};

/* Version 1. A rowid table for messages because bodies can be large (WITHOUT ROWID suits small
 * rows); the UNIQUE index serves both ordered reads and deletes by session. */
static const char *const schema_v1[] = {
    "CREATE TABLE sessions ("
    " id TEXT PRIMARY KEY NOT NULL,"
    " created_at INTEGER NOT NULL,"
    " last_activity INTEGER NOT NULL,"
    " message_count INTEGER NOT NULL,"
    " body_bytes INTEGER NOT NULL" /* sum of the message texts, without separators */
    ") WITHOUT ROWID",
    "CREATE INDEX sessions_by_activity ON sessions(last_activity)",
    "CREATE TABLE messages ("
    " session_id TEXT NOT NULL,"
    " seq INTEGER NOT NULL,"
    " body TEXT NOT NULL," /* one message object, compact JSON */
    " UNIQUE (session_id, seq))",
    "PRAGMA user_version = 1",
};

struct sessions {
    sqlite3 *db;
    pthread_mutex_t mu;
    int max_sessions;
    int64_t idle_seconds;
    sessions_clock_fn clock;
    void *clock_ctx;
    sqlite3_stmt *st[ST_N];
};

typedef struct {
    int64_t created_at, last_activity, count, body_bytes;
} sess_row;

/* ---- small helpers ---- */

static int db_status(int rc) {
    switch (rc & 0xff) {
    case SQLITE_NOMEM:
        return SH_ENOMEM;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
    case SQLITE_FORMAT:
    case SQLITE_SCHEMA:
        return SH_EFORMAT;
    case SQLITE_TOOBIG:
        return SH_EFULL;
    default:
        return SH_EIO;
    }
}

static int db_fail(sessions *s, int rc, const char *what) {
    return sh_error_set(db_status(rc), "session store: %s: %s", what, sqlite3_errmsg(s->db));
}

/* Serialized size of a JSON array of n elements whose texts add up to body bytes. */
static int64_t hist_bytes(int64_t n, int64_t body) {
    return n > 0 ? 2 + body + (n - 1) : 2;
}

static int64_t now_of(sessions *s) {
    return s->clock ? s->clock(s->clock_ctx) : (int64_t)time(NULL);
}

int sessions_id_valid(const char *id) {
    if (!id) return 0;
    size_t n = 0;
    for (const char *p = id; *p; p++, n++) {
        char c = *p;
        int ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                 c == '.' || c == '_' || c == ':' || c == '-';
        if (!ok || n >= SESSIONS_ID_MAX) return 0;
    }
    return n >= 1;
}

static int check_id(const char *id) {
    if (sessions_id_valid(id)) return SH_OK;
    return sh_error_set(SH_EINVAL, "invalid session id: 1..%d characters of [A-Za-z0-9._:-]",
                        SESSIONS_ID_MAX);
}

/* Runs a statement that returns no rows, then resets it (bindings stay until the next bind). */
static int run(sessions *s, int idx, const char *what) {
    sqlite3_stmt *st = s->st[idx];
    int rc = sqlite3_step(st);
    int out = rc == SQLITE_DONE ? SH_OK : db_fail(s, rc, what);
    sqlite3_reset(st);
    return out;
}

/* ---- message validation ---- */

static int check_message(json_t *m, size_t i) {
    if (!json_is_object(m)) return sh_error_set(SH_EFORMAT, "messages[%zu]: not an object", i);
    const char *role = json_string_value(json_object_get(m, "role"));
    if (!role || (strcmp(role, "user") != 0 && strcmp(role, "assistant") != 0))
        return sh_error_set(SH_EFORMAT, "messages[%zu]: role must be \"user\" or \"assistant\"", i);
    json_t *c = json_object_get(m, "content");
    if (json_is_string(c)) return SH_OK;
    if (!json_is_array(c))
        return sh_error_set(SH_EFORMAT, "messages[%zu]: content must be a string or an array", i);
    size_t j;
    json_t *b;
    json_array_foreach(c, j, b) {
        if (!json_is_object(b) || !json_is_string(json_object_get(b, "type")))
            return sh_error_set(SH_EFORMAT, "messages[%zu].content[%zu]: not a typed block", i, j);
    }
    return SH_OK;
}

/* Parses and validates a messages array of at most max_bytes text; *out is owned by the caller. */
static int parse_messages(const char *text, size_t max_bytes, json_t **out) {
    *out = NULL;
    if (!text) return sh_error_set(SH_EINVAL, "messages: NULL");
    if (strnlen(text, max_bytes + 1) > max_bytes)
        return sh_error_set(SH_EFULL, "messages: more than %zu bytes of JSON", max_bytes);
    json_error_t e;
    json_t *a = json_loads(text, 0, &e);
    if (!a) return sh_error_set(SH_EFORMAT, "messages: %s (line %d)", e.text, e.line);
    if (!json_is_array(a)) {
        json_decref(a);
        return sh_error_set(SH_EFORMAT, "messages: not a JSON array");
    }
    size_t i;
    json_t *m;
    json_array_foreach(a, i, m) {
        int st = check_message(m, i);
        if (st < 0) {
            json_decref(a);
            return st;
        }
    }
    *out = a;
    return SH_OK;
}

/* The messages to write, serialized one by one (owned). */
typedef struct {
    char **body;
    size_t *len;
    int64_t n;
    int64_t sum; /* total of len[] */
} msg_batch;

static void batch_free(msg_batch *b) {
    for (int64_t i = 0; i < b->n; i++) free(b->body[i]);
    free(b->body);
    free(b->len);
    memset(b, 0, sizeof *b);
}

static int batch_make(msg_batch *b, const char *messages_json) {
    memset(b, 0, sizeof *b);
    json_t *a = NULL;
    int st = parse_messages(messages_json, SESSIONS_MAX_HISTORY_BYTES, &a);
    if (st < 0) return st;
    size_t n = json_array_size(a);
    b->body = calloc(n ? n : 1, sizeof *b->body);
    b->len = calloc(n ? n : 1, sizeof *b->len);
    if (!b->body || !b->len) {
        st = sh_error_set(SH_ENOMEM, "messages: out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        b->body[i] = json_dumps(json_array_get(a, i), JSON_COMPACT);
        if (!b->body[i]) {
            st = sh_error_set(SH_ENOMEM, "messages: cannot serialize");
            goto out;
        }
        b->n = (int64_t)i + 1;
        b->len[i] = strlen(b->body[i]);
        b->sum += (int64_t)b->len[i];
    }
out:
    json_decref(a);
    if (st < 0) batch_free(b);
    return st;
}

/* ---- operations inside a transaction (mutex held, BEGIN done) ---- */

static int delete_session(sessions *s, const char *id) {
    sqlite3_bind_text(s->st[ST_DEL_MSGS], 1, id, -1, SQLITE_STATIC);
    int st = run(s, ST_DEL_MSGS, "delete messages");
    if (st < 0) return st;
    sqlite3_bind_text(s->st[ST_DEL_SESS], 1, id, -1, SQLITE_STATIC);
    return run(s, ST_DEL_SESS, "delete session");
}

/* Looks id up; an expired session is deleted on the way (lazy purge) and reported absent.
 * *found is 1 with *row filled, or 0. */
static int load(sessions *s, const char *id, int64_t now, sess_row *row, int *found) {
    *found = 0;
    sqlite3_stmt *q = s->st[ST_SEL_SESS];
    sqlite3_bind_text(q, 1, id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW) {
        row->created_at = sqlite3_column_int64(q, 0);
        row->last_activity = sqlite3_column_int64(q, 1);
        row->count = sqlite3_column_int64(q, 2);
        row->body_bytes = sqlite3_column_int64(q, 3);
        *found = 1;
    }
    int st = (rc == SQLITE_ROW || rc == SQLITE_DONE) ? SH_OK : db_fail(s, rc, "read session");
    sqlite3_reset(q);
    if (st < 0 || !*found) return st;
    if (row->count < 0 || row->body_bytes < 0)
        return sh_error_set(SH_EFORMAT, "session store: session '%s' has a corrupt record", id);
    if (row->last_activity < now - s->idle_seconds) {
        *found = 0;
        return delete_session(s, id);
    }
    return SH_OK;
}

static int purge_locked(sessions *s, int64_t now) {
    int64_t cutoff = now - s->idle_seconds;
    sqlite3_bind_int64(s->st[ST_PURGE_MSGS], 1, cutoff);
    int st = run(s, ST_PURGE_MSGS, "purge messages");
    if (st < 0) return st;
    sqlite3_bind_int64(s->st[ST_PURGE_SESS], 1, cutoff);
    st = run(s, ST_PURGE_SESS, "purge sessions");
    if (st < 0) return st;
    int n = sqlite3_changes(s->db);
    return n;
}

static int64_t count_locked(sessions *s, int64_t now) {
    sqlite3_stmt *q = s->st[ST_COUNT_LIVE];
    sqlite3_bind_int64(q, 1, now - s->idle_seconds);
    int rc = sqlite3_step(q);
    int64_t n = rc == SQLITE_ROW ? sqlite3_column_int64(q, 0) : db_fail(s, rc, "count sessions");
    sqlite3_reset(q);
    return n;
}

/* Makes room for one more session: expired ones go first, then the least recently active. */
static int make_room(sessions *s, int64_t now) {
    int st = purge_locked(s, now);
    if (st < 0) return st;
    for (;;) {
        int64_t n = count_locked(s, now);
        if (n < 0) return (int)n;
        if (n < s->max_sessions) return SH_OK;
        sqlite3_stmt *q = s->st[ST_LRU];
        char victim[SESSIONS_ID_MAX + 1];
        int rc = sqlite3_step(q);
        if (rc == SQLITE_ROW) {
            const unsigned char *v = sqlite3_column_text(q, 0);
            if (v && sqlite3_column_bytes(q, 0) <= SESSIONS_ID_MAX) {
                memcpy(victim, v, (size_t)sqlite3_column_bytes(q, 0) + 1);
                st = SH_OK;
            } else {
                st = sh_error_set(SH_EFORMAT, "session store: corrupt session id");
            }
        } else {
            st = db_fail(s, rc, "find least recently used session");
        }
        sqlite3_reset(q);
        if (st < 0) return st;
        st = delete_session(s, victim);
        if (st < 0) return st;
        /* count said there is one to evict: deleting nothing would loop forever */
        if (sqlite3_changes(s->db) != 1)
            return sh_error_set(SH_EFORMAT, "session store: cannot evict session '%s'", victim);
    }
}

static int create_session(sessions *s, const char *id, int64_t now, sess_row *row) {
    int st = make_room(s, now);
    if (st < 0) return st;
    sqlite3_bind_text(s->st[ST_INS_SESS], 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s->st[ST_INS_SESS], 2, now);
    st = run(s, ST_INS_SESS, "create session");
    if (st < 0) return st;
    *row = (sess_row){.created_at = now, .last_activity = now, .count = 0, .body_bytes = 0};
    return SH_OK;
}

static int update_session(sessions *s, const char *id, int64_t now, int64_t count, int64_t body) {
    sqlite3_stmt *u = s->st[ST_UPD_SESS];
    sqlite3_bind_text(u, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(u, 2, now);
    sqlite3_bind_int64(u, 3, count);
    sqlite3_bind_int64(u, 4, body);
    return run(s, ST_UPD_SESS, "update session");
}

/* ---- transaction wrapper ---- */

typedef int (*txn_body)(sessions *s, int64_t now, void *arg);

/* Runs body in one transaction under the mutex. Commits on success (status >= 0) and on
 * SH_ENOTFOUND, whose only side effect is the deletion of an expired session (worth keeping);
 * rolls back on anything else. */
static int txn(sessions *s, txn_body body, void *arg) {
    pthread_mutex_lock(&s->mu);
    int st = run(s, ST_BEGIN, "begin");
    if (st < 0) goto out;
    st = body(s, now_of(s), arg);
    if (st >= 0 || st == SH_ENOTFOUND) {
        int c = run(s, ST_COMMIT, "commit");
        if (c < 0) st = c;
    }
    if (st < 0 && !sqlite3_get_autocommit(s->db)) {
        sqlite3_step(s->st[ST_ROLLBACK]);
        sqlite3_reset(s->st[ST_ROLLBACK]);
    }
out:
    pthread_mutex_unlock(&s->mu);
    return st;
}

static int not_found(const char *id) {
    return sh_error_set(SH_ENOTFOUND, "session '%s' not found", id);
}

/* ---- open / close ---- */

static int exec_const(sessions *s, const char *sql, const char *what) {
    char *msg = NULL;
    int rc = sqlite3_exec(s->db, sql, NULL, NULL, &msg);
    int st = SH_OK;
    if (rc != SQLITE_OK)
        st = sh_error_set(db_status(rc), "session store: %s: %s", what,
                          msg ? msg : sqlite3_errstr(rc));
    sqlite3_free(msg);
    return st;
}

static int read_user_version(sessions *s, int64_t *v) {
    sqlite3_stmt *q = NULL;
    int rc = sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &q, NULL);
    if (rc != SQLITE_OK) return db_fail(s, rc, "read schema version");
    rc = sqlite3_step(q);
    int st = rc == SQLITE_ROW ? SH_OK : db_fail(s, rc, "read schema version");
    if (st == SH_OK) *v = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    return st;
}

static int ensure_schema(sessions *s, const char *path) {
    int st = exec_const(s, "BEGIN IMMEDIATE", "begin");
    if (st < 0) return st;
    int64_t v = 0;
    st = read_user_version(s, &v);
    if (st < 0) goto out;
    if (v > SESSIONS_SCHEMA_VERSION) {
        st = sh_error_set(SH_EUNSUPPORTED,
                          "%s: session store schema version %lld is newer than this shammah's (%d)",
                          path, (long long)v, SESSIONS_SCHEMA_VERSION);
        goto out;
    }
    if (v == 0)
        for (size_t i = 0; i < sizeof schema_v1 / sizeof *schema_v1 && st == SH_OK; i++)
            st = exec_const(s, schema_v1[i], "create schema");
    /* future versions: `if (v < 2) migrate_v2` here, inside the same transaction */
out:
    if (st == SH_OK) st = exec_const(s, "COMMIT", "commit schema");
    if (st < 0 && !sqlite3_get_autocommit(s->db)) sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    return st;
}

int sessions_open(sessions **out, const char *db_path, int max_sessions, int idle_minutes) {
    *out = NULL;
    if (!db_path || !*db_path) return sh_error_set(SH_EINVAL, "session store: no path");
    if (max_sessions < 1)
        return sh_error_set(SH_EINVAL, "session store: max_sessions must be >= 1");
    if (idle_minutes < 1)
        return sh_error_set(SH_EINVAL, "session store: idle minutes must be >= 1");
    sessions *s = calloc(1, sizeof *s);
    if (!s) return sh_error_set(SH_ENOMEM, "session store: out of memory");
    int st = SH_OK;
    int mu_ok = 0;
    s->max_sessions = max_sessions;
    s->idle_seconds = (int64_t)idle_minutes * 60;
    if (pthread_mutex_init(&s->mu, NULL) != 0) {
        st = sh_error_set(SH_ENOMEM, "session store: cannot create mutex");
        goto out;
    }
    mu_ok = 1;
    /* create it ourselves so it is private: SQLite gives -wal/-shm the same mode */
    int fd = open(db_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        st = sh_error_set(SH_EIO, "session store: cannot open %s: %s", db_path, strerror(errno));
        goto out;
    }
    close(fd);
    /* our mutex serializes all use of the connection, so SQLite's own is not needed */
    int rc = sqlite3_open_v2(
        db_path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        st = s->db ? db_fail(s, rc, "open")
                   : sh_error_set(SH_ENOMEM, "session store: cannot open %s", db_path);
        goto out;
    }
    sqlite3_busy_timeout(s->db, SESS_BUSY_TIMEOUT_MS);
    sqlite3_extended_result_codes(s->db, 1);
    /* WAL: readers never block the writer and a commit is one sequential append. FULL: the WAL
     * is fsynced at every commit, so an accepted turn survives power loss too (NORMAL would
     * only survive a process crash); one fsync per turn is negligible next to generation. If
     * the filesystem cannot do WAL, SQLite keeps the rollback journal, still durable with FULL. */
    st = exec_const(s, "PRAGMA journal_mode=WAL", "set WAL");
    if (st == SH_OK) st = exec_const(s, "PRAGMA synchronous=FULL", "set synchronous");
    if (st == SH_OK) st = ensure_schema(s, db_path);
    for (int i = 0; i < ST_N && st == SH_OK; i++) {
        rc = sqlite3_prepare_v3(s->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &s->st[i], NULL);
        if (rc != SQLITE_OK) st = db_fail(s, rc, "prepare");
    }
out:
    if (st < 0) {
        if (s->db) {
            for (int i = 0; i < ST_N; i++) sqlite3_finalize(s->st[i]);
            sqlite3_close(s->db);
        }
        if (mu_ok) pthread_mutex_destroy(&s->mu);
        free(s);
        return st;
    }
    *out = s;
    return SH_OK;
}

void sessions_close(sessions *s) {
    if (!s) return;
    for (int i = 0; i < ST_N; i++) sqlite3_finalize(s->st[i]);
    sqlite3_close(s->db);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

void sessions_set_clock(sessions *s, sessions_clock_fn fn, void *ctx) {
    pthread_mutex_lock(&s->mu);
    s->clock = fn;
    s->clock_ctx = ctx;
    pthread_mutex_unlock(&s->mu);
}

/* ---- public operations ---- */

typedef struct {
    const char *id;
    char *json; /* out */
    int64_t n;  /* out */
} get_arg;

static int get_body(sessions *s, int64_t now, void *argp) {
    get_arg *a = argp;
    sess_row r;
    int found;
    int st = load(s, a->id, now, &r, &found);
    if (st < 0) return st;
    if (!found) return not_found(a->id);
    int64_t total = hist_bytes(r.count, r.body_bytes);
    if (total > SESSIONS_MAX_HISTORY_BYTES)
        return sh_error_set(SH_EFORMAT, "session store: session '%s' is larger than allowed",
                            a->id);
    char *buf = malloc((size_t)total + 1);
    if (!buf) return sh_error_set(SH_ENOMEM, "session store: out of memory");
    size_t len = 0;
    int64_t n = 0;
    buf[len++] = '[';
    sqlite3_stmt *q = s->st[ST_SEL_MSGS];
    sqlite3_bind_text(q, 1, a->id, -1, SQLITE_STATIC);
    int rc;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        const unsigned char *body = sqlite3_column_text(q, 0);
        size_t bl = (size_t)sqlite3_column_bytes(q, 0);
        /* the record's sizes were checked above; the rows must agree with them */
        if (!body || n >= r.count || len + (n > 0) + bl + 1 > (size_t)total) {
            st = sh_error_set(SH_EFORMAT, "session store: session '%s' has inconsistent rows",
                              a->id);
            break;
        }
        if (n > 0) buf[len++] = ',';
        memcpy(buf + len, body, bl);
        len += bl;
        n++;
    }
    if (st == SH_OK && rc != SQLITE_DONE) st = db_fail(s, rc, "read messages");
    sqlite3_reset(q);
    if (st == SH_OK && n != r.count)
        st = sh_error_set(SH_EFORMAT, "session store: session '%s' has inconsistent rows", a->id);
    if (st == SH_OK) st = update_session(s, a->id, now, r.count, r.body_bytes);
    if (st < 0) {
        free(buf);
        return st;
    }
    buf[len++] = ']';
    buf[len] = 0;
    a->json = buf;
    a->n = n;
    return SH_OK;
}

int sessions_get_history(sessions *s, const char *id, char **messages_json, int64_t *n_messages) {
    *messages_json = NULL;
    if (n_messages) *n_messages = 0;
    int st = check_id(id);
    if (st < 0) return st;
    get_arg a = {.id = id};
    st = txn(s, get_body, &a);
    if (st < 0) {
        free(a.json);
        return st;
    }
    *messages_json = a.json;
    if (n_messages) *n_messages = a.n;
    return SH_OK;
}

typedef struct {
    const char *id;
    int64_t expect; /* < 0: no check */
    int replace;
    const msg_batch *b;
} write_arg;

static int write_body(sessions *s, int64_t now, void *argp) {
    write_arg *a = argp;
    sess_row r;
    int found;
    int st = load(s, a->id, now, &r, &found);
    if (st < 0) return st;
    if (found && a->expect >= 0 && r.count != a->expect)
        return sh_error_set(SH_ECANCELED,
                            "session '%s' holds %lld messages, not %lld: changed concurrently",
                            a->id, (long long)r.count, (long long)a->expect);
    if (!found && a->expect > 0) return not_found(a->id);
    int64_t base_n = 0, base_b = 0; /* what stays of the current history */
    if (found && !a->replace) {
        base_n = r.count;
        base_b = r.body_bytes;
    }
    if (hist_bytes(base_n + a->b->n, base_b + a->b->sum) > SESSIONS_MAX_HISTORY_BYTES)
        return sh_error_set(SH_EFULL, "session '%s': history would exceed %d bytes", a->id,
                            SESSIONS_MAX_HISTORY_BYTES);
    if (!found) {
        st = create_session(s, a->id, now, &r);
    } else if (a->replace) {
        sqlite3_bind_text(s->st[ST_DEL_MSGS], 1, a->id, -1, SQLITE_STATIC);
        st = run(s, ST_DEL_MSGS, "delete messages");
    }
    sqlite3_stmt *ins = s->st[ST_INS_MSG];
    for (int64_t i = 0; i < a->b->n && st == SH_OK; i++) {
        sqlite3_bind_text(ins, 1, a->id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(ins, 2, base_n + i);
        sqlite3_bind_text(ins, 3, a->b->body[i], (int)a->b->len[i], SQLITE_STATIC);
        st = run(s, ST_INS_MSG, "insert message");
    }
    sqlite3_clear_bindings(ins); /* the bodies are about to be freed */
    if (st < 0) return st;
    return update_session(s, a->id, now, base_n + a->b->n, base_b + a->b->sum);
}

static int write_common(sessions *s, const char *id, int64_t expect, int replace,
                        const char *json) {
    int st = check_id(id);
    if (st < 0) return st;
    msg_batch b;
    st = batch_make(&b, json);
    if (st < 0) return st;
    write_arg a = {.id = id, .expect = expect, .replace = replace, .b = &b};
    st = txn(s, write_body, &a);
    batch_free(&b);
    return st;
}

int sessions_append(sessions *s, const char *id, const char *messages_json) {
    return write_common(s, id, -1, 0, messages_json);
}

int sessions_append_at(sessions *s, const char *id, int64_t expect_count,
                       const char *messages_json) {
    return write_common(s, id, expect_count < 0 ? -1 : expect_count, 0, messages_json);
}

int sessions_put_history(sessions *s, const char *id, const char *messages_json) {
    return write_common(s, id, -1, 1, messages_json);
}

typedef struct {
    const char *id;
    session_info *out;
} info_arg;

static int info_body(sessions *s, int64_t now, void *argp) {
    info_arg *a = argp;
    sess_row r;
    int found;
    int st = load(s, a->id, now, &r, &found);
    if (st < 0) return st;
    if (!found) return not_found(a->id);
    snprintf(a->out->id, sizeof a->out->id, "%s", a->id);
    a->out->created_at = r.created_at;
    a->out->last_activity = r.last_activity;
    a->out->message_count = r.count;
    a->out->bytes = hist_bytes(r.count, r.body_bytes);
    return SH_OK;
}

int sessions_info(sessions *s, const char *id, session_info *out) {
    memset(out, 0, sizeof *out);
    int st = check_id(id);
    if (st < 0) return st;
    info_arg a = {.id = id, .out = out};
    return txn(s, info_body, &a);
}

static int delete_body(sessions *s, int64_t now, void *argp) {
    const char *id = argp;
    sess_row r;
    int found;
    int st = load(s, id, now, &r, &found);
    if (st < 0) return st;
    if (!found) return not_found(id);
    return delete_session(s, id);
}

int sessions_delete(sessions *s, const char *id) {
    int st = check_id(id);
    if (st < 0) return st;
    return txn(s, delete_body, (void *)id);
}

static int purge_body(sessions *s, int64_t now, void *arg) {
    (void)arg;
    return purge_locked(s, now);
}

int sessions_purge(sessions *s) {
    return txn(s, purge_body, NULL);
}

static int count_body(sessions *s, int64_t now, void *argp) {
    int64_t n = count_locked(s, now);
    if (n < 0) return (int)n;
    *(int64_t *)argp = n;
    return SH_OK;
}

int64_t sessions_count(sessions *s) {
    int64_t n = 0;
    int st = txn(s, count_body, &n);
    return st < 0 ? st : n;
}

/* ---- trimming ---- */

/* A message where a history may start: a user message that answers no tool call. */
static int is_turn_start(json_t *m) {
    if (strcmp(json_string_value(json_object_get(m, "role")), "user") != 0) return 0;
    json_t *c = json_object_get(m, "content");
    if (!json_is_array(c)) return 1;
    size_t j;
    json_t *b;
    json_array_foreach(c, j, b) {
        if (!strcmp(json_string_value(json_object_get(b, "type")), "tool_result")) return 0;
    }
    return 1;
}

/* Cut points of a parsed (validated) array; *cuts malloc'd or NULL when n == 0. */
static int cuts_of(json_t *a, int64_t **cuts, int64_t *n_cuts) {
    *cuts = NULL;
    *n_cuts = 0;
    size_t n = json_array_size(a);
    if (n == 0) return SH_OK;
    int64_t *c = malloc(n * sizeof *c);
    if (!c) return sh_error_set(SH_ENOMEM, "trim: out of memory");
    int64_t k = 0;
    for (size_t i = 1; i <= n; i++)
        if (i == n || is_turn_start(json_array_get(a, i))) c[k++] = (int64_t)i;
    *cuts = c;
    *n_cuts = k;
    return SH_OK;
}

int sessions_cut_points(const char *messages_json, int64_t **cuts, int64_t *n_cuts) {
    *cuts = NULL;
    *n_cuts = 0;
    json_t *a = NULL;
    int st = parse_messages(messages_json, SESS_TRIM_MAX_BYTES, &a);
    if (st < 0) return st;
    st = cuts_of(a, cuts, n_cuts);
    json_decref(a);
    return st;
}

int sessions_trim_json(const char *messages_json, int64_t n_units, char **out, int64_t *n_dropped) {
    *out = NULL;
    if (n_dropped) *n_dropped = 0;
    json_t *a = NULL, *rest = NULL;
    int64_t *cuts = NULL, n_cuts = 0;
    int st = parse_messages(messages_json, SESS_TRIM_MAX_BYTES, &a);
    if (st < 0) return st;
    st = cuts_of(a, &cuts, &n_cuts);
    if (st < 0) goto out;
    size_t n = json_array_size(a);
    size_t drop = n_units <= 0 ? 0 : n_units > n_cuts ? n : (size_t)cuts[n_units - 1];
    rest = json_array();
    if (!rest) {
        st = sh_error_set(SH_ENOMEM, "trim: out of memory");
        goto out;
    }
    for (size_t i = drop; i < n; i++)
        if (json_array_append(rest, json_array_get(a, i)) != 0) {
            st = sh_error_set(SH_ENOMEM, "trim: out of memory");
            goto out;
        }
    *out = json_dumps(rest, JSON_COMPACT);
    if (!*out) {
        st = sh_error_set(SH_ENOMEM, "trim: cannot serialize");
        goto out;
    }
    if (n_dropped) *n_dropped = (int64_t)drop;
out:
    free(cuts);
    json_decref(rest);
    json_decref(a);
    return st;
}
