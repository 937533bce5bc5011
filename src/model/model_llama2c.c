/* model_llama2c.c — llama2.c checkpoints (the .bin format of its run.c).
 *
 * Header: seven int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads,
 * vocab_size, seq_len); a negative vocab_size means the classifier is stored
 * separately at the end instead of being shared with the embedding. Then the
 * float32 weights, each kind for all layers at once: token_embedding,
 * rms_att, wq, wk, wv, wo, rms_ffn, w1 (gate), w2 (down), w3 (up), rms_final,
 * two legacy RoPE tables (seq_len * head_size/2 floats each), [wcls]. */
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/util.h"
#include "model/model.h"
#include "quant/quant.h"

#define LLAMA2C_HEADER_BYTES 28

/* Hands out consecutive F32 matrices from the mapping, checking each
 * against the file size. */
typedef struct {
    const char *base;
    uint64_t offset, size;
} weight_cursor;

static nuri_status take_f32(weight_cursor *c, const char *what, int64_t n_cols, int64_t n_rows,
                            nuri_weight *w, nuri_error *err) {
    uint64_t n = 0, bytes = 0, end = 0;
    if (!nuri_mul_u64((uint64_t)n_cols, (uint64_t)n_rows, &n) || !nuri_mul_u64(n, 4, &bytes) ||
        !nuri_add_u64(c->offset, bytes, &end) || end > c->size)
        return nuri_fail(err, NURI_ERR_FORMAT,
                         "llama2.c checkpoint is truncated or its header is wrong: '%s' needs %llu "
                         "bytes at offset %llu, the file has %llu",
                         what, (unsigned long long)bytes, (unsigned long long)c->offset,
                         (unsigned long long)c->size);
    w->type = NURI_TYPE_F32;
    w->n_cols = n_cols;
    w->n_rows = n_rows;
    w->row_bytes = (size_t)n_cols * 4;
    w->data = c->base + c->offset;
    c->offset = end;
    return NURI_OK;
}

static nuri_weight layer_slice(const nuri_weight *all, int l, int64_t rows_per_layer) {
    nuri_weight w = *all;
    w.n_rows = rows_per_layer;
    w.data = (const char *)all->data + (size_t)l * (size_t)rows_per_layer * all->row_bytes;
    return w;
}

static nuri_status map_file(const char *path, void **map, size_t *size, nuri_error *err) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return nuri_fail(err, NURI_ERR_IO, "%s: cannot open file", path);
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return nuri_fail(err, NURI_ERR_IO, "%s: not a regular file", path);
    }
    if (st.st_size < LLAMA2C_HEADER_BYTES) {
        close(fd);
        return nuri_fail(err, NURI_ERR_FORMAT,
                         "%s: not a GGUF file, and too short (%lld bytes) for a llama2.c checkpoint",
                         path, (long long)st.st_size);
    }
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED) return nuri_fail(err, NURI_ERR_IO, "%s: cannot map file", path);
    *map = p;
    *size = (size_t)st.st_size;
    return NURI_OK;
}

nuri_status nuri_model_load_llama2c(const char *path, const char *tokenizer_path,
                                    nuri_model **out, nuri_error *err) {
    *out = NULL;
    nuri_model *m = calloc(1, sizeof *m);
    if (!m) return nuri_fail(err, NURI_ERR_NOMEM, "out of memory");
    nuri_status st = map_file(path, &m->map, &m->map_size, err);
    if (st) goto fail;

    int32_t h[7];
    memcpy(h, m->map, sizeof h);
    for (int i = 0; i < 7; i++) {
        if (h[i] == 0 || (i != 5 && h[i] < 0) || h[i] == INT32_MIN) {
            st = nuri_fail(err, NURI_ERR_FORMAT,
                           "%s: not a GGUF file, nor a llama2.c checkpoint (header field %d is %d)",
                           path, i, h[i]);
            goto fail;
        }
    }
    bool shared_classifier = h[5] > 0;
    nuri_hparams *hp = &m->hp;
    hp->n_embd = h[0];
    hp->n_ff = h[1];
    hp->n_layer = h[2];
    hp->n_head = h[3];
    hp->n_head_kv = h[4];
    hp->n_vocab = shared_classifier ? h[5] : -h[5];
    hp->n_ctx_train = h[6];
    hp->head_dim = h[3] > 0 ? h[0] / h[3] : 0;
    hp->n_rot = hp->head_dim;
    hp->rms_eps = 1e-5f;
    hp->rope_base = 10000.0f;
    hp->rope_freq_scale = 1.0f;
    hp->rope_kind = NURI_ROPE_NORM;
    if (hp->head_dim * hp->n_head != hp->n_embd) {
        st = nuri_fail(err, NURI_ERR_FORMAT, "%s: dim %d is not a multiple of n_heads %d", path,
                       hp->n_embd, hp->n_head);
        goto fail;
    }
    if ((st = nuri_hparams_validate(hp, err))) goto fail;

    int64_t dim = hp->n_embd, L = hp->n_layer, kv_dim = (int64_t)hp->n_head_kv * hp->head_dim;
    weight_cursor c = {m->map, LLAMA2C_HEADER_BYTES, m->map_size};
    nuri_weight rms_att, wq, wk, wv, wo, rms_ffn, w1, w2, w3, rms_final, rope_tables;
    if ((st = take_f32(&c, "token_embedding", dim, hp->n_vocab, &m->tok_embd, err)) ||
        (st = take_f32(&c, "rms_att", dim, L, &rms_att, err)) ||
        (st = take_f32(&c, "wq", dim, L * dim, &wq, err)) ||
        (st = take_f32(&c, "wk", dim, L * kv_dim, &wk, err)) ||
        (st = take_f32(&c, "wv", dim, L * kv_dim, &wv, err)) ||
        (st = take_f32(&c, "wo", dim, L * dim, &wo, err)) ||
        (st = take_f32(&c, "rms_ffn", dim, L, &rms_ffn, err)) ||
        (st = take_f32(&c, "w1", dim, L * hp->n_ff, &w1, err)) ||
        (st = take_f32(&c, "w2", hp->n_ff, L * dim, &w2, err)) ||
        (st = take_f32(&c, "w3", dim, L * hp->n_ff, &w3, err)) ||
        (st = take_f32(&c, "rms_final", dim, 1, &rms_final, err)) ||
        (st = take_f32(&c, "freq_cis", hp->head_dim, hp->n_ctx_train, &rope_tables, err)))
        goto fail;
    if (shared_classifier) {
        m->output = m->tok_embd;
    } else if ((st = take_f32(&c, "wcls", dim, hp->n_vocab, &m->output, err))) {
        goto fail;
    }

    m->layers = nuri_calloc_array((size_t)L, sizeof *m->layers);
    if (!m->layers) {
        st = nuri_fail(err, NURI_ERR_NOMEM, "out of memory");
        goto fail;
    }
    for (int l = 0; l < L; l++) {
        nuri_layer *ly = &m->layers[l];
        nuri_weight v = layer_slice(&rms_att, l, 1);
        if ((st = nuri_weight_to_floats(&v, "rms_att", &ly->attn_norm, err))) goto fail;
        v = layer_slice(&rms_ffn, l, 1);
        if ((st = nuri_weight_to_floats(&v, "rms_ffn", &ly->ffn_norm, err))) goto fail;
        ly->wq = layer_slice(&wq, l, dim);
        ly->wk = layer_slice(&wk, l, kv_dim);
        ly->wv = layer_slice(&wv, l, kv_dim);
        ly->wo = layer_slice(&wo, l, dim);
        ly->w_gate = layer_slice(&w1, l, hp->n_ff);
        ly->w_down = layer_slice(&w2, l, dim);
        ly->w_up = layer_slice(&w3, l, hp->n_ff);
    }
    if ((st = nuri_weight_to_floats(&rms_final, "rms_final", &m->output_norm, err))) goto fail;

    /* The vocabulary: --tokenizer, else tokenizer.bin beside the model. */
    char guess[4096];
    if (!tokenizer_path) {
        char dir_buf[4096];
        snprintf(dir_buf, sizeof dir_buf, "%s", path);
        snprintf(guess, sizeof guess, "%s/tokenizer.bin", dirname(dir_buf));
        if (access(guess, R_OK) != 0) {
            st = nuri_fail(err, NURI_ERR_INVALID_ARG,
                           "%s is a llama2.c checkpoint: give its vocabulary with --tokenizer FILE "
                           "(no tokenizer.bin beside it)", path);
            goto fail;
        }
        tokenizer_path = guess;
    }
    if ((st = nuri_vocab_from_llama2c(tokenizer_path, hp->n_vocab, &m->vocab, err))) goto fail;
    nuri_model_describe(m);
    *out = m;
    return NURI_OK;
fail:
    nuri_model_free(m);
    return st;
}
