/* conv.h - the one internal conversation type and event stream that every wire dialect
 * (OpenAI, Anthropic) is decoded into and encoded from, in both directions.
 *
 *   client --wire--> decode_request --> conv_request --> producer (engine | teacher)
 *   producer --> conv_event* --> encoder --> SSE frames or one JSON body --wire--> client
 *
 * A conv_request owns all its strings through its arena: conv_request_free() releases
 * everything at once. Knows nothing of the engine or of HTTP. */
#ifndef SH_CONV_H
#define SH_CONV_H

#include <stddef.h>
#include <stdint.h>

/* ---- arena: bounded bump allocation for one request ---- */
typedef struct conv_arena conv_arena;
/* Returns NULL when the arena's limit (set at creation) would be exceeded or malloc fails. */
void *conv_alloc(conv_arena *a, size_t n);
char *conv_strndup(conv_arena *a, const char *s, size_t n); /* NUL-terminated copy */
char *conv_strdup(conv_arena *a, const char *s);

/* ---- the request ---- */
typedef enum { CONV_SYSTEM, CONV_USER, CONV_ASSISTANT, CONV_TOOL } conv_role;

typedef enum { CONV_TEXT, CONV_TOOL_USE, CONV_TOOL_RESULT } conv_block_kind;

typedef struct {
    conv_block_kind kind;
    const char *text;       /* TEXT: the text; TOOL_RESULT: the result flattened to text */
    const char *id;         /* TOOL_USE: call id; TOOL_RESULT: the id of the call it answers */
    const char *name;       /* TOOL_USE: function name (TOOL_RESULT: when the dialect gives it) */
    const char *input_json; /* TOOL_USE: arguments as compact JSON text (an object) */
    int is_error;           /* TOOL_RESULT */
} conv_block;

typedef struct {
    conv_role role;
    conv_block *blocks;
    int n_blocks;
} conv_message;

typedef struct {
    const char *name;
    const char *description; /* may be NULL */
    const char *schema_json; /* JSON schema of the arguments as compact JSON text; may be NULL */
} conv_tool;

typedef enum {
    CONV_TOOLS_AUTO = 0, /* the model decides */
    CONV_TOOLS_NONE,     /* no tool calls (tools still described) */
    CONV_TOOLS_ANY,      /* at least one call ("required" / "any") */
    CONV_TOOLS_NAMED     /* a call of tool_choice_name */
} conv_tool_choice;

typedef enum { CONV_API_CHAT = 0, CONV_API_COMPLETION } conv_api;

/* Sampling values are "unset" when NaN (floats) or -1 (integers); the producer applies its
 * defaults. */
typedef struct {
    conv_arena *arena;
    conv_api api;
    const char *model;  /* as the client sent it; may be NULL */
    const char *system; /* all system/developer text joined by "\n\n"; NULL if none */
    conv_message *messages;
    int n_messages;
    const char *prompt; /* CONV_API_COMPLETION: the raw prompt */
    const char *suffix; /* CONV_API_COMPLETION: fill-in-the-middle suffix, or NULL */
    conv_tool *tools;
    int n_tools;
    conv_tool_choice tool_choice;
    const char *tool_choice_name;
    double temperature, top_p, min_p, presence_penalty, frequency_penalty, repeat_penalty;
    int64_t top_k;
    int64_t seed;       /* -1: unset */
    int64_t max_tokens; /* -1: unset */
    const char **stop;
    int n_stop;
    int stream;
    int include_usage; /* OpenAI stream_options.include_usage */
    int json_mode;     /* OpenAI response_format json_object */
    int local_only;    /* Shammah extension */
    const char *session_id; /* Shammah extension; NULL if none */
    const char *user;       /* metadata.user_id / user; may be NULL */
} conv_request;

/* limit_bytes bounds all allocations of the request (e.g. 4 x the body size). */
int conv_request_init(conv_request *r, size_t limit_bytes);
void conv_request_free(conv_request *r);

/* ---- the event stream ---- */
typedef enum {
    CONV_EV_START,      /* the answer begins (usage.prompt_tokens known) */
    CONV_EV_TEXT,       /* text delta */
    CONV_EV_TOOL_START, /* tool call `index` begins: id, name */
    CONV_EV_TOOL_DELTA, /* a fragment of its arguments JSON */
    CONV_EV_TOOL_END,   /* tool call `index` complete */
    CONV_EV_STOP,       /* the answer ends: reason, usage */
    CONV_EV_ERROR       /* the producer failed: error_type, text */
} conv_event_kind;

typedef enum {
    CONV_STOP_END = 0,  /* natural end (OpenAI "stop", Anthropic "end_turn") */
    CONV_STOP_LENGTH,   /* max_tokens reached */
    CONV_STOP_SEQUENCE, /* a stop string matched (stop_sequence) */
    CONV_STOP_TOOL_USE  /* ended with tool calls */
} conv_stop_reason;

typedef struct {
    int64_t prompt_tokens;
    int64_t completion_tokens;
    int64_t cached_tokens; /* prompt tokens served from the prefix cache */
} conv_usage;

/* Error kinds, mapped by each dialect onto its own type names and HTTP statuses. */
typedef enum {
    CONV_ERR_INVALID = 0, /* 400 */
    CONV_ERR_AUTH,        /* 401 */
    CONV_ERR_NOT_FOUND,   /* 404 */
    CONV_ERR_TOO_LARGE,   /* 413 */
    CONV_ERR_RATE,        /* 429 */
    CONV_ERR_INTERNAL,    /* 500 */
    CONV_ERR_UNAVAILABLE, /* 503 */
    CONV_ERR_OVERLOADED,  /* 529 / 503 */
    CONV_ERR_UPSTREAM     /* 502 */
} conv_error_kind;

int conv_error_status(conv_error_kind k); /* HTTP status */

/* All pointers borrowed for the duration of the call that carries the event. */
typedef struct {
    conv_event_kind kind;
    const char *text; /* TEXT, TOOL_DELTA, ERROR */
    size_t len;
    int index;        /* TOOL_*: the call's index within the answer, from 0 */
    const char *id;   /* TOOL_START */
    const char *name; /* TOOL_START */
    conv_stop_reason reason;    /* STOP */
    const char *stop_sequence;  /* STOP with CONV_STOP_SEQUENCE */
    conv_usage usage;           /* START (prompt_tokens), STOP (all) */
    conv_error_kind error_kind; /* ERROR */
} conv_event;

/* A consumer of events; returns 0 to continue, non-zero to stop the producer (client gone). */
typedef int (*conv_event_fn)(void *user, const conv_event *ev);

/* Bytes out of an encoder (SSE frames or a JSON body). Returns 0, or non-zero on failure. */
typedef int (*conv_write_fn)(void *user, const char *data, size_t len);

/* ---- conventions shared by the dialects (decided here so both map to the same request) ----
 *  - System text never appears as CONV_SYSTEM messages after decoding: every system/developer
 *    piece goes to conv_request.system, joined by "\n\n". Encoders still accept CONV_SYSTEM
 *    messages built by other code (OpenAI: system messages in place; Anthropic: appended to
 *    `system`).
 *  - Tool results: a run of consecutive tool results is ONE CONV_TOOL message holding one
 *    CONV_TOOL_RESULT block per result, in order (OpenAI: consecutive `tool` messages; Anthropic:
 *    the tool_result blocks of a user turn). Text that shares an Anthropic user turn with tool
 *    results becomes a separate CONV_USER message after it. TOOL_RESULT.name is filled from the
 *    earlier TOOL_USE with the same id when there is one (templates want it), else NULL.
 *  - Consecutive messages of the same role are merged (Anthropic semantics); OpenAI keeps the
 *    client's messages except that tool runs merge as above.
 *  - TOOL_USE.input_json is compact JSON (re-serialised, key order kept, reals with 15
 *    significant digits) when the client sent valid JSON; otherwise OpenAI's raw argument
 *    string is kept as sent. An empty argument string becomes "{}".
 *  - A TOOL_RESULT given as several text parts is flattened with "\n" between parts. */

/* Bounds of a decoded request (a request beyond them is answered 413 / 400). */
#define CONV_MAX_BODY (16u << 20)  /* bytes of one request body */
#define CONV_MAX_STOP 16           /* stop strings */
#define CONV_MAX_OUTPUT (64u << 20) /* bytes accumulated by a non-streaming encoder/decoder */
#define CONV_MAX_TOOL_CALLS 128    /* tool calls in one answer */

/* A zeroed conv_request is valid for conv_request_free(). */
void conv_request_zero(conv_request *r);

/* Fills TOOL_RESULT.name from the matching TOOL_USE (see conventions). */
void conv_request_link_tool_results(conv_request *r);

/* A canonical, stable JSON rendering of the whole request, for logs and tests (caller frees;
 * NULL on allocation failure). Two requests are equal iff their renderings are. */
char *conv_request_debug_json(const conv_request *r);

/* ---- errors of a request, rendered by each dialect in its own format ---- */
typedef struct {
    conv_error_kind kind;
    int status;         /* conv_error_status(kind); dialects may render another (see *_error_status) */
    char message[512];
    char param[64];     /* the offending field ("messages[2].content"), or "" */
} proto_error;

/* Fills *e (if e is non-NULL); returns SH_EINVAL (SH_ERANGE for CONV_ERR_TOO_LARGE) so decoders can
 * `return proto_error_set(...)`. param may be NULL. */
int proto_error_set(proto_error *e, conv_error_kind kind, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Error kind for an HTTP status seen by a client (4xx/5xx); CONV_ERR_UPSTREAM when unknown. */
conv_error_kind conv_error_kind_from_status(int status);

/* ---- bounded byte buffer, for encoders and decoders ---- */
typedef struct {
    char *p;     /* NUL-terminated when non-NULL */
    size_t len, cap, max;
} conv_buf;

void conv_buf_init(conv_buf *b, size_t max);
void conv_buf_free(conv_buf *b);
int conv_buf_append(conv_buf *b, const char *s, size_t n); /* SH_EFULL beyond max */
int conv_buf_puts(conv_buf *b, const char *s);
int conv_buf_printf(conv_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends s as a quoted JSON string; invalid UTF-8 bytes become U+FFFD. */
int conv_buf_json_str(conv_buf *b, const char *s, size_t n);
/* Appends a double in the shortest of %.15g..%.17g that reads back exactly (JSON number). */
int conv_buf_json_double(conv_buf *b, double v);
/* Length of the longest prefix of s[0..n) that does not end inside a UTF-8 sequence, so a
 * streaming encoder can hold back a character split across two events. */
size_t conv_utf8_whole(const char *s, size_t n);

/* ---- accumulation of an event stream into one answer (non-streaming encoders, tests) ---- */
typedef struct {
    conv_block_kind kind; /* CONV_TEXT or CONV_TOOL_USE */
    conv_buf text;        /* TEXT: the text; TOOL_USE: the arguments JSON */
    char *id, *name;      /* TOOL_USE (owned) */
    int tool_index;       /* TOOL_USE: conv_event.index */
} conv_accum_block;

typedef struct {
    conv_accum_block *blocks; /* owned */
    int n_blocks, cap_blocks;
    int started, stopped, failed;
    conv_stop_reason reason;
    char *stop_sequence;      /* owned; NULL if none */
    conv_usage usage;
    conv_error_kind error_kind;
    conv_buf error_text;
    size_t total;             /* bytes held, bounded by CONV_MAX_OUTPUT */
} conv_accum;

void conv_accum_init(conv_accum *a);
void conv_accum_free(conv_accum *a);
/* Usable as a conv_event_fn (user = the conv_accum). Returns SH_EFULL when over the bounds. */
int conv_accum_event(void *a, const conv_event *ev);

/* ---- helpers for the dialect decoders (JSON via jansson; conv.h does not include it) ---- */
struct json_t;
typedef struct {
    conv_request *r;   /* strings are copied into r->arena */
    proto_error *err;
} conv_dec;

/* Parses a request body: 413 beyond CONV_MAX_BODY, 400 for invalid JSON / UTF-8 or a body that
 * is not an object. *out is a new reference on success. */
int conv_json_load(const char *body, size_t len, struct json_t **out, proto_error *err);
/* Arena copies; NULL (with a 413 in d->err) when the arena is exhausted. */
const char *conv_dec_str(conv_dec *d, struct json_t *string);
const char *conv_dec_compact(conv_dec *d, struct json_t *value); /* compact JSON text */
/* Optional fields of obj: absent or null leaves *out unchanged; a wrong type or a value out of
 * [lo, hi] is a 400 naming key. */
int conv_dec_get_str(conv_dec *d, struct json_t *obj, const char *key, const char **out);
int conv_dec_get_bool(conv_dec *d, struct json_t *obj, const char *key, int *out);
int conv_dec_get_num(conv_dec *d, struct json_t *obj, const char *key, double lo, double hi, double *out);
int conv_dec_get_int(conv_dec *d, struct json_t *obj, const char *key, int64_t lo, int64_t hi, int64_t *out);
/* Stop strings: a string or an array of at most CONV_MAX_STOP strings ("" entries dropped). */
int conv_dec_get_stop(conv_dec *d, struct json_t *obj, const char *key);
/* Appends text to r->system with "\n\n" between pieces. */
int conv_dec_add_system(conv_dec *d, const char *text, size_t len);
/* JSON flags for re-serialised values (compact, 15 significant digits for reals). */
#define CONV_JSON_FLAGS (0x20 /* JSON_COMPACT */ | (15u << 11) /* JSON_REAL_PRECISION(15) */)

#endif
