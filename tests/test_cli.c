/* test_cli.c — the nuri command as a user runs it: help texts, `run`
 * streaming and stats, `tokenize` (argument and raw stdin), and clear
 * one-line errors with exit status 1. */
#include <stdlib.h>
#include <string.h>

#include "support/test.h"

static const char *bin;
static char model_gguf[4096], model_bin[4096], tok512[4096];

static int count_lines(const char *s) {
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

static int run(const char *const *argv, char **out, char **err) {
    return test_run(argv, NULL, 0, out, err);
}

static void check_help(void) {
    const char *cmds[] = {"run", "tokenize", "info"};
    for (int i = 0; i < 3; i++) {
        char *out, *err;
        const char *argv[] = {bin, cmds[i], "--help", NULL};
        int rc = run(argv, &out, &err);
        CHECK(rc == 0, "nuri %s --help exit %d", cmds[i], rc);
        CHECK(strstr(out, "usage: nuri") != NULL, "nuri %s --help prints usage: %s", cmds[i], out);
        free(out);
        free(err);
    }
    char *out, *err;
    const char *argv[] = {bin, "frobnicate", NULL};
    CHECK(run(argv, &out, &err) == 1, "unknown command exits 1");
    CHECK(strstr(err, "unknown command") != NULL, "unknown command message: %s", err);
    free(out);
    free(err);
}

static void check_run(void) {
    char *out1, *err1, *out2, *err2;
    const char *a1[] = {bin, "run", "-m", model_gguf, "-p", "The machine", "-n", "24", "--temp", "0", NULL};
    int rc = run(a1, &out1, &err1);
    CHECK(rc == 0, "run gguf exit %d: %s", rc, err1);
    CHECK(strlen(out1) > 20, "run printed text: '%s'", out1);
    CHECK(strncmp(out1, "The machine", 11) != 0, "prompt not echoed without --echo");
    CHECK(strstr(err1, "prompt:") && strstr(err1, "generated:") && strstr(err1, "t/s"),
          "stats line on stderr: %s", err1);
    /* The llama2.c checkpoint is the same model: same greedy text. */
    const char *a2[] = {bin, "run", "-m", model_bin, "--tokenizer", tok512, "-p", "The machine", "-n", "24",
                        "--temp", "0", NULL};
    rc = run(a2, &out2, &err2);
    CHECK(rc == 0, "run llama2.c exit %d: %s", rc, err2);
    CHECK(strcmp(out1, out2) == 0, "gguf and llama2.c give the same text:\n%s\n%s", out1, out2);
    free(out2);
    free(err2);

    const char *a3[] = {bin, "run", "-m", model_gguf, "-p", "The machine", "-n", "24", "--temp", "0", "--echo", NULL};
    rc = run(a3, &out2, &err2);
    CHECK(rc == 0 && strncmp(out2, "The machine", 11) == 0 && strcmp(out2 + 11, out1) == 0,
          "--echo prints the prompt then the same text: '%s'", out2);
    free(out2);
    free(err2);
    free(out1);
    free(err1);

    /* A seed makes sampling repeatable; different seeds differ. */
    const char *s1[] = {bin, "run", "-m", model_gguf, "-p", "Once", "-n", "40", "--temp", "1.0", "--seed", "7", NULL};
    const char *s2[] = {bin, "run", "-m", model_gguf, "-p", "Once", "-n", "40", "--temp", "1.0", "--seed", "8", NULL};
    char *o1, *o2, *o3;
    run(s1, &o1, NULL);
    run(s1, &o2, NULL);
    run(s2, &o3, NULL);
    CHECK(strcmp(o1, o2) == 0, "same seed, same text:\n%s\n%s", o1, o2);
    CHECK(strcmp(o1, o3) != 0, "different seeds, different text");
    free(o1);
    free(o2);
    free(o3);

    /* Reaching the end of the context stops with a message. */
    const char *a4[] = {bin, "run", "-m", model_gguf, "-p", "The machine", "-n", "500", "--temp", "0", "-c", "16", NULL};
    rc = run(a4, &out1, &err1);
    CHECK(rc == 0, "context-full run exits 0 (%d)", rc);
    CHECK(strstr(err1, "context is full") != NULL, "context-full message: %s", err1);
    free(out1);
    free(err1);
}

static void check_tokenize(void) {
    char *out, *err;
    const char *a1[] = {bin, "tokenize", "-m", model_gguf, "Hello world", NULL};
    int rc = run(a1, &out, &err);
    CHECK(rc == 0, "tokenize exit %d: %s", rc, err);
    CHECK(strncmp(out, "1 ", 2) == 0, "BOS first: %s", out);
    CHECK(count_lines(out) == 1 && strstr(out, "  ") == NULL, "one line, single spaces: '%s'", out);
    char with_bos[256];
    snprintf(with_bos, sizeof with_bos, "%s", out);
    free(out);
    free(err);

    const char *a2[] = {bin, "tokenize", "-m", model_gguf, "--no-bos", "Hello world", NULL};
    rc = run(a2, &out, &err);
    CHECK(rc == 0 && strcmp(out, with_bos + 2) == 0, "--no-bos drops BOS: '%s' vs '%s'", out, with_bos);
    free(out);
    free(err);

    /* --stdin keeps the bytes exactly, trailing newline included. */
    const char *a3[] = {bin, "tokenize", "-m", model_gguf, "--stdin", NULL};
    rc = test_run(a3, "Hello world\n", 12, &out, &err);
    const char *a4[] = {bin, "tokenize", "-m", model_gguf, "Hello world\n", NULL};
    char *out4;
    run(a4, &out4, NULL);
    CHECK(rc == 0 && strcmp(out, out4) == 0, "--stdin equals the same bytes as an argument: '%s' vs '%s'", out, out4);
    CHECK(strcmp(out, with_bos) != 0, "the newline is kept (ids differ from no newline)");
    free(out);
    free(out4);
    free(err);
}

static void check_errors(void) {
    struct {
        const char *what;
        const char *argv[12];
    } cases[] = {
        {"missing model file", {bin, "run", "-m", "/nonexistent/model.gguf", "-p", "x", NULL}},
        {"no model", {bin, "run", "-p", "x", NULL}},
        {"bad number", {bin, "run", "-m", model_gguf, "-p", "x", "-n", "lots", NULL}},
        {"unknown option", {bin, "run", "-m", model_gguf, "--frobnicate", NULL}},
        {"missing option value", {bin, "run", "-m", model_gguf, "-p", NULL}},
        {"llama2.c without tokenizer", {bin, "run", "-m", model_bin, "-p", "x", NULL}},
        {"not a model", {bin, "tokenize", "-m", tok512, "x", NULL}},
        {"info on a missing file", {bin, "info", "/nonexistent.gguf", NULL}},
        {"tokenize without text", {bin, "tokenize", "-m", model_gguf, NULL}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *out, *err;
        int rc = run(cases[i].argv, &out, &err);
        CHECK(rc == 1, "%s: exit %d (want 1)", cases[i].what, rc);
        CHECK(count_lines(err) == 1 && strncmp(err, "nuri: ", 6) == 0, "%s: one error line, got '%s'",
              cases[i].what, err);
        CHECK(out[0] == 0, "%s: nothing on stdout: '%s'", cases[i].what, out);
        free(out);
        free(err);
    }
}

int main(void) {
    bin = test_nuri_bin();
    if (!bin || !test_shared_path("models")) return test_finish();
    snprintf(model_gguf, sizeof model_gguf, "%s", test_shared_path("models/aidreams260K.gguf"));
    snprintf(model_bin, sizeof model_bin, "%s", test_shared_path("models/aidreams260K.bin"));
    snprintf(tok512, sizeof tok512, "%s", test_shared_path("models/tok512.bin"));
    check_help();
    check_run();
    check_tokenize();
    check_errors();
    return test_finish();
}
