/* cli.h — the nuri command's subcommands and the option helpers they share.
 * Each cmd_* takes the arguments after "nuri" (argv[0] is the subcommand
 * name) and returns the process exit status. */
#ifndef NURI_CLI_H
#define NURI_CLI_H

#include <stdbool.h>
#include <stdint.h>

#include "nuri.h"

int cmd_run(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_template(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_mkmodel(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_perplexity(int argc, char **argv);

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

/* Options shared by the commands that generate (run, chat, serve). */
typedef struct {
    double temp, top_p, min_p, repeat_penalty, frequency_penalty, presence_penalty;
    long top_k, repeat_last_n, seed; /* seed -1: from the clock */
    long n_ctx, n_batch, n_threads;
    const char *kv_type;             /* "f32" or "f16" */
} cli_gen_options;

/* llama.cpp's defaults: temperature 0.8, top-k 40, top-p 0.95, min-p 0.05,
 * no penalties (window 64), clock seed, model context, batch 512. */
void cli_gen_defaults(cli_gen_options *o);
/* If argv[*i] is one of the options above, parses its value (advancing *i)
 * and returns 1; returns -1 after printing an error for a bad value, and 0
 * when argv[*i] is not one of them. */
int cli_gen_option(int argc, char **argv, int *i, cli_gen_options *o);
/* The help lines for those options. */
extern const char *const cli_gen_usage;
/* Checks what cli_gen_option cannot check alone; prints the error. */
bool cli_gen_validate(const cli_gen_options *o, const char *cmd);
nuri_sampler_params cli_gen_sampler_params(const cli_gen_options *o);
nuri_context_params cli_gen_context_params(const cli_gen_options *o);

/* Whole file (malloc'ed, NUL-terminated; *len without the NUL), or NULL. */
char *cli_read_file(const char *path, size_t *len);
bool cli_is_gguf(const char *path);
/* A token's text with special tokens rendered (malloc'ed); NULL for -1. */
char *cli_token_text(const nuri_model *m, nuri_token t);

/* Monotonic clock in seconds. */
double cli_now(void);

/* Loads -m MODEL (with --tokenizer for llama2.c checkpoints), printing one
 * error line on failure. */
nuri_model *cli_load_model(const char *path, const char *tokenizer_path);

#endif
