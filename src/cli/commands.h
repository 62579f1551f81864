/* commands.h - the subcommands of the shammah binary. Each takes the arguments after its own
 * name (argv[0] is the subcommand name) and returns the process exit code. */
#ifndef SH_COMMANDS_H
#define SH_COMMANDS_H

#include <stddef.h>

int cmd_run(int argc, char **argv);      /* cmd_run.c */
int cmd_bench(int argc, char **argv);    /* cmd_bench.c */
int cmd_info(int argc, char **argv);     /* cmd_info.c */
int cmd_tokenize(int argc, char **argv); /* cmd_tokenize.c */
int cmd_model(int argc, char **argv);    /* cmd_model.c: `shammah model synth ...` */
int cmd_daemon(int argc, char **argv);   /* cmd_daemon.c */
int cmd_router(int argc, char **argv);   /* cmd_router.c: `shammah router stats` */
int cmd_train(int argc, char **argv);    /* cmd_train.c: LoRA training on weighted examples */
int cmd_query(int argc, char **argv);        /* cmd_query.c: one answer from the daemon */
int cmd_daemon_start(int argc, char **argv); /* cmd_query.c */
int cmd_daemon_stop(int argc, char **argv);  /* cmd_query.c */
int cmd_daemon_status(int argc, char **argv); /* cmd_query.c */
int cmd_repl(int argc, char **argv);         /* repl.c: `shammah` with no command */
int cmd_pull(int argc, char **argv);         /* cmd_pull.c: download a model */
int cmd_models(int argc, char **argv);       /* cmd_models.c: list the models */

/* cmd_models.c: what `-m NAME` means (engine/registry.h: a path, a name in SHAMMAH_HOME/models,
 * ollama:NAME[:TAG], the configured model; also a `shammah pull` alias or hf: name once pulled),
 * into out. On failure prints one line "shammah CMD: ..." and returns -1. */
int cli_resolve_model(const char *cmd, const char *name, char *out, size_t cap);
/* cmd_models.c: the model to serve when none is configured (registry.h's rule: the largest
 * that fits in memory), the embedded default model (written to SHAMMAH_HOME/models first)
 * counting as one of them. 0 with the path in out, else -1 after printing why. */
int cli_default_model(const char *cmd, const char *home, char *out, size_t cap);

#define SHAMMAH_VERSION "0.1.0"

#endif
