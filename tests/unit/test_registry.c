/* test_registry.c - the model registry over a temporary SHAMMAH_HOME and Ollama store: listing
 * (names, header facts, corrupt files, de-duplication), name resolution, and the RAM-aware
 * default with injected available memory. Models are small GGUF files written here with the
 * GGUF writer: the registry reads headers only, so the tensors need not make a working model. */
#include "testutil.h"

#include <sys/stat.h>
#include <unistd.h>

#include "base/status.h"
#include "engine/gguf.h"
#include "engine/quant.h"
#include "engine/registry.h"

static char tmp[256], home[300], models[320], ollama[300];

static const char *tp(const char *fmt, const char *a) {
    static char p[8][1024];
    static int k;
    char *o = p[k++ % 8];
    char rel[512];
    snprintf(rel, sizeof rel, fmt, a);
    snprintf(o, 1024, "%s/%s", tmp, rel);
    return o;
}

static void mkdirs(const char *path) {
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", path);
    assert_int_equal(system(cmd), 0);
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* A llama-shaped header: n_layer blocks, n_embd wide, heads/kv heads, trained ctx; one
 * embedding tensor of n_embd x rows F32 (rows sets the file size) and one F16 norm. */
static void write_model(const char *path, int n_layer, int n_embd, int n_head, int n_head_kv,
                        int ctx, int rows, int file_type) {
    gguf_writer *w;
    assert_int_equal(gguf_writer_new(&w), SH_OK);
    assert_int_equal(gguf_w_str(w, "general.architecture", "llama"), SH_OK);
    assert_int_equal(gguf_w_u32(w, "llama.block_count", (uint32_t)n_layer), SH_OK);
    assert_int_equal(gguf_w_u32(w, "llama.embedding_length", (uint32_t)n_embd), SH_OK);
    assert_int_equal(gguf_w_u32(w, "llama.attention.head_count", (uint32_t)n_head), SH_OK);
    assert_int_equal(gguf_w_u32(w, "llama.attention.head_count_kv", (uint32_t)n_head_kv), SH_OK);
    assert_int_equal(gguf_w_u32(w, "llama.context_length", (uint32_t)ctx), SH_OK);
    if (file_type >= 0) assert_int_equal(gguf_w_u32(w, "general.file_type", (uint32_t)file_type), SH_OK);
    float *emb = calloc((size_t)n_embd * rows, sizeof *emb);
    uint16_t *norm = calloc((size_t)n_embd, sizeof *norm);
    assert_non_null(emb);
    assert_non_null(norm);
    int64_t ne[2] = {n_embd, rows}, ne1[1] = {n_embd};
    assert_int_equal(gguf_w_tensor(w, "token_embd.weight", QT_F32, 2, ne, emb,
                                   (uint64_t)n_embd * rows * 4), SH_OK);
    assert_int_equal(gguf_w_tensor(w, "output_norm.weight", QT_F16, 1, ne1, norm,
                                   (uint64_t)n_embd * 2), SH_OK);
    assert_int_equal(gguf_writer_write(w, path), SH_OK);
    gguf_writer_free(w);
    free(emb);
    free(norm);
}

static void write_manifest(const char *rel, const char *digest) {
    char path[1024], text[1024];
    snprintf(path, sizeof path, "%s/manifests/%s", ollama, rel);
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", path);
    *strrchr(dir, '/') = 0;
    mkdirs(dir);
    snprintf(text, sizeof text,
             "{\"schemaVersion\":2,\"config\":{\"digest\":\"sha256:00\"},\"layers\":["
             "{\"mediaType\":\"application/vnd.ollama.image.license\",\"digest\":\"sha256:11\"},"
             "{\"mediaType\":\"application/vnd.ollama.image.model\",\"digest\":\"%s\","
             "\"size\":1}]}",
             digest);
    write_text(path, text);
}

#define DIGEST1 "sha256:1111111111111111111111111111111111111111111111111111111111111111"
#define DIGEST2 "sha256:2222222222222222222222222222222222222222222222222222222222222222"
#define DIGEST3 "sha256:3333333333333333333333333333333333333333333333333333333333333333"

static int setup(void **state) {
    snprintf(tmp, sizeof tmp, "/tmp/sh_test_registry.XXXXXX");
    if (!mkdtemp(tmp)) return -1;
    snprintf(home, sizeof home, "%s/home", tmp);
    snprintf(models, sizeof models, "%s/models", home);
    snprintf(ollama, sizeof ollama, "%s/ollama", tmp);
    mkdirs(models);
    mkdirs(ollama);
    /* home: small (1 layer), big (4 layers, more rows), a Q4_K_M-labelled one, junk */
    write_model(tp("home/models/%s", "small.gguf"), 1, 64, 4, 2, 512, 100, -1);
    write_model(tp("home/models/%s", "big.gguf"), 4, 64, 4, 4, 100000, 4000, -1);
    write_model(tp("home/models/%s", "labelled.gguf"), 1, 64, 4, 4, 256, 10, 15);
    write_text(tp("home/models/%s", "corrupt.gguf"), "GGUF but nothing else");
    write_text(tp("home/models/%s", "notes.txt"), "not a model");
    mkdirs(tp("home/models/%s", "folder.gguf"));
    /* ollama: library, another namespace, another host, a broken manifest, a missing blob */
    mkdirs(tp("ollama/%s", "blobs"));
    write_model(tp("ollama/blobs/sha256-%s", DIGEST1 + 7), 2, 32, 2, 1, 128, 20, -1);
    write_model(tp("ollama/blobs/sha256-%s", DIGEST2 + 7), 1, 32, 2, 2, 128, 20, -1);
    write_model(tp("ollama/blobs/sha256-%s", DIGEST3 + 7), 1, 32, 2, 2, 128, 30, -1);
    write_manifest("registry.ollama.ai/library/foo/7b", DIGEST1);
    write_manifest("registry.ollama.ai/someone/bar/latest", DIGEST2);
    write_manifest("hf.co/org/baz/Q4", DIGEST3);
    write_manifest("registry.ollama.ai/library/evil/x", "sha256:../../../etc/passwd");
    write_manifest("registry.ollama.ai/library/gone/latest",
                   "sha256:4444444444444444444444444444444444444444444444444444444444444444");
    write_text(tp("ollama/manifests/registry.ollama.ai/library/foo/%s", "junk"), "{not json");
    /* a config path outside the home */
    write_model(tp("%s", "outside.gguf"), 1, 32, 2, 2, 64, 5, -1);
    return 0;
}

static int teardown(void **state) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    return system(cmd) == 0 ? 0 : -1;
}

static const reg_entry *find(const reg_models *m, const char *name) {
    for (int i = 0; i < m->n; i++)
        if (!strcmp(m->v[i].name, name)) return &m->v[i];
    return NULL;
}

static void test_list(void **state) {
    const char *extra[] = {tp("%s", "outside.gguf"), tp("home/models/%s", "small.gguf"),
                           tp("%s", "missing.gguf"), "", NULL};
    reg_opts o = {.home = home, .ollama_dir = ollama, .extra = extra, .n_extra = 5};
    reg_models m;
    assert_int_equal(reg_list(&m, &o), SH_OK);
    /* home sorted, then config, then ollama sorted */
    const char *want[] = {"big", "corrupt", "labelled", "small", "outside", "ollama:foo:7b",
                          "ollama:hf.co/org/baz:Q4", "ollama:someone/bar:latest"};
    assert_int_equal(m.n, 8);
    for (int i = 0; i < 8; i++) assert_string_equal(m.v[i].name, want[i]);
    assert_int_equal(m.n_dropped, 0);

    const reg_entry *e = find(&m, "small");
    assert_int_equal(e->source, REG_SRC_HOME);
    assert_string_equal(e->error, "");
    assert_string_equal(e->arch, "llama");
    assert_int_equal(e->n_params, 64 * 100 + 64);
    assert_string_equal(e->quant, "F32");
    assert_int_equal(e->n_ctx_train, 512);
    assert_int_equal(e->n_layer, 1);
    /* 1 layer x 2 kv heads x (16 + 16) head dims x 2 bytes */
    assert_int_equal(e->kv_bytes_per_token, 1 * 2 * 32 * 2);
    struct stat sb;
    assert_int_equal(stat(e->path, &sb), 0);
    assert_int_equal(e->file_size, (uint64_t)sb.st_size);

    assert_string_equal(find(&m, "labelled")->quant, "Q4_K_M");
    e = find(&m, "corrupt");
    assert_true(e->error[0] != 0);
    assert_null(strchr(e->error, '\n'));
    assert_int_equal(e->file_size, strlen("GGUF but nothing else"));
    assert_int_equal(find(&m, "outside")->source, REG_SRC_CONFIG);
    e = find(&m, "ollama:foo:7b");
    assert_int_equal(e->source, REG_SRC_OLLAMA);
    assert_non_null(strstr(e->path, "/blobs/sha256-1111"));
    assert_int_equal(e->n_layer, 2);
    assert_int_equal(e->kv_bytes_per_token, 2 * 1 * 32 * 2);
    reg_models_free(&m);
    assert_null(m.v);
}

static void test_list_stem_collision_and_no_ollama(void **state) {
    /* a config file whose stem is taken is listed under its path */
    mkdirs(tp("%s", "other"));
    write_model(tp("other/%s", "small.gguf"), 1, 32, 2, 2, 64, 3, -1);
    const char *extra[] = {tp("other/%s", "small.gguf")};
    reg_opts o = {.home = home, .ollama_dir = "", .extra = extra, .n_extra = 1};
    reg_models m;
    assert_int_equal(reg_list(&m, &o), SH_OK);
    assert_int_equal(m.n, 5);
    assert_string_equal(m.v[4].name, extra[0]);
    assert_int_equal(m.v[4].source, REG_SRC_CONFIG);
    reg_models_free(&m);
    /* a home without models/ and no store: an empty list, not an error */
    reg_opts e = {.home = tp("%s", "nohome"), .ollama_dir = tp("%s", "noollama")};
    assert_int_equal(reg_list(&m, &e), SH_OK);
    assert_int_equal(m.n, 0);
    reg_models_free(&m);
}

static void expect_resolve(const reg_opts *o, const char *name, const char *want) {
    char out[1024];
    int st = reg_resolve(name, o, out, sizeof out);
    if (st != SH_OK) fail_msg("reg_resolve(%s) = %d (%s)", name, st, sh_error_last());
    assert_string_equal(out, want);
}

static void test_resolve(void **state) {
    const char *extra[] = {tp("%s", "outside.gguf")};
    reg_opts o = {.home = home, .ollama_dir = ollama, .extra = extra, .n_extra = 1};
    char out[1024];
    expect_resolve(&o, tp("%s", "outside.gguf"), tp("%s", "outside.gguf"));
    expect_resolve(&o, "small", tp("home/models/%s", "small.gguf"));
    expect_resolve(&o, "small.gguf", tp("home/models/%s", "small.gguf"));
    expect_resolve(&o, "corrupt", tp("home/models/%s", "corrupt.gguf")); /* the loader says why */
    expect_resolve(&o, "outside", tp("%s", "outside.gguf"));
    expect_resolve(&o, "outside.gguf", tp("%s", "outside.gguf"));
    expect_resolve(&o, "ollama:foo:7b", tp("ollama/blobs/sha256-%s", DIGEST1 + 7));
    expect_resolve(&o, "ollama:someone/bar", tp("ollama/blobs/sha256-%s", DIGEST2 + 7));
    expect_resolve(&o, "ollama:hf.co/org/baz:Q4", tp("ollama/blobs/sha256-%s", DIGEST3 + 7));
    /* something with a slash that does not exist is passed on for the loader's message */
    expect_resolve(&o, "dir/missing.gguf", "dir/missing.gguf");

    sh_error_clear();
    assert_int_equal(reg_resolve("nope", &o, out, sizeof out), SH_ENOTFOUND);
    assert_non_null(strstr(sh_error_last(), "shammah models"));
    assert_non_null(strstr(sh_error_last(), "'nope'"));
    assert_int_equal(reg_resolve("folder", &o, out, sizeof out), SH_ENOTFOUND);
    assert_int_equal(reg_resolve("..", &o, out, sizeof out), SH_OK); /* exists: as given */
    assert_int_equal(reg_resolve("ollama:foo", &o, out, sizeof out), SH_ENOTFOUND); /* no latest */
    assert_non_null(strstr(sh_error_last(), "Ollama"));
    assert_int_equal(reg_resolve("ollama:gone", &o, out, sizeof out), SH_ENOTFOUND);
    assert_non_null(strstr(sh_error_last(), "missing"));
    assert_int_equal(reg_resolve("ollama:evil:x", &o, out, sizeof out), SH_EFORMAT);
    assert_int_equal(reg_resolve("ollama:../foo:7b", &o, out, sizeof out), SH_EINVAL);
    assert_int_equal(reg_resolve("ollama:a/b/c/d:x", &o, out, sizeof out), SH_EINVAL);
    assert_int_equal(reg_resolve("ollama:foo:", &o, out, sizeof out), SH_EINVAL);
    assert_int_equal(reg_resolve("", &o, out, sizeof out), SH_EINVAL);
    assert_int_equal(reg_resolve("small", &o, out, 8), SH_ERANGE);
    reg_opts none = {.home = home, .ollama_dir = ""};
    assert_int_equal(reg_resolve("ollama:foo:7b", &none, out, sizeof out), SH_ENOTFOUND);
}

static void test_pick_default(void **state) {
    reg_opts o = {.home = home, .ollama_dir = ""};
    reg_models m;
    assert_int_equal(reg_list(&m, &o), SH_OK);
    const reg_entry *big = find(&m, "big"), *small = find(&m, "small"),
                    *lab = find(&m, "labelled");
    /* the big one's context (100000) is capped at REG_DEFAULT_CTX; the small one's is its own */
    assert_int_equal(reg_need_bytes(big, 0),
                     big->file_size + big->kv_bytes_per_token * REG_DEFAULT_CTX + REG_OVERHEAD_BYTES);
    assert_int_equal(reg_need_bytes(small, 0),
                     small->file_size + small->kv_bytes_per_token * 512 + REG_OVERHEAD_BYTES);
    assert_int_equal(reg_need_bytes(small, 100), small->file_size + small->kv_bytes_per_token * 100 +
                                                     REG_OVERHEAD_BYTES);
    char out[1024];
    int idx = -2;
    reg_pick_opts p = {.mem_available = reg_need_bytes(big, 0)};
    assert_int_equal(reg_pick_default(&m, &p, out, sizeof out, &idx), SH_OK);
    assert_string_equal(out, big->path);
    assert_ptr_equal(&m.v[idx], big);
    /* one byte short for big: the largest that fits is small (bigger file than labelled) */
    p.mem_available = reg_need_bytes(big, 0) - 1;
    assert_true(reg_need_bytes(small, 0) <= p.mem_available);
    assert_int_equal(reg_pick_default(&m, &p, out, sizeof out, &idx), SH_OK);
    assert_string_equal(out, small->path);
    /* a smaller context makes big fit */
    p.ctx = 1024;
    p.mem_available = reg_need_bytes(big, 1024);
    assert_int_equal(reg_pick_default(&m, &p, out, sizeof out, &idx), SH_OK);
    assert_string_equal(out, big->path);
    /* nothing fits: the smallest readable file (corrupt is smaller but unusable) */
    p = (reg_pick_opts){.mem_available = 1};
    assert_int_equal(reg_pick_default(&m, &p, out, sizeof out, &idx), SH_OK);
    assert_string_equal(out, lab->path);
    /* MemAvailable from an injected meminfo */
    write_text(tp("%s", "meminfo"), "MemTotal:       16000000 kB\nMemFree:  1 kB\n"
                                    "MemAvailable:    2097152 kB\nBuffers: 5 kB\n");
    assert_int_equal(reg_mem_available(tp("%s", "meminfo")), 2097152ull * 1024);
    p = (reg_pick_opts){.meminfo_path = tp("%s", "meminfo")};
    assert_int_equal(reg_pick_default(&m, &p, out, sizeof out, &idx), SH_OK);
    assert_string_equal(out, big->path); /* 2 GiB holds it */
    write_text(tp("%s", "meminfo0"), "MemTotal: 5 kB\n");
    assert_int_equal(reg_mem_available(tp("%s", "meminfo0")), 0);
    assert_int_equal(reg_mem_available(tp("%s", "nonexistent")), 0);
    reg_models_free(&m);

    /* nothing listed: the builtin, else not found */
    reg_models empty = {0};
    p = (reg_pick_opts){.mem_available = 1ull << 40, .builtin = "/opt/default.gguf"};
    assert_int_equal(reg_pick_default(&empty, &p, out, sizeof out, &idx), SH_OK);
    assert_string_equal(out, "/opt/default.gguf");
    assert_int_equal(idx, -1);
    p.builtin = NULL;
    assert_int_equal(reg_pick_default(&empty, &p, out, sizeof out, &idx), SH_ENOTFOUND);
    assert_int_equal(reg_pick_default(NULL, NULL, out, sizeof out, NULL), SH_ENOTFOUND);
}

static void test_describe_unreadable(void **state) {
    reg_entry e;
    memset(&e, 0, sizeof e);
    reg_describe(&e, tp("%s", "does-not-exist.gguf"));
    assert_true(e.error[0] != 0);
    assert_int_equal(e.n_params, 0);
    assert_string_equal(reg_source_name(REG_SRC_OLLAMA), "ollama");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_list),
        cmocka_unit_test(test_list_stem_collision_and_no_ollama),
        cmocka_unit_test(test_resolve),
        cmocka_unit_test(test_pick_default),
        cmocka_unit_test(test_describe_unreadable),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
