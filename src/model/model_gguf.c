/* model_gguf.c — builds a model from a GGUF file's metadata and tensors
 * (architectures "llama", which Mistral files also use, and "qwen2"). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "model/model.h"
#include "quant/quant.h"

/* Reads "{arch}.{suffix}" as u32/f32. */
static nuri_status arch_u32(const gguf_file *f, const char *arch, const char *suffix,
                            bool required, uint32_t *out, nuri_error *err) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    return gguf_get_u32(f, key, required, out, err);
}

static nuri_status arch_f32(const gguf_file *f, const char *arch, const char *suffix,
                            bool required, float *out, nuri_error *err) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    return gguf_get_f32(f, key, required, out, err);
}

static int32_t clamp_i32(uint32_t v) { return v > INT32_MAX ? INT32_MAX : (int32_t)v; }

static nuri_status read_hparams(const gguf_file *f, const char *arch, nuri_hparams *hp,
                                nuri_error *err) {
    uint32_t n_embd = 0, n_layer = 0, n_ff = 0, n_head = 0, n_ctx = 0;
    nuri_status st;
    if ((st = arch_u32(f, arch, "embedding_length", true, &n_embd, err)) ||
        (st = arch_u32(f, arch, "block_count", true, &n_layer, err)) ||
        (st = arch_u32(f, arch, "feed_forward_length", true, &n_ff, err)) ||
        (st = arch_u32(f, arch, "attention.head_count", true, &n_head, err)) ||
        (st = arch_u32(f, arch, "context_length", true, &n_ctx, err)))
        return st;
    uint32_t n_head_kv = n_head;
    if ((st = arch_u32(f, arch, "attention.head_count_kv", false, &n_head_kv, err))) return st;
    if (n_head == 0) return nuri_fail(err, NURI_ERR_FORMAT, "%s.attention.head_count is 0", arch);
    uint32_t head_dim = n_embd / n_head;
    if ((st = arch_u32(f, arch, "attention.key_length", false, &head_dim, err))) return st;
    uint32_t v_dim = head_dim;
    if ((st = arch_u32(f, arch, "attention.value_length", false, &v_dim, err))) return st;
    if (v_dim != head_dim)
        return nuri_fail(err, NURI_ERR_UNSUPPORTED,
                         "%s.attention.value_length %u differs from key_length %u", arch, v_dim,
                         head_dim);
    uint32_t n_rot = head_dim;
    if ((st = arch_u32(f, arch, "rope.dimension_count", false, &n_rot, err))) return st;
    float eps = 1e-5f, base = 10000.0f, scale_factor = 0.0f;
    if ((st = arch_f32(f, arch, "attention.layer_norm_rms_epsilon", false, &eps, err)) ||
        (st = arch_f32(f, arch, "rope.freq_base", false, &base, err)))
        return st;

    hp->rope_freq_scale = 1.0f;
    char key[128];
    snprintf(key, sizeof key, "%s.rope.scaling.type", arch);
    gguf_str scaling = {0};
    if ((st = gguf_get_str(f, key, false, &scaling, err))) return st;
    if (scaling.data && !gguf_str_eq(scaling, "none")) {
        if ((st = arch_f32(f, arch, "rope.scaling.factor", false, &scale_factor, err))) return st;
        if (gguf_str_eq(scaling, "linear")) {
            if (scale_factor > 0.0f) hp->rope_freq_scale = 1.0f / scale_factor;
        } else if (!gguf_str_eq(scaling, "llama3")) { /* llama3: see llama3_rope_factors */
            return nuri_fail(err, NURI_ERR_UNSUPPORTED, "%s = '%.*s' is not supported", key,
                             (int)(scaling.len > 32 ? 32 : scaling.len), scaling.data);
        }
    }
    snprintf(key, sizeof key, "%s.rope.scale_linear", arch);
    float scale_linear = 0.0f;
    if ((st = gguf_get_f32(f, key, false, &scale_linear, err))) return st;
    if (scale_linear > 0.0f) hp->rope_freq_scale = 1.0f / scale_linear;

    hp->n_embd = clamp_i32(n_embd);
    hp->n_layer = clamp_i32(n_layer);
    hp->n_ff = clamp_i32(n_ff);
    hp->n_head = clamp_i32(n_head);
    hp->n_head_kv = clamp_i32(n_head_kv);
    hp->head_dim = clamp_i32(head_dim);
    hp->n_rot = clamp_i32(n_rot);
    hp->n_ctx_train = clamp_i32(n_ctx);
    hp->rms_eps = eps;
    hp->rope_base = base;
    return NURI_OK;
}

/* Llama 3.1/3.2 frequency scaling described by metadata instead of a
 * rope_freqs tensor: wavelengths shorter than original_context /
 * high_freq_factor keep their frequency, longer than original_context /
 * low_freq_factor are divided by factor, and those between blend the two. */
static nuri_status llama3_rope_factors(nuri_model *m, const gguf_file *f, const char *arch,
                                       nuri_error *err) {
    char key[128];
    snprintf(key, sizeof key, "%s.rope.scaling.type", arch);
    gguf_str type = {0};
    nuri_status st = gguf_get_str(f, key, false, &type, err);
    if (st || !type.data || !gguf_str_eq(type, "llama3")) return st;
    float factor = 8.0f, low = 1.0f, high = 4.0f;
    uint32_t original_ctx = 8192;
    if ((st = arch_f32(f, arch, "rope.scaling.factor", false, &factor, err)) ||
        (st = arch_f32(f, arch, "rope.scaling.low_freq_factor", false, &low, err)) ||
        (st = arch_f32(f, arch, "rope.scaling.high_freq_factor", false, &high, err)) ||
        (st = arch_u32(f, arch, "rope.scaling.original_context_length", false, &original_ctx, err)))
        return st;
    if (!(factor >= 1.0f && factor < 1e6f) || !(low > 0.0f) || !(high > low) || original_ctx == 0)
        return nuri_fail(err, NURI_ERR_FORMAT,
                         "%s.rope.scaling: llama3 factors out of range (factor %g, low %g, high %g)",
                         arch, factor, low, high);
    const nuri_hparams *hp = &m->hp;
    int half = hp->n_rot / 2;
    m->rope_inv_factors = nuri_malloc_array((size_t)half, sizeof(float));
    if (!m->rope_inv_factors) return nuri_fail(err, NURI_ERR_NOMEM, "out of memory");
    const double pi = 3.14159265358979323846;
    double low_wavelen = original_ctx / (double)low, high_wavelen = original_ctx / (double)high;
    for (int i = 0; i < half; i++) {
        double freq = pow((double)hp->rope_base, -2.0 * i / hp->n_rot);
        double wavelen = 2.0 * pi / freq, scaled;
        if (wavelen < high_wavelen) {
            scaled = freq;
        } else if (wavelen > low_wavelen) {
            scaled = freq / factor;
        } else {
            double smooth = (original_ctx / wavelen - low) / (high - low);
            scaled = (1.0 - smooth) * freq / factor + smooth * freq;
        }
        m->rope_inv_factors[i] = (float)(freq / scaled);
    }
    return NURI_OK;
}

/* Looks a tensor up and checks its type and shape: n_cols x n_rows
 * (n_rows 1 for vectors). Absent optional tensors leave w zeroed. */
static nuri_status get_weight(const gguf_file *f, const char *name, int64_t n_cols, int64_t n_rows,
                              bool required, nuri_weight *w, nuri_error *err) {
    memset(w, 0, sizeof *w);
    const gguf_tensor *t = gguf_find_tensor(f, name);
    if (!t) {
        if (!required) return NURI_OK;
        return nuri_fail(err, NURI_ERR_FORMAT, "tensor '%s' is missing", name);
    }
    bool shape_ok = t->ne[0] == n_cols && t->ne[1] == n_rows && t->ne[2] == 1 && t->ne[3] == 1;
    if (!shape_ok)
        return nuri_fail(err, NURI_ERR_FORMAT,
                         "tensor '%s' has shape [%lld, %lld, %lld, %lld], expected [%lld, %lld]",
                         name, (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2],
                         (long long)t->ne[3], (long long)n_cols, (long long)n_rows);
    const nuri_type_traits *tt = nuri_type_get(t->type);
    if (!tt || !tt->vec_dot || !tt->to_float)
        return nuri_fail(err, NURI_ERR_UNSUPPORTED, "tensor '%s' has unsupported type %s", name,
                         nuri_type_name(t->type));
    w->type = t->type;
    w->n_cols = n_cols;
    w->n_rows = n_rows;
    w->row_bytes = nuri_row_size(t->type, n_cols);
    w->data = t->data;
    return NURI_OK;
}

static nuri_status get_vector(const gguf_file *f, const char *name, int64_t n, bool required,
                              float **out, nuri_error *err) {
    nuri_weight w;
    nuri_status st = get_weight(f, name, n, 1, required, &w, err);
    if (st || !w.data) return st;
    return nuri_weight_to_floats(&w, name, out, err);
}

static nuri_status load_tensors(nuri_model *m, const gguf_file *f, const char *arch,
                                bool has_qkv_bias, nuri_error *err) {
    const nuri_hparams *hp = &m->hp;
    int64_t n_embd = hp->n_embd, q_dim = (int64_t)hp->n_head * hp->head_dim;
    int64_t kv_dim = (int64_t)hp->n_head_kv * hp->head_dim;
    const gguf_tensor *embd = gguf_find_tensor(f, "token_embd.weight");
    if (!embd) return nuri_fail(err, NURI_ERR_FORMAT, "tensor 'token_embd.weight' is missing");
    m->hp.n_vocab = embd->ne[1] > INT32_MAX ? INT32_MAX : (int32_t)embd->ne[1];
    nuri_status st = nuri_hparams_validate(&m->hp, err);
    if (st) return st;
    if ((st = get_weight(f, "token_embd.weight", n_embd, hp->n_vocab, true, &m->tok_embd, err)) ||
        (st = get_vector(f, "output_norm.weight", n_embd, true, &m->output_norm, err)) ||
        (st = get_weight(f, "output.weight", n_embd, hp->n_vocab, false, &m->output, err)))
        return st;
    if (!m->output.data) m->output = m->tok_embd; /* tied embeddings */

    const gguf_tensor *rf = gguf_find_tensor(f, "rope_freqs.weight");
    if (rf) {
        nuri_weight w;
        if ((st = get_weight(f, "rope_freqs.weight", hp->n_rot / 2, 1, true, &w, err)) ||
            (st = nuri_weight_to_floats(&w, "rope_freqs.weight", &m->rope_inv_factors, err)))
            return st;
        for (int i = 0; i < hp->n_rot / 2; i++)
            if (!(m->rope_inv_factors[i] > 0.0f && m->rope_inv_factors[i] < 1e30f))
                return nuri_fail(err, NURI_ERR_FORMAT, "tensor 'rope_freqs.weight' holds %g at %d",
                                 m->rope_inv_factors[i], i);
    } else if ((st = llama3_rope_factors(m, f, arch, err))) {
        return st;
    }

    m->layers = nuri_calloc_array((size_t)hp->n_layer, sizeof *m->layers);
    if (!m->layers) return nuri_fail(err, NURI_ERR_NOMEM, "out of memory");
    char name[96];
#define NAME(suffix) (snprintf(name, sizeof name, "blk.%d." suffix, l), name)
    for (int l = 0; l < hp->n_layer; l++) {
        nuri_layer *L = &m->layers[l];
        if ((st = get_vector(f, NAME("attn_norm.weight"), n_embd, true, &L->attn_norm, err)) ||
            (st = get_weight(f, NAME("attn_q.weight"), n_embd, q_dim, true, &L->wq, err)) ||
            (st = get_weight(f, NAME("attn_k.weight"), n_embd, kv_dim, true, &L->wk, err)) ||
            (st = get_weight(f, NAME("attn_v.weight"), n_embd, kv_dim, true, &L->wv, err)) ||
            (st = get_weight(f, NAME("attn_output.weight"), q_dim, n_embd, true, &L->wo, err)) ||
            (st = get_vector(f, NAME("ffn_norm.weight"), n_embd, true, &L->ffn_norm, err)) ||
            (st = get_weight(f, NAME("ffn_gate.weight"), n_embd, hp->n_ff, true, &L->w_gate, err)) ||
            (st = get_weight(f, NAME("ffn_up.weight"), n_embd, hp->n_ff, true, &L->w_up, err)) ||
            (st = get_weight(f, NAME("ffn_down.weight"), hp->n_ff, n_embd, true, &L->w_down, err)))
            return st;
        if (has_qkv_bias &&
            ((st = get_vector(f, NAME("attn_q.bias"), q_dim, true, &L->bq, err)) ||
             (st = get_vector(f, NAME("attn_k.bias"), kv_dim, true, &L->bk, err)) ||
             (st = get_vector(f, NAME("attn_v.bias"), kv_dim, true, &L->bv, err))))
            return st;
    }
#undef NAME
    return NURI_OK;
}

nuri_status nuri_model_load_gguf(const char *path, nuri_model **out, nuri_error *err) {
    *out = NULL;
    nuri_model *m = calloc(1, sizeof *m);
    if (!m) return nuri_fail(err, NURI_ERR_NOMEM, "out of memory");
    nuri_status st = gguf_open(path, &m->gguf, err);
    if (st) goto fail;
    const gguf_file *f = m->gguf;

    gguf_str arch_s;
    if ((st = gguf_get_str(f, "general.architecture", true, &arch_s, err))) goto fail;
    char arch[32];
    bool is_llama = gguf_str_eq(arch_s, "llama"), is_qwen2 = gguf_str_eq(arch_s, "qwen2");
    if (!is_llama && !is_qwen2) {
        st = nuri_fail(err, NURI_ERR_UNSUPPORTED,
                       "architecture '%.*s' is not supported (nuri runs llama, mistral and qwen2)",
                       (int)(arch_s.len > 64 ? 64 : arch_s.len), arch_s.data);
        goto fail;
    }
    snprintf(arch, sizeof arch, "%s", is_llama ? "llama" : "qwen2");
    if ((st = read_hparams(f, arch, &m->hp, err))) goto fail;
    m->hp.rope_kind = is_qwen2 ? NURI_ROPE_NEOX : NURI_ROPE_NORM;
    if ((st = load_tensors(m, f, arch, is_qwen2, err))) goto fail;
    if ((st = nuri_vocab_from_gguf(f, &m->vocab, err))) goto fail;
    if (nuri_vocab_n_tokens(m->vocab) > m->hp.n_vocab) {
        st = nuri_fail(err, NURI_ERR_FORMAT, "the vocabulary has %d tokens but the embedding only %d rows",
                       nuri_vocab_n_tokens(m->vocab), m->hp.n_vocab);
        goto fail;
    }
    nuri_model_describe(m);
    *out = m;
    return NURI_OK;
fail:
    nuri_model_free(m);
    return st;
}
