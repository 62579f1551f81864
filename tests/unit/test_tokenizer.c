/* test_tokenizer.c - tokenizer against llama.cpp: the gold vectors shipped with llama.cpp
 * (tests/fixtures/vocab/ggml-vocab-*.gguf.inp/.out, tokenized without BOS and without special
 * parsing), extra strings checked live against llama.cpp and stored below, special tokens,
 * BOS, decoding, the streaming detokenizer and load errors. */
#include "testutil.h"

#include <unistd.h>

#include "base/status.h"
#include "engine/gguf.h"
#include "engine/tokenizer.h"

#define VOCAB(name) FIXTURES "/vocab/ggml-vocab-" name ".gguf"
#define MAX_IDS 4096

typedef struct {
    gguf *g;
    tok *t;
} vocab;

static vocab open_vocab(const char *path) {
    vocab v = {0};
    int rc = gguf_open(&v.g, path);
    if (rc) fprintf(stderr, "%s: %s\n", path, sh_error_last());
    assert_int_equal(rc, SH_OK);
    rc = tok_load(&v.t, v.g);
    if (rc) fprintf(stderr, "%s: %s\n", path, sh_error_last());
    assert_int_equal(rc, SH_OK);
    return v;
}

static void close_vocab(vocab *v) {
    tok_free(v->t);
    gguf_close(v->g);
}

static char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)sz + 1);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)sz, f), (size_t)sz);
    b[sz] = 0;
    fclose(f);
    *n = (size_t)sz;
    return b;
}

/* ids as text "1 2 3" */
static int64_t parse_ids(const char *s, int32_t *ids, int64_t cap) {
    int64_t n = 0;
    char *e;
    for (;;) {
        while (*s == ' ') s++;
        if (!*s || *s == '\n') break;
        long v = strtol(s, &e, 10);
        assert_true(e != s);
        assert_true(n < cap);
        ids[n++] = (int32_t)v;
        s = e;
    }
    return n;
}

static void print_ids(const char *label, const int32_t *ids, int64_t n) {
    fprintf(stderr, "%s:", label);
    for (int64_t i = 0; i < n; i++) fprintf(stderr, " %d", ids[i]);
    fprintf(stderr, "\n");
}

static void expect_ids(const tok *t, const char *text, size_t len, int add_bos, int special,
                       const char *want) {
    int32_t got[MAX_IDS], exp[MAX_IDS];
    int64_t n = 0;
    int rc = tok_encode(t, text, len, add_bos, special, got, MAX_IDS, &n);
    assert_int_equal(rc, SH_OK);
    int64_t ne = parse_ids(want, exp, MAX_IDS);
    int same = ne == n && memcmp(got, exp, (size_t)n * sizeof *got) == 0;
    if (!same) {
        fprintf(stderr, "mismatch for \"%.*s\"\n", (int)len, text);
        print_ids("  want", exp, ne);
        print_ids("  got ", got, n);
    }
    assert_true(same);
}

/* Concatenated pieces of ids (render_special as given); caller frees. */
static char *detok(const tok *t, const int32_t *ids, int64_t n, int render_special, size_t *len) {
    size_t cap = 16, w = 0;
    char *s = malloc(cap);
    assert_non_null(s);
    for (int64_t i = 0; i < n; i++) {
        int64_t k = tok_piece(t, ids[i], render_special, NULL, 0);
        assert_true(k >= 0);
        while (w + (size_t)k + 1 > cap) {
            cap *= 2;
            s = realloc(s, cap);
            assert_non_null(s);
        }
        assert_int_equal(tok_piece(t, ids[i], render_special, s + w, k), k);
        w += (size_t)k;
    }
    s[w] = 0;
    *len = w;
    return s;
}

/* Strict UTF-8 (no overlong forms, surrogates or values above U+10FFFF). */
static int valid_utf8(const char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        size_t l = c < 0x80 ? 1 : (c >= 0xc2 && c <= 0xdf) ? 2 : (c >> 4) == 14 ? 3
                 : (c >= 0xf0 && c <= 0xf4) ? 4 : 0;
        if (!l || i + l > n) return 0;
        for (size_t j = 1; j < l; j++)
            if (((unsigned char)s[i + j] & 0xc0) != 0x80) return 0;
        unsigned char d = l > 1 ? (unsigned char)s[i + 1] : 0;
        if ((c == 0xe0 && d < 0xa0) || (c == 0xed && d >= 0xa0) || (c == 0xf0 && d < 0x90) ||
            (c == 0xf4 && d >= 0x90))
            return 0;
        i += l;
    }
    return 1;
}

/* Runs a gold file pair; also checks that decoding gives the input back. */
static void run_gold(const char *name, int spm) {
    char path[256], pin[300], pout[300];
    snprintf(path, sizeof path, FIXTURES "/vocab/ggml-vocab-%s.gguf", name);
    snprintf(pin, sizeof pin, "%s.inp", path);
    snprintf(pout, sizeof pout, "%s.out", path);
    vocab v = open_vocab(path);
    size_t ni, no;
    char *si = slurp(pin, &ni), *so = slurp(pout, &no);
    const char *sep = "\n__ggml_vocab_test__\n";
    char *pi = si, *po = so;
    int cases = 0, fails = 0, roundtrip_fails = 0;
    while (pi && *pi && po && *po) {
        char *ei = strstr(pi, sep);
        if (ei) *ei = 0;
        char *eo = strchr(po, '\n');
        if (eo) *eo = 0;
        int32_t got[MAX_IDS], exp[MAX_IDS];
        int64_t n = 0;
        assert_int_equal(tok_encode(v.t, pi, strlen(pi), 0, 0, got, MAX_IDS, &n), SH_OK);
        int64_t ne = parse_ids(po, exp, MAX_IDS);
        cases++;
        if (ne != n || memcmp(got, exp, (size_t)n * sizeof *got) != 0) {
            fails++;
            fprintf(stderr, "%s: FAIL \"%s\"\n", name, pi);
            print_ids("  want", exp, ne);
            print_ids("  got ", got, n);
        } else if (valid_utf8(pi, strlen(pi))) {
            size_t dl;
            char *d = detok(v.t, got, n, 0, &dl);
            /* SentencePiece adds one space in front of the text */
            const char *dd = d;
            if (spm && *pi) {
                if (dl > 0 && d[0] == ' ') dd++, dl--;
            }
            if (dl != strlen(pi) || memcmp(dd, pi, dl) != 0) {
                roundtrip_fails++;
                fprintf(stderr, "%s: round trip of \"%s\" gave \"%s\"\n", name, pi, dd);
            }
            free(d);
        }
        pi = ei ? ei + strlen(sep) : NULL;
        po = eo ? eo + 1 : NULL;
    }
    fprintf(stderr, "%s: %d gold cases, %d failed, %d round trips failed\n", name, cases, fails,
            roundtrip_fails);
    assert_true(cases > 30);
    assert_int_equal(fails, 0);
    assert_int_equal(roundtrip_fails, 0);
    free(si);
    free(so);
    close_vocab(&v);
}

static void test_gold_qwen2(void **s) { (void)s; run_gold("qwen2", 0); }
static void test_gold_llama_bpe(void **s) { (void)s; run_gold("llama-bpe", 0); }
static void test_gold_llama_spm(void **s) { (void)s; run_gold("llama-spm", 1); }
static void test_gold_gpt2(void **s) { (void)s; run_gold("gpt-2", 0); }


/* ---- extra strings, expectations from llama.cpp (tok_test / llama_tokenize, live) ---- */
typedef struct {
    const char *vocab;
    const char *text;
    int special;
    int add_bos;
    const char *ids;
} live_case;

static const live_case live_cases[] = {
    {"qwen2", "int main(void) {\n    printf(\"%d\\n\", x[i] >= 0 ? 1 : -1);\n\treturn 0;\n}\n", 0, 0, "396 1887 4333 8 341 262 4100 4430 67 1699 497 856 989 60 2604 220 15 937 220 16 549 481 16 317 853 220 15 280 532"},
    {"qwen2", "def f(x):\n    return x**2  # square\n\n\n", 0, 0, "750 282 2075 982 262 470 856 334 17 220 671 9334 1406"},
    {"qwen2", "\xc3\x9cn\xc3\xaf" "c\xc3\xb6" "d\xc3\xa9 fa\xc3\xa7" "ade na\xc3\xafve \xe2\x80\x94 \xe2\x80\x9cquotes\xe2\x80\x9d \xe2\x80\x98single\xe2\x80\x99 \xc2\xabguillemets\xc2\xbb \xe2\x80\xa6 \xc2\xa1\xc2\xbf", 0, 0, "52491 77 37572 66 2956 128505 94872 1021 94880 586 1959 1036 53282 854 3369 15338 527 12486 8717 321 3433 1415 12992 4593 48813 30182"},
    {"qwen2", "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xe3\x81\xae\xe3\x83\x86\xe3\x82\xad\xe3\x82\xb9\xe3\x83\x88\xe3\x81\xa8\xe4\xb8\xad\xe6\x96\x87\xe6\x96\x87\xe6\x9c\xac\xef\xbc\x8c\xe8\xbf\x98\xe6\x9c\x89\xed\x95\x9c\xea\xb5\xad\xec\x96\xb4 \xed\x85\x8d\xec\x8a\xa4\xed\x8a\xb8\xe3\x80\x82", 0, 0, "101059 102819 15767 56833 61803 70534 19182 104811 108704 3837 100626 23573 124785 31079 10764 44104 53189 1773"},
    {"qwen2", "emoji \xf0\x9f\x99\x82\xf0\x9f\x99\x83 \xf0\x9f\x91\xa8\xe2\x80\x8d\xf0\x9f\x91\xa9\xe2\x80\x8d\xf0\x9f\x91\xa7\xe2\x80\x8d\xf0\x9f\x91\xa6 \xf0\x9f\x8f\xb3\xef\xb8\x8f\xe2\x80\x8d\xf0\x9f\x8c\x88 \xe2\x9c\x94\xef\xb8\x8f \xe2\x9d\xa4 \xf0\x9f\x87\xab\xf0\x9f\x87\xb7", 0, 0, "37523 27484 145868 61804 101 378 235 145233 378 235 145665 378 235 145988 11162 237 111 30543 378 235 145354 57156 30543 70470 11162 229 104 145070"},
    {"qwen2", "numbers 1 12 123 1234 12345 3.14159 -42 1,000,000 0x1F \xd9\xa1\xd9\xa2\xd9\xa3 \xc2\xbd \xc2\xb2", 0, 0, "37378 220 16 220 16 17 220 16 17 18 220 16 17 18 19 220 16 17 18 19 20 220 18 13 16 19 16 20 24 481 19 17 220 16 11 15 15 15 11 15 15 15 220 15 87 16 37 220 149 94 149 95 149 96 220 26062 220 29456"},
    {"qwen2", "spaces   runs\t\ttabs \xc2\xa0nbsp\xe2\x80\x83" "em\xe3\x80\x80ideo \xc2\x85nel end   ", 0, 0, "44285 256 8473 197 3244 3435 220 4102 5674 378 225 336 22441 1888 220 126 227 8138 835 262"},
    {"qwen2", "\n\n\n", 0, 0, "1406"},
    {"qwen2", "trailing spaces   ", 0, 0, "376 14277 12621 262"},
    {"qwen2", "DON'T I'M WE'LL THEY'RE YOU'VE HE'D IT'S don't 'quoted' ''", 0, 0, "84641 17323 358 27603 19677 6 4086 62493 94153 14985 6 4491 11685 27705 8700 13272 1513 944 364 63725 6 3355"},
    {"qwen2", "e\xcc\x81 a\xcc\x88 n\xcc\x83 combining", 0, 0, "68 53839 264 136 230 308 136 225 34171"},
    {"qwen2", "\r\n\r\nwindows\r\nlines\r", 0, 0, "871 27077 319 7969 201"},
    {"qwen2", "mixed: \xce\xb1\xce\xb2\xce\xb3 \xce\x91\xce\x92\xce\x93 \xd0\xba\xd0\xb8\xd1\x80\xd0\xb8\xd0\xbb\xd0\xbb\xd0\xb8\xd1\x86\xd0\xb0 \xd7\xa2\xd7\x91\xd7\xa8\xd7\x99\xd7\xaa \xd8\xa7\xd9\x84\xd8\xb9\xd8\xb1\xd8\xa8\xd9\x8a\xd8\xa9 \xe0\xa4\xb9\xe0\xa4\xbf\xe0\xa4\xa8\xe0\xa5\x8d\xe0\xa4\xa6\xe0\xa5\x80 \xe0\xb9\x84\xe0\xb8\x97\xe0\xb8\xa2", 0, 0, "56685 25 19043 51255 59374 7851 239 144946 145281 7665 1802 30103 3038 66122 1478 131917 123826 129071 84310 42311 101 30484 99 43647 220 125451"},
    {"qwen2", "URL https://example.com/path?q=1&r=2#frag <b>html</b> @user #tag $100 50% a+b=c ~tilde `tick`", 0, 0, "3144 3703 1110 8687 905 50976 43782 28 16 60617 28 17 2 33198 366 65 29 1551 522 65 29 569 872 671 4578 400 16 15 15 220 20 15 4 264 35093 19535 3968 1646 450 1565 34155 63"},
    {"qwen2", "\xe2\x80\x8b\xe2\x80\x8d\xef\xbb\xbfzero width", 0, 0, "15692 378 235 3225 14154 2374"},
    {"qwen2", "<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n", 1, 0, "151644 872 198 14990 151645 198 151644 77091 198"},
    {"qwen2", "<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n", 0, 0, "27 91 318 4906 91 29 872 198 14990 27 91 318 6213 91 397 27 91 318 4906 91 29 77091 198"},
    {"qwen2", "a</s>b <s> <unk> [PAD151646] <|endoftext|>x", 1, 0, "64 128247 65 366 82 29 366 3122 29 220 151646 220 151643 87"},
    {"qwen2", "a</s>b <s> <unk> [PAD151646] <|endoftext|>x", 0, 0, "64 522 82 51407 366 82 29 366 3122 29 220 151646 82639 8691 723 427 91 29 87"},
    {"qwen2", "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>", 1, 0, "27 91 7265 3575 4326 91 1784 91 2468 8757 842 91 29 872 27 91 408 8757 842 91 1339 6023 27 91 68 354 842 91 29"},
    {"qwen2", "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>", 0, 0, "27 91 7265 3575 4326 91 1784 91 2468 8757 842 91 29 872 27 91 408 8757 842 91 1339 6023 27 91 68 354 842 91 29"},
    {"qwen2", "Hello world", 0, 1, "9707 1879"},
    {"qwen2", "", 0, 1, ""},
    {"qwen2", "<|im_start|>hi", 1, 1, "151644 6023"},
    {"llama-bpe", "int main(void) {\n    printf(\"%d\\n\", x[i] >= 0 ? 1 : -1);\n\treturn 0;\n}\n", 0, 0, "396 1925 4431 8 341 262 4192 4530 67 1734 498 865 1004 60 2669 220 15 949 220 16 551 482 16 317 862 220 15 280 534"},
    {"llama-bpe", "def f(x):\n    return x**2  # square\n\n\n", 0, 0, "755 282 2120 997 262 471 865 334 17 220 674 9518 1432"},
    {"llama-bpe", "\xc3\x9cn\xc3\xaf" "c\xc3\xb6" "d\xc3\xa9 fa\xc3\xa7" "ade na\xc3\xafve \xe2\x80\x94 \xe2\x80\x9cquotes\xe2\x80\x9d \xe2\x80\x98single\xe2\x80\x99 \xc2\xabguillemets\xc2\xbb \xe2\x80\xa6 \xc2\xa1\xc2\xbf", 0, 0, "53591 77 38672 66 3029 67 978 95972 1037 95980 588 2001 1054 54382 863 3451 15698 529 12769 8890 321 3516 1441 13289 4696 49913 31282"},
    {"llama-bpe", "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xe3\x81\xae\xe3\x83\x86\xe3\x82\xad\xe3\x82\xb9\xe3\x83\x88\xe3\x81\xa8\xe4\xb8\xad\xe6\x96\x87\xe6\x96\x87\xe6\x9c\xac\xef\xbc\x8c\xe8\xbf\x98\xe6\x9c\x89\xed\x95\x9c\xea\xb5\xad\xec\x96\xb4 \xed\x85\x8d\xec\x8a\xa4\xed\x8a\xb8\xe3\x80\x82", 0, 0, "102433 102158 16144 57933 62903 71634 19732 108891 17161 22656 110235 19361 112699 32179 10997 45204 54289 1811"},
    {"llama-bpe", "emoji \xf0\x9f\x99\x82\xf0\x9f\x99\x83 \xf0\x9f\x91\xa8\xe2\x80\x8d\xf0\x9f\x91\xa9\xe2\x80\x8d\xf0\x9f\x91\xa7\xe2\x80\x8d\xf0\x9f\x91\xa6 \xf0\x9f\x8f\xb3\xef\xb8\x8f\xe2\x80\x8d\xf0\x9f\x8c\x88 \xe2\x9c\x94\xef\xb8\x8f \xe2\x9d\xa4 \xf0\x9f\x87\xab\xf0\x9f\x87\xb7", 0, 0, "38623 28584 9468 247 225 62904 101 102470 9468 239 102 102470 9468 239 100 102470 9468 239 99 11410 237 111 31643 102470 9468 234 230 58256 31643 71570 11410 229 104 9468 229 115"},
    {"llama-bpe", "numbers 1 12 123 1234 12345 3.14159 -42 1,000,000 0x1F \xd9\xa1\xd9\xa2\xd9\xa3 \xc2\xbd \xc2\xb2", 0, 0, "38478 220 16 220 717 220 4513 220 4513 19 220 4513 1774 220 18 13 9335 2946 482 2983 220 16 11 931 11 931 220 15 87 16 37 220 109610 110546 117413 220 27154 220 30556"},
    {"llama-bpe", "spaces   runs\t\ttabs \xc2\xa0nbsp\xe2\x80\x83" "em\xe3\x80\x80ideo \xc2\x85nel end   ", 0, 0, "45385 256 8640 197 3324 3518 220 4194 5792 116503 336 23249 1926 220 116360 8301 842 262"},
    {"llama-bpe", "\n\n\n", 0, 0, "1432"},
    {"llama-bpe", "trailing spaces   ", 0, 0, "376 14612 12908 262"},
    {"llama-bpe", "DON'T I'M WE'LL THEY'RE YOU'VE HE'D IT'S don't 'quoted' ''", 0, 0, "85741 17773 358 28703 20255 6 4178 63593 95253 15334 6 4592 11947 28805 8871 13575 1541 956 364 64825 6 3436"},
    {"llama-bpe", "e\xcc\x81 a\xcc\x88 n\xcc\x83 combining", 0, 0, "68 54939 264 127104 308 119074 35271"},
    {"llama-bpe", "\r\n\r\nwindows\r\nlines\r", 0, 0, "881 28176 319 8128 201"},
    {"llama-bpe", "mixed: \xce\xb1\xce\xb2\xce\xb3 \xce\x91\xce\x92\xce\x93 \xd0\xba\xd0\xb8\xd1\x80\xd0\xb8\xd0\xbb\xd0\xbb\xd0\xb8\xd1\x86\xd0\xb0 \xd7\xa2\xd7\x91\xd7\xa8\xd7\x99\xd7\xaa \xd8\xa7\xd9\x84\xd8\xb9\xd8\xb1\xd8\xa8\xd9\x8a\xd8\xa9 \xe0\xa4\xb9\xe0\xa4\xbf\xe0\xa4\xa8\xe0\xa5\x8d\xe0\xa4\xa6\xe0\xa5\x80 \xe0\xb9\x84\xe0\xb8\x97\xe0\xb8\xa2", 0, 0, "57785 25 19581 52355 60474 100423 104319 101812 116624 31203 3114 67222 1506 17732 95 76625 51326 43336 103 110356 85410 100556 101102 44747 124554"},
    {"llama-bpe", "URL https://example.com/path?q=1&r=2#frag <b>html</b> @user #tag $100 50% a+b=c ~tilde `tick`", 0, 0, "3222 3788 1129 8858 916 52076 44882 28 16 61717 28 17 2 34298 366 65 29 1580 524 65 29 571 882 674 4681 400 1041 220 1135 4 264 36193 20105 4056 1678 451 1595 35255 63"},
    {"llama-bpe", "\xe2\x80\x8b\xe2\x80\x8d\xef\xbb\xbfzero width", 0, 0, "16067 102470 3305 14486 2430"},
    {"llama-bpe", "<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n", 1, 0, "27 91 318 5011 91 29 882 198 15339 27 91 318 6345 91 397 27 91 318 5011 91 29 78191 198"},
    {"llama-bpe", "<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n", 0, 0, "27 91 318 5011 91 29 882 198 15339 27 91 318 6345 91 397 27 91 318 5011 91 29 78191 198"},
    {"llama-bpe", "a</s>b <s> <unk> [PAD151646] <|endoftext|>x", 1, 0, "64 524 82 52507 366 82 29 366 3200 29 510 44918 9690 22642 60 83739 8862 728 428 91 29 87"},
    {"llama-bpe", "a</s>b <s> <unk> [PAD151646] <|endoftext|>x", 0, 0, "64 524 82 52507 366 82 29 366 3200 29 510 44918 9690 22642 60 83739 8862 728 428 91 29 87"},
    {"llama-bpe", "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>", 1, 0, "128000 128006 882 128007 271 6151 128009"},
    {"llama-bpe", "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>", 0, 0, "27 91 7413 3659 4424 91 1822 91 2527 8932 851 91 29 882 27 91 408 8932 851 91 1363 6151 27 91 68 354 851 91 29"},
    {"llama-bpe", "Hello world", 0, 1, "128000 9906 1917"},
    {"llama-bpe", "", 0, 1, "128000"},
    {"llama-bpe", "<|im_start|>hi", 1, 1, "128000 27 91 318 5011 91 29 6151"},
    {"llama-spm", "int main(void) {\n    printf(\"%d\\n\", x[i] >= 0 ? 1 : -1);\n\treturn 0;\n}\n", 0, 0, "938 1667 29898 5405 29897 426 13 1678 7571 11702 29881 29905 29876 613 921 29961 29875 29962 6736 29871 29900 1577 29871 29896 584 448 29896 416 13 12 2457 29871 29900 29936 13 29913 13"},
    {"llama-spm", "def f(x):\n    return x**2  # square\n\n\n", 0, 0, "822 285 29898 29916 1125 13 1678 736 921 1068 29906 29871 396 6862 13 13 13"},
    {"llama-spm", "\xc3\x9cn\xc3\xaf" "c\xc3\xb6" "d\xc3\xa9 fa\xc3\xa7" "ade na\xc3\xafve \xe2\x80\x94 \xe2\x80\x9cquotes\xe2\x80\x9d \xe2\x80\x98single\xe2\x80\x99 \xc2\xabguillemets\xc2\xbb \xe2\x80\xa6 \xc2\xa1\xc2\xbf", 0, 0, "7189 29876 30085 29883 9289 29948 2258 30019 1943 1055 30085 345 813 1346 339 4769 30024 5129 14369 30010 859 2543 1924 29885 1691 30007 16088 28534 30158"},
    {"llama-spm", "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xe3\x81\xae\xe3\x83\x86\xe3\x82\xad\xe3\x82\xb9\xe3\x83\x88\xe3\x81\xa8\xe4\xb8\xad\xe6\x96\x87\xe6\x96\x87\xe6\x9c\xac\xef\xbc\x8c\xe8\xbf\x98\xe6\x9c\x89\xed\x95\x9c\xea\xb5\xad\xec\x96\xb4 \xed\x85\x8d\xec\x8a\xa4\xed\x8a\xb8\xe3\x80\x82", 0, 0, "29871 30325 30346 30968 30199 30572 30454 30255 30279 30364 30275 30333 30333 30346 30214 31994 30417 30877 31293 31129 29871 240 136 144 30784 31177 30267"},
    {"llama-spm", "emoji \xf0\x9f\x99\x82\xf0\x9f\x99\x83 \xf0\x9f\x91\xa8\xe2\x80\x8d\xf0\x9f\x91\xa9\xe2\x80\x8d\xf0\x9f\x91\xa7\xe2\x80\x8d\xf0\x9f\x91\xa6 \xf0\x9f\x8f\xb3\xef\xb8\x8f\xe2\x80\x8d\xf0\x9f\x8c\x88 \xe2\x9c\x94\xef\xb8\x8f \xe2\x9d\xa4 \xf0\x9f\x87\xab\xf0\x9f\x87\xb7", 0, 0, "953 29877 2397 29871 243 162 156 133 243 162 156 134 29871 243 162 148 171 30722 243 162 148 172 30722 243 162 148 170 30722 243 162 148 169 29871 243 162 146 182 30598 30722 243 162 143 139 29871 30973 30598 29871 229 160 167 29871 243 162 138 174 243 162 138 186"},
    {"llama-spm", "numbers 1 12 123 1234 12345 3.14159 -42 1,000,000 0x1F \xd9\xa1\xd9\xa2\xd9\xa3 \xc2\xbd \xc2\xb2", 0, 0, "3694 29871 29896 29871 29896 29906 29871 29896 29906 29941 29871 29896 29906 29941 29946 29871 29896 29906 29941 29946 29945 29871 29941 29889 29896 29946 29896 29945 29929 448 29946 29906 29871 29896 29892 29900 29900 29900 29892 29900 29900 29900 29871 29900 29916 29896 29943 29871 220 164 220 165 220 166 29871 30226 29871 30088"},
    {"llama-spm", "spaces   runs\t\ttabs \xc2\xa0nbsp\xe2\x80\x83" "em\xe3\x80\x80ideo \xc2\x85nel end   ", 0, 0, "8162 259 6057 12 12 21175 20246 14239 30363 331 30358 3007 29871 197 136 9139 1095 1678"},
    {"llama-spm", "\n\n\n", 0, 0, "29871 13 13 13"},
    {"llama-spm", "trailing spaces   ", 0, 0, "25053 8162 1678"},
    {"llama-spm", "DON'T I'M WE'LL THEY'RE YOU'VE HE'D IT'S don't 'quoted' ''", 0, 0, "360 1164 29915 29911 306 29915 29924 399 29923 29915 2208 6093 29979 29915 1525 612 27269 29915 12064 17714 29915 29928 13315 29915 29903 1016 29915 29873 525 339 5715 29915 6629"},
    {"llama-spm", "e\xcc\x81 a\xcc\x88 n\xcc\x83 combining", 0, 0, "321 30103 263 31719 302 30478 29299"},
    {"llama-spm", "\r\n\r\nwindows\r\nlines\r", 0, 0, "6756 13 30004 13 10499 30004 13 9012 30004"},
    {"llama-spm", "mixed: \xce\xb1\xce\xb2\xce\xb3 \xce\x91\xce\x92\xce\x93 \xd0\xba\xd0\xb8\xd1\x80\xd0\xb8\xd0\xbb\xd0\xbb\xd0\xb8\xd1\x86\xd0\xb0 \xd7\xa2\xd7\x91\xd7\xa8\xd7\x99\xd7\xaa \xd8\xa7\xd9\x84\xd8\xb9\xd8\xb1\xd8\xa8\xd9\x8a\xd8\xa9 \xe0\xa4\xb9\xe0\xa4\xbf\xe0\xa4\xa8\xe0\xa5\x8d\xe0\xa4\xa6\xe0\xa5\x80 \xe0\xb9\x84\xe0\xb8\x97\xe0\xb8\xa2", 0, 0, "12849 29901 19883 30187 30197 29871 30292 30506 30339 8094 641 15216 3432 29871 30324 30276 30236 30196 30286 24508 30218 30156 30177 30163 30242 29871 30714 30436 30424 30296 30694 30580 29871 31252 30595 30549"},
    {"llama-spm", "URL https://example.com/path?q=1&r=2#frag <b>html</b> @user #tag $100 50% a+b=c ~tilde `tick`", 0, 0, "3988 2045 597 4773 29889 510 29914 2084 29973 29939 29922 29896 29987 29878 29922 29906 29937 29888 1431 529 29890 29958 1420 829 29890 29958 732 1792 396 4039 395 29896 29900 29900 29871 29945 29900 29995 263 29974 29890 29922 29883 3695 5891 421 24667 29952"},
    {"llama-spm", "\xe2\x80\x8b\xe2\x80\x8d\xef\xbb\xbfzero width", 0, 0, "29871 30166 30722 30143 9171 2920"},
    {"llama-spm", "<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n", 1, 0, "529 29989 326 29918 2962 29989 29958 1792 13 12199 29966 29989 326 29918 355 29989 29958 13 29966 29989 326 29918 2962 29989 29958 465 22137 13"},
    {"llama-spm", "<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n", 0, 0, "529 29989 326 29918 2962 29989 29958 1792 13 12199 29966 29989 326 29918 355 29989 29958 13 29966 29989 326 29918 2962 29989 29958 465 22137 13"},
    {"llama-spm", "a</s>b <s> <unk> [PAD151646] <|endoftext|>x", 1, 0, "263 2 289 29871 1 259 0 29871 518 29925 3035 29896 29945 29896 29953 29946 29953 29962 529 29989 355 974 726 29989 29958 29916"},
    {"llama-spm", "a</s>b <s> <unk> [PAD151646] <|endoftext|>x", 0, 0, "263 829 29879 29958 29890 529 29879 29958 529 2960 29958 518 29925 3035 29896 29945 29896 29953 29946 29953 29962 529 29989 355 974 726 29989 29958 29916"},
    {"llama-spm", "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>", 1, 0, "529 29989 463 29918 974 29918 726 29989 5299 29989 2962 29918 6672 29918 333 29989 29958 1792 29966 29989 355 29918 6672 29918 333 29989 29958 13 13 2918 29966 29989 29872 327 29918 333 29989 29958"},
    {"llama-spm", "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>", 0, 0, "529 29989 463 29918 974 29918 726 29989 5299 29989 2962 29918 6672 29918 333 29989 29958 1792 29966 29989 355 29918 6672 29918 333 29989 29958 13 13 2918 29966 29989 29872 327 29918 333 29989 29958"},
    {"llama-spm", "Hello world", 0, 1, "1 15043 3186"},
    {"llama-spm", "", 0, 1, "1"},
    {"llama-spm", "<|im_start|>hi", 1, 1, "1 529 29989 326 29918 2962 29989 29958 2918"},
    {"gpt-2", "int main(void) {\n    printf(\"%d\\n\", x[i] >= 0 ? 1 : -1);\n\treturn 0;\n}\n", 0, 0, "600 1388 7 19382 8 1391 198 220 220 220 30812 7203 4 67 59 77 1600 2124 58 72 60 18189 657 5633 352 1058 532 16 1776 198 197 7783 657 26 198 92 198"},
    {"gpt-2", "def f(x):\n    return x**2  # square\n\n\n", 0, 0, "4299 277 7 87 2599 198 220 220 220 1441 2124 1174 17 220 1303 6616 628 198"},
    {"gpt-2", "\xc3\x9cn\xc3\xaf" "c\xc3\xb6" "d\xc3\xa9 fa\xc3\xa7" "ade na\xc3\xafve \xe2\x80\x94 \xe2\x80\x9cquotes\xe2\x80\x9d \xe2\x80\x98single\xe2\x80\x99 \xc2\xabguillemets\xc2\xbb \xe2\x80\xa6 \xc2\xa1\xc2\xbf", 0, 0, "127 250 77 26884 66 9101 67 2634 24685 16175 671 41492 851 564 250 421 6421 447 251 564 246 29762 447 247 21110 5162 8270 76 1039 17730 3926 1587 94 126 123"},
    {"gpt-2", "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xe3\x81\xae\xe3\x83\x86\xe3\x82\xad\xe3\x82\xb9\xe3\x83\x88\xe3\x81\xa8\xe4\xb8\xad\xe6\x96\x87\xe6\x96\x87\xe6\x9c\xac\xef\xbc\x8c\xe8\xbf\x98\xe6\x9c\x89\xed\x95\x9c\xea\xb5\xad\xec\x96\xb4 \xed\x85\x8d\xec\x8a\xa4\xed\x8a\xb8\xe3\x80\x82", 0, 0, "33768 98 17312 105 45739 252 5641 24336 25084 43302 30201 40792 23877 229 23877 229 17312 105 171 120 234 32573 246 17312 231 47991 250 166 113 255 168 244 112 220 169 227 235 168 232 97 169 232 116 16764"},
    {"gpt-2", "emoji \xf0\x9f\x99\x82\xf0\x9f\x99\x83 \xf0\x9f\x91\xa8\xe2\x80\x8d\xf0\x9f\x91\xa9\xe2\x80\x8d\xf0\x9f\x91\xa7\xe2\x80\x8d\xf0\x9f\x91\xa6 \xf0\x9f\x8f\xb3\xef\xb8\x8f\xe2\x80\x8d\xf0\x9f\x8c\x88 \xe2\x9c\x94\xef\xb8\x8f \xe2\x9d\xa4 \xf0\x9f\x87\xab\xf0\x9f\x87\xb7", 0, 0, "368 31370 32485 8582 247 225 50169 101 447 235 41840 102 447 235 41840 100 447 235 41840 99 12520 237 111 37929 447 235 8582 234 230 28497 37929 43074 97 12520 229 104 8582 229 115"},
    {"gpt-2", "numbers 1 12 123 1234 12345 3.14159 -42 1,000,000 0x1F \xd9\xa1\xd9\xa2\xd9\xa3 \xc2\xbd \xc2\xb2", 0, 0, "77 17024 352 1105 17031 1105 2682 17031 2231 513 13 1415 19707 532 3682 352 11 830 11 830 657 87 16 37 18923 94 149 95 149 96 25208 1587 110"},
    {"gpt-2", "spaces   runs\t\ttabs \xc2\xa0nbsp\xe2\x80\x83" "em\xe3\x80\x80ideo \xc2\x85nel end   ", 0, 0, "2777 2114 220 220 4539 197 197 8658 82 220 1849 77 24145 447 225 368 5099 222 1651 220 126 227 4954 886 220 220 220"},
    {"gpt-2", "\n\n\n", 0, 0, "628 198"},
    {"gpt-2", "trailing spaces   ", 0, 0, "9535 4386 9029 220 220 220"},
    {"gpt-2", "DON'T I'M WE'LL THEY'RE YOU'VE HE'D IT'S don't 'quoted' ''", 0, 0, "41173 6 51 314 6 44 12887 6 3069 33302 6 2200 7013 6 6089 11179 6 35 7283 6 50 836 470 705 421 5191 6 10148"},
    {"gpt-2", "e\xcc\x81 a\xcc\x88 n\xcc\x83 combining", 0, 0, "68 136 223 257 136 230 299 136 225 19771"},
    {"gpt-2", "\r\n\r\nwindows\r\nlines\r", 0, 0, "201 198 201 198 28457 201 198 6615 201"},
    {"gpt-2", "mixed: \xce\xb1\xce\xb2\xce\xb3 \xce\x91\xce\x92\xce\x93 \xd0\xba\xd0\xb8\xd1\x80\xd0\xb8\xd0\xbb\xd0\xbb\xd0\xb8\xd1\x86\xd0\xb0 \xd7\xa2\xd7\x91\xd7\xa8\xd7\x99\xd7\xaa \xd8\xa7\xd9\x84\xd8\xb9\xd8\xb1\xd8\xa8\xd9\x8a\xd8\xa9 \xe0\xa4\xb9\xe0\xa4\xbf\xe0\xa4\xa8\xe0\xa5\x8d\xe0\xa4\xa6\xe0\xa5\x80 \xe0\xb9\x84\xe0\xb8\x97\xe0\xb8\xa2", 0, 0, "76 2966 25 26367 26638 42063 7377 239 138 240 138 241 12466 118 18849 21169 18849 30143 30143 18849 141 228 16142 14360 95 49603 37778 33951 103 28981 44690 26897 39848 22654 45632 28225 117 11976 123 11976 101 24231 235 11976 99 24231 222 220 31479 226 19567 245 19567 95"},
    {"gpt-2", "URL https://example.com/path?q=1&r=2#frag <b>html</b> @user #tag $100 50% a+b=c ~tilde `tick`", 0, 0, "21886 3740 1378 20688 13 785 14 6978 30 80 28 16 5 81 28 17 2 8310 363 1279 65 29 6494 3556 65 29 2488 7220 1303 12985 720 3064 2026 4 257 10 65 28 66 5299 83 44725 4600 42298 63"},
    {"gpt-2", "\xe2\x80\x8b\xe2\x80\x8d\xef\xbb\xbfzero width", 0, 0, "9525 447 235 171 119 123 22570 9647"},
    {"gpt-2", "<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n", 1, 0, "27 91 320 62 9688 91 29 7220 198 31373 27 91 320 62 437 91 29 198 27 91 320 62 9688 91 29 562 10167 198"},
    {"gpt-2", "<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n", 0, 0, "27 91 320 62 9688 91 29 7220 198 31373 27 91 320 62 437 91 29 198 27 91 320 62 9688 91 29 562 10167 198"},
    {"gpt-2", "a</s>b <s> <unk> [PAD151646] <|endoftext|>x", 1, 0, "64 3556 82 29 65 1279 82 29 1279 2954 29 685 47 2885 1314 1433 3510 60 220 50256 87"},
    {"gpt-2", "a</s>b <s> <unk> [PAD151646] <|endoftext|>x", 0, 0, "64 3556 82 29 65 1279 82 29 1279 2954 29 685 47 2885 1314 1433 3510 60 1279 91 437 1659 5239 91 29 87"},
    {"gpt-2", "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>", 1, 0, "27 91 27471 62 1659 62 5239 91 6927 91 9688 62 25677 62 312 91 29 7220 27 91 437 62 25677 62 312 91 29 198 198 5303 27 91 68 313 62 312 91 29"},
    {"gpt-2", "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>", 0, 0, "27 91 27471 62 1659 62 5239 91 6927 91 9688 62 25677 62 312 91 29 7220 27 91 437 62 25677 62 312 91 29 198 198 5303 27 91 68 313 62 312 91 29"},
    {"gpt-2", "Hello world", 0, 1, "15496 995"},
    {"gpt-2", "", 0, 1, ""},
    {"gpt-2", "<|im_start|>hi", 1, 1, "27 91 320 62 9688 91 29 5303"},
    {"qwen2", "\xff\xfe abc \xc3", 0, 0, "9973 39022 29333"},
    {"qwen2", "caf\xc3\xa9\xe4\xb8", 0, 0, "924 58858 9973"},
    {"qwen2", "\xc0\x80x\xc1\xbf", 0, 0, "188 87 221"},
    {"qwen2", "a\x80\x80" "b", 0, 0, "64 9973 65"},
    {"qwen2", "a\xed\xa0\x80" "b \xed\xbf\xbf", 0, 0, "64 169 63219 65 10764 123 123"},
    {"qwen2", "\xf0\x9f\x98", 0, 0, "57332"},
    {"llama-spm", "\xff\xfe abc \xc3", 0, 0, "29871 258 257 229 153 132 10736 29871 198"},
    {"llama-spm", "caf\xc3\xa9\xe4\xb8", 0, 0, "274 28059 231 187"},
    {"llama-spm", "\xc0\x80x\xc1\xbf", 0, 0, "29871 195 131 29916 196 194"},
    {"llama-spm", "a\x80\x80" "b", 0, 0, "263 131 131 29890"},
    {"llama-spm", "a\xed\xa0\x80" "b \xed\xbf\xbf", 0, 0, "263 240 163 131 29890 29871 240 194 194"},
    {"llama-spm", "\xf0\x9f\x98", 0, 0, "29871 243 162 155"},
    {"gpt-2", "\xff\xfe abc \xc3", 0, 0, "6353 450 66 20543"},
    {"gpt-2", "caf\xc3\xa9\xe4\xb8", 0, 0, "66 1878 2634 6353"},
    {"gpt-2", "\xc0\x80x\xc1\xbf", 0, 0, "188 87 221"},
    {"gpt-2", "a\x80\x80" "b", 0, 0, "64 6353 65"},
    {"gpt-2", "a\xed\xa0\x80" "b \xed\xbf\xbf", 0, 0, "64 169 254 222 65 220 169 123 123"},
    {"gpt-2", "\xf0\x9f\x98", 0, 0, "48585"},
};

static void test_live_vectors(void **st) {
    (void)st;
    const char *names[] = {"qwen2", "llama-bpe", "llama-spm", "gpt-2"};
    for (size_t k = 0; k < 4; k++) {
        char path[256];
        snprintf(path, sizeof path, FIXTURES "/vocab/ggml-vocab-%s.gguf", names[k]);
        vocab v = open_vocab(path);
        int n = 0;
        for (size_t i = 0; i < sizeof live_cases / sizeof live_cases[0]; i++) {
            const live_case *c = &live_cases[i];
            if (strcmp(c->vocab, names[k])) continue;
            expect_ids(v.t, c->text, strlen(c->text), c->add_bos, c->special, c->ids);
            n++;
        }
        assert_true(n >= 20);
        close_vocab(&v);
    }
}

/* Decoding the tokens of valid UTF-8 text gives the text back (BPE is lossless). */
static void test_roundtrip_bpe(void **st) {
    (void)st;
    const char *names[] = {"qwen2", "llama-bpe", "gpt-2"};
    for (size_t k = 0; k < 3; k++) {
        char path[256];
        snprintf(path, sizeof path, FIXTURES "/vocab/ggml-vocab-%s.gguf", names[k]);
        vocab v = open_vocab(path);
        for (size_t i = 0; i < sizeof live_cases / sizeof live_cases[0]; i++) {
            const live_case *c = &live_cases[i];
            size_t len = strlen(c->text);
            if (strcmp(c->vocab, names[k]) || !valid_utf8(c->text, len)) continue;
            int32_t ids[MAX_IDS];
            int64_t n;
            assert_int_equal(tok_encode(v.t, c->text, len, 0, c->special, ids, MAX_IDS, &n), SH_OK);
            size_t dl;
            char *d = detok(v.t, ids, n, 1, &dl);
            assert_int_equal(dl, len);
            assert_memory_equal(d, c->text, len);
            free(d);
        }
        close_vocab(&v);
    }
}

static void test_special_tokens(void **st) {
    (void)st;
    vocab q = open_vocab(VOCAB("qwen2"));
    const char *chat = "<|im_start|>user\nhi<|im_end|>";
    expect_ids(q.t, chat, strlen(chat), 0, 1, "151644 872 198 6023 151645");
    expect_ids(q.t, chat, strlen(chat), 0, 0, "27 91 318 4906 91 29 872 198 6023 27 91 318 6213 91 29");
    /* user-defined tokens are cut out even without special parsing, as in llama.cpp */
    expect_ids(q.t, "a[PAD151646]b", 13, 0, 0, "64 151646 65");
    assert_int_equal(tok_attr(q.t, 151644), TOK_ATTR_CONTROL);
    assert_int_equal(tok_attr(q.t, 151646), TOK_ATTR_USER_DEFINED);
    assert_int_equal(tok_attr(q.t, 9707), TOK_ATTR_NORMAL);
    assert_int_equal(tok_find(q.t, "<|im_end|>"), 151645);
    assert_int_equal(tok_find(q.t, "no such token text"), -1);
    /* control tokens render only on request; user-defined ones always */
    char buf[64];
    assert_int_equal(tok_piece(q.t, 151644, 0, buf, sizeof buf), 0);
    assert_int_equal(tok_piece(q.t, 151644, 1, buf, sizeof buf), 12);
    assert_memory_equal(buf, "<|im_start|>", 12);
    assert_int_equal(tok_piece(q.t, 151646, 0, buf, sizeof buf), 11);
    /* a piece longer than cap reports its full length and writes only cap bytes */
    memset(buf, 'z', sizeof buf);
    assert_int_equal(tok_piece(q.t, 151644, 1, buf, 4), 12);
    assert_memory_equal(buf, "<|imz", 5);
    close_vocab(&q);

    vocab s = open_vocab(VOCAB("llama-spm"));
    /* after a special token SPM starts a new word: llama.cpp adds the space prefix again */
    expect_ids(s.t, "<s>hi</s> x", 11, 0, 1, "1 7251 2 29871 921");
    expect_ids(s.t, "<s>hi</s> x", 11, 0, 0, "529 29879 29958 2918 829 29879 29958 921");
    assert_int_equal(tok_attr(s.t, 0), TOK_ATTR_UNKNOWN);
    assert_int_equal(tok_attr(s.t, 3), TOK_ATTR_BYTE);
    assert_int_equal(tok_piece(s.t, 3 + 0x41, 0, buf, sizeof buf), 1); /* <0x41> */
    assert_int_equal(buf[0], 'A');
    assert_int_equal(tok_piece(s.t, 0, 0, buf, sizeof buf), 0); /* <unk> */
    assert_int_equal(tok_piece(s.t, 29871, 0, buf, sizeof buf), 1); /* "▁" */
    assert_int_equal(buf[0], ' ');
    close_vocab(&s);
}

static void test_properties(void **st) {
    (void)st;
    vocab q = open_vocab(VOCAB("qwen2"));
    assert_int_equal(tok_n_vocab(q.t), 151936);
    assert_string_equal(tok_model_name(q.t), "gpt2");
    assert_string_equal(tok_pre_name(q.t), "qwen2");
    assert_int_equal(tok_bos(q.t), 151643);
    assert_int_equal(tok_eos(q.t), 151643);
    assert_int_equal(tok_eot(q.t), 151645);
    assert_int_equal(tok_pad(q.t), 151643);
    assert_int_equal(tok_add_bos(q.t), 0);
    /* the same end-of-generation set as llama.cpp, "</s>" (a normal token here) included */
    for (int32_t id = 0; id < tok_n_vocab(q.t); id++)
        assert_int_equal(tok_is_eog(q.t, id), id == 151643 || id == 151645 || id == 128247);
    assert_int_equal(tok_is_eog(q.t, -1), 0);
    assert_int_equal(tok_is_eog(q.t, 1 << 30), 0);
    expect_ids(q.t, "Hello", 5, 1, 0, "9707");
    close_vocab(&q);

    vocab l = open_vocab(VOCAB("llama-bpe"));
    assert_string_equal(tok_pre_name(l.t), "llama-bpe");
    assert_int_equal(tok_add_bos(l.t), 1);
    assert_int_equal(tok_bos(l.t), 128000);
    assert_int_equal(tok_eos(l.t), 128001);
    assert_int_equal(tok_eot(l.t), 128009);
    assert_int_equal(tok_pad(l.t), -1);
    assert_true(tok_is_eog(l.t, 128001) && tok_is_eog(l.t, 128009) && !tok_is_eog(l.t, 128000));
    expect_ids(l.t, "Hello", 5, 1, 0, "128000 9906");
    expect_ids(l.t, "Hello", 5, 0, 0, "9906");
    close_vocab(&l);

    vocab s = open_vocab(VOCAB("llama-spm"));
    assert_string_equal(tok_model_name(s.t), "llama");
    assert_int_equal(tok_add_bos(s.t), 1);
    assert_int_equal(tok_bos(s.t), 1);
    assert_int_equal(tok_eos(s.t), 2);
    assert_int_equal(tok_eot(s.t), -1);
    assert_true(tok_is_eog(s.t, 2) && !tok_is_eog(s.t, 1));
    expect_ids(s.t, "", 0, 1, 0, "1");
    expect_ids(s.t, "", 0, 0, 0, "");
    close_vocab(&s);

    vocab g = open_vocab(VOCAB("gpt-2"));
    assert_int_equal(tok_add_bos(g.t), 0);
    assert_int_equal(tok_eot(g.t), 50256);
    assert_true(tok_is_eog(g.t, 50256));
    close_vocab(&g);
}

static void test_output_bounds(void **st) {
    (void)st;
    vocab q = open_vocab(VOCAB("qwen2"));
    int32_t ids[4] = {-7, -7, -7, -7};
    int64_t n = -1;
    const char *text = "one two three four five six";
    assert_int_equal(tok_encode(q.t, text, strlen(text), 0, 0, ids, 2, &n), SH_EFULL);
    assert_int_equal(n, 6); /* the full count, to size a second call */
    assert_int_equal(ids[2], -7);
    assert_int_equal(tok_encode(q.t, text, strlen(text), 0, 0, NULL, 0, &n), SH_EFULL);
    assert_int_equal(n, 6);
    assert_int_equal(tok_encode(q.t, "", 0, 0, 0, NULL, 0, &n), SH_OK);
    assert_int_equal(n, 0);
    assert_int_equal(tok_encode(q.t, NULL, 3, 0, 0, ids, 4, &n), SH_EINVAL);
    close_vocab(&q);
}

/* ---- streaming detokenizer ---- */

static size_t push_all(const tok *t, tok_utf8_stream *s, const int32_t *ids, int64_t n, char *out) {
    size_t w = 0;
    for (int64_t i = 0; i < n; i++) {
        char chunk[512];
        int64_t k = tok_stream_push(t, s, ids[i], 0, chunk, sizeof chunk);
        assert_true(k >= 0);
        /* every chunk on its own is whole characters */
        assert_true(valid_utf8(chunk, (size_t)k));
        memcpy(out + w, chunk, (size_t)k);
        w += (size_t)k;
    }
    return w;
}

static void test_stream_bpe(void **st) {
    (void)st;
    vocab q = open_vocab(VOCAB("qwen2"));
    const char *text = "emoji \xf0\x9f\x98\x80\xf0\x9f\xa7\xa0 \xe2\x9d\xa4\xef\xb8\x8f "
                       "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e \xf0\x9f\x91\xa8\xe2\x80\x8d\xf0\x9f\x92\xbb ok";
    int32_t ids[256];
    int64_t n;
    assert_int_equal(tok_encode(q.t, text, strlen(text), 0, 0, ids, 256, &n), SH_OK);
    /* the test only means something if some token holds part of a character */
    int split = 0;
    for (int64_t i = 0; i < n; i++) {
        char p[64];
        int64_t k = tok_piece(q.t, ids[i], 0, p, sizeof p);
        split |= !valid_utf8(p, (size_t)k);
    }
    assert_true(split);
    tok_utf8_stream s = {0};
    char out[1024];
    size_t w = push_all(q.t, &s, ids, n, out);
    assert_int_equal(s.n_pend, 0);
    assert_int_equal(tok_stream_flush(&s, out + w, 16), 0);
    assert_int_equal(w, strlen(text));
    assert_memory_equal(out, text, w);
    close_vocab(&q);
}

static void test_stream_bytes(void **st) {
    (void)st;
    vocab s = open_vocab(VOCAB("llama-spm"));
    tok_utf8_stream u = {0};
    char out[64];
    /* U+4E16 as three byte tokens: nothing until the last one */
    assert_int_equal(tok_stream_push(s.t, &u, 3 + 0xE4, 0, out, sizeof out), 0);
    assert_int_equal(tok_stream_push(s.t, &u, 3 + 0xB8, 0, out, sizeof out), 0);
    assert_int_equal(u.n_pend, 2);
    assert_int_equal(tok_stream_push(s.t, &u, 3 + 0x96, 0, out, sizeof out), 3);
    assert_memory_equal(out, "\xe4\xb8\x96", 3);
    /* a stray continuation byte becomes U+FFFD at once */
    assert_int_equal(tok_stream_push(s.t, &u, 3 + 0x80, 0, out, sizeof out), 3);
    assert_memory_equal(out, "\xef\xbf\xbd", 3);
    /* an unfinished character followed by ASCII: U+FFFD then the letter */
    assert_int_equal(tok_stream_push(s.t, &u, 3 + 0xF0, 0, out, sizeof out), 0);
    assert_int_equal(tok_stream_push(s.t, &u, 3 + 'A', 0, out, sizeof out), 4);
    assert_memory_equal(out, "\xef\xbf\xbd" "A", 4);
    /* an unfinished character at the end is flushed as one U+FFFD */
    assert_int_equal(tok_stream_push(s.t, &u, 3 + 0xE4, 0, out, sizeof out), 0);
    assert_int_equal(tok_stream_push(s.t, &u, 3 + 0xB8, 0, out, sizeof out), 0);
    assert_int_equal(tok_stream_flush(&u, out, 2), SH_EFULL); /* too small: nothing lost */
    assert_int_equal(tok_stream_flush(&u, out, sizeof out), 3);
    assert_memory_equal(out, "\xef\xbf\xbd", 3);
    assert_int_equal(u.n_pend, 0);
    assert_int_equal(tok_stream_flush(&u, out, sizeof out), 0);
    /* control tokens stream nothing unless rendered */
    assert_int_equal(tok_stream_push(s.t, &u, 2, 0, out, sizeof out), 0);
    assert_int_equal(tok_stream_push(s.t, &u, 2, 1, out, sizeof out), 4);
    assert_memory_equal(out, "</s>", 4);
    /* "▁Hello" style pieces */
    int32_t ids[16];
    int64_t n;
    assert_int_equal(tok_encode(s.t, "Hi there", 8, 0, 0, ids, 16, &n), SH_OK);
    size_t w = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t k = tok_stream_push(s.t, &u, ids[i], 0, out + w, (int64_t)(sizeof out - w));
        assert_true(k >= 0);
        w += (size_t)k;
    }
    assert_int_equal(w, 9);
    assert_memory_equal(out, " Hi there", 9);
    close_vocab(&s);
}

/* ---- load errors ---- */

/* Writes a vocab-only GGUF with the given pieces; returns its path (static buffer). */
static const char *write_vocab(const char *model, const char *pre, int tokens_as_ints, int merges) {
    static char path[64];
    snprintf(path, sizeof path, "/tmp/shammah_tok_test_%d.gguf", (int)getpid());
    gguf_writer *w;
    assert_int_equal(gguf_writer_new(&w), SH_OK);
    if (model) assert_int_equal(gguf_w_str(w, "tokenizer.ggml.model", model), SH_OK);
    if (pre) assert_int_equal(gguf_w_str(w, "tokenizer.ggml.pre", pre), SH_OK);
    const char *toks[] = {"a", "b", "ab", "\xc4\xa0"};
    if (tokens_as_ints == 1) {
        int32_t v[4] = {1, 2, 3, 4};
        assert_int_equal(gguf_w_arr(w, "tokenizer.ggml.tokens", GGUF_T_INT32, v, 4), SH_OK);
    } else if (tokens_as_ints == 0) {
        assert_int_equal(gguf_w_arr_str(w, "tokenizer.ggml.tokens", toks, NULL, 4), SH_OK);
    }
    if (merges) {
        const char *m[] = {"a b"};
        assert_int_equal(gguf_w_arr_str(w, "tokenizer.ggml.merges", m, NULL, 1), SH_OK);
    }
    assert_int_equal(gguf_writer_write(w, path), SH_OK);
    gguf_writer_free(w);
    return path;
}

static int try_load(const char *path, char *msg, size_t cap) {
    gguf *g;
    tok *t = NULL;
    assert_int_equal(gguf_open(&g, path), SH_OK);
    int rc = tok_load(&t, g);
    snprintf(msg, cap, "%s", rc ? sh_error_last() : "");
    if (rc) assert_null(t);
    tok_free(t);
    gguf_close(g);
    return rc;
}

static void test_load_errors(void **st) {
    (void)st;
    char msg[256];
    const char *p;
    p = write_vocab(NULL, NULL, 0, 0);
    assert_int_equal(try_load(p, msg, sizeof msg), SH_ENOTFOUND);
    assert_non_null(strstr(msg, "tokenizer.ggml.model"));
    p = write_vocab("gpt2", "qwen2", 0, 0);
    assert_int_equal(try_load(p, msg, sizeof msg), SH_ENOTFOUND);
    assert_non_null(strstr(msg, "merges"));
    p = write_vocab("gpt2", "qwen2", 1, 1);
    assert_int_equal(try_load(p, msg, sizeof msg), SH_EFORMAT);
    assert_non_null(strstr(msg, "tokenizer.ggml.tokens"));
    p = write_vocab("gpt2", "no-such-pre", 0, 1);
    assert_int_equal(try_load(p, msg, sizeof msg), SH_EUNSUPPORTED);
    assert_non_null(strstr(msg, "no-such-pre"));
    p = write_vocab("bert", NULL, 0, 0);
    assert_int_equal(try_load(p, msg, sizeof msg), SH_EUNSUPPORTED);
    p = write_vocab("gpt2", NULL, -1, 1);
    assert_int_equal(try_load(p, msg, sizeof msg), SH_ENOTFOUND);
    assert_non_null(strstr(msg, "tokenizer.ggml.tokens"));

    /* a minimal valid one: no pre (llama.cpp's "default"), merges apply */
    p = write_vocab("gpt2", NULL, 0, 1);
    gguf *g;
    tok *t;
    assert_int_equal(gguf_open(&g, p), SH_OK);
    assert_int_equal(tok_load(&t, g), SH_OK);
    gguf_close(g); /* the tokenizer keeps its own copies */
    assert_string_equal(tok_pre_name(t), "default");
    expect_ids(t, "ab a", 4, 0, 0, "2 3 0");
    tok_free(t);
    unlink(p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gold_qwen2),
        cmocka_unit_test(test_gold_llama_bpe),
        cmocka_unit_test(test_gold_llama_spm),
        cmocka_unit_test(test_gold_gpt2),
        cmocka_unit_test(test_live_vectors),
        cmocka_unit_test(test_roundtrip_bpe),
        cmocka_unit_test(test_special_tokens),
        cmocka_unit_test(test_properties),
        cmocka_unit_test(test_output_bounds),
        cmocka_unit_test(test_stream_bpe),
        cmocka_unit_test(test_stream_bytes),
        cmocka_unit_test(test_load_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
