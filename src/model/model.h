/* model.h — the in-memory Llama model every loader fills, and the forward
 * pass over it.
 *
 * Weight matrices stay in their stored type, pointing into the file
 * mapping; only the small norm vectors are converted to float at load. */
#ifndef NURI_MODEL_H
#define NURI_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "gguf/gguf.h"
#include "nuri.h"
#include "tokenizer/tokenizer.h"

/* A matrix of n_rows rows of n_cols elements (GGUF ne[0] = n_cols), or a
 * vector when n_rows == 1. data == NULL means absent. */
typedef struct {
    uint32_t type;
    int64_t n_cols, n_rows;
    size_t row_bytes;
    const void *data;
} nuri_weight;

typedef struct {
    float *attn_norm, *ffn_norm;           /* n_embd floats, owned */
    nuri_weight wq, wk, wv, wo;
    float *bq, *bk, *bv;                   /* optional biases (Qwen2), owned */
    nuri_weight w_gate, w_up, w_down;
} nuri_layer;

typedef enum {
    NURI_ROPE_NORM, /* rotate adjacent pairs (x[2i], x[2i+1]): Llama */
    NURI_ROPE_NEOX, /* rotate (x[i], x[i + d/2]): Qwen2 */
} nuri_rope_kind;

typedef struct {
    int32_t n_vocab, n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff, n_ctx_train;
    int32_t n_rot;          /* dimensions RoPE rotates (head_dim for Llama) */
    float rms_eps;
    float rope_base;
    float rope_freq_scale; /* 1 / linear scaling factor */
    nuri_rope_kind rope_kind;
} nuri_hparams;

struct nuri_model {
    nuri_hparams hp;
    nuri_weight tok_embd;  /* n_vocab rows of n_embd */
    float *output_norm;    /* owned */
    nuri_weight output;    /* the embedding itself when tied */
    nuri_layer *layers;
    float *rope_inv_factors; /* n_rot/2 divisors of each frequency (Llama 3.1), or NULL */
    nuri_vocab *vocab;
    gguf_file *gguf;       /* keeps the GGUF mapping alive */
    void *map;             /* llama2.c checkpoints: our own mapping */
    size_t map_size;
    char desc[160];
};

/* Loaders (model_gguf.c, model_llama2c.c). On failure they free what they
 * built and fill err. */
nuri_status nuri_model_load_gguf(const char *path, nuri_model **out, nuri_error *err);
nuri_status nuri_model_load_llama2c(const char *path, const char *tokenizer_path,
                                    nuri_model **out, nuri_error *err);

/* Converts a small vector of any supported type to a new float array. */
nuri_status nuri_weight_to_floats(const nuri_weight *w, const char *name, float **out,
                                  nuri_error *err);
/* Checks a model's hyper-parameters for consistency and sane bounds. */
nuri_status nuri_hparams_validate(const nuri_hparams *hp, nuri_error *err);
/* Fills desc from the hyper-parameters and the weights' types. */
void nuri_model_describe(nuri_model *m);

#endif
