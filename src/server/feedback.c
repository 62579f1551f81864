/* feedback.c - weighted feedback, validated and stored durably in SQLite. */
#include "server/feedback.h"

#include <jansson.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/status.h"

#define FEEDBACK_MAX_MESSAGES 512
#define FEEDBACK_MAX_WEIGHT 1000.0

struct feedback_store {
    sqlite3 *db;
    pthread_mutex_t mu;
};

static int db_error(sqlite3 *db, const char *what) {
    return sh_error_set(SH_EIO, "feedback store: %s: %s", what, db ? sqlite3_errmsg(db) : "no database");
}

int feedback_open(feedback_store **out, const char *db_path) {
    *out = NULL;
    feedback_store *f = calloc(1, sizeof *f);
    if (!f) return sh_error_set(SH_ENOMEM, "out of memory");
    int st = SH_OK;
    if (sqlite3_open_v2(db_path, &f->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                        NULL) != SQLITE_OK) {
        st = db_error(f->db, "open");
        goto out;
    }
    sqlite3_busy_timeout(f->db, 5000);
    if (sqlite3_exec(f->db,
                     "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
                     "CREATE TABLE IF NOT EXISTS feedback ("
                     " id INTEGER PRIMARY KEY AUTOINCREMENT, created_at INTEGER NOT NULL,"
                     " source TEXT NOT NULL, weight REAL NOT NULL, messages TEXT NOT NULL,"
                     " note TEXT, session_id TEXT, consumed INTEGER NOT NULL DEFAULT 0);",
                     NULL, NULL, NULL) != SQLITE_OK)
        st = db_error(f->db, "schema");
    pthread_mutex_init(&f->mu, NULL);
out:
    if (st) {
        sqlite3_close(f->db);
        free(f);
        return st;
    }
    *out = f;
    return SH_OK;
}

void feedback_close(feedback_store *f) {
    if (!f) return;
    sqlite3_close(f->db);
    pthread_mutex_destroy(&f->mu);
    free(f);
}

void feedback_item_free(feedback_item *it) {
    free(it->messages);
    free(it->note);
    free(it->session_id);
    free(it->query);
    memset(it, 0, sizeof *it);
}

static char *dup_str(json_t *v) {
    return json_is_string(v) ? strdup(json_string_value(v)) : NULL;
}

int feedback_parse(const char *body, size_t len, feedback_item *out) {
    memset(out, 0, sizeof *out);
    json_error_t e;
    json_t *j = json_loadb(body, len, 0, &e), *msgs = NULL;
    int st = SH_OK;
    if (!json_is_object(j)) {
        st = sh_error_set(SH_EINVAL, "the body must be a JSON object (%s)", j ? "not an object" : e.text);
        goto out;
    }
    json_t *w = json_object_get(j, "weight");
    if (json_is_string(w)) {
        const char *s = json_string_value(w);
        out->weight = !strcmp(s, "critical") ? 10 : !strcmp(s, "medium") ? 3 : !strcmp(s, "good") ? 1 : 0;
    } else if (json_is_number(w)) {
        out->weight = json_number_value(w);
    }
    if (!(out->weight > 0 && out->weight <= FEEDBACK_MAX_WEIGHT)) {
        st = sh_error_set(SH_EINVAL, "weight: a number in (0, 1000] or \"critical\", \"medium\", \"good\"");
        goto out;
    }
    json_t *m = json_object_get(j, "messages");
    if (m) {
        if (!json_is_array(m) || json_array_size(m) < 2 || json_array_size(m) > FEEDBACK_MAX_MESSAGES) {
            st = sh_error_set(SH_EINVAL, "messages: an array of 2..%d {role, content} objects", FEEDBACK_MAX_MESSAGES);
            goto out;
        }
        msgs = json_array();
        for (size_t i = 0; i < json_array_size(m); i++) {
            json_t *it = json_array_get(m, i);
            const char *role = json_string_value(json_object_get(it, "role"));
            json_t *content = json_object_get(it, "content");
            if (!role || (strcmp(role, "user") && strcmp(role, "assistant") && strcmp(role, "system")) ||
                !json_is_string(content)) {
                st = sh_error_set(SH_EINVAL, "messages[%zu]: role user|assistant|system and a string content", i);
                goto out;
            }
            json_array_append_new(msgs, json_pack("{s:s,s:O}", "role", role, "content", content));
            if (!strcmp(role, "user")) {
                free(out->query);
                out->query = strdup(json_string_value(content));
            }
        }
        const char *last = json_string_value(json_object_get(json_array_get(m, json_array_size(m) - 1), "role"));
        if (!last || strcmp(last, "assistant") || !out->query) {
            st = sh_error_set(SH_EINVAL, "messages: needs a user message and must end with the assistant's answer");
            goto out;
        }
    } else {
        json_t *q = json_object_get(j, "query"), *r = json_object_get(j, "response");
        if (!json_is_string(q) || !json_string_length(q) || !json_is_string(r)) {
            st = sh_error_set(SH_EINVAL, "give messages, or query and response (strings)");
            goto out;
        }
        msgs = json_pack("[{s:s,s:O},{s:s,s:O}]", "role", "user", "content", q, "role", "assistant", "content", r);
        out->query = strdup(json_string_value(q));
    }
    out->note = dup_str(json_object_get(j, "feedback"));
    if (!out->note) out->note = dup_str(json_object_get(j, "note"));
    out->session_id = dup_str(json_object_get(j, "session_id"));
    out->messages = msgs ? json_dumps(msgs, JSON_COMPACT) : NULL;
    if (!out->messages || !out->query) st = sh_error_set(SH_ENOMEM, "out of memory");
out:
    json_decref(msgs);
    json_decref(j);
    if (st) feedback_item_free(out);
    return st;
}

int feedback_add(feedback_store *f, const feedback_item *it, const char *source, int64_t *id) {
    sqlite3_stmt *q = NULL;
    int st = SH_OK;
    pthread_mutex_lock(&f->mu);
    if (sqlite3_prepare_v2(f->db,
                           "INSERT INTO feedback(created_at, source, weight, messages, note, session_id)"
                           " VALUES(?,?,?,?,?,?)", -1, &q, NULL) != SQLITE_OK) {
        st = db_error(f->db, "prepare");
        goto out;
    }
    sqlite3_bind_int64(q, 1, (sqlite3_int64)time(NULL));
    sqlite3_bind_text(q, 2, source, -1, SQLITE_STATIC);
    sqlite3_bind_double(q, 3, it->weight);
    sqlite3_bind_text(q, 4, it->messages, -1, SQLITE_STATIC);
    if (it->note) sqlite3_bind_text(q, 5, it->note, -1, SQLITE_STATIC);
    if (it->session_id) sqlite3_bind_text(q, 6, it->session_id, -1, SQLITE_STATIC);
    /* autocommit: the row is on disk (synchronous=FULL) when step returns */
    if (sqlite3_step(q) != SQLITE_DONE) st = db_error(f->db, "insert");
    else *id = (int64_t)sqlite3_last_insert_rowid(f->db);
out:
    sqlite3_finalize(q);
    pthread_mutex_unlock(&f->mu);
    return st;
}

int64_t feedback_pending(feedback_store *f) {
    sqlite3_stmt *q = NULL;
    int64_t n = -1;
    pthread_mutex_lock(&f->mu);
    if (sqlite3_prepare_v2(f->db, "SELECT COUNT(*) FROM feedback WHERE consumed = 0", -1, &q, NULL) == SQLITE_OK &&
        sqlite3_step(q) == SQLITE_ROW)
        n = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    pthread_mutex_unlock(&f->mu);
    return n;
}

int feedback_each_pending(feedback_store *f, int max, feedback_fn fn, void *user) {
    sqlite3_stmt *q = NULL;
    int st = SH_OK;
    pthread_mutex_lock(&f->mu);
    if (sqlite3_prepare_v2(f->db, "SELECT id, messages, weight FROM feedback WHERE consumed = 0 "
                                  "ORDER BY id LIMIT ?", -1, &q, NULL) != SQLITE_OK) {
        st = db_error(f->db, "prepare");
        goto out;
    }
    sqlite3_bind_int(q, 1, max);
    int rc;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW && !st)
        st = fn(user, sqlite3_column_int64(q, 0), (const char *)sqlite3_column_text(q, 1),
                sqlite3_column_double(q, 2));
    if (!st && rc != SQLITE_DONE && rc != SQLITE_ROW) st = db_error(f->db, "select");
out:
    sqlite3_finalize(q);
    pthread_mutex_unlock(&f->mu);
    return st;
}

int feedback_mark_consumed(feedback_store *f, const int64_t *ids, int n) {
    sqlite3_stmt *q = NULL;
    int st = SH_OK;
    pthread_mutex_lock(&f->mu);
    if (sqlite3_exec(f->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(f->db, "UPDATE feedback SET consumed = 1 WHERE id = ?", -1, &q, NULL) != SQLITE_OK) {
        st = db_error(f->db, "update");
        goto out;
    }
    for (int i = 0; i < n && !st; i++) {
        sqlite3_bind_int64(q, 1, ids[i]);
        if (sqlite3_step(q) != SQLITE_DONE) st = db_error(f->db, "update");
        sqlite3_reset(q);
    }
    if (sqlite3_exec(f->db, st ? "ROLLBACK" : "COMMIT", NULL, NULL, NULL) != SQLITE_OK && !st)
        st = db_error(f->db, "commit");
out:
    sqlite3_finalize(q);
    pthread_mutex_unlock(&f->mu);
    return st;
}
