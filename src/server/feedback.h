/* feedback.h - the durable queue of weighted feedback (training examples).
 *
 * POST /v1/feedback bodies, validated and normalised by feedback_parse(), are written to
 * SQLite (table `feedback` in SHAMMAH_HOME/shammah.db, WAL, synchronous=FULL) before the
 * daemon answers, so accepted feedback survives kill -9. The training worker (issue 7) reads
 * pending rows and marks them consumed only after its adapter is saved. */
#ifndef SH_FEEDBACK_H
#define SH_FEEDBACK_H

#include <stddef.h>
#include <stdint.h>

typedef struct feedback_store feedback_store;

/* Caller closes. */
int feedback_open(feedback_store **out, const char *db_path);
void feedback_close(feedback_store *f);

/* A validated example: messages is a JSON array text of {"role","content"} (user/assistant),
 * the last one the assistant's answer. All owned by the struct (feedback_item_free). */
typedef struct {
    char *messages;
    double weight;
    char *note;       /* may be NULL */
    char *session_id; /* may be NULL */
    char *query;      /* the last user message (for the router's category) */
} feedback_item;

/* Accepts {query, response, weight, feedback?|note?, session_id?} or {messages:[...], weight,
 * ...}; weight is a number > 0 (at most 1000) or "critical" (10), "medium" (3), "good" (1).
 * SH_EINVAL with a message naming the field (sh_error_last()) for a 400. */
int feedback_parse(const char *body, size_t len, feedback_item *out);
void feedback_item_free(feedback_item *it);

/* Stores it durably; *id receives its row id. source: "user" or "teacher". */
int feedback_add(feedback_store *f, const feedback_item *it, const char *source, int64_t *id);
int64_t feedback_pending(feedback_store *f); /* not yet consumed; < 0 on error */

/* Calls fn for up to max pending examples, oldest first (messages JSON text, weight; both
 * borrowed for the call). */
typedef int (*feedback_fn)(void *user, int64_t id, const char *messages, double weight);
int feedback_each_pending(feedback_store *f, int max, feedback_fn fn, void *user);
/* Marks ids[0..n) consumed (one transaction), after the adapter trained on them is saved. */
int feedback_mark_consumed(feedback_store *f, const int64_t *ids, int n);

#endif
