/* loadgen.c - a load generator for the shammah daemon (plain sockets, pthreads, no other
 * dependency).
 *
 * For each of --rounds rounds of --seconds/--rounds seconds:
 *   - --clients threads each run streaming requests back to back, alternating
 *     /v1/chat/completions and /v1/messages; every answer must be HTTP 200 and end properly
 *     (`data: [DONE]` without an error chunk / `event: message_stop` without `event: error`);
 *     time to first token (first text delta) and completion tokens (from the final usage) are
 *     recorded;
 *   - --storm threads start long streams and hang up after the first event (alternately a FIN
 *     and a RST), so the daemon must cancel work and free the connection;
 *   - --slow threads drip their request a few bytes at a time and read the answer slowly;
 * while --idle sockets stay connected all run long without sending a byte. After each round the
 * daemon's (--pid) resident memory, thread count and open descriptors are read from /proc.
 *
 * Exit status 0 when no request failed, no stream was left unterminated, the daemon's RSS grew
 * by at most --rss-growth-kb between the end of the first and of the last round, and its
 * descriptor count came back to its starting value (+ slack) once the idle sockets closed.
 *
 *   loadgen --free-port             print a free loopback port and exit (for scripts)
 *   loadgen --port P [options]      see usage() */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define LG_MAX_SAMPLES (1 << 20) /* TTFT samples kept (more are counted, not kept) */
#define LG_MAX_LINE 65536        /* one SSE line */
#define LG_IO_TIMEOUT_S 60       /* a stream silent this long counts as failed */

typedef struct {
    const char *host;
    int port;
    int clients, storm, slow, idle, rounds;
    double seconds;
    int max_tokens;
    int pid;
    long rss_growth_kb;
    int fd_slack;
    const char *api_key;
} lg_opts;

static lg_opts opt = {.host = "127.0.0.1", .clients = 8, .storm = 4, .slow = 4, .idle = 200,
                      .rounds = 3, .seconds = 15, .max_tokens = 16, .rss_growth_kb = 32768,
                      .fd_slack = 8};

/* ---- results, shared by the worker threads ---- */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static double *ttft; /* seconds */
static size_t n_ttft;
static atomic_long n_ok, n_fail, n_unterminated, n_http_err, n_conn_err, n_tokens, n_no_text;
static atomic_long n_storm, n_slow_ok, n_slow_fail;
static atomic_long n_chat, n_messages;
static atomic_int stop_round;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void sleep_s(double s) {
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static void add_ttft(double v) {
    pthread_mutex_lock(&mu);
    if (n_ttft < LG_MAX_SAMPLES) ttft[n_ttft++] = v;
    pthread_mutex_unlock(&mu);
}

/* ---- sockets ---- */

static int connect_daemon(void) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)opt.port)};
    if (inet_pton(AF_INET, opt.host, &a.sin_addr) != 1 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    struct timeval tv = {LG_IO_TIMEOUT_S, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static int send_all(int fd, const char *p, size_t n) {
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0) {
            if (w < 0 && errno == EINTR) continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* The whole HTTP request for one streaming generation; anthropic selects the dialect. Returns
 * its length (req has cap bytes). */
static int build_request(char *req, size_t cap, int anthropic, unsigned seq, int max_tokens) {
    char body[1024];
    if (anthropic)
        snprintf(body, sizeof body,
                 "{\"model\":\"x\",\"stream\":true,\"max_tokens\":%d,\"temperature\":0.8,"
                 "\"messages\":[{\"role\":\"user\",\"content\":\"Tell me a story about item %u.\"}]}",
                 max_tokens, seq);
    else
        snprintf(body, sizeof body,
                 "{\"model\":\"x\",\"stream\":true,\"stream_options\":{\"include_usage\":true},"
                 "\"max_tokens\":%d,\"temperature\":0.8,\"seed\":%u,"
                 "\"messages\":[{\"role\":\"user\",\"content\":\"Tell me a story about item %u.\"}]}",
                 max_tokens, seq, seq);
    char auth[512] = "";
    if (opt.api_key) snprintf(auth, sizeof auth, "Authorization: Bearer %s\r\n", opt.api_key);
    return snprintf(req, cap,
                    "POST %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
                    "Accept: text/event-stream\r\n%sContent-Length: %zu\r\nConnection: close\r\n\r\n%s",
                    anthropic ? "/v1/messages" : "/v1/chat/completions", opt.host, opt.port, auth,
                    strlen(body), body);
}

/* ---- the response: status line and headers, chunked body, SSE lines ---- */

typedef struct {
    int anthropic;
    /* HTTP */
    char head[8192];
    size_t head_len;
    int in_body, status, chunked;
    /* chunked transfer coding */
    int ch_state; /* 0 size line, 1 data, 2 CRLF after data, 3 trailer/done */
    size_t ch_left;
    char ch_line[64];
    size_t ch_line_len;
    /* SSE */
    char line[LG_MAX_LINE];
    size_t line_len;
    char event[64];
    int done, error, text_events;
    long tokens;
    double t0, t_first;
    int first_event_seen; /* any data line: the storm threads hang up after it */
} lg_resp;

static void on_sse_line(lg_resp *r, const char *l, size_t n) {
    if (n >= 6 && !strncmp(l, "event:", 6)) {
        const char *v = l + 6 + (l[6] == ' ');
        size_t k = n - (size_t)(v - l);
        if (k >= sizeof r->event) k = sizeof r->event - 1;
        memcpy(r->event, v, k);
        r->event[k] = 0;
        return;
    }
    if (n < 5 || strncmp(l, "data:", 5) != 0) return;
    const char *d = l + 5 + (l[5] == ' ');
    r->first_event_seen = 1;
    int text = 0;
    const char *u;
    if (r->anthropic) {
        if (!strcmp(r->event, "content_block_delta")) text = 1;
        else if (!strcmp(r->event, "message_stop")) r->done = 1;
        else if (!strcmp(r->event, "error")) r->error = 1;
        if ((u = strstr(d, "\"output_tokens\":")) && !strcmp(r->event, "message_delta"))
            r->tokens = strtol(u + 16, NULL, 10);
    } else {
        if (!strcmp(d, "[DONE]")) r->done = 1;
        else if (!strncmp(d, "{\"error\"", 8)) r->error = 1;
        else if ((u = strstr(d, "\"content\":\"")) && u[11] != '"') text = 1;
        if ((u = strstr(d, "\"completion_tokens\":"))) r->tokens = strtol(u + 20, NULL, 10);
    }
    if (text) {
        if (!r->text_events) r->t_first = now_s();
        r->text_events++;
    }
}

static void on_body(lg_resp *r, const char *p, size_t n) {
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (c == '\n') {
            size_t k = r->line_len;
            if (k && r->line[k - 1] == '\r') k--;
            r->line[k] = 0;
            on_sse_line(r, r->line, k);
            r->line_len = 0;
        } else if (r->line_len + 1 < sizeof r->line) {
            r->line[r->line_len++] = c;
        }
    }
}

/* Undoes the chunked transfer coding (MHD uses it for streams of unknown length). */
static void on_chunked(lg_resp *r, const char *p, size_t n) {
    size_t i = 0;
    while (i < n && r->ch_state != 3) {
        if (r->ch_state == 0) {
            char c = p[i++];
            if (c == '\n') {
                r->ch_line[r->ch_line_len] = 0;
                r->ch_left = strtoul(r->ch_line, NULL, 16);
                r->ch_line_len = 0;
                r->ch_state = r->ch_left ? 1 : 3;
            } else if (c != '\r' && r->ch_line_len + 1 < sizeof r->ch_line) {
                r->ch_line[r->ch_line_len++] = c;
            }
        } else if (r->ch_state == 1) {
            size_t k = n - i < r->ch_left ? n - i : r->ch_left;
            on_body(r, p + i, k);
            i += k;
            r->ch_left -= k;
            if (!r->ch_left) r->ch_state = 2;
        } else { /* the CRLF closing a chunk */
            if (p[i++] == '\n') r->ch_state = 0;
        }
    }
}

static void on_bytes(lg_resp *r, const char *p, size_t n) {
    if (!r->in_body) {
        size_t i = 0;
        while (i < n && !r->in_body) {
            if (r->head_len + 1 < sizeof r->head) r->head[r->head_len++] = p[i];
            i++;
            r->head[r->head_len] = 0;
            if (r->head_len >= 4 && !memcmp(r->head + r->head_len - 4, "\r\n\r\n", 4)) {
                r->in_body = 1;
                r->status = 0;
                sscanf(r->head, "HTTP/1.%*d %d", &r->status);
                for (char *h = r->head; *h; h++) *h = (char)(*h >= 'A' && *h <= 'Z' ? *h + 32 : *h);
                r->chunked = strstr(r->head, "transfer-encoding: chunked") != NULL;
            }
        }
        p += i;
        n -= i;
    }
    if (!n) return;
    if (r->chunked)
        on_chunked(r, p, n);
    else
        on_body(r, p, n);
}

/* One streaming request; read_delay_s > 0 reads slowly in small pieces, drip sends the request
 * a few bytes at a time, hang_up (1 FIN, 2 RST) leaves after the first event. Returns 0 when the
 * answer was complete and correct (always 0 for hang_up once an event arrived). */
static int one_stream(int anthropic, unsigned seq, int max_tokens, int drip, double read_delay_s,
                      int hang_up, lg_resp *r) {
    char req[2048];
    int n = build_request(req, sizeof req, anthropic, seq, max_tokens);
    memset(r, 0, sizeof *r);
    r->anthropic = anthropic;
    r->t0 = now_s();
    int fd = connect_daemon();
    if (fd < 0) {
        n_conn_err++;
        return -1;
    }
    int rc = -1;
    if (drip) {
        for (int i = 0; i < n; i += 8) {
            if (send_all(fd, req + i, (size_t)(n - i < 8 ? n - i : 8))) goto out;
            sleep_s(0.01);
        }
    } else if (send_all(fd, req, (size_t)n)) {
        n_conn_err++;
        goto out;
    }
    char buf[16384];
    size_t cap = read_delay_s > 0 ? 64 : sizeof buf;
    for (;;) {
        ssize_t k = recv(fd, buf, cap, 0);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) break;
        on_bytes(r, buf, (size_t)k);
        if (hang_up && r->first_event_seen) {
            if (hang_up == 2) {
                struct linger lg = {1, 0}; /* close() sends a RST */
                setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
            }
            rc = 0;
            goto out;
        }
        if (r->done && (!r->chunked || r->ch_state == 3)) break;
        if (read_delay_s > 0) sleep_s(read_delay_s);
    }
    if (r->status != 200) {
        n_http_err++;
    } else if (!r->done || r->error) {
        n_unterminated++;
    } else {
        rc = 0;
    }
out:
    close(fd);
    return rc;
}

/* ---- workers ---- */

static atomic_uint seq_counter;

static void *client_main(void *arg) {
    int k = (int)(intptr_t)arg;
    while (!stop_round) {
        unsigned seq = ++seq_counter;
        int anth = (int)((seq + (unsigned)k) & 1);
        lg_resp *r = malloc(sizeof *r);
        if (!r) abort();
        if (one_stream(anth, seq, opt.max_tokens, 0, 0, 0, r) == 0) {
            n_ok++;
            n_tokens += r->tokens;
            if (r->text_events)
                add_ttft(r->t_first - r->t0);
            else
                n_no_text++;
        } else {
            n_fail++;
        }
        if (anth)
            n_messages++;
        else
            n_chat++;
        free(r);
    }
    return NULL;
}

static void *storm_main(void *arg) {
    int k = (int)(intptr_t)arg;
    unsigned i = 0;
    while (!stop_round) {
        lg_resp *r = malloc(sizeof *r);
        if (!r) abort();
        one_stream((int)(i & 1), ++seq_counter, 100000, 0, 0, 1 + (int)((i + (unsigned)k) & 1), r);
        n_storm++;
        free(r);
        i++;
    }
    return NULL;
}

static void *slow_main(void *arg) {
    int k = (int)(intptr_t)arg;
    while (!stop_round) {
        lg_resp *r = malloc(sizeof *r);
        if (!r) abort();
        if (one_stream(k & 1, ++seq_counter, opt.max_tokens, 1, 0.02, 0, r) == 0)
            n_slow_ok++;
        else
            n_slow_fail++;
        free(r);
    }
    return NULL;
}

/* ---- the daemon's footprint ---- */

typedef struct {
    long rss_kb, threads, fds;
} footprint;

static footprint read_footprint(int pid) {
    footprint f = {-1, -1, -1};
    if (pid <= 0) return f;
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *fp = fopen(path, "r");
    if (fp) {
        while (fgets(line, sizeof line, fp)) {
            if (!strncmp(line, "VmRSS:", 6)) f.rss_kb = strtol(line + 6, NULL, 10);
            if (!strncmp(line, "Threads:", 8)) f.threads = strtol(line + 8, NULL, 10);
        }
        fclose(fp);
    }
    snprintf(path, sizeof path, "/proc/%d/fd", pid);
    DIR *d = opendir(path);
    if (d) {
        f.fds = 0;
        struct dirent *e;
        while ((e = readdir(d))) f.fds += e->d_name[0] != '.';
        closedir(d);
    }
    return f;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double pct(const double *v, size_t n, double p) {
    if (!n) return 0;
    size_t i = (size_t)(p * (double)(n - 1) + 0.5);
    return v[i < n ? i : n - 1];
}

static int free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) || getsockname(fd, (struct sockaddr *)&a, &l)) return 1;
    printf("%d\n", ntohs(a.sin_port));
    close(fd);
    return 0;
}

static void usage(void) {
    fprintf(stderr,
            "usage: loadgen --port P [--host 127.0.0.1] [--seconds 15] [--rounds 3] [--clients 8]\n"
            "               [--storm 4] [--slow 4] [--idle 200] [--max-tokens 16] [--pid DAEMON_PID]\n"
            "               [--rss-growth-kb 32768] [--fd-slack 8] [--api-key KEY]\n"
            "       loadgen --free-port\n");
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--free-port")) return free_port();
        if (!v) {
            usage();
            return 2;
        }
        if (!strcmp(a, "--host")) opt.host = v;
        else if (!strcmp(a, "--port")) opt.port = atoi(v);
        else if (!strcmp(a, "--seconds")) opt.seconds = atof(v);
        else if (!strcmp(a, "--rounds")) opt.rounds = atoi(v);
        else if (!strcmp(a, "--clients")) opt.clients = atoi(v);
        else if (!strcmp(a, "--storm")) opt.storm = atoi(v);
        else if (!strcmp(a, "--slow")) opt.slow = atoi(v);
        else if (!strcmp(a, "--idle")) opt.idle = atoi(v);
        else if (!strcmp(a, "--max-tokens")) opt.max_tokens = atoi(v);
        else if (!strcmp(a, "--pid")) opt.pid = atoi(v);
        else if (!strcmp(a, "--rss-growth-kb")) opt.rss_growth_kb = atol(v);
        else if (!strcmp(a, "--fd-slack")) opt.fd_slack = atoi(v);
        else if (!strcmp(a, "--api-key")) opt.api_key = v;
        else {
            usage();
            return 2;
        }
        i++;
    }
    if (opt.port <= 0 || opt.rounds < 1 || opt.clients < 1 || opt.seconds <= 0 || opt.idle < 0 ||
        opt.storm < 0 || opt.slow < 0 || opt.clients + opt.storm + opt.slow > 4096 || opt.idle > 100000) {
        usage();
        return 2;
    }
    ttft = malloc(LG_MAX_SAMPLES * sizeof *ttft);
    int *idle_fd = calloc((size_t)opt.idle + 1, sizeof *idle_fd);
    pthread_t *th = calloc((size_t)(opt.clients + opt.storm + opt.slow), sizeof *th);
    if (!ttft || !idle_fd || !th) return 1;

    footprint base = read_footprint(opt.pid);
    int n_idle = 0;
    for (int i = 0; i < opt.idle; i++) {
        int fd = connect_daemon();
        if (fd < 0) break;
        idle_fd[n_idle++] = fd;
    }
    printf("loadgen: %s:%d, %d rounds of %.1f s: %d streaming clients, %d disconnecting, %d slow, "
           "%d idle sockets held (%d connected)\n",
           opt.host, opt.port, opt.rounds, opt.seconds / opt.rounds, opt.clients, opt.storm, opt.slow,
           opt.idle, n_idle);
    printf("round  requests  ok    fail  tokens  tok/s   ttft_p50  ttft_p99  rss_kb   threads  fds\n");
    long first_rss = -1, last_rss = -1;
    double t_all = now_s();
    long prev_ok = 0, prev_fail = 0, prev_tok = 0;
    size_t prev_n = 0;
    for (int round = 1; round <= opt.rounds; round++) {
        stop_round = 0;
        int nt = 0;
        double t0 = now_s();
        for (int i = 0; i < opt.clients; i++) pthread_create(&th[nt++], NULL, client_main, (void *)(intptr_t)i);
        for (int i = 0; i < opt.storm; i++) pthread_create(&th[nt++], NULL, storm_main, (void *)(intptr_t)i);
        for (int i = 0; i < opt.slow; i++) pthread_create(&th[nt++], NULL, slow_main, (void *)(intptr_t)i);
        sleep_s(opt.seconds / opt.rounds);
        stop_round = 1;
        for (int i = 0; i < nt; i++) pthread_join(th[i], NULL);
        double dt = now_s() - t0;
        sleep_s(0.3); /* let the daemon finish closing the storm's connections */
        footprint f = read_footprint(opt.pid);
        if (round == 1) first_rss = f.rss_kb;
        last_rss = f.rss_kb;
        pthread_mutex_lock(&mu);
        size_t k = n_ttft - prev_n;
        double *s = malloc((k ? k : 1) * sizeof *s);
        if (!s) abort();
        memcpy(s, ttft + prev_n, k * sizeof *s);
        prev_n = n_ttft;
        pthread_mutex_unlock(&mu);
        qsort(s, k, sizeof *s, cmp_double);
        long ok = n_ok - prev_ok, fail = n_fail - prev_fail, tok = n_tokens - prev_tok;
        printf("%-6d %-9ld %-5ld %-5ld %-7ld %-7.1f %-9.3f %-9.3f %-8ld %-8ld %ld\n", round, ok + fail, ok,
               fail, tok, (double)tok / dt, pct(s, k, 0.5), pct(s, k, 0.99), f.rss_kb, f.threads, f.fds);
        fflush(stdout);
        free(s);
        prev_ok = n_ok;
        prev_fail = n_fail;
        prev_tok = n_tokens;
    }
    double elapsed = now_s() - t_all;
    for (int i = 0; i < n_idle; i++) close(idle_fd[i]);
    /* the daemon notices the idle sockets' EOF and ends their threads */
    footprint end = read_footprint(opt.pid);
    for (int i = 0; i < 50 && opt.pid > 0 && base.fds >= 0 && end.fds > base.fds + opt.fd_slack; i++) {
        sleep_s(0.1);
        end = read_footprint(opt.pid);
    }
    qsort(ttft, n_ttft, sizeof *ttft, cmp_double);
    printf("total: %ld requests (%ld chat, %ld messages) in %.1f s, %ld ok, %ld failed (%ld http errors, "
           "%ld connection errors, %ld unterminated streams), %ld without text\n",
           (long)(n_ok + n_fail), (long)n_chat, (long)n_messages, elapsed, (long)n_ok, (long)n_fail,
           (long)n_http_err, (long)n_conn_err, (long)n_unterminated, (long)n_no_text);
    printf("ttft: p50 %.3f s, p99 %.3f s, max %.3f s (%zu samples); throughput %.1f completion tokens/s, "
           "%.2f requests/s\n",
           pct(ttft, n_ttft, 0.5), pct(ttft, n_ttft, 0.99), n_ttft ? ttft[n_ttft - 1] : 0.0, n_ttft,
           (double)n_tokens / elapsed, (double)(n_ok + n_fail) / elapsed);
    printf("disconnect storm: %ld streams abandoned; slow clients: %ld ok, %ld failed\n", (long)n_storm,
           (long)n_slow_ok, (long)n_slow_fail);
    int rc = 0;
    if (n_fail || n_slow_fail) rc = 1;
    if (n_ok == 0) {
        printf("FAIL: no request succeeded\n");
        rc = 1;
    }
    if (opt.pid > 0) {
        printf("daemon: rss %ld kB before, %ld kB after round 1, %ld kB after round %d (growth %ld kB); "
               "threads %ld -> %ld; fds %ld -> %ld\n",
               base.rss_kb, first_rss, last_rss, opt.rounds, last_rss - first_rss, base.threads,
               end.threads, base.fds, end.fds);
        if (last_rss - first_rss > opt.rss_growth_kb) {
            printf("FAIL: rss grew by %ld kB (limit %ld)\n", last_rss - first_rss, opt.rss_growth_kb);
            rc = 1;
        }
        if (end.fds > base.fds + opt.fd_slack) {
            printf("FAIL: descriptors %ld -> %ld\n", base.fds, end.fds);
            rc = 1;
        }
    }
    if (n_fail || n_slow_fail) printf("FAIL: %ld failed requests\n", (long)(n_fail + n_slow_fail));
    free(ttft);
    free(idle_fd);
    free(th);
    return rc;
}
