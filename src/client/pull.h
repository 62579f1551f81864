/* pull.h - downloading GGUF models from Hugging Face (or anything laid out like it) into
 * SHAMMAH_HOME/models: `shammah pull`.
 *
 * What can be pulled:
 *   hf:OWNER/REPO/FILE.gguf            the file at the top of the repository
 *   hf:OWNER/REPO/PATH/IN/REPO.gguf    a file in a folder of the repository
 *   hf:OWNER/REPO:FILE.gguf            the same as the first form
 *   an alias of the table below        (pull_aliases())
 * fetched from ${HF_ENDPOINT:-https://huggingface.co}/OWNER/REPO/resolve/main/PATH and saved as
 * SHAMMAH_HOME/models/FILE.gguf (the base name). Names are restricted to A-Z a-z 0-9 . _ - +
 * (no "." or ".." component) so that they can be neither a URL trick nor a path escape.
 * Models split in several files (-00001-of-0000N.gguf) are not supported.
 *
 * Aliases (the Qwen3 files are Q8_0, the others Q4_K_M; the 0.5B Qwen2.5 Q4_K_M files hold some
 * Q5_0 tensors because 896-wide rows do not split into K-quant blocks):
 *   qwen2.5-coder:0.5b  Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf
 *   qwen2.5-coder:1.5b  Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf
 *   qwen2.5-coder:3b    Qwen/Qwen2.5-Coder-3B-Instruct-GGUF/qwen2.5-coder-3b-instruct-q4_k_m.gguf
 *   qwen2.5-coder:7b    Qwen/Qwen2.5-Coder-7B-Instruct-GGUF/qwen2.5-coder-7b-instruct-q4_k_m.gguf
 *   qwen2.5:0.5b        Qwen/Qwen2.5-0.5B-Instruct-GGUF/qwen2.5-0.5b-instruct-q4_k_m.gguf
 *   qwen2.5:1.5b        Qwen/Qwen2.5-1.5B-Instruct-GGUF/qwen2.5-1.5b-instruct-q4_k_m.gguf
 *   qwen2.5:3b          Qwen/Qwen2.5-3B-Instruct-GGUF/qwen2.5-3b-instruct-q4_k_m.gguf
 *   qwen3:0.6b          Qwen/Qwen3-0.6B-GGUF/Qwen3-0.6B-Q8_0.gguf
 *   qwen3:1.7b          Qwen/Qwen3-1.7B-GGUF/Qwen3-1.7B-Q8_0.gguf
 *   qwen3:4b            Qwen/Qwen3-4B-GGUF/Qwen3-4B-Q8_0.gguf
 *   llama3.2:1b         bartowski/Llama-3.2-1B-Instruct-GGUF/Llama-3.2-1B-Instruct-Q4_K_M.gguf
 *   llama3.2:3b         bartowski/Llama-3.2-3B-Instruct-GGUF/Llama-3.2-3B-Instruct-Q4_K_M.gguf
 *
 * Authentication: `Authorization: Bearer TOKEN` with TOKEN from $HF_TOKEN, else the file
 * $HF_HOME/token, else ~/.cache/huggingface/token. libcurl does not carry the header across a
 * redirect to another host (Hugging Face redirects downloads to its CDN with a signed URL).
 *
 * The download goes to FILE.gguf.part, locked (flock) so two pulls of one file cannot interleave.
 * An existing .part is resumed with `Range: bytes=N-`: 206 appends (the Content-Range start must
 * be N), 200 means the server ignored the range and the file restarts from 0, 416 means the part
 * may already be complete (checked against the total in Content-Range). A dropped connection is
 * resumed automatically `retries` times (0.5 s, 1 s, 2 s... apart) before giving up with the .part
 * kept. Then the part is verified: its size against the total the server announced
 * (Content-Length / Content-Range / X-Linked-Size), its SHA-256 against the server's digest when
 * it gives one (X-Linked-Etag, else ETag, when that holds 64 hex digits: Hugging Face's LFS
 * files), the GGUF magic; and it is renamed into place (atomic). A part that fails the SHA-256
 * or the magic is removed: resuming it could only repeat the failure. */
#ifndef SH_PULL_H
#define SH_PULL_H

#include <stddef.h>
#include <stdint.h>

#define PULL_DEFAULT_ENDPOINT "https://huggingface.co"
#define PULL_DEFAULT_RETRIES 3
#define PULL_MAX_RETRIES 100
#define PULL_FILE_MAX 200  /* bytes of the saved file name */
#define PULL_URL_MAX 4096
#define PULL_TOKEN_MAX 512

typedef struct {
    const char *alias;
    const char *repo;  /* OWNER/REPO */
    const char *path;  /* path in the repository */
} pull_alias;

/* The alias table (static), n entries. */
const pull_alias *pull_aliases(int *n);

typedef struct {
    char repo[256];               /* OWNER/REPO */
    char path[1024];              /* in the repository */
    char file[PULL_FILE_MAX + 1]; /* base name of path: the saved name */
} pull_spec;

/* Parses what `shammah pull` was given. SH_EINVAL with a one-line message when it is neither a
 * well-formed hf: name nor an alias. */
int pull_parse(const char *spec, pull_spec *out);

/* ENDPOINT/OWNER/REPO/resolve/main/PATH into out (endpoint NULL = $HF_ENDPOINT or the
 * default; a trailing slash is dropped). SH_ERANGE when it does not fit. */
int pull_url(const pull_spec *s, const char *endpoint, char *out, size_t cap);

/* The token from the environment or the token file into out ("" when there is none). A token
 * with characters outside printable ASCII is ignored (it would break the header). */
void pull_token(char *out, size_t cap);

typedef struct {
    const char *models_dir; /* destination folder, must exist; borrowed */
    const char *endpoint;   /* NULL = $HF_ENDPOINT, else PULL_DEFAULT_ENDPOINT */
    const char *token;      /* NULL = pull_token(); "" = send none */
    int retries;            /* automatic resumes after a dropped connection; -1 = default */
    int progress;           /* 1 = redraw a progress bar on stderr; 0 = one final line */
    int quiet;              /* no messages at all on stderr (errors are still returned) */
} pull_opts;

/* Downloads spec per the rules above and writes the final path into path_out. *already = 1
 * when the file was there before (nothing downloaded). Errors carry one line for the user:
 * SH_ENOTFOUND (404: names the URL), SH_EIO (401/403 with a token hint, other HTTP errors,
 * a connection lost for good: "re-run to resume"), SH_EFULL (disk full: the .part is kept),
 * SH_EFORMAT (size, SHA-256 or magic mismatch), SH_EINVAL (bad spec), SH_EUNSUPPORTED (the file
 * is being pulled by another process). */
int pull_run(const char *spec, const pull_opts *o, char *path_out, size_t cap, int *already);

/* ---- SHA-256 (FIPS 180-4) ---- */
typedef struct {
    uint32_t h[8];
    uint64_t len; /* bytes so far */
    uint8_t buf[64];
    size_t n; /* bytes in buf */
} pull_sha256;

void pull_sha256_init(pull_sha256 *s);
void pull_sha256_update(pull_sha256 *s, const void *data, size_t n);
void pull_sha256_final(pull_sha256 *s, uint8_t out[32]);
/* The lowercase hex digest of a whole file into hex (65 bytes). SH_EIO when unreadable. */
int pull_sha256_file(const char *path, char hex[65]);

#endif
