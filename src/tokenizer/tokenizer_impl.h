/* tokenizer_impl.h — what vocab.c, spm.c, bpe.c and tokenizer.c share: the
 * vocabulary's layout, its lookup tables, and the growable token list the
 * tokenizers append to. Private to src/tokenizer/. */
#ifndef NURI_TOKENIZER_IMPL_H
#define NURI_TOKENIZER_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tokenizer/pretokenize.h"
#include "tokenizer/tokenizer.h"

typedef enum {
    NURI_VOCAB_SPM, /* "llama": SentencePiece BPE with scores */
    NURI_VOCAB_BPE, /* "gpt2": byte-level BPE with merges */
} nuri_vocab_kind;

/* Per-token flags, beside the GGUF token type. */
enum {
    NURI_TOKEN_FLAG_EOG = 1 << 0, /* ends a generation */
    /* The token may come out of the SPM/BPE model on plain text: not
     * CONTROL or UNKNOWN (nor SPM's BYTE, nor BPE's USER_DEFINED; see
     * compute_text_flags). Control tokens are reachable only through
     * special-token parsing, so "<|eot_id|>" typed by a user never becomes
     * the real one. */
    NURI_TOKEN_FLAG_TEXT = 1 << 1,
};

/* A merge of two adjacent symbols: its rank (lower merges first) and the
 * symbol it produces. */
typedef struct {
    uint64_t key; /* left << 32 | right; NURI_MERGE_EMPTY for a free slot */
    uint32_t rank;
    uint32_t result;
} nuri_merge_slot;

#define NURI_MERGE_EMPTY UINT64_MAX

/* A node of the special-token trie. Children of a node form a sibling list. */
typedef struct {
    int32_t first_child, next_sibling;
    int32_t token; /* token that ends at this node, or -1 */
    uint8_t byte;
} nuri_trie_node;

/* A symbol's text: pool[off..off+len), followed by a NUL. */
typedef struct {
    size_t off;
    uint32_t len;
} nuri_symbol;

struct nuri_vocab {
    nuri_vocab_kind kind;
    int32_t n_tokens;

    /* Symbol strings. Ids [0, n_tokens) are the tokens; BPE adds, after
     * them, the merge operands and results that are not tokens (a hostile
     * or sloppy merge list may name strings the vocabulary lacks). */
    nuri_symbol *syms;
    uint32_t n_symbols;
    size_t cap_symbols;
    char *pool;
    size_t pool_len, pool_cap;
    /* Open-addressing table text -> symbol id + 1 (0: empty slot). */
    uint32_t *slots;
    uint32_t slot_mask; /* number of slots - 1; a power of two minus one */
    uint32_t n_slotted;

    float *scores;  /* n_tokens */
    uint8_t *types; /* n_tokens, NURI_TOKEN_TYPE_* */
    uint8_t *flags; /* n_tokens, NURI_TOKEN_FLAG_* */

    nuri_token bos, eos, eot, eom, unk, pad;
    bool add_bos;
    bool add_space_prefix; /* SPM's dummy prefix */

    /* The byte-fallback token of each byte (SPM: <0xXX>; BPE: the byte's
     * GPT-2 character), or -1 when the vocabulary lacks it. */
    nuri_token byte_token[256];

    /* BPE */
    nuri_pretok_kind pretok;
    bool ignore_merges;        /* a word that is a token is emitted whole (Llama 3) */
    uint32_t byte_symbol[256]; /* symbol of the byte's GPT-2 character */
    nuri_merge_slot *merges;
    uint64_t merge_mask;
    uint16_t byte_to_cp[256]; /* GPT-2's byte -> character map */
    int16_t cp_to_byte[324];  /* and back; -1 where no byte maps */

    /* Special tokens (CONTROL, USER_DEFINED, UNKNOWN) by text; node 0 is
     * the root. special_first[b]: some special token starts with byte b. */
    nuri_trie_node *trie;
    int32_t n_trie, cap_trie;
    bool special_first[256];
};

/* The text of symbol id (not NUL-terminated; *len bytes). */
static inline const char *nuri_vocab_symbol_text(const nuri_vocab *v, uint32_t id, size_t *len) {
    *len = v->syms[id].len;
    return v->pool + v->syms[id].off;
}

/* ---- Lookups (vocab.c) ---- */

/* The symbol whose text is exactly s[0..n), or -1. */
int64_t nuri_vocab_find_symbol(const nuri_vocab *v, const char *s, size_t n);

/* The token for text s[0..n) that plain text may produce (flag TEXT), or -1. */
static inline nuri_token nuri_vocab_find_text_token(const nuri_vocab *v, const char *s, size_t n) {
    int64_t id = nuri_vocab_find_symbol(v, s, n);
    if (id < 0 || id >= v->n_tokens || !(v->flags[id] & NURI_TOKEN_FLAG_TEXT)) return -1;
    return (nuri_token)id;
}

/* Rank and result of merging symbols left and right; false when no merge. */
bool nuri_vocab_find_merge(const nuri_vocab *v, uint32_t left, uint32_t right, uint32_t *rank,
                           uint32_t *result);

/* ---- Output (tokenizer.c) ---- */

typedef struct {
    nuri_token *ids;
    size_t n, cap;
} nuri_token_list;

nuri_status nuri_token_list_push(nuri_token_list *list, nuri_token t, nuri_error *err);

/* Emits a symbol that is no token: one byte-fallback token per byte when
 * the vocabulary has them all, else a single <unk> (or nothing when the
 * vocabulary has no <unk> either). */
nuri_status nuri_emit_bytes(const nuri_vocab *v, const char *bytes, size_t n, nuri_token_list *out,
                            nuri_error *err);

/* ---- Merge queue (tokenizer.c): a binary heap shared by SPM and BPE ---- */

/* A candidate merge of the adjacent symbols left and right. The queue pops
 * the lowest prio first (SPM: -score, BPE: rank), ties to the leftmost.
 * size is the two symbols' total length when the candidate was made: a
 * candidate whose symbols have since changed is stale and skipped. */
typedef struct {
    double prio;
    uint32_t left, right;
    uint32_t size;
    uint32_t result; /* SPM: the token; BPE: the merged symbol */
} nuri_merge_cand;

typedef struct {
    nuri_merge_cand *items;
    size_t n, cap;
} nuri_merge_queue;

nuri_status nuri_merge_queue_push(nuri_merge_queue *q, nuri_merge_cand c, nuri_error *err);
bool nuri_merge_queue_pop(nuri_merge_queue *q, nuri_merge_cand *out);

/* A symbol during merging: a byte span of the text in a doubly linked list.
 * n == 0 marks a symbol absorbed into its left neighbour. */
typedef struct {
    int32_t prev, next;
    uint32_t start, n;
    uint32_t symbol; /* BPE: the symbol id */
} nuri_merge_sym;

/* Reusable scratch memory for one tokenize call. */
typedef struct {
    nuri_merge_sym *syms;
    size_t cap_syms;
    nuri_merge_queue queue;
    char *buf;
    size_t cap_buf;
} nuri_tok_scratch;

nuri_status nuri_scratch_syms(nuri_tok_scratch *s, size_t n, nuri_error *err);
nuri_status nuri_scratch_buf(nuri_tok_scratch *s, size_t n, nuri_error *err);

/* ---- The two tokenizers (spm.c, bpe.c) ---- */

/* Tokenizes one fragment of plain text (no special tokens in it), appending
 * to out. prefix_space: add SentencePiece's dummy-prefix space first. */
nuri_status nuri_spm_tokenize(const nuri_vocab *v, const char *text, size_t len, bool prefix_space,
                              nuri_tok_scratch *scratch, nuri_token_list *out, nuri_error *err);
nuri_status nuri_bpe_tokenize(const nuri_vocab *v, const char *text, size_t len,
                              nuri_tok_scratch *scratch, nuri_token_list *out, nuri_error *err);

#endif
