/* direct.h - direct mode: the engine in this process instead of the daemon, behind the same
 * chat call the REPL and `shammah query` make (client_stream's contract and events).
 *
 * The request becomes a prompt exactly as the daemon makes it (server/local.h: chat template,
 * tools, forced tool calls, sampling parameters), and the generated tokens become the same
 * event stream as the daemon's scheduler produces: START, text deltas, tool calls parsed by
 * the chat template's tool-call parser (TOOL_START / TOOL_DELTA / TOOL_END), then STOP with
 * the reason and usage. So the REPL's tool loop runs unchanged. One sequence, no batching; the
 * KV cache is kept between calls and the longest common prefix of the next prompt is reused
 * (a REPL conversation only evaluates its new turn).
 *
 * Settings come from SHAMMAH_HOME/config.toml [backend] (threads, ctx, kv_type), as the
 * daemon's; the model from -m NAME, else SHAMMAH_MODEL, else [backend] model, else the
 * default pick (the largest model that fits, the embedded default model included). The
 * router, teachers, sessions and adapters are the daemon's: direct mode answers with the base
 * model only. */
#ifndef SH_DIRECT_H
#define SH_DIRECT_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/conv.h"

#define DIRECT_PREFILL_CHUNK 256 /* prompt tokens per evaluation (Ctrl-C is seen between) */

typedef struct direct direct;

/* 1 when config.toml says [client] use_daemon = false (direct mode by default), else 0 (also
 * when the config cannot be read: the daemon path reports that). */
int direct_configured(void);

/* The model direct mode loads: name (-m NAME; may be NULL) resolved through the registry, else
 * SHAMMAH_MODEL, else [backend] model, else the default pick. Into out (cap bytes). On failure
 * prints one line "shammah CMD: ..." and returns -1 (like cli_resolve_model). */
int direct_pick_model(const char *cmd, const char *name, char *out, size_t cap);

/* Loads the model at path (borrowed) with the [backend] settings of config.toml. SH status with
 * a one-line detail naming the file; *out: caller frees with direct_free(). */
int direct_new(direct **out, const char *path);
void direct_free(direct *d);

/* One answer for r, as client_stream: fn gets every event; *cancel (may be NULL; may be set
 * from a signal handler) stops generation within one token or prompt chunk: SH_ECANCELED.
 * A request the model cannot serve (prompt over the context, bad stop strings) arrives as one
 * CONV_EV_ERROR event, as the daemon's 400 would. Returns SH_OK when the answer completed
 * (including with an error event), fn's non-zero value, SH_ECANCELED, or an engine failure
 * (one-line detail). Not thread-safe: one call at a time per direct. */
int direct_stream(direct *d, const conv_request *r, volatile sig_atomic_t *cancel,
                  conv_event_fn fn, void *user);

/* For /model and /daemon: "NAME (ARCH, N parameters, context C, template T)" into out. */
void direct_describe(const direct *d, char *out, size_t cap);
const char *direct_model_path(const direct *d); /* borrowed */

#endif
