/* registry.c - the models this machine has: SHAMMAH_HOME/models, config paths, Ollama's store. */
#include "engine/registry.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/paths.h"
#include "base/status.h"
#include "engine/gguf.h"
#include "engine/quant.h"

#define OLLAMA_DEFAULT_HOST "registry.ollama.ai"
#define OLLAMA_DEFAULT_NS "library"
#define OLLAMA_MODEL_MEDIA "application/vnd.ollama.image.model"

/* The list being built, with the identity of each file for de-duplication. */
typedef struct {
    reg_models *m;
    int cap;
    struct {
        dev_t dev;
        ino_t ino;
    } *ids;
} builder;

const char *reg_source_name(reg_source s) {
    switch (s) {
    case REG_SRC_HOME: return "home";
    case REG_SRC_CONFIG: return "config";
    case REG_SRC_OLLAMA: return "ollama";
    }
    return "?";
}

/* llama.cpp's file-type numbering (general.file_type), the names people know quants by. */
static const char *ftype_name(uint32_t ft) {
    static const struct {
        uint32_t id;
        const char *name;
    } t[] = {{0, "F32"},     {1, "F16"},     {2, "Q4_0"},    {3, "Q4_1"},    {7, "Q8_0"},
             {8, "Q5_0"},    {9, "Q5_1"},    {10, "Q2_K"},   {11, "Q3_K_S"}, {12, "Q3_K_M"},
             {13, "Q3_K_L"}, {14, "Q4_K_S"}, {15, "Q4_K_M"}, {16, "Q5_K_S"}, {17, "Q5_K_M"},
             {18, "Q6_K"},   {19, "IQ2_XXS"}, {20, "IQ2_XS"}, {21, "Q2_K_S"}, {22, "IQ3_XS"},
             {23, "IQ3_XXS"}, {24, "IQ1_S"}, {25, "IQ4_NL"}, {26, "IQ3_S"}, {27, "IQ3_M"},
             {28, "IQ2_S"},  {29, "IQ2_M"},  {30, "IQ4_XS"}, {31, "IQ1_M"},  {32, "BF16"}};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (t[i].id == ft) return t[i].name;
    return NULL;
}

static int64_t arch_int(const gguf *g, const char *arch, const char *suffix) {
    char key[160];
    int64_t v = 0;
    if (snprintf(key, sizeof key, "%s.%s", arch, suffix) >= (int)sizeof key) return 0;
    if (gguf_get_i64(g, key, &v) != SH_OK || v < 0) return 0;
    return v;
}

void reg_describe(reg_entry *e, const char *path) {
    e->error[0] = 0;
    e->arch[0] = 0;
    e->quant[0] = 0;
    e->n_params = 0;
    e->n_ctx_train = e->n_layer = 0;
    e->kv_bytes_per_token = 0;
    struct stat sb;
    if (stat(path, &sb) == 0) e->file_size = (uint64_t)sb.st_size;
    gguf *g = NULL;
    if (gguf_open(&g, path) != SH_OK) {
        snprintf(e->error, sizeof e->error, "%s", sh_error_last());
        return;
    }
    if (gguf_get_cstr(g, "general.architecture", e->arch, sizeof e->arch) != SH_OK)
        snprintf(e->arch, sizeof e->arch, "?");
    uint64_t bytes_by_type[QT_MAX_ID] = {0};
    for (int64_t i = 0; i < gguf_n_tensors(g); i++) {
        const gguf_tensor *t = gguf_tensor_at(g, i);
        uint64_t n = 1;
        for (uint32_t d = 0; d < t->n_dims && d < GGUF_MAX_DIMS; d++) n *= (uint64_t)t->ne[d];
        e->n_params += n;
        if (t->type < QT_MAX_ID) bytes_by_type[t->type] += t->nbytes;
    }
    uint32_t ft;
    const char *fname = gguf_get_u32(g, "general.file_type", &ft) == SH_OK ? ftype_name(ft) : NULL;
    if (fname) {
        snprintf(e->quant, sizeof e->quant, "%s", fname);
    } else {
        int best = -1;
        for (int t = 0; t < QT_MAX_ID; t++)
            if (bytes_by_type[t] && (best < 0 || bytes_by_type[t] > bytes_by_type[best])) best = t;
        snprintf(e->quant, sizeof e->quant, "%s", best >= 0 ? qt_name((uint32_t)best) : "-");
    }
    e->n_ctx_train = arch_int(g, e->arch, "context_length");
    e->n_layer = arch_int(g, e->arch, "block_count");
    int64_t n_embd = arch_int(g, e->arch, "embedding_length");
    int64_t n_head = arch_int(g, e->arch, "attention.head_count");
    int64_t n_head_kv = arch_int(g, e->arch, "attention.head_count_kv");
    if (!n_head_kv) n_head_kv = n_head;
    int64_t k_len = arch_int(g, e->arch, "attention.key_length");
    int64_t v_len = arch_int(g, e->arch, "attention.value_length");
    if (!k_len && n_head) k_len = n_embd / n_head;
    if (!v_len) v_len = k_len;
    /* every factor was read from the file: bound them before multiplying */
    if (e->n_layer <= 1 << 16 && n_head_kv <= 1 << 16 && k_len <= 1 << 16 && v_len <= 1 << 16)
        e->kv_bytes_per_token = (uint64_t)e->n_layer * (uint64_t)n_head_kv *
                                (uint64_t)(k_len + v_len) * 2u;
    gguf_close(g);
}

/* ---- building the list ---- */

static int add_entry(builder *b, const char *name, const char *path, reg_source src) {
    struct stat sb;
    if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode)) return SH_OK;
    for (int i = 0; i < b->m->n; i++)
        if (b->ids[i].dev == sb.st_dev && b->ids[i].ino == sb.st_ino) return SH_OK;
    if (strlen(name) >= REG_NAME_MAX || strlen(path) >= REG_PATH_MAX) return SH_OK;
    if (b->m->n == REG_MAX_ENTRIES) {
        b->m->n_dropped++;
        return SH_OK;
    }
    if (b->m->n == b->cap) {
        int nc = b->cap ? b->cap * 2 : 16;
        if (nc > REG_MAX_ENTRIES) nc = REG_MAX_ENTRIES;
        reg_entry *v = realloc(b->m->v, (size_t)nc * sizeof *v);
        if (!v) return sh_error_set(SH_ENOMEM, "registry: out of memory");
        b->m->v = v;
        void *ids = realloc(b->ids, (size_t)nc * sizeof *b->ids);
        if (!ids) return sh_error_set(SH_ENOMEM, "registry: out of memory");
        b->ids = ids;
        b->cap = nc;
    }
    reg_entry *e = &b->m->v[b->m->n];
    memset(e, 0, sizeof *e);
    snprintf(e->name, sizeof e->name, "%s", name);
    snprintf(e->path, sizeof e->path, "%s", path);
    e->source = src;
    reg_describe(e, path);
    b->ids[b->m->n].dev = sb.st_dev;
    b->ids[b->m->n].ino = sb.st_ino;
    b->m->n++;
    return SH_OK;
}

static int by_name(const void *a, const void *b) {
    return strcmp(((const reg_entry *)a)->name, ((const reg_entry *)b)->name);
}

static int ends_with_gguf(const char *s) {
    size_t n = strlen(s);
    return n > 5 && !strcmp(s + n - 5, ".gguf");
}

/* Names of a folder's entries (not starting with '.'), sorted, at most max. Caller frees
 * with free_names(). A folder that cannot be opened gives none. */
static int list_dir(const char *dir, char ***out, int *n, int max) {
    *out = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) return SH_OK;
    int cap = 0, st = SH_OK;
    struct dirent *de;
    while ((de = readdir(d)) && *n < max) {
        if (de->d_name[0] == '.') continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            char **nv = realloc(*out, (size_t)cap * sizeof *nv);
            if (!nv) {
                st = sh_error_set(SH_ENOMEM, "registry: out of memory");
                break;
            }
            *out = nv;
        }
        if (!((*out)[*n] = strdup(de->d_name))) {
            st = sh_error_set(SH_ENOMEM, "registry: out of memory");
            break;
        }
        (*n)++;
    }
    closedir(d);
    return st;
}

static void free_names(char **v, int n) {
    for (int i = 0; i < n; i++) free(v[i]);
    free(v);
}

static int scan_home(builder *b, const char *home) {
    char dir[REG_PATH_MAX], path[REG_PATH_MAX], name[REG_NAME_MAX];
    if (paths_join(dir, sizeof dir, home, PATHS_MODELS)) return SH_OK; /* too long: nothing */
    char **names;
    int n, st = list_dir(dir, &names, &n, 4 * REG_MAX_ENTRIES);
    for (int i = 0; !st && i < n; i++) {
        if (!ends_with_gguf(names[i])) continue;
        size_t len = strlen(names[i]) - 5;
        if (len >= sizeof name || paths_join(path, sizeof path, dir, names[i])) continue;
        memcpy(name, names[i], len);
        name[len] = 0;
        st = add_entry(b, name, path, REG_SRC_HOME);
    }
    free_names(names, n);
    return st;
}

static int name_taken(const builder *b, const char *name) {
    for (int i = 0; i < b->m->n; i++)
        if (!strcmp(b->m->v[i].name, name)) return 1;
    return 0;
}

/* The file stem of a path ("/a/b/m.gguf" -> "m"), into out. */
static void path_stem(const char *path, char *out, size_t cap) {
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t len = strlen(base);
    if (ends_with_gguf(base)) len -= 5;
    if (len >= cap) len = cap - 1;
    memcpy(out, base, len);
    out[len] = 0;
}

static int scan_extra(builder *b, const reg_opts *o) {
    int st = SH_OK;
    for (int i = 0; !st && i < o->n_extra; i++) {
        const char *p = o->extra[i];
        if (!p || !*p) continue;
        char name[REG_NAME_MAX];
        path_stem(p, name, sizeof name);
        st = add_entry(b, name_taken(b, name) || !*name ? p : name, p, REG_SRC_CONFIG);
    }
    return st;
}

/* A path component of an Ollama name: non-empty, not . or .., no slash. */
static int ollama_part_ok(const char *s) {
    return *s && strcmp(s, ".") && strcmp(s, "..") && !strchr(s, '/');
}

/* The blob a manifest points at, into out. SH_ENOTFOUND / SH_EFORMAT with a message. */
static int ollama_blob(const char *dir, const char *manifest, char *out, size_t cap) {
    int st = SH_OK;
    char *text = NULL;
    json_t *root = NULL;
    FILE *f = fopen(manifest, "rb");
    if (!f) return sh_error_set(SH_ENOTFOUND, "cannot open Ollama manifest %s", manifest);
    text = malloc(REG_MAX_MANIFEST + 1);
    if (!text) {
        st = sh_error_set(SH_ENOMEM, "registry: out of memory");
        goto out;
    }
    size_t n = fread(text, 1, REG_MAX_MANIFEST + 1, f);
    if (n > REG_MAX_MANIFEST) {
        st = sh_error_set(SH_ERANGE, "Ollama manifest %s is larger than %d bytes", manifest,
                          REG_MAX_MANIFEST);
        goto out;
    }
    json_error_t je;
    root = json_loadb(text, n, 0, &je);
    json_t *layers = root ? json_object_get(root, "layers") : NULL;
    if (!json_is_array(layers)) {
        st = sh_error_set(SH_EFORMAT, "Ollama manifest %s: no layers", manifest);
        goto out;
    }
    const char *digest = NULL;
    for (size_t i = 0; i < json_array_size(layers) && !digest; i++) {
        json_t *l = json_array_get(layers, i);
        const char *mt = json_string_value(json_object_get(l, "mediaType"));
        if (mt && !strcmp(mt, OLLAMA_MODEL_MEDIA))
            digest = json_string_value(json_object_get(l, "digest"));
    }
    /* the digest becomes a file name: accept exactly sha256:<64 hex> */
    if (!digest || strncmp(digest, "sha256:", 7) || strlen(digest) != 7 + 64 ||
        strspn(digest + 7, "0123456789abcdef") != 64) {
        st = sh_error_set(SH_EFORMAT, "Ollama manifest %s: no model layer with a sha256 digest",
                          manifest);
        goto out;
    }
    if (snprintf(out, cap, "%s/blobs/sha256-%s", dir, digest + 7) >= (int)cap) {
        st = sh_error_set(SH_ERANGE, "Ollama blob path too long");
        goto out;
    }
out:
    json_decref(root);
    free(text);
    fclose(f);
    return st;
}

static void ollama_name(char *out, size_t cap, const char *host, const char *ns, const char *model,
                        const char *tag) {
    if (!strcmp(host, OLLAMA_DEFAULT_HOST) && !strcmp(ns, OLLAMA_DEFAULT_NS))
        snprintf(out, cap, "ollama:%s:%s", model, tag);
    else if (!strcmp(host, OLLAMA_DEFAULT_HOST))
        snprintf(out, cap, "ollama:%s/%s:%s", ns, model, tag);
    else
        snprintf(out, cap, "ollama:%s/%s/%s:%s", host, ns, model, tag);
}

/* manifests/<host>/<ns>/<model>/<tag>: four levels of folders, each bounded. */
static int scan_ollama(builder *b, const char *dir) {
    char p[4][REG_PATH_MAX];
    char **lv[4] = {0};
    int nv[4] = {0}, st = SH_OK;
    if (snprintf(p[0], sizeof p[0], "%s/manifests", dir) >= (int)sizeof p[0]) return SH_OK;
    const int max = REG_MAX_ENTRIES;
    if ((st = list_dir(p[0], &lv[0], &nv[0], max))) goto out;
    for (int a = 0; !st && a < nv[0]; a++) {
        if (paths_join(p[1], sizeof p[1], p[0], lv[0][a])) continue;
        if ((st = list_dir(p[1], &lv[1], &nv[1], max))) break;
        for (int c = 0; !st && c < nv[1]; c++) {
            if (paths_join(p[2], sizeof p[2], p[1], lv[1][c])) continue;
            if ((st = list_dir(p[2], &lv[2], &nv[2], max))) break;
            for (int d = 0; !st && d < nv[2]; d++) {
                if (paths_join(p[3], sizeof p[3], p[2], lv[2][d])) continue;
                if ((st = list_dir(p[3], &lv[3], &nv[3], max))) break;
                for (int t = 0; !st && t < nv[3]; t++) {
                    char mpath[REG_PATH_MAX], blob[REG_PATH_MAX], name[REG_NAME_MAX * 2];
                    if (paths_join(mpath, sizeof mpath, p[3], lv[3][t])) continue;
                    int bs = ollama_blob(dir, mpath, blob, sizeof blob);
                    if (bs == SH_ENOMEM) st = bs;
                    if (bs) continue; /* not a model manifest (or a broken one): not listed */
                    ollama_name(name, sizeof name, lv[0][a], lv[1][c], lv[2][d], lv[3][t]);
                    if (strlen(name) < REG_NAME_MAX) st = add_entry(b, name, blob, REG_SRC_OLLAMA);
                }
                free_names(lv[3], nv[3]);
                lv[3] = NULL;
                nv[3] = 0;
            }
            free_names(lv[2], nv[2]);
            lv[2] = NULL;
            nv[2] = 0;
        }
        free_names(lv[1], nv[1]);
        lv[1] = NULL;
        nv[1] = 0;
    }
out:
    for (int i = 0; i < 4; i++) free_names(lv[i], nv[i]);
    return st;
}

/* The Ollama store folder into out; 0 when there is none to look at. */
static int ollama_dir(const reg_opts *o, char *out, size_t cap) {
    const char *d = o ? o->ollama_dir : NULL;
    if (d) return *d && snprintf(out, cap, "%s", d) < (int)cap;
    d = getenv("OLLAMA_MODELS");
    if (d && *d) return snprintf(out, cap, "%s", d) < (int)cap;
    const char *h = getenv("HOME");
    return h && *h && snprintf(out, cap, "%s/.ollama/models", h) < (int)cap;
}

static int home_dir(const reg_opts *o, char *out, size_t cap) {
    if (o && o->home) {
        if (snprintf(out, cap, "%s", o->home) >= (int)cap)
            return sh_error_set(SH_ERANGE, "registry: home path too long");
        return SH_OK;
    }
    return paths_home(out, cap);
}

int reg_list(reg_models *out, const reg_opts *o) {
    memset(out, 0, sizeof *out);
    builder b = {.m = out};
    char home[REG_PATH_MAX], odir[REG_PATH_MAX];
    int st = home_dir(o, home, sizeof home);
    if (st) return st;
    int start = 0;
    if ((st = scan_home(&b, home))) goto out;
    if (out->n > start) qsort(out->v + start, (size_t)(out->n - start), sizeof *out->v, by_name);
    start = out->n;
    if (o && (st = scan_extra(&b, o))) goto out;
    start = out->n;
    if (ollama_dir(o, odir, sizeof odir) && (st = scan_ollama(&b, odir))) goto out;
    if (out->n > start) qsort(out->v + start, (size_t)(out->n - start), sizeof *out->v, by_name);
out:
    free(b.ids);
    if (st) reg_models_free(out);
    return st;
}

void reg_models_free(reg_models *m) {
    if (!m) return;
    free(m->v);
    memset(m, 0, sizeof *m);
}

/* ---- resolving ---- */

static int is_regular(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

static int put(char *out, size_t cap, const char *path) {
    if (snprintf(out, cap, "%s", path) >= (int)cap)
        return sh_error_set(SH_ERANGE, "model path too long: %.80s...", path);
    return SH_OK;
}

/* ollama:[[HOST/]NS/]MODEL[:TAG] -> the blob. */
static int resolve_ollama(const char *name, const reg_opts *o, char *out, size_t cap) {
    char spec[REG_NAME_MAX], dir[REG_PATH_MAX], mpath[REG_PATH_MAX * 2];
    const char *rest = name + 7;
    if (snprintf(spec, sizeof spec, "%s", rest) >= (int)sizeof spec)
        return sh_error_set(SH_ERANGE, "model name too long");
    const char *tag = "latest";
    char *last = strrchr(spec, '/');
    char *colon = strrchr(last ? last : spec, ':');
    if (colon) {
        *colon = 0;
        tag = colon + 1;
    }
    char *part[3] = {0};
    int np = 0;
    for (char *s = spec;;) {
        if (np == 3) return sh_error_set(SH_EINVAL, "bad Ollama name '%s'", name);
        part[np++] = s;
        char *slash = strchr(s, '/');
        if (!slash) break;
        *slash = 0;
        s = slash + 1;
    }
    const char *host = np == 3 ? part[0] : OLLAMA_DEFAULT_HOST;
    const char *ns = np == 3 ? part[1] : np == 2 ? part[0] : OLLAMA_DEFAULT_NS;
    const char *model = part[np - 1];
    if (!ollama_part_ok(host) || !ollama_part_ok(ns) || !ollama_part_ok(model) ||
        !ollama_part_ok(tag))
        return sh_error_set(SH_EINVAL, "bad Ollama name '%s' (ollama:MODEL[:TAG])", name);
    if (!ollama_dir(o, dir, sizeof dir))
        return sh_error_set(SH_ENOTFOUND, "model '%s' not found: no Ollama store", name);
    if (snprintf(mpath, sizeof mpath, "%s/manifests/%s/%s/%s/%s", dir, host, ns, model, tag) >=
        (int)sizeof mpath)
        return sh_error_set(SH_ERANGE, "model name too long");
    if (!is_regular(mpath))
        return sh_error_set(SH_ENOTFOUND,
                            "model '%s' not found in Ollama's store %s (`shammah models` lists "
                            "the names)", name, dir);
    int st = ollama_blob(dir, mpath, out, cap);
    if (st) return st;
    if (!is_regular(out))
        return sh_error_set(SH_ENOTFOUND, "model '%s': Ollama blob %s is missing", name, out);
    return SH_OK;
}

int reg_resolve(const char *name, const reg_opts *o, char *out, size_t cap) {
    if (!name || !*name) return sh_error_set(SH_EINVAL, "empty model name");
    if (!strncmp(name, "ollama:", 7)) return resolve_ollama(name, o, out, cap);
    struct stat sb;
    if (stat(name, &sb) == 0 || strchr(name, '/')) return put(out, cap, name);
    char home[REG_PATH_MAX], dir[REG_PATH_MAX], path[REG_PATH_MAX], file[REG_NAME_MAX + 8];
    if (home_dir(o, home, sizeof home) == SH_OK &&
        paths_join(dir, sizeof dir, home, PATHS_MODELS) == SH_OK && strcmp(name, "..") &&
        strcmp(name, ".")) {
        if (paths_join(path, sizeof path, dir, name) == SH_OK && is_regular(path))
            return put(out, cap, path);
        if (snprintf(file, sizeof file, "%s.gguf", name) < (int)sizeof file &&
            paths_join(path, sizeof path, dir, file) == SH_OK && is_regular(path))
            return put(out, cap, path);
    }
    for (int i = 0; o && i < o->n_extra; i++) {
        const char *p = o->extra[i];
        if (!p || !*p || !is_regular(p)) continue;
        char stem[REG_NAME_MAX];
        path_stem(p, stem, sizeof stem);
        const char *base = strrchr(p, '/');
        base = base ? base + 1 : p;
        if (!strcmp(stem, name) || !strcmp(base, name)) return put(out, cap, p);
    }
    return sh_error_set(SH_ENOTFOUND,
                        "model '%s' not found: not a file, nor a name in SHAMMAH_HOME/models or "
                        "Ollama's store (`shammah models` lists the names)", name);
}

/* ---- the default ---- */

uint64_t reg_mem_available(const char *meminfo_path) {
    FILE *f = fopen(meminfo_path ? meminfo_path : "/proc/meminfo", "r");
    if (!f) return 0;
    char line[256];
    uint64_t kb = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long long v;
        if (sscanf(line, "MemAvailable: %llu kB", &v) == 1) {
            /* beyond 2^40 kB (1 EiB) the value is nonsense: treat as unknown */
            kb = v < (1ull << 40) ? v : 0;
            break;
        }
    }
    fclose(f);
    return kb * 1024u;
}

uint64_t reg_need_bytes(const reg_entry *e, int64_t ctx) {
    if (ctx <= 0) ctx = REG_DEFAULT_CTX;
    if (e->n_ctx_train > 0 && ctx > e->n_ctx_train) ctx = e->n_ctx_train;
    return e->file_size + e->kv_bytes_per_token * (uint64_t)ctx + REG_OVERHEAD_BYTES;
}

int reg_pick_default(const reg_models *m, const reg_pick_opts *p, char *out, size_t cap,
                     int *index) {
    reg_pick_opts d = {0};
    if (!p) p = &d;
    uint64_t avail = p->mem_available ? p->mem_available : reg_mem_available(p->meminfo_path);
    int best = -1, smallest = -1;
    for (int i = 0; m && i < m->n; i++) {
        const reg_entry *e = &m->v[i];
        if (e->error[0]) continue;
        if (smallest < 0 || e->file_size < m->v[smallest].file_size) smallest = i;
        if (reg_need_bytes(e, p->ctx) <= avail &&
            (best < 0 || e->file_size > m->v[best].file_size))
            best = i;
    }
    if (best < 0) best = smallest;
    if (index) *index = best;
    if (best >= 0) return put(out, cap, m->v[best].path);
    if (p->builtin && *p->builtin) return put(out, cap, p->builtin);
    return sh_error_set(SH_ENOTFOUND, "no usable model found (`shammah pull` downloads one)");
}
