/*
 * nuri.h — the public interface of libnuri, an inference engine for
 * Llama-family language models.
 *
 * A short tour:
 *
 *     nuri_error err;
 *     nuri_model *model;
 *     if (nuri_model_load("model.gguf", NULL, &model, &err) != NURI_OK) {
 *         fprintf(stderr, "%s\n", err.message);
 *         return 1;
 *     }
 *     nuri_context *ctx;
 *     nuri_context_create(model, NULL, &ctx, &err);
 *
 *     nuri_token *toks; size_t n;
 *     nuri_tokenize(model, "Hello", 5, NURI_TOKENIZE_ADD_BOS | NURI_TOKENIZE_PARSE_SPECIAL,
 *                   &toks, &n, &err);
 *     nuri_eval(ctx, toks, NULL, n, &err);          // positions default to n_past..
 *     const float *logits = nuri_logits(ctx);       // for the last token of the batch
 *
 *     nuri_sampler *s = nuri_sampler_create(NULL); // NULL: greedy
 *     nuri_token next = nuri_sampler_sample(s, logits, nuri_model_n_vocab(model));
 *     ...
 *     nuri_sampler_free(s); nuri_free(toks);
 *     nuri_context_free(ctx); nuri_model_free(model);
 *
 * Conventions: every fallible function returns a nuri_status and, when it is
 * not NURI_OK, fills the caller's nuri_error with a one-line message naming
 * the problem. The library never exits or aborts on bad input. Handles are
 * opaque; each create or load function has a matching free that accepts NULL.
 */
#ifndef NURI_H
#define NURI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    NURI_OK = 0,
    NURI_ERR_IO,           /* a file could not be opened, read or mapped */
    NURI_ERR_FORMAT,       /* a file or input is malformed */
    NURI_ERR_UNSUPPORTED,  /* well-formed, but uses something nuri does not support */
    NURI_ERR_NOMEM,        /* an allocation failed */
    NURI_ERR_INVALID_ARG,  /* the caller passed a bad argument */
    NURI_ERR_CONTEXT_FULL, /* the KV cache has no room for the batch */
} nuri_status;

typedef struct {
    nuri_status status;
    char message[512];
} nuri_error;

/* A short, static description of a status code ("malformed input", ...). */
const char *nuri_status_string(nuri_status status);

typedef int32_t nuri_token;

typedef struct nuri_model nuri_model;
typedef struct nuri_context nuri_context;
typedef struct nuri_sampler nuri_sampler;

/* Frees memory the library returned to the caller (token arrays, strings). */
void nuri_free(void *ptr);

/* ---- Models ------------------------------------------------------------ */

typedef struct {
    /* llama2.c checkpoints keep their vocabulary in a separate tokenizer.bin;
     * NULL means "tokenizer.bin next to the model". Ignored for GGUF. */
    const char *tokenizer_path;
} nuri_model_params;

/* Loads a GGUF file or a llama2.c checkpoint (chosen by the file's magic).
 * Weights stay memory-mapped in their stored type. params may be NULL. */
nuri_status nuri_model_load(const char *path, const nuri_model_params *params,
                            nuri_model **out, nuri_error *err);
void nuri_model_free(nuri_model *model);

int32_t nuri_model_n_vocab(const nuri_model *model);
int32_t nuri_model_n_ctx_train(const nuri_model *model);
/* A one-line human description, e.g. "llama 4 layers, dim 64, F32". */
const char *nuri_model_desc(const nuri_model *model);

/* ---- Tokenizer --------------------------------------------------------- */

enum {
    NURI_TOKENIZE_ADD_BOS = 1 << 0,       /* prepend BOS if the vocabulary wants it */
    NURI_TOKENIZE_PARSE_SPECIAL = 1 << 1, /* "<s>" in text becomes the special token */
};

/* Tokenizes len bytes of text. *out is allocated (free with nuri_free).
 * NURI_TOKENIZE_ADD_BOS adds BOS only when the model's metadata says BOS is
 * added (tokenizer.ggml.add_bos_token, default true for SentencePiece). */
nuri_status nuri_tokenize(const nuri_model *model, const char *text, size_t len,
                          unsigned flags, nuri_token **out, size_t *n_out,
                          nuri_error *err);

/* The bytes a token stands for (SentencePiece's "▁" becomes a space, byte
 * tokens become their byte). Writes up to cap bytes, returns the full length;
 * no terminating NUL. Control tokens (BOS, EOS) render as nothing unless
 * render_special is true. Returns 0 for an out-of-range token. */
size_t nuri_token_to_piece(const nuri_model *model, nuri_token token, bool render_special,
                           char *buf, size_t cap);

nuri_token nuri_token_bos(const nuri_model *model); /* -1 if none */
nuri_token nuri_token_eos(const nuri_model *model); /* -1 if none */
/* True for tokens that end a generation (EOS, EOT, <|eom_id|>, ...). */
bool nuri_token_is_eog(const nuri_model *model, nuri_token token);

/* Streaming detokenizer: turns a token stream into text that never ends in
 * the middle of a UTF-8 character. Bytes of an incomplete character are held
 * back until the character completes; invalid sequences are passed through
 * byte for byte once they can no longer become valid. */
typedef struct {
    char pending[8];
    size_t n_pending;
} nuri_detokenizer;

/* Appends the text of token to out (capacity cap, at least 64 + the longest
 * piece is enough) and returns the number of bytes written. */
size_t nuri_detokenize_push(const nuri_model *model, nuri_detokenizer *state,
                            nuri_token token, char *out, size_t cap);
/* Returns whatever bytes are still held back (at the end of a stream). */
size_t nuri_detokenize_flush(nuri_detokenizer *state, char *out, size_t cap);

/* ---- Contexts: the KV cache and the forward pass ----------------------- */

typedef enum {
    NURI_KV_F32 = 0, /* exact */
    NURI_KV_F16 = 1, /* half the memory; keys and values rounded to half precision */
} nuri_kv_type;

typedef struct {
    int32_t n_ctx;     /* KV cache positions per sequence; 0: min(model context, 4096) */
    int32_t n_batch;   /* tokens the forward pass takes at once; 0: 512 */
    int32_t n_threads; /* 0: the number of physical cores */
    int32_t n_seq;     /* independent sequences (e.g. server slots), each with its own
                        * n_ctx positions; 0: 1 */
    nuri_kv_type kv_type; /* default NURI_KV_F32 */
} nuri_context_params;

nuri_context_params nuri_context_default_params(void);

nuri_status nuri_context_create(const nuri_model *model, const nuri_context_params *params,
                                nuri_context **out, nuri_error *err);
void nuri_context_free(nuri_context *ctx);

int32_t nuri_context_n_ctx(const nuri_context *ctx);
int32_t nuri_context_n_seq(const nuri_context *ctx);
/* Number of positions sequence 0 holds in the KV cache. */
int32_t nuri_context_n_past(const nuri_context *ctx);
int32_t nuri_context_seq_n_past(const nuri_context *ctx, int32_t seq);
/* Forgets every position >= n_past of sequence 0 (0 clears it). */
void nuri_context_truncate(nuri_context *ctx, int32_t n_past);
void nuri_context_seq_truncate(nuri_context *ctx, int32_t seq, int32_t n_past);

/* A batch of tokens from one or more sequences, evaluated together: the
 * matrix products run over all of them at once. Entries of one sequence
 * must come in order and continue that sequence's cache. */
typedef struct {
    size_t n;
    const nuri_token *tokens;
    const int32_t *seq_ids;   /* NULL: every token belongs to sequence 0 */
    const int32_t *positions; /* NULL: each sequence continues from its n_past;
                               * otherwise must equal exactly that */
    const bool *logits;       /* which entries need logits; NULL: the last entry only */
} nuri_batch;

/* Evaluates a batch (longer batches are split internally). Fails with
 * NURI_ERR_CONTEXT_FULL, changing nothing, when a sequence has no room, and
 * with NURI_ERR_INVALID_ARG for bad tokens, sequences or positions. */
nuri_status nuri_decode(nuri_context *ctx, const nuri_batch *batch, nuri_error *err);

/* nuri_decode for n tokens of sequence 0; logits for the last token, or for
 * every token when all_logits is true. */
nuri_status nuri_eval(nuri_context *ctx, const nuri_token *tokens, const int32_t *positions,
                      size_t n, bool all_logits, nuri_error *err);

/* Logits (n_vocab floats) of the last entry that asked for logits in the
 * last call; NULL if none. */
const float *nuri_logits(const nuri_context *ctx);
/* Logits of entry i of the last call; NULL when i is out of range or no
 * logits were asked for it. */
const float *nuri_logits_ith(const nuri_context *ctx, size_t i);

/* ---- Sampling ----------------------------------------------------------- */

typedef struct {
    float temperature;      /* <= 0: greedy (argmax, lowest id on ties) */
    int32_t top_k;          /* <= 0: off */
    float top_p;            /* >= 1: off */
    float min_p;            /* <= 0: off */
    float repeat_penalty;   /* 1: off; divides positive logits, multiplies negative */
    float frequency_penalty;/* 0: off; subtracts count * value */
    float presence_penalty; /* 0: off; subtracts value once per seen token */
    int32_t penalty_last_n; /* window of recent tokens the penalties look at; 0: off */
    uint64_t seed;
} nuri_sampler_params;

/* Greedy (temperature 0), no penalties, penalty window 64, seed 0; the
 * filters take llama.cpp's defaults (top-k 40, top-p 0.95, min-p 0.05), which
 * only act once a temperature is set. */
nuri_sampler_params nuri_sampler_default_params(void);

/* params may be NULL (greedy). Returns NULL only when out of memory. */
nuri_sampler *nuri_sampler_create(const nuri_sampler_params *params);
void nuri_sampler_free(nuri_sampler *sampler);
/* Picks a token from logits (not modified) and remembers it for penalties.
 * Returns -1 for a NULL sampler or logits or n_vocab <= 0. Reset also
 * restarts the random sequence from the seed. */
nuri_token nuri_sampler_sample(nuri_sampler *sampler, const float *logits, int32_t n_vocab);
/* Adds a token to the penalty window without sampling (e.g. prompt tokens). */
void nuri_sampler_accept(nuri_sampler *sampler, nuri_token token);
void nuri_sampler_reset(nuri_sampler *sampler);

#ifdef __cplusplus
}
#endif
#endif /* NURI_H */
