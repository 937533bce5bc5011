/* pretokenize.h — splitting text into words before byte-level BPE, the way
 * each model's reference tokenizer does (its "pre-tokenizer" regexes, with
 * Unicode categories from unicode.h). */
#ifndef NURI_PRETOKENIZE_H
#define NURI_PRETOKENIZE_H

#include <stddef.h>

#include "nuri.h"

typedef enum {
    NURI_PRETOK_GPT2,         /* tokenizer.ggml.pre "default", "gpt2", and absent */
    NURI_PRETOK_LLAMA3,       /* "llama-bpe", "llama3" */
    NURI_PRETOK_DEEPSEEK_LLM, /* "deepseek-llm" */
    NURI_PRETOK_STARCODER,    /* "starcoder" */
    NURI_PRETOK_FALCON,       /* "falcon" */
    NURI_PRETOK_QWEN2,        /* "qwen2": Llama 3's rules with single digits */
} nuri_pretok_kind;

/* The pre-tokenizer a tokenizer.ggml.pre value names (len bytes, not
 * NUL-terminated). Returns -1 when nuri does not know the name. */
int nuri_pretok_kind_from_name(const char *name, size_t len);

/* Splits len bytes of text into consecutive words that together cover the
 * text exactly. *word_ends (malloc'ed) receives n_words byte offsets: word i
 * is [word_ends[i-1], word_ends[i]) with word_ends[-1] taken as 0. Invalid
 * UTF-8 bytes count as one character each, of no letter/number/space class.
 * Empty text gives zero words. */
nuri_status nuri_pretokenize(nuri_pretok_kind kind, const char *text, size_t len,
                             size_t **word_ends, size_t *n_words, nuri_error *err);

#endif
