/* cmd_tokenize.c - `shammah tokenize -m MODEL.gguf [--special] [TEXT]`: print the token ids
 * of TEXT (or of stdin, byte for byte) separated by single spaces. No BOS is added, so the
 * output compares directly with llama.cpp's tokenizer tests. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/status.h"
#include "cli/commands.h"
#include "engine/gguf.h"
#include "engine/tokenizer.h"

/* Bound on text read from stdin. */
#define TOKENIZE_MAX_STDIN (64u << 20)

static void usage(FILE *f) {
    fprintf(f,
            "usage: shammah tokenize -m MODEL.gguf [--special] [TEXT]\n"
            "\n"
            "Prints the token ids of TEXT, separated by spaces. Without TEXT, reads stdin (exact\n"
            "bytes, up to 64 MiB). No BOS token is added. Works on vocabulary-only GGUF files.\n"
            "\n"
            "  -m, --model FILE   GGUF file with a tokenizer\n"
            "  --special          recognise special token texts (e.g. <|im_start|>) as tokens\n"
            "  -h, --help         show this help\n");
}

/* Reads all of stdin into *out (caller frees). */
static int read_stdin(char **out, size_t *n) {
    size_t cap = 1 << 16, len = 0;
    char *b = malloc(cap);
    if (!b) return sh_error_set(SH_ENOMEM, "out of memory");
    for (;;) {
        if (len == cap) {
            if (cap >= TOKENIZE_MAX_STDIN) {
                int c = fgetc(stdin);
                if (c == EOF && !ferror(stdin)) break; /* exactly the maximum */
                free(b);
                return sh_error_set(SH_ERANGE, "input is larger than %u MiB", TOKENIZE_MAX_STDIN >> 20);
            }
            char *nb = realloc(b, cap * 2);
            if (!nb) {
                free(b);
                return sh_error_set(SH_ENOMEM, "out of memory");
            }
            b = nb;
            cap *= 2;
        }
        size_t k = fread(b + len, 1, cap - len, stdin);
        len += k;
        if (k == 0) {
            if (ferror(stdin)) {
                free(b);
                return sh_error_set(SH_EIO, "error reading stdin");
            }
            break;
        }
    }
    *out = b;
    *n = len;
    return SH_OK;
}

int cmd_tokenize(int argc, char **argv) {
    const char *model = NULL, *text = NULL;
    int special = 0, ret = 1;
    char *input = NULL;
    int32_t *ids = NULL;
    gguf *g = NULL;
    tok *t = NULL;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "shammah tokenize: %s needs a file\n", a);
                return 2;
            }
            model = argv[++i];
        } else if (!strcmp(a, "--special")) {
            special = 1;
        } else if (!strcmp(a, "--")) {
            if (i + 1 < argc) text = argv[i + 1];
            if (i + 2 < argc) {
                fprintf(stderr, "shammah tokenize: only one TEXT argument is allowed\n");
                return 2;
            }
            break;
        } else if (a[0] == '-' && a[1] != '\0') {
            fprintf(stderr, "shammah tokenize: unknown option '%s' (see --help)\n", a);
            return 2;
        } else if (text) {
            fprintf(stderr, "shammah tokenize: only one TEXT argument is allowed\n");
            return 2;
        } else {
            text = a;
        }
    }
    if (!model) {
        fprintf(stderr, "shammah tokenize: no model given (-m MODEL.gguf; see --help)\n");
        return 2;
    }
    char model_path[4096]; /* -m NAME through the registry */
    if (cli_resolve_model("tokenize", model, model_path, sizeof model_path)) return 1;
    model = model_path;

    size_t len = 0;
    if (text) {
        len = strlen(text);
    } else {
        if (read_stdin(&input, &len)) {
            fprintf(stderr, "shammah: stdin: %s\n", sh_error_last());
            goto out;
        }
        text = input;
    }
    if (gguf_open(&g, model) || tok_load(&t, g)) {
        fprintf(stderr, "shammah: %s: %s\n", model, sh_error_last());
        goto out;
    }
    /* a first guess that fits most text; the exact count comes back when it does not */
    int64_t cap = (int64_t)len / 2 + 16, n = 0;
    ids = malloc((size_t)cap * sizeof *ids);
    if (!ids) goto oom;
    int rc = tok_encode(t, text, len, 0, special, ids, cap, &n);
    if (rc == SH_EFULL) {
        free(ids);
        cap = n;
        ids = malloc((size_t)cap * sizeof *ids);
        if (!ids) goto oom;
        rc = tok_encode(t, text, len, 0, special, ids, cap, &n);
    }
    if (rc) {
        fprintf(stderr, "shammah: %s: %s\n", model, sh_error_last());
        goto out;
    }
    for (int64_t i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
    printf("\n");
    if (fflush(stdout) != 0) {
        fprintf(stderr, "shammah: stdout: write error\n");
        goto out;
    }
    ret = 0;
    goto out;
oom:
    fprintf(stderr, "shammah: out of memory\n");
out:
    free(ids);
    free(input);
    tok_free(t);
    gguf_close(g);
    return ret;
}
