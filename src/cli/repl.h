/* repl.h - the interactive session (`shammah` with no command): line editing and history
 * (libedit), streamed answers from the daemon, slash commands, and the tool loop that runs the
 * model's tool calls on this machine with the user's approval.
 *
 * Input that is not a terminal is read line by line without editing, so the session can be
 * scripted; tool calls that need an approval are then denied (nobody can answer). */
#ifndef SH_REPL_H
#define SH_REPL_H

#define REPL_MAX_TOOL_TURNS 8    /* model turns that may call tools, per question */
#define REPL_MAX_INPUT (1u << 20) /* bytes of one (multi-line) question */
#define REPL_HISTORY_LINES 1000
#define REPL_CONV_BYTES (64u << 20) /* a conversation's arena; /clear starts a new one */

/* `shammah` / `shammah repl [options]`. Returns the exit code. */
int repl_main(int argc, char **argv);

#endif
