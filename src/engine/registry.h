/* registry.h - the models this machine has, by name: listing, name -> path, and the default.
 *
 * Sources, listed in this order (each sorted by name):
 *   home    SHAMMAH_HOME/models/NAME.gguf; the name is the file stem
 *           (qwen2.5-coder-1.5b-instruct-q4_k_m.gguf -> qwen2.5-coder-1.5b-instruct-q4_k_m);
 *   config  model paths the caller passes in (config.toml [backend] model); the name is the
 *           file stem, or the path itself when that stem is already taken;
 *   ollama  Ollama's store, read-only: $OLLAMA_MODELS (default ~/.ollama/models) holds
 *           manifests/<host>/<namespace>/<model>/<tag> (an OCI image manifest, JSON, whose
 *           layer of mediaType application/vnd.ollama.image.model has digest sha256:<hex>) and
 *           the blob blobs/sha256-<hex>, a GGUF file. The name is ollama:<model>:<tag> for
 *           registry.ollama.ai/library, ollama:<namespace>/<model>:<tag> for another namespace
 *           of that registry, ollama:<host>/<namespace>/<model>:<tag> otherwise.
 * A file reached twice (same device and inode) is listed once, under its first source.
 *
 * Each entry is described from its GGUF header (gguf_open() maps the file; no tensor data is
 * read): architecture, parameter count (the sum of every tensor's elements), quantization,
 * trained context and the KV-cache cost per token. A file that cannot be read (corrupt,
 * truncated, a tensor type this engine cannot compute with) is still listed, with the one-line
 * reason in `error`; only the name, path, source and size are meaningful then.
 *
 * Bounds: at most REG_MAX_ENTRIES entries (the rest are counted in n_dropped); names and paths
 * that do not fit their fields, manifests above REG_MAX_MANIFEST bytes and malformed digests are
 * skipped. */
#ifndef SH_REGISTRY_H
#define SH_REGISTRY_H

#include <stddef.h>
#include <stdint.h>

#define REG_MAX_ENTRIES 4096
#define REG_NAME_MAX 256
#define REG_PATH_MAX 1024
#define REG_MAX_MANIFEST (1 << 20)
#define REG_DEFAULT_CTX 32768         /* the daemon's default context, for the KV estimate */
#define REG_OVERHEAD_BYTES (256ull << 20) /* buffers, scratch, the process itself */

typedef enum { REG_SRC_HOME = 0, REG_SRC_CONFIG = 1, REG_SRC_OLLAMA = 2 } reg_source;

typedef struct {
    char name[REG_NAME_MAX];
    char path[REG_PATH_MAX];
    reg_source source;
    uint64_t file_size;
    char error[256];        /* "" = readable; else why not (then the fields below are zero) */
    char arch[32];          /* general.architecture */
    uint64_t n_params;
    char quant[16];         /* general.file_type's name (Q4_K_M...), else the type holding
                             * most tensor bytes (Q8_0...) */
    int64_t n_ctx_train;    /* <arch>.context_length; 0 = unknown */
    int64_t n_layer;
    uint64_t kv_bytes_per_token; /* F16 K and V over every layer: n_layer*2*n_embd_kv*2 */
} reg_entry;

typedef struct {
    reg_entry *v; /* n entries, owned */
    int n;
    int n_dropped; /* entries beyond REG_MAX_ENTRIES */
} reg_models;

typedef struct {
    const char *home;              /* SHAMMAH_HOME; NULL = paths_home(). Borrowed. */
    const char *ollama_dir;        /* NULL = $OLLAMA_MODELS, else $HOME/.ollama/models;
                                    * "" = no Ollama store. Borrowed. */
    const char *const *extra;      /* config model paths (NULL entries and "" ignored; names
                                    * that are not existing files ignored). Borrowed. */
    int n_extra;
} reg_opts;

/* Fills *out with every model found (o may be NULL for the defaults). Missing folders are not
 * errors; an unreadable file is an entry with an error note. Errors: SH_ENOMEM, and SH_ENOTFOUND
 * when no home can be determined and none is given. Caller frees with reg_models_free(). */
int reg_list(reg_models *out, const reg_opts *o);
void reg_models_free(reg_models *m);

/* Describes one file into e (name, path and source are left to the caller). Never fails: an
 * unreadable file gets e->error. */
void reg_describe(reg_entry *e, const char *path);

/* Maps what a user typed to a file path, into out (cap bytes), trying in order:
 *   ollama:MODEL[:TAG]  the blob of that manifest (TAG defaults to latest; MODEL may be
 *                       namespace/model or host/namespace/model);
 *   an existing path    as given;
 *   anything with '/'   as given (the loader then says what is wrong with it);
 *   NAME or NAME.gguf   in SHAMMAH_HOME/models;
 *   the stem or name of a config path (o->extra).
 * SH_ENOTFOUND otherwise, with a one-line message that points at `shammah models`; SH_ERANGE
 * when the result does not fit. */
int reg_resolve(const char *name, const reg_opts *o, char *out, size_t cap);

/* Choosing a model when none is configured.
 *
 * Rule: among the readable entries, the largest file whose estimated resident memory fits in
 * MemAvailable, where
 *   need = file size + KV cache + REG_OVERHEAD_BYTES,
 *   KV cache = kv_bytes_per_token * min(ctx, trained context)   (F16 K and V, every layer),
 * and ctx is the daemon's context (REG_DEFAULT_CTX unless given). When none fits, the smallest
 * readable one (it may still run, slowly, with a smaller context or swap). When the list has
 * no readable entry, the builtin path if one is given. Ties keep list order (home first). */
typedef struct {
    int64_t ctx;                /* 0 = REG_DEFAULT_CTX */
    uint64_t mem_available;     /* bytes; 0 = MemAvailable from meminfo_path */
    const char *meminfo_path;   /* NULL = /proc/meminfo; borrowed */
    const char *builtin;        /* fallback path, or NULL; borrowed */
} reg_pick_opts;

/* Writes the chosen path into out and its index into *index (-1 for the builtin). Returns
 * SH_ENOTFOUND when there is nothing to choose, SH_ERANGE when the path does not fit. p may be
 * NULL. index may be NULL. */
int reg_pick_default(const reg_models *m, const reg_pick_opts *p, char *out, size_t cap,
                     int *index);

/* Memory need of an entry at context ctx (0 = REG_DEFAULT_CTX), per the rule above. */
uint64_t reg_need_bytes(const reg_entry *e, int64_t ctx);

/* MemAvailable in bytes from a /proc/meminfo-format file (NULL = /proc/meminfo); 0 when it
 * cannot be read. */
uint64_t reg_mem_available(const char *meminfo_path);

const char *reg_source_name(reg_source s); /* "home", "config", "ollama" */

#endif
