/* cmd_quantize.c — `nuri quantize`: rewrites a GGUF model with its weight
 * matrices in another type.
 *
 * Every tensor is read from the input (any type nuri can convert to float),
 * converted row by row on -t threads, and written with the input's metadata
 * (general.file_type updated) to OUT.tmp, which is renamed to OUT only once
 * it is complete. Which type each tensor gets follows the conventions users
 * know from llama.cpp's quantizer; the rules are in quantize_usage below and
 * in choose_type().
 *
 * Memory: the GGUF writer references each tensor's data until the file is
 * written, so the converted tensors (about the output file's size) stay in
 * memory until then; tensors that keep their type are written straight from
 * the input's mapping. */
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/threadpool.h"
#include "core/util.h"
#include "gguf/gguf.h"
#include "quant/quant.h"

static const char *quantize_usage =
    "usage: nuri quantize [options] IN.gguf OUT.gguf TYPE\n"
    "\n"
    "Writes IN's model to OUT with its weight matrices in TYPE. IN may hold any\n"
    "type nuri reads (quantized weights are dequantized first). All metadata is\n"
    "kept; general.file_type is set to TYPE's. OUT is written to OUT.tmp and\n"
    "renamed when complete; IN is never overwritten.\n"
    "\n"
    "TYPE: F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q2_K Q3_K Q4_K Q5_K Q6_K\n"
    "      IQ4_NL IQ4_XS, or the mixes Q4_K_M Q5_K_M.\n"
    "\n"
    "Which tensor gets which type:\n"
    "  - Only 2-D (and larger) tensors whose names end in \"weight\" are\n"
    "    converted; norms (*_norm.weight), 1-D tensors (e.g. rope_freqs) and\n"
    "    ffn_gate_inp keep their type (F32 in ordinary files).\n"
    "  - F32, F16, BF16: every converted tensor gets TYPE.\n"
    "  - Other types: every converted tensor gets TYPE, token_embd included,\n"
    "    except output.weight (or token_embd.weight when there is no\n"
    "    output.weight, as the two are then shared), which gets Q6_K (Q8_0\n"
    "    stays Q8_0), as llama.cpp does. Q3_K, Q4_K, Q5_K are uniform (their\n"
    "    file type reads Q3_K_S, Q4_K_S, Q5_K_S); Q2_K is uniform too, unlike\n"
    "    llama.cpp's Q2_K mix.\n"
    "  - Q4_K_M / Q5_K_M: Q4_K / Q5_K, except output.weight as above (Q6_K),\n"
    "    attn_qkv Q5_K / Q6_K, and attn_v and ffn_down Q6_K in the layers\n"
    "    that get more bits: the first n/8, the last n/8, and every third\n"
    "    layer in between (layer i with (i - n/8) % 3 == 2), n = block count.\n"
    "  - A tensor whose rows are not a multiple of its type's block falls back:\n"
    "    Q2_K, Q3_K, IQ4_XS -> IQ4_NL; Q4_K -> Q5_0; Q5_K -> Q5_1; Q6_K -> Q8_0;\n"
    "    and to F16 when the rows are not a multiple of 32 either.\n"
    "    output.weight gets Q8_0 when its rows are not a multiple of TYPE's\n"
    "    block (as in llama.cpp).\n"
    "  - A tensor already in its chosen type is copied unchanged.\n"
    "\n"
    "  -t, --threads N  threads converting rows (default: physical cores)\n"
    "      --pure       every converted tensor in TYPE (no output.weight or mix\n"
    "                   rules; fallbacks still apply)\n"
    "  -v, --verbose    one line per tensor\n"
    "  -h, --help       this help\n";

/* ---- Targets ---------------------------------------------------------------- */

typedef enum { MIX_NONE, MIX_Q4_K_M, MIX_Q5_K_M } quant_mix;

typedef struct {
    const char *name;
    nuri_type base;  /* the type of most converted tensors */
    uint32_t ftype;  /* llama.cpp's general.file_type number */
    quant_mix mix;
} quant_target;

static const quant_target targets[] = {
    {"F32", NURI_TYPE_F32, 0, MIX_NONE},       {"F16", NURI_TYPE_F16, 1, MIX_NONE},
    {"BF16", NURI_TYPE_BF16, 32, MIX_NONE},    {"Q8_0", NURI_TYPE_Q8_0, 7, MIX_NONE},
    {"Q4_0", NURI_TYPE_Q4_0, 2, MIX_NONE},     {"Q4_1", NURI_TYPE_Q4_1, 3, MIX_NONE},
    {"Q5_0", NURI_TYPE_Q5_0, 8, MIX_NONE},     {"Q5_1", NURI_TYPE_Q5_1, 9, MIX_NONE},
    {"Q2_K", NURI_TYPE_Q2_K, 10, MIX_NONE},    {"Q3_K", NURI_TYPE_Q3_K, 11, MIX_NONE},
    {"Q4_K", NURI_TYPE_Q4_K, 14, MIX_NONE},    {"Q5_K", NURI_TYPE_Q5_K, 16, MIX_NONE},
    {"Q6_K", NURI_TYPE_Q6_K, 18, MIX_NONE},    {"IQ4_NL", NURI_TYPE_IQ4_NL, 25, MIX_NONE},
    {"IQ4_XS", NURI_TYPE_IQ4_XS, 30, MIX_NONE}, {"Q4_K_M", NURI_TYPE_Q4_K, 15, MIX_Q4_K_M},
    {"Q5_K_M", NURI_TYPE_Q5_K, 17, MIX_Q5_K_M},
};

static const quant_target *find_target(const char *name) {
    for (size_t i = 0; i < sizeof targets / sizeof targets[0]; i++)
        if (!strcasecmp(targets[i].name, name)) return &targets[i];
    return NULL;
}

/* ---- Per-tensor rules ------------------------------------------------------- */

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !memcmp(s + n - m, suffix, m);
}

/* Whether a tensor is a weight matrix to convert (everything else is copied). */
static bool is_convertible(const char *name, uint32_t n_dims) {
    return n_dims >= 2 && ends_with(name, "weight") && !strstr(name, "_norm.weight") &&
           !strstr(name, "ffn_gate_inp.weight");
}

/* The layer of a "blk.N." tensor, or -1. */
static int layer_of(const char *name) {
    if (strncmp(name, "blk.", 4)) return -1;
    char *end;
    long v = strtol(name + 4, &end, 10);
    return end != name + 4 && *end == '.' && v >= 0 && v < 1000000 ? (int)v : -1;
}

/* The layers a _M mix gives more bits: the first and last eighth and every
 * third layer in between. */
static bool use_more_bits(int layer, int n_layer) {
    return layer < n_layer / 8 || layer >= 7 * n_layer / 8 || (layer - n_layer / 8) % 3 == 2;
}

static int64_t block_size(uint32_t type) { return nuri_type_get(type)->block_size; }

/* The type to use instead of `type` for rows of n_cols elements (type
 * itself when n_cols is a multiple of its block). */
static nuri_type fallback_type(nuri_type type, int64_t n_cols) {
    if (n_cols % block_size(type) == 0) return type;
    nuri_type alt;
    switch (type) {
    case NURI_TYPE_Q2_K:
    case NURI_TYPE_Q3_K:
    case NURI_TYPE_IQ4_XS: alt = NURI_TYPE_IQ4_NL; break;
    case NURI_TYPE_Q4_K: alt = NURI_TYPE_Q5_0; break;
    case NURI_TYPE_Q5_K: alt = NURI_TYPE_Q5_1; break;
    case NURI_TYPE_Q6_K: alt = NURI_TYPE_Q8_0; break;
    default: alt = NURI_TYPE_F16; break;
    }
    return n_cols % block_size(alt) == 0 ? alt : NURI_TYPE_F16;
}

typedef struct {
    const quant_target *target;
    bool pure;
    bool has_output; /* the file has output.weight (else token_embd doubles as it) */
    int n_layer;
} quant_rules;

/* The type a convertible tensor gets (before the fallback for its row
 * length is applied, except for the output rule, which has its own). */
static nuri_type choose_type(const quant_rules *q, const char *name, int64_t n_cols) {
    nuri_type base = q->target->base;
    if (block_size(base) == 1 || q->pure) return base;
    bool is_output = !strcmp(name, "output.weight") ||
                     (!q->has_output && !strcmp(name, "token_embd.weight"));
    if (is_output) {
        if (n_cols % block_size(base) != 0) return NURI_TYPE_Q8_0;
        return base == NURI_TYPE_Q8_0 ? base : NURI_TYPE_Q6_K;
    }
    if (q->target->mix == MIX_NONE) return base;
    bool more = use_more_bits(layer_of(name) < 0 ? 0 : layer_of(name), q->n_layer);
    if (strstr(name, "attn_v.weight") || strstr(name, "ffn_down"))
        return more ? NURI_TYPE_Q6_K : base;
    if (strstr(name, "attn_qkv.weight"))
        return q->target->mix == MIX_Q4_K_M ? NURI_TYPE_Q5_K : NURI_TYPE_Q6_K;
    return base;
}

/* ---- Progress ----------------------------------------------------------------- */

typedef struct {
    bool enabled;          /* stderr is a terminal */
    uint64_t total, done;  /* elements over all tensors */
    double last_draw;
} progress_bar;

#define BAR_WIDTH 40

static void progress_draw(progress_bar *p, uint64_t done, const char *name, bool force) {
    if (!p->enabled) return;
    double now = cli_now();
    if (!force && now - p->last_draw < 0.1) return;
    p->last_draw = now;
    int fill = p->total ? (int)(BAR_WIDTH * done / p->total) : BAR_WIDTH;
    char bar[BAR_WIDTH + 1];
    for (int i = 0; i < BAR_WIDTH; i++) bar[i] = i < fill ? '#' : '.';
    bar[BAR_WIDTH] = '\0';
    fprintf(stderr, "\rquantize: [%s] %3d%% %-40.40s", bar,
            p->total ? (int)(100 * done / p->total) : 100, name);
    fflush(stderr);
}

/* ---- Conversion ----------------------------------------------------------------- */

typedef struct {
    const uint8_t *src;
    uint32_t src_type;
    size_t src_row_bytes;
    uint8_t *dst;
    uint32_t dst_type;
    size_t dst_row_bytes;
    int64_t n_cols, n_rows, rows_per_chunk;
    atomic_int_fast64_t next_row, rows_done;
    float **row_bufs; /* one n_cols buffer per thread */
    progress_bar *bar;
    const char *name;
} convert_job;

/* Converts chunks of rows until none are left; thread 0 redraws the bar. */
static void convert_rows(void *arg, int ith, int nth) {
    (void)nth;
    convert_job *job = arg;
    float *row = job->row_bufs[ith];
    for (;;) {
        int64_t r0 = atomic_fetch_add(&job->next_row, job->rows_per_chunk);
        if (r0 >= job->n_rows) break;
        int64_t r1 = r0 + job->rows_per_chunk < job->n_rows ? r0 + job->rows_per_chunk : job->n_rows;
        for (int64_t r = r0; r < r1; r++) {
            nuri_dequantize_row(job->src_type, job->src + (size_t)r * job->src_row_bytes, row,
                                job->n_cols);
            nuri_quantize_row(job->dst_type, row, job->dst + (size_t)r * job->dst_row_bytes,
                              job->n_cols);
        }
        int64_t done = atomic_fetch_add(&job->rows_done, r1 - r0) + (r1 - r0);
        if (ith == 0)
            progress_draw(job->bar, job->bar->done + (uint64_t)(done * job->n_cols), job->name, false);
    }
}

/* ---- The command -------------------------------------------------------------------- */

typedef struct {
    char *name;
    const gguf_tensor *src;
    nuri_type type;  /* output type */
    bool convert;    /* false: copied unchanged */
    uint8_t *data;   /* converted data (malloc'ed) */
    uint64_t n_elems, n_rows;
} tensor_plan;

/* True when a and b name the same existing file. */
static bool same_file(const char *a, const char *b) {
    struct stat sa, sb;
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

/* Copies every metadata key but general.file_type, then sets it. */
static bool copy_metadata(gguf_writer *w, const gguf_file *in, uint32_t ftype, bool quantized) {
    bool has_qversion = false;
    for (uint64_t i = 0; i < gguf_n_kv(in); i++) {
        const gguf_kv *kv = gguf_kv_at(in, i);
        if (memchr(kv->key.data, '\0', (size_t)kv->key.len))
            return !cli_error("quantize: a metadata key contains a NUL byte");
        char *key = strndup(kv->key.data, (size_t)kv->key.len);
        if (!key) return !cli_error("quantize: out of memory");
        nuri_status st = NURI_OK;
        if (strcmp(key, "general.file_type") != 0) st = gguf_writer_set_value(w, key, &kv->value);
        has_qversion |= !strcmp(key, "general.quantization_version");
        if (st != NURI_OK) cli_error("quantize: cannot copy %s: %s", key, nuri_status_string(st));
        free(key);
        if (st != NURI_OK) return false;
    }
    nuri_status st = gguf_writer_set_u32(w, "general.file_type", ftype);
    /* llama.cpp's quantizer records the block format revision (2 since
     * 2023); readers check it only when present. */
    if (st == NURI_OK && quantized && !has_qversion)
        st = gguf_writer_set_u32(w, "general.quantization_version", 2);
    if (st != NURI_OK) return !cli_error("quantize: cannot set metadata: %s", nuri_status_string(st));
    return true;
}

/* Decides every tensor's output type; prints the fallbacks and fails (one
 * error line) on a tensor nuri cannot convert. */
static bool plan_tensors(const gguf_file *in, const quant_rules *rules, tensor_plan *plans,
                         bool verbose) {
    uint64_t n = gguf_n_tensors(in);
    for (uint64_t i = 0; i < n; i++) {
        const gguf_tensor *t = gguf_tensor_at(in, i);
        tensor_plan *p = &plans[i];
        p->src = t;
        if (memchr(t->name.data, '\0', (size_t)t->name.len))
            return !cli_error("quantize: a tensor name contains a NUL byte");
        p->name = strndup(t->name.data, (size_t)t->name.len);
        if (!p->name) return !cli_error("quantize: out of memory");
        p->n_elems = 1;
        for (uint32_t d = 0; d < t->n_dims; d++) p->n_elems *= (uint64_t)t->ne[d];
        p->n_rows = t->ne[0] ? p->n_elems / (uint64_t)t->ne[0] : 0;
        p->type = (nuri_type)t->type;
        if (!is_convertible(p->name, t->n_dims) || t->ne[0] == 0) continue;
        nuri_type wanted = choose_type(rules, p->name, t->ne[0]);
        p->type = fallback_type(wanted, t->ne[0]);
        if (p->type != wanted)
            fprintf(stderr, "quantize: %s: rows of %" PRId64 " are not a multiple of %s's block of %"
                    PRId64 "; using %s\n", p->name, t->ne[0], nuri_type_name(wanted),
                    block_size(wanted), nuri_type_name(p->type));
        p->convert = p->type != t->type;
        if (!p->convert) continue;
        const nuri_type_traits *from = nuri_type_get(t->type), *to = nuri_type_get(p->type);
        if (!from || !from->to_float)
            return !cli_error("quantize: tensor '%s' has type %s, which nuri cannot convert", p->name,
                              nuri_type_name(t->type));
        if (!to->from_float)
            return !cli_error("quantize: nuri cannot write %s yet (tensor '%s')",
                              nuri_type_name(p->type), p->name);
        if (verbose)
            fprintf(stderr, "quantize: %-28s %-6s -> %s\n", p->name, nuri_type_name(t->type),
                    nuri_type_name(p->type));
    }
    return true;
}

/* Converts the planned tensors on the pool's threads. */
static bool convert_tensors(tensor_plan *plans, uint64_t n, int n_threads) {
    int64_t max_cols = 0;
    progress_bar bar = {isatty(2) != 0, 0, 0, 0.0};
    for (uint64_t i = 0; i < n; i++) {
        if (!plans[i].convert) continue;
        if (plans[i].src->ne[0] > max_cols) max_cols = plans[i].src->ne[0];
        bar.total += plans[i].n_elems;
    }
    if (max_cols == 0) return true;
    nuri_pool *pool = nuri_pool_create(n_threads);
    float **bufs = nuri_calloc_array((size_t)n_threads, sizeof *bufs);
    bool ok = pool && bufs;
    for (int i = 0; ok && i < n_threads; i++)
        ok = (bufs[i] = nuri_malloc_array((size_t)max_cols, sizeof(float))) != NULL;
    for (uint64_t i = 0; ok && i < n; i++) {
        tensor_plan *p = &plans[i];
        if (!p->convert) continue;
        int64_t n_cols = p->src->ne[0];
        convert_job job = {
            .src = p->src->data, .src_type = p->src->type,
            .src_row_bytes = nuri_row_size(p->src->type, n_cols),
            .dst_type = p->type, .dst_row_bytes = nuri_row_size(p->type, n_cols),
            .n_cols = n_cols, .n_rows = (int64_t)p->n_rows,
            .row_bufs = bufs, .bar = &bar, .name = p->name,
        };
        /* Chunks of about 64K elements: small enough to balance the
         * threads, large enough that taking one costs nothing. */
        job.rows_per_chunk = n_cols >= 65536 ? 1 : 65536 / n_cols;
        atomic_init(&job.next_row, 0);
        atomic_init(&job.rows_done, 0);
        p->data = nuri_malloc_array((size_t)p->n_rows, job.dst_row_bytes);
        if (!p->data) {
            ok = false;
            break;
        }
        job.dst = p->data;
        nuri_pool_run(pool, convert_rows, &job);
        bar.done += p->n_elems;
        progress_draw(&bar, bar.done, p->name, true);
    }
    if (bar.enabled) fputc('\n', stderr);
    if (bufs)
        for (int i = 0; i < n_threads; i++) free(bufs[i]);
    free(bufs);
    nuri_pool_free(pool);
    if (!ok) cli_error("quantize: out of memory");
    return ok;
}

int cmd_quantize(int argc, char **argv) {
    const char *positional[3] = {NULL, NULL, NULL};
    int n_positional = 0;
    long n_threads = 0;
    bool pure = false, verbose = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(quantize_usage, stdout);
            return 0;
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            if (!cli_take_int(argc, argv, &i, 1, 512, &n_threads)) return 1;
        } else if (!strcmp(a, "--pure")) {
            pure = true;
        } else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
            verbose = true;
        } else if (a[0] == '-' && a[1] != '\0') {
            return cli_error("quantize: unknown option '%s' (see nuri quantize --help)", a);
        } else if (n_positional < 3) {
            positional[n_positional++] = a;
        } else {
            return cli_error("quantize: too many arguments ('%s'); usage: nuri quantize IN.gguf OUT.gguf TYPE", a);
        }
    }
    if (n_positional != 3)
        return cli_error("quantize: usage: nuri quantize IN.gguf OUT.gguf TYPE (see nuri quantize --help)");
    const char *in_path = positional[0], *out_path = positional[1];
    const quant_target *target = find_target(positional[2]);
    if (!target)
        return cli_error("quantize: unknown type '%s' (F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q2_K Q3_K "
                         "Q4_K Q5_K Q6_K IQ4_NL IQ4_XS Q4_K_M Q5_K_M)", positional[2]);
    size_t out_len = strlen(out_path);
    char *tmp_path = malloc(out_len + 5);
    if (!tmp_path) return cli_error("quantize: out of memory");
    memcpy(tmp_path, out_path, out_len);
    memcpy(tmp_path + out_len, ".tmp", 5);
    if (!strcmp(in_path, out_path) || same_file(in_path, out_path) || same_file(in_path, tmp_path)) {
        free(tmp_path);
        return cli_error("quantize: refusing to overwrite the input %s; choose another output path",
                         in_path);
    }
    free(tmp_path);
    if (n_threads == 0) n_threads = nuri_physical_cores();

    int status = 1;
    gguf_file *in = NULL;
    gguf_writer *w = NULL;
    tensor_plan *plans = NULL;
    uint64_t n_tensors = 0;
    nuri_error err;
    double t0 = cli_now();
    if (gguf_open(in_path, &in, &err) != NURI_OK) {
        cli_error("quantize: %s: %s", in_path, err.message);
        goto done;
    }
    n_tensors = gguf_n_tensors(in);
    if (n_tensors == 0) {
        cli_error("quantize: %s has no tensors", in_path);
        goto done;
    }
    plans = nuri_calloc_array((size_t)n_tensors, sizeof *plans);
    w = gguf_writer_create();
    if (!plans || !w) {
        cli_error("quantize: out of memory");
        goto done;
    }
    quant_rules rules = {target, pure, gguf_find_tensor(in, "output.weight") != NULL, 0};
    for (uint64_t i = 0; i < n_tensors; i++) {
        const gguf_tensor *t = gguf_tensor_at(in, i);
        char name[32];
        size_t len = t->name.len < sizeof name - 1 ? (size_t)t->name.len : sizeof name - 1;
        memcpy(name, t->name.data, len);
        name[len] = '\0';
        int layer = layer_of(name);
        if (layer >= rules.n_layer) rules.n_layer = layer + 1;
    }
    if (!plan_tensors(in, &rules, plans, verbose)) goto done;
    if (!convert_tensors(plans, n_tensors, (int)n_threads)) goto done;

    bool any_quantized = false;
    uint64_t in_bytes = 0, out_bytes = 0;
    for (uint64_t i = 0; i < n_tensors; i++) {
        const tensor_plan *p = &plans[i];
        any_quantized |= block_size(p->type) > 1;
        in_bytes += p->src->nbytes;
        out_bytes += nuri_row_size(p->type, p->src->ne[0]) * p->n_rows;
        nuri_status st = gguf_writer_add_tensor(w, p->name, p->type, p->src->n_dims, p->src->ne,
                                                p->convert ? (const void *)p->data : p->src->data);
        if (st != NURI_OK) {
            cli_error("quantize: cannot add tensor '%s': %s", p->name, nuri_status_string(st));
            goto done;
        }
    }
    if (!copy_metadata(w, in, target->ftype, any_quantized)) goto done;
    if (gguf_writer_write(w, out_path, &err) != NURI_OK) {
        cli_error("quantize: %s", err.message);
        goto done;
    }
    fprintf(stderr, "quantize: wrote %s (%s): %" PRIu64 " tensors, %.2f MiB -> %.2f MiB in %.2f s\n",
            out_path, target->name, n_tensors, (double)in_bytes / (1 << 20),
            (double)out_bytes / (1 << 20), cli_now() - t0);
    status = 0;
done:
    if (plans)
        for (uint64_t i = 0; i < n_tensors; i++) {
            free(plans[i].name);
            free(plans[i].data);
        }
    free(plans);
    gguf_writer_free(w);
    gguf_close(in);
    return status;
}
