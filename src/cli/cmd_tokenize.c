/* cmd_tokenize.c — `nuri tokenize`: print a text's token ids. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

static const char *tokenize_usage =
    "usage: nuri tokenize -m MODEL [--no-bos] [--no-parse-special] (--stdin | TEXT)\n"
    "\n"
    "Prints the token ids of TEXT (or of standard input, byte for byte) on one\n"
    "line, separated by single spaces.\n"
    "\n"
    "  -m, --model FILE        GGUF model or llama2.c checkpoint\n"
    "      --tokenizer FILE    llama2.c tokenizer.bin (default: beside the model)\n"
    "      --no-bos            do not add the BOS token\n"
    "      --no-parse-special  treat special-token text (\"<s>\") as plain text\n"
    "      --stdin             read the text from standard input\n"
    "  -h, --help              this help\n";

static char *read_all_stdin(size_t *len) {
    size_t cap = 1 << 16, n = 0, got;
    char *buf = malloc(cap);
    while (buf && (got = fread(buf + n, 1, cap - n, stdin)) > 0) {
        n += got;
        if (n == cap) {
            char *nb = cap < (1u << 30) ? realloc(buf, cap *= 2) : NULL;
            if (!nb) { free(buf); buf = NULL; }
            else buf = nb;
        }
    }
    *len = n;
    return buf;
}

int cmd_tokenize(int argc, char **argv) {
    const char *model_path = NULL, *tokenizer_path = NULL, *text = NULL;
    bool add_bos = true, parse_special = true, from_stdin = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool ok = true;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(tokenize_usage, stdout);
            return 0;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) ok = cli_take_str(argc, argv, &i, &model_path);
        else if (!strcmp(a, "--tokenizer")) ok = cli_take_str(argc, argv, &i, &tokenizer_path);
        else if (!strcmp(a, "--no-bos")) add_bos = false;
        else if (!strcmp(a, "--no-parse-special")) parse_special = false;
        else if (!strcmp(a, "--stdin")) from_stdin = true;
        else if (a[0] == '-' && a[1] != '\0' && !text) return cli_error("tokenize: unknown option '%s'", a);
        else if (!text) text = a;
        else return cli_error("tokenize: more than one TEXT given (quote it)");
        if (!ok) return 1;
    }
    if (!model_path) return cli_error("tokenize: no model given (-m FILE)");
    if (from_stdin == (text != NULL)) return cli_error("tokenize: give either TEXT or --stdin");

    size_t len = 0;
    char *input = NULL;
    if (from_stdin) {
        input = read_all_stdin(&len);
        if (!input) return cli_error("tokenize: cannot read standard input");
        text = input;
    } else {
        len = strlen(text);
    }
    int status = 1;
    nuri_model *model = cli_load_model(model_path, tokenizer_path);
    if (model) {
        nuri_token *toks = NULL;
        size_t n = 0;
        nuri_error err;
        unsigned flags = (add_bos ? NURI_TOKENIZE_ADD_BOS : 0) |
                         (parse_special ? NURI_TOKENIZE_PARSE_SPECIAL : 0);
        if (nuri_tokenize(model, text, len, flags, &toks, &n, &err) != NURI_OK) {
            cli_error("%s", err.message);
        } else {
            for (size_t i = 0; i < n; i++) printf(i ? " %d" : "%d", toks[i]);
            putchar('\n');
            status = 0;
        }
        nuri_free(toks);
        nuri_model_free(model);
    }
    free(input);
    return status;
}
