/* anthropic.c - the Anthropic Messages dialect: request codec and answer codec. */
#include "proto/anthropic.h"

#include "base/status.h"
#include "proto/sse.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ======================================================================================
 * server side: request decoding
 * ==================================================================================== */

static int bad(conv_dec *d, const char *param, const char *msg) {
    return proto_error_set(d->err, CONV_ERR_INVALID, param, "%s", msg);
}

static int too_large(conv_dec *d) {
    return proto_error_set(d->err, CONV_ERR_TOO_LARGE, NULL, "request too large to decode");
}

static int unsupported_block(conv_dec *d, const char *param, const char *type) {
    if (strcmp(type, "image") == 0) return bad(d, param, "images are not supported");
    if (strcmp(type, "document") == 0) return bad(d, param, "documents are not supported");
    return proto_error_set(d->err, CONV_ERR_INVALID, param, "unsupported content block type '%s'", type);
}

static const char *block_type(json_t *b) {
    json_t *t = json_is_object(b) ? json_object_get(b, "type") : NULL;
    return json_is_string(t) ? json_string_value(t) : NULL;
}

/* tool_result content: a string, or text blocks joined with "\n". */
static int result_text(conv_dec *d, json_t *c, const char *param, const char **out) {
    if (!c || json_is_null(c)) return *out = "", SH_OK;
    if (json_is_string(c)) return (*out = conv_dec_str(d, c)) ? SH_OK : SH_ERANGE;
    if (!json_is_array(c)) return bad(d, param, "tool_result 'content' must be a string or an array of blocks");
    size_t total = 0, n = json_array_size(c);
    for (size_t i = 0; i < n; i++) {
        json_t *b = json_array_get(c, i);
        const char *t = block_type(b);
        if (!t) return bad(d, param, "a content block needs a string 'type'");
        if (strcmp(t, "text") != 0) return unsupported_block(d, param, t);
        if (!json_is_string(json_object_get(b, "text"))) return bad(d, param, "a text block needs a string 'text'");
        total += json_string_length(json_object_get(b, "text")) + 1;
    }
    char *s = conv_alloc(d->r->arena, total + 1), *w = s;
    if (!s) return too_large(d);
    for (size_t i = 0; i < n; i++) {
        json_t *t = json_object_get(json_array_get(c, i), "text");
        if (i) *w++ = '\n';
        memcpy(w, json_string_value(t), json_string_length(t));
        w += json_string_length(t);
    }
    *w = 0;
    *out = s;
    return SH_OK;
}

/* One content block of message i into *b; *role is the conv role it belongs to. Returns 1 (as
 * a positive "skip") for blocks that are accepted and ignored. */
static int decode_block(conv_dec *d, json_t *jb, size_t i, size_t j, int assistant, conv_block *b, conv_role *role) {
    char pp[96];
    snprintf(pp, sizeof pp, "messages[%zu].content[%zu]", i, j);
    const char *t = block_type(jb);
    if (!t) return bad(d, pp, "a content block must be an object with a string 'type'");
    memset(b, 0, sizeof *b);
    *role = assistant ? CONV_ASSISTANT : CONV_USER;
    if (strcmp(t, "text") == 0) {
        json_t *text = json_object_get(jb, "text");
        if (!json_is_string(text)) return bad(d, pp, "a text block needs a string 'text'");
        b->kind = CONV_TEXT;
        return (b->text = conv_dec_str(d, text)) ? SH_OK : SH_ERANGE;
    }
    if (strcmp(t, "tool_use") == 0) {
        if (!assistant) return bad(d, pp, "tool_use blocks are only allowed in assistant messages");
        json_t *id = json_object_get(jb, "id"), *name = json_object_get(jb, "name"), *input = json_object_get(jb, "input");
        if (!json_is_string(id)) return bad(d, pp, "a tool_use block needs a string 'id'");
        if (!json_is_string(name) || json_string_length(name) == 0) return bad(d, pp, "a tool_use block needs a 'name'");
        if (!json_is_object(input)) return bad(d, pp, "a tool_use block needs an object 'input'");
        b->kind = CONV_TOOL_USE;
        if (!(b->id = conv_dec_str(d, id)) || !(b->name = conv_dec_str(d, name)) || !(b->input_json = conv_dec_compact(d, input)))
            return SH_ERANGE;
        return SH_OK;
    }
    if (strcmp(t, "tool_result") == 0) {
        if (assistant) return bad(d, pp, "tool_result blocks are only allowed in user messages");
        json_t *id = json_object_get(jb, "tool_use_id"), *ie = json_object_get(jb, "is_error");
        if (!json_is_string(id)) return bad(d, pp, "a tool_result block needs a string 'tool_use_id'");
        if (ie && !json_is_null(ie) && !json_is_boolean(ie)) return bad(d, pp, "'is_error' must be a boolean");
        b->kind = CONV_TOOL_RESULT;
        b->is_error = json_is_true(ie);
        *role = CONV_TOOL;
        int rc = result_text(d, json_object_get(jb, "content"), pp, &b->text);
        if (rc) return rc;
        return (b->id = conv_dec_str(d, id)) ? SH_OK : SH_ERANGE;
    }
    if (assistant && (strcmp(t, "thinking") == 0 || strcmp(t, "redacted_thinking") == 0)) return 1;
    return unsupported_block(d, pp, t);
}

static int decode_messages(conv_dec *d, json_t *msgs) {
    conv_request *r = d->r;
    if (!msgs || json_is_null(msgs)) return bad(d, "messages", "'messages' is required");
    if (!json_is_array(msgs)) return bad(d, "messages", "'messages' must be an array");
    size_t n = json_array_size(msgs), total = 0;
    if (n == 0) return bad(d, "messages", "'messages' must not be empty");
    char pp[64];
    for (size_t i = 0; i < n; i++) {
        json_t *m = json_array_get(msgs, i);
        snprintf(pp, sizeof pp, "messages[%zu]", i);
        if (!json_is_object(m)) return bad(d, pp, "a message must be an object");
        json_t *role = json_object_get(m, "role"), *c = json_object_get(m, "content");
        snprintf(pp, sizeof pp, "messages[%zu].role", i);
        if (!json_is_string(role) ||
            (strcmp(json_string_value(role), "user") != 0 && strcmp(json_string_value(role), "assistant") != 0))
            return bad(d, pp, "'role' must be \"user\" or \"assistant\"");
        snprintf(pp, sizeof pp, "messages[%zu].content", i);
        if (json_is_string(c)) total++;
        else if (json_is_array(c)) total += json_array_size(c);
        else return bad(d, pp, "'content' must be a string or an array of content blocks");
    }
    /* all blocks in order with their roles; runs of one role become messages, so consecutive
     * turns merge and tool results split from the text around them */
    conv_block *blocks = conv_alloc(r->arena, (total ? total : 1) * sizeof *blocks);
    conv_role *roles = conv_alloc(r->arena, (total ? total : 1) * sizeof *roles);
    r->messages = conv_alloc(r->arena, (total ? total : 1) * sizeof *r->messages);
    if (!blocks || !roles || !r->messages) return too_large(d);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *m = json_array_get(msgs, i), *c = json_object_get(m, "content");
        int assistant = strcmp(json_string_value(json_object_get(m, "role")), "assistant") == 0;
        if (json_is_string(c)) {
            memset(&blocks[k], 0, sizeof blocks[k]);
            blocks[k].kind = CONV_TEXT;
            roles[k] = assistant ? CONV_ASSISTANT : CONV_USER;
            if (!(blocks[k++].text = conv_dec_str(d, c))) return SH_ERANGE;
            continue;
        }
        for (size_t j = 0; j < json_array_size(c); j++) {
            int rc = decode_block(d, json_array_get(c, j), i, j, assistant, &blocks[k], &roles[k]);
            if (rc < 0) return rc;
            if (rc == 0) k++;
        }
    }
    for (size_t i = 0; i < k; i++) {
        conv_message *last = r->n_messages ? &r->messages[r->n_messages - 1] : NULL;
        if (last && last->role == roles[i]) {
            last->n_blocks++;
            continue;
        }
        conv_message *m = &r->messages[r->n_messages++];
        m->role = roles[i];
        m->blocks = &blocks[i];
        m->n_blocks = 1;
    }
    conv_request_link_tool_results(r);
    return SH_OK;
}

static int decode_system(conv_dec *d, json_t *s) {
    if (!s || json_is_null(s)) return SH_OK;
    if (json_is_string(s)) return conv_dec_add_system(d, json_string_value(s), json_string_length(s));
    if (!json_is_array(s)) return bad(d, "system", "'system' must be a string or an array of text blocks");
    for (size_t i = 0; i < json_array_size(s); i++) {
        json_t *b = json_array_get(s, i), *t = json_object_get(b, "text");
        const char *ty = block_type(b);
        char pp[64];
        snprintf(pp, sizeof pp, "system[%zu]", i);
        if (!ty || strcmp(ty, "text") != 0 || !json_is_string(t)) return bad(d, pp, "'system' blocks must be text blocks");
        int rc = conv_dec_add_system(d, json_string_value(t), json_string_length(t));
        if (rc) return rc;
    }
    return SH_OK;
}

static int decode_tools(conv_dec *d, json_t *root) {
    conv_request *r = d->r;
    json_t *tools = json_object_get(root, "tools");
    char pp[64];
    if (tools && !json_is_null(tools)) {
        if (!json_is_array(tools)) return bad(d, "tools", "'tools' must be an array");
        size_t n = json_array_size(tools);
        if (n && !(r->tools = conv_alloc(r->arena, n * sizeof *r->tools))) return too_large(d);
        for (size_t i = 0; i < n; i++) {
            json_t *t = json_array_get(tools, i);
            snprintf(pp, sizeof pp, "tools[%zu]", i);
            if (!json_is_object(t)) return bad(d, pp, "a tool must be an object");
            json_t *type = json_object_get(t, "type"), *name = json_object_get(t, "name");
            json_t *desc = json_object_get(t, "description"), *schema = json_object_get(t, "input_schema");
            if (type && !json_is_null(type) && !(json_is_string(type) && strcmp(json_string_value(type), "custom") == 0))
                return proto_error_set(d->err, CONV_ERR_INVALID, pp, "tool type '%s' is not supported",
                                       json_is_string(type) ? json_string_value(type) : "?");
            if (!json_is_string(name) || json_string_length(name) == 0) return bad(d, pp, "a tool needs a string 'name'");
            if (desc && !json_is_null(desc) && !json_is_string(desc)) return bad(d, pp, "'description' must be a string");
            if (schema && !json_is_null(schema) && !json_is_object(schema))
                return bad(d, pp, "'input_schema' must be a JSON schema object");
            conv_tool *ct = &r->tools[r->n_tools];
            memset(ct, 0, sizeof *ct);
            if (!(ct->name = conv_dec_str(d, name))) return SH_ERANGE;
            if (json_is_string(desc) && !(ct->description = conv_dec_str(d, desc))) return SH_ERANGE;
            if (json_is_object(schema) && !(ct->schema_json = conv_dec_compact(d, schema))) return SH_ERANGE;
            r->n_tools++;
        }
    }
    json_t *tc = json_object_get(root, "tool_choice");
    if (!tc || json_is_null(tc)) return SH_OK;
    const char *ty = block_type(tc);
    if (!ty) return bad(d, "tool_choice", "'tool_choice' must be an object with a 'type'");
    if (strcmp(ty, "auto") == 0) r->tool_choice = CONV_TOOLS_AUTO;
    else if (strcmp(ty, "none") == 0) r->tool_choice = CONV_TOOLS_NONE;
    else if (strcmp(ty, "any") == 0) r->tool_choice = CONV_TOOLS_ANY;
    else if (strcmp(ty, "tool") == 0) {
        json_t *name = json_object_get(tc, "name");
        if (!json_is_string(name)) return bad(d, "tool_choice", "'tool_choice' of type 'tool' needs a 'name'");
        for (int i = 0; i < r->n_tools; i++)
            if (strcmp(r->tools[i].name, json_string_value(name)) == 0) {
                r->tool_choice = CONV_TOOLS_NAMED;
                r->tool_choice_name = r->tools[i].name;
                return SH_OK;
            }
        return proto_error_set(d->err, CONV_ERR_INVALID, "tool_choice", "'tool_choice' names '%s', which is not in 'tools'",
                               json_string_value(name));
    } else {
        return bad(d, "tool_choice", "'tool_choice.type' must be \"auto\", \"any\", \"tool\" or \"none\"");
    }
    if (r->tool_choice == CONV_TOOLS_ANY && r->n_tools == 0)
        return bad(d, "tool_choice", "'tool_choice' \"any\" needs 'tools'");
    return SH_OK;
}

static int decode(const char *body, size_t len, conv_request *req, proto_error *err, int need_max_tokens) {
    json_t *root = NULL;
    conv_request_zero(req);
    memset(err, 0, sizeof *err);
    int rc = conv_json_load(body, len, &root, err);
    if (rc) return rc;
    if ((rc = conv_request_init(req, 4 * len + 65536))) {
        rc = proto_error_set(err, CONV_ERR_INTERNAL, NULL, "out of memory");
        goto out;
    }
    conv_dec d = {req, err};
    req->api = CONV_API_CHAT;
    json_t *meta = json_object_get(root, "metadata");
    if ((rc = conv_dec_get_str(&d, root, "model", &req->model)) ||
        (rc = conv_dec_get_int(&d, root, "max_tokens", 1, INT32_MAX, &req->max_tokens)) ||
        (rc = conv_dec_get_num(&d, root, "temperature", 0, 1, &req->temperature)) ||
        (rc = conv_dec_get_num(&d, root, "top_p", 0, 1, &req->top_p)) ||
        (rc = conv_dec_get_int(&d, root, "top_k", 0, INT32_MAX, &req->top_k)) ||
        (rc = conv_dec_get_stop(&d, root, "stop_sequences")) || (rc = conv_dec_get_bool(&d, root, "stream", &req->stream)) ||
        (rc = conv_dec_get_str(&d, root, "session_id", &req->session_id)) ||
        (rc = conv_dec_get_bool(&d, root, "local_only", &req->local_only)))
        goto out;
    if (need_max_tokens && req->max_tokens < 0) {
        rc = bad(&d, "max_tokens", "'max_tokens' is required");
        goto out;
    }
    if (!need_max_tokens) req->max_tokens = -1;
    if (meta && !json_is_null(meta)) {
        if (!json_is_object(meta)) {
            rc = bad(&d, "metadata", "'metadata' must be an object");
            goto out;
        }
        if ((rc = conv_dec_get_str(&d, meta, "user_id", &req->user))) {
            snprintf(err->param, sizeof err->param, "metadata.user_id");
            goto out;
        }
    }
    if ((rc = decode_system(&d, json_object_get(root, "system"))) || (rc = decode_tools(&d, root)) ||
        (rc = decode_messages(&d, json_object_get(root, "messages"))))
        goto out;
out:
    json_decref(root);
    if (rc) conv_request_free(req);
    return rc;
}

int anthropic_decode_messages(const char *body, size_t len, conv_request *req, proto_error *err) {
    return decode(body, len, req, err, 1);
}

int anthropic_decode_count_tokens(const char *body, size_t len, conv_request *req, proto_error *err) {
    return decode(body, len, req, err, 0);
}

/* ======================================================================================
 * errors
 * ==================================================================================== */

int anthropic_error_status(conv_error_kind k) { return conv_error_status(k); }

static const char *error_type(conv_error_kind k) {
    switch (k) {
    case CONV_ERR_INVALID: return "invalid_request_error";
    case CONV_ERR_AUTH: return "authentication_error";
    case CONV_ERR_NOT_FOUND: return "not_found_error";
    case CONV_ERR_TOO_LARGE: return "request_too_large";
    case CONV_ERR_RATE: return "rate_limit_error";
    case CONV_ERR_OVERLOADED: return "overloaded_error";
    default: return "api_error";
    }
}

static conv_error_kind error_kind_of(const char *t) {
    if (!t) return CONV_ERR_UPSTREAM;
    static const struct { const char *name; conv_error_kind k; } map[] = {
        {"invalid_request_error", CONV_ERR_INVALID}, {"authentication_error", CONV_ERR_AUTH},
        {"permission_error", CONV_ERR_AUTH},         {"not_found_error", CONV_ERR_NOT_FOUND},
        {"request_too_large", CONV_ERR_TOO_LARGE},   {"rate_limit_error", CONV_ERR_RATE},
        {"api_error", CONV_ERR_INTERNAL},            {"overloaded_error", CONV_ERR_OVERLOADED},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (strcmp(map[i].name, t) == 0) return map[i].k;
    return CONV_ERR_UPSTREAM;
}

static int error_body(conv_buf *b, conv_error_kind k, const char *msg, size_t len) {
    int rc;
    if ((rc = conv_buf_puts(b, "{\"type\":\"error\",\"error\":{\"type\":")) ||
        (rc = conv_buf_json_str(b, error_type(k), strlen(error_type(k)))) || (rc = conv_buf_puts(b, ",\"message\":")) ||
        (rc = conv_buf_json_str(b, msg, len)))
        return rc;
    return conv_buf_puts(b, "}}");
}

char *anthropic_error_json(const proto_error *e) {
    conv_buf b;
    conv_buf_init(&b, 4096);
    char msg[600];
    /* the format has no param field: name it in the message, as the real API does */
    if (e->param[0]) snprintf(msg, sizeof msg, "%s: %s", e->param, e->message);
    else snprintf(msg, sizeof msg, "%s", e->message);
    if (error_body(&b, e->kind, msg, strlen(msg))) {
        conv_buf_free(&b);
        return NULL;
    }
    return b.p;
}

char *anthropic_count_tokens_json(int64_t input_tokens) {
    char *s = malloc(48);
    if (s) snprintf(s, 48, "{\"input_tokens\":%lld}", (long long)input_tokens);
    return s;
}

/* ======================================================================================
 * server side: answer encoding
 * ==================================================================================== */

#define MAX_BLOCKS (2 * CONV_MAX_TOOL_CALLS + 2)

struct anthropic_enc {
    anthropic_enc_opts o;
    conv_write_fn write;
    void *user;
    char *id, *model;
    conv_buf out, tmp;
    char carry[4];
    size_t n_carry;
    conv_accum acc;
    int started, done;
    int open;            /* index of the open content block, or -1 */
    int open_is_text;
    int next_block, pinged;
    int tool_block[CONV_MAX_TOOL_CALLS]; /* content block index of each tool call, -1 if none */
    conv_usage usage;
};

static const char *stop_reason(conv_stop_reason r) {
    switch (r) {
    case CONV_STOP_LENGTH: return "max_tokens";
    case CONV_STOP_SEQUENCE: return "stop_sequence";
    case CONV_STOP_TOOL_USE: return "tool_use";
    default: return "end_turn";
    }
}

anthropic_enc *anthropic_enc_new(const anthropic_enc_opts *o, conv_write_fn write, void *user) {
    anthropic_enc *e = calloc(1, sizeof *e);
    if (!e) return NULL;
    e->o = *o;
    e->write = write;
    e->user = user;
    e->id = strdup(o->id ? o->id : "");
    e->model = strdup(o->model ? o->model : "");
    conv_buf_init(&e->out, CONV_MAX_OUTPUT + 65536);
    conv_buf_init(&e->tmp, CONV_MAX_OUTPUT);
    conv_accum_init(&e->acc);
    e->open = -1;
    for (int i = 0; i < CONV_MAX_TOOL_CALLS; i++) e->tool_block[i] = -1;
    if (!e->id || !e->model) {
        anthropic_enc_free(e);
        return NULL;
    }
    return e;
}

void anthropic_enc_free(anthropic_enc *e) {
    if (!e) return;
    free(e->id);
    free(e->model);
    conv_buf_free(&e->out);
    conv_buf_free(&e->tmp);
    conv_accum_free(&e->acc);
    free(e);
}

static int usage_json(conv_buf *b, int64_t prompt, int64_t cached, int64_t output) {
    int rc = conv_buf_printf(b, "{\"input_tokens\":%lld", (long long)(prompt - cached));
    if (!rc && cached > 0) rc = conv_buf_printf(b, ",\"cache_read_input_tokens\":%lld", (long long)cached);
    return rc ? rc : conv_buf_printf(b, ",\"output_tokens\":%lld}", (long long)output);
}

/* {"id":..,"type":"message","role":"assistant","content": - the caller appends the rest */
static int message_head(anthropic_enc *e, conv_buf *b) {
    int rc;
    if ((rc = conv_buf_puts(b, "{\"id\":")) || (rc = conv_buf_json_str(b, e->id, strlen(e->id))))
        return rc;
    return conv_buf_puts(b, ",\"type\":\"message\",\"role\":\"assistant\",\"content\":");
}

static int message_tail(anthropic_enc *e, conv_buf *b, const char *reason, const char *seq, const conv_usage *u) {
    int rc;
    if ((rc = conv_buf_puts(b, ",\"model\":")) || (rc = conv_buf_json_str(b, e->model, strlen(e->model))) ||
        (rc = conv_buf_puts(b, ",\"stop_reason\":")))
        return rc;
    rc = reason ? conv_buf_printf(b, "\"%s\"", reason) : conv_buf_puts(b, "null");
    if (!rc) rc = conv_buf_puts(b, ",\"stop_sequence\":");
    if (!rc) rc = seq ? conv_buf_json_str(b, seq, strlen(seq)) : conv_buf_puts(b, "null");
    if (!rc) rc = conv_buf_puts(b, ",\"usage\":");
    if (!rc) rc = usage_json(b, u->prompt_tokens, u->cached_tokens, u->completion_tokens);
    return rc ? rc : conv_buf_puts(b, "}");
}

/* "event: NAME\ndata: " ... "\n\n" around a JSON payload the caller appends */
static int frame_begin(anthropic_enc *e, const char *name) {
    return conv_buf_printf(&e->out, "event: %s\ndata: ", name);
}
static int frame_end(anthropic_enc *e) { return conv_buf_append(&e->out, "\n\n", 2); }

static int stream_start(anthropic_enc *e) {
    if (e->started) return SH_OK;
    e->started = 1;
    int rc;
    conv_usage u = e->usage;
    u.completion_tokens = 0;
    if ((rc = frame_begin(e, "message_start")) || (rc = conv_buf_puts(&e->out, "{\"type\":\"message_start\",\"message\":")) ||
        (rc = message_head(e, &e->out)) || (rc = conv_buf_puts(&e->out, "[]")) ||
        (rc = message_tail(e, &e->out, NULL, NULL, &u)) || (rc = conv_buf_puts(&e->out, "}")))
        return rc;
    return frame_end(e);
}

static int block_stop(anthropic_enc *e) {
    if (e->open < 0) return SH_OK;
    int rc = frame_begin(e, "content_block_stop");
    if (!rc) rc = conv_buf_printf(&e->out, "{\"type\":\"content_block_stop\",\"index\":%d}", e->open);
    e->open = -1;
    return rc ? rc : frame_end(e);
}

/* content_block_start of a text block, or of a tool_use block when id is non-NULL; the first
 * one is followed by a ping, as the real API does. */
static int block_start(anthropic_enc *e, const char *id, const char *name) {
    int rc;
    if ((rc = block_stop(e))) return rc;
    if (e->next_block >= MAX_BLOCKS) return sh_error_set(SH_EFULL, "anthropic: too many content blocks");
    e->open = e->next_block++;
    e->open_is_text = id == NULL;
    if ((rc = frame_begin(e, "content_block_start")) ||
        (rc = conv_buf_printf(&e->out, "{\"type\":\"content_block_start\",\"index\":%d,\"content_block\":", e->open)))
        return rc;
    if (!id) {
        rc = conv_buf_puts(&e->out, "{\"type\":\"text\",\"text\":\"\"}}");
    } else if (!(rc = conv_buf_puts(&e->out, "{\"type\":\"tool_use\",\"id\":")) &&
               !(rc = conv_buf_json_str(&e->out, id, strlen(id))) && !(rc = conv_buf_puts(&e->out, ",\"name\":")) &&
               !(rc = conv_buf_json_str(&e->out, name, strlen(name)))) {
        rc = conv_buf_puts(&e->out, ",\"input\":{}}}");
    }
    if (rc || (rc = frame_end(e))) return rc;
    if (!e->pinged) {
        e->pinged = 1;
        if ((rc = frame_begin(e, "ping")) || (rc = conv_buf_puts(&e->out, "{\"type\":\"ping\"}"))) return rc;
        return frame_end(e);
    }
    return SH_OK;
}

static int delta(anthropic_enc *e, int index, const char *type, const char *key, const char *s, size_t n) {
    int rc;
    if ((rc = frame_begin(e, "content_block_delta")) ||
        (rc = conv_buf_printf(&e->out, "{\"type\":\"content_block_delta\",\"index\":%d,\"delta\":{\"type\":\"%s\",\"%s\":",
                              index, type, key)) ||
        (rc = conv_buf_json_str(&e->out, s, n)) || (rc = conv_buf_puts(&e->out, "}}")))
        return rc;
    return frame_end(e);
}

static int text_delta(anthropic_enc *e, const char *s, size_t n) {
    int rc;
    if (n == 0) return SH_OK;
    if ((e->open < 0 || !e->open_is_text) && (rc = block_start(e, NULL, NULL))) return rc;
    return delta(e, e->open, "text_delta", "text", s, n);
}

static int stream_error(anthropic_enc *e, conv_error_kind k, const char *msg, size_t len) {
    int rc;
    e->done = 1;
    if ((rc = frame_begin(e, "error")) || (rc = error_body(&e->out, k, msg, len))) return rc;
    return frame_end(e);
}

static int stream_event(anthropic_enc *e, const conv_event *ev) {
    int rc;
    if (ev->kind == CONV_EV_START) e->usage = ev->usage;
    if (ev->kind != CONV_EV_ERROR && (rc = stream_start(e))) return rc;
    switch (ev->kind) {
    case CONV_EV_START:
        return SH_OK;
    case CONV_EV_TEXT: {
        e->tmp.len = 0;
        if ((rc = conv_buf_append(&e->tmp, e->carry, e->n_carry)) || (rc = conv_buf_append(&e->tmp, ev->text, ev->len)))
            return rc;
        size_t whole = conv_utf8_whole(e->tmp.p, e->tmp.len);
        e->n_carry = e->tmp.len - whole;
        memcpy(e->carry, e->tmp.p + whole, e->n_carry);
        return text_delta(e, e->tmp.p, whole);
    }
    case CONV_EV_TOOL_START:
        if (ev->index < 0 || ev->index >= CONV_MAX_TOOL_CALLS)
            return sh_error_set(SH_EINVAL, "anthropic: tool call index %d", ev->index);
        if (e->n_carry && (rc = text_delta(e, e->carry, e->n_carry))) return rc;
        e->n_carry = 0;
        if ((rc = block_start(e, ev->id ? ev->id : "", ev->name ? ev->name : ""))) return rc;
        e->tool_block[ev->index] = e->open;
        return SH_OK;
    case CONV_EV_TOOL_DELTA:
        if (ev->index < 0 || ev->index >= CONV_MAX_TOOL_CALLS || e->tool_block[ev->index] < 0)
            return sh_error_set(SH_EINVAL, "anthropic: delta of unknown tool call %d", ev->index);
        if (ev->len == 0) return SH_OK;
        return delta(e, e->tool_block[ev->index], "input_json_delta", "partial_json", ev->text, ev->len);
    case CONV_EV_TOOL_END:
        if (ev->index >= 0 && ev->index < CONV_MAX_TOOL_CALLS && e->tool_block[ev->index] == e->open && e->open >= 0)
            return block_stop(e);
        return SH_OK;
    case CONV_EV_STOP:
        if (e->n_carry && (rc = text_delta(e, e->carry, e->n_carry))) return rc;
        e->n_carry = 0;
        e->done = 1;
        if ((rc = block_stop(e)) || (rc = frame_begin(e, "message_delta")) ||
            (rc = conv_buf_printf(&e->out, "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"%s\",\"stop_sequence\":",
                                  stop_reason(ev->reason))))
            return rc;
        rc = ev->reason == CONV_STOP_SEQUENCE && ev->stop_sequence
                 ? conv_buf_json_str(&e->out, ev->stop_sequence, strlen(ev->stop_sequence))
                 : conv_buf_puts(&e->out, "null");
        if (rc || (rc = conv_buf_printf(&e->out, "},\"usage\":{\"output_tokens\":%lld}}", (long long)ev->usage.completion_tokens)) ||
            (rc = frame_end(e)) || (rc = frame_begin(e, "message_stop")) ||
            (rc = conv_buf_puts(&e->out, "{\"type\":\"message_stop\"}")))
            return rc;
        return frame_end(e);
    case CONV_EV_ERROR:
        return stream_error(e, ev->error_kind, ev->text ? ev->text : "", ev->text ? ev->len : 0);
    }
    return SH_OK;
}

int anthropic_enc_event(void *enc, const conv_event *ev) {
    anthropic_enc *e = enc;
    if (e->done) return SH_OK;
    if (!e->o.stream) {
        int rc = conv_accum_event(&e->acc, ev);
        if (ev->kind == CONV_EV_STOP || ev->kind == CONV_EV_ERROR) e->done = 1;
        return rc;
    }
    e->out.len = 0;
    int rc = stream_event(e, ev);
    if (!rc && e->out.len && e->write(e->user, e->out.p, e->out.len)) rc = sh_error_set(SH_EIO, "anthropic: write failed");
    return rc;
}

int anthropic_enc_status(const anthropic_enc *e) {
    if (e->o.stream) return 200;
    if (e->acc.failed) return anthropic_error_status(e->acc.error_kind);
    return e->acc.stopped ? 200 : 500;
}

/* A tool call's arguments as an input object: {} when they are not a JSON object. */
static int input_json(conv_buf *b, const conv_buf *args) {
    json_t *j = args->len ? json_loadb(args->p, args->len, 0, NULL) : NULL;
    char *s = json_is_object(j) ? json_dumps(j, CONV_JSON_FLAGS) : NULL;
    json_decref(j);
    int rc = conv_buf_puts(b, s ? s : "{}");
    free(s);
    return rc;
}

static int body_json(anthropic_enc *e) {
    conv_accum *a = &e->acc;
    conv_buf *b = &e->out;
    int rc;
    if (a->failed || !a->stopped) {
        const char *msg = a->failed ? (a->error_text.p ? a->error_text.p : "") : "the answer ended unexpectedly";
        return error_body(b, a->failed ? a->error_kind : CONV_ERR_INTERNAL, msg, strlen(msg));
    }
    if ((rc = message_head(e, b)) || (rc = conv_buf_puts(b, "["))) return rc;
    int k = 0;
    for (int i = 0; i < a->n_blocks; i++) {
        conv_accum_block *x = &a->blocks[i];
        if (x->kind == CONV_TEXT && x->text.len == 0) continue;
        if (k++ && (rc = conv_buf_puts(b, ","))) return rc;
        if (x->kind == CONV_TEXT) {
            if ((rc = conv_buf_puts(b, "{\"type\":\"text\",\"text\":")) || (rc = conv_buf_json_str(b, x->text.p, x->text.len)) ||
                (rc = conv_buf_puts(b, "}")))
                return rc;
        } else if ((rc = conv_buf_puts(b, "{\"type\":\"tool_use\",\"id\":")) || (rc = conv_buf_json_str(b, x->id, strlen(x->id))) ||
                   (rc = conv_buf_puts(b, ",\"name\":")) || (rc = conv_buf_json_str(b, x->name, strlen(x->name))) ||
                   (rc = conv_buf_puts(b, ",\"input\":")) || (rc = input_json(b, &x->text)) || (rc = conv_buf_puts(b, "}"))) {
            return rc;
        }
    }
    if ((rc = conv_buf_puts(b, "]"))) return rc;
    return message_tail(e, b, stop_reason(a->reason), a->reason == CONV_STOP_SEQUENCE ? a->stop_sequence : NULL, &a->usage);
}

int anthropic_enc_finish(anthropic_enc *e) {
    int rc;
    e->out.len = 0;
    if (e->o.stream) {
        if (e->done) return SH_OK;
        rc = stream_error(e, CONV_ERR_INTERNAL, "the answer ended unexpectedly", 29);
    } else {
        rc = body_json(e);
        e->done = 1;
    }
    if (!rc && e->write(e->user, e->out.p, e->out.len)) rc = sh_error_set(SH_EIO, "anthropic: write failed");
    return rc;
}

/* ======================================================================================
 * client side: request encoding
 * ==================================================================================== */

static json_t *wire_block(const conv_block *b) {
    switch (b->kind) {
    case CONV_TEXT:
        return json_pack("{s:s,s:s}", "type", "text", "text", b->text ? b->text : "");
    case CONV_TOOL_USE: {
        json_t *in = b->input_json ? json_loads(b->input_json, 0, NULL) : NULL;
        if (!json_is_object(in)) {
            json_decref(in);
            in = json_object(); /* the API requires an object (see conv.h on raw arguments) */
        }
        return json_pack("{s:s,s:s,s:s,s:o}", "type", "tool_use", "id", b->id ? b->id : "", "name",
                         b->name ? b->name : "", "input", in);
    }
    case CONV_TOOL_RESULT: {
        json_t *o = json_pack("{s:s,s:s,s:s}", "type", "tool_result", "tool_use_id", b->id ? b->id : "", "content",
                              b->text ? b->text : "");
        if (b->is_error) json_object_set_new(o, "is_error", json_true());
        return o;
    }
    }
    return json_null();
}

/* Consecutive conv messages with the same wire role form one turn (tool results are user). */
static json_t *encode_messages(const conv_request *r, conv_buf *system) {
    json_t *msgs = json_array(), *turn = NULL, *content = NULL;
    const char *turn_role = NULL;
    for (int i = 0; i < r->n_messages; i++) {
        const conv_message *m = &r->messages[i];
        if (m->role == CONV_SYSTEM) {
            for (int j = 0; j < m->n_blocks; j++)
                if (m->blocks[j].kind == CONV_TEXT && m->blocks[j].text) {
                    if (system->len) conv_buf_puts(system, "\n\n");
                    conv_buf_puts(system, m->blocks[j].text);
                }
            continue;
        }
        const char *role = m->role == CONV_ASSISTANT ? "assistant" : "user";
        if (!turn_role || strcmp(turn_role, role) != 0) {
            content = json_array();
            turn = json_pack("{s:s,s:o}", "role", role, "content", content);
            json_array_append_new(msgs, turn);
            turn_role = role;
        }
        for (int j = 0; j < m->n_blocks; j++) json_array_append_new(content, wire_block(&m->blocks[j]));
    }
    /* a turn of one text block is sent as a plain string */
    for (size_t i = 0; i < json_array_size(msgs); i++) {
        json_t *t = json_array_get(msgs, i), *c = json_object_get(t, "content");
        json_t *b0 = json_array_get(c, 0);
        if (json_array_size(c) == 1 && strcmp(json_string_value(json_object_get(b0, "type")), "text") == 0)
            json_object_set(t, "content", json_object_get(b0, "text"));
    }
    return msgs;
}

char *anthropic_encode_request_ex(const conv_request *r, const char *model, int stream, unsigned flags) {
    json_t *o = json_object();
    conv_buf system;
    conv_buf_init(&system, CONV_MAX_BODY);
    char *out = NULL;
    if (!o) return NULL;
    if (!model) model = r->model;
    if (model) json_object_set_new(o, "model", json_string(model));
    json_object_set_new(o, "max_tokens", json_integer(r->max_tokens > 0 ? r->max_tokens : ANTHROPIC_DEFAULT_MAX_TOKENS));
    if (r->system) conv_buf_puts(&system, r->system);
    json_t *msgs = encode_messages(r, &system);
    if (r->system || system.len) json_object_set_new(o, "system", json_string(system.p ? system.p : ""));
    json_object_set_new(o, "messages", msgs);
    if (r->n_tools) {
        json_t *tools = json_array();
        for (int i = 0; i < r->n_tools; i++) {
            const conv_tool *t = &r->tools[i];
            json_t *jt = json_pack("{s:s}", "name", t->name ? t->name : "");
            if (t->description) json_object_set_new(jt, "description", json_string(t->description));
            json_t *schema = t->schema_json ? json_loads(t->schema_json, 0, NULL) : NULL;
            json_object_set_new(jt, "input_schema", schema ? schema : json_pack("{s:s}", "type", "object"));
            json_array_append_new(tools, jt);
        }
        json_object_set_new(o, "tools", tools);
    }
    switch (r->tool_choice) {
    case CONV_TOOLS_AUTO: break;
    case CONV_TOOLS_NONE: json_object_set_new(o, "tool_choice", json_pack("{s:s}", "type", "none")); break;
    case CONV_TOOLS_ANY: json_object_set_new(o, "tool_choice", json_pack("{s:s}", "type", "any")); break;
    case CONV_TOOLS_NAMED:
        json_object_set_new(o, "tool_choice", json_pack("{s:s,s:s}", "type", "tool", "name",
                                                        r->tool_choice_name ? r->tool_choice_name : ""));
        break;
    }
    if (r->n_stop) {
        json_t *stop = json_array();
        for (int i = 0; i < r->n_stop; i++) json_array_append_new(stop, json_string(r->stop[i]));
        json_object_set_new(o, "stop_sequences", stop);
    }
    if (!isnan(r->temperature))
        json_object_set_new(o, "temperature", json_real(r->temperature > 1 ? 1 : r->temperature < 0 ? 0 : r->temperature));
    if (!isnan(r->top_p)) json_object_set_new(o, "top_p", json_real(r->top_p));
    if (r->top_k >= 0) json_object_set_new(o, "top_k", json_integer(r->top_k));
    if (r->user) json_object_set_new(o, "metadata", json_pack("{s:s}", "user_id", r->user));
    if (stream) json_object_set_new(o, "stream", json_true());
    if (flags & ANTHROPIC_REQ_EXTENSIONS) {
        if (r->session_id) json_object_set_new(o, "session_id", json_string(r->session_id));
        if (r->local_only) json_object_set_new(o, "local_only", json_true());
    }
    out = json_dumps(o, CONV_JSON_FLAGS);
    json_decref(o);
    conv_buf_free(&system);
    return out;
}

char *anthropic_encode_request(const conv_request *r, const char *model, int stream) {
    return anthropic_encode_request_ex(r, model, stream, 0);
}

/* ======================================================================================
 * client side: answer decoding
 * ==================================================================================== */

struct anthropic_dec {
    int stream;
    sse_reader sse;
    conv_buf body;
    conv_event_fn fn;
    void *user;
    int started, finished;
    conv_stop_reason reason;
    char stop_seq[256];
    int have_seq;
    conv_usage usage;
    int n_tools;
    short block_tool[MAX_BLOCKS]; /* tool index of each content block; -1 text/other */
};

anthropic_dec *anthropic_dec_new(int stream) {
    anthropic_dec *d = calloc(1, sizeof *d);
    if (!d) return NULL;
    d->stream = stream;
    sse_reader_init(&d->sse, 0, 0, NULL, NULL);
    conv_buf_init(&d->body, CONV_MAX_OUTPUT);
    for (int i = 0; i < MAX_BLOCKS; i++) d->block_tool[i] = -1;
    return d;
}

void anthropic_dec_free(anthropic_dec *d) {
    if (!d) return;
    sse_reader_free(&d->sse);
    conv_buf_free(&d->body);
    free(d);
}

static int emit(anthropic_dec *d, conv_event *ev) { return d->fn(d->user, ev); }

static void read_usage(anthropic_dec *d, json_t *u) {
    if (!json_is_object(u)) return;
    json_t *in = json_object_get(u, "input_tokens"), *out = json_object_get(u, "output_tokens");
    json_t *cr = json_object_get(u, "cache_read_input_tokens"), *cc = json_object_get(u, "cache_creation_input_tokens");
    if (json_is_integer(in)) {
        /* Anthropic counts cache reads and writes apart from input_tokens */
        d->usage.prompt_tokens = json_integer_value(in) + (json_is_integer(cr) ? json_integer_value(cr) : 0) +
                                 (json_is_integer(cc) ? json_integer_value(cc) : 0);
        d->usage.cached_tokens = json_is_integer(cr) ? json_integer_value(cr) : 0;
    }
    if (json_is_integer(out)) d->usage.completion_tokens = json_integer_value(out);
}

static void read_stop(anthropic_dec *d, json_t *o) {
    json_t *r = json_object_get(o, "stop_reason"), *s = json_object_get(o, "stop_sequence");
    if (json_is_string(r)) {
        const char *v = json_string_value(r);
        d->reason = strcmp(v, "max_tokens") == 0      ? CONV_STOP_LENGTH
                    : strcmp(v, "stop_sequence") == 0 ? CONV_STOP_SEQUENCE
                    : strcmp(v, "tool_use") == 0      ? CONV_STOP_TOOL_USE
                                                      : CONV_STOP_END;
    }
    if (json_is_string(s)) {
        snprintf(d->stop_seq, sizeof d->stop_seq, "%s", json_string_value(s));
        d->have_seq = 1;
    }
}

static int emit_start(anthropic_dec *d) {
    if (d->started) return 0;
    d->started = 1;
    conv_event ev = {.kind = CONV_EV_START, .usage = d->usage};
    return emit(d, &ev);
}

static int emit_stop(anthropic_dec *d) {
    int rc = emit_start(d);
    if (rc) return rc;
    d->finished = 1;
    conv_event ev = {.kind = CONV_EV_STOP, .reason = d->reason, .usage = d->usage,
                     .stop_sequence = d->have_seq ? d->stop_seq : NULL};
    return emit(d, &ev);
}

static int emit_error(anthropic_dec *d, json_t *err) {
    json_t *msg = json_object_get(err, "message"), *type = json_object_get(err, "type");
    const char *m = json_is_string(msg) ? json_string_value(msg) : "unknown error";
    conv_event ev = {.kind = CONV_EV_ERROR, .text = m, .len = strlen(m),
                     .error_kind = error_kind_of(json_is_string(type) ? json_string_value(type) : NULL)};
    d->finished = 1;
    return emit(d, &ev);
}

static int emit_str(anthropic_dec *d, conv_event_kind kind, int index, json_t *s) {
    if (!json_is_string(s) || json_string_length(s) == 0) return 0;
    conv_event ev = {.kind = kind, .index = index, .text = json_string_value(s), .len = json_string_length(s)};
    return emit(d, &ev);
}

static int block_index(json_t *j) {
    json_t *i = json_object_get(j, "index");
    return json_is_integer(i) && json_integer_value(i) >= 0 && json_integer_value(i) < MAX_BLOCKS ? (int)json_integer_value(i) : -1;
}

static int dec_event(anthropic_dec *d, json_t *j) {
    const char *type = block_type(j);
    int rc, bi;
    if (!type) return sh_error_set(SH_EFORMAT, "anthropic: event without a type");
    if (strcmp(type, "message_start") == 0) {
        read_usage(d, json_object_get(json_object_get(j, "message"), "usage"));
        return emit_start(d);
    }
    if (strcmp(type, "content_block_start") == 0) {
        json_t *cb = json_object_get(j, "content_block");
        const char *bt = block_type(cb);
        if ((bi = block_index(j)) < 0) return sh_error_set(SH_EFORMAT, "anthropic: bad content block index");
        if ((rc = emit_start(d))) return rc;
        if (bt && strcmp(bt, "text") == 0) return emit_str(d, CONV_EV_TEXT, 0, json_object_get(cb, "text"));
        if (bt && strcmp(bt, "tool_use") == 0) {
            if (d->n_tools >= CONV_MAX_TOOL_CALLS) return sh_error_set(SH_EFORMAT, "anthropic: too many tool calls");
            json_t *id = json_object_get(cb, "id"), *name = json_object_get(cb, "name");
            d->block_tool[bi] = (short)d->n_tools++;
            conv_event ev = {.kind = CONV_EV_TOOL_START, .index = d->block_tool[bi],
                             .id = json_is_string(id) ? json_string_value(id) : "",
                             .name = json_is_string(name) ? json_string_value(name) : ""};
            return emit(d, &ev);
        }
        return 0; /* thinking and other blocks: not part of the answer */
    }
    if (strcmp(type, "content_block_delta") == 0) {
        json_t *dl = json_object_get(j, "delta");
        const char *dt = block_type(dl);
        if ((bi = block_index(j)) < 0) return sh_error_set(SH_EFORMAT, "anthropic: bad content block index");
        if (dt && strcmp(dt, "text_delta") == 0) return emit_str(d, CONV_EV_TEXT, 0, json_object_get(dl, "text"));
        if (dt && strcmp(dt, "input_json_delta") == 0 && d->block_tool[bi] >= 0)
            return emit_str(d, CONV_EV_TOOL_DELTA, d->block_tool[bi], json_object_get(dl, "partial_json"));
        return 0;
    }
    if (strcmp(type, "content_block_stop") == 0) {
        if ((bi = block_index(j)) < 0 || d->block_tool[bi] < 0) return 0;
        conv_event ev = {.kind = CONV_EV_TOOL_END, .index = d->block_tool[bi]};
        return emit(d, &ev);
    }
    if (strcmp(type, "message_delta") == 0) {
        read_stop(d, json_object_get(j, "delta"));
        json_t *u = json_object_get(j, "usage");
        json_t *out = json_object_get(u, "output_tokens");
        if (json_is_integer(out)) d->usage.completion_tokens = json_integer_value(out);
        return 0;
    }
    if (strcmp(type, "message_stop") == 0) return emit_stop(d);
    if (strcmp(type, "error") == 0) {
        json_t *err = json_object_get(j, "error");
        return emit_error(d, json_is_object(err) ? err : j);
    }
    return 0; /* ping and future event types */
}

static int on_sse(void *user, const char *event, const char *data, size_t len) {
    anthropic_dec *d = user;
    (void)event; /* the payload's "type" names the event too */
    if (d->finished) return 0;
    json_error_t je;
    json_t *j = json_loadb(data, len, 0, &je);
    if (!json_is_object(j)) {
        json_decref(j);
        return sh_error_set(SH_EFORMAT, "anthropic: bad stream event: %s", j ? "not an object" : je.text);
    }
    int rc = dec_event(d, j);
    json_decref(j);
    return rc;
}

int anthropic_dec_feed(anthropic_dec *d, const char *p, size_t n, conv_event_fn fn, void *user) {
    d->fn = fn;
    d->user = user;
    if (!d->stream) return conv_buf_append(&d->body, p, n);
    d->sse.fn = on_sse;
    d->sse.user = d;
    return sse_reader_feed(&d->sse, p, n);
}

static int whole_body(anthropic_dec *d) {
    json_error_t je;
    json_t *j = json_loadb(d->body.p ? d->body.p : "", d->body.len, 0, &je);
    int rc = 0;
    if (!json_is_object(j)) {
        json_decref(j);
        return sh_error_set(SH_EFORMAT, "anthropic: bad response body: %s", j ? "not an object" : je.text);
    }
    const char *type = block_type(j);
    if (type && strcmp(type, "error") == 0) {
        json_t *err = json_object_get(j, "error");
        rc = emit_error(d, json_is_object(err) ? err : j);
        goto out;
    }
    read_usage(d, json_object_get(j, "usage"));
    if ((rc = emit_start(d))) goto out;
    json_t *content = json_object_get(j, "content");
    for (size_t i = 0; i < json_array_size(content); i++) {
        json_t *b = json_array_get(content, i);
        const char *bt = block_type(b);
        if (bt && strcmp(bt, "text") == 0) {
            if ((rc = emit_str(d, CONV_EV_TEXT, 0, json_object_get(b, "text")))) goto out;
        } else if (bt && strcmp(bt, "tool_use") == 0) {
            if (d->n_tools >= CONV_MAX_TOOL_CALLS) {
                rc = sh_error_set(SH_EFORMAT, "anthropic: too many tool calls");
                goto out;
            }
            json_t *id = json_object_get(b, "id"), *name = json_object_get(b, "name");
            int index = d->n_tools++;
            conv_event ev = {.kind = CONV_EV_TOOL_START, .index = index,
                             .id = json_is_string(id) ? json_string_value(id) : "",
                             .name = json_is_string(name) ? json_string_value(name) : ""};
            if ((rc = emit(d, &ev))) goto out;
            char *args = json_dumps(json_object_get(b, "input"), CONV_JSON_FLAGS);
            conv_event dv = {.kind = CONV_EV_TOOL_DELTA, .index = index, .text = args ? args : "{}"};
            dv.len = strlen(dv.text);
            rc = emit(d, &dv);
            free(args);
            if (rc) goto out;
            conv_event ee = {.kind = CONV_EV_TOOL_END, .index = index};
            if ((rc = emit(d, &ee))) goto out;
        }
    }
    read_stop(d, j);
    rc = emit_stop(d);
out:
    json_decref(j);
    return rc;
}

int anthropic_dec_finish(anthropic_dec *d, conv_event_fn fn, void *user) {
    d->fn = fn;
    d->user = user;
    if (!d->stream) return d->finished ? 0 : whole_body(d);
    d->sse.fn = on_sse;
    d->sse.user = d;
    int rc = sse_reader_finish(&d->sse);
    if (rc || d->finished) return rc;
    conv_event ev = {.kind = CONV_EV_ERROR, .text = "the stream ended before the answer was complete",
                     .error_kind = CONV_ERR_UPSTREAM};
    ev.len = strlen(ev.text);
    d->finished = 1;
    return emit(d, &ev);
}
