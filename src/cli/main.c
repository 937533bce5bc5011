/* main.c — the nuri command: dispatches to a subcommand. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

#define NURI_VERSION "0.1.0"

static const char *usage =
    "usage: nuri COMMAND [options]\n"
    "\n"
    "commands:\n"
    "  run       generate text from a prompt\n"
    "  chat      talk with a model in its chat format (interactive)\n"
    "  serve     serve the model over HTTP with OpenAI's API\n"
    "  tokenize  print the token ids of a text\n"
    "  info      print a GGUF file's metadata and tensors\n"
    "  template  render a conversation with a chat template\n"
    "  bench     measure prompt processing and generation speed\n"
    "  mkmodel   write a GGUF file with random weights in a real model's shape\n"
    "  quantize  convert a GGUF model's weights to another type (Q4_K_M, Q8_0, ...)\n"
    "  perplexity  measure perplexity on a text; KL divergence against a base model\n"
    "\n"
    "`nuri COMMAND --help` describes each command's options.\n";

int main(int argc, char **argv) {
    if (argc < 2) {
        fputs(usage, stderr);
        return 1;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "run")) return cmd_run(argc - 1, argv + 1);
    if (!strcmp(cmd, "chat")) return cmd_chat(argc - 1, argv + 1);
    if (!strcmp(cmd, "serve")) return cmd_serve(argc - 1, argv + 1);
    if (!strcmp(cmd, "tokenize")) return cmd_tokenize(argc - 1, argv + 1);
    if (!strcmp(cmd, "info")) return cmd_info(argc - 1, argv + 1);
    if (!strcmp(cmd, "template")) return cmd_template(argc - 1, argv + 1);
    if (!strcmp(cmd, "bench")) return cmd_bench(argc - 1, argv + 1);
    if (!strcmp(cmd, "mkmodel")) return cmd_mkmodel(argc - 1, argv + 1);
    if (!strcmp(cmd, "quantize")) return cmd_quantize(argc - 1, argv + 1);
    if (!strcmp(cmd, "perplexity")) return cmd_perplexity(argc - 1, argv + 1);
    if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
        fputs(usage, stdout);
        return 0;
    }
    if (!strcmp(cmd, "--version")) {
        printf("nuri %s\n", NURI_VERSION);
        return 0;
    }
    fprintf(stderr, "nuri: unknown command '%s'\n\n%s", cmd, usage);
    return 1;
}
