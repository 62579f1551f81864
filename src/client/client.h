/* client.h - the shammah command's side of the daemon: finds it, starts it when nobody runs it
 * (auto-spawn), and talks to it over HTTP with libcurl using the same protocol codecs as the
 * server (Anthropic Messages dialect, streaming).
 *
 * Auto-spawn: a client that finds no daemon takes an exclusive flock on
 * SHAMMAH_HOME/daemon.spawn.lock, checks again (another client may have just started one; a
 * locked PID file also means a daemon is on its way), and only then starts `shammah daemon`
 * detached. Concurrent clients therefore start one daemon, and every one of them waits for it.
 *
 * All functions are for one thread at a time per client; the cancel flag may be set from a
 * signal handler. */
#ifndef SH_CLIENT_H
#define SH_CLIENT_H

#include <signal.h>
#include <stddef.h>
#include <sys/types.h>

#include "proto/conv.h"

#define CLIENT_HEALTH_TIMEOUT_MS 500   /* one /health probe */
#define CLIENT_SPAWN_WAIT_MS 10000     /* a started daemon must answer within this */
#define CLIENT_NOTE_AFTER_MS 1000      /* then the "starting" note appears */
#define CLIENT_MAX_BODY (16u << 20)    /* non-streaming response bodies kept */

typedef struct client client;

typedef struct {
    const char *address;   /* "HOST:PORT" (IPv6 as "[::1]:PORT"); copied */
    const char *home;      /* SHAMMAH_HOME; copied */
    const char *api_key;   /* sent as x-api-key when non-NULL; copied */
    int auto_spawn;        /* start the daemon when nobody answers */
    int timeout_seconds;   /* a stream silent this long fails (the daemon pings every 10 s) */
    int quiet;             /* no "starting the shammah daemon" note */
    const char *exe;       /* binary to spawn; NULL = /proc/self/exe */
} client_opts;

/* Creates a client (no connection yet). *out: caller frees with client_free(). */
int client_new(client **out, const client_opts *o);
void client_free(client *c);

/* Fills *o from SHAMMAH_HOME/config.toml ([client] and, for the API key, the first
 * [server] api_keys entry). Strings point into *cfg_storage, which the caller frees with
 * client_config_free(). home_buf receives SHAMMAH_HOME (PATHS_MAX bytes). */
int client_opts_from_config(client_opts *o, void **cfg_storage, char *home_buf, size_t home_cap);
void client_config_free(void *cfg_storage);

/* The daemon's health: 1 = ready (200), 0 = it answers but is not ready (loading: detail in
 * sh_error_last() when the model failed), negative = nothing answers (SH_EIO). */
int client_health(client *c, int timeout_ms);

/* ensure_daemon_running: SH_OK once /health says ready. Starts the daemon when nobody answers
 * and auto_spawn is on, or waits for one another client started. SH_EIO (one-line detail) when
 * no daemon answers; SH_EUNSUPPORTED when the daemon runs but cannot serve (no model, load
 * failure). */
int client_ensure_daemon(client *c);

/* Starts `shammah daemon --bind ADDRESS` detached (new session, stdin /dev/null, output
 * appended to SHAMMAH_HOME/daemon.log); does not wait. *pid: the child. */
int client_spawn(client *c, pid_t *pid);

/* GET path: *body (caller frees, NUL-terminated), *status the HTTP status. SH_EIO when the
 * daemon does not answer. */
int client_get(client *c, const char *path, long *status, char **body);
/* POST path with a JSON body; same contract as client_get. */
int client_post_json(client *c, const char *path, const char *json, long *status, char **body);

/* Streams one answer for r (sent to /v1/messages with stream=true) and calls fn per decoded
 * event; a non-2xx answer arrives as one CONV_EV_ERROR event. *cancel (may be NULL) set to
 * non-zero aborts the transfer (the daemon then cancels generation): SH_ECANCELED.
 * When the daemon is gone before anything arrived, it is restarted once (if auto_spawn) and the
 * request retried. Returns SH_OK when the stream completed (including with an error event),
 * fn's non-zero value, SH_ECANCELED, or SH_EIO with a one-line detail. */
int client_stream(client *c, const conv_request *r, volatile sig_atomic_t *cancel,
                  conv_event_fn fn, void *user);

const char *client_address(const client *c); /* borrowed */

#endif
