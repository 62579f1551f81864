/* entries.c - the fuzz entry points, one per parser of outside input, shared by the libFuzzer
 * drivers (fuzz/driver.c, clang + ASan/UBSan) and the plain replay test
 * (tests/unit/test_fuzz_regressions.c, gcc), which both #include this file.
 *
 * Each entry takes arbitrary bytes, must never crash, leak or hang on them, and checks the
 * properties its parser promises (fz_check aborts, so the fuzzer reports a violation like a
 * crash). Layouts of the input (which byte selects what) are described above each entry; the
 * seed corpus under fuzz/corpus/<name>/ follows them (fuzz/make_corpus.sh).
 *
 * Everything is static: this file is a fragment included by its two users, not a module. */
#include <fcntl.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "base/config.h"
#include "base/status.h"
#include "engine/chat.h"
#include "engine/gguf.h"
#include "engine/jsonc.h"
#include "engine/tokenizer.h"
#include "proto/anthropic.h"
#include "proto/conv.h"
#include "proto/openai.h"
#include "proto/sse.h"

#define fz_check(cond)                                                                        \
    do {                                                                                      \
        if (!(cond)) {                                                                        \
            fprintf(stderr, "fuzz property violated: %s (%s:%d)\n", #cond, __FILE__, __LINE__); \
            abort();                                                                          \
        }                                                                                     \
    } while (0)

/* A NUL-terminated copy of the input, so entries can hand out C strings. Caller frees. */
static char *fz_cstr(const uint8_t *d, size_t n) {
    char *s = malloc(n + 1);
    if (!s) abort();
    memcpy(s, d, n);
    s[n] = 0;
    return s;
}

/* Splits s[0..n) on NUL bytes into at most max fields (borrowed, NUL-terminated thanks to the
 * copy's final NUL). Returns the count. */
static int fz_fields(char *s, size_t n, char **f, int max) {
    int k = 0;
    size_t start = 0;
    for (size_t i = 0; i <= n && k < max; i++) {
        if (i == n || s[i] == 0) {
            s[i] = 0;
            f[k++] = s + start;
            start = i + 1;
        }
    }
    return k;
}

/* Deterministic chunk sizes from a seed byte: feeds split "anywhere" without using more input. */
static size_t fz_chunk(uint32_t *st) {
    *st = *st * 1103515245u + 12345u;
    uint32_t r = (*st >> 16) & 0x7fff;
    return (r & 3) == 0 ? 1 + (r >> 2) % 3 : 1 + (r >> 2) % 64;
}

/* ---- GGUF reader: the raw file ---- */

/* Reads the first and last byte of a borrowed range: a pointer the reader hands out that lies
 * outside its mapping faults here. */
static void fz_touch(const void *p, uint64_t n) {
    if (!n) return;
    const volatile unsigned char *b = p;
    (void)b[0];
    (void)b[n - 1];
}

static void fz_touch_kv(const gguf *g, int64_t i) {
    gguf_str k = gguf_kv_key(g, i);
    fz_check(k.ptr != NULL || k.len == 0);
    char key[256];
    size_t kl = k.len < sizeof key - 1 ? (size_t)k.len : sizeof key - 1;
    memcpy(key, k.ptr, kl);
    key[kl] = 0;
    gguf_vtype t = gguf_kv_type(g, i);
    fz_check(t < GGUF_T_COUNT_);
    uint32_t u32;
    int64_t i64;
    float f;
    int b;
    gguf_str s;
    char buf[64];
    gguf_get_u32(g, key, &u32);
    gguf_get_i64(g, key, &i64);
    gguf_get_f32(g, key, &f);
    gguf_get_bool(g, key, &b);
    if (gguf_get_str(g, key, &s) == SH_OK) fz_touch(s.ptr, s.len);
    gguf_get_cstr(g, key, buf, sizeof buf);
    if (t != GGUF_T_ARRAY) return;
    uint64_t n = gguf_arr_n(g, i);
    gguf_vtype at = gguf_arr_type(g, i);
    if (at == GGUF_T_STRING) {
        for (uint64_t j = 0; j < n && j < 64; j++) {
            gguf_str e = gguf_arr_str(g, i, j);
            fz_touch(e.ptr, e.len);
        }
        if (n) (void)gguf_arr_str(g, i, n - 1);
    } else {
        const void *p = gguf_arr_data(g, i);
        if (p) fz_touch(p, n ? 1 : 0);
    }
}

/* The whole input is the file. It goes through a memfd so gguf_open() is used as is. */
static int fz_gguf(const uint8_t *d, size_t n) {
    int fd = memfd_create("fz_gguf", MFD_CLOEXEC);
    if (fd < 0) return 0;
    size_t off = 0;
    while (off < n) {
        ssize_t w = write(fd, d + off, n - off);
        if (w <= 0) break;
        off += (size_t)w;
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    gguf *g = NULL;
    if (gguf_open(&g, path) == SH_OK) {
        fz_check(gguf_file_size(g) == n);
        for (int64_t i = 0; i < gguf_n_kv(g); i++) fz_touch_kv(g, i);
        (void)gguf_find_key(g, "general.architecture");
        for (int64_t i = 0; i < gguf_n_tensors(g); i++) {
            const gguf_tensor *t = gguf_tensor_at(g, i);
            fz_check(t != NULL);
            fz_touch(t->data, t->nbytes);
            char name[128];
            size_t nl = t->name.len < sizeof name - 1 ? (size_t)t->name.len : sizeof name - 1;
            memcpy(name, t->name.ptr, nl);
            name[nl] = 0;
            (void)gguf_find_tensor(g, name);
        }
        /* the tokenizer and template metadata are outside input too */
        tok *tk = NULL;
        if (tok_load(&tk, g) == SH_OK) {
            int32_t ids[64];
            int64_t nid = 0;
            if (tok_encode(tk, "Hello world <|im_end|> \xe4\xbd\xa0", 24, 1, 1, ids, 64, &nid) == SH_OK) {
                char piece[512];
                for (int64_t k = 0; k < nid; k++) {
                    fz_check(ids[k] >= 0 && ids[k] < tok_n_vocab(tk));
                    (void)tok_piece(tk, ids[k], 1, piece, sizeof piece);
                }
            }
            tok_free(tk);
        }
        char tmpl[4096];
        if (gguf_get_cstr(g, "tokenizer.chat_template", tmpl, sizeof tmpl) == SH_OK) {
            chat_template ct;
            chat_template_detect(&ct, tmpl);
        }
        gguf_close(g);
    }
    close(fd);
    return 0;
}

/* ---- tokenizer: encode arbitrary text with real vocabularies, then decode it ---- */

static const char *const fz_vocab_names[4] = {"qwen2", "llama-bpe", "llama-spm", "gpt-2"};
static tok *fz_vocabs[4];
static int fz_vocabs_loaded;

/* Loaded once for the process (fuzzers run millions of inputs). FUZZ_FIXTURES overrides the
 * directory, for running from elsewhere than the repository root. */
static void fz_load_vocabs(void) {
    if (fz_vocabs_loaded) return;
    fz_vocabs_loaded = 1;
    const char *dir = getenv("FUZZ_FIXTURES");
    if (!dir) dir = "tests/fixtures";
    for (int i = 0; i < 4; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/vocab/ggml-vocab-%s.gguf", dir, fz_vocab_names[i]);
        gguf *g = NULL;
        if (gguf_open(&g, path) != SH_OK || tok_load(&fz_vocabs[i], g) != SH_OK) {
            fprintf(stderr, "fuzz: cannot load %s: %s\n", path, sh_error_last());
            abort();
        }
        gguf_close(g);
    }
}

static int fz_utf8_valid(const uint8_t *s, size_t n) {
    for (size_t i = 0; i < n;) {
        uint8_t c = s[i];
        size_t k;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xc2 && c <= 0xdf) {
            k = 1, cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            k = 2, cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            k = 3, cp = c & 0x07;
        } else {
            return 0;
        }
        if (i + k >= n) return 0; /* truncated sequence */
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xc0) != 0x80) return 0;
            cp = cp << 6 | (s[i + j] & 0x3f);
        }
        if ((k == 2 && cp < 0x800) || (k == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += k + 1;
    }
    return 1;
}

/* byte 0: bits 0-1 vocabulary (qwen2, llama-bpe, llama-spm, gpt-2), bit 2 parse_special,
 * bit 3 add_bos, bit 4 render_special when decoding; the rest is the text. */
static int fz_tokenizer(const uint8_t *d, size_t n) {
    if (n < 1) return 0;
    fz_load_vocabs();
    const tok *t = fz_vocabs[d[0] & 3];
    int parse_special = (d[0] >> 2) & 1, add_bos = (d[0] >> 3) & 1, render = (d[0] >> 4) & 1;
    const char *text = (const char *)d + 1;
    size_t len = n - 1;
    int64_t cap = (int64_t)len + 4, nid = 0;
    int32_t *ids = malloc((size_t)cap * sizeof *ids);
    char *out = malloc(len * 4 + 1024);
    if (!ids || !out) abort();
    int st = tok_encode(t, text, len, add_bos, parse_special, ids, cap, &nid);
    fz_check(st == SH_OK || st == SH_EFULL);
    if (st == SH_OK) {
        int32_t nv = tok_n_vocab(t);
        int64_t total = 0;
        tok_utf8_stream us = {0};
        int64_t streamed = 0;
        for (int64_t i = 0; i < nid; i++) {
            fz_check(ids[i] >= 0 && ids[i] < nv);
            char piece[300];
            int64_t pl = tok_piece(t, ids[i], render, piece, sizeof piece);
            fz_check(pl >= 0);
            total += pl;
            int64_t w = tok_stream_push(t, &us, ids[i], render, out + streamed, 256 + 8);
            fz_check(w >= 0);
            streamed += w;
        }
        int64_t w = tok_stream_flush(&us, out + streamed, 8);
        fz_check(w >= 0);
        streamed += w;
        /* byte-level BPE without special parsing loses nothing: valid UTF-8 comes back exactly */
        if (!strcmp(tok_model_name(t), "gpt2") && !parse_special && !add_bos &&
            fz_utf8_valid(d + 1, len) && !memchr(text, 0, len)) {
            int user_defined = 0;
            for (int64_t i = 0; i < nid; i++) user_defined |= tok_attr(t, ids[i]) != TOK_ATTR_NORMAL;
            if (!user_defined) {
                fz_check(total == (int64_t)len && streamed == (int64_t)len);
                fz_check(memcmp(out, text, len) == 0);
            }
        }
    }
    if (len < 64) {
        char *s = fz_cstr(d + 1, len);
        (void)tok_find(t, s);
        free(s);
    }
    free(ids);
    free(out);
    return 0;
}

/* ---- request decoders of both dialects ---- */

/* A decoded request must render and re-encode (what the teacher path and logs do with it). */
static void fz_use_request(conv_request *r) {
    char *s = conv_request_debug_json(r);
    fz_check(s != NULL);
    free(s);
    s = openai_encode_request_ex(r, NULL, r->stream, OPENAI_REQ_EXTENSIONS);
    fz_check(s != NULL);
    free(s);
    s = anthropic_encode_request_ex(r, "m", 1, ANTHROPIC_REQ_EXTENSIONS);
    fz_check(s != NULL);
    free(s);
}

static void fz_check_err(int st, const proto_error *e) {
    fz_check(st == SH_EINVAL || st == SH_ERANGE);
    fz_check(e->status >= 400 && e->status < 600);
    fz_check(memchr(e->message, 0, sizeof e->message) && memchr(e->param, 0, sizeof e->param));
}

/* The whole input is the body, given to the chat and the completion decoders. */
static int fz_openai(const uint8_t *d, size_t n) {
    int (*dec[2])(const char *, size_t, conv_request *, proto_error *) = {openai_decode_chat,
                                                                          openai_decode_completion};
    for (int k = 0; k < 2; k++) {
        conv_request r;
        proto_error e;
        memset(&e, 0, sizeof e);
        int st = dec[k]((const char *)d, n, &r, &e);
        if (st == SH_OK) {
            fz_use_request(&r);
            conv_request_free(&r);
        } else {
            fz_check_err(st, &e);
            char *j = openai_error_json(&e);
            fz_check(j != NULL);
            free(j);
        }
    }
    return 0;
}

/* The whole input is the body, given to /v1/messages and /v1/messages/count_tokens. */
static int fz_anthropic(const uint8_t *d, size_t n) {
    int (*dec[2])(const char *, size_t, conv_request *, proto_error *) = {
        anthropic_decode_messages, anthropic_decode_count_tokens};
    for (int k = 0; k < 2; k++) {
        conv_request r;
        proto_error e;
        memset(&e, 0, sizeof e);
        int st = dec[k]((const char *)d, n, &r, &e);
        if (st == SH_OK) {
            fz_use_request(&r);
            conv_request_free(&r);
        } else {
            fz_check_err(st, &e);
            char *j = anthropic_error_json(&e);
            fz_check(j != NULL);
            free(j);
        }
    }
    return 0;
}

/* ---- SSE reader ---- */

static int fz_sse_event(void *user, const char *event, const char *data, size_t len) {
    size_t *max = user;
    fz_check(data[len] == 0 && len <= max[1]);
    fz_check(strlen(event) < 64);
    return 0;
}

/* byte 0: seed of the feed split; byte 1: bit 0 small bounds (exercises SH_EFULL); rest: the
 * stream. */
static int fz_sse(const uint8_t *d, size_t n) {
    if (n < 2) return 0;
    uint32_t seed = d[0];
    size_t bounds[2] = {d[1] & 1 ? 64 : 0, d[1] & 1 ? 256 : SSE_MAX_EVENT};
    sse_reader r;
    sse_reader_init(&r, bounds[0], d[1] & 1 ? bounds[1] : 0, fz_sse_event, bounds);
    const char *p = (const char *)d + 2;
    size_t len = n - 2, off = 0;
    int st = 0;
    while (off < len && st == 0) {
        size_t c = fz_chunk(&seed);
        if (c > len - off) c = len - off;
        st = sse_reader_feed(&r, p + off, c);
        off += c;
    }
    fz_check(st == 0 || st == SH_EFULL);
    if (st == 0) {
        st = sse_reader_finish(&r);
        fz_check(st == 0 || st == SH_EFULL);
    }
    sse_reader_free(&r);
    return 0;
}

/* ---- client-side response decoders (a teacher's or peer's answer) ---- */

/* byte 0: bit 0 Anthropic (else OpenAI), bit 1 streaming (SSE) body; byte 1: split seed. */
static int fz_client_dec(const uint8_t *d, size_t n) {
    if (n < 2) return 0;
    int anth = d[0] & 1, stream = (d[0] >> 1) & 1;
    uint32_t seed = d[1];
    const char *p = (const char *)d + 2;
    size_t len = n - 2, off = 0;
    conv_accum acc;
    conv_accum_init(&acc);
    void *dec = anth ? (void *)anthropic_dec_new(stream) : (void *)openai_dec_new(stream);
    fz_check(dec != NULL);
    int st = 0;
    while (off < len && st == 0) {
        size_t c = fz_chunk(&seed);
        if (c > len - off) c = len - off;
        st = anth ? anthropic_dec_feed(dec, p + off, c, conv_accum_event, &acc)
                  : openai_dec_feed(dec, p + off, c, conv_accum_event, &acc);
        off += c;
    }
    fz_check(st == 0 || st == SH_EFORMAT || st == SH_EFULL);
    if (st == 0)
        st = anth ? anthropic_dec_finish(dec, conv_accum_event, &acc)
                  : openai_dec_finish(dec, conv_accum_event, &acc);
    if (anth)
        anthropic_dec_free(dec);
    else
        openai_dec_free(dec);
    conv_accum_free(&acc);
    return 0;
}

/* ---- TOML config ---- */

/* The whole input is config.toml. */
static int fz_config(const uint8_t *d, size_t n) {
    sh_config c;
    int st = config_parse(&c, (const char *)d, n, "fuzz.toml");
    if (st == SH_OK) {
        fz_check(c.server.bind && c.backend.model && c.backend.kv_type);
        fz_check(c.server.bind_port >= 1 && c.server.bind_port <= 65535);
        for (int i = 0; i < config_warning_count(&c); i++) fz_check(config_warning(&c, i) != NULL);
        (void)config_daemon_address(&c);
        config_free(&c);
    } else {
        fz_check(st == SH_EFORMAT || st == SH_ERANGE || st == SH_ENOMEM);
    }
    if (n < 300) {
        char *s = fz_cstr(d, n);
        char host[64];
        int port = 0;
        if (config_split_address(s, host, sizeof host, &port) == SH_OK)
            fz_check(port >= 1 && port <= 65535 && memchr(host, 0, sizeof host));
        free(s);
    }
    return 0;
}

/* ---- streaming tool-call parser ---- */

static int fz_tcp_event(void *user, const chat_event *ev) {
    size_t *text_bytes = user;
    if (ev->kind == CHAT_EV_TEXT) {
        fz_check(ev->text != NULL || ev->len == 0);
        *text_bytes += ev->len;
    } else {
        fz_check(ev->kind == CHAT_EV_TOOL_CALL && ev->name && ev->arguments);
        json_error_t je;
        json_t *a = json_loads(ev->arguments, JSON_DECODE_ANY, &je);
        fz_check(a != NULL); /* the arguments handed to the client are JSON */
        json_decref(a);
    }
    return 0;
}

/* byte 0: bit 0 Llama 3 template (else ChatML); byte 1: split seed; rest: generated text. The
 * same text is fed twice, through chat_tcp_reset(), as a reused parser sees it. */
static int fz_toolcall(const uint8_t *d, size_t n) {
    if (n < 2) return 0;
    chat_template ct;
    chat_template_detect(&ct, d[0] & 1 ? "<|start_header_id|>" : "<|im_start|>");
    chat_tcp *p = NULL;
    if (chat_tcp_new(&p, &ct) != SH_OK) return 0;
    const char *text = (const char *)d + 2;
    size_t len = n - 2;
    for (int round = 0; round < 2; round++) {
        uint32_t seed = d[1] + (uint32_t)round;
        size_t off = 0, text_bytes = 0;
        while (off < len) {
            size_t c = fz_chunk(&seed);
            if (c > len - off) c = len - off;
            fz_check(chat_tcp_feed(p, text + off, c, fz_tcp_event, &text_bytes) == SH_OK);
            off += c;
        }
        fz_check(chat_tcp_finish(p, fz_tcp_event, &text_bytes) == SH_OK);
        chat_tcp_reset(p);
    }
    chat_tcp_free(p);
    return 0;
}

/* ---- chat-template renderer ---- */

/* Fields separated by NUL bytes:
 *   [0] options: byte 0 bit 0 add_generation_prompt, bit 1 disable_thinking, bit 2 a date
 *       string, bits 3-4 number of tools (0-3), rest ignored
 *   [1] the template text (as read from tokenizer.chat_template)
 *   then 3 fields (name, description, parameters JSON; "" = NULL) per tool,
 *   then messages: a field "<role char><content>" with role s/u/a/t starts a message; a field
 *   "@name" followed by an arguments field adds a tool call to the last message; "~text" sets
 *   its reasoning_content. */
static int fz_chat(const uint8_t *d, size_t n) {
    enum { MAXF = 512, MAXM = 64, MAXC = 8 };
    char *s = fz_cstr(d, n);
    char *f[MAXF];
    int nf = fz_fields(s, n, f, MAXF);
    chat_msg msgs[MAXM];
    chat_tool_call calls[MAXM][MAXC];
    chat_tool tools[3];
    int nm = 0;
    if (nf < 2) goto out;
    unsigned opt = (unsigned char)f[0][0];
    chat_template ct;
    chat_template_detect(&ct, f[1]);
    fz_check(memchr(ct.default_system, 0, sizeof ct.default_system) != NULL);
    int k = 2, nt = 0;
    for (; nt < (int)((opt >> 3) & 3) && k + 2 < nf; nt++, k += 3)
        tools[nt] = (chat_tool){f[k], f[k + 1][0] ? f[k + 1] : NULL, f[k + 2][0] ? f[k + 2] : NULL};
    for (; k < nf; k++) {
        const char *x = f[k];
        if (x[0] == '@' && nm > 0 && k + 1 < nf) {
            chat_msg *m = &msgs[nm - 1];
            if (m->n_tool_calls < MAXC) {
                calls[nm - 1][m->n_tool_calls++] = (chat_tool_call){"call_0", x + 1, f[k + 1]};
                m->tool_calls = calls[nm - 1];
            }
            k++;
        } else if (x[0] == '~' && nm > 0) {
            msgs[nm - 1].reasoning_content = x + 1;
        } else if (nm < MAXM && x[0] && strchr("suat", x[0])) {
            chat_role role = x[0] == 's' ? CHAT_SYSTEM : x[0] == 'u' ? CHAT_USER
                           : x[0] == 'a' ? CHAT_ASSISTANT : CHAT_TOOL;
            msgs[nm++] = (chat_msg){.role = role, .content = x + 1, .tool_call_id = "call_0",
                                    .name = role == CHAT_TOOL ? "fn" : NULL};
        }
    }
    chat_opts o = {.tools = tools, .n_tools = nt, .add_generation_prompt = opt & 1,
                   .disable_thinking = (opt >> 1) & 1, .date_string = opt & 4 ? "01 Jan 2025" : NULL};
    char *out = NULL;
    size_t out_len = 0;
    int st = chat_render(&ct, msgs, nm, &o, &out, &out_len);
    if (st == SH_OK) {
        fz_check(out && strlen(out) == out_len);
        free(out);
    } else {
        fz_check(st == SH_EINVAL || st == SH_EFULL || st == SH_ENOMEM);
    }
out:
    free(s);
    return 0;
}

/* ---- incremental JSON validator ---- */

static int fz_json_depth(const json_t *v) {
    int m = 0;
    if (json_is_object(v)) {
        const char *key;
        json_t *x;
        json_object_foreach((json_t *)v, key, x) {
            int dx = fz_json_depth(x);
            if (dx > m) m = dx;
        }
        return m + 1;
    }
    if (json_is_array(v)) {
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x) {
            int dx = fz_json_depth(x);
            if (dx > m) m = dx;
        }
        return m + 1;
    }
    return 0;
}

/* byte 0: bit 0 require_object, bit 1 bound whitespace runs to JSONC_WS_GEN; rest: the bytes.
 * Checks that feeding in one piece and byte by byte agree, and that the verdict agrees with
 * jansson (the strict parser the header promises completions for). */
static int fz_jsonc(const uint8_t *d, size_t n) {
    if (n < 1) return 0;
    int req_obj = d[0] & 1, ws = (d[0] >> 1) & 1;
    const char *p = (const char *)d + 1;
    size_t len = n - 1;
    jsonc whole, step;
    jsonc_init(&whole, req_obj);
    if (ws) jsonc_set_ws_max(&whole, JSONC_WS_GEN);
    step = whole;
    int rw = jsonc_feed(&whole, p, len);
    size_t bad_at = len;
    for (size_t i = 0; i < len; i++) {
        if (jsonc_feed(&step, p + i, 1) != 0) {
            bad_at = i;
            break;
        }
    }
    fz_check((rw == 0) == (bad_at == len));
    /* jansson stops at a raw NUL byte as if the input ended there: no comparison then */
    if (memchr(p, 0, len)) return 0;
    if (rw != 0) {
        /* refused at bad_at: a strict parser must refuse every extension of p[0..bad_at] too;
         * the cheapest one to check is that prefix itself */
        json_error_t je;
        json_t *v = json_loadb(p, bad_at + 1, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
        fz_check(v == NULL || (req_obj && !json_is_object(v)) || fz_json_depth(v) > JSONC_DEPTH_MAX ||
                 ws);
        json_decref(v);
        return 0;
    }
    int complete = jsonc_complete(&whole);
    if (jsonc_done(&whole)) fz_check(complete);
    json_error_t je;
    json_t *v = json_loadb(p, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    if (complete) {
        /* jansson refuses numbers it cannot store (huge integers, reals that overflow); JSON
         * itself has no such limit, so those are not a disagreement */
        int numeric_limit = v == NULL && (strstr(je.text, "too big") || strstr(je.text, "overflow"));
        fz_check(v != NULL || numeric_limit);
        if (v && req_obj) fz_check(json_is_object(v));
    } else if (v) {
        /* jansson accepts a document that jsonc, having accepted every byte, calls incomplete:
         * the depth and whitespace bounds refuse rather than leave it open, so this is a real
         * disagreement */
        fz_check(0);
    }
    json_decref(v);
    return 0;
}

/* ---- the table: name -> entry (the driver picks one, the replay test runs them all) ---- */

typedef struct {
    const char *name;
    int (*fn)(const uint8_t *, size_t);
} fz_target;

static const fz_target fz_targets[] = {
    {"gguf", fz_gguf},           {"tokenizer", fz_tokenizer}, {"openai", fz_openai},
    {"anthropic", fz_anthropic}, {"sse", fz_sse},             {"client_dec", fz_client_dec},
    {"config", fz_config},       {"toolcall", fz_toolcall},   {"chat", fz_chat},
    {"jsonc", fz_jsonc},
};
#define FZ_N_TARGETS ((int)(sizeof fz_targets / sizeof *fz_targets))
