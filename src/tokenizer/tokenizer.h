/* tokenizer.h — vocabularies and the tokenizers built on them.
 *
 * Two models, as GGUF's tokenizer.ggml.model names them:
 *   "llama": SentencePiece BPE with scores, byte fallback <0xXX>, dummy-prefix
 *            space (also what llama2.c's tokenizer.bin holds);
 *   "gpt2":  byte-level BPE with merges, after a pre-tokenizer chosen by
 *            tokenizer.ggml.pre ("llama-bpe", "default"/"gpt2", ...).
 * Special/control tokens are matched in the text before tokenizing when the
 * caller asks for it. */
#ifndef NURI_TOKENIZER_H
#define NURI_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gguf/gguf.h"
#include "nuri.h"

/* GGUF token types (tokenizer.ggml.token_type). */
enum {
    NURI_TOKEN_TYPE_UNDEFINED = 0,
    NURI_TOKEN_TYPE_NORMAL = 1,
    NURI_TOKEN_TYPE_UNKNOWN = 2,
    NURI_TOKEN_TYPE_CONTROL = 3,
    NURI_TOKEN_TYPE_USER_DEFINED = 4,
    NURI_TOKEN_TYPE_UNUSED = 5,
    NURI_TOKEN_TYPE_BYTE = 6,
};

typedef struct nuri_vocab nuri_vocab;

/* Builds the vocabulary from a GGUF file's tokenizer.* metadata. Fails with a
 * message naming the key when it is missing, malformed or unsupported. The
 * vocabulary copies what it needs: f may be closed afterwards. */
nuri_status nuri_vocab_from_gguf(const gguf_file *f, nuri_vocab **out, nuri_error *err);

/* Reads llama2.c's tokenizer.bin (max_token_length, then per token: float
 * score, int32 length, bytes) for a model of n_vocab tokens. Token 0 is
 * <unk>, 1 BOS, 2 EOS; pieces "<0xXX>" are byte tokens. */
nuri_status nuri_vocab_from_llama2c(const char *path, int32_t n_vocab, nuri_vocab **out,
                                    nuri_error *err);

void nuri_vocab_free(nuri_vocab *v);

int32_t nuri_vocab_n_tokens(const nuri_vocab *v);
nuri_token nuri_vocab_bos(const nuri_vocab *v); /* -1 if none */
nuri_token nuri_vocab_eos(const nuri_vocab *v); /* -1 if none */
bool nuri_vocab_add_bos(const nuri_vocab *v);   /* whether BOS is prepended */
bool nuri_vocab_is_eog(const nuri_vocab *v, nuri_token t);
/* "llama" or "gpt2" */
const char *nuri_vocab_model_name(const nuri_vocab *v);

/* Tokenizes len bytes (any bytes, not necessarily valid UTF-8, may contain
 * NULs). *out is malloc'ed. add_bos prepends BOS only if nuri_vocab_add_bos. */
nuri_status nuri_vocab_tokenize(const nuri_vocab *v, const char *text, size_t len, bool add_bos,
                                bool parse_special, nuri_token **out, size_t *n_out,
                                nuri_error *err);

/* The bytes of one token, as nuri_token_to_piece in nuri.h describes. */
size_t nuri_vocab_token_to_piece(const nuri_vocab *v, nuri_token t, bool render_special,
                                 char *buf, size_t cap);

#endif
