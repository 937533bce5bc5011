#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "cli/cli.h"

int cli_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("nuri: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 1;
}

bool cli_take_str(int argc, char **argv, int *i, const char **out) {
    if (*i + 1 >= argc) {
        cli_error("option %s needs a value", argv[*i]);
        return false;
    }
    *out = argv[++*i];
    return true;
}

bool cli_take_int(int argc, char **argv, int *i, long min, long max, long *out) {
    const char *opt = argv[*i], *s;
    if (!cli_take_str(argc, argv, i, &s)) return false;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max) {
        cli_error("option %s needs an integer from %ld to %ld, got '%s'", opt, min, max, s);
        return false;
    }
    *out = v;
    return true;
}

bool cli_take_float(int argc, char **argv, int *i, double min, double max, double *out) {
    const char *opt = argv[*i], *s;
    if (!cli_take_str(argc, argv, i, &s)) return false;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || isnan(v) || v < min || v > max) {
        cli_error("option %s needs a number from %g to %g, got '%s'", opt, min, max, s);
        return false;
    }
    *out = v;
    return true;
}

nuri_model *cli_load_model(const char *path, const char *tokenizer_path) {
    if (!path) {
        cli_error("no model given (-m FILE)");
        return NULL;
    }
    nuri_model_params mp = {tokenizer_path};
    nuri_model *m = NULL;
    nuri_error err;
    if (nuri_model_load(path, &mp, &m, &err) != NURI_OK) {
        cli_error("%s: %s", path, err.message);
        return NULL;
    }
    return m;
}

double cli_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}
