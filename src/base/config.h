/* config.h - shammah's configuration: SHAMMAH_HOME/config.toml read into a typed struct.
 *
 * The file is TOML, a strict subset parsed by hand:
 *   - comments (# ...), blank lines, LF or CRLF line ends, UTF-8 text;
 *   - [table] and [[array_of_tables]] headers, `key = value` with bare keys (A-Za-z0-9_-),
 *     "quoted" or 'quoted' keys and dotted keys (a.b = 1);
 *   - values: basic strings "..." with escapes \b \t \n \f \r \" \\ \uXXXX \UXXXXXXXX,
 *     literal strings '...', integers (sign, _ separators, 0x/0o/0b), floats (1.5, 1e-4, inf,
 *     nan), booleans, and arrays of one scalar type (may span lines, trailing comma allowed).
 * Everything else (multi-line strings, inline tables, nested arrays, dates, duplicate keys,
 * tables defined twice) is rejected with a one-line error naming the file and line, e.g.
 * `config.toml:12: expected '=' after key`, recorded with sh_error_set().
 *
 * Status codes: SH_EFORMAT for syntax errors, wrong types and invalid values; SH_ERANGE for
 * numbers out of their documented range and for the size limits below; SH_EIO when the file
 * cannot be read; SH_ENOMEM.
 *
 * Unknown tables and keys are not errors (a newer config may be read by an older daemon): each
 * adds a warning such as `config.toml:5: unknown key 'foo' in [server]`, kept in the config
 * (at most CONFIG_MAX_WARNINGS; the rest are counted) for the daemon to log.
 *
 * Keys, types, defaults and accepted ranges:
 *
 * [server]
 *   bind                  string "HOST:PORT"  "127.0.0.1:11434"  port 1..65535; an IPv6 host
 *                                                                 is written "[::1]:11434"
 *   max_sessions          integer  100       1..1000000
 *   session_idle_minutes  integer  60        1..525600 (a year)
 *   max_body_bytes        integer  4 MiB     1024..1 GiB
 *   api_keys              array of strings  []  empty = no authentication; each key non-empty,
 *                                                 at most CONFIG_MAX_API_KEYS
 *   api_keys_file         string   ""        a file of keys, one per line (blank lines and # comments
 *                                            skipped; spaces around a key trimmed; printable ASCII
 *                                            only), read by config_load() (a relative path is
 *                                            relative to config.toml's directory); its keys are
 *                                            added to api_keys (CONFIG_MAX_API_KEYS in all). The
 *                                            load fails when the file is missing, holds no key, or
 *                                            is readable, writable or executable by others (mode
 *                                            & 007, as ssh refuses private keys); group access is
 *                                            a warning
 *   cors_origins          array of strings  []  browser origins allowed besides the loopback
 *                                            ones, matched exactly: "scheme://host[:port]" (no
 *                                            path), or "*" = any origin (unsafe without api_keys);
 *                                            at most CONFIG_MAX_CORS_ORIGINS
 *   max_messages          integer  10000     1..1000000 messages in one request
 * [backend]
 *   enabled               boolean  true      false = the daemon serves no local model
 *   model                 string   ""        a GGUF path or a name under SHAMMAH_HOME/models
 *   threads               integer  0         0 = auto, else 1..1024
 *   ctx                   integer  32768     16..16777216; the daemon clamps to the model
 *   kv_type               string   "f16"     "f16" or "f32"
 *   parallel              integer  4         1..256 sequences decoded together
 *   prefix_cache_slots    integer  8         1..1024
 *   max_loaded_models     integer  2         1..16 models in memory, the default included;
 *                                            others load when a request names them
 *   keep_alive            integer  300       seconds an on-demand model stays loaded idle;
 *                                            0 = unload after each request, -1 = never
 * [client]
 *   use_daemon            boolean  true
 *   daemon_address        string   ""        "HOST:PORT"; "" = the [server] bind
 *   auto_spawn            boolean  true      start the daemon when it is not running
 *   timeout_seconds       integer  120       1..86400
 * [[teachers]]            up to CONFIG_MAX_TEACHERS entries, tried in file order
 *   name                  string   model     must be unique; defaults to the model
 *   provider              string   required  "anthropic" or "openai"
 *   base_url              string   ""        "" = the provider's public endpoint
 *   api_key               string   ""        literal key (prefer api_key_env)
 *   api_key_env           string   ""        name of the environment variable holding the key
 *   model                 string   required  non-empty
 *   timeout_seconds       integer  60        1..3600
 *   max_retries           integer  2         0..10
 * [training]              the daemon's LoRA runs on feedback (see src/train/lora_train.h)
 *   enabled               boolean  false     runs start by themselves (else on request)
 *   distill               boolean  true      learn from teacher answers
 *   rank                  integer  16        1..1024 (also read as lora_rank)
 *   alpha                 float    32        > 0; the update is scaled by alpha / rank
 *   targets               string   "attn_q,attn_k,attn_v,attn_output"  comma-separated, of
 *                                            those and ffn_gate ffn_up ffn_down
 *   dropout               float    0         0..0.95 (clamped), on the LoRA input
 *   learning_rate         float    1e-3      > 0 and <= 1 (an integer is accepted)
 *   epochs                integer  4         1..1000
 *   batch_size            integer  4         1..4096 examples per optimizer step
 *   max_seq_len           integer  512       16..65536 tokens per example (longer: cut)
 *   min_examples          integer  10        1..1000000 pending examples that start a run
 *                                            (also read as batch_threshold)
 *   interval_minutes      integer  5         1..10080: a run also starts this long after the
 *                                            last one when any example is pending
 */
#ifndef SH_CONFIG_H
#define SH_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- limits ---- */
#define CONFIG_MAX_FILE (1 << 20) /* bytes of config.toml */
#define CONFIG_MAX_LINE 4096      /* bytes of one line, line end excluded */
#define CONFIG_MAX_ARRAY 256      /* elements of one array */
#define CONFIG_MAX_KEYS 4096      /* keys and tables defined in one file */
#define CONFIG_MAX_DEPTH 8        /* parts of a dotted key or table name */
#define CONFIG_MAX_TEACHERS 16
#define CONFIG_MAX_API_KEYS 64    /* api_keys and api_keys_file together */
#define CONFIG_MAX_CORS_ORIGINS 64
#define CONFIG_MAX_WARNINGS 32

typedef struct {
    const char *name;
    const char *provider; /* "anthropic" or "openai" */
    const char *base_url;
    const char *api_key;
    const char *api_key_env;
    const char *model;
    int timeout_seconds;
    int max_retries;
    int line; /* line of its [[teachers]] header, for messages */
} sh_config_teacher;

struct sh_config_str; /* private: the strings the config owns */

/* Every string is non-NULL and owned by the config (valid until config_free()). */
typedef struct {
    struct {
        const char *bind;
        const char *bind_host; /* bind split: host without brackets, port */
        int bind_port;
        int max_sessions;
        int session_idle_minutes;
        int64_t max_body_bytes;
        const char *api_keys[CONFIG_MAX_API_KEYS];
        int n_api_keys;
        const char *api_keys_file; /* as written; "" = none */
        const char *cors_origins[CONFIG_MAX_CORS_ORIGINS];
        int n_cors_origins;
        int max_messages;
    } server;
    struct {
        bool enabled;
        const char *model;
        int threads;
        int ctx;
        const char *kv_type; /* "f16" or "f32" */
        int parallel;
        int prefix_cache_slots;
        int max_loaded_models;
        int64_t keep_alive;
    } backend;
    struct {
        bool use_daemon;
        const char *daemon_address;
        bool auto_spawn;
        int timeout_seconds;
    } client;
    sh_config_teacher teachers[CONFIG_MAX_TEACHERS];
    int n_teachers;
    struct sh_config_training {
        bool enabled;
        bool distill;
        int lora_rank;
        double alpha;
        const char *targets;
        double dropout;
        double learning_rate;
        int epochs;
        int batch_size;
        int max_seq_len;
        int min_examples;
        int interval_minutes;
    } training;

    const char *warnings[CONFIG_MAX_WARNINGS];
    int n_warnings;
    int n_warnings_dropped; /* warnings beyond CONFIG_MAX_WARNINGS */
    struct sh_config_str *owned_;
} sh_config;

/* Fills c with the defaults. c's previous contents are ignored (not freed). Owns nothing, so
 * config_free() is optional afterwards. */
void config_defaults(sh_config *c);

/* Parses text[0..len) (need not be NUL-terminated) into c; name_for_errors prefixes messages
 * (e.g. "config.toml"). c's previous contents are ignored (not freed). On success c owns its
 * strings: caller calls config_free(). On failure c holds the defaults, owns nothing, and the
 * error detail is in sh_error_last(). */
int config_parse(sh_config *c, const char *text, size_t len, const char *name_for_errors);

/* Reads and parses the file at path (messages are prefixed with path). A missing file gives the
 * defaults and SH_OK. A file that holds API keys and is readable by group or others adds a
 * warning. Then reads [server] api_keys_file when it is set, so every reader of the config (the
 * daemon, and the client sending the first key) sees the same keys: SH_EIO when it is missing,
 * unreadable or not a regular file, SH_EINVAL when others have access to it, SH_EFORMAT for a
 * bad line or no key at all, SH_ERANGE for a line or file too long or too many keys. Same
 * ownership as config_parse(). */
int config_load(sh_config *c, const char *path);

/* Frees what c owns and leaves c holding the defaults. NULL is allowed. */
void config_free(sh_config *c);

/* ---- warnings (borrowed strings, valid until config_free()) ---- */
int config_warning_count(const sh_config *c);
const char *config_warning(const sh_config *c, int i); /* NULL when i is out of range */

/* The address the client connects to: daemon_address, or the server bind when that is "".
 * Borrowed. */
const char *config_daemon_address(const sh_config *c);

/* Splits "HOST:PORT" (host may be "[v6addr]") into host (without brackets, into host_out of
 * host_cap bytes) and port 1..65535. SH_EFORMAT on a malformed address, SH_ERANGE on a bad port
 * or a host that does not fit. */
int config_split_address(const char *addr, char *host_out, size_t host_cap, int *port);

#endif
