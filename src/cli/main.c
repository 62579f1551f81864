/* main.c - the shammah binary: dispatch to subcommands. */
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"

typedef struct {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *help;
} command;

static const command commands[] = {
    {"daemon", cmd_daemon, "serve the OpenAI- and Anthropic-compatible API"},
    {"run", cmd_run, "complete a prompt with a local model"},
    {"router", cmd_router, "router stats: the learned routing state"},
    {"tokenize", cmd_tokenize, "print the token ids of a text"},
    {"bench", cmd_bench, "measure prompt and generation throughput"},
    {"info", cmd_info, "describe a model file"},
    {"models", cmd_models, "list the models on this machine (home, config, Ollama)"},
    {"pull", cmd_pull, "download a model (hf:OWNER/REPO/FILE.gguf or an alias)"},
    {"train", cmd_train, "train a LoRA adapter on weighted examples (JSONL)"},
    {"model", cmd_model, "model tools (synth: write a random-weight model)"},
    {"repl", cmd_repl, "the interactive session (also `shammah` alone)"},
    {"query", cmd_query, "ask the daemon one question; the answer goes to stdout"},
    {"feedback", cmd_feedback, "rate the last answer (or any exchange) for training"},
    {"daemon-start", cmd_daemon_start, "start the daemon in the background"},
    {"daemon-stop", cmd_daemon_stop, "stop the daemon"},
    {"daemon-status", cmd_daemon_status, "show the daemon's pid, model, uptime, sessions"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: shammah [--direct] ...   (interactive session; see shammah repl --help)\n"
               "       shammah <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-14s %s\n", commands[i].name, commands[i].help);
    fprintf(f, "\n`shammah <command> --help` describes a command's options.\n");
}

int main(int argc, char **argv) {
    if (argc < 2) return cmd_repl(argc, argv);
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V")) {
        printf("shammah %s\n", SHAMMAH_VERSION);
        return 0;
    }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (argv[1][0] == '-' && argv[1][1]) return cmd_repl(argc, argv); /* `shammah --direct` */
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "shammah: unknown command '%s' (see shammah --help)\n", argv[1]);
    return 2;
}
