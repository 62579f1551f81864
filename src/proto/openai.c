/* openai.c - the OpenAI chat/completions dialect: request codec and answer codec. */
#include "proto/openai.h"

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

/* A content part that is not text: the message says what is unsupported. */
static int part_unsupported(conv_dec *d, const char *param, const char *type) {
    if (strcmp(type, "image_url") == 0 || strcmp(type, "input_image") == 0 || strcmp(type, "image") == 0)
        return bad(d, param, "images are not supported");
    if (strcmp(type, "input_audio") == 0) return bad(d, param, "audio is not supported");
    if (strcmp(type, "file") == 0) return bad(d, param, "files are not supported");
    return proto_error_set(d->err, CONV_ERR_INVALID, param, "unsupported content part type '%s'", type);
}

/* The text of content part j (type "text", or "refusal" in assistant messages). */
static int part_text(conv_dec *d, json_t *part, const char *param, json_t **text) {
    if (!json_is_object(part)) return bad(d, param, "a content part must be an object");
    json_t *type = json_object_get(part, "type");
    if (!json_is_string(type)) return bad(d, param, "a content part needs a string 'type'");
    const char *t = json_string_value(type);
    const char *key = strcmp(t, "text") == 0 ? "text" : strcmp(t, "refusal") == 0 ? "refusal" : NULL;
    if (!key) return part_unsupported(d, param, t);
    *text = json_object_get(part, key);
    if (!json_is_string(*text))
        return proto_error_set(d->err, CONV_ERR_INVALID, param, "a '%s' part needs a string '%s'", t, key);
    return SH_OK;
}

/* Text of a system or tool message: a string, or text parts joined by sep. */
static int flat_text(conv_dec *d, json_t *content, const char *param, const char *sep, const char **out) {
    if (json_is_string(content)) return (*out = conv_dec_str(d, content)) ? SH_OK : SH_ERANGE;
    if (!json_is_array(content)) return bad(d, param, "'content' must be a string or an array of content parts");
    size_t n = json_array_size(content), total = 0, seplen = strlen(sep);
    char pp[128];
    for (size_t j = 0; j < n; j++) {
        json_t *t;
        snprintf(pp, sizeof pp, "%s[%zu]", param, j);
        int rc = part_text(d, json_array_get(content, j), pp, &t);
        if (rc) return rc;
        total += json_string_length(t) + seplen;
    }
    char *s = conv_alloc(d->r->arena, total + 1), *w = s;
    if (!s) return proto_error_set(d->err, CONV_ERR_TOO_LARGE, NULL, "request too large to decode");
    for (size_t j = 0; j < n; j++) {
        json_t *t = json_object_get(json_array_get(content, j), "text");
        if (!t) t = json_object_get(json_array_get(content, j), "refusal");
        if (j) memcpy(w, sep, seplen), w += seplen;
        memcpy(w, json_string_value(t), json_string_length(t));
        w += json_string_length(t);
    }
    *w = 0;
    *out = s;
    return SH_OK;
}

/* Arguments of a tool call: compact JSON when valid, "" -> "{}", else the raw string. */
static const char *canonical_args(conv_dec *d, json_t *args) {
    if (!args || json_is_null(args) || (json_is_string(args) && json_string_length(args) == 0))
        return "{}"; /* static: never freed, like arena strings */
    if (!json_is_string(args)) return conv_dec_compact(d, args); /* some clients send an object */
    json_t *j = json_loadb(json_string_value(args), json_string_length(args), JSON_DECODE_ANY, NULL);
    const char *s = j ? conv_dec_compact(d, j) : conv_dec_str(d, args);
    json_decref(j);
    return s;
}

static int decode_tool_calls(conv_dec *d, json_t *calls, size_t i, conv_message *m) {
    char pp[64];
    for (size_t j = 0; j < json_array_size(calls); j++) {
        json_t *c = json_array_get(calls, j);
        snprintf(pp, sizeof pp, "messages[%zu].tool_calls[%zu]", i, j);
        if (!json_is_object(c)) return bad(d, pp, "a tool call must be an object");
        json_t *type = json_object_get(c, "type"), *id = json_object_get(c, "id");
        json_t *fn = json_object_get(c, "function");
        if (type && !json_is_null(type) && !(json_is_string(type) && strcmp(json_string_value(type), "function") == 0))
            return bad(d, pp, "only tool calls of type 'function' are supported");
        if (!json_is_string(id)) return bad(d, pp, "a tool call needs a string 'id'");
        if (!json_is_object(fn)) return bad(d, pp, "a tool call needs a 'function' object");
        json_t *name = json_object_get(fn, "name");
        if (!json_is_string(name) || json_string_length(name) == 0) return bad(d, pp, "a tool call needs a function 'name'");
        conv_block *b = &m->blocks[m->n_blocks];
        memset(b, 0, sizeof *b);
        b->kind = CONV_TOOL_USE;
        if (!(b->id = conv_dec_str(d, id)) || !(b->name = conv_dec_str(d, name)) ||
            !(b->input_json = canonical_args(d, json_object_get(fn, "arguments"))))
            return SH_ERANGE;
        m->n_blocks++;
    }
    return SH_OK;
}

/* Text blocks of a user/assistant message; skip_empty drops "" (assistant turns before tool calls). */
static int decode_text_blocks(conv_dec *d, json_t *content, size_t i, conv_message *m, int skip_empty) {
    char pp[64];
    snprintf(pp, sizeof pp, "messages[%zu].content", i);
    if (!content || json_is_null(content)) return SH_OK;
    if (json_is_string(content)) {
        if (skip_empty && json_string_length(content) == 0) return SH_OK;
        conv_block *b = &m->blocks[m->n_blocks];
        memset(b, 0, sizeof *b);
        b->kind = CONV_TEXT;
        if (!(b->text = conv_dec_str(d, content))) return SH_ERANGE;
        m->n_blocks++;
        return SH_OK;
    }
    if (!json_is_array(content)) return bad(d, pp, "'content' must be a string or an array of content parts");
    for (size_t j = 0; j < json_array_size(content); j++) {
        json_t *t;
        char pj[128];
        snprintf(pj, sizeof pj, "%s[%zu]", pp, j);
        int rc = part_text(d, json_array_get(content, j), pj, &t);
        if (rc) return rc;
        conv_block *b = &m->blocks[m->n_blocks];
        memset(b, 0, sizeof *b);
        b->kind = CONV_TEXT;
        if (!(b->text = conv_dec_str(d, t))) return SH_ERANGE;
        m->n_blocks++;
    }
    return SH_OK;
}

static int is_role(json_t *m, const char *role) {
    json_t *r = json_object_get(m, "role");
    return json_is_string(r) && strcmp(json_string_value(r), role) == 0;
}

static int decode_messages(conv_dec *d, json_t *msgs) {
    conv_request *r = d->r;
    if (!msgs || json_is_null(msgs)) return bad(d, "messages", "'messages' is required");
    if (!json_is_array(msgs)) return bad(d, "messages", "'messages' must be an array");
    size_t n = json_array_size(msgs);
    if (n == 0) return bad(d, "messages", "'messages' must not be empty");
    if (!(r->messages = conv_alloc(r->arena, n * sizeof *r->messages)))
        return proto_error_set(d->err, CONV_ERR_TOO_LARGE, NULL, "request too large to decode");
    char pp[64];
    for (size_t i = 0; i < n; i++) {
        json_t *m = json_array_get(msgs, i);
        snprintf(pp, sizeof pp, "messages[%zu]", i);
        if (!json_is_object(m)) return bad(d, pp, "a message must be an object");
        json_t *role = json_object_get(m, "role"), *content = json_object_get(m, "content");
        snprintf(pp, sizeof pp, "messages[%zu].role", i);
        if (!json_is_string(role)) return bad(d, pp, "a message needs a string 'role'");
        const char *ro = json_string_value(role);
        snprintf(pp, sizeof pp, "messages[%zu].content", i);
        int rc;
        if (strcmp(ro, "system") == 0 || strcmp(ro, "developer") == 0) {
            if (json_is_string(content)) {
                rc = conv_dec_add_system(d, json_string_value(content), json_string_length(content));
            } else if (json_is_array(content)) {
                for (size_t j = 0; j < json_array_size(content); j++) {
                    json_t *t;
                    char pj[128];
                    snprintf(pj, sizeof pj, "%s[%zu]", pp, j);
                    if ((rc = part_text(d, json_array_get(content, j), pj, &t))) return rc;
                    if ((rc = conv_dec_add_system(d, json_string_value(t), json_string_length(t)))) return rc;
                }
                rc = SH_OK;
            } else {
                rc = bad(d, pp, "'content' must be a string or an array of content parts");
            }
            if (rc) return rc;
            continue;
        }
        conv_message *cm = &r->messages[r->n_messages];
        if (strcmp(ro, "user") == 0 || strcmp(ro, "assistant") == 0) {
            int assistant = ro[0] == 'a';
            json_t *calls = assistant ? json_object_get(m, "tool_calls") : NULL;
            if (calls && json_is_null(calls)) calls = NULL;
            char pc[64];
            snprintf(pc, sizeof pc, "messages[%zu].tool_calls", i);
            if (calls && !json_is_array(calls)) return bad(d, pc, "'tool_calls' must be an array");
            if (!assistant && (!content || json_is_null(content))) return bad(d, pp, "a user message needs 'content'");
            size_t nb = (json_is_array(content) ? json_array_size(content) : 1) + (calls ? json_array_size(calls) : 0);
            cm->role = assistant ? CONV_ASSISTANT : CONV_USER;
            cm->n_blocks = 0;
            if (!(cm->blocks = conv_alloc(r->arena, (nb ? nb : 1) * sizeof *cm->blocks)))
                return proto_error_set(d->err, CONV_ERR_TOO_LARGE, NULL, "request too large to decode");
            if ((rc = decode_text_blocks(d, content, i, cm, assistant))) return rc;
            if (calls && (rc = decode_tool_calls(d, calls, i, cm))) return rc;
            r->n_messages++;
            continue;
        }
        if (strcmp(ro, "tool") == 0) {
            /* a run of tool messages is one CONV_TOOL message (see conv.h) */
            size_t run = 1;
            while (i + run < n && is_role(json_array_get(msgs, i + run), "tool")) run++;
            cm->role = CONV_TOOL;
            cm->n_blocks = 0;
            if (!(cm->blocks = conv_alloc(r->arena, run * sizeof *cm->blocks)))
                return proto_error_set(d->err, CONV_ERR_TOO_LARGE, NULL, "request too large to decode");
            for (size_t k = 0; k < run; k++) {
                json_t *t = json_array_get(msgs, i + k);
                json_t *id = json_object_get(t, "tool_call_id"), *c = json_object_get(t, "content");
                char pt[64];
                snprintf(pt, sizeof pt, "messages[%zu].tool_call_id", i + k);
                if (!json_is_string(id)) return bad(d, pt, "a tool message needs a string 'tool_call_id'");
                snprintf(pt, sizeof pt, "messages[%zu].content", i + k);
                conv_block *b = &cm->blocks[cm->n_blocks];
                memset(b, 0, sizeof *b);
                b->kind = CONV_TOOL_RESULT;
                if (!c || json_is_null(c)) b->text = "";
                else if ((rc = flat_text(d, c, pt, "\n", &b->text))) return rc;
                if (!(b->id = conv_dec_str(d, id))) return SH_ERANGE;
                cm->n_blocks++;
            }
            i += run - 1;
            r->n_messages++;
            continue;
        }
        snprintf(pp, sizeof pp, "messages[%zu].role", i);
        return proto_error_set(d->err, CONV_ERR_INVALID, pp, "unknown role '%s'", ro);
    }
    conv_request_link_tool_results(r);
    return SH_OK;
}

static int decode_tools(conv_dec *d, json_t *root) {
    conv_request *r = d->r;
    json_t *tools = json_object_get(root, "tools");
    char pp[64];
    if (tools && !json_is_null(tools)) {
        if (!json_is_array(tools)) return bad(d, "tools", "'tools' must be an array");
        size_t n = json_array_size(tools);
        if (n && !(r->tools = conv_alloc(r->arena, n * sizeof *r->tools)))
            return proto_error_set(d->err, CONV_ERR_TOO_LARGE, NULL, "request too large to decode");
        for (size_t i = 0; i < n; i++) {
            json_t *t = json_array_get(tools, i), *fn, *name, *desc, *params;
            snprintf(pp, sizeof pp, "tools[%zu]", i);
            if (!json_is_object(t)) return bad(d, pp, "a tool must be an object");
            json_t *type = json_object_get(t, "type");
            if (!json_is_string(type) || strcmp(json_string_value(type), "function") != 0)
                return bad(d, pp, "only tools of type 'function' are supported");
            fn = json_object_get(t, "function");
            if (!json_is_object(fn)) return bad(d, pp, "a tool needs a 'function' object");
            name = json_object_get(fn, "name");
            desc = json_object_get(fn, "description");
            params = json_object_get(fn, "parameters");
            if (!json_is_string(name) || json_string_length(name) == 0) return bad(d, pp, "a tool needs a function 'name'");
            if (desc && !json_is_null(desc) && !json_is_string(desc)) return bad(d, pp, "'description' must be a string");
            if (params && !json_is_null(params) && !json_is_object(params))
                return bad(d, pp, "'parameters' must be a JSON schema object");
            conv_tool *ct = &r->tools[r->n_tools];
            memset(ct, 0, sizeof *ct);
            if (!(ct->name = conv_dec_str(d, name))) return SH_ERANGE;
            if (json_is_string(desc) && !(ct->description = conv_dec_str(d, desc))) return SH_ERANGE;
            if (json_is_object(params) && !(ct->schema_json = conv_dec_compact(d, params))) return SH_ERANGE;
            r->n_tools++;
        }
    }
    json_t *tc = json_object_get(root, "tool_choice");
    if (!tc || json_is_null(tc)) return SH_OK;
    if (json_is_string(tc)) {
        const char *s = json_string_value(tc);
        if (strcmp(s, "auto") == 0) r->tool_choice = CONV_TOOLS_AUTO;
        else if (strcmp(s, "none") == 0) r->tool_choice = CONV_TOOLS_NONE;
        else if (strcmp(s, "required") == 0) r->tool_choice = CONV_TOOLS_ANY;
        else return bad(d, "tool_choice", "'tool_choice' must be \"auto\", \"none\", \"required\" or a function");
        if (r->tool_choice == CONV_TOOLS_ANY && r->n_tools == 0)
            return bad(d, "tool_choice", "'tool_choice' \"required\" needs 'tools'");
        return SH_OK;
    }
    json_t *fn = json_is_object(tc) ? json_object_get(tc, "function") : NULL;
    json_t *name = json_is_object(fn) ? json_object_get(fn, "name") : NULL;
    if (!json_is_string(name)) return bad(d, "tool_choice", "'tool_choice' must be \"auto\", \"none\", \"required\" or a function");
    for (int i = 0; i < r->n_tools; i++)
        if (strcmp(r->tools[i].name, json_string_value(name)) == 0) {
            r->tool_choice = CONV_TOOLS_NAMED;
            r->tool_choice_name = r->tools[i].name;
            return SH_OK;
        }
    return proto_error_set(d->err, CONV_ERR_INVALID, "tool_choice", "'tool_choice' names '%s', which is not in 'tools'",
                           json_string_value(name));
}

/* Parameters shared by both endpoints. */
static int decode_common(conv_dec *d, json_t *root) {
    conv_request *r = d->r;
    int rc;
    int64_t n = 1, mct = -1;
    if ((rc = conv_dec_get_str(d, root, "model", &r->model)) || (rc = conv_dec_get_str(d, root, "user", &r->user)) ||
        (rc = conv_dec_get_num(d, root, "temperature", 0, 2, &r->temperature)) ||
        (rc = conv_dec_get_num(d, root, "top_p", 0, 1, &r->top_p)) ||
        (rc = conv_dec_get_num(d, root, "min_p", 0, 1, &r->min_p)) ||
        (rc = conv_dec_get_num(d, root, "presence_penalty", -2, 2, &r->presence_penalty)) ||
        (rc = conv_dec_get_num(d, root, "frequency_penalty", -2, 2, &r->frequency_penalty)) ||
        (rc = conv_dec_get_num(d, root, "repeat_penalty", 0, 10, &r->repeat_penalty)) ||
        (rc = conv_dec_get_int(d, root, "top_k", 0, INT32_MAX, &r->top_k)) ||
        (rc = conv_dec_get_int(d, root, "seed", -1, INT64_MAX, &r->seed)) ||
        (rc = conv_dec_get_int(d, root, "max_tokens", 1, INT32_MAX, &r->max_tokens)) ||
        (rc = conv_dec_get_int(d, root, "max_completion_tokens", 1, INT32_MAX, &mct)) ||
        (rc = conv_dec_get_stop(d, root, "stop")) || (rc = conv_dec_get_bool(d, root, "stream", &r->stream)) ||
        (rc = conv_dec_get_str(d, root, "session_id", &r->session_id)) ||
        (rc = conv_dec_get_bool(d, root, "local_only", &r->local_only)))
        return rc;
    if (mct > 0) r->max_tokens = mct;
    json_t *nv = json_object_get(root, "n");
    if (nv && !json_is_null(nv) && (!json_is_integer(nv) || (n = json_integer_value(nv)) != 1))
        return bad(d, "n", "only n=1 is supported");
    json_t *so = json_object_get(root, "stream_options");
    if (so && !json_is_null(so)) {
        if (!json_is_object(so)) return bad(d, "stream_options", "'stream_options' must be an object");
        if ((rc = conv_dec_get_bool(d, so, "include_usage", &r->include_usage))) {
            snprintf(d->err->param, sizeof d->err->param, "stream_options.include_usage");
            return rc;
        }
    }
    return SH_OK;
}

/* Common entry: parse, init the request with an arena bounded by the body size. */
static int decode_begin(const char *body, size_t len, conv_request *req, proto_error *err, json_t **root) {
    conv_request_zero(req);
    memset(err, 0, sizeof *err);
    int rc = conv_json_load(body, len, root, err);
    if (rc) return rc;
    if ((rc = conv_request_init(req, 4 * len + 65536))) {
        json_decref(*root);
        *root = NULL;
        return proto_error_set(err, CONV_ERR_INTERNAL, NULL, "out of memory");
    }
    return SH_OK;
}

int openai_decode_chat(const char *body, size_t len, conv_request *req, proto_error *err) {
    json_t *root = NULL;
    int rc = decode_begin(body, len, req, err, &root);
    if (rc) return rc;
    conv_dec d = {req, err};
    req->api = CONV_API_CHAT;
    if ((rc = decode_common(&d, root)) || (rc = decode_tools(&d, root)) ||
        (rc = decode_messages(&d, json_object_get(root, "messages"))))
        goto out;
    json_t *lp = json_object_get(root, "logprobs");
    if (json_is_true(lp)) {
        rc = bad(&d, "logprobs", "logprobs are not supported");
        goto out;
    }
    json_t *rf = json_object_get(root, "response_format");
    if (rf && !json_is_null(rf)) {
        json_t *t = json_is_object(rf) ? json_object_get(rf, "type") : NULL;
        const char *ts = json_is_string(t) ? json_string_value(t) : "";
        if (strcmp(ts, "json_object") == 0) req->json_mode = 1;
        else if (strcmp(ts, "json_schema") == 0)
            rc = bad(&d, "response_format", "response_format 'json_schema' is not supported; use 'json_object'");
        else if (strcmp(ts, "text") != 0)
            rc = bad(&d, "response_format", "'response_format.type' must be \"text\" or \"json_object\"");
    }
out:
    json_decref(root);
    if (rc) conv_request_free(req);
    return rc;
}

int openai_decode_completion(const char *body, size_t len, conv_request *req, proto_error *err) {
    json_t *root = NULL;
    int rc = decode_begin(body, len, req, err, &root);
    if (rc) return rc;
    conv_dec d = {req, err};
    req->api = CONV_API_COMPLETION;
    if ((rc = decode_common(&d, root))) goto out;
    json_t *p = json_object_get(root, "prompt");
    if (json_is_array(p)) {
        if (json_array_size(p) != 1) {
            rc = bad(&d, "prompt", "'prompt' must be one string (batches are not supported)");
            goto out;
        }
        p = json_array_get(p, 0);
        if (!json_is_string(p)) {
            rc = bad(&d, "prompt", "token-id prompts are not supported; send a string");
            goto out;
        }
    }
    if (!p || json_is_null(p)) {
        rc = bad(&d, "prompt", "'prompt' is required");
        goto out;
    }
    if (!json_is_string(p)) {
        rc = bad(&d, "prompt", "'prompt' must be a string");
        goto out;
    }
    if (!(req->prompt = conv_dec_str(&d, p))) {
        rc = SH_ERANGE;
        goto out;
    }
    if ((rc = conv_dec_get_str(&d, root, "suffix", &req->suffix))) goto out;
    if (json_is_true(json_object_get(root, "echo"))) {
        rc = bad(&d, "echo", "'echo' is not supported");
        goto out;
    }
    json_t *lp = json_object_get(root, "logprobs"), *bo = json_object_get(root, "best_of");
    if (lp && !json_is_null(lp)) rc = bad(&d, "logprobs", "logprobs are not supported");
    else if (bo && !json_is_null(bo) && !(json_is_integer(bo) && json_integer_value(bo) == 1))
        rc = bad(&d, "best_of", "only best_of=1 is supported");
out:
    json_decref(root);
    if (rc) conv_request_free(req);
    return rc;
}

/* ======================================================================================
 * errors
 * ==================================================================================== */

int openai_error_status(conv_error_kind k) { return k == CONV_ERR_OVERLOADED ? 503 : conv_error_status(k); }

static const char *error_type(conv_error_kind k) {
    switch (k) {
    case CONV_ERR_INVALID: case CONV_ERR_TOO_LARGE: return "invalid_request_error";
    case CONV_ERR_AUTH: return "authentication_error";
    case CONV_ERR_NOT_FOUND: return "not_found_error";
    case CONV_ERR_RATE: return "rate_limit_error";
    default: return "server_error";
    }
}

static conv_error_kind error_kind_of(const char *type) {
    if (!type) return CONV_ERR_UPSTREAM;
    if (strcmp(type, "invalid_request_error") == 0) return CONV_ERR_INVALID;
    if (strcmp(type, "authentication_error") == 0) return CONV_ERR_AUTH;
    if (strcmp(type, "not_found_error") == 0) return CONV_ERR_NOT_FOUND;
    if (strcmp(type, "rate_limit_error") == 0 || strcmp(type, "insufficient_quota") == 0) return CONV_ERR_RATE;
    if (strcmp(type, "server_error") == 0) return CONV_ERR_INTERNAL;
    return CONV_ERR_UPSTREAM;
}

/* {"message":..,"type":..,"param":..,"code":null} */
static int error_obj(conv_buf *b, conv_error_kind k, const char *msg, size_t len, const char *param) {
    int rc;
    if ((rc = conv_buf_puts(b, "{\"message\":")) || (rc = conv_buf_json_str(b, msg, len)) ||
        (rc = conv_buf_puts(b, ",\"type\":")) || (rc = conv_buf_json_str(b, error_type(k), strlen(error_type(k)))) ||
        (rc = conv_buf_puts(b, ",\"param\":")))
        return rc;
    rc = param && *param ? conv_buf_json_str(b, param, strlen(param)) : conv_buf_puts(b, "null");
    return rc ? rc : conv_buf_puts(b, ",\"code\":null}");
}

char *openai_error_json(const proto_error *e) {
    conv_buf b;
    conv_buf_init(&b, 4096);
    if (conv_buf_puts(&b, "{\"error\":") || error_obj(&b, e->kind, e->message, strlen(e->message), e->param) ||
        conv_buf_puts(&b, "}")) {
        conv_buf_free(&b);
        return NULL;
    }
    return b.p;
}

/* ======================================================================================
 * server side: answer encoding
 * ==================================================================================== */

struct openai_enc {
    openai_enc_opts o;
    conv_write_fn write;
    void *user;
    conv_buf prefix; /* {"id":..,"object":..,"created":..,"model":.. (no closing brace) */
    conv_buf out;    /* the bytes of the current event */
    conv_buf tmp;    /* held-back UTF-8 + new text */
    char carry[4];   /* the start of a character split across TEXT events */
    size_t n_carry;
    conv_accum acc;  /* non-streaming */
    int started, done, failed;
    conv_usage usage;
};

static const char *finish_reason(conv_stop_reason r) {
    switch (r) {
    case CONV_STOP_LENGTH: return "length";
    case CONV_STOP_TOOL_USE: return "tool_calls";
    default: return "stop";
    }
}

openai_enc *openai_enc_new(const openai_enc_opts *o, conv_write_fn write, void *user) {
    openai_enc *e = calloc(1, sizeof *e);
    if (!e) return NULL;
    e->o = *o;
    e->write = write;
    e->user = user;
    conv_buf_init(&e->prefix, 4096);
    conv_buf_init(&e->out, CONV_MAX_OUTPUT + 65536);
    conv_buf_init(&e->tmp, CONV_MAX_OUTPUT);
    conv_accum_init(&e->acc);
    const char *object = o->api == CONV_API_COMPLETION ? "text_completion"
                         : o->stream                   ? "chat.completion.chunk"
                                                       : "chat.completion";
    const char *id = o->id ? o->id : "", *model = o->model ? o->model : "";
    if (conv_buf_puts(&e->prefix, "{\"id\":") || conv_buf_json_str(&e->prefix, id, strlen(id)) ||
        conv_buf_printf(&e->prefix, ",\"object\":\"%s\",\"created\":%lld,\"model\":", object, (long long)o->created) ||
        conv_buf_json_str(&e->prefix, model, strlen(model))) {
        openai_enc_free(e);
        return NULL;
    }
    return e;
}

void openai_enc_free(openai_enc *e) {
    if (!e) return;
    conv_buf_free(&e->prefix);
    conv_buf_free(&e->out);
    conv_buf_free(&e->tmp);
    conv_accum_free(&e->acc);
    free(e);
}

static int usage_json(conv_buf *b, const conv_usage *u) {
    int rc = conv_buf_printf(b, "{\"prompt_tokens\":%lld,\"completion_tokens\":%lld,\"total_tokens\":%lld",
                             (long long)u->prompt_tokens, (long long)u->completion_tokens,
                             (long long)(u->prompt_tokens + u->completion_tokens));
    if (!rc && u->cached_tokens > 0)
        rc = conv_buf_printf(b, ",\"prompt_tokens_details\":{\"cached_tokens\":%lld}", (long long)u->cached_tokens);
    return rc ? rc : conv_buf_puts(b, "}");
}

/* "data: {prefix,"choices":[{"index":0,"delta":" - the caller appends the delta object (chat)
 * or the text string (completion), then chunk_end. */
static int chunk_begin(openai_enc *e) {
    int rc;
    if ((rc = conv_buf_append(&e->out, "data: ", 6)) || (rc = conv_buf_append(&e->out, e->prefix.p, e->prefix.len)))
        return rc;
    return conv_buf_puts(&e->out, e->o.api == CONV_API_CHAT ? ",\"choices\":[{\"index\":0,\"delta\":"
                                                            : ",\"choices\":[{\"text\":");
}

static int chunk_end(openai_enc *e, const char *finish) {
    int rc = conv_buf_puts(&e->out, e->o.api == CONV_API_CHAT ? ",\"logprobs\":null,\"finish_reason\":"
                                                              : ",\"index\":0,\"logprobs\":null,\"finish_reason\":");
    if (!rc) rc = finish ? conv_buf_printf(&e->out, "\"%s\"}]", finish) : conv_buf_puts(&e->out, "null}]");
    if (!rc && e->o.include_usage) rc = conv_buf_puts(&e->out, ",\"usage\":null");
    return rc ? rc : conv_buf_puts(&e->out, "}\n\n");
}

static int text_chunk(openai_enc *e, const char *s, size_t n) {
    int rc;
    if ((rc = chunk_begin(e))) return rc;
    if (e->o.api == CONV_API_CHAT && (rc = conv_buf_puts(&e->out, "{\"content\":"))) return rc;
    if ((rc = conv_buf_json_str(&e->out, s, n))) return rc;
    if (e->o.api == CONV_API_CHAT && (rc = conv_buf_puts(&e->out, "}"))) return rc;
    return chunk_end(e, NULL);
}

static int stream_start(openai_enc *e) {
    if (e->started) return SH_OK;
    e->started = 1;
    if (e->o.api != CONV_API_CHAT) return SH_OK;
    int rc = chunk_begin(e);
    if (!rc) rc = conv_buf_puts(&e->out, "{\"role\":\"assistant\",\"content\":\"\"}");
    return rc ? rc : chunk_end(e, NULL);
}

static int stream_error(openai_enc *e, conv_error_kind k, const char *msg, size_t len) {
    int rc;
    e->done = e->failed = 1;
    if ((rc = conv_buf_puts(&e->out, "data: {\"error\":")) || (rc = error_obj(&e->out, k, msg, len, NULL))) return rc;
    return conv_buf_puts(&e->out, "}\n\n");
}

static int stream_event(openai_enc *e, const conv_event *ev) {
    int rc = SH_OK;
    int chat = e->o.api == CONV_API_CHAT;
    if (ev->kind != CONV_EV_ERROR && (rc = stream_start(e))) return rc;
    switch (ev->kind) {
    case CONV_EV_START:
        e->usage.prompt_tokens = ev->usage.prompt_tokens;
        return SH_OK;
    case CONV_EV_TEXT: {
        /* hold back a character split across events so every chunk is valid UTF-8 */
        e->tmp.len = 0;
        if ((rc = conv_buf_append(&e->tmp, e->carry, e->n_carry)) || (rc = conv_buf_append(&e->tmp, ev->text, ev->len)))
            return rc;
        size_t whole = conv_utf8_whole(e->tmp.p, e->tmp.len);
        e->n_carry = e->tmp.len - whole;
        memcpy(e->carry, e->tmp.p + whole, e->n_carry);
        return whole ? text_chunk(e, e->tmp.p, whole) : SH_OK;
    }
    case CONV_EV_TOOL_START:
        if (!chat) return SH_OK;
        if ((rc = chunk_begin(e)) || (rc = conv_buf_printf(&e->out, "{\"tool_calls\":[{\"index\":%d,\"id\":", ev->index)) ||
            (rc = conv_buf_json_str(&e->out, ev->id ? ev->id : "", ev->id ? strlen(ev->id) : 0)) ||
            (rc = conv_buf_puts(&e->out, ",\"type\":\"function\",\"function\":{\"name\":")) ||
            (rc = conv_buf_json_str(&e->out, ev->name ? ev->name : "", ev->name ? strlen(ev->name) : 0)) ||
            (rc = conv_buf_puts(&e->out, ",\"arguments\":\"\"}}]}")))
            return rc;
        return chunk_end(e, NULL);
    case CONV_EV_TOOL_DELTA:
        if (!chat) return SH_OK;
        if ((rc = chunk_begin(e)) ||
            (rc = conv_buf_printf(&e->out, "{\"tool_calls\":[{\"index\":%d,\"function\":{\"arguments\":", ev->index)) ||
            (rc = conv_buf_json_str(&e->out, ev->text, ev->len)) || (rc = conv_buf_puts(&e->out, "}}]}")))
            return rc;
        return chunk_end(e, NULL);
    case CONV_EV_TOOL_END:
        return SH_OK;
    case CONV_EV_STOP:
        if (e->n_carry && (rc = text_chunk(e, e->carry, e->n_carry))) return rc;
        e->n_carry = 0;
        e->done = 1;
        if ((rc = chunk_begin(e)) || (chat && (rc = conv_buf_puts(&e->out, "{}"))) ||
            (!chat && (rc = conv_buf_puts(&e->out, "\"\""))) || (rc = chunk_end(e, finish_reason(ev->reason))))
            return rc;
        if (e->o.include_usage) {
            conv_usage u = ev->usage;
            if ((rc = conv_buf_append(&e->out, "data: ", 6)) || (rc = conv_buf_append(&e->out, e->prefix.p, e->prefix.len)) ||
                (rc = conv_buf_puts(&e->out, ",\"choices\":[],\"usage\":")) || (rc = usage_json(&e->out, &u)) ||
                (rc = conv_buf_puts(&e->out, "}\n\n")))
                return rc;
        }
        return conv_buf_puts(&e->out, "data: [DONE]\n\n");
    case CONV_EV_ERROR:
        return stream_error(e, ev->error_kind, ev->text ? ev->text : "", ev->text ? ev->len : 0);
    }
    return SH_OK;
}

int openai_enc_event(void *enc, const conv_event *ev) {
    openai_enc *e = enc;
    if (e->done) return SH_OK;
    if (!e->o.stream) {
        int rc = conv_accum_event(&e->acc, ev);
        if (ev->kind == CONV_EV_STOP || ev->kind == CONV_EV_ERROR) e->done = 1;
        return rc;
    }
    e->out.len = 0;
    int rc = stream_event(e, ev);
    if (!rc && e->out.len && e->write(e->user, e->out.p, e->out.len)) rc = sh_error_set(SH_EIO, "openai: write failed");
    return rc;
}

int openai_enc_status(const openai_enc *e) {
    if (e->o.stream) return 200;
    if (e->acc.failed) return openai_error_status(e->acc.error_kind);
    return e->acc.stopped ? 200 : 500;
}

/* The non-streaming body from the accumulated answer. */
static int body_json(openai_enc *e) {
    conv_accum *a = &e->acc;
    conv_buf *b = &e->out;
    int rc, chat = e->o.api == CONV_API_CHAT;
    if (a->failed || !a->stopped) {
        const char *msg = a->failed ? (a->error_text.p ? a->error_text.p : "") : "the answer ended unexpectedly";
        conv_error_kind k = a->failed ? a->error_kind : CONV_ERR_INTERNAL;
        if ((rc = conv_buf_puts(b, "{\"error\":")) || (rc = error_obj(b, k, msg, strlen(msg), NULL))) return rc;
        return conv_buf_puts(b, "}");
    }
    if ((rc = conv_buf_append(b, e->prefix.p, e->prefix.len))) return rc;
    int n_text = 0, n_tools = 0;
    for (int i = 0; i < a->n_blocks; i++) a->blocks[i].kind == CONV_TEXT ? n_text++ : n_tools++;
    if (chat) {
        if ((rc = conv_buf_puts(b, ",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":"))) return rc;
        if (n_text == 0 && n_tools) {
            rc = conv_buf_puts(b, "null");
        } else { /* text blocks split by tool calls join into one string */
            e->tmp.len = 0;
            for (int i = 0; i < a->n_blocks && !rc; i++)
                if (a->blocks[i].kind == CONV_TEXT) rc = conv_buf_append(&e->tmp, a->blocks[i].text.p, a->blocks[i].text.len);
            if (!rc) rc = conv_buf_json_str(b, e->tmp.p ? e->tmp.p : "", e->tmp.len);
        }
        if (rc) return rc;
        if (n_tools) {
            if ((rc = conv_buf_puts(b, ",\"tool_calls\":["))) return rc;
            int k = 0;
            for (int i = 0; i < a->n_blocks; i++) {
                conv_accum_block *t = &a->blocks[i];
                if (t->kind != CONV_TOOL_USE) continue;
                if ((rc = conv_buf_puts(b, k++ ? ",{\"id\":" : "{\"id\":")) || (rc = conv_buf_json_str(b, t->id, strlen(t->id))) ||
                    (rc = conv_buf_puts(b, ",\"type\":\"function\",\"function\":{\"name\":")) ||
                    (rc = conv_buf_json_str(b, t->name, strlen(t->name))) || (rc = conv_buf_puts(b, ",\"arguments\":")) ||
                    (rc = conv_buf_json_str(b, t->text.p ? t->text.p : "", t->text.len)) || (rc = conv_buf_puts(b, "}}")))
                    return rc;
            }
            if ((rc = conv_buf_puts(b, "]"))) return rc;
        }
        if ((rc = conv_buf_puts(b, "},\"logprobs\":null,\"finish_reason\":"))) return rc;
    } else {
        e->tmp.len = 0;
        for (int i = 0; i < a->n_blocks && !rc; i++)
            if (a->blocks[i].kind == CONV_TEXT) rc = conv_buf_append(&e->tmp, a->blocks[i].text.p, a->blocks[i].text.len);
        if (rc || (rc = conv_buf_puts(b, ",\"choices\":[{\"text\":")) ||
            (rc = conv_buf_json_str(b, e->tmp.p ? e->tmp.p : "", e->tmp.len)) ||
            (rc = conv_buf_puts(b, ",\"index\":0,\"logprobs\":null,\"finish_reason\":")))
            return rc;
    }
    if ((rc = conv_buf_printf(b, "\"%s\"}],\"usage\":", finish_reason(a->reason))) || (rc = usage_json(b, &a->usage)))
        return rc;
    return conv_buf_puts(b, "}");
}

int openai_enc_finish(openai_enc *e) {
    int rc;
    e->out.len = 0;
    if (e->o.stream) {
        if (e->done) return SH_OK;
        rc = stream_error(e, CONV_ERR_INTERNAL, "the answer ended unexpectedly", 29);
    } else {
        rc = body_json(e);
        e->done = 1;
    }
    if (!rc && e->write(e->user, e->out.p, e->out.len)) rc = sh_error_set(SH_EIO, "openai: write failed");
    return rc;
}

/* ======================================================================================
 * client side: request encoding
 * ==================================================================================== */

static json_t *text_content(const conv_message *m) {
    int n = 0;
    const conv_block *one = NULL;
    for (int i = 0; i < m->n_blocks; i++)
        if (m->blocks[i].kind == CONV_TEXT) n++, one = &m->blocks[i];
    if (n == 0) return NULL;
    if (n == 1) return json_string(one->text ? one->text : "");
    json_t *a = json_array();
    for (int i = 0; i < m->n_blocks; i++)
        if (m->blocks[i].kind == CONV_TEXT)
            json_array_append_new(a, json_pack("{s:s,s:s}", "type", "text", "text", m->blocks[i].text ? m->blocks[i].text : ""));
    return a;
}

static json_t *schema_value(const char *text) {
    json_t *v = text ? json_loads(text, JSON_DECODE_ANY, NULL) : NULL;
    return v;
}

static void encode_messages(const conv_request *r, json_t *msgs) {
    if (r->system) json_array_append_new(msgs, json_pack("{s:s,s:s}", "role", "system", "content", r->system));
    for (int i = 0; i < r->n_messages; i++) {
        const conv_message *m = &r->messages[i];
        /* tool results, wherever they sit, are tool messages */
        for (int j = 0; j < m->n_blocks; j++) {
            const conv_block *b = &m->blocks[j];
            if (b->kind == CONV_TOOL_RESULT)
                json_array_append_new(msgs, json_pack("{s:s,s:s,s:s}", "role", "tool", "tool_call_id", b->id ? b->id : "",
                                                      "content", b->text ? b->text : ""));
        }
        if (m->role == CONV_TOOL) continue;
        json_t *content = text_content(m);
        if (m->role == CONV_ASSISTANT) {
            json_t *calls = json_array();
            for (int j = 0; j < m->n_blocks; j++) {
                const conv_block *b = &m->blocks[j];
                if (b->kind != CONV_TOOL_USE) continue;
                json_array_append_new(calls, json_pack("{s:s,s:s,s:{s:s,s:s}}", "id", b->id ? b->id : "", "type",
                                                       "function", "function", "name", b->name ? b->name : "",
                                                       "arguments", b->input_json ? b->input_json : "{}"));
            }
            json_t *o = json_pack("{s:s}", "role", "assistant");
            json_object_set_new(o, "content", content ? content : json_array_size(calls) ? json_null() : json_string(""));
            if (json_array_size(calls)) json_object_set(o, "tool_calls", calls);
            json_decref(calls);
            json_array_append_new(msgs, o);
        } else if (content || m->role == CONV_USER) {
            json_t *o = json_pack("{s:s}", "role", m->role == CONV_SYSTEM ? "system" : "user");
            json_object_set_new(o, "content", content ? content : json_string(""));
            json_array_append_new(msgs, o);
        }
    }
}

char *openai_encode_request_ex(const conv_request *r, const char *model, int stream, unsigned flags) {
    json_t *o = json_object();
    char *out = NULL;
    if (!o) return NULL;
    if (!model) model = r->model;
    if (model) json_object_set_new(o, "model", json_string(model));
    if (r->api == CONV_API_COMPLETION) {
        json_object_set_new(o, "prompt", json_string(r->prompt ? r->prompt : ""));
        if (r->suffix) json_object_set_new(o, "suffix", json_string(r->suffix));
    } else {
        json_t *msgs = json_array();
        encode_messages(r, msgs);
        json_object_set_new(o, "messages", msgs);
        if (r->n_tools) {
            json_t *tools = json_array();
            for (int i = 0; i < r->n_tools; i++) {
                const conv_tool *t = &r->tools[i];
                json_t *fn = json_pack("{s:s}", "name", t->name ? t->name : "");
                if (t->description) json_object_set_new(fn, "description", json_string(t->description));
                json_t *schema = schema_value(t->schema_json);
                if (schema) json_object_set_new(fn, "parameters", schema);
                json_array_append_new(tools, json_pack("{s:s,s:o}", "type", "function", "function", fn));
            }
            json_object_set_new(o, "tools", tools);
        }
        switch (r->tool_choice) {
        case CONV_TOOLS_AUTO: break;
        case CONV_TOOLS_NONE: json_object_set_new(o, "tool_choice", json_string("none")); break;
        case CONV_TOOLS_ANY: json_object_set_new(o, "tool_choice", json_string("required")); break;
        case CONV_TOOLS_NAMED:
            json_object_set_new(o, "tool_choice", json_pack("{s:s,s:{s:s}}", "type", "function", "function", "name",
                                                            r->tool_choice_name ? r->tool_choice_name : ""));
            break;
        }
        if (r->json_mode) json_object_set_new(o, "response_format", json_pack("{s:s}", "type", "json_object"));
    }
    if (!isnan(r->temperature)) json_object_set_new(o, "temperature", json_real(r->temperature));
    if (!isnan(r->top_p)) json_object_set_new(o, "top_p", json_real(r->top_p));
    if (!isnan(r->presence_penalty)) json_object_set_new(o, "presence_penalty", json_real(r->presence_penalty));
    if (!isnan(r->frequency_penalty)) json_object_set_new(o, "frequency_penalty", json_real(r->frequency_penalty));
    if (r->max_tokens > 0)
        json_object_set_new(o, flags & OPENAI_REQ_MAX_COMPLETION_TOKENS ? "max_completion_tokens" : "max_tokens",
                            json_integer(r->max_tokens));
    if (r->seed >= 0) json_object_set_new(o, "seed", json_integer(r->seed));
    if (r->n_stop) {
        json_t *stop = json_array();
        for (int i = 0; i < r->n_stop; i++) json_array_append_new(stop, json_string(r->stop[i]));
        json_object_set_new(o, "stop", stop);
    }
    if (r->user) json_object_set_new(o, "user", json_string(r->user));
    if (stream) {
        json_object_set_new(o, "stream", json_true());
        json_object_set_new(o, "stream_options", json_pack("{s:b}", "include_usage", 1));
    }
    if (flags & OPENAI_REQ_EXTENSIONS) {
        if (r->top_k >= 0) json_object_set_new(o, "top_k", json_integer(r->top_k));
        if (!isnan(r->min_p)) json_object_set_new(o, "min_p", json_real(r->min_p));
        if (!isnan(r->repeat_penalty)) json_object_set_new(o, "repeat_penalty", json_real(r->repeat_penalty));
        if (r->session_id) json_object_set_new(o, "session_id", json_string(r->session_id));
        if (r->local_only) json_object_set_new(o, "local_only", json_true());
    }
    out = json_dumps(o, CONV_JSON_FLAGS);
    json_decref(o);
    return out;
}

char *openai_encode_request(const conv_request *r, const char *model, int stream) {
    return openai_encode_request_ex(r, model, stream, 0);
}

/* ======================================================================================
 * client side: answer decoding
 * ==================================================================================== */

struct openai_dec {
    int stream;
    sse_reader sse;
    conv_buf body;     /* non-streaming body */
    conv_event_fn fn;  /* of the current feed */
    void *user;
    int started, finished; /* START sent; STOP or ERROR sent */
    int have_reason;
    conv_stop_reason reason;
    conv_usage usage;
    int open_tool;     /* index of the tool call being streamed, or -1 */
    unsigned char seen[CONV_MAX_TOOL_CALLS];
};

openai_dec *openai_dec_new(int stream) {
    openai_dec *d = calloc(1, sizeof *d);
    if (!d) return NULL;
    d->stream = stream;
    d->open_tool = -1;
    sse_reader_init(&d->sse, 0, 0, NULL, NULL);
    conv_buf_init(&d->body, CONV_MAX_OUTPUT);
    return d;
}

void openai_dec_free(openai_dec *d) {
    if (!d) return;
    sse_reader_free(&d->sse);
    conv_buf_free(&d->body);
    free(d);
}

static int emit(openai_dec *d, conv_event *ev) { return d->fn(d->user, ev); }

static int emit_start(openai_dec *d) {
    if (d->started) return 0;
    d->started = 1;
    conv_event ev = {.kind = CONV_EV_START, .usage = d->usage};
    return emit(d, &ev);
}

static int emit_error(openai_dec *d, json_t *err) {
    json_t *msg = json_object_get(err, "message"), *type = json_object_get(err, "type");
    const char *m = json_is_string(msg) ? json_string_value(msg) : "unknown error";
    conv_event ev = {.kind = CONV_EV_ERROR, .text = m, .len = strlen(m),
                     .error_kind = error_kind_of(json_is_string(type) ? json_string_value(type) : NULL)};
    d->finished = 1;
    return emit(d, &ev);
}

static int close_tool(openai_dec *d) {
    if (d->open_tool < 0) return 0;
    conv_event ev = {.kind = CONV_EV_TOOL_END, .index = d->open_tool};
    d->open_tool = -1;
    return emit(d, &ev);
}

static void read_usage(openai_dec *d, json_t *u) {
    if (!json_is_object(u)) return;
    json_t *p = json_object_get(u, "prompt_tokens"), *c = json_object_get(u, "completion_tokens");
    json_t *det = json_object_get(u, "prompt_tokens_details");
    json_t *ca = json_is_object(det) ? json_object_get(det, "cached_tokens") : NULL;
    if (json_is_integer(p)) d->usage.prompt_tokens = json_integer_value(p);
    if (json_is_integer(c)) d->usage.completion_tokens = json_integer_value(c);
    if (json_is_integer(ca)) d->usage.cached_tokens = json_integer_value(ca);
}

static void read_reason(openai_dec *d, json_t *fr) {
    if (!json_is_string(fr)) return;
    const char *s = json_string_value(fr);
    d->have_reason = 1;
    d->reason = strcmp(s, "length") == 0                                       ? CONV_STOP_LENGTH
                : strcmp(s, "tool_calls") == 0 || strcmp(s, "function_call") == 0 ? CONV_STOP_TOOL_USE
                                                                                 : CONV_STOP_END;
}

static int emit_stop(openai_dec *d) {
    int rc;
    if ((rc = emit_start(d)) || (rc = close_tool(d))) return rc;
    d->finished = 1;
    conv_event ev = {.kind = CONV_EV_STOP, .reason = d->reason, .usage = d->usage};
    return emit(d, &ev);
}

static int emit_text(openai_dec *d, json_t *s) {
    if (!json_is_string(s) || json_string_length(s) == 0) return 0;
    conv_event ev = {.kind = CONV_EV_TEXT, .text = json_string_value(s), .len = json_string_length(s)};
    return emit(d, &ev);
}

/* One tool call (a streamed delta or a whole call): start it if new, then its arguments. */
static int tool_call(openai_dec *d, json_t *tc, int index) {
    int rc;
    json_t *id = json_object_get(tc, "id"), *fn = json_object_get(tc, "function");
    json_t *name = json_is_object(fn) ? json_object_get(fn, "name") : NULL;
    json_t *args = json_is_object(fn) ? json_object_get(fn, "arguments") : NULL;
    if (index < 0 || index >= CONV_MAX_TOOL_CALLS) return sh_error_set(SH_EFORMAT, "openai: tool call index %d", index);
    if (!d->seen[index]) {
        if (d->open_tool != index && (rc = close_tool(d))) return rc;
        d->seen[index] = 1;
        d->open_tool = index;
        conv_event ev = {.kind = CONV_EV_TOOL_START, .index = index,
                         .id = json_is_string(id) ? json_string_value(id) : "",
                         .name = json_is_string(name) ? json_string_value(name) : ""};
        if ((rc = emit(d, &ev))) return rc;
    }
    if (json_is_string(args) && json_string_length(args)) {
        conv_event ev = {.kind = CONV_EV_TOOL_DELTA, .index = index, .text = json_string_value(args),
                         .len = json_string_length(args)};
        return emit(d, &ev);
    }
    return 0;
}

static int chunk(openai_dec *d, json_t *j) {
    int rc;
    json_t *err = json_object_get(j, "error");
    if (err && !json_is_null(err)) return emit_error(d, json_is_object(err) ? err : j);
    if ((rc = emit_start(d))) return rc;
    read_usage(d, json_object_get(j, "usage"));
    json_t *c0 = json_array_get(json_object_get(j, "choices"), 0);
    if (!json_is_object(c0)) return 0;
    json_t *delta = json_object_get(c0, "delta");
    if (json_is_object(delta)) {
        if ((rc = emit_text(d, json_object_get(delta, "content")))) return rc;
        json_t *calls = json_object_get(delta, "tool_calls");
        for (size_t i = 0; i < json_array_size(calls); i++) {
            json_t *tc = json_array_get(calls, i), *ix = json_object_get(tc, "index");
            if ((rc = tool_call(d, tc, json_is_integer(ix) ? (int)json_integer_value(ix) : (int)i))) return rc;
        }
    } else if ((rc = emit_text(d, json_object_get(c0, "text")))) {
        return rc;
    }
    read_reason(d, json_object_get(c0, "finish_reason"));
    return 0;
}

static int on_sse(void *user, const char *event, const char *data, size_t len) {
    openai_dec *d = user;
    (void)event;
    if (d->finished) return 0;
    if (len >= 6 && memcmp(data, "[DONE]", 6) == 0) return emit_stop(d);
    json_error_t je;
    json_t *j = json_loadb(data, len, 0, &je);
    if (!j || !json_is_object(j)) {
        json_decref(j);
        return sh_error_set(SH_EFORMAT, "openai: bad stream chunk: %s", j ? "not an object" : je.text);
    }
    int rc = chunk(d, j);
    json_decref(j);
    return rc;
}

int openai_dec_feed(openai_dec *d, const char *p, size_t n, conv_event_fn fn, void *user) {
    d->fn = fn;
    d->user = user;
    if (!d->stream) return conv_buf_append(&d->body, p, n);
    d->sse.fn = on_sse;
    d->sse.user = d;
    return sse_reader_feed(&d->sse, p, n);
}

static int whole_body(openai_dec *d) {
    json_error_t je;
    json_t *j = json_loadb(d->body.p ? d->body.p : "", d->body.len, 0, &je);
    int rc = 0;
    if (!j || !json_is_object(j)) {
        json_decref(j);
        return sh_error_set(SH_EFORMAT, "openai: bad response body: %s", j ? "not an object" : je.text);
    }
    json_t *err = json_object_get(j, "error");
    if (err && !json_is_null(err)) {
        rc = emit_error(d, json_is_object(err) ? err : j);
        goto out;
    }
    read_usage(d, json_object_get(j, "usage"));
    if ((rc = emit_start(d))) goto out;
    json_t *c0 = json_array_get(json_object_get(j, "choices"), 0);
    json_t *msg = json_object_get(c0, "message");
    if (json_is_object(msg)) {
        if ((rc = emit_text(d, json_object_get(msg, "content")))) goto out;
        json_t *calls = json_object_get(msg, "tool_calls");
        for (size_t i = 0; i < json_array_size(calls); i++)
            if ((rc = tool_call(d, json_array_get(calls, i), (int)i))) goto out;
    } else if ((rc = emit_text(d, json_object_get(c0, "text")))) {
        goto out;
    }
    read_reason(d, json_object_get(c0, "finish_reason"));
    rc = emit_stop(d);
out:
    json_decref(j);
    return rc;
}

int openai_dec_finish(openai_dec *d, conv_event_fn fn, void *user) {
    d->fn = fn;
    d->user = user;
    if (!d->stream) return d->finished ? 0 : whole_body(d);
    d->sse.fn = on_sse;
    d->sse.user = d;
    int rc = sse_reader_finish(&d->sse);
    if (rc || d->finished) return rc;
    if (d->have_reason) return emit_stop(d); /* a peer that omits [DONE] */
    conv_event ev = {.kind = CONV_EV_ERROR, .text = "the stream ended before the answer was complete",
                     .error_kind = CONV_ERR_UPSTREAM};
    ev.len = strlen(ev.text);
    d->finished = 1;
    return emit(d, &ev);
}
