/* router.h - the local-or-teacher decision for each request, and the statistics it learns.
 *
 * Rules, first match wins (the decision records which one, and a route label "local" or
 * "teacher:<name>" for the x-shammah-route header):
 *   1 MODEL        the request's model names a teacher (its name, its model id, or
 *                  "teacher:<name>"; exact, case-insensitive) -> that teacher alone.
 *   2 LOCAL_ONLY   local_only: true -> local; an error (503) when the local model cannot serve.
 *   3 UNAVAILABLE  the local model is disabled, absent, loading or failed -> every teacher in
 *                  config order; an error (503) when there are none.
 *   4 FALLBACK     (after the fact) local generation failed -> router_fallback() gives the
 *                  teachers, unless the request was local_only or there are none.
 *   5 POLICY       otherwise the learned threshold policy below; with no teachers, local.
 *
 * Categories (router_categorize): the text of the last user message, lowercased (ASCII) and
 * with runs of blanks collapsed; a leading greeting ("hi", "hello there,", "good morning") is
 * stripped first. Then, first match wins:
 *   greeting     nothing is left after the greeting, or only a pleasantry ("how are you",
 *                "what's up", "thanks"), or the whole text is "thanks"/"thank you"...
 *   debugging    error, exception, traceback, stack trace, segfault, segmentation fault, crash,
 *                bug, debug, panic, "doesn't work", "not working", fails/failing, "fix",
 *                "undefined reference", "core dumped"
 *   code         a ``` fence, or write/implement + function/class/script/program/code, or
 *                code / function / regex / sql / compile / a language name (python, javascript,
 *                typescript, rust, golang, java, c++, bash, ...), or code-like text ("#include",
 *                "def ", "();", "=>", "::")
 *   comparison   vs, versus, compare, comparison, difference(s) between, better than, pros and
 *                cons, "which is better"
 *   how-to       starts with "how do i", "how can i", "how to", "how should i", "how would i",
 *                "steps to", or contains "step by step", "tutorial", "guide to", "best way to"
 *   opinion      "do you think", "your opinion", "should i", "would you", "do you prefer",
 *                recommend, favorite/favourite, "worth it", "is it better", best
 *   definition   starts with "what is", "what's", "what are", "who is", "who was", "define",
 *                "definition of", "meaning of", or contains "what does ... mean"
 *   explanation  starts with "why", "how does", "how do", "how is", "how are", "what happens",
 *                or contains explain, describe, "tell me about", "walk me through"
 *   other        everything else (also requests without a user message)
 * A raw completion (CONV_API_COMPLETION) is categorised by its prompt.
 * Phrases match at word boundaries.
 *
 * Policy: for each category c the router keeps s_c (local answers judged good) and f_c (judged
 * bad), learned from router_feedback(). Its estimate of local success is the posterior mean
 * under a Beta(1,1) prior, p_c = (s_c + 1) / (s_c + f_c + 2) (0.5 with no evidence). The request
 * is forwarded iff s_c + f_c >= min_evidence and p_c < theta. After every policy decision taken
 * with teachers available, the threshold moves toward the target forward rate rho:
 *     theta <- clamp(theta + eta * (rho - x), theta_min, theta_max),  x = 1 if forwarded else 0
 * so theta rises while fewer than rho of the requests are forwarded (making the weakest
 * categories go to teachers) and falls while more are; on average a fraction rho is forwarded
 * once enough categories have evidence, and never more than the evidence justifies
 * (p_c < theta_max). Feedback on teacher answers must not be given here: the statistics are
 * about the local model.
 *
 * Persistence: SQLite at the path given to router_open() (the daemon uses
 * SHAMMAH_HOME/shammah.db, shared with other modules: tables router_stats and router_params are
 * created with IF NOT EXISTS, WAL, busy_timeout; no PRAGMA user_version is touched). Feedback is
 * written at once; theta and the decision counts every ROUTER_SAVE_EVERY decisions and at close.
 * A NULL path keeps everything in memory.
 *
 * Thread-safe: one mutex around the state and the connection. */
#ifndef SH_ROUTER_H
#define SH_ROUTER_H

#include <stdint.h>

#include "base/config.h"
#include "proto/conv.h"

#define ROUTER_SAVE_EVERY 16

typedef enum {
    RCAT_GREETING = 0,
    RCAT_DEFINITION,
    RCAT_HOWTO,
    RCAT_EXPLANATION,
    RCAT_CODE,
    RCAT_DEBUGGING,
    RCAT_COMPARISON,
    RCAT_OPINION,
    RCAT_OTHER,
    RCAT_COUNT
} router_category;

/* "greeting", "definition", "how-to", "explanation", "code", "debugging", "comparison",
 * "opinion", "other"; router_category_parse returns -1 for an unknown name. */
const char *router_category_name(router_category c);
int router_category_parse(const char *name);

/* The category of the request's last user message (see the rules above). */
router_category router_categorize(const conv_request *req);
router_category router_categorize_text(const char *text, size_t len);

typedef enum {
    ROUTER_LOCAL_READY = 0,
    ROUTER_LOCAL_DISABLED,
    ROUTER_LOCAL_ABSENT,
    ROUTER_LOCAL_LOADING,
    ROUTER_LOCAL_FAILED
} router_local_state;

typedef enum { ROUTE_LOCAL = 0, ROUTE_TEACHER, ROUTE_ERROR } route_kind;

typedef enum {
    RULE_MODEL = 1,
    RULE_LOCAL_ONLY,
    RULE_UNAVAILABLE,
    RULE_FALLBACK,
    RULE_POLICY
} router_rule;

typedef struct {
    route_kind kind;
    router_rule rule;
    router_category category;
    /* ROUTE_TEACHER: the chain is teachers[first .. first + count) of router_open() */
    int first, count;
    double estimate;  /* RULE_POLICY: p_c */
    double threshold; /* RULE_POLICY: theta when decided */
    char label[160];  /* "local", "teacher:<name of the first teacher>" or "error" */
    /* ROUTE_ERROR */
    conv_error_kind error_kind;
    char error[256];
} router_decision;

typedef struct {
    double target_forward_rate;  /* rho, default 0.1 */
    double eta;                  /* default 0.01; 0 keeps theta fixed */
    double theta_initial;        /* default 0.5 (used when nothing is stored) */
    double theta_min, theta_max; /* defaults 0.05, 0.9 */
    int min_evidence;            /* default 5 */
} router_opts;

void router_opts_default(router_opts *o);

typedef struct router router;

/* Opens the router over teachers[0..n_teachers) (borrowed, must outlive it; the daemon passes
 * cfg->teachers, cfg->n_teachers; at most CONFIG_MAX_TEACHERS); db_path NULL = memory only;
 * opts NULL = defaults. Loads the stored state. SH_EIO / SH_EFORMAT when the database cannot be
 * opened or read. Caller closes with router_close(). */
int router_open(router **out, const sh_config_teacher *teachers, int n_teachers,
                const char *db_path, const router_opts *opts);
/* Saves theta and counts, then frees. NULL is fine. */
void router_close(router *r);

/* Rules 1, 2, 3 and 5 for req (borrowed). Always fills *d; never fails. */
void router_decide(router *r, const conv_request *req, router_local_state local,
                   router_decision *d);

/* Rule 4: local generation failed before anything was sent to the client. Fills *d with the
 * teacher chain and returns 1, or returns 0 (d untouched) when the request was local_only or
 * there are no teachers: then the local error stands. */
int router_fallback(router *r, const conv_request *req, router_decision *d);

/* Learns from a judgement of a LOCAL answer in category c. Written to the database at once. */
int router_feedback(router *r, router_category c, int good);

/* Counts a served request under its final route label ("local", "teacher:<name>" of the
 * teacher that answered, or "error"). Labels of unknown teachers are counted as "teacher:other". */
void router_count_route(router *r, const char *label);

/* State for /v1/status and `shammah router stats`: a new JSON object (caller decrefs):
 * {"threshold", "target_forward_rate", "min_evidence", "policy_decisions", "policy_forwarded",
 *  "categories": [{"name", "successes", "failures", "estimate", "forward", "local",
 *                  "forwarded"}...], "routes": {"local": n, "teacher:x": n, ...}}.
 * NULL on ENOMEM. */
struct json_t *router_stats_json(router *r);

/* Prometheus lines (shammah_route_requests_total{route=...}, shammah_router_threshold,
 * shammah_router_category_estimate{category=...}) appended to b. */
int router_metrics(router *r, conv_buf *b);

#endif
