/* cli.h — the nuri command's subcommands and the option helpers they share.
 * Each cmd_* takes the arguments after "nuri" (argv[0] is the subcommand
 * name) and returns the process exit status. */
#ifndef NURI_CLI_H
#define NURI_CLI_H

#include <stdbool.h>
#include <stdint.h>

#include "nuri.h"

int cmd_run(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_template(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_mkmodel(int argc, char **argv);

/* The name llama.cpp gives a general.file_type number ("Q4_0", "Q4_K_M"),
 * or NULL for a number it does not know. */
const char *cli_ftype_name(uint32_t ftype);

/* Prints "nuri: " + message + newline to stderr; returns 1 (an exit status). */
int cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Option values: each parses argv[*i + 1] (advancing *i), printing an error
 * naming the option and returning false on a missing or malformed value. */
bool cli_take_str(int argc, char **argv, int *i, const char **out);
bool cli_take_int(int argc, char **argv, int *i, long min, long max, long *out);
bool cli_take_float(int argc, char **argv, int *i, double min, double max, double *out);

/* Monotonic clock in seconds. */
double cli_now(void);

/* Loads -m MODEL (with --tokenizer for llama2.c checkpoints), printing one
 * error line on failure. */
nuri_model *cli_load_model(const char *path, const char *tokenizer_path);

#endif
