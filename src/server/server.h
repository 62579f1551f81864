/* server.h - the daemon: HTTP API (OpenAI and Anthropic dialects) over the local engine,
 * with its life cycle (PID file, signals, background model loading). */
#ifndef SH_SERVER_H
#define SH_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "base/config.h"

typedef struct {
    const char *home;       /* SHAMMAH_HOME (exists) */
    const char *bind_host;  /* numeric address or "localhost" */
    int bind_port;
    const char *model_path; /* NULL or "": no local model (requests get 503) */
    int threads;            /* 0 = auto */
    int32_t ctx;            /* requested context; clamped to the model */
    int kv_type;
    int parallel;
    int64_t max_body_bytes;
    const char *const *api_keys; /* n_api_keys == 0: no authentication */
    int n_api_keys;
    /* Browser origins allowed besides the loopback ones (exact match; "*" = any). A request
     * carrying any other Origin is refused (403), so a web page cannot drive the daemon even
     * with requests a browser sends without asking (CORS "simple" POSTs). */
    const char *const *cors_origins;
    int n_cors_origins;
    int max_messages; /* messages in one request (400 beyond); 0 = 10000 */
    int max_sessions;         /* sessions kept (LRU beyond) */
    int session_idle_minutes; /* idle sessions expire */
    int insecure_no_auth;     /* allow a non-loopback bind without API keys */
    int backend_disabled;     /* [backend] enabled = false: teachers only */
    const sh_config_teacher *teachers; /* the fallback chain, in order (borrowed) */
    int n_teachers;
    int train_auto;      /* [training] enabled: runs start by themselves */
    int train_threshold; /* ... when this many examples are pending ([training] min_examples) */
    int distill;         /* [training] distill: teacher answers become examples (weight 1) */
    /* [training] rank, alpha, targets, dropout, learning_rate, epochs, batch_size,
     * max_seq_len, interval_minutes (borrowed; NULL = the defaults of config.h) */
    const struct sh_config_training *training;
    /* Models a request names (`shammah models` names other than the default) are loaded on
     * demand: at most max_loaded_models models in memory, the default included (least recently
     * used idle one unloaded first), each unloaded after keep_alive_seconds idle (0: right
     * after its request, < 0: never). The default model always stays. */
    int max_loaded_models;
    int64_t keep_alive_seconds;
} server_opts;

/* Runs the daemon in the foreground until SIGINT/SIGTERM. Returns the process exit code
 * (0 after a clean shutdown). Messages go to stderr (and the log, via the caller). */
int server_run(const server_opts *o);

#endif
