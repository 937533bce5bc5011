/* forward.c — contexts (KV cache + scratch) and the Llama forward pass.
 *
 * nuri_eval takes a batch of tokens at consecutive positions; every step
 * below works on the whole batch at once (n rows of activations), so the
 * matrix products reuse each weight row across the batch, and attention is
 * causal within the batch because token t only looks at positions <= its own. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/threadpool.h"
#include "core/util.h"
#include "model/model.h"
#include "quant/quant.h"

struct nuri_context {
    const nuri_model *model;
    int32_t n_ctx, n_batch, n_past;
    nuri_pool *pool;
    int32_t kv_dim;
    float *k_cache, *v_cache; /* [n_layer][n_ctx][kv_dim] */
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

    float *logits;  /* n_logits rows of n_vocab */
    size_t n_logits, logits_cap_rows;
};

/* ---- Contexts ----------------------------------------------------------------- */

nuri_context_params nuri_context_default_params(void) {
    nuri_context_params p = {0, 512, 0};
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
    if (p.n_ctx < 0 || p.n_batch < 0 || p.n_threads < 0)
        return nuri_fail(err, NURI_ERR_INVALID_ARG, "context sizes must not be negative");
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
    c->kv_dim = hp->n_head_kv * hp->head_dim;
    size_t q_dim = (size_t)hp->n_head * hp->head_dim;
    size_t nb = (size_t)p.n_batch;
    size_t widest = (size_t)hp->n_embd;
    if (q_dim > widest) widest = q_dim;
    if ((size_t)hp->n_ff > widest) widest = (size_t)hp->n_ff;
    c->pool = nuri_pool_create(p.n_threads);
    size_t cache_rows = (size_t)hp->n_layer * (size_t)p.n_ctx;
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
    if (!c->pool || !c->k_cache || !c->v_cache || !c->rope_freqs || !c->x || !c->xb || !c->q ||
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
int32_t nuri_context_n_past(const nuri_context *c) { return c->n_past; }

void nuri_context_truncate(nuri_context *c, int32_t n_past) {
    if (n_past < 0) n_past = 0;
    if (n_past < c->n_past) c->n_past = n_past;
}

const float *nuri_logits(const nuri_context *c) {
    if (c->n_logits == 0) return NULL;
    return c->logits + (c->n_logits - 1) * (size_t)c->model->hp.n_vocab;
}

const float *nuri_logits_ith(const nuri_context *c, size_t i) {
    if (i >= c->n_logits) return NULL;
    return c->logits + i * (size_t)c->model->hp.n_vocab;
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
    int layer, n, pos0;
} attention_job;

/* Each (token, head) pair is independent: threads take them round-robin. */
static void attention_worker(void *arg, int ith, int nth) {
    const attention_job *j = arg;
    nuri_context *c = j->c;
    const nuri_hparams *hp = &c->model->hp;
    int hd = hp->head_dim, group = hp->n_head / hp->n_head_kv;
    size_t q_dim = (size_t)hp->n_head * hd;
    const float *kc = c->k_cache + (size_t)j->layer * c->n_ctx * c->kv_dim;
    const float *vc = c->v_cache + (size_t)j->layer * c->n_ctx * c->kv_dim;
    float *scores = c->scores + (size_t)ith * c->n_ctx;
    float inv_sqrt = 1.0f / sqrtf((float)hd);
    for (int task = ith; task < j->n * hp->n_head; task += nth) {
        int t = task / hp->n_head, h = task % hp->n_head;
        int pos = j->pos0 + t;
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

/* Runs n <= n_batch tokens at positions pos0.. and writes logits for the
 * last token, or for all of them, to logits_out (NULL: no logits). */
static void forward_batch(nuri_context *c, const nuri_token *tokens, int n, int pos0,
                          bool all_logits, float *logits_out) {
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
        float *kc = c->k_cache + (size_t)l * c->n_ctx * kvd;
        float *vc = c->v_cache + (size_t)l * c->n_ctx * kvd;
        for (int t = 0; t < n; t++) {
            rope(c, c->q + (size_t)t * q_dim, hp->n_head, pos0 + t);
            rope(c, c->k + (size_t)t * kvd, hp->n_head_kv, pos0 + t);
            memcpy(kc + (size_t)(pos0 + t) * kvd, c->k + (size_t)t * kvd, (size_t)kvd * sizeof(float));
            memcpy(vc + (size_t)(pos0 + t) * kvd, c->v + (size_t)t * kvd, (size_t)kvd * sizeof(float));
        }
        attention_job aj = {c, l, n, pos0};
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

    if (!logits_out) return;
    int first = all_logits ? 0 : n - 1;
    for (int t = first; t < n; t++)
        rmsnorm(c->xb + (size_t)(t - first) * d, c->x + (size_t)t * d, m->output_norm, d, hp->rms_eps);
    matmul(c, &m->output, c->xb, n - first, logits_out, NULL);
}

nuri_status nuri_eval(nuri_context *c, const nuri_token *tokens, const int32_t *positions, size_t n,
                      bool all_logits, nuri_error *err) {
    if (!c || (!tokens && n)) return nuri_fail(err, NURI_ERR_INVALID_ARG, "nuri_eval: NULL argument");
    if (n == 0) return nuri_fail(err, NURI_ERR_INVALID_ARG, "nuri_eval: empty batch");
    const nuri_hparams *hp = &c->model->hp;
    if (n > (size_t)(c->n_ctx - c->n_past))
        return nuri_fail(err, NURI_ERR_CONTEXT_FULL,
                         "context full: %zu tokens do not fit after %d of %d positions", n, c->n_past,
                         c->n_ctx);
    for (size_t i = 0; i < n; i++) {
        if (tokens[i] < 0 || tokens[i] >= hp->n_vocab)
            return nuri_fail(err, NURI_ERR_INVALID_ARG, "token %d at batch index %zu is out of range",
                             tokens[i], i);
        if (positions && positions[i] != c->n_past + (int32_t)i)
            return nuri_fail(err, NURI_ERR_INVALID_ARG,
                             "position %d at batch index %zu does not continue the cache (expected %d)",
                             positions[i], i, c->n_past + (int32_t)i);
    }
    size_t rows = all_logits ? n : 1;
    if (rows > c->logits_cap_rows) {
        float *nl = alloc_floats(rows, (size_t)hp->n_vocab);
        if (!nl) return nuri_fail(err, NURI_ERR_NOMEM, "out of memory for %zu rows of logits", rows);
        free(c->logits);
        c->logits = nl;
        c->logits_cap_rows = rows;
    }
    for (size_t done = 0; done < n;) {
        size_t chunk = n - done < (size_t)c->n_batch ? n - done : (size_t)c->n_batch;
        bool last = done + chunk == n;
        float *dst = NULL;
        if (all_logits) dst = c->logits + done * (size_t)hp->n_vocab;
        else if (last) dst = c->logits;
        forward_batch(c, tokens + done, (int)chunk, c->n_past, all_logits, dst);
        c->n_past += (int32_t)chunk;
        done += chunk;
    }
    c->n_logits = rows;
    return NURI_OK;
}
