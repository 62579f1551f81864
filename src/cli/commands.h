/* commands.h - the subcommands of the shammah binary. Each takes the arguments after its own
 * name (argv[0] is the subcommand name) and returns the process exit code. */
#ifndef SH_COMMANDS_H
#define SH_COMMANDS_H

int cmd_run(int argc, char **argv);      /* cmd_run.c */
int cmd_bench(int argc, char **argv);    /* cmd_bench.c */
int cmd_info(int argc, char **argv);     /* cmd_info.c */
int cmd_tokenize(int argc, char **argv); /* cmd_tokenize.c */
int cmd_model(int argc, char **argv);    /* cmd_model.c: `shammah model synth ...` */
int cmd_daemon(int argc, char **argv);   /* cmd_daemon.c */

#endif
