/* cmd_info.c - `shammah info`: architecture, shapes, tensor types, size, vocabulary and chat
 * template of a model file. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/status.h"
#include "cli/commands.h"
#include "engine/chat.h"
#include "engine/model.h"
#include "engine/quant.h"
#include "engine/tokenizer.h"

int cmd_info(int argc, char **argv) {
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-m") && i + 1 < argc) {
            path = argv[++i];
        } else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: shammah info -m MODEL.gguf\n");
            return 0;
        } else {
            fprintf(stderr, "shammah info: unknown option '%s'\n", argv[i]);
            return 2;
        }
    }
    if (!path) {
        fprintf(stderr, "shammah info: -m MODEL is required\n");
        return 2;
    }
    char model_path[4096]; /* -m NAME through the registry */
    if (cli_resolve_model("info", path, model_path, sizeof model_path)) return 1;
    path = model_path;
    model *m = NULL;
    tok *tk = NULL;
    int st = model_load(&m, path);
    if (st) {
        fprintf(stderr, "shammah info: %s: %s\n", path, sh_error_last());
        return 1;
    }
    const gguf *g = model_gguf(m);
    const model_hparams *hp = model_hp(m);
    char name[256] = "";
    gguf_get_cstr(g, "general.name", name, sizeof name);
    printf("file:         %s (GGUF v%u, %.1f MiB)\n", path, gguf_version(g),
           gguf_file_size(g) / 1048576.0);
    if (name[0]) printf("name:         %s\n", name);
    printf("architecture: %s\n", model_arch_name(hp->arch));
    printf("parameters:   %.1f M (%.1f MiB of weights)\n", model_n_params(m) / 1e6,
           model_weight_bytes(m) / 1048576.0);
    printf("shape:        n_embd %d, n_layer %d, n_head %d, n_head_kv %d, head_dim %d, n_ff %d\n",
           hp->n_embd, hp->n_layer, hp->n_head, hp->n_head_kv, hp->head_dim, hp->n_ff);
    printf("context:      %d tokens; rope base %g over %d dims (%s); rms eps %g\n",
           hp->n_ctx_train, hp->rope_base, hp->rope_dim, hp->rope_neox ? "neox" : "pairs",
           hp->norm_eps);
    int64_t counts[QT_MAX_ID] = {0};
    for (int64_t i = 0; i < gguf_n_tensors(g); i++) {
        const gguf_tensor *t = gguf_tensor_at(g, i);
        if (t->type < QT_MAX_ID) counts[t->type]++;
    }
    printf("tensors:      %" PRId64 " (", gguf_n_tensors(g));
    const char *sep = "";
    for (int t = 0; t < QT_MAX_ID; t++)
        if (counts[t]) {
            printf("%s%" PRId64 " %s", sep, counts[t], qt_name((uint32_t)t));
            sep = ", ";
        }
    printf(")\n");
    printf("output:       %s\n", gguf_find_tensor(g, "output.weight") ? "separate" : "tied to embeddings");
    if (tok_load(&tk, g) == SH_OK) {
        printf("vocabulary:   %d tokens, %s tokenizer (pre: %s), bos %d, eos %d, eot %d%s\n",
               tok_n_vocab(tk), tok_model_name(tk), tok_pre_name(tk), tok_bos(tk), tok_eos(tk),
               tok_eot(tk), tok_add_bos(tk) ? ", adds BOS" : "");
    } else {
        printf("vocabulary:   unusable (%s)\n", sh_error_last());
    }
    gguf_str js;
    char *jinja = NULL;
    if (gguf_get_str(g, "tokenizer.chat_template", &js) == SH_OK) jinja = strndup(js.ptr, js.len);
    chat_template ct;
    chat_template_detect(&ct, jinja);
    printf("chat:         %s%s\n", chat_kind_name(ct.kind),
           (ct.flags & CHAT_F_KNOWN) ? "" : (jinja ? " (unrecognised template: fallback)"
                                                   : " (no template: fallback)"));
    free(jinja);
    tok_free(tk);
    model_free(m);
    return 0;
}
