/* client.c - daemon client: health probes, auto-spawn, streaming requests over libcurl. */
#include "client/client.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/config.h"
#include "base/paths.h"
#include "base/status.h"
#include "proto/anthropic.h"
#include "server/pidfile.h"

#define CLIENT_SPAWN_LOCK "daemon.spawn.lock"
#define CLIENT_CONNECT_TIMEOUT_S 5

struct client {
    char base[512];    /* "http://HOST:PORT" */
    char address[300];
    char home[PATHS_MAX];
    char api_key[512];
    char exe[PATHS_MAX];
    int has_key;
    int auto_spawn;
    int timeout_seconds;
    int quiet;
    int noted;         /* the "starting" note was printed */
    pid_t child;       /* a daemon we spawned and have not reaped, or 0 */
};

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static int copy_str(char *dst, size_t cap, const char *src, const char *what) {
    if (snprintf(dst, cap, "%s", src ? src : "") >= (int)cap)
        return sh_error_set(SH_ERANGE, "client: %s too long", what);
    return SH_OK;
}

int client_new(client **out, const client_opts *o) {
    *out = NULL;
    static int curl_ready;
    if (!curl_ready) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0)
            return sh_error_set(SH_EIO, "client: libcurl failed to initialise");
        curl_ready = 1;
    }
    client *c = calloc(1, sizeof *c);
    if (!c) return sh_error_set(SH_ENOMEM, "client: out of memory");
    char host[256];
    int port = 0, st;
    if ((st = config_split_address(o->address, host, sizeof host, &port))) {
        char why[256];
        snprintf(why, sizeof why, "%s", sh_error_last());
        st = sh_error_set(st, "bad daemon address '%s': %s", o->address, why);
        goto fail;
    }
    /* an IPv6 host goes back in brackets in the URL */
    snprintf(c->base, sizeof c->base, strchr(host, ':') ? "http://[%s]:%d" : "http://%s:%d", host, port);
    if ((st = copy_str(c->address, sizeof c->address, o->address, "address")) ||
        (st = copy_str(c->home, sizeof c->home, o->home, "home")) ||
        (st = copy_str(c->api_key, sizeof c->api_key, o->api_key, "api key")))
        goto fail;
    c->has_key = o->api_key && *o->api_key;
    if (o->exe) {
        if ((st = copy_str(c->exe, sizeof c->exe, o->exe, "executable path"))) goto fail;
    } else {
        ssize_t n = readlink("/proc/self/exe", c->exe, sizeof c->exe - 1);
        if (n <= 0) {
            st = sh_error_set(SH_EIO, "cannot find my own executable: %s", strerror(errno));
            goto fail;
        }
        c->exe[n] = 0;
    }
    c->auto_spawn = o->auto_spawn;
    c->timeout_seconds = o->timeout_seconds > 0 ? o->timeout_seconds : 120;
    c->quiet = o->quiet;
    *out = c;
    return SH_OK;
fail:
    free(c);
    return st;
}

void client_free(client *c) {
    if (!c) return;
    /* reap a spawned daemon only if it already died; a live one keeps running on its own */
    if (c->child) waitpid(c->child, NULL, WNOHANG);
    free(c);
}

const char *client_address(const client *c) { return c->address; }

int client_opts_from_config(client_opts *o, void **cfg_storage, char *home_buf, size_t home_cap) {
    memset(o, 0, sizeof *o);
    *cfg_storage = NULL;
    char cfg_path[PATHS_MAX];
    int st;
    if ((st = paths_ensure_home(home_buf, home_cap)) ||
        (st = paths_join(cfg_path, sizeof cfg_path, home_buf, PATHS_CONFIG)))
        return st;
    sh_config *cfg = malloc(sizeof *cfg);
    if (!cfg) return sh_error_set(SH_ENOMEM, "out of memory");
    if ((st = config_load(cfg, cfg_path))) {
        free(cfg);
        return st;
    }
    o->address = config_daemon_address(cfg);
    o->home = home_buf;
    o->api_key = cfg->server.n_api_keys > 0 ? cfg->server.api_keys[0] : NULL;
    o->auto_spawn = cfg->client.auto_spawn;
    o->timeout_seconds = cfg->client.timeout_seconds;
    *cfg_storage = cfg;
    return SH_OK;
}

void client_config_free(void *cfg_storage) {
    if (!cfg_storage) return;
    config_free(cfg_storage);
    free(cfg_storage);
}

/* ---- plain requests ---- */

typedef struct {
    conv_buf body;
} body_ctx;

static size_t body_write(char *p, size_t size, size_t n, void *user) {
    body_ctx *b = user;
    if (conv_buf_append(&b->body, p, size * n)) return 0; /* over the bound: abort */
    return size * n;
}

static CURL *easy_for(client *c, const char *path, struct curl_slist **hdrs) {
    CURL *h = curl_easy_init();
    if (!h) return NULL;
    char url[1024];
    snprintf(url, sizeof url, "%s%s", c->base, path);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_PROXY, ""); /* the daemon is local: ignore http_proxy */
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, (long)CLIENT_CONNECT_TIMEOUT_S);
    *hdrs = NULL;
    if (c->has_key) {
        char kh[600];
        snprintf(kh, sizeof kh, "x-api-key: %s", c->api_key);
        *hdrs = curl_slist_append(*hdrs, kh);
    }
    return h;
}

/* One request; body_json NULL = GET. */
static int do_request(client *c, const char *path, const char *body_json, long timeout_ms,
                      long *status, char **body) {
    struct curl_slist *hdrs = NULL;
    body_ctx b;
    conv_buf_init(&b.body, CLIENT_MAX_BODY);
    *status = 0;
    if (body) *body = NULL;
    int st = SH_OK;
    CURL *h = easy_for(c, path, &hdrs);
    if (!h) {
        st = sh_error_set(SH_ENOMEM, "libcurl: cannot create a handle");
        goto out;
    }
    if (body_json) {
        hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body_json);
    }
    if (hdrs) curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, body_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
    CURLcode cc = curl_easy_perform(h);
    if (cc != CURLE_OK) {
        st = sh_error_set(SH_EIO, "no shammah daemon answers at %s (%s)", c->address,
                          curl_easy_strerror(cc));
        goto out;
    }
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
    if (body) {
        if (!b.body.p && conv_buf_append(&b.body, "", 0)) {
            st = sh_error_set(SH_ENOMEM, "out of memory");
            goto out;
        }
        if (!b.body.p) {
            *body = strdup("");
            if (!*body) st = sh_error_set(SH_ENOMEM, "out of memory");
        } else {
            *body = b.body.p;
            b.body.p = NULL;
        }
    }
out:
    if (h) curl_easy_cleanup(h);
    curl_slist_free_all(hdrs);
    conv_buf_free(&b.body);
    return st;
}

int client_get(client *c, const char *path, long *status, char **body) {
    return do_request(c, path, NULL, (long)c->timeout_seconds * 1000, status, body);
}

int client_post_json(client *c, const char *path, const char *json, long *status, char **body) {
    return do_request(c, path, json, (long)c->timeout_seconds * 1000, status, body);
}

/* ---- health and auto-spawn ---- */

int client_health(client *c, int timeout_ms) {
    long status = 0;
    char *body = NULL;
    int st = do_request(c, "/health", NULL, timeout_ms, &status, &body);
    if (st) return st;
    if (status == 200) st = 1;
    else if (strstr(body, "\"loading\"")) st = 0;
    else if (strstr(body, "\"no_model\""))
        st = sh_error_set(SH_EUNSUPPORTED, "the daemon at %s has no model configured (set [backend] "
                          "model in config.toml or SHAMMAH_MODEL)", c->address);
    else if (strstr(body, "\"failed\""))
        st = sh_error_set(SH_EUNSUPPORTED, "the daemon at %s failed to load its model: %.300s",
                          c->address, body);
    else
        st = sh_error_set(SH_EUNSUPPORTED, "the daemon at %s answers /health with HTTP %ld",
                          c->address, status);
    free(body);
    return st;
}

int client_spawn(client *c, pid_t *pid) {
    char log_path[PATHS_MAX];
    int st = paths_file(log_path, sizeof log_path, PATHS_LOG);
    if (st) return st;
    /* opened before fork so the child cannot fail silently on it */
    int logfd = open(log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (logfd < 0) return sh_error_set(SH_EIO, "cannot open %s: %s", log_path, strerror(errno));
    int nullfd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (nullfd < 0) {
        close(logfd);
        return sh_error_set(SH_EIO, "cannot open /dev/null: %s", strerror(errno));
    }
    fflush(NULL);
    pid_t p = fork();
    if (p < 0) {
        close(logfd);
        close(nullfd);
        return sh_error_set(SH_EIO, "fork: %s", strerror(errno));
    }
    if (p == 0) {
        /* a session of its own: the terminal's Ctrl-C and hang-up never reach the daemon */
        setsid();
        dup2(nullfd, 0);
        dup2(logfd, 1);
        dup2(logfd, 2);
        for (int fd = 3; fd < 1024; fd++) close(fd);
        signal(SIGINT, SIG_DFL);
        signal(SIGPIPE, SIG_DFL);
        execl(c->exe, "shammah", "daemon", "--bind", c->address, (char *)NULL);
        dprintf(2, "shammah: cannot start the daemon (%s): %s\n", c->exe, strerror(errno));
        _exit(127);
    }
    close(logfd);
    close(nullfd);
    c->child = p;
    *pid = p;
    return SH_OK;
}

static int pid_path(client *c, char *out, size_t cap) {
    return paths_join(out, cap, c->home, PATHS_PIDFILE);
}

/* The last line of daemon.log, for a daemon that died at start. */
static void last_log_line(client *c, char *out, size_t cap) {
    out[0] = 0;
    char path[PATHS_MAX];
    if (paths_join(path, sizeof path, c->home, PATHS_LOG)) return;
    FILE *f = fopen(path, "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        size_t n = strlen(line);
        while (n && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = 0;
        if (n) snprintf(out, cap, "%s", line);
    }
    fclose(f);
}

static void note(client *c, double started) {
    if (!c->quiet && !c->noted && now_ms() - started >= CLIENT_NOTE_AFTER_MS) {
        fprintf(stderr, "starting the shammah daemon…\n");
        c->noted = 1;
    }
}

/* Waits until health is ready, or fails. any_answer: return once anything answers (so the
 * spawn lock can be released early). */
static int wait_health(client *c, double started, double deadline, int any_answer) {
    for (;;) {
        int h = client_health(c, 300);
        if (h == 1 || h == SH_EUNSUPPORTED) return h == 1 ? SH_OK : h;
        if (h == 0 && any_answer) return SH_OK;
        if (c->child) {
            int ws;
            if (waitpid(c->child, &ws, WNOHANG) == c->child) {
                c->child = 0;
                /* lost the race to a daemon started at the same moment (its bind or PID file
                 * won): that one serves us */
                char pp[PATHS_MAX];
                if (!pid_path(c, pp, sizeof pp) && pidfile_running(pp)) continue;
                char last[512];
                last_log_line(c, last, sizeof last);
                return sh_error_set(SH_EIO, "the shammah daemon exited at start%s%s (see %s/%s)",
                                    *last ? ": " : "", last, c->home, PATHS_LOG);
            }
        }
        if (now_ms() >= deadline)
            return sh_error_set(SH_EIO, "the shammah daemon at %s did not become ready within %d s "
                                "(see %s/%s)", c->address, CLIENT_SPAWN_WAIT_MS / 1000, c->home,
                                PATHS_LOG);
        note(c, started);
        sleep_ms(100);
    }
}

int client_ensure_daemon(client *c) {
    double started = now_ms(), deadline = started + CLIENT_SPAWN_WAIT_MS;
    int h = client_health(c, CLIENT_HEALTH_TIMEOUT_MS);
    if (h == 1) return SH_OK;
    if (h == SH_EUNSUPPORTED) return h;
    if (h == 0) return wait_health(c, started, deadline, 0);
    char pp[PATHS_MAX], lock_path[PATHS_MAX];
    int st = SH_OK, lockfd = -1;
    if ((st = pid_path(c, pp, sizeof pp))) return st;
    if (pidfile_running(pp)) return wait_health(c, started, deadline, 0); /* on its way up */
    if (!c->auto_spawn)
        return sh_error_set(SH_EIO, "no shammah daemon answers at %s (auto_spawn is off: start one "
                            "with `shammah daemon-start`)", c->address);
    if ((st = paths_file(lock_path, sizeof lock_path, CLIENT_SPAWN_LOCK))) return st;
    lockfd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (lockfd < 0) return sh_error_set(SH_EIO, "cannot open %s: %s", lock_path, strerror(errno));
    /* bounded wait for the lock: a client holding it is starting the daemon for us too */
    while (flock(lockfd, LOCK_EX | LOCK_NB) != 0) {
        if (now_ms() >= deadline) {
            st = sh_error_set(SH_EIO, "another shammah is still starting the daemon after %d s",
                              CLIENT_SPAWN_WAIT_MS / 1000);
            goto out;
        }
        note(c, started);
        sleep_ms(50);
    }
    h = client_health(c, CLIENT_HEALTH_TIMEOUT_MS);
    if (h >= 0 || pidfile_running(pp)) {
        close(lockfd); /* someone else's daemon: just wait for it */
        lockfd = -1;
        st = wait_health(c, started, deadline, 0);
        goto out;
    }
    pid_t pid;
    if ((st = client_spawn(c, &pid))) goto out;
    st = wait_health(c, started, deadline, 1);
    close(lockfd);
    lockfd = -1;
    if (!st) st = wait_health(c, started, deadline, 0);
out:
    if (lockfd >= 0) close(lockfd);
    return st;
}

/* ---- streaming ---- */

typedef struct {
    CURL *h;
    anthropic_dec *dec;
    conv_event_fn fn;
    void *user;
    volatile sig_atomic_t *cancel;
    int delivered; /* events passed to fn */
    int cb_rc;     /* fn's non-zero value */
    int dec_rc;    /* decoder failure */
    int canceled;
} stream_ctx;

static int stream_event(void *user, const conv_event *ev) {
    stream_ctx *s = user;
    s->delivered++;
    int rc = s->fn(s->user, ev);
    if (rc) s->cb_rc = rc;
    return rc;
}

static size_t stream_write(char *p, size_t size, size_t n, void *user) {
    stream_ctx *s = user;
    if (s->cancel && *s->cancel) {
        s->canceled = 1;
        return 0;
    }
    if (!s->dec) {
        long status = 0;
        curl_easy_getinfo(s->h, CURLINFO_RESPONSE_CODE, &status);
        /* a non-2xx answer to a streaming request is one JSON error body */
        s->dec = anthropic_dec_new(status / 100 == 2);
        if (!s->dec) {
            s->dec_rc = sh_error_set(SH_ENOMEM, "out of memory");
            return 0;
        }
    }
    int rc = anthropic_dec_feed(s->dec, p, size * n, stream_event, s);
    if (rc) {
        if (!s->cb_rc) s->dec_rc = rc;
        return 0;
    }
    return size * n;
}

static int stream_progress(void *user, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un) {
    (void)dt, (void)dn, (void)ut, (void)un;
    stream_ctx *s = user;
    if (s->cancel && *s->cancel) {
        s->canceled = 1;
        return 1;
    }
    return 0;
}

/* One attempt. *retryable: the daemon was not there and nothing reached fn. */
static int stream_once(client *c, const char *body, volatile sig_atomic_t *cancel,
                       conv_event_fn fn, void *user, int *retryable) {
    *retryable = 0;
    struct curl_slist *hdrs = NULL;
    stream_ctx s = {.fn = fn, .user = user, .cancel = cancel};
    int st = SH_OK;
    s.h = easy_for(c, "/v1/messages", &hdrs);
    if (!s.h) return sh_error_set(SH_ENOMEM, "libcurl: cannot create a handle");
    hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
    hdrs = curl_slist_append(hdrs, "anthropic-version: 2023-06-01");
    hdrs = curl_slist_append(hdrs, "Accept: text/event-stream");
    curl_easy_setopt(s.h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(s.h, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(s.h, CURLOPT_WRITEFUNCTION, stream_write);
    curl_easy_setopt(s.h, CURLOPT_WRITEDATA, &s);
    curl_easy_setopt(s.h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(s.h, CURLOPT_XFERINFOFUNCTION, stream_progress);
    curl_easy_setopt(s.h, CURLOPT_XFERINFODATA, &s);
    /* a stream may last long; only silence is an error (the daemon pings every 10 s) */
    curl_easy_setopt(s.h, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(s.h, CURLOPT_LOW_SPEED_TIME, (long)c->timeout_seconds);
    CURLcode cc = curl_easy_perform(s.h);
    if (s.canceled || (cancel && *cancel)) {
        st = sh_error_set(SH_ECANCELED, "canceled");
        goto out;
    }
    if (s.cb_rc) {
        st = s.cb_rc;
        goto out;
    }
    if (s.dec_rc) {
        st = s.dec_rc;
        goto out;
    }
    if (cc != CURLE_OK) {
        *retryable = s.delivered == 0 &&
                     (cc == CURLE_COULDNT_CONNECT || cc == CURLE_GOT_NOTHING ||
                      cc == CURLE_RECV_ERROR || cc == CURLE_SEND_ERROR);
        st = sh_error_set(SH_EIO, "%s at %s (%s)",
                          s.delivered ? "the shammah daemon stopped answering"
                                      : "no shammah daemon answers",
                          c->address, curl_easy_strerror(cc));
        goto out;
    }
    if (!s.dec) {
        long status = 0;
        curl_easy_getinfo(s.h, CURLINFO_RESPONSE_CODE, &status);
        s.dec = anthropic_dec_new(status / 100 == 2);
        if (!s.dec) {
            st = sh_error_set(SH_ENOMEM, "out of memory");
            goto out;
        }
    }
    st = anthropic_dec_finish(s.dec, stream_event, &s);
    if (st && s.cb_rc) st = s.cb_rc;
out:
    anthropic_dec_free(s.dec);
    curl_easy_cleanup(s.h);
    curl_slist_free_all(hdrs);
    return st;
}

int client_stream(client *c, const conv_request *r, volatile sig_atomic_t *cancel,
                  conv_event_fn fn, void *user) {
    char *body = anthropic_encode_request_ex(r, r->model ? NULL : "default", 1, ANTHROPIC_REQ_EXTENSIONS);
    if (!body) return sh_error_set(SH_ENOMEM, "out of memory encoding the request");
    int retryable = 0, st = stream_once(c, body, cancel, fn, user, &retryable);
    if (st && retryable && c->auto_spawn) {
        /* the daemon went away between requests: start it again, once */
        char saved[512];
        snprintf(saved, sizeof saved, "%s", sh_error_last());
        int e = client_ensure_daemon(c);
        if (e == SH_OK) {
            st = stream_once(c, body, cancel, fn, user, &retryable);
        } else {
            char why[512];
            snprintf(why, sizeof why, "%s", sh_error_last());
            st = sh_error_set(SH_EIO, "%s; restarting it failed: %s", saved, why);
        }
    }
    free(body);
    return st;
}
