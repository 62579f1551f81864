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
int cmd_feedback(int argc, char **argv);     /* cmd_feedback.c: rate an exchange */

/* cmd_models.c: what `-m NAME` means (engine/registry.h: a path, a name in SHAMMAH_HOME/models,
 * ollama:NAME[:TAG], the configured model; also a `shammah pull` alias or hf: name once pulled),
 * into out. On failure prints one line "shammah CMD: ..." and returns -1. */
int cli_resolve_model(const char *cmd, const char *name, char *out, size_t cap);
/* cmd_models.c: the model to serve when none is configured (registry.h's rule: the largest
 * that fits in memory), the embedded default model (written to SHAMMAH_HOME/models first)
 * counting as one of them. 0 with the path in out, else -1 after printing why. */
int cli_default_model(const char *cmd, const char *home, char *out, size_t cap);

/* cmd_feedback.c: the last exchange of `shammah query` and the REPL, in
 * SHAMMAH_HOME/last_exchange.json (written through a temporary file and a rename; each text cut
 * at 512 KiB). load: SH_ENOTFOUND when there is none; *query and *response: caller frees. */
int cli_exchange_save(const char *query, const char *response);
int cli_exchange_load(char **query, char **response);
/* cmd_feedback.c: "critical" (10), "medium" (3), "good" (1) or a number in (0, 1000]; -1 when
 * s is none of them. */
int cli_feedback_weight(const char *s, double *weight);
/* cmd_feedback.c: POST /v1/feedback {query, response, weight, feedback: note (may be NULL)}
 * through c, starting the daemon when none answers (a daemon without a model will do). *id: the
 * queued example's id. SH status with a one-line detail. */
struct client;
int cli_feedback_send(struct client *c, const char *query, const char *response, double weight,
                      const char *note, long long *id);

#define SHAMMAH_VERSION "0.1.0"

#endif
