/* pull.c - GGUF downloads from Hugging Face with resume and verification (see pull.h). */
#include "client/pull.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/status.h"

#define PULL_CONNECT_TIMEOUT_S 30
#define PULL_STALL_SECONDS 60 /* less than 1 byte/s for this long = a dead connection */
#define PULL_MAX_REDIRECTS 10
#define PULL_DRAW_MS 200

/* ---- SHA-256 ---- */

static const uint32_t sha_k[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
    0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
    0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
    0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
    0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
    0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
    0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
    0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
    0xc67178f2};

static uint32_t rotr(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

static void sha_block(uint32_t h[8], const uint8_t *p) {
    uint32_t w[64];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
               (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = k + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) +
                      sha_k[i] + w[i];
        uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        k = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
    h[5] += f;
    h[6] += g;
    h[7] += k;
}

void pull_sha256_init(pull_sha256 *s) {
    static const uint32_t iv[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(s->h, iv, sizeof iv);
    s->len = 0;
    s->n = 0;
}

void pull_sha256_update(pull_sha256 *s, const void *data, size_t n) {
    const uint8_t *p = data;
    s->len += n;
    if (s->n) {
        size_t take = 64 - s->n < n ? 64 - s->n : n;
        memcpy(s->buf + s->n, p, take);
        s->n += take;
        p += take;
        n -= take;
        if (s->n < 64) return;
        sha_block(s->h, s->buf);
        s->n = 0;
    }
    for (; n >= 64; p += 64, n -= 64) sha_block(s->h, p);
    memcpy(s->buf, p, n);
    s->n = n;
}

void pull_sha256_final(pull_sha256 *s, uint8_t out[32]) {
    uint64_t bits = s->len * 8;
    uint8_t pad[72] = {0x80};
    size_t npad = (s->n < 56 ? 56 : 120) - s->n;
    for (int i = 0; i < 8; i++) pad[npad + i] = (uint8_t)(bits >> (56 - 8 * i));
    pull_sha256_update(s, pad, npad + 8);
    for (int i = 0; i < 8; i++)
        for (int j = 0; j < 4; j++) out[4 * i + j] = (uint8_t)(s->h[i] >> (24 - 8 * j));
}

int pull_sha256_file(const char *path, char hex[65]) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return sh_error_set(SH_EIO, "cannot open %s: %s", path, strerror(errno));
    static const size_t chunk = 1 << 20;
    uint8_t *buf = malloc(chunk);
    int st = SH_OK;
    if (!buf) {
        st = sh_error_set(SH_ENOMEM, "pull: out of memory");
        goto out;
    }
    pull_sha256 s;
    pull_sha256_init(&s);
    for (;;) {
        ssize_t r = read(fd, buf, chunk);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            st = sh_error_set(SH_EIO, "cannot read %s: %s", path, strerror(errno));
            goto out;
        }
        if (r == 0) break;
        pull_sha256_update(&s, buf, (size_t)r);
    }
    uint8_t d[32];
    pull_sha256_final(&s, d);
    for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", d[i]);
out:
    free(buf);
    close(fd);
    return st;
}

/* ---- names ---- */

static const pull_alias aliases[] = {
    {"qwen2.5-coder:0.5b", "Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF",
     "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"},
    {"qwen2.5-coder:1.5b", "Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF",
     "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"},
    {"qwen2.5-coder:3b", "Qwen/Qwen2.5-Coder-3B-Instruct-GGUF",
     "qwen2.5-coder-3b-instruct-q4_k_m.gguf"},
    {"qwen2.5-coder:7b", "Qwen/Qwen2.5-Coder-7B-Instruct-GGUF",
     "qwen2.5-coder-7b-instruct-q4_k_m.gguf"},
    {"qwen2.5:0.5b", "Qwen/Qwen2.5-0.5B-Instruct-GGUF", "qwen2.5-0.5b-instruct-q4_k_m.gguf"},
    {"qwen2.5:1.5b", "Qwen/Qwen2.5-1.5B-Instruct-GGUF", "qwen2.5-1.5b-instruct-q4_k_m.gguf"},
    {"qwen2.5:3b", "Qwen/Qwen2.5-3B-Instruct-GGUF", "qwen2.5-3b-instruct-q4_k_m.gguf"},
    {"qwen3:0.6b", "Qwen/Qwen3-0.6B-GGUF", "Qwen3-0.6B-Q8_0.gguf"},
    {"qwen3:1.7b", "Qwen/Qwen3-1.7B-GGUF", "Qwen3-1.7B-Q8_0.gguf"},
    {"qwen3:4b", "Qwen/Qwen3-4B-GGUF", "Qwen3-4B-Q8_0.gguf"},
    {"llama3.2:1b", "bartowski/Llama-3.2-1B-Instruct-GGUF", "Llama-3.2-1B-Instruct-Q4_K_M.gguf"},
    {"llama3.2:3b", "bartowski/Llama-3.2-3B-Instruct-GGUF", "Llama-3.2-3B-Instruct-Q4_K_M.gguf"},
};

const pull_alias *pull_aliases(int *n) {
    *n = (int)(sizeof aliases / sizeof aliases[0]);
    return aliases;
}

/* One name component: [A-Za-z0-9._+-]+, not "." or "..". */
static int part_ok(const char *s, size_t n) {
    if (!n || (n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.')) return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && !strchr("._+-", s[i])) return 0;
    return 1;
}

/* Every '/'-separated component of s is part_ok; returns their count, 0 when one is bad. */
static int path_ok(const char *s) {
    int n = 0;
    for (const char *p = s;; n++) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        if (!part_ok(p, len)) return 0;
        if (!slash) return n + 1;
        p = slash + 1;
    }
}

static int set_spec(pull_spec *out, const char *spec, const char *repo, const char *path) {
    if (snprintf(out->repo, sizeof out->repo, "%s", repo) >= (int)sizeof out->repo ||
        snprintf(out->path, sizeof out->path, "%s", path) >= (int)sizeof out->path)
        return sh_error_set(SH_EINVAL, "'%s': name too long", spec);
    if (path_ok(out->repo) != 2)
        return sh_error_set(SH_EINVAL, "'%s': the repository must be OWNER/REPO", spec);
    if (!path_ok(out->path))
        return sh_error_set(SH_EINVAL, "'%s': bad file path (letters, digits, . _ - + only)", spec);
    const char *base = strrchr(out->path, '/');
    base = base ? base + 1 : out->path;
    size_t n = strlen(base);
    if (n < 6 || strcmp(base + n - 5, ".gguf"))
        return sh_error_set(SH_EINVAL, "'%s': not a .gguf file (hf:OWNER/REPO/FILE.gguf)", spec);
    if (n > PULL_FILE_MAX) return sh_error_set(SH_EINVAL, "'%s': file name too long", spec);
    memcpy(out->file, base, n + 1);
    return SH_OK;
}

int pull_parse(const char *spec, pull_spec *out) {
    memset(out, 0, sizeof *out);
    if (!spec || !*spec) return sh_error_set(SH_EINVAL, "nothing to pull");
    for (size_t i = 0; i < sizeof aliases / sizeof aliases[0]; i++)
        if (!strcmp(spec, aliases[i].alias))
            return set_spec(out, spec, aliases[i].repo, aliases[i].path);
    if (strncmp(spec, "hf:", 3))
        return sh_error_set(SH_EINVAL,
                            "unknown model '%s': use hf:OWNER/REPO/FILE.gguf or an alias "
                            "(shammah pull --help lists them)", spec);
    const char *s = spec + 3;
    char repo[256];
    const char *colon = strchr(s, ':');
    const char *slash1 = strchr(s, '/');
    const char *slash2 = slash1 ? strchr(slash1 + 1, '/') : NULL;
    const char *sep = colon && (!slash2 || colon < slash2) ? colon : slash2;
    if (!slash1 || !sep || sep < slash1)
        return sh_error_set(SH_EINVAL, "'%s': name the file: hf:OWNER/REPO/FILE.gguf", spec);
    size_t rn = (size_t)(sep - s);
    if (rn >= sizeof repo) return sh_error_set(SH_EINVAL, "'%s': name too long", spec);
    memcpy(repo, s, rn);
    repo[rn] = 0;
    return set_spec(out, spec, repo, sep + 1);
}

static const char *endpoint_of(const char *e) {
    if (!e) e = getenv("HF_ENDPOINT");
    return e && *e ? e : PULL_DEFAULT_ENDPOINT;
}

int pull_url(const pull_spec *s, const char *endpoint, char *out, size_t cap) {
    const char *e = endpoint_of(endpoint);
    size_t n = strlen(e);
    while (n && e[n - 1] == '/') n--;
    if (snprintf(out, cap, "%.*s/%s/resolve/main/%s", (int)n, e, s->repo, s->path) >= (int)cap)
        return sh_error_set(SH_ERANGE, "URL too long");
    return SH_OK;
}

static int read_token_file(const char *path, char *out, size_t cap) {
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t n = fread(out, 1, cap - 1, f);
    fclose(f);
    out[n] = 0;
    return 1;
}

void pull_token(char *out, size_t cap) {
    out[0] = 0;
    const char *t = getenv("HF_TOKEN");
    if (t && *t) {
        snprintf(out, cap, "%s", t);
    } else {
        char path[4096];
        const char *hh = getenv("HF_HOME"), *home = getenv("HOME");
        if (hh && *hh) {
            if (snprintf(path, sizeof path, "%s/token", hh) < (int)sizeof path)
                read_token_file(path, out, cap);
        } else if (home && *home &&
                   snprintf(path, sizeof path, "%s/.cache/huggingface/token", home) <
                       (int)sizeof path) {
            read_token_file(path, out, cap);
        }
    }
    /* trim surrounding white space; anything else outside printable ASCII voids the token */
    char *p = out;
    while (*p && isspace((unsigned char)*p)) p++;
    size_t n = strlen(p);
    while (n && isspace((unsigned char)p[n - 1])) n--;
    memmove(out, p, n);
    out[n] = 0;
    for (size_t i = 0; i < n; i++)
        if (out[i] <= ' ' || out[i] > '~') {
            out[0] = 0;
            return;
        }
}

/* ---- one transfer ---- */

typedef struct {
    int fd;                /* the .part, locked */
    uint64_t offset;       /* its size when this attempt started */
    uint64_t written;      /* bytes appended by this attempt */
    long status;           /* of the response being received */
    int64_t content_length;
    int64_t range_start, range_total; /* Content-Range; -1 unknown */
    char etag[128];        /* of the last response */
    char linked_etag[128]; /* X-Linked-Etag of any response in the chain */
    int64_t linked_size;
    int decided;           /* the first body byte positioned the file */
    int range_mismatch;
    int write_errno;
    /* progress */
    int bar, quiet;
    const char *file;
    uint64_t session_bytes; /* over all attempts, for the rate */
    double t0, last_draw;
    int drawn;
} xfer;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void sleep_s(double s) {
    struct timespec ts = {(time_t)s, (long)((s - (time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static int64_t parse_i64(const char *s) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || v < 0) return -1;
    return v;
}

/* Copies a header value (trimmed, without quotes and W/ prefix) into out. */
static void header_value(const char *v, size_t n, char *out, size_t cap) {
    while (n && (*v == ' ' || *v == '\t')) v++, n--;
    while (n && (v[n - 1] == '\r' || v[n - 1] == '\n' || v[n - 1] == ' ')) n--;
    if (n >= 2 && v[0] == 'W' && v[1] == '/') v += 2, n -= 2;
    if (n >= 2 && v[0] == '"' && v[n - 1] == '"') v++, n -= 2;
    if (n >= cap) n = cap - 1;
    memcpy(out, v, n);
    out[n] = 0;
}

static size_t on_header(char *buf, size_t size, size_t nitems, void *ud) {
    xfer *x = ud;
    size_t n = size * nitems;
    char val[128];
    if (n > 5 && !strncmp(buf, "HTTP/", 5)) {
        /* a new response of the redirect chain: its own fields start over */
        const char *sp = memchr(buf, ' ', n);
        x->status = sp ? strtol(sp + 1, NULL, 10) : 0;
        x->content_length = x->range_start = x->range_total = -1;
        x->etag[0] = 0;
        return n;
    }
    const char *colon = memchr(buf, ':', n);
    if (!colon) return n;
    size_t kn = (size_t)(colon - buf);
    const char *v = colon + 1;
    size_t vn = n - kn - 1;
#define IS(k) (kn == sizeof(k) - 1 && !strncasecmp(buf, k, kn))
    if (IS("content-length")) {
        header_value(v, vn, val, sizeof val);
        x->content_length = parse_i64(val);
    } else if (IS("content-range")) {
        /* bytes START-END/TOTAL or bytes * /TOTAL (416) */
        header_value(v, vn, val, sizeof val);
        const char *p = val;
        if (!strncasecmp(p, "bytes", 5)) p += 5;
        while (*p == ' ') p++;
        x->range_start = *p == '*' ? -1 : parse_i64(p);
        const char *slash = strchr(p, '/');
        x->range_total = slash && slash[1] != '*' ? parse_i64(slash + 1) : -1;
    } else if (IS("etag")) {
        header_value(v, vn, x->etag, sizeof x->etag);
    } else if (IS("x-linked-etag")) {
        if (!x->linked_etag[0]) header_value(v, vn, x->linked_etag, sizeof x->linked_etag);
    } else if (IS("x-linked-size")) {
        header_value(v, vn, val, sizeof val);
        if (x->linked_size < 0) x->linked_size = parse_i64(val);
    }
#undef IS
    return n;
}

static void fmt_mib(char *out, size_t cap, uint64_t b) {
    if (b >= (1ull << 30)) snprintf(out, cap, "%.2f GiB", b / 1073741824.0);
    else snprintf(out, cap, "%.1f MiB", b / 1048576.0);
}

static void fmt_dur(char *out, size_t cap, double s) {
    if (s < 0 || s > 359999) snprintf(out, cap, "--");
    else if (s >= 3600) snprintf(out, cap, "%dh%02dm", (int)(s / 3600), (int)(s / 60) % 60);
    else if (s >= 60) snprintf(out, cap, "%dm%02ds", (int)(s / 60), (int)s % 60);
    else snprintf(out, cap, "%ds", (int)s);
}

static uint64_t expected_total(const xfer *x) {
    if (x->status == 206 && x->range_total >= 0) return (uint64_t)x->range_total;
    if (x->status == 206 && x->content_length >= 0) return x->offset + (uint64_t)x->content_length;
    if (x->status == 200 && x->content_length >= 0) return (uint64_t)x->content_length;
    return x->linked_size > 0 ? (uint64_t)x->linked_size : 0;
}

static void draw(xfer *x, int force) {
    if (!x->bar || x->quiet) return;
    double t = now_s();
    if (!force && t - x->last_draw < PULL_DRAW_MS / 1000.0) return;
    x->last_draw = t;
    uint64_t have = x->offset + x->written, total = expected_total(x);
    double rate = t > x->t0 ? x->session_bytes / (t - x->t0) : 0;
    char a[32], b[32], eta[32];
    fmt_mib(a, sizeof a, have);
    fmt_mib(b, sizeof b, total);
    fmt_dur(eta, sizeof eta, rate > 0 && total > have ? (total - have) / rate : -1);
    if (total)
        fprintf(stderr, "\r\033[K%s  %s / %s  %3.0f%%  %.1f MiB/s  ETA %s", x->file, a, b,
                100.0 * have / total, rate / 1048576.0, eta);
    else
        fprintf(stderr, "\r\033[K%s  %s  %.1f MiB/s", x->file, a, rate / 1048576.0);
    x->drawn = 1;
}

static uint64_t fd_size(int fd) {
    struct stat sb;
    return fstat(fd, &sb) == 0 ? (uint64_t)sb.st_size : 0;
}

static size_t on_body(char *buf, size_t size, size_t nmemb, void *ud) {
    xfer *x = ud;
    size_t n = size * nmemb;
    if (x->status != 200 && x->status != 206) return n; /* an error page: not kept */
    if (!x->decided) {
        x->decided = 1;
        if (x->status == 206 && x->range_start != (int64_t)x->offset) {
            x->range_mismatch = 1;
            return 0;
        }
        if (x->status == 200) x->offset = 0; /* the server ignored the range: start over */
        if ((fd_size(x->fd) != x->offset && ftruncate(x->fd, (off_t)x->offset) != 0) ||
            lseek(x->fd, (off_t)x->offset, SEEK_SET) < 0) {
            x->write_errno = errno;
            return 0;
        }
    }
    for (size_t done = 0; done < n;) {
        ssize_t w = write(x->fd, buf + done, n - done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            x->write_errno = w < 0 ? errno : EIO;
            return 0;
        }
        done += (size_t)w;
        x->written += (uint64_t)w;
        x->session_bytes += (uint64_t)w;
    }
    draw(x, 0);
    return n;
}

/* One request from x->offset on. Returns the curl code; *curl_msg gets its text. */
static CURLcode transfer(xfer *x, const char *url, const char *token, char *curl_msg, size_t cap) {
    CURL *c = curl_easy_init();
    if (!c) {
        snprintf(curl_msg, cap, "libcurl failed to initialise");
        return CURLE_FAILED_INIT;
    }
    struct curl_slist *hdr = NULL, *h2;
    char auth[PULL_TOKEN_MAX + 32], range[64];
    if (token && *token) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
        if ((h2 = curl_slist_append(hdr, auth))) hdr = h2;
    }
    char errbuf[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, (long)PULL_MAX_REDIRECTS);
    curl_easy_setopt(c, CURLOPT_UNRESTRICTED_AUTH, 0L);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "shammah-pull");
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, (long)PULL_CONNECT_TIMEOUT_S);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, (long)PULL_STALL_SECONDS);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    if (x->offset > 0) {
        snprintf(range, sizeof range, "%" PRIu64 "-", x->offset);
        curl_easy_setopt(c, CURLOPT_RANGE, range);
    }
    CURLcode rc = curl_easy_perform(c);
    long code = 0;
    if (curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code) == CURLE_OK && code) x->status = code;
    snprintf(curl_msg, cap, "%s", errbuf[0] ? errbuf : curl_easy_strerror(rc));
    curl_easy_cleanup(c);
    curl_slist_free_all(hdr);
    return rc;
}

static int retryable(CURLcode rc) {
    switch (rc) {
    case CURLE_PARTIAL_FILE:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_COULDNT_CONNECT:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        return 1;
    default:
        return 0;
    }
}

static int is_sha256_hex(const char *s) {
    if (strlen(s) != 64) return 0;
    for (int i = 0; i < 64; i++)
        if (!isxdigit((unsigned char)s[i])) return 0;
    return 1;
}

/* Size, digest and magic of the finished part. A bad digest or magic removes the part. */
static int verify(const xfer *x, const char *part, const char *url, const char *digest,
                  uint64_t total) {
    uint64_t have = fd_size(x->fd);
    char a[32], b[32];
    if (total && have != total) {
        fmt_mib(a, sizeof a, have);
        fmt_mib(b, sizeof b, total);
        return sh_error_set(SH_EFORMAT, "%s: got %s of %s: re-run to resume", part, a, b);
    }
    char magic[4] = {0};
    if (pread(x->fd, magic, 4, 0) != 4 || memcmp(magic, "GGUF", 4)) {
        unlink(part);
        return sh_error_set(SH_EFORMAT, "%s is not a GGUF file (removed)", url);
    }
    if (digest[0]) {
        if (x->bar && !x->quiet) fprintf(stderr, "verifying sha256...");
        char hex[65];
        int st = pull_sha256_file(part, hex);
        if (x->bar && !x->quiet) fprintf(stderr, "\r\033[K");
        if (st) return st;
        if (strcasecmp(hex, digest)) {
            unlink(part);
            return sh_error_set(SH_EFORMAT,
                                "sha256 mismatch for %s: got %.12s..., the server says %.12s... "
                                "(the download was removed; re-run to fetch it again)",
                                url, hex, digest);
        }
    }
    return SH_OK;
}

static int http_error(long status, const char *url, int had_token) {
    if (status == 401 || status == 403)
        return sh_error_set(SH_EIO, "HTTP %ld from %s: %s", status, url,
                            had_token ? "the token was refused (check HF_TOKEN and the "
                                        "repository's access terms)"
                                      : "the repository needs a token: set HF_TOKEN or put one "
                                        "in ~/.cache/huggingface/token");
    if (status == 404)
        return sh_error_set(SH_ENOTFOUND, "not found (HTTP 404): %s", url);
    return sh_error_set(SH_EIO, "HTTP %ld from %s", status, url);
}

int pull_run(const char *spec, const pull_opts *o, char *path_out, size_t cap, int *already) {
    static int curl_ready;
    pull_spec ps;
    char url[PULL_URL_MAX], dest[4096], part[4200], token[PULL_TOKEN_MAX], digest[128] = "";
    int st, fd = -1, locked = 0;
    if (already) *already = 0;
    if ((st = pull_parse(spec, &ps)) || (st = pull_url(&ps, o->endpoint, url, sizeof url)))
        return st;
    if (snprintf(dest, sizeof dest, "%s/%s", o->models_dir, ps.file) >= (int)sizeof dest ||
        snprintf(part, sizeof part, "%s.part", dest) >= (int)sizeof part)
        return sh_error_set(SH_ERANGE, "destination path too long");
    if (snprintf(path_out, cap, "%s", dest) >= (int)cap)
        return sh_error_set(SH_ERANGE, "destination path too long");
    struct stat sb;
    if (stat(dest, &sb) == 0) {
        if (already) *already = 1;
        return SH_OK;
    }
    if (!curl_ready) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0)
            return sh_error_set(SH_EIO, "libcurl failed to initialise");
        curl_ready = 1;
    }
    if (o->token) snprintf(token, sizeof token, "%s", o->token);
    else pull_token(token, sizeof token);
    int retries = o->retries < 0 ? PULL_DEFAULT_RETRIES : o->retries;
    if (retries > PULL_MAX_RETRIES) retries = PULL_MAX_RETRIES;

    fd = open(part, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return sh_error_set(SH_EIO, "cannot create %s: %s", part, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        st = sh_error_set(SH_EUNSUPPORTED, "another `shammah pull` is downloading %s", ps.file);
        goto out;
    }
    locked = 1;
    xfer x = {.fd = fd, .bar = o->progress, .quiet = o->quiet, .file = ps.file, .t0 = now_s()};
    x.last_draw = x.t0; /* the first bar after PULL_DRAW_MS, once a rate means something */
    x.linked_size = -1;
    uint64_t total = 0;
    double delay = 0.5;
    for (int attempt = 0;; attempt++) {
        x.offset = fd_size(fd);
        x.written = 0;
        x.decided = x.range_mismatch = x.write_errno = 0;
        x.status = 0;
        char msg[CURL_ERROR_SIZE + 64];
        CURLcode rc = transfer(&x, url, token, msg, sizeof msg);
        if (x.drawn) {
            draw(&x, 1);
            fputc('\n', stderr);
            x.drawn = 0;
        }
        if (x.write_errno) {
            if (x.write_errno == ENOSPC || x.write_errno == EDQUOT)
                st = sh_error_set(SH_EFULL,
                                  "disk full writing %s: free some space and re-run to resume "
                                  "(the partial file is kept)", part);
            else
                st = sh_error_set(SH_EIO, "cannot write %s: %s", part, strerror(x.write_errno));
            goto out;
        }
        int retry = 0;
        if (x.range_mismatch) {
            /* the server sent another range than asked: trust nothing kept so far */
            if (ftruncate(fd, 0) != 0) {
                st = sh_error_set(SH_EIO, "cannot truncate %s", part);
                goto out;
            }
            retry = 1;
            snprintf(msg, sizeof msg, "the server answered another range than asked");
        } else if (rc == CURLE_OK && x.status == 416) {
            uint64_t have = fd_size(fd);
            if (x.range_total >= 0 && have == (uint64_t)x.range_total) {
                total = have;
                break; /* the part was already complete */
            }
            if (ftruncate(fd, 0) != 0) {
                st = sh_error_set(SH_EIO, "cannot truncate %s", part);
                goto out;
            }
            retry = 1;
            snprintf(msg, sizeof msg, "the partial file does not match the server's: restarting");
        } else if (rc == CURLE_OK && (x.status == 200 || x.status == 206)) {
            total = expected_total(&x);
            if (!total || fd_size(fd) == total) break;
            if (fd_size(fd) > total) {
                if (ftruncate(fd, 0) != 0) {
                    st = sh_error_set(SH_EIO, "cannot truncate %s", part);
                    goto out;
                }
            }
            retry = 1;
            snprintf(msg, sizeof msg, "the transfer ended early");
        } else if (rc == CURLE_OK || (x.status >= 400 && !retryable(rc))) {
            if (x.status >= 500 || x.status == 429) {
                retry = 1;
                snprintf(msg, sizeof msg, "HTTP %ld", x.status);
            } else {
                st = http_error(x.status, url, token[0] != 0);
                goto out;
            }
        } else if (retryable(rc)) {
            retry = 1;
            if (x.status == 200 || x.status == 206) {
                char a[32], b[32];
                fmt_mib(a, sizeof a, fd_size(fd));
                fmt_mib(b, sizeof b, expected_total(&x));
                snprintf(msg, sizeof msg, "connection lost at %s of %s", a, b);
            }
        } else {
            st = sh_error_set(SH_EIO, "cannot download %s: %s", url, msg);
            goto out;
        }
        if (retry && attempt >= retries) {
            char a[32];
            fmt_mib(a, sizeof a, fd_size(fd));
            if (fd_size(fd) == 0)
                st = sh_error_set(SH_EIO, "cannot download %s: %s", url, msg);
            else
                st = sh_error_set(SH_EIO,
                                  "download of %s failed (%s) with %s kept in %s: re-run the "
                                  "same command to resume", url, msg, a, part);
            goto out;
        }
        if (!o->quiet)
            fprintf(stderr, "shammah pull: %s; resuming (retry %d of %d)\n", msg, attempt + 1,
                    retries);
        sleep_s(delay);
        if (delay < 8) delay *= 2;
    }
    const char *d = is_sha256_hex(x.linked_etag) ? x.linked_etag
                    : is_sha256_hex(x.etag)      ? x.etag
                                                 : "";
    snprintf(digest, sizeof digest, "%s", d);
    if ((st = verify(&x, part, url, digest, total))) goto out;
    if (fsync(fd) != 0 || rename(part, dest) != 0) {
        st = sh_error_set(SH_EIO, "cannot move %s into place: %s", part, strerror(errno));
        goto out;
    }
    if (!o->quiet) {
        double t = now_s() - x.t0;
        char a[32], du[32];
        fmt_mib(a, sizeof a, fd_size(fd));
        fmt_dur(du, sizeof du, t);
        fprintf(stderr, "shammah pull: %s: %s in %s (%.1f MiB/s)%s\n", ps.file, a, du,
                t > 0 ? x.session_bytes / t / 1048576.0 : 0.0,
                digest[0] ? ", sha256 verified" : ", no digest to verify");
    }
out:
    if (fd >= 0) {
        /* an empty part left by a failure before any byte is noise, not something to resume */
        if (st && locked && fd_size(fd) == 0) unlink(part);
        close(fd);
    }
    return st;
}
