/* cmd_run.c — `nuri run`: generate text from a prompt, streaming it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"

static const char *run_usage =
    "usage: nuri run -m MODEL -p TEXT [options]\n"
    "\n"
    "Generates a continuation of TEXT and streams it to stdout; a stats line\n"
    "goes to stderr at the end. Stops at an end-of-generation token or after N.\n"
    "\n"
    "  -m, --model FILE        GGUF model or llama2.c checkpoint\n"
    "      --tokenizer FILE    llama2.c tokenizer.bin (default: beside the model)\n"
    "  -p, --prompt TEXT       the prompt\n"
    "  -f, --file FILE         read the prompt from FILE\n"
    "  -n, --n-predict N       tokens to generate (default 256; -1: until the context is full)\n"
    "%s"
    "      --echo              print the prompt before the generated text\n"
    "      --no-parse-special  treat special-token text in the prompt as plain text\n"
    "  -h, --help              this help\n";

int cmd_run(int argc, char **argv) {
    const char *model_path = NULL, *tokenizer_path = NULL, *prompt = NULL, *prompt_file = NULL;
    long n_predict = 256;
    cli_gen_options gen;
    cli_gen_defaults(&gen);
    bool echo = false, parse_special = true;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool ok = true;
        int gen_opt = cli_gen_option(argc, argv, &i, &gen);
        if (gen_opt < 0) return 1;
        if (gen_opt > 0) continue;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf(run_usage, cli_gen_usage);
            return 0;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) ok = cli_take_str(argc, argv, &i, &model_path);
        else if (!strcmp(a, "--tokenizer")) ok = cli_take_str(argc, argv, &i, &tokenizer_path);
        else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) ok = cli_take_str(argc, argv, &i, &prompt);
        else if (!strcmp(a, "-f") || !strcmp(a, "--file")) ok = cli_take_str(argc, argv, &i, &prompt_file);
        else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict")) ok = cli_take_int(argc, argv, &i, -1, 1L << 30, &n_predict);
        else if (!strcmp(a, "--echo")) echo = true;
        else if (!strcmp(a, "--no-parse-special")) parse_special = false;
        else return cli_error("run: unknown option '%s' (see nuri run --help)", a);
        if (!ok) return 1;
    }
    if (!model_path) return cli_error("run: no model given (-m FILE); see nuri run --help");
    if (prompt && prompt_file) return cli_error("run: give either -p or -f, not both");
    if (!cli_gen_validate(&gen, "run")) return 1;

    char *file_text = NULL;
    size_t prompt_len = 0;
    if (prompt_file) {
        file_text = cli_read_file(prompt_file, &prompt_len);
        if (!file_text) return cli_error("run: cannot read prompt file %s", prompt_file);
        prompt = file_text;
    } else {
        if (!prompt) prompt = "";
        prompt_len = strlen(prompt);
    }

    int status = 1;
    nuri_model *model = cli_load_model(model_path, tokenizer_path);
    nuri_context *ctx = NULL;
    nuri_sampler *sampler = NULL;
    nuri_token *toks = NULL;
    nuri_error err;
    if (!model) goto done;

    nuri_context_params cp = cli_gen_context_params(&gen);
    if (nuri_context_create(model, &cp, &ctx, &err) != NURI_OK) {
        cli_error("%s", err.message);
        goto done;
    }
    size_t n_prompt = 0;
    unsigned flags = NURI_TOKENIZE_ADD_BOS | (parse_special ? NURI_TOKENIZE_PARSE_SPECIAL : 0);
    if (nuri_tokenize(model, prompt, prompt_len, flags, &toks, &n_prompt, &err) != NURI_OK) {
        cli_error("%s", err.message);
        goto done;
    }
    if (n_prompt == 0) {
        cli_error("run: the prompt is empty and the model adds no BOS token; give -p TEXT");
        goto done;
    }
    int32_t n_ctx_real = nuri_context_n_ctx(ctx);
    if (n_prompt >= (size_t)n_ctx_real) {
        cli_error("run: the prompt has %zu tokens, but the context holds %d (raise -c)", n_prompt,
                  n_ctx_real);
        goto done;
    }

    nuri_sampler_params sp = cli_gen_sampler_params(&gen);
    sampler = nuri_sampler_create(&sp);
    if (!sampler) {
        cli_error("out of memory");
        goto done;
    }
    for (size_t i = 0; i < n_prompt; i++) nuri_sampler_accept(sampler, toks[i]);

    if (echo) {
        fwrite(prompt, 1, prompt_len, stdout);
        fflush(stdout);
    }
    double t0 = cli_now();
    if (nuri_eval(ctx, toks, NULL, n_prompt, false, &err) != NURI_OK) {
        cli_error("%s", err.message);
        goto done;
    }
    double t1 = cli_now();

    int32_t n_vocab = nuri_model_n_vocab(model);
    nuri_detokenizer detok = {{0}, 0};
    char text[1024];
    long n_gen = 0;
    bool context_full = false;
    while (n_predict < 0 || n_gen < n_predict) {
        nuri_token next = nuri_sampler_sample(sampler, nuri_logits(ctx), n_vocab);
        n_gen++;
        if (nuri_token_is_eog(model, next)) break;
        size_t n = nuri_detokenize_push(model, &detok, next, text, sizeof text);
        fwrite(text, 1, n, stdout);
        fflush(stdout);
        if (n_predict >= 0 && n_gen >= n_predict) break;
        if (nuri_context_n_past(ctx) >= n_ctx_real) {
            context_full = true;
            break;
        }
        if (nuri_eval(ctx, &next, NULL, 1, false, &err) != NURI_OK) {
            cli_error("%s", err.message);
            goto done;
        }
    }
    size_t n = nuri_detokenize_flush(&detok, text, sizeof text);
    fwrite(text, 1, n, stdout);
    fputc('\n', stdout);
    fflush(stdout);
    double t2 = cli_now();
    if (context_full)
        fprintf(stderr, "nuri: the context is full (%d tokens); stopping (raise -c for longer output)\n",
                n_ctx_real);
    fprintf(stderr, "prompt: %zu tokens, %.2f t/s | generated: %ld tokens, %.2f t/s\n", n_prompt,
            t1 > t0 ? (double)n_prompt / (t1 - t0) : 0.0, n_gen,
            t2 > t1 && n_gen ? (double)n_gen / (t2 - t1) : 0.0);
    status = 0;
done:
    nuri_free(toks);
    nuri_sampler_free(sampler);
    nuri_context_free(ctx);
    nuri_model_free(model);
    free(file_text);
    return status;
}
