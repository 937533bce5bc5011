/* model.c — loading dispatch, model-level accessors, and the public
 * tokenizer entry points (which forward to the model's vocabulary). */
#include "model/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "core/util.h"
#include "quant/quant.h"

/* ---- Loading -------------------------------------------------------------- */

nuri_status nuri_model_load(const char *path, const nuri_model_params *params,
                            nuri_model **out, nuri_error *err) {
    if (!path || !out) return nuri_fail(err, NURI_ERR_INVALID_ARG, "nuri_model_load: NULL argument");
    *out = NULL;
    FILE *fp = fopen(path, "rb");
    if (!fp) return nuri_fail(err, NURI_ERR_IO, "%s: cannot open file", path);
    char magic[4] = {0};
    size_t got = fread(magic, 1, 4, fp);
    fclose(fp);
    if (got == 4 && memcmp(magic, "GGUF", 4) == 0) return nuri_model_load_gguf(path, out, err);
    return nuri_model_load_llama2c(path, params ? params->tokenizer_path : NULL, out, err);
}

void nuri_model_free(nuri_model *m) {
    if (!m) return;
    if (m->layers) {
        for (int32_t l = 0; l < m->hp.n_layer; l++) {
            nuri_layer *L = &m->layers[l];
            free(L->attn_norm);
            free(L->ffn_norm);
            free(L->bq);
            free(L->bk);
            free(L->bv);
        }
        free(m->layers);
    }
    free(m->output_norm);
    free(m->rope_inv_factors);
    nuri_vocab_free(m->vocab);
    gguf_close(m->gguf);
    if (m->map) munmap(m->map, m->map_size);
    free(m);
}

int32_t nuri_model_n_vocab(const nuri_model *m) { return m->hp.n_vocab; }
int32_t nuri_model_n_ctx_train(const nuri_model *m) { return m->hp.n_ctx_train; }
const char *nuri_model_desc(const nuri_model *m) { return m->desc; }

nuri_status nuri_weight_to_floats(const nuri_weight *w, const char *name, float **out,
                                  nuri_error *err) {
    const nuri_type_traits *tt = nuri_type_get(w->type);
    if (!tt || !tt->to_float)
        return nuri_fail(err, NURI_ERR_UNSUPPORTED, "tensor '%s' has unsupported type %s", name,
                         nuri_type_name(w->type));
    uint64_t n;
    if (!nuri_mul_u64((uint64_t)w->n_cols, (uint64_t)w->n_rows, &n))
        return nuri_fail(err, NURI_ERR_FORMAT, "tensor '%s' is too large", name);
    float *f = nuri_malloc_array(n, sizeof(float));
    if (!f) return nuri_fail(err, NURI_ERR_NOMEM, "out of memory converting '%s'", name);
    for (int64_t r = 0; r < w->n_rows; r++)
        tt->to_float((const char *)w->data + (size_t)r * w->row_bytes, f + r * w->n_cols, w->n_cols);
    *out = f;
    return NURI_OK;
}

nuri_status nuri_hparams_validate(const nuri_hparams *hp, nuri_error *err) {
    /* Generous bounds: far above any released Llama, low enough that sizes
     * derived from them cannot overflow. */
    if (hp->n_vocab < 1 || hp->n_vocab > (1 << 24))
        return nuri_fail(err, NURI_ERR_FORMAT, "vocabulary size %d out of range", hp->n_vocab);
    if (hp->n_embd < 1 || hp->n_embd > (1 << 17))
        return nuri_fail(err, NURI_ERR_FORMAT, "embedding length %d out of range", hp->n_embd);
    if (hp->n_layer < 1 || hp->n_layer > 1024)
        return nuri_fail(err, NURI_ERR_FORMAT, "block count %d out of range", hp->n_layer);
    if (hp->n_head < 1 || hp->n_head > 4096)
        return nuri_fail(err, NURI_ERR_FORMAT, "head count %d out of range", hp->n_head);
    if (hp->n_head_kv < 1 || hp->n_head_kv > hp->n_head || hp->n_head % hp->n_head_kv != 0)
        return nuri_fail(err, NURI_ERR_FORMAT,
                         "KV head count %d must divide the head count %d", hp->n_head_kv, hp->n_head);
    if (hp->head_dim < 2 || hp->head_dim > 4096 || hp->head_dim % 2 != 0)
        return nuri_fail(err, NURI_ERR_FORMAT, "head size %d must be even and at most 4096",
                         hp->head_dim);
    if (hp->n_rot < 2 || hp->n_rot > hp->head_dim || hp->n_rot % 2 != 0)
        return nuri_fail(err, NURI_ERR_FORMAT, "rope dimension count %d out of range", hp->n_rot);
    if (hp->n_ff < 1 || hp->n_ff > (1 << 20))
        return nuri_fail(err, NURI_ERR_FORMAT, "feed-forward length %d out of range", hp->n_ff);
    if (hp->n_ctx_train < 1)
        return nuri_fail(err, NURI_ERR_FORMAT, "context length %d out of range", hp->n_ctx_train);
    if (!(hp->rms_eps > 0.0f && hp->rms_eps < 1.0f))
        return nuri_fail(err, NURI_ERR_FORMAT, "RMS norm epsilon %g out of range", hp->rms_eps);
    if (!(hp->rope_base > 1.0f && hp->rope_base < 1e12f))
        return nuri_fail(err, NURI_ERR_FORMAT, "rope frequency base %g out of range", hp->rope_base);
    if (!(hp->rope_freq_scale > 0.0f && hp->rope_freq_scale <= 1e3f))
        return nuri_fail(err, NURI_ERR_FORMAT, "rope frequency scale %g out of range",
                         hp->rope_freq_scale);
    return NURI_OK;
}

void nuri_model_describe(nuri_model *m) {
    const nuri_hparams *hp = &m->hp;
    snprintf(m->desc, sizeof m->desc,
             "llama: %d layers, dim %d, %d heads (%d KV), ff %d, vocab %d, ctx %d, weights %s",
             hp->n_layer, hp->n_embd, hp->n_head, hp->n_head_kv, hp->n_ff, hp->n_vocab,
             hp->n_ctx_train, m->layers ? nuri_type_name(m->layers[0].wq.type) : "?");
}

/* ---- Tokenizer entry points ------------------------------------------------ */

nuri_status nuri_tokenize(const nuri_model *m, const char *text, size_t len, unsigned flags,
                          nuri_token **out, size_t *n_out, nuri_error *err) {
    if (!m || (!text && len) || !out || !n_out)
        return nuri_fail(err, NURI_ERR_INVALID_ARG, "nuri_tokenize: NULL argument");
    return nuri_vocab_tokenize(m->vocab, text ? text : "", len, (flags & NURI_TOKENIZE_ADD_BOS) != 0,
                               (flags & NURI_TOKENIZE_PARSE_SPECIAL) != 0, out, n_out, err);
}

size_t nuri_token_to_piece(const nuri_model *m, nuri_token t, bool render_special, char *buf,
                           size_t cap) {
    return nuri_vocab_token_to_piece(m->vocab, t, render_special, buf, cap);
}

nuri_token nuri_token_bos(const nuri_model *m) { return nuri_vocab_bos(m->vocab); }
nuri_token nuri_token_eos(const nuri_model *m) { return nuri_vocab_eos(m->vocab); }
bool nuri_token_is_eog(const nuri_model *m, nuri_token t) { return nuri_vocab_is_eog(m->vocab, t); }

/* Length of the UTF-8 sequence a lead byte starts; 0 for continuation or
 * invalid lead bytes. */
static size_t utf8_seq_len(unsigned char c) {
    if (c < 0x80) return 1;
    if (c >= 0xc2 && c <= 0xdf) return 2;
    if (c >= 0xe0 && c <= 0xef) return 3;
    if (c >= 0xf0 && c <= 0xf4) return 4;
    return 0;
}

/* How many bytes at the end of buf[0..n) form the start of a UTF-8
 * character that is not complete yet (0..3). */
static size_t utf8_incomplete_tail(const unsigned char *buf, size_t n) {
    for (size_t back = 1; back <= 3 && back <= n; back++) {
        unsigned char c = buf[n - back];
        if ((c & 0xc0) == 0x80) continue; /* continuation byte: keep looking */
        size_t need = utf8_seq_len(c);
        return (need > back) ? back : 0;
    }
    return 0;
}

size_t nuri_detokenize_push(const nuri_model *m, nuri_detokenizer *st, nuri_token t, char *out,
                            size_t cap) {
    if (cap <= st->n_pending) return 0;
    memcpy(out, st->pending, st->n_pending);
    size_t n = st->n_pending;
    size_t piece = nuri_vocab_token_to_piece(m->vocab, t, false, out + n, cap - n);
    if (piece > cap - n) piece = cap - n; /* truncated: the caller's buffer was too small */
    n += piece;
    size_t hold = utf8_incomplete_tail((const unsigned char *)out, n);
    memcpy(st->pending, out + n - hold, hold);
    st->n_pending = hold;
    return n - hold;
}

size_t nuri_detokenize_flush(nuri_detokenizer *st, char *out, size_t cap) {
    size_t n = st->n_pending < cap ? st->n_pending : cap;
    memcpy(out, st->pending, n);
    st->n_pending = 0;
    return n;
}
