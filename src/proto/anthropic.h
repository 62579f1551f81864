/* anthropic.h - the Anthropic Messages dialect, both directions.
 *
 * Server: anthropic_decode_messages / anthropic_decode_count_tokens turn a request body into a
 * conv_request; an anthropic_enc turns conv_events into the SSE event sequence or one message.
 * Client: anthropic_encode_request writes a request body; an anthropic_dec turns a response back
 * into conv_events.
 *
 * Decisions (documented for clients):
 *  - Consecutive turns of the same role are merged, as the real API does; tool_result blocks of
 *    a user turn become a CONV_TOOL message (see conv.h).
 *  - image / document blocks are a 400; thinking / redacted_thinking blocks in assistant turns
 *    and the `thinking` parameter are accepted and ignored; server tools (a `type` other than
 *    "custom") are a 400.
 *  - tool_use blocks are only allowed in assistant turns, tool_result blocks in user turns.
 *  - A tool call whose arguments are not a JSON object is rendered with input {} (the API
 *    requires an object); streaming sends the fragments as they come.
 *  - The client encoder clamps temperature to [0, 1], drops seed and penalties (no equivalent),
 *    and sends max_tokens 4096 when unset. */
#ifndef SH_ANTHROPIC_H
#define SH_ANTHROPIC_H

#include "proto/conv.h"

#define ANTHROPIC_DEFAULT_MAX_TOKENS 4096

/* ---- server side ---- */

/* Decode a request body; see openai_decode_chat for the ownership and return contract.
 * max_tokens is required by decode_messages, ignored by decode_count_tokens. */
int anthropic_decode_messages(const char *body, size_t len, conv_request *req, proto_error *err);
int anthropic_decode_count_tokens(const char *body, size_t len, conv_request *req, proto_error *err);

/* HTTP status of an error in this dialect (overloaded -> 529). */
int anthropic_error_status(conv_error_kind k);
/* {"type":"error","error":{"type":..,"message":..}} - caller frees; NULL on ENOMEM. */
char *anthropic_error_json(const proto_error *e);
/* {"input_tokens":N} - caller frees. */
char *anthropic_count_tokens_json(int64_t input_tokens);

typedef struct {
    int stream;
    const char *model; /* copied */
    const char *id;    /* "msg_..."; copied */
} anthropic_enc_opts;

typedef struct anthropic_enc anthropic_enc;

/* Same contract as openai_enc_*. */
anthropic_enc *anthropic_enc_new(const anthropic_enc_opts *o, conv_write_fn write, void *user);
int anthropic_enc_event(void *enc, const conv_event *ev); /* usable as a conv_event_fn */
int anthropic_enc_status(const anthropic_enc *e);
int anthropic_enc_finish(anthropic_enc *e);
void anthropic_enc_free(anthropic_enc *e);

/* ---- client side ---- */

enum { ANTHROPIC_REQ_EXTENSIONS = 1 }; /* also session_id, local_only (shammah peers only) */

/* The /v1/messages body; model overrides r->model when non-NULL. Caller frees; NULL on ENOMEM. */
char *anthropic_encode_request(const conv_request *r, const char *model, int stream);
char *anthropic_encode_request_ex(const conv_request *r, const char *model, int stream, unsigned flags);

typedef struct anthropic_dec anthropic_dec;

/* Same contract as openai_dec_*. */
anthropic_dec *anthropic_dec_new(int stream);
int anthropic_dec_feed(anthropic_dec *d, const char *p, size_t n, conv_event_fn fn, void *user);
int anthropic_dec_finish(anthropic_dec *d, conv_event_fn fn, void *user);
void anthropic_dec_free(anthropic_dec *d);

#endif
