/* teacher.h - remote "teacher" models: a conv_request forwarded to the Anthropic Messages API or
 * any OpenAI-compatible chat API over libcurl, its answer passed back as conv_events.
 *
 * Request: the teacher's dialect is its provider. The body is the codec's encoding of the
 * client's request (messages, system, tools, tool results, tool_choice, sampling, stop strings,
 * max_tokens) with only the model replaced by the teacher's `model`; streaming is always asked
 * for, whatever the client wanted, so events reach fn as the bytes arrive (non-streaming clients
 * are served by the caller's accumulating encoder).
 *   anthropic: POST base_url (default https://api.anthropic.com) + "/v1/messages" ("/messages"
 *              when base_url already ends in "/v1"), headers x-api-key, anthropic-version
 *              2023-06-01. Raw completions (CONV_API_COMPLETION) are refused (SH_EUNSUPPORTED).
 *   openai:    POST base_url (default https://api.openai.com/v1) + "/chat/completions" (or
 *              "/completions"), header Authorization: Bearer. Shammah's sampling extensions
 *              (top_k, min_p, repeat_penalty) are not sent: the real API rejects them. Toward
 *              api.openai.com max_tokens is sent as max_completion_tokens.
 *   key:       api_key, else the environment variable api_key_env, else ANTHROPIC_API_KEY /
 *              OPENAI_API_KEY. No key: no auth header (local OpenAI-compatible servers need
 *              none); a 401 then says which variable to set.
 *
 * Timeouts: timeout_seconds bounds the whole teacher (attempts, waits between them and the
 * answer); within it, connect_timeout_ms bounds each connection, first_byte_timeout_ms the time
 * from the start of an attempt to the first response byte, idle_timeout_ms any silence after
 * that. fn may block (backpressure toward a slow client): the idle timer restarts when it
 * returns.
 *
 * Retries (at most max_retries after the first attempt): on connection failures (refused, reset,
 * DNS, connect timeout), HTTP 408, 409, 429 and 5xx, and a stream that fails before its first
 * content event. The wait is retry-after (or retry-after-ms) when the answer gave one, else
 * backoff_base_ms * 2^(retry-1) capped at backoff_max_ms, plus up to 25% jitter. A retry-after
 * longer than max_retry_wait_ms or than the time left ends this teacher at once (the chain moves
 * on, the client gets 429 fast rather than a hang). Never retried: once any event reached fn (a
 * half-delivered answer cannot be replayed), a first-byte timeout (a hung server would hang us
 * again), other 4xx, malformed answers, cancellation.
 *
 * Event contract toward fn: START is held back until the first content event (TEXT, TOOL_START
 * or STOP), so an answer that fails before any content delivers nothing and may still be
 * retried or handed to the next teacher. ERROR events reach fn only after content was delivered
 * (the stream broke midway: fn sees content..., ERROR, and the call fails); before that a
 * failure is reported through the return value and *res only. fn returning non-zero aborts the
 * transfer at once (client went away): SH_ECANCELED, no retry, no next teacher.
 *
 * Thread-safe: any number of calls may run at once (one curl handle each; connections, DNS and
 * TLS sessions are shared between calls). Call teacher_global_init() once before threads start. */
#ifndef SH_TEACHER_H
#define SH_TEACHER_H

#include "base/config.h"
#include "proto/conv.h"

#define TEACHER_ERROR_MAX 1024         /* bytes of teacher_result.error */
#define TEACHER_ERROR_BODY (64u << 10) /* bytes of a non-2xx body kept for its message */

typedef struct {
    int connect_timeout_ms;    /* default 10000 */
    int first_byte_timeout_ms; /* default 30000 */
    int idle_timeout_ms;       /* default 60000 */
    int backoff_base_ms;       /* default 500 */
    int backoff_max_ms;        /* default 8000 */
    int max_retry_wait_ms;     /* default 30000 */
    /* Polled about every 20 ms during transfers and waits (may be NULL): non-zero cancels like
     * fn's non-zero, for a client that leaves before any event was delivered. */
    int (*canceled)(void *user);
    void *cancel_user;
} teacher_opts;

/* The defaults above. */
void teacher_opts_default(teacher_opts *o);

typedef struct {
    int events;                 /* events passed to fn */
    int attempts;               /* HTTP requests made (all teachers of a chain) */
    int http_status;            /* status of the last answer, 0 when none came */
    conv_error_kind error_kind; /* on failure: what the client should be told (see chain) */
    int retry_after;            /* seconds, from the last retry-after seen; 0 if none */
    conv_usage usage;           /* of the delivered answer */
    /* While fn runs: the teacher being tried (so the first event can name the route). After:
     * the teacher that answered, or the last one tried. */
    char teacher[128];
    char error[TEACHER_ERROR_MAX]; /* on failure: one line naming every teacher tried and why */
} teacher_result;

/* Initialises libcurl and the shared connection cache; call once before any thread calls
 * teacher_*. Returns SH_OK or SH_EIO. teacher_global_cleanup() at exit (optional). */
int teacher_global_init(void);
void teacher_global_cleanup(void);

/* Asks one teacher. t, req borrowed; opts may be NULL (defaults); res required (filled).
 * Returns SH_OK once a STOP reached fn; SH_ECANCELED when fn or opts->canceled stopped it;
 * SH_EUNSUPPORTED for a request the teacher's dialect cannot carry; SH_EINVAL for a bad teacher
 * entry; SH_EIO for every other failure (details in *res, error_kind the teacher's own: e.g.
 * CONV_ERR_RATE for a 429, CONV_ERR_UNAVAILABLE for no connection or a timeout). */
int teacher_generate(const sh_config_teacher *t, const conv_request *req, const teacher_opts *opts,
                     conv_event_fn fn, void *user, teacher_result *res);

/* Tries teachers[0..n) in order until one answers. Moves on only while nothing reached fn.
 * When all fail, res->error lists each teacher with its reason ("all teachers failed: a: HTTP
 * 429 rate_limit_error: ...; b: connect failed: ...") and res->error_kind is, for the client:
 *   CONV_ERR_RATE (429)        every teacher was rate limited (res->retry_after set if known)
 *   CONV_ERR_UNAVAILABLE (503) every failure was a connection failure, timeout, 503 or overload,
 *                              or there are no teachers (n == 0)
 *   CONV_ERR_INVALID (400)     every teacher refused the request itself (400 / 413 / 422)
 *   CONV_ERR_UPSTREAM (502)    anything else (bad keys, malformed answers, mixed failures)
 * A failure after content reached fn ends the chain there (fn saw ERROR); error_kind is then the
 * ERROR event's. Same return values as teacher_generate (SH_EIO when all failed). */
int teacher_chain_generate(const sh_config_teacher *teachers, int n, const conv_request *req,
                           const teacher_opts *opts, conv_event_fn fn, void *user,
                           teacher_result *res);

/* HTTP status for a failed result (conv_error_status(res->error_kind)). */
int teacher_result_status(const teacher_result *res);

#endif
