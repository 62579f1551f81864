/* train_data.c - training examples from chat exchanges and JSONL files. */
#include "train/train_data.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/status.h"
#include "engine/chat.h"

void td_set_free(td_set *s) {
    for (int i = 0; i < s->n; i++) free((void *)s->ex[i].tokens);
    free(s->ex);
    memset(s, 0, sizeof *s);
}

int td_weight_name(const char *name, float *w) {
    if (!strcmp(name, "critical")) *w = 10;
    else if (!strcmp(name, "medium")) *w = 3;
    else if (!strcmp(name, "good")) *w = 1;
    else return sh_error_set(SH_EINVAL, "unknown weight '%s' (a number > 0, critical, medium or good)", name);
    return SH_OK;
}

/* The token that ends an assistant turn for this template, or -1. */
static int32_t end_of_turn(const local_model *lm) {
    int32_t id = -1;
    if (lm->tmpl.kind == CHAT_CHATML) id = tok_find(lm->t, "<|im_end|>");
    else if (lm->tmpl.kind == CHAT_LLAMA3) id = tok_find(lm->t, "<|eot_id|>");
    if (id < 0) id = tok_eot(lm->t);
    if (id < 0) id = tok_eos(lm->t);
    return id;
}

int td_add(td_set *s, const local_model *lm, const td_msg *msgs, int n, float weight) {
    if (!(weight > 0) || weight > 1e6f) return sh_error_set(SH_EINVAL, "weight must be in (0, 1e6]");
    if (n < 2 || n > TD_MAX_MSGS) return sh_error_set(SH_EINVAL, "an example needs 2..%d messages", TD_MAX_MSGS);
    if (strcmp(msgs[n - 1].role, "assistant"))
        return sh_error_set(SH_EINVAL, "the last message must be the assistant's response");
    if (s->n >= TD_MAX_EXAMPLES) return sh_error_set(SH_EFULL, "more than %d examples", TD_MAX_EXAMPLES);
    int st = SH_OK;
    conv_request r;
    conv_request_zero(&r);
    local_req lr;
    memset(&lr, 0, sizeof lr);
    conv_message *cm = calloc((size_t)n, sizeof *cm);
    conv_block *cb = calloc((size_t)n, sizeof *cb);
    char *system = NULL;
    int32_t *resp = NULL, *all = NULL;
    if (!cm || !cb) {
        st = sh_error_set(SH_ENOMEM, "out of memory");
        goto out;
    }
    /* as the API decoders do: every system text joined into r.system by "\n\n" */
    size_t sys_len = 0;
    for (int i = 0; i < n - 1; i++)
        if (!strcmp(msgs[i].role, "system")) sys_len += strlen(msgs[i].content ? msgs[i].content : "") + 2;
    if (sys_len && !(system = calloc(1, sys_len + 1))) {
        st = sh_error_set(SH_ENOMEM, "out of memory");
        goto out;
    }
    for (int i = 0; i < n - 1; i++) {
        const char *role = msgs[i].role, *text = msgs[i].content ? msgs[i].content : "";
        if (!strcmp(role, "system")) {
            if (*system) strcat(system, "\n\n");
            strcat(system, text);
            continue;
        }
        if (strcmp(role, "user") && strcmp(role, "assistant")) {
            st = sh_error_set(SH_EINVAL, "message %d: role '%s' (system, user or assistant)", i, role);
            goto out;
        }
        cb[r.n_messages] = (conv_block){.kind = CONV_TEXT, .text = text};
        cm[r.n_messages] = (conv_message){!strcmp(role, "user") ? CONV_USER : CONV_ASSISTANT,
                                          &cb[r.n_messages], 1};
        r.n_messages++;
    }
    if (r.n_messages == 0) {
        st = sh_error_set(SH_EINVAL, "an example needs a user message before the response");
        goto out;
    }
    r.messages = cm;
    r.system = system;
    r.seed = 0;
    if ((st = local_prepare(lm, &r, &lr))) goto out;
    const char *text = msgs[n - 1].content ? msgs[n - 1].content : "";
    size_t len = strlen(text);
    if (len == 0) {
        st = sh_error_set(SH_EINVAL, "empty response");
        goto out;
    }
    int64_t cap = (int64_t)len + 8, got = 0;
    if (!(resp = malloc(sizeof(int32_t) * (size_t)cap))) {
        st = sh_error_set(SH_ENOMEM, "out of memory");
        goto out;
    }
    /* the model generates text, never special tokens: parse_special = 0 */
    if ((st = tok_encode(lm->t, text, len, 0, 0, resp, cap - 1, &got))) goto out;
    int32_t eot = end_of_turn(lm);
    if (eot >= 0) resp[got++] = eot;
    int64_t total = (int64_t)lr.p.n_prompt + got;
    if (total > INT32_MAX / 2) {
        st = sh_error_set(SH_EINVAL, "example too long");
        goto out;
    }
    if (!(all = malloc(sizeof(int32_t) * (size_t)total))) {
        st = sh_error_set(SH_ENOMEM, "out of memory");
        goto out;
    }
    memcpy(all, lr.p.prompt, sizeof(int32_t) * (size_t)lr.p.n_prompt);
    memcpy(all + lr.p.n_prompt, resp, sizeof(int32_t) * (size_t)got);
    if (s->n == s->cap) {
        int nc = s->cap ? s->cap * 2 : 16;
        lt_example *ne = realloc(s->ex, sizeof *ne * (size_t)nc);
        if (!ne) {
            st = sh_error_set(SH_ENOMEM, "out of memory");
            goto out;
        }
        s->ex = ne;
        s->cap = nc;
    }
    s->ex[s->n++] = (lt_example){all, (int32_t)total, (int32_t)lr.p.n_prompt, weight};
    s->n_tokens += total;
    all = NULL;
out:
    local_req_free(&lr);
    free(all);
    free(resp);
    free(system);
    free(cm);
    free(cb);
    return st;
}

static int get_weight(json_t *o, float *w) {
    json_t *jw = json_object_get(o, "weight");
    *w = 1;
    if (!jw) return SH_OK;
    if (json_is_string(jw)) return td_weight_name(json_string_value(jw), w);
    if (!json_is_number(jw)) return sh_error_set(SH_EINVAL, "\"weight\" must be a number or a name");
    double v = json_number_value(jw);
    if (!(v > 0) || v > 1e6) return sh_error_set(SH_EINVAL, "\"weight\" must be in (0, 1e6]");
    *w = (float)v;
    return SH_OK;
}

int td_add_json(td_set *s, const local_model *lm, const char *line, size_t len) {
    json_error_t err;
    json_t *o = json_loadb(line, len, 0, &err);
    td_msg *msgs = NULL;
    int st = SH_OK, n = 0;
    float w;
    if (!o || !json_is_object(o)) {
        st = sh_error_set(SH_EINVAL, "not a JSON object%s%s", o ? "" : ": ", o ? "" : err.text);
        goto out;
    }
    if ((st = get_weight(o, &w))) goto out;
    json_t *jm = json_object_get(o, "messages");
    if (jm) {
        if (!json_is_array(jm) || json_array_size(jm) > TD_MAX_MSGS) {
            st = sh_error_set(SH_EINVAL, "\"messages\" must be an array of at most %d messages", TD_MAX_MSGS);
            goto out;
        }
        n = (int)json_array_size(jm);
        if (!(msgs = calloc((size_t)(n ? n : 1), sizeof *msgs))) {
            st = sh_error_set(SH_ENOMEM, "out of memory");
            goto out;
        }
        for (int i = 0; i < n; i++) {
            json_t *e = json_array_get(jm, (size_t)i);
            json_t *role = json_object_get(e, "role"), *content = json_object_get(e, "content");
            if (!json_is_string(role) || !json_is_string(content)) {
                st = sh_error_set(SH_EINVAL, "messages[%d] needs string \"role\" and \"content\"", i);
                goto out;
            }
            msgs[i] = (td_msg){json_string_value(role), json_string_value(content)};
        }
    } else {
        json_t *p = json_object_get(o, "prompt"), *r = json_object_get(o, "response");
        json_t *sys = json_object_get(o, "system");
        if (!json_is_string(p) || !json_is_string(r) || (sys && !json_is_string(sys))) {
            st = sh_error_set(SH_EINVAL, "expected \"messages\", or string \"prompt\" and \"response\"");
            goto out;
        }
        if (!(msgs = calloc(3, sizeof *msgs))) {
            st = sh_error_set(SH_ENOMEM, "out of memory");
            goto out;
        }
        if (sys) msgs[n++] = (td_msg){"system", json_string_value(sys)};
        msgs[n++] = (td_msg){"user", json_string_value(p)};
        msgs[n++] = (td_msg){"assistant", json_string_value(r)};
    }
    st = td_add(s, lm, msgs, n, w);
out:
    free(msgs);
    json_decref(o);
    return st;
}

int td_load(td_set *s, const local_model *lm, const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return sh_error_set(SH_EIO, "cannot open %s", path);
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int st = SH_OK, lineno = 0;
    while (!st && (len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        if ((size_t)len > TD_MAX_LINE) {
            st = sh_error_set(SH_ERANGE, "%s:%d: line longer than %u bytes", path, lineno, TD_MAX_LINE);
            break;
        }
        size_t i = 0;
        while (i < (size_t)len && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r' || line[i] == '\n')) i++;
        if (i == (size_t)len || line[i] == '#') continue;
        if ((st = td_add_json(s, lm, line, (size_t)len))) {
            char msg[512];
            snprintf(msg, sizeof msg, "%s", sh_error_last());
            st = sh_error_set(st, "%s:%d: %s", path, lineno, msg);
        }
    }
    if (!st && ferror(f)) st = sh_error_set(SH_EIO, "reading %s failed", path);
    free(line);
    fclose(f);
    if (!st && s->n == 0) st = sh_error_set(SH_EINVAL, "%s holds no examples", path);
    return st;
}
