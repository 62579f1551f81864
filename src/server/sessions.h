/* sessions.h - the daemon's durable conversation store (Shammah's `session_id` extension).
 *
 * A session is a named, server-side message history in Anthropic format
 * ([{"role":"user"|"assistant","content":"text" | [blocks]}, ...]). The daemon prepends the
 * stored history to a request's messages and appends the new turn(s) plus the reply afterwards.
 *
 * Storage: SQLite at the path given to sessions_open() (the daemon uses SHAMMAH_HOME/shammah.db),
 * WAL journal with synchronous=FULL, so a commit that returned survives a crash of the daemon
 * and of the machine (one fsync per commit costs nothing next to a generation). One row per
 * message: appending a turn writes only that turn (no rewrite of a multi-MiB blob) and the
 * message count is exact. The file is created 0600: it holds users' conversations.
 *
 * Limits: at most max_sessions sessions (creating one more evicts the least recently active);
 * a session idle for more than idle_minutes is expired: it is purged when touched and by
 * sessions_purge(), which the daemon calls periodically, and it never counts as found.
 * A history is at most SESSIONS_MAX_HISTORY_BYTES of JSON text; beyond that SH_EFULL and the
 * caller trims (see sessions_trim_json) and stores the result with sessions_put_history().
 *
 * Ids come from the network: 1..SESSIONS_ID_MAX characters of [A-Za-z0-9._:-], otherwise
 * SH_EINVAL. Unknown or expired ids give SH_ENOTFOUND everywhere except in the append/put
 * functions, which create the session.
 *
 * Thread-safe: one connection, every call holds the module's mutex for its whole transaction,
 * so calls are atomic with respect to each other. Times are Unix seconds. */
#ifndef SH_SESSIONS_H
#define SH_SESSIONS_H

#include <stdint.h>

#define SESSIONS_ID_MAX 128
#define SESSIONS_MAX_HISTORY_BYTES (8 << 20) /* serialized JSON array, per session */
#define SESSIONS_SCHEMA_VERSION 1            /* PRAGMA user_version */

typedef struct sessions sessions;

/* Opens (creating file and schema when needed) the store at db_path. max_sessions >= 1,
 * idle_minutes >= 1 (SH_EINVAL otherwise). SH_EUNSUPPORTED when the file was written by a
 * newer schema version; SH_EFORMAT when it is not a database; SH_EIO on other failures.
 * *out is owned by the caller: release with sessions_close(). */
int sessions_open(sessions **out, const char *db_path, int max_sessions, int idle_minutes);
/* Closes the store (NULL is fine). No call may be running on it. */
void sessions_close(sessions *s);

/* Time source for tests (unix seconds); fn NULL restores the real clock. ctx is borrowed. */
typedef int64_t (*sessions_clock_fn)(void *ctx);
void sessions_set_clock(sessions *s, sessions_clock_fn fn, void *ctx);

/* The history of id as a JSON array text (compact); *messages_json is malloc'd, caller frees.
 * *n_messages (may be NULL) gets the number of messages, which is also the value to pass as
 * expect_count to sessions_append_at(). Reading counts as activity (touches last_activity):
 * the caller is about to generate and append, and the session must not expire meanwhile.
 * SH_ENOTFOUND when unknown or expired. */
int sessions_get_history(sessions *s, const char *id, char **messages_json, int64_t *n_messages);

/* Appends the messages of messages_json (a JSON array of message objects: "role" "user" or
 * "assistant", "content" a string or an array; borrowed) to id, creating the session when
 * absent (which may evict the least recently active one). One transaction: all or nothing.
 * Touches last_activity. SH_EFORMAT for a malformed array, SH_EFULL when the history would
 * exceed SESSIONS_MAX_HISTORY_BYTES (nothing is stored). */
int sessions_append(sessions *s, const char *id, const char *messages_json);
/* Like sessions_append(), but only when the session currently holds exactly expect_count
 * messages (expect_count 0 also accepts an absent session and creates it): lets the daemon
 * detect that another request on the same session appended, or that the session was deleted
 * or expired, between its sessions_get_history() and its append. SH_ECANCELED on a count
 * mismatch, SH_ENOTFOUND when expect_count > 0 and the session is gone. expect_count < 0: no
 * check (= sessions_append). */
int sessions_append_at(sessions *s, const char *id, int64_t expect_count,
                       const char *messages_json);
/* Replaces the whole history of id (creating the session when absent), e.g. after trimming.
 * Same validation and limits as sessions_append(); keeps created_at. */
int sessions_put_history(sessions *s, const char *id, const char *messages_json);

typedef struct {
    char id[SESSIONS_ID_MAX + 1];
    int64_t created_at, last_activity, message_count;
    int64_t bytes; /* size of the history's JSON text */
} session_info;

/* Metadata of id, without touching it. SH_ENOTFOUND when unknown or expired. */
int sessions_info(sessions *s, const char *id, session_info *out);
/* Deletes id and its history. SH_ENOTFOUND when unknown or expired. */
int sessions_delete(sessions *s, const char *id);
/* Deletes every expired session; returns how many, or a negative SH_E* code. */
int sessions_purge(sessions *s);
/* Number of live (not expired) sessions, or a negative SH_E* code. */
int64_t sessions_count(sessions *s);

/* 1 when id is a valid session id (see above), else 0. */
int sessions_id_valid(const char *id);

/* ---- trimming (pure JSON helpers, no store involved) ----
 * The daemon's rule: when the stored history plus the new request does not fit in the context
 * (leaving room for max_tokens), the oldest messages are dropped, a user/assistant pair at a
 * time, never splitting a tool_use from its tool_result. Here the unit of dropping is a turn:
 * from the front up to the next "user" message that carries no tool_result block. That is
 * exactly "pairs at a time, and keep dropping pairs while the front would be a tool_result
 * whose tool_use is gone", and it keeps the remaining history starting with a user message
 * (which the Messages API requires).
 * Note: when the new request itself begins with tool_result blocks, they answer the last
 * assistant message of the history, so the caller must not drop the last unit then. */

/* Drops the oldest n_units units of messages_json (borrowed). *out (malloc'd, caller frees)
 * gets the remaining array; *n_dropped (may be NULL) how many messages went. When fewer units
 * exist, everything is dropped ("[]"). SH_EFORMAT for a malformed array. Call it with n_units
 * 1 in a loop, re-counting tokens each time, or compute the cut with sessions_cut_points(). */
int sessions_trim_json(const char *messages_json, int64_t n_units, char **out, int64_t *n_dropped);
/* The valid cut points of messages_json: ascending message counts k (1..n) such that dropping
 * messages [0, k) leaves a valid history; the last is n (drop everything) when n > 0, and
 * dropping u units = dropping (*cuts)[u-1] messages. *cuts is malloc'd (NULL when
 * *n_cuts == 0), caller frees. */
int sessions_cut_points(const char *messages_json, int64_t **cuts, int64_t *n_cuts);

#endif
