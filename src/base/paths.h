/* paths.h - where shammah keeps its files: SHAMMAH_HOME.
 *
 * SHAMMAH_HOME comes from the environment variable of that name, else it is $HOME/.shammah.
 * It holds config.toml, daemon.pid, daemon.log, models/, adapters/, shammah.db, history and
 * tool_patterns.json (the PATHS_* names below). The home and its folders are created on demand
 * with mode 0700 because they hold API keys, conversation history and logs; existing folders
 * keep the mode their owner gave them.
 *
 * Every path is built into a caller-provided buffer of PATHS_MAX bytes (or `cap`, whichever is
 * smaller); a result that does not fit fails with SH_ERANGE and never truncates silently. */
#ifndef SH_PATHS_H
#define SH_PATHS_H

#include <limits.h>
#include <stddef.h>

#define PATHS_MAX PATH_MAX

/* Names inside SHAMMAH_HOME. */
#define PATHS_CONFIG "config.toml"
#define PATHS_PIDFILE "daemon.pid"
#define PATHS_LOG "daemon.log"
#define PATHS_MODELS "models"
#define PATHS_ADAPTERS "adapters"
#define PATHS_DB "shammah.db"
#define PATHS_HISTORY "history"
#define PATHS_TOOL_PATTERNS "tool_patterns.json"

/* Resolves SHAMMAH_HOME into out (absolute, no trailing slash) without creating anything.
 * A relative SHAMMAH_HOME is taken relative to the current directory, so the result stays valid
 * after the daemon changes directory. SH_ENOTFOUND when neither SHAMMAH_HOME nor HOME is set
 * (or both are empty); SH_ERANGE when the path does not fit. */
int paths_home(char *out, size_t cap);

/* paths_home(), then creates the folder (and missing parents) with mode 0700. SH_EIO when it
 * cannot be created or exists as something other than a directory. */
int paths_ensure_home(char *out, size_t cap);

/* out = dir + "/" + name (one slash). name must be relative and non-empty (SH_EINVAL);
 * SH_ERANGE when the result is PATHS_MAX bytes or more or does not fit cap. out may not alias
 * dir or name. */
int paths_join(char *out, size_t cap, const char *dir, const char *name);

/* out = SHAMMAH_HOME/name, with the home created first (the file itself is not created). */
int paths_file(char *out, size_t cap, const char *name);

/* out = SHAMMAH_HOME/name, with that folder (and the home) created with mode 0700. */
int paths_dir(char *out, size_t cap, const char *name);

/* Creates dir and its missing parents with the given mode (like `mkdir -p`). Succeeds when dir
 * already is a directory. SH_EIO otherwise. */
int paths_mkdirs(const char *dir, unsigned mode);

#endif
