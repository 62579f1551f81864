/* test_bpe_train.c - learning a byte-level BPE vocabulary: determinism, the merges a tiny
 * corpus must produce, round trips through the engine's tokenizer, and llama.cpp reading the
 * learnt vocabulary the same way (ids stored from its tokenizer). */
#include "testutil.h"

#include <unistd.h>

#include "base/status.h"
#include "engine/gguf.h"
#include "engine/tokenizer.h"
#include "train/bpe_train.h"

static const char corpus[] =
    "How do I start the daemon? Run `shammah daemon-start`; it starts the daemon in the background.\n"
    "Where is the config? In ~/.shammah/config.toml: [server] bind = \"127.0.0.1:11434\", [backend] ctx = 32768.\n"
    "shammah query \"hello\" prints one answer; shammah models lists models; shammah pull qwen2.5-coder:1.5b downloads one.\n"
    "Numbers 12345 and 2026-11-30, emoji \xf0\x9f\x99\x82 and accents: caf\xc3\xa9, na\xc3\xafve. don't won't I'll we've\n";

static char dir[256];

static int setup(void **state) {
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/sh_test_bpe.XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* learns the 400-token vocabulary of the corpus and loads it as a tokenizer */
static tok *learn(const char *file, bpe_vocab *v) {
    bpe_params p;
    bpe_params_default(&p, 400);
    if (bpe_learn(v, corpus, sizeof corpus - 1, &p)) fail_msg("bpe_learn: %s", sh_error_last());
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    gguf_writer *w = NULL;
    assert_int_equal(gguf_writer_new(&w), 0);
    assert_int_equal(gguf_w_str(w, "general.architecture", "llama"), 0);
    assert_int_equal(bpe_write_kv(w, v, &p), 0);
    assert_int_equal(gguf_writer_write(w, path), 0);
    gguf_writer_free(w);
    gguf *g = NULL;
    assert_int_equal(gguf_open(&g, path), 0);
    tok *t = NULL;
    if (tok_load(&t, g)) fail_msg("tok_load: %s", sh_error_last());
    gguf_close(g);
    return t;
}

static void test_vocabulary(void **state) {
    (void)state;
    bpe_vocab v, v2;
    tok *t = learn("v.gguf", &v);
    assert_true(v.n_merges > 20 && v.n_merges <= 400 - 256 - 3);
    assert_int_equal(v.n_tokens, 256 + v.n_merges + 3);
    assert_string_equal(v.tokens[v.n_tokens - 1], "<|im_end|>");
    assert_int_equal(tok_eos(t), v.n_tokens - 1);
    assert_int_equal(tok_find(t, "<|im_start|>"), v.n_tokens - 2);
    /* byte tokens in byte order, GPT-2 mapped: ' ' is U+0120, 'A' itself */
    assert_string_equal(v.tokens[' '], "\xc4\xa0");
    assert_string_equal(v.tokens['A'], "A");
    /* the most frequent words of the corpus became single tokens */
    assert_true(tok_find(t, "shammah") >= 256 || tok_find(t, "\xc4\xa0" "shammah") >= 256);
    assert_true(tok_find(t, "\xc4\xa0" "daemon") >= 256);
    /* deterministic */
    tok *t2 = learn("v2.gguf", &v2);
    assert_int_equal(v.n_merges, v2.n_merges);
    for (int32_t i = 0; i < v.n_merges; i++) assert_string_equal(v.merges[i], v2.merges[i]);
    /* round trip of the corpus and of text it never saw */
    static const char *const texts[] = {corpus, "Zebra quartz 987 \xe4\xb8\xad\xe6\x96\x87 <|im_end|>\n\t "};
    for (int k = 0; k < 2; k++) {
        int32_t ids[4096];
        int64_t n;
        assert_int_equal(tok_encode(t, texts[k], strlen(texts[k]), 0, 0, ids, 4096, &n), 0);
        char out[8192];
        size_t o = 0;
        for (int64_t i = 0; i < n; i++) o += (size_t)tok_piece(t, ids[i], 1, out + o, (int64_t)(sizeof out - o));
        assert_int_equal(o, strlen(texts[k]));
        assert_memory_equal(out, texts[k], o);
        if (k == 0) assert_true(n < (int64_t)(sizeof corpus - 1) * 2 / 3); /* it compresses */
    }
    tok_free(t);
    tok_free(t2);
    bpe_vocab_free(&v);
    bpe_vocab_free(&v2);
}

/* ids llama.cpp's tokenizer gives with the learnt vocabulary (tok_test v.gguf --text ...) */
static void test_matches_llama_cpp(void **state) {
    (void)state;
    bpe_vocab v;
    tok *t = learn("v.gguf", &v);
    static const char text[] = "shammah daemon-start starts the daemon; see config.toml [server] "
                               "bind=127.0.0.1:11434 \xe2\x80\x94 caf\xc3\xa9 don't\n\n  x";
    static const int32_t want[] = {266, 283, 45, 282, 116, 294, 280, 271, 283, 59, 32, 115, 101, 101, 273, 308, 46,
                                   116, 111, 109, 108, 286, 115, 257, 118, 257, 93, 287, 105, 264, 61, 49,
                                   50, 55, 46, 48, 46, 48, 46, 49, 58, 49, 49, 52, 51, 52, 32, 226, 128,
                                   148, 273, 97, 102, 195, 169, 258, 256, 295, 10, 10, 32, 32, 120};
    int32_t ids[256];
    int64_t n;
    assert_int_equal(tok_encode(t, text, sizeof text - 1, 0, 0, ids, 256, &n), 0);
    assert_int_equal(n, (int64_t)(sizeof want / sizeof *want));
    assert_memory_equal(ids, want, sizeof want);
    tok_free(t);
    bpe_vocab_free(&v);
}

static void test_errors(void **state) {
    (void)state;
    bpe_vocab v;
    bpe_params p;
    bpe_params_default(&p, 259); /* no room beyond bytes and specials */
    assert_int_equal(bpe_learn(&v, corpus, 10, &p), SH_EINVAL);
    bpe_vocab_free(&v);
    bpe_params_default(&p, 1000);
    p.pre = "no-such-pre";
    assert_int_equal(bpe_learn(&v, corpus, 10, &p), SH_EUNSUPPORTED);
    bpe_vocab_free(&v);
    bpe_params_default(&p, 1000); /* an empty corpus gives the bytes and the specials */
    assert_int_equal(bpe_learn(&v, "", 0, &p), 0);
    assert_int_equal(v.n_tokens, 259);
    bpe_vocab_free(&v);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vocabulary),
        cmocka_unit_test(test_matches_llama_cpp),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
