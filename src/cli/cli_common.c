#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <string.h>

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

/* ---- Generation options ----------------------------------------------------- */

const char *const cli_gen_usage =
    "      --temp T            temperature (default 0.8; 0 = greedy)\n"
    "      --top-k K           keep the K most likely tokens (default 40; 0 = off)\n"
    "      --top-p P           nucleus sampling (default 0.95; 1 = off)\n"
    "      --min-p P           drop tokens below P x the top probability (default 0.05; 0 = off)\n"
    "      --repeat-penalty R  penalise repeated tokens (default 1.0 = off)\n"
    "      --repeat-last-n N   window for the penalties (default 64)\n"
    "      --frequency-penalty F, --presence-penalty P   (default 0 = off)\n"
    "  -s, --seed S            random seed (default: from the clock)\n"
    "  -c, --ctx-size N        context length (default: min(model's, 4096))\n"
    "  -b, --batch-size N      prompt batch size (default 512)\n"
    "  -t, --threads N         threads (default: physical cores)\n"
    "      --kv-type f32|f16   KV cache element type (default f32; f16 halves its memory)\n";

void cli_gen_defaults(cli_gen_options *o) {
    memset(o, 0, sizeof *o);
    o->temp = 0.8;
    o->top_p = 0.95;
    o->min_p = 0.05;
    o->repeat_penalty = 1.0;
    o->top_k = 40;
    o->repeat_last_n = 64;
    o->seed = -1;
    o->kv_type = "f32";
}

static bool is_opt(const char *a, const char *short_name, const char *long_name) {
    return (short_name && !strcmp(a, short_name)) || !strcmp(a, long_name);
}

int cli_gen_option(int argc, char **argv, int *i, cli_gen_options *o) {
    const char *a = argv[*i];
    bool ok;
    if (is_opt(a, NULL, "--temp")) ok = cli_take_float(argc, argv, i, 0, 100, &o->temp);
    else if (is_opt(a, NULL, "--top-k")) ok = cli_take_int(argc, argv, i, 0, 1L << 30, &o->top_k);
    else if (is_opt(a, NULL, "--top-p")) ok = cli_take_float(argc, argv, i, 0, 1, &o->top_p);
    else if (is_opt(a, NULL, "--min-p")) ok = cli_take_float(argc, argv, i, 0, 1, &o->min_p);
    else if (is_opt(a, NULL, "--repeat-penalty")) ok = cli_take_float(argc, argv, i, 0.01, 100, &o->repeat_penalty);
    else if (is_opt(a, NULL, "--repeat-last-n")) ok = cli_take_int(argc, argv, i, 0, 1L << 20, &o->repeat_last_n);
    else if (is_opt(a, NULL, "--frequency-penalty")) ok = cli_take_float(argc, argv, i, -100, 100, &o->frequency_penalty);
    else if (is_opt(a, NULL, "--presence-penalty")) ok = cli_take_float(argc, argv, i, -100, 100, &o->presence_penalty);
    else if (is_opt(a, "-s", "--seed")) ok = cli_take_int(argc, argv, i, -1, 0x7fffffffL, &o->seed);
    else if (is_opt(a, "-c", "--ctx-size")) ok = cli_take_int(argc, argv, i, 0, 1 << 24, &o->n_ctx);
    else if (is_opt(a, "-b", "--batch-size")) ok = cli_take_int(argc, argv, i, 1, 1 << 16, &o->n_batch);
    else if (is_opt(a, "-t", "--threads")) ok = cli_take_int(argc, argv, i, 1, 512, &o->n_threads);
    else if (is_opt(a, NULL, "--kv-type")) ok = cli_take_str(argc, argv, i, &o->kv_type);
    else return 0;
    return ok ? 1 : -1;
}

bool cli_gen_validate(const cli_gen_options *o, const char *cmd) {
    if (strcmp(o->kv_type, "f32") && strcmp(o->kv_type, "f16")) {
        cli_error("%s: --kv-type must be f32 or f16, got '%s'", cmd, o->kv_type);
        return false;
    }
    return true;
}

nuri_sampler_params cli_gen_sampler_params(const cli_gen_options *o) {
    nuri_sampler_params sp = nuri_sampler_default_params();
    sp.temperature = (float)o->temp;
    sp.top_k = (int32_t)o->top_k;
    sp.top_p = (float)o->top_p;
    sp.min_p = (float)o->min_p;
    sp.repeat_penalty = (float)o->repeat_penalty;
    sp.frequency_penalty = (float)o->frequency_penalty;
    sp.presence_penalty = (float)o->presence_penalty;
    sp.penalty_last_n = (int32_t)o->repeat_last_n;
    sp.seed = o->seed >= 0 ? (uint64_t)o->seed : (uint64_t)time(NULL) ^ ((uint64_t)clock() << 32);
    return sp;
}

nuri_context_params cli_gen_context_params(const cli_gen_options *o) {
    nuri_context_params cp = nuri_context_default_params();
    cp.n_ctx = (int32_t)o->n_ctx;
    cp.n_batch = (int32_t)o->n_batch;
    cp.n_threads = (int32_t)o->n_threads;
    cp.kv_type = strcmp(o->kv_type, "f16") ? NURI_KV_F32 : NURI_KV_F16;
    return cp;
}

/* ---- Files and tokens ----------------------------------------------------------- */

char *cli_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0, got;
    char *buf = malloc(cap + 1);
    while (buf && (got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            char *nb = cap < ((size_t)1 << 31) ? realloc(buf, (cap *= 2) + 1) : NULL;
            if (!nb) {
                free(buf);
                buf = NULL;
            } else {
                buf = nb;
            }
        }
    }
    bool failed = ferror(f);
    fclose(f);
    if (!buf || failed) {
        free(buf);
        return NULL;
    }
    buf[n] = 0;
    if (len) *len = n;
    return buf;
}

bool cli_is_gguf(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return false;
    char magic[4] = {0};
    size_t got = fread(magic, 1, 4, f);
    fclose(f);
    return got == 4 && !memcmp(magic, "GGUF", 4);
}

char *cli_token_text(const nuri_model *m, nuri_token t) {
    if (t < 0) return NULL;
    size_t n = nuri_token_to_piece(m, t, true, NULL, 0);
    char *s = malloc(n + 1);
    if (!s) return NULL;
    nuri_token_to_piece(m, t, true, s, n);
    s[n] = 0;
    return s;
}
