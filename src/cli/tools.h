/* tools.h - the tools the model may use on the user's machine, run by the client (never the
 * daemon): read, write, edit, glob, grep, bash; with the user's approvals and hard limits.
 *
 * A call is (tool name, arguments as a JSON object). Before it runs, tools_check() decides:
 *   - TOOLS_HARD_DENY: destructive (rm -rf of / or a top-level folder or the home, mkfs, dd or
 *     redirections onto /dev devices, writes to /dev, fork bombs). No approval overrides it.
 *   - TOOLS_DENY in plan mode for a tool that is not read-only (read, glob, grep are).
 *   - TOOLS_ALLOW when a stored approval matches: "exact" (this tool with exactly these
 *     arguments) or "pattern" (this tool, its subject matching a shell glob: bash -> command,
 *     read/write/edit -> path, glob/grep -> pattern).
 *   - TOOLS_ASK otherwise: the REPL asks once / always this call / always the pattern / deny.
 * Approvals persist in SHAMMAH_HOME/tool_patterns.json:
 *   {"version":1,"approvals":[{"tool":"bash","kind":"pattern","value":"git *"}, ...]}
 *
 * Results are text for the model; failures are results too (is_error), never crashes. Every
 * output is bounded (TOOLS_MAX_OUTPUT). Paths are relative to the current directory. */
#ifndef SH_TOOLS_H
#define SH_TOOLS_H

#include <signal.h>
#include <stddef.h>

#include "proto/conv.h"

#define TOOLS_MAX_OUTPUT (64u << 10)   /* bytes of one result (a note says what was cut) */
#define TOOLS_MAX_FILE (16u << 20)     /* bytes of a file read, edited or grepped */
#define TOOLS_READ_DEFAULT_LIMIT 2000  /* lines */
#define TOOLS_GLOB_MAX 1000            /* paths listed */
#define TOOLS_GREP_MAX 500             /* matching lines listed */
#define TOOLS_WALK_MAX 100000          /* files visited by glob/grep */
#define TOOLS_BASH_TIMEOUT 120         /* seconds, default */
#define TOOLS_BASH_MAX_TIMEOUT 600
#define TOOLS_MAX_APPROVALS 1000

/* The tool descriptions (name, description, JSON schema) to send as `tools`. Static storage. */
const conv_tool *tools_all(int *n);
int tools_is_read_only(const char *name); /* 1 for read, glob, grep */

typedef struct {
    int bash_timeout;  /* seconds; 0 = TOOLS_BASH_TIMEOUT */
    size_t max_output; /* 0 = TOOLS_MAX_OUTPUT */
    volatile sig_atomic_t *cancel; /* may be NULL; set (e.g. by Ctrl-C) kills a running bash */
} tools_opts;

/* Runs one call. *out: the result text (caller frees); *is_error: 1 when the call failed (the
 * text says why). Returns SH_OK whenever *out is set, SH_ENOMEM otherwise. Does not check
 * approvals: call tools_check() first. */
int tools_run(const char *name, const char *input_json, const tools_opts *o, char **out,
              int *is_error);

/* ---- approvals ---- */
typedef enum { TOOLS_ASK = 0, TOOLS_ALLOW, TOOLS_DENY, TOOLS_HARD_DENY } tools_decision;
typedef enum { TOOLS_EXACT = 0, TOOLS_PATTERN } tools_approval_kind;

typedef struct {
    char *tool;
    tools_approval_kind kind;
    char *value; /* EXACT: canonical arguments JSON; PATTERN: a glob over the subject */
} tools_approval;

typedef struct {
    char path[4096];           /* "" = not persisted */
    tools_approval *items;     /* owned */
    int n, cap;
} tools_patterns;

/* Loads path (a missing file = no approvals). A malformed file is SH_EFORMAT with a detail;
 * p is then empty but usable. Caller calls tools_patterns_free(). */
int tools_patterns_load(tools_patterns *p, const char *path);
int tools_patterns_save(const tools_patterns *p); /* atomic: temp file + rename, mode 0600 */
void tools_patterns_free(tools_patterns *p);
/* Adds (deduplicated) and saves when p has a path. value for EXACT is the arguments JSON
 * (canonicalised here). SH_EFULL beyond TOOLS_MAX_APPROVALS. */
int tools_patterns_add(tools_patterns *p, const char *tool, tools_approval_kind kind, const char *value);
int tools_patterns_remove(tools_patterns *p, int index); /* and saves */

/* The subject of a call matched by patterns and shown to the user (caller frees); NULL on a
 * malformed call or ENOMEM. */
char *tools_subject(const char *name, const char *input_json);

/* Decides whether a call may run (see the top). why (may be NULL) receives a one-line reason
 * for HARD_DENY and DENY. */
tools_decision tools_check(const tools_patterns *p, int plan_mode, const char *name,
                           const char *input_json, char *why, size_t why_cap);

/* The hard-deny rules alone, for a bash command: 1 when denied (reason in why). */
int tools_bash_denied(const char *cmd, char *why, size_t why_cap);

#endif
