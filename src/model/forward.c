/* forward.c — contexts (KV cache + scratch) and the Llama forward pass.
 *
 * nuri_decode takes a batch of tokens, each with its sequence and position;
 * every step below works on the whole batch at once (n rows of activations),
 * so the matrix products reuse each weight row across the batch. All keys and
 * values of a batch are stored before attention runs, and a token only looks
 * at its own sequence's positions up to its own, so attention is causal
 * within the batch and sequences never see each other. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/threadpool.h"
#include "core/util.h"
#include "model/model.h"
#include "quant/quant.h"

struct nuri_context {
    const nuri_model *model;
    int32_t n_ctx, n_batch, n_seq;
    int32_t *n_past;          /* per sequence */
    nuri_pool *pool;
    int32_t kv_dim;
    float *k_cache, *v_cache; /* [n_layer][n_seq][n_ctx][kv_dim] */
    float *rope_freqs;        /* n_rot/2 angular frequencies per position */

    /* Scratch for up to n_batch tokens. */
    float *x;       /* residual stream, n x n_embd */
    float *xb;      /* normed input of a sub-layer, n x max(n_embd, q_dim) */
    float *q;       /* n x q_dim */
    float *k, *v;   /* n x kv_dim */
    float *att;     /* attention output, n x q_dim */
    float *gate;    /* n x n_ff */
    float *up;      /* n x n_ff */
    float *scores;  /* per thread: n_ctx */
    void *xq;       /* activations converted to a weight's vec_dot_type */
    size_t xq_row_cap;

    /* The batch being evaluated (one chunk of at most n_batch entries). */
    const int32_t *seq, *pos;

    float *logits;  /* n_logits rows of n_vocab */
    size_t n_logits, logits_cap_rows;
    int32_t *logits_row; /* per entry of the last call: its row, or -1 */
    size_t n_entries, entries_cap;
    int32_t *seq_buf, *pos_buf; /* resolved sequences and positions of a call */
    size_t last_row;     /* row nuri_logits returns */
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
    free(c->xq);
    free(c->logits);
    free(c->logits_row);
    free(c->seq_buf);
    free(c->pos_buf);
    free(c->n_past);
    free(c);
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
    size_t q_dim = (size_t)hp->n_head * hp->head_dim;
    size_t nb = (size_t)p.n_batch;
    size_t widest = (size_t)hp->n_embd;
    if (q_dim > widest) widest = q_dim;
    if ((size_t)hp->n_ff > widest) widest = (size_t)hp->n_ff;
    c->pool = nuri_pool_create(p.n_threads);
    size_t cache_rows;
    if (__builtin_mul_overflow((size_t)hp->n_layer * (size_t)p.n_seq, (size_t)p.n_ctx, &cache_rows))
        cache_rows = SIZE_MAX;
    c->k_cache = alloc_floats(cache_rows, (size_t)c->kv_dim);
    c->v_cache = alloc_floats(cache_rows, (size_t)c->kv_dim);
    c->rope_freqs = alloc_floats((size_t)hp->n_rot / 2, 1);
    c->x = alloc_floats(nb, (size_t)hp->n_embd);
    c->xb = alloc_floats(nb, widest);
    c->q = alloc_floats(nb, q_dim);
    c->k = alloc_floats(nb, (size_t)c->kv_dim);
    c->v = alloc_floats(nb, (size_t)c->kv_dim);
    c->att = alloc_floats(nb, q_dim);
    c->gate = alloc_floats(nb, (size_t)hp->n_ff);
    c->up = alloc_floats(nb, (size_t)hp->n_ff);
    c->scores = c->pool ? alloc_floats((size_t)nuri_pool_size(c->pool), (size_t)p.n_ctx) : NULL;
    /* Any activation type takes at most 4 bytes per element plus block headers. */
    c->xq_row_cap = widest * 4 + 64;
    c->xq = nuri_malloc_array(nb, c->xq_row_cap);
    if (!c->n_past || !c->pool || !c->k_cache || !c->v_cache || !c->rope_freqs || !c->x || !c->xb || !c->q ||
        !c->k || !c->v || !c->att || !c->gate || !c->up || !c->scores || !c->xq) {
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

/* The start of sequence seq's keys (or values) in layer l. */
static float *cache_at(const nuri_context *c, float *cache, int l, int32_t seq) {
    return cache + ((size_t)l * c->n_seq + (size_t)seq) * c->n_ctx * c->kv_dim;
}

/* ---- Matrix products ---------------------------------------------------------- */

typedef struct {
    const nuri_weight *w;
    const void *xq; /* n rows of activations in w's vec_dot_type */
    size_t xq_row_bytes;
    int n;
    float *y; /* n x w->n_rows */
    const float *bias;
} matmul_job;

static void matmul_worker(void *arg, int ith, int nth) {
    const matmul_job *j = arg;
    const nuri_weight *w = j->w;
    nuri_vec_dot_fn dot = nuri_type_get(w->type)->vec_dot;
    int64_t per = (w->n_rows + nth - 1) / nth;
    int64_t r0 = per * ith, r1 = r0 + per < w->n_rows ? r0 + per : w->n_rows;
    for (int64_t r = r0; r < r1; r++) {
        const void *row = (const char *)w->data + (size_t)r * w->row_bytes;
        float b = j->bias ? j->bias[r] : 0.0f;
        for (int t = 0; t < j->n; t++) {
            float s;
            dot(w->n_cols, &s, row, (const char *)j->xq + (size_t)t * j->xq_row_bytes);
            j->y[(size_t)t * w->n_rows + r] = s + b;
        }
    }
}

/* y[t] = W x[t] (+ bias) for t < n; x rows have w->n_cols floats, packed. */
static void matmul(nuri_context *c, const nuri_weight *w, const float *x, int n, float *y,
                   const float *bias) {
    const nuri_type_traits *tt = nuri_type_get(w->type);
    uint32_t act_type = tt->vec_dot_type;
    matmul_job j = {w, x, (size_t)w->n_cols * sizeof(float), n, y, bias};
    if (act_type != NURI_TYPE_F32) {
        nuri_from_float_fn quantize = nuri_type_get(act_type)->from_float;
        size_t row_bytes = nuri_row_size(act_type, w->n_cols);
        for (int t = 0; t < n; t++)
            quantize(x + (size_t)t * w->n_cols, (char *)c->xq + (size_t)t * row_bytes, w->n_cols);
        j.xq = c->xq;
        j.xq_row_bytes = row_bytes;
    }
    nuri_pool_run(c->pool, matmul_worker, &j);
}

/* ---- Element-wise steps --------------------------------------------------------- */

static void rmsnorm(float *out, const float *x, const float *weight, int n, float eps) {
    double ss = 0.0;
    for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
    float scale = (float)(1.0 / sqrt(ss / n + eps));
    for (int i = 0; i < n; i++) out[i] = x[i] * scale * weight[i];
}

static void rope(const nuri_context *c, float *vec, int n_heads, int pos) {
    const nuri_hparams *hp = &c->model->hp;
    int half = hp->n_rot / 2;
    for (int i = 0; i < half; i++) {
        double theta = (double)pos * c->rope_freqs[i];
        float cs = (float)cos(theta), sn = (float)sin(theta);
        for (int h = 0; h < n_heads; h++) {
            float *v = vec + (size_t)h * hp->head_dim;
            int a = hp->rope_kind == NURI_ROPE_NORM ? 2 * i : i;
            int b = hp->rope_kind == NURI_ROPE_NORM ? 2 * i + 1 : i + half;
            float x0 = v[a], x1 = v[b];
            v[a] = x0 * cs - x1 * sn;
            v[b] = x0 * sn + x1 * cs;
        }
    }
}

/* ---- Attention -------------------------------------------------------------------- */

typedef struct {
    nuri_context *c;
    int layer, n;
} attention_job;

/* Each (token, head) pair is independent: threads take them round-robin. */
static void attention_worker(void *arg, int ith, int nth) {
    const attention_job *j = arg;
    nuri_context *c = j->c;
    const nuri_hparams *hp = &c->model->hp;
    int hd = hp->head_dim, group = hp->n_head / hp->n_head_kv;
    size_t q_dim = (size_t)hp->n_head * hd;
    float *scores = c->scores + (size_t)ith * c->n_ctx;
    float inv_sqrt = 1.0f / sqrtf((float)hd);
    for (int task = ith; task < j->n * hp->n_head; task += nth) {
        int t = task / hp->n_head, h = task % hp->n_head;
        int pos = c->pos[t];
        const float *kc = cache_at(c, c->k_cache, j->layer, c->seq[t]);
        const float *vc = cache_at(c, c->v_cache, j->layer, c->seq[t]);
        const float *q = c->q + (size_t)t * q_dim + (size_t)h * hd;
        size_t kv_off = (size_t)(h / group) * hd;
        float max = -INFINITY;
        for (int p = 0; p <= pos; p++) {
            const float *k = kc + (size_t)p * c->kv_dim + kv_off;
            float s = 0.0f;
            for (int i = 0; i < hd; i++) s += q[i] * k[i];
            s *= inv_sqrt;
            scores[p] = s;
            if (s > max) max = s;
        }
        float sum = 0.0f;
        for (int p = 0; p <= pos; p++) {
            scores[p] = expf(scores[p] - max);
            sum += scores[p];
        }
        float *out = c->att + (size_t)t * q_dim + (size_t)h * hd;
        memset(out, 0, (size_t)hd * sizeof(float));
        for (int p = 0; p <= pos; p++) {
            const float *v = vc + (size_t)p * c->kv_dim + kv_off;
            float a = scores[p] / sum;
            for (int i = 0; i < hd; i++) out[i] += a * v[i];
        }
    }
}

/* ---- The forward pass --------------------------------------------------------------- */

/* Runs n <= n_batch entries whose sequences and positions are c->seq and
 * c->pos, and writes the logits of the n_out entries listed in out_rows to
 * logits_out, in that order. */
static void forward_batch(nuri_context *c, const nuri_token *tokens, int n, const int *out_rows,
                          int n_out, float *logits_out) {
    const nuri_model *m = c->model;
    const nuri_hparams *hp = &m->hp;
    int d = hp->n_embd, q_dim = hp->n_head * hp->head_dim, kvd = c->kv_dim, ff = hp->n_ff;
    const nuri_type_traits *et = nuri_type_get(m->tok_embd.type);
    for (int t = 0; t < n; t++)
        et->to_float((const char *)m->tok_embd.data + (size_t)tokens[t] * m->tok_embd.row_bytes,
                     c->x + (size_t)t * d, d);

    for (int l = 0; l < hp->n_layer; l++) {
        const nuri_layer *L = &m->layers[l];
        for (int t = 0; t < n; t++)
            rmsnorm(c->xb + (size_t)t * d, c->x + (size_t)t * d, L->attn_norm, d, hp->rms_eps);
        matmul(c, &L->wq, c->xb, n, c->q, L->bq);
        matmul(c, &L->wk, c->xb, n, c->k, L->bk);
        matmul(c, &L->wv, c->xb, n, c->v, L->bv);
        for (int t = 0; t < n; t++) {
            rope(c, c->q + (size_t)t * q_dim, hp->n_head, c->pos[t]);
            rope(c, c->k + (size_t)t * kvd, hp->n_head_kv, c->pos[t]);
            float *kc = cache_at(c, c->k_cache, l, c->seq[t]), *vc = cache_at(c, c->v_cache, l, c->seq[t]);
            memcpy(kc + (size_t)c->pos[t] * kvd, c->k + (size_t)t * kvd, (size_t)kvd * sizeof(float));
            memcpy(vc + (size_t)c->pos[t] * kvd, c->v + (size_t)t * kvd, (size_t)kvd * sizeof(float));
        }
        attention_job aj = {c, l, n};
        nuri_pool_run(c->pool, attention_worker, &aj);
        matmul(c, &L->wo, c->att, n, c->xb, NULL);
        for (size_t i = 0; i < (size_t)n * d; i++) c->x[i] += c->xb[i];

        for (int t = 0; t < n; t++)
            rmsnorm(c->xb + (size_t)t * d, c->x + (size_t)t * d, L->ffn_norm, d, hp->rms_eps);
        matmul(c, &L->w_gate, c->xb, n, c->gate, NULL);
        matmul(c, &L->w_up, c->xb, n, c->up, NULL);
        for (size_t i = 0; i < (size_t)n * ff; i++) {
            float g = c->gate[i];
            c->gate[i] = g / (1.0f + expf(-g)) * c->up[i]; /* SiLU(gate) * up */
        }
        matmul(c, &L->w_down, c->gate, n, c->xb, NULL);
        for (size_t i = 0; i < (size_t)n * d; i++) c->x[i] += c->xb[i];
    }

    if (n_out == 0) return;
    for (int r = 0; r < n_out; r++)
        rmsnorm(c->xb + (size_t)r * d, c->x + (size_t)out_rows[r] * d, m->output_norm, d, hp->rms_eps);
    matmul(c, &m->output, c->xb, n_out, logits_out, NULL);
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

    int *out_rows = nuri_malloc_array((size_t)c->n_batch, sizeof *out_rows);
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
        forward_batch(c, b->tokens + done, (int)chunk, out_rows, n_chunk_out, dst);
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
