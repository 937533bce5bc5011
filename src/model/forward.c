/* forward.c — contexts (KV cache + scratch) and the Llama forward pass.
 *
 * nuri_decode takes a batch of tokens, each with its sequence and position;
 * every step below works on the whole batch at once (n rows of activations),
 * so the matrix products reuse each weight block across the batch (the
 * kernels' gemm). All keys and values of a batch are stored before attention
 * runs, and a token only looks at its own sequence's positions up to its own,
 * so attention is causal within the batch and sequences never see each other.
 *
 * Threads: every step is a job on the context's pool. Matrix products split
 * the weight rows among threads at 32-row boundaries; the kernels give every
 * output element the same bits however rows and tokens are split, so greedy
 * output does not depend on -t. */
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core/threadpool.h"
#include "core/util.h"
#include "kernels/kernels.h"
#include "model/model.h"
#include "quant/quant.h"

/* Query rows (tokens x heads sharing a KV head) per attention task. */
#define ATT_ROWS 32
/* Threads split weight rows at multiples of this (the kernels' row tile). */
#define ROW_ALIGN 32

struct nuri_context {
    const nuri_model *model;
    int32_t n_ctx, n_batch, n_seq;
    int32_t *n_past; /* per sequence */
    nuri_pool *pool;
    int32_t kv_dim;
    uint32_t kv_type;   /* NURI_TYPE_F32 or NURI_TYPE_F16 */
    size_t kv_elem;     /* bytes per cached element */
    /* Keys: [layer][seq][pos][kv_dim]. Values transposed, so that attention's
     * weighted sum is a matrix product over positions: [layer][seq][kv_dim][n_ctx]. */
    void *k_cache, *v_cache;
    float *rope_freqs; /* n_rot/2 angular frequencies per position */

    /* Scratch for up to n_batch tokens. */
    float *x;      /* residual stream, n x n_embd */
    float *xb;     /* normed input of a sub-layer, n x n_embd; also sub-layer outputs */
    float *q;      /* n x q_dim */
    float *k, *v;  /* n x kv_dim */
    float *att;    /* attention output, n x q_dim */
    float *gate;   /* n x n_ff */
    float *up;     /* n x n_ff */
    float *scores;  /* per thread: att_rows_cap x n_ctx */
    float *att_q;   /* per thread: att_rows_cap x head_dim, a task's queries */
    float *att_out; /* per thread: att_rows_cap x head_dim, a task's outputs */
    void *xq;      /* activations converted to a weight's vec_dot_type */
    size_t xq_row_cap;

    /* The batch being evaluated (one chunk of at most n_batch entries). */
    const int32_t *seq, *pos;

    float *logits; /* n_logits rows of n_vocab */
    size_t n_logits, logits_cap_rows;
    int32_t *logits_row; /* per entry of the last call: its row, or -1 */
    size_t n_entries, entries_cap;
    int32_t *seq_buf, *pos_buf; /* resolved sequences and positions of a call */
    size_t last_row;            /* row nuri_logits returns */
};

/* ---- Contexts ----------------------------------------------------------------- */

nuri_context_params nuri_context_default_params(void) {
    nuri_context_params p = {0, 512, 0, 1, NURI_KV_F32};
    return p;
}

void nuri_context_free(nuri_context *c) {
    if (!c) return;
    nuri_pool_free(c->pool);
    free(c->k_cache);
    free(c->v_cache);
    free(c->rope_freqs);
    free(c->x);
    free(c->xb);
    free(c->q);
    free(c->k);
    free(c->v);
    free(c->att);
    free(c->gate);
    free(c->up);
    free(c->scores);
    free(c->att_q);
    free(c->att_out);
    free(c->xq);
    free(c->logits);
    free(c->logits_row);
    free(c->seq_buf);
    free(c->pos_buf);
    free(c->n_past);
    free(c);
}

/* Tokens per attention task: as many as keep its query rows within
 * ATT_ROWS, at least one. */
static int att_block_tokens(const nuri_hparams *hp) {
    int group = hp->n_head / hp->n_head_kv;
    return group >= ATT_ROWS ? 1 : ATT_ROWS / group;
}

/* The most query rows a task has. */
static int att_rows_cap(const nuri_hparams *hp) {
    int group = hp->n_head / hp->n_head_kv;
    return group > ATT_ROWS ? group : ATT_ROWS;
}

static float *alloc_floats(size_t rows, size_t cols) {
    size_t n;
    if (__builtin_mul_overflow(rows, cols, &n)) return NULL;
    return nuri_calloc_array(n, sizeof(float));
}

nuri_status nuri_context_create(const nuri_model *m, const nuri_context_params *params,
                                nuri_context **out, nuri_error *err) {
    if (!m || !out) return nuri_fail(err, NURI_ERR_INVALID_ARG, "nuri_context_create: NULL argument");
    *out = NULL;
    nuri_context_params p = params ? *params : nuri_context_default_params();
    const nuri_hparams *hp = &m->hp;
    if (p.n_ctx < 0 || p.n_batch < 0 || p.n_threads < 0 || p.n_seq < 0)
        return nuri_fail(err, NURI_ERR_INVALID_ARG, "context sizes must not be negative");
    if (p.kv_type != NURI_KV_F32 && p.kv_type != NURI_KV_F16)
        return nuri_fail(err, NURI_ERR_INVALID_ARG, "unknown KV cache type %d", (int)p.kv_type);
    if (p.n_seq == 0) p.n_seq = 1;
    if (p.n_seq > 4096)
        return nuri_fail(err, NURI_ERR_INVALID_ARG, "%d sequences are too many", p.n_seq);
    if (p.n_ctx == 0) p.n_ctx = hp->n_ctx_train < 4096 ? hp->n_ctx_train : 4096;
    if (p.n_batch == 0) p.n_batch = 512;
    if (p.n_batch > p.n_ctx) p.n_batch = p.n_ctx;
    if (p.n_threads == 0) p.n_threads = nuri_physical_cores();
    if (p.n_threads > 512) p.n_threads = 512;
    if (p.n_ctx > (1 << 24))
        return nuri_fail(err, NURI_ERR_INVALID_ARG, "context length %d is too large", p.n_ctx);

    nuri_context *c = calloc(1, sizeof *c);
    if (!c) return nuri_fail(err, NURI_ERR_NOMEM, "out of memory");
    c->model = m;
    c->n_ctx = p.n_ctx;
    c->n_batch = p.n_batch;
    c->n_seq = p.n_seq;
    c->n_past = nuri_calloc_array((size_t)p.n_seq, sizeof *c->n_past);
    c->kv_dim = hp->n_head_kv * hp->head_dim;
    c->kv_type = p.kv_type == NURI_KV_F16 ? NURI_TYPE_F16 : NURI_TYPE_F32;
    c->kv_elem = p.kv_type == NURI_KV_F16 ? 2 : 4;
    size_t q_dim = (size_t)hp->n_head * hp->head_dim;
    size_t nb = (size_t)p.n_batch;
    size_t widest = (size_t)hp->n_embd;
    if (q_dim > widest) widest = q_dim;
    if ((size_t)hp->n_ff > widest) widest = (size_t)hp->n_ff;
    c->pool = nuri_pool_create(p.n_threads);
    size_t cache_elems = SIZE_MAX;
    size_t per_layer_seq = (size_t)p.n_ctx * (size_t)c->kv_dim;
    if (!__builtin_mul_overflow((size_t)hp->n_layer * (size_t)p.n_seq, per_layer_seq, &cache_elems)) {
        c->k_cache = nuri_calloc_array(cache_elems, c->kv_elem);
        c->v_cache = nuri_calloc_array(cache_elems, c->kv_elem);
    }
    c->rope_freqs = alloc_floats((size_t)hp->n_rot / 2, 1);
    c->x = alloc_floats(nb, (size_t)hp->n_embd);
    c->xb = alloc_floats(nb, widest);
    c->q = alloc_floats(nb, q_dim);
    c->k = alloc_floats(nb, (size_t)c->kv_dim);
    c->v = alloc_floats(nb, (size_t)c->kv_dim);
    c->att = alloc_floats(nb, q_dim);
    c->gate = alloc_floats(nb, (size_t)hp->n_ff);
    c->up = alloc_floats(nb, (size_t)hp->n_ff);
    if (c->pool) {
        size_t rows = (size_t)nuri_pool_size(c->pool) * (size_t)att_rows_cap(hp);
        c->scores = alloc_floats(rows, (size_t)p.n_ctx);
        c->att_q = alloc_floats(rows, (size_t)hp->head_dim);
        c->att_out = alloc_floats(rows, (size_t)hp->head_dim);
    }
    /* Any activation type takes at most 4 bytes per element plus block headers. */
    c->xq_row_cap = widest * 4 + 64;
    c->xq = nuri_malloc_array(nb, c->xq_row_cap);
    if (!c->n_past || !c->pool || !c->k_cache || !c->v_cache || !c->rope_freqs || !c->x || !c->xb ||
        !c->q || !c->k || !c->v || !c->att || !c->gate || !c->up || !c->scores || !c->att_q ||
        !c->att_out || !c->xq) {
        nuri_context_free(c);
        return nuri_fail(err, NURI_ERR_NOMEM, "out of memory creating a context of %d positions",
                         p.n_ctx);
    }
    for (int i = 0; i < hp->n_rot / 2; i++) {
        double freq = pow((double)hp->rope_base, -2.0 * i / hp->n_rot) * hp->rope_freq_scale;
        if (m->rope_inv_factors) freq /= m->rope_inv_factors[i];
        c->rope_freqs[i] = (float)freq;
    }
    *out = c;
    return NURI_OK;
}

int32_t nuri_context_n_ctx(const nuri_context *c) { return c->n_ctx; }
int32_t nuri_context_n_seq(const nuri_context *c) { return c->n_seq; }
int32_t nuri_context_n_past(const nuri_context *c) { return c->n_past[0]; }

int32_t nuri_context_seq_n_past(const nuri_context *c, int32_t seq) {
    return seq >= 0 && seq < c->n_seq ? c->n_past[seq] : 0;
}

void nuri_context_seq_truncate(nuri_context *c, int32_t seq, int32_t n_past) {
    if (seq < 0 || seq >= c->n_seq) return;
    if (n_past < 0) n_past = 0;
    if (n_past < c->n_past[seq]) c->n_past[seq] = n_past;
}

void nuri_context_truncate(nuri_context *c, int32_t n_past) { nuri_context_seq_truncate(c, 0, n_past); }

const float *nuri_logits(const nuri_context *c) {
    if (c->n_logits == 0) return NULL;
    return c->logits + c->last_row * (size_t)c->model->hp.n_vocab;
}

const float *nuri_logits_ith(const nuri_context *c, size_t i) {
    if (i >= c->n_entries || c->logits_row[i] < 0) return NULL;
    return c->logits + (size_t)c->logits_row[i] * (size_t)c->model->hp.n_vocab;
}

/* Keys of (layer, sequence): n_ctx rows of kv_dim elements. */
static char *keys_at(const nuri_context *c, int l, int32_t seq) {
    return (char *)c->k_cache + ((size_t)l * c->n_seq + (size_t)seq) * c->n_ctx * c->kv_dim * c->kv_elem;
}

/* Values of (layer, sequence), transposed: kv_dim rows of n_ctx elements. */
static char *values_at(const nuri_context *c, int l, int32_t seq) {
    return (char *)c->v_cache + ((size_t)l * c->n_seq + (size_t)seq) * c->n_ctx * c->kv_dim * c->kv_elem;
}

static void store_kv(const nuri_context *c, char *dst, float v) {
    if (c->kv_elem == 2) {
        uint16_t h = nuri_fp32_to_fp16(v);
        memcpy(dst, &h, 2);
    } else {
        memcpy(dst, &v, 4);
    }
}

/* ---- Matrix products ---------------------------------------------------------- */

/* Activations ready for a weight type's kernels: n rows of row_bytes. */
typedef struct {
    const void *data;
    size_t row_bytes;
    uint32_t type; /* vec_dot_type they were converted to */
    int n;
} acts;

typedef struct {
    const float *x;
    int n_cols;
    nuri_from_float_fn quantize;
    void *dst;
    size_t row_bytes;
    int n;
} quantize_job;

static void quantize_worker(void *arg, int ith, int nth) {
    const quantize_job *j = arg;
    for (int t = ith; t < j->n; t += nth)
        j->quantize(j->x + (size_t)t * j->n_cols, (char *)j->dst + (size_t)t * j->row_bytes, j->n_cols);
}

/* Converts n rows of n_cols floats for the kernels of weight type wtype
 * (into c->xq, overwriting earlier conversions). */
static acts prepare_acts(nuri_context *c, uint32_t wtype, const float *x, int n, int n_cols) {
    const nuri_kernel *k = nuri_kernels_for(wtype);
    uint32_t act_type = nuri_type_get(wtype)->vec_dot_type;
    acts a = {x, (size_t)n_cols * sizeof(float), NURI_TYPE_F32, n};
    if (act_type == NURI_TYPE_F32) return a;
    quantize_job j = {x, n_cols, k->quantize, c->xq, nuri_row_size(act_type, n_cols), n};
    if (n >= 4) nuri_pool_run(c->pool, quantize_worker, &j);
    else quantize_worker(&j, 0, 1);
    a.data = c->xq;
    a.row_bytes = j.row_bytes;
    a.type = act_type;
    return a;
}

/* Up to three products of the same activations, run as one job so that
 * threads wait for each other once (q, k, v; gate, up). */
#define MATMUL_MAX 3

typedef struct {
    int n;
    const nuri_weight *w[MATMUL_MAX];
    acts a;
    float *y[MATMUL_MAX]; /* a.n x w->n_rows each */
    const float *bias[MATMUL_MAX];
} matmul_job;

static void matmul_worker(void *arg, int ith, int nth) {
    const matmul_job *j = arg;
    for (int m = 0; m < j->n; m++) {
        const nuri_weight *w = j->w[m];
        int64_t n_chunks = (w->n_rows + ROW_ALIGN - 1) / ROW_ALIGN;
        int64_t c0 = n_chunks * ith / nth, c1 = n_chunks * (ith + 1) / nth;
        int64_t r0 = c0 * ROW_ALIGN, r1 = c1 * ROW_ALIGN < w->n_rows ? c1 * ROW_ALIGN : w->n_rows;
        if (r1 <= r0) continue;
        /* One call for all of this thread's rows and tokens: the kernel does
         * its own cache blocking and prefetches the next rows as it goes. */
        const nuri_kernel *k = nuri_kernels_for(w->type);
        nuri_gemm_fn gemm = j->a.n == 1 && k->gemm_one_token ? k->gemm_one_token : k->gemm;
        gemm(w->n_cols, (const char *)w->data + (size_t)r0 * w->row_bytes, w->row_bytes, (int)(r1 - r0),
             j->a.data, j->a.row_bytes, j->a.n, j->y[m] + r0, (size_t)w->n_rows);
        if (j->bias[m])
            for (int t = 0; t < j->a.n; t++)
                for (int64_t r = r0; r < r1; r++) j->y[m][(size_t)t * w->n_rows + r] += j->bias[m][r];
    }
}

/* The n products y[i] = W[i] x (+ bias[i]) of the rows x (n_cols floats
 * each): one job when all weights take the same activation type. */
static void matmuls(nuri_context *c, int n, const nuri_weight *const w[], const float *x, int n_tok, int n_cols,
                    float *const y[], const float *const bias[]) {
    acts a = prepare_acts(c, w[0]->type, x, n_tok, n_cols);
    matmul_job j = {0, {NULL}, a, {NULL}, {NULL}};
    for (int i = 0; i < n; i++) {
        if (nuri_type_get(w[i]->type)->vec_dot_type != a.type) {
            if (j.n) nuri_pool_run(c->pool, matmul_worker, &j);
            j.n = 0;
            j.a = a = prepare_acts(c, w[i]->type, x, n_tok, n_cols);
        }
        j.w[j.n] = w[i];
        j.y[j.n] = y[i];
        j.bias[j.n++] = bias[i];
    }
    nuri_pool_run(c->pool, matmul_worker, &j);
}

/* ---- Row-wise steps ---------------------------------------------------------------- */

static void rmsnorm(float *out, const float *x, const float *weight, int n, float eps) {
    double ss = 0.0;
    for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
    float scale = (float)(1.0 / sqrt(ss / n + eps));
    for (int i = 0; i < n; i++) out[i] = x[i] * scale * weight[i];
}

static void rope(const nuri_context *c, float *vec, int n_heads, int pos) {
    const nuri_hparams *hp = &c->model->hp;
    int half = hp->n_rot / 2;
    bool norm = hp->rope_kind == NURI_ROPE_NORM;
    for (int i = 0; i < half; i++) {
        double theta = (double)pos * c->rope_freqs[i];
        float cs = (float)cos(theta), sn = (float)sin(theta);
        int a = norm ? 2 * i : i, b = norm ? 2 * i + 1 : i + half;
        for (int h = 0; h < n_heads; h++) {
            float *v = vec + (size_t)h * hp->head_dim;
            float x0 = v[a], x1 = v[b];
            v[a] = x0 * cs - x1 * sn;
            v[b] = x0 * sn + x1 * cs;
        }
    }
}

typedef enum {
    ROWS_NORM,        /* xb = norm(x) */
    ROWS_ADD_NORM,    /* x += xb; xb = norm(x) (norm == NULL: only the add) */
    ROWS_ROPE_STORE,  /* rotate q, k; append k, v to the cache */
    ROWS_SWIGLU,      /* gate = silu(gate) * up */
} rows_op;

typedef struct {
    nuri_context *c;
    rows_op op;
    int n, layer;
    const float *norm;
} rows_job;

static void rows_worker(void *arg, int ith, int nth) {
    const rows_job *j = arg;
    nuri_context *c = j->c;
    const nuri_hparams *hp = &c->model->hp;
    int d = hp->n_embd, q_dim = hp->n_head * hp->head_dim, kvd = c->kv_dim, ff = hp->n_ff;
    for (int t = ith; t < j->n; t += nth) {
        float *x = c->x + (size_t)t * d, *xb = c->xb + (size_t)t * d;
        switch (j->op) {
        case ROWS_ADD_NORM:
            for (int i = 0; i < d; i++) x[i] += xb[i];
            if (!j->norm) break;
            /* fall through */
        case ROWS_NORM:
            rmsnorm(xb, x, j->norm, d, hp->rms_eps);
            break;
        case ROWS_ROPE_STORE: {
            float *k = c->k + (size_t)t * kvd, *v = c->v + (size_t)t * kvd;
            float *q = c->q + (size_t)t * q_dim;
            rope(c, q, hp->n_head, c->pos[t]);
            /* Attention's 1/sqrt(head_dim), applied once here instead of to every score. */
            float scale = 1.0f / sqrtf((float)hp->head_dim);
            for (int i = 0; i < q_dim; i++) q[i] *= scale;
            rope(c, k, hp->n_head_kv, c->pos[t]);
            char *kc = keys_at(c, j->layer, c->seq[t]) + (size_t)c->pos[t] * kvd * c->kv_elem;
            char *vc = values_at(c, j->layer, c->seq[t]) + (size_t)c->pos[t] * c->kv_elem;
            for (int i = 0; i < kvd; i++) {
                store_kv(c, kc + (size_t)i * c->kv_elem, k[i]);
                store_kv(c, vc + (size_t)i * c->n_ctx * c->kv_elem, v[i]);
            }
            break;
        }
        case ROWS_SWIGLU: {
            float *g = c->gate + (size_t)t * ff, *u = c->up + (size_t)t * ff;
            for (int i = 0; i < ff; i++) g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
            break;
        }
        }
    }
}

static void run_rows(nuri_context *c, rows_op op, int n, int layer, const float *norm) {
    rows_job j = {c, op, n, layer, norm};
    if (n >= 2) nuri_pool_run(c->pool, rows_worker, &j);
    else rows_worker(&j, 0, 1);
}

/* ---- Attention -------------------------------------------------------------------- */

/* A task is (block of consecutive entries of one sequence, KV head): the
 * queries of every head that shares the KV head (grouped-query attention),
 * for every token of the block, go through the keys and values together,
 * so each cached row is read once per task instead of once per head. A
 * block holds up to ATT_ROWS / group tokens. Threads take tasks from a
 * shared counter since causal blocks differ in cost. */
typedef struct {
    nuri_context *c;
    int layer, n;
    int n_blocks;       /* token blocks over all runs */
    int *block_start;   /* first entry of each block */
    int *block_len;
    _Atomic int next_task;
} attention_job;

static void attention_worker(void *arg, int ith, int nth) {
    attention_job *j = arg;
    (void)nth;
    nuri_context *c = j->c;
    const nuri_hparams *hp = &c->model->hp;
    int hd = hp->head_dim, group = hp->n_head / hp->n_head_kv;
    size_t q_dim = (size_t)hp->n_head * hd;
    size_t rows_cap = (size_t)att_rows_cap(hp);
    float *scores = c->scores + (size_t)ith * rows_cap * c->n_ctx;
    float *qg = c->att_q + (size_t)ith * rows_cap * hd, *og = c->att_out + (size_t)ith * rows_cap * hd;
    const nuri_kernel *kk = nuri_kernels_for(c->kv_type);
    int n_tasks = j->n_blocks * hp->n_head_kv;
    for (int task; (task = atomic_fetch_add(&j->next_task, 1)) < n_tasks;) {
        int b = task / hp->n_head_kv, g = task % hp->n_head_kv;
        int t0 = j->block_start[b], nt = j->block_len[b], rows = nt * group;
        int32_t seq = c->seq[t0];
        int len = c->pos[t0 + nt - 1] + 1; /* positions the block's last token sees */
        size_t kv_off = (size_t)g * hd;
        /* Row t*group + i of qg: the query of head g*group + i for token t0 + t. */
        for (int t = 0; t < nt; t++)
            memcpy(qg + (size_t)t * group * hd, c->q + (size_t)(t0 + t) * q_dim + kv_off * group,
                   sizeof(float) * (size_t)group * hd);
        /* scores[r][p] = k_p . q_r for every p < len */
        const char *keys = keys_at(c, j->layer, seq) + kv_off * c->kv_elem;
        kk->gemm(hd, keys, (size_t)c->kv_dim * c->kv_elem, len, qg, (size_t)hd * sizeof(float), rows, scores,
                 (size_t)len);
        for (int r = 0; r < rows; r++) {
            float *s = scores + (size_t)r * len;
            int seen = c->pos[t0 + r / group] + 1; /* causal: later positions get weight 0 */
            float max = -INFINITY;
            for (int p = 0; p < seen; p++) max = s[p] > max ? s[p] : max;
            float sum = 0.0f;
            for (int p = 0; p < seen; p++) {
                s[p] = expf(s[p] - max);
                sum += s[p];
            }
            float inv = 1.0f / sum;
            for (int p = 0; p < seen; p++) s[p] *= inv;
            for (int p = seen; p < len; p++) s[p] = 0.0f;
        }
        /* out[r][i] = sum_p s[r][p] v_p[i]: values are stored transposed, so
         * this is again rows (one per output dimension) times tokens. */
        const char *vt = values_at(c, j->layer, seq) + kv_off * c->n_ctx * c->kv_elem;
        kk->gemm(len, vt, (size_t)c->n_ctx * c->kv_elem, hd, scores, (size_t)len * sizeof(float), rows, og,
                 (size_t)hd);
        for (int t = 0; t < nt; t++)
            memcpy(c->att + (size_t)(t0 + t) * q_dim + kv_off * group, og + (size_t)t * group * hd,
                   sizeof(float) * (size_t)group * hd);
    }
}

static void attention(nuri_context *c, int layer, int n, int *block_start, int *block_len) {
    attention_job j = {c, layer, n, 0, block_start, block_len, 0};
    int max_tokens = att_block_tokens(&c->model->hp);
    for (int t = 0; t < n;) {
        int run = 1;
        while (t + run < n && c->seq[t + run] == c->seq[t] && run < max_tokens) run++;
        block_start[j.n_blocks] = t;
        block_len[j.n_blocks++] = run;
        t += run;
    }
    nuri_pool_run(c->pool, attention_worker, &j);
}

/* ---- The forward pass --------------------------------------------------------------- */

/* Runs n <= n_batch entries whose sequences and positions are c->seq and
 * c->pos, and writes the logits of the n_out entries listed in out_rows to
 * logits_out, in that order. scratch holds 2 * n ints. */
static void forward_batch(nuri_context *c, const nuri_token *tokens, int n, const int *out_rows,
                          int n_out, float *logits_out, int *scratch) {
    const nuri_model *m = c->model;
    const nuri_hparams *hp = &m->hp;
    int d = hp->n_embd, q_dim = hp->n_head * hp->head_dim;
    const nuri_type_traits *et = nuri_type_get(m->tok_embd.type);
    for (int t = 0; t < n; t++)
        et->to_float((const char *)m->tok_embd.data + (size_t)tokens[t] * m->tok_embd.row_bytes,
                     c->x + (size_t)t * d, d);

    run_rows(c, ROWS_NORM, n, 0, m->layers[0].attn_norm);
    for (int l = 0; l < hp->n_layer; l++) {
        const nuri_layer *L = &m->layers[l];
        matmuls(c, 3, (const nuri_weight *const[]){&L->wq, &L->wk, &L->wv}, c->xb, n, d,
                (float *const[]){c->q, c->k, c->v}, (const float *const[]){L->bq, L->bk, L->bv});
        run_rows(c, ROWS_ROPE_STORE, n, l, NULL);
        attention(c, l, n, scratch, scratch + n);
        matmuls(c, 1, (const nuri_weight *const[]){&L->wo}, c->att, n, q_dim, (float *const[]){c->xb},
                (const float *const[]){NULL});
        run_rows(c, ROWS_ADD_NORM, n, l, L->ffn_norm);

        matmuls(c, 2, (const nuri_weight *const[]){&L->w_gate, &L->w_up}, c->xb, n, d,
                (float *const[]){c->gate, c->up}, (const float *const[]){NULL, NULL});
        run_rows(c, ROWS_SWIGLU, n, l, NULL);
        matmuls(c, 1, (const nuri_weight *const[]){&L->w_down}, c->gate, n, hp->n_ff, (float *const[]){c->xb},
                (const float *const[]){NULL});
        /* The residual add, fused with the next layer's input norm. */
        run_rows(c, ROWS_ADD_NORM, n, l, l + 1 < hp->n_layer ? m->layers[l + 1].attn_norm : NULL);
    }

    if (n_out == 0) return;
    for (int r = 0; r < n_out; r++)
        rmsnorm(c->xb + (size_t)r * d, c->x + (size_t)out_rows[r] * d, m->output_norm, d, hp->rms_eps);
    matmuls(c, 1, (const nuri_weight *const[]){&m->output}, c->xb, n_out, d, (float *const[]){logits_out},
            (const float *const[]){NULL});
}

/* Grows the per-call arrays to hold n entries. */
static bool reserve_entries(nuri_context *c, size_t n) {
    if (n <= c->entries_cap) return true;
    int32_t *rows = nuri_malloc_array(n, sizeof *rows), *seq = nuri_malloc_array(n, sizeof *seq),
            *pos = nuri_malloc_array(n, sizeof *pos);
    if (!rows || !seq || !pos) {
        free(rows);
        free(seq);
        free(pos);
        return false;
    }
    free(c->logits_row);
    free(c->seq_buf);
    free(c->pos_buf);
    c->logits_row = rows;
    c->seq_buf = seq;
    c->pos_buf = pos;
    c->entries_cap = n;
    return true;
}

nuri_status nuri_decode(nuri_context *c, const nuri_batch *b, nuri_error *err) {
    if (!c || !b || (!b->tokens && b->n))
        return nuri_fail(err, NURI_ERR_INVALID_ARG, "nuri_decode: NULL argument");
    size_t n = b->n;
    if (n == 0) return nuri_fail(err, NURI_ERR_INVALID_ARG, "nuri_decode: empty batch");
    const nuri_hparams *hp = &c->model->hp;
    if (!reserve_entries(c, n)) return nuri_fail(err, NURI_ERR_NOMEM, "out of memory for a batch of %zu", n);

    /* Validate everything and resolve positions before touching the cache;
     * next[] is each sequence's length as the batch extends it. */
    int32_t *next = nuri_malloc_array((size_t)c->n_seq, sizeof *next);
    if (!next) return nuri_fail(err, NURI_ERR_NOMEM, "out of memory");
    memcpy(next, c->n_past, sizeof *next * (size_t)c->n_seq);
    size_t n_out = 0;
    nuri_status st = NURI_OK;
    for (size_t i = 0; i < n && st == NURI_OK; i++) {
        int32_t seq = b->seq_ids ? b->seq_ids[i] : 0;
        if (b->tokens[i] < 0 || b->tokens[i] >= hp->n_vocab)
            st = nuri_fail(err, NURI_ERR_INVALID_ARG, "token %d at batch index %zu is out of range",
                           b->tokens[i], i);
        else if (seq < 0 || seq >= c->n_seq)
            st = nuri_fail(err, NURI_ERR_INVALID_ARG, "sequence %d at batch index %zu is out of range "
                           "(the context has %d)", seq, i, c->n_seq);
        else if (b->positions && b->positions[i] != next[seq])
            st = nuri_fail(err, NURI_ERR_INVALID_ARG,
                           "position %d at batch index %zu does not continue sequence %d (expected %d)",
                           b->positions[i], i, seq, next[seq]);
        else if (next[seq] >= c->n_ctx)
            st = nuri_fail(err, NURI_ERR_CONTEXT_FULL,
                           "context full: sequence %d has no room after %d of %d positions", seq,
                           c->n_past[seq], c->n_ctx);
        if (st) break;
        c->seq_buf[i] = seq;
        c->pos_buf[i] = next[seq]++;
        bool want = b->logits ? b->logits[i] : i + 1 == n;
        c->logits_row[i] = want ? (int32_t)n_out++ : -1;
    }
    if (st) {
        free(next);
        c->n_entries = 0;
        c->n_logits = 0;
        return st;
    }
    if (n_out > c->logits_cap_rows) {
        float *nl = alloc_floats(n_out, (size_t)hp->n_vocab);
        if (!nl) {
            free(next);
            return nuri_fail(err, NURI_ERR_NOMEM, "out of memory for %zu rows of logits", n_out);
        }
        free(c->logits);
        c->logits = nl;
        c->logits_cap_rows = n_out;
    }

    /* out_rows, then forward_batch's scratch (2 ints per entry) */
    int *out_rows = nuri_malloc_array((size_t)c->n_batch * 3, sizeof *out_rows);
    if (!out_rows) {
        free(next);
        return nuri_fail(err, NURI_ERR_NOMEM, "out of memory");
    }
    for (size_t done = 0; done < n;) {
        size_t chunk = n - done < (size_t)c->n_batch ? n - done : (size_t)c->n_batch;
        int n_chunk_out = 0;
        int32_t first_row = -1;
        for (size_t i = 0; i < chunk; i++) {
            if (c->logits_row[done + i] < 0) continue;
            if (first_row < 0) first_row = c->logits_row[done + i];
            out_rows[n_chunk_out++] = (int)i;
        }
        c->seq = c->seq_buf + done;
        c->pos = c->pos_buf + done;
        float *dst = first_row >= 0 ? c->logits + (size_t)first_row * hp->n_vocab : NULL;
        forward_batch(c, b->tokens + done, (int)chunk, out_rows, n_chunk_out, dst, out_rows + c->n_batch);
        done += chunk;
    }
    free(out_rows);
    memcpy(c->n_past, next, sizeof *next * (size_t)c->n_seq);
    free(next);
    c->n_entries = n;
    c->n_logits = n_out;
    c->last_row = n_out ? n_out - 1 : 0;
    return NURI_OK;
}

nuri_status nuri_eval(nuri_context *c, const nuri_token *tokens, const int32_t *positions, size_t n,
                      bool all_logits, nuri_error *err) {
    if (!c) return nuri_fail(err, NURI_ERR_INVALID_ARG, "nuri_eval: NULL context");
    bool *want = NULL;
    if (all_logits && n) {
        want = nuri_malloc_array(n, sizeof *want);
        if (!want) return nuri_fail(err, NURI_ERR_NOMEM, "out of memory");
        for (size_t i = 0; i < n; i++) want[i] = true;
    }
    nuri_batch b = {n, tokens, NULL, positions, want};
    nuri_status st = nuri_decode(c, &b, err);
    free(want);
    return st;
}
