/* openai.h - the OpenAI dialect (chat completions and legacy completions), both directions.
 *
 * Server: openai_decode_chat / openai_decode_completion turn a request body into a
 * conv_request; an openai_enc turns the producer's conv_events into SSE chunks or one JSON body.
 * Client: openai_encode_request writes a request body; an openai_dec turns the response (SSE or
 * JSON, fed in any byte split) back into conv_events.
 *
 * Decisions (documented for clients):
 *  - response_format {type:"json_schema"} is a 400 (schemas are not enforced; json_object is).
 *  - logprobs: true (chat) or a non-null logprobs (completions), echo: true, best_of > 1, n != 1,
 *    image/audio/file content parts and token-id prompts are 400s naming the parameter.
 *  - Unknown top-level keys are ignored; duplicate keys keep the last value.
 *  - seed -1 means "unset" (llama.cpp convention).
 *  - max_completion_tokens wins over max_tokens when both are given.
 *  - A stream that fails mid-way ends with `data: {"error":{...}}` and no [DONE]; the SDKs raise
 *    an APIError on such a chunk. */
#ifndef SH_OPENAI_H
#define SH_OPENAI_H

#include "proto/conv.h"

/* ---- server side ---- */

/* Decode a request body. On success *req is initialised (caller frees with conv_request_free);
 * on failure *req is left freed/zeroed and *err (required) says why (status, message, param),
 * ready for openai_error_json. Returns 0,
 * SH_EINVAL (4xx in err) or SH_ERANGE (413 in err). */
int openai_decode_chat(const char *body, size_t len, conv_request *req, proto_error *err);
int openai_decode_completion(const char *body, size_t len, conv_request *req, proto_error *err);

/* HTTP status of an error in this dialect (overloaded -> 503). */
int openai_error_status(conv_error_kind k);
/* {"error":{"message":..,"type":..,"param":..,"code":null}} - caller frees; NULL on ENOMEM. */
char *openai_error_json(const proto_error *e);

typedef struct {
    conv_api api;      /* chat.completion(.chunk) or text_completion objects */
    int stream;
    int include_usage; /* stream: a last chunk with choices [] and usage */
    const char *model; /* copied */
    const char *id;    /* "chatcmpl-..." / "cmpl-..."; copied */
    int64_t created;   /* unix seconds */
} openai_enc_opts;

typedef struct openai_enc openai_enc;

/* write/user receive the bytes: one call per event when streaming, the body at finish otherwise.
 * Returns NULL on ENOMEM. */
openai_enc *openai_enc_new(const openai_enc_opts *o, conv_write_fn write, void *user);
/* Usable as a conv_event_fn (user = the openai_enc). Non-zero when the write failed or a bound
 * was exceeded: stop producing. Events after STOP or ERROR are ignored. */
int openai_enc_event(void *enc, const conv_event *ev);
/* Non-streaming: the HTTP status the body will carry (200, or the error's) - ask before finish.
 * Streaming answers are always 200 once started. */
int openai_enc_status(const openai_enc *e);
/* Ends the answer: writes the non-streaming body, or, for a stream that saw neither STOP nor
 * ERROR, an error chunk. */
int openai_enc_finish(openai_enc *e);
void openai_enc_free(openai_enc *e);

/* ---- client side ---- */

enum {
    OPENAI_REQ_EXTENSIONS = 1,            /* also top_k, min_p, repeat_penalty, session_id, local_only
                                           * (for shammah / llama.cpp peers; the real API rejects them) */
    OPENAI_REQ_MAX_COMPLETION_TOKENS = 2  /* max_completion_tokens instead of max_tokens (o-series) */
};

/* The request body for /v1/chat/completions (or /v1/completions when r->api is
 * CONV_API_COMPLETION). model overrides r->model when non-NULL. Streaming requests ask for usage.
 * Caller frees; NULL on ENOMEM. */
char *openai_encode_request(const conv_request *r, const char *model, int stream);
char *openai_encode_request_ex(const conv_request *r, const char *model, int stream, unsigned flags);

typedef struct openai_dec openai_dec;

/* stream: the body is SSE (a successful streaming answer); else one JSON body (any non-2xx
 * answer, even to a streaming request). NULL on ENOMEM. */
openai_dec *openai_dec_new(int stream);
/* Feeds response bytes in any split; emits START, TEXT, TOOL_START/DELTA/END, STOP or ERROR.
 * Returns 0, the callback's non-zero value, SH_EFORMAT for a malformed stream or SH_EFULL past
 * the bounds. */
int openai_dec_feed(openai_dec *d, const char *p, size_t n, conv_event_fn fn, void *user);
/* End of the body: emits what is still pending; an answer cut short becomes an ERROR event. */
int openai_dec_finish(openai_dec *d, conv_event_fn fn, void *user);
void openai_dec_free(openai_dec *d);

#endif
