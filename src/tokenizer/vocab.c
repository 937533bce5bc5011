/* vocab.c — building a vocabulary (from GGUF metadata or llama2.c's
 * tokenizer.bin), its lookup tables, and rendering tokens back to bytes.
 *
 * Everything read from a file is treated as hostile: array lengths must
 * agree, ids must be in range, merges must be well formed, and every
 * allocation is bounded by what the file itself holds. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "tokenizer/tokenizer_impl.h"
#include "tokenizer/unicode.h"

/* Longest token text we accept; real vocabularies stay far below it, and it
 * keeps every length comfortably inside 32 bits. */
#define MAX_TOKEN_BYTES (1u << 20)
/* Most tokens a vocabulary may have (ids are int32_t). */
#define MAX_TOKENS (1 << 28)

/* ---- Symbol strings and the text -> id table ---- */

/* FNV-1a with a final avalanche, so that short strings spread over the
 * whole table even when the mask keeps only the low bits. */
static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ull;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h;
}

static inline const char *sym_text(const nuri_vocab *v, uint32_t id) {
    return v->pool + v->syms[id].off;
}

int64_t nuri_vocab_find_symbol(const nuri_vocab *v, const char *s, size_t n) {
    if (!v->slots || n == 0) return -1;
    uint64_t i = hash_bytes(s, n) & v->slot_mask;
    for (;;) {
        uint32_t slot = v->slots[i];
        if (slot == 0) return -1;
        uint32_t id = slot - 1;
        if (v->syms[id].len == n && memcmp(sym_text(v, id), s, n) == 0) return id;
        i = (i + 1) & v->slot_mask;
    }
}

/* Places id in the table, replacing an earlier symbol with the same text
 * (a later duplicate wins, as in the reference tokenizers' dictionaries). */
static void slot_insert(nuri_vocab *v, uint32_t id) {
    const char *s = sym_text(v, id);
    size_t n = v->syms[id].len;
    uint64_t i = hash_bytes(s, n) & v->slot_mask;
    for (;;) {
        uint32_t slot = v->slots[i];
        if (slot == 0) {
            v->slots[i] = id + 1;
            v->n_slotted++;
            return;
        }
        uint32_t other = slot - 1;
        if (v->syms[other].len == n && memcmp(sym_text(v, other), s, n) == 0) {
            v->slots[i] = id + 1;
            return;
        }
        i = (i + 1) & v->slot_mask;
    }
}

/* Grows the table so that it stays at most half full with want entries. */
static nuri_status slots_reserve(nuri_vocab *v, uint64_t want, nuri_error *err) {
    uint64_t need = 16;
    while (need < want * 2) need *= 2;
    if (v->slots && need <= (uint64_t)v->slot_mask + 1) return NURI_OK;
    if (need > (1ull << 31))
        return nuri_fail(err, NURI_ERR_FORMAT, "vocabulary: too many symbols (%llu)",
                         (unsigned long long)want);
    uint32_t *old = v->slots;
    uint64_t old_n = old ? (uint64_t)v->slot_mask + 1 : 0;
    v->slots = nuri_calloc_array((size_t)need, sizeof *v->slots);
    if (!v->slots) {
        v->slots = old;
        return nuri_fail(err, NURI_ERR_NOMEM, "vocabulary: out of memory for the token table");
    }
    v->slot_mask = (uint32_t)(need - 1);
    v->n_slotted = 0;
    for (uint64_t i = 0; i < old_n; i++)
        if (old[i]) slot_insert(v, old[i] - 1);
    free(old);
    return NURI_OK;
}

/* Grows the array that *arr_ptr points to (any element type; passed as the
 * address of the pointer) to hold at least want elem-sized items; *cap
 * doubles. The pointer is moved with memcpy so no type is punned. */
static nuri_status grow(void *arr_ptr, size_t *cap, size_t want, size_t elem, nuri_error *err) {
    if (want <= *cap) return NURI_OK;
    size_t n = *cap ? *cap : 16;
    while (n < want) {
        if (n > SIZE_MAX / 2) return nuri_fail(err, NURI_ERR_NOMEM, "vocabulary: size overflow");
        n *= 2;
    }
    size_t bytes;
    if (__builtin_mul_overflow(n, elem, &bytes))
        return nuri_fail(err, NURI_ERR_NOMEM, "vocabulary: size overflow");
    void *old;
    memcpy(&old, arr_ptr, sizeof old);
    void *p = realloc(old, bytes);
    if (!p) return nuri_fail(err, NURI_ERR_NOMEM, "vocabulary: out of memory");
    memcpy(arr_ptr, &p, sizeof p);
    *cap = n;
    return NURI_OK;
}

/* Appends a symbol with text s[0..n) and returns its id in *id. Empty
 * strings get an id but no table entry (no text looks them up). */
static nuri_status sym_append(nuri_vocab *v, const char *s, size_t n, uint32_t *id,
                              nuri_error *err) {
    nuri_status st;
    if (n > MAX_TOKEN_BYTES)
        return nuri_fail(err, NURI_ERR_FORMAT, "vocabulary: a token is %zu bytes long", n);
    if (v->n_symbols >= (uint32_t)INT32_MAX)
        return nuri_fail(err, NURI_ERR_FORMAT, "vocabulary: too many symbols");
    if ((st = grow(&v->syms, &v->cap_symbols, (size_t)v->n_symbols + 1, sizeof *v->syms, err)))
        return st;
    if ((st = grow(&v->pool, &v->pool_cap, v->pool_len + n + 1, 1, err))) return st;
    if (n) memcpy(v->pool + v->pool_len, s, n);
    v->pool[v->pool_len + n] = 0;
    uint32_t new_id = v->n_symbols++;
    v->syms[new_id].off = v->pool_len;
    v->syms[new_id].len = (uint32_t)n;
    v->pool_len += n + 1;
    if (n) {
        if ((st = slots_reserve(v, (uint64_t)v->n_slotted + 1, err))) return st;
        slot_insert(v, new_id);
    }
    *id = new_id;
    return NURI_OK;
}

/* The symbol with text s[0..n), appended if no symbol has it yet. */
static nuri_status sym_intern(nuri_vocab *v, const char *s, size_t n, uint32_t *id,
                              nuri_error *err) {
    int64_t found = nuri_vocab_find_symbol(v, s, n);
    if (found >= 0) {
        *id = (uint32_t)found;
        return NURI_OK;
    }
    return sym_append(v, s, n, id, err);
}

/* ---- Merge table (BPE) ---- */

static inline uint64_t merge_hash(uint64_t key) {
    key ^= key >> 31;
    key *= 0x9e3779b97f4a7c15ull;
    key ^= key >> 29;
    return key;
}

bool nuri_vocab_find_merge(const nuri_vocab *v, uint32_t left, uint32_t right, uint32_t *rank,
                           uint32_t *result) {
    if (!v->merges) return false;
    uint64_t key = (uint64_t)left << 32 | right;
    uint64_t i = merge_hash(key) & v->merge_mask;
    for (;;) {
        const nuri_merge_slot *s = &v->merges[i];
        if (s->key == NURI_MERGE_EMPTY) return false;
        if (s->key == key) {
            *rank = s->rank;
            *result = s->result;
            return true;
        }
        i = (i + 1) & v->merge_mask;
    }
}

/* Records a merge; a pair seen before keeps its first (lowest) rank. */
static void merge_insert(nuri_vocab *v, uint32_t left, uint32_t right, uint32_t rank,
                         uint32_t result) {
    uint64_t key = (uint64_t)left << 32 | right;
    uint64_t i = merge_hash(key) & v->merge_mask;
    while (v->merges[i].key != NURI_MERGE_EMPTY) {
        if (v->merges[i].key == key) return;
        i = (i + 1) & v->merge_mask;
    }
    v->merges[i].key = key;
    v->merges[i].rank = rank;
    v->merges[i].result = result;
}

/* ---- Special-token trie ---- */

static nuri_status trie_add_node(nuri_vocab *v, uint8_t byte, int32_t *out, nuri_error *err) {
    size_t cap = (size_t)v->cap_trie;
    nuri_status st = grow(&v->trie, &cap, (size_t)v->n_trie + 1, sizeof *v->trie, err);
    if (st) return st;
    if (cap > INT32_MAX) cap = INT32_MAX;
    v->cap_trie = (int32_t)cap;
    if (v->n_trie == INT32_MAX) return nuri_fail(err, NURI_ERR_NOMEM, "vocabulary: trie too large");
    nuri_trie_node *node = &v->trie[v->n_trie];
    node->first_child = -1;
    node->next_sibling = -1;
    node->token = -1;
    node->byte = byte;
    *out = v->n_trie++;
    return NURI_OK;
}

/* Adds token t's text to the trie (node 0 is the root). A later token with
 * the same text replaces an earlier one, as the text table does. */
static nuri_status trie_insert(nuri_vocab *v, nuri_token t, nuri_error *err) {
    const unsigned char *s = (const unsigned char *)sym_text(v, (uint32_t)t);
    uint32_t n = v->syms[t].len;
    int32_t node = 0;
    nuri_status st;
    for (uint32_t i = 0; i < n; i++) {
        int32_t child = v->trie[node].first_child;
        while (child >= 0 && v->trie[child].byte != s[i]) child = v->trie[child].next_sibling;
        if (child < 0) {
            if ((st = trie_add_node(v, s[i], &child, err))) return st;
            v->trie[child].next_sibling = v->trie[node].first_child;
            v->trie[node].first_child = child;
        }
        node = child;
    }
    v->trie[node].token = t;
    return NURI_OK;
}

static nuri_status build_special_trie(nuri_vocab *v, nuri_error *err) {
    int32_t root;
    nuri_status st = trie_add_node(v, 0, &root, err);
    if (st) return st;
    for (nuri_token t = 0; t < v->n_tokens; t++) {
        uint8_t ty = v->types[t];
        if (v->syms[t].len == 0) continue;
        if (ty != NURI_TOKEN_TYPE_CONTROL && ty != NURI_TOKEN_TYPE_USER_DEFINED &&
            ty != NURI_TOKEN_TYPE_UNKNOWN)
            continue;
        if ((st = trie_insert(v, t, err))) return st;
        v->special_first[(unsigned char)sym_text(v, (uint32_t)t)[0]] = true;
    }
    return NURI_OK;
}

/* ---- GPT-2's byte <-> character map ---- */

/* Bytes that are printable Latin-1 characters stand for themselves; the
 * others (controls, space, DEL, NBSP, soft hyphen) take the characters
 * U+0100, U+0101, ... in byte order, so every byte has a visible
 * character and BPE never sees raw whitespace. */
static void build_byte_map(nuri_vocab *v) {
    uint16_t next = 256;
    for (int i = 0; i < 324; i++) v->cp_to_byte[i] = -1;
    for (int b = 0; b < 256; b++) {
        bool printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || b >= 0xae;
        v->byte_to_cp[b] = printable ? (uint16_t)b : next++;
        v->cp_to_byte[v->byte_to_cp[b]] = (int16_t)b;
    }
}

/* ---- Token properties shared by both loaders ---- */

/* Parses "<0xXX>" (either case of hex digit); returns the byte or -1. */
static int parse_byte_piece(const char *s, size_t n) {
    if (n != 6 || s[0] != '<' || s[1] != '0' || s[2] != 'x' || s[5] != '>') return -1;
    int value = 0;
    for (int i = 3; i < 5; i++) {
        char c = s[i];
        int d = (c >= '0' && c <= '9')   ? c - '0'
                : (c >= 'a' && c <= 'f') ? c - 'a' + 10
                : (c >= 'A' && c <= 'F') ? c - 'A' + 10
                                         : -1;
        if (d < 0) return -1;
        value = value * 16 + d;
    }
    return value;
}

/* Control tokens with these texts end a turn in common chat formats. They
 * end generation whatever the metadata says (Llama 3 names <|eot_id|> as
 * EOS, yet a base model stops with <|end_of_text|>), and the first
 * end-of-turn one stands in for a missing eot_token_id. */
static const char *const eog_texts[] = {
    "<|eot_id|>", "<|eom_id|>", "<|end_of_text|>", "<|im_end|>", "<end_of_turn>", "<|end|>",
};

static bool text_is(const nuri_vocab *v, nuri_token t, const char *s) {
    size_t n = strlen(s);
    return v->syms[t].len == n && memcmp(sym_text(v, t), s, n) == 0;
}

/* Marks the tokens plain text may produce; needs the types. Must run
 * before any nuri_vocab_find_text_token. */
static nuri_status compute_text_flags(nuri_vocab *v, nuri_error *err) {
    v->flags = calloc((size_t)v->n_tokens, 1);
    if (!v->flags) return nuri_fail(err, NURI_ERR_NOMEM, "vocabulary: out of memory");
    for (nuri_token t = 0; t < v->n_tokens; t++) {
        uint8_t ty = v->types[t];
        bool text = ty != NURI_TOKEN_TYPE_CONTROL && ty != NURI_TOKEN_TYPE_UNKNOWN;
        /* SPM's <0xXX> tokens are reached only through the byte fallback.
         * A byte-level BPE user-defined token is raw text, not GPT-2
         * characters (DeepSeek's "ø" would otherwise stand for byte 0xF8);
         * the special-token matcher finds it in the text instead. */
        if (v->kind == NURI_VOCAB_SPM && ty == NURI_TOKEN_TYPE_BYTE) text = false;
        if (v->kind == NURI_VOCAB_BPE && ty == NURI_TOKEN_TYPE_USER_DEFINED) text = false;
        if (text) v->flags[t] |= NURI_TOKEN_FLAG_TEXT;
    }
    return NURI_OK;
}

/* Fills the SPM byte tokens, the eog set and the special trie once types,
 * texts and special ids are known (after compute_text_flags). */
static nuri_status finish_vocab(nuri_vocab *v, nuri_error *err) {
    for (nuri_token t = 0; t < v->n_tokens; t++) {
        if (v->kind == NURI_VOCAB_SPM && v->types[t] == NURI_TOKEN_TYPE_BYTE) {
            int b = parse_byte_piece(sym_text(v, (uint32_t)t), v->syms[t].len);
            if (b < 0)
                return nuri_fail(err, NURI_ERR_FORMAT,
                                 "vocabulary: token %d has type BYTE but its text is not <0xXX>",
                                 t);
            if (v->byte_token[b] < 0) v->byte_token[b] = t;
        }
    }
    if (v->kind == NURI_VOCAB_SPM) {
        /* A byte without its <0xXX> token falls back to the one-character
         * token (an ASCII byte in a vocabulary without byte tokens). */
        for (int b = 0; b < 256; b++) {
            if (v->byte_token[b] >= 0) continue;
            char c = (char)b;
            v->byte_token[b] = nuri_vocab_find_text_token(v, &c, 1);
        }
    }

    for (size_t i = 0; i < sizeof eog_texts / sizeof eog_texts[0]; i++) {
        int64_t t = nuri_vocab_find_symbol(v, eog_texts[i], strlen(eog_texts[i]));
        if (t < 0 || t >= v->n_tokens || v->types[t] != NURI_TOKEN_TYPE_CONTROL) continue;
        v->flags[t] |= NURI_TOKEN_FLAG_EOG;
        if (v->eot < 0 && !text_is(v, (nuri_token)t, "<|eom_id|>") &&
            !text_is(v, (nuri_token)t, "<|end_of_text|>"))
            v->eot = (nuri_token)t;
        if (v->eom < 0 && text_is(v, (nuri_token)t, "<|eom_id|>")) v->eom = (nuri_token)t;
    }
    if (v->eos >= 0) v->flags[v->eos] |= NURI_TOKEN_FLAG_EOG;
    if (v->eot >= 0) v->flags[v->eot] |= NURI_TOKEN_FLAG_EOG;
    if (v->eom >= 0) v->flags[v->eom] |= NURI_TOKEN_FLAG_EOG;

    return build_special_trie(v, err);
}

static nuri_vocab *vocab_new(nuri_vocab_kind kind) {
    nuri_vocab *v = calloc(1, sizeof *v);
    if (!v) return NULL;
    v->kind = kind;
    v->bos = v->eos = v->eot = v->eom = v->unk = v->pad = -1;
    for (int b = 0; b < 256; b++) v->byte_token[b] = -1;
    v->add_space_prefix = kind == NURI_VOCAB_SPM;
    v->add_bos = kind == NURI_VOCAB_SPM;
    return v;
}

void nuri_vocab_free(nuri_vocab *v) {
    if (!v) return;
    free(v->syms);
    free(v->pool);
    free(v->slots);
    free(v->scores);
    free(v->types);
    free(v->flags);
    free(v->merges);
    free(v->trie);
    free(v);
}

/* Sizes the symbol arrays and table for n tokens up front. */
static nuri_status reserve_tokens(nuri_vocab *v, uint64_t n, uint64_t text_bytes, nuri_error *err) {
    nuri_status st;
    if ((st = grow(&v->syms, &v->cap_symbols, (size_t)n, sizeof *v->syms, err))) return st;
    if ((st = grow(&v->pool, &v->pool_cap, (size_t)(text_bytes + n + 1), 1, err))) return st;
    if ((st = slots_reserve(v, n, err))) return st;
    v->scores = nuri_calloc_array((size_t)n, sizeof *v->scores);
    v->types = nuri_calloc_array((size_t)n, sizeof *v->types);
    if (!v->scores || !v->types) return nuri_fail(err, NURI_ERR_NOMEM, "vocabulary: out of memory");
    return NURI_OK;
}

/* ---- GGUF ---- */

/* Reads an optional token id. Absent, negative or all-ones (the "none"
 * that converters write as uint32 -1) leave *out at -1; an id past the
 * vocabulary is an error naming the key. */
static nuri_status read_token_id(const gguf_file *f, const char *key, int32_t n_tokens,
                                 nuri_token *out, nuri_error *err) {
    const gguf_value *val = gguf_get(f, key);
    if (!val) return NURI_OK;
    int64_t id;
    switch (val->type) {
    case GGUF_TYPE_UINT8:
    case GGUF_TYPE_UINT16:
    case GGUF_TYPE_UINT32:
    case GGUF_TYPE_UINT64:
        if (val->v.u64 == UINT32_MAX || val->v.u64 == UINT64_MAX) return NURI_OK;
        if (val->v.u64 >= (uint64_t)n_tokens) goto out_of_range;
        id = (int64_t)val->v.u64;
        break;
    case GGUF_TYPE_INT8:
    case GGUF_TYPE_INT16:
    case GGUF_TYPE_INT32:
    case GGUF_TYPE_INT64:
        if (val->v.i64 < 0) return NURI_OK;
        if (val->v.i64 >= n_tokens) goto out_of_range;
        id = val->v.i64;
        break;
    default:
        return nuri_fail(err, NURI_ERR_FORMAT, "%s has type %s, expected an integer", key,
                         gguf_type_name(val->type));
    }
    *out = (nuri_token)id;
    return NURI_OK;
out_of_range:
    return nuri_fail(err, NURI_ERR_FORMAT, "%s is out of range (%d tokens)", key, n_tokens);
}

/* Reads tokenizer.ggml.merges: "A B" strings, rank = index. Operands and
 * results the vocabulary lacks become extra symbols so merging can still
 * run on integer ids; the final symbols that are not tokens fall back to
 * bytes when tokenizing. */
static nuri_status load_merges(nuri_vocab *v, const gguf_value *arr, nuri_error *err) {
    uint64_t n = arr->v.arr.n;
    if (n > (uint64_t)UINT32_MAX / 4)
        return nuri_fail(err, NURI_ERR_FORMAT, "tokenizer.ggml.merges: too many merges (%llu)",
                         (unsigned long long)n);
    uint64_t slots = 16;
    while (slots < n + n / 2 + 1) slots *= 2;
    v->merges = nuri_malloc_array((size_t)slots, sizeof *v->merges);
    if (!v->merges) return nuri_fail(err, NURI_ERR_NOMEM, "tokenizer.ggml.merges: out of memory");
    for (uint64_t i = 0; i < slots; i++) v->merges[i].key = NURI_MERGE_EMPTY;
    v->merge_mask = slots - 1;

    char *joined = NULL;
    size_t joined_cap = 0;
    nuri_status st = NURI_OK;
    for (uint64_t i = 0; i < n; i++) {
        gguf_str m = arr->v.arr.strs[i];
        /* The separator is the first space after the first byte, so an
         * operand may itself start with a space (never one in GPT-2's
         * mapped alphabet, but harmless to allow). */
        const char *sp = m.len > 1 ? memchr(m.data + 1, ' ', (size_t)m.len - 1) : NULL;
        if (!sp || sp + 1 == m.data + m.len) {
            st = nuri_fail(err, NURI_ERR_FORMAT,
                           "tokenizer.ggml.merges[%llu] is not two strings separated by a space",
                           (unsigned long long)i);
            break;
        }
        size_t left_len = (size_t)(sp - m.data), right_len = (size_t)m.len - left_len - 1;
        if (left_len + right_len > MAX_TOKEN_BYTES) {
            st = nuri_fail(err, NURI_ERR_FORMAT, "tokenizer.ggml.merges[%llu] is too long",
                           (unsigned long long)i);
            break;
        }
        uint32_t left, right, result;
        if ((st = sym_intern(v, m.data, left_len, &left, err)) ||
            (st = sym_intern(v, sp + 1, right_len, &right, err)))
            break;
        if ((st = grow(&joined, &joined_cap, left_len + right_len, 1, err))) break;
        memcpy(joined, m.data, left_len);
        memcpy(joined + left_len, sp + 1, right_len);
        if ((st = sym_intern(v, joined, left_len + right_len, &result, err))) break;
        merge_insert(v, left, right, (uint32_t)i, result);
    }
    free(joined);
    return st;
}

/* The BPE alphabet: each byte's GPT-2 character as a symbol, and the token
 * that spells it (or <unk>) for the byte fallback. */
static nuri_status load_byte_symbols(nuri_vocab *v, nuri_error *err) {
    build_byte_map(v);
    for (int b = 0; b < 256; b++) {
        char buf[4];
        size_t n = nuri_utf8_encode(v->byte_to_cp[b], buf);
        uint32_t id;
        nuri_status st = sym_intern(v, buf, n, &id, err);
        if (st) return st;
        v->byte_symbol[b] = id;
        v->byte_token[b] = nuri_vocab_find_text_token(v, buf, n);
    }
    return NURI_OK;
}

nuri_status nuri_vocab_from_gguf(const gguf_file *f, nuri_vocab **out, nuri_error *err) {
    if (!f || !out)
        return nuri_fail(err, NURI_ERR_INVALID_ARG, "nuri_vocab_from_gguf: NULL argument");
    *out = NULL;
    nuri_status st;
    gguf_str model;
    if ((st = gguf_get_str(f, "tokenizer.ggml.model", true, &model, err))) return st;
    nuri_vocab_kind kind;
    if (gguf_str_eq(model, "llama"))
        kind = NURI_VOCAB_SPM;
    else if (gguf_str_eq(model, "gpt2"))
        kind = NURI_VOCAB_BPE;
    else
        return nuri_fail(err, NURI_ERR_UNSUPPORTED,
                         "tokenizer.ggml.model '%.*s' is not supported (only llama and gpt2)",
                         (int)(model.len > 64 ? 64 : model.len), model.data);

    const gguf_value *tokens, *scores, *types, *merges = NULL;
    if ((st = gguf_get_arr(f, "tokenizer.ggml.tokens", GGUF_TYPE_STRING, true, &tokens, err)) ||
        (st = gguf_get_arr(f, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, false, &scores, err)) ||
        (st = gguf_get_arr(f, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, false, &types, err)))
        return st;
    if (kind == NURI_VOCAB_BPE &&
        (st = gguf_get_arr(f, "tokenizer.ggml.merges", GGUF_TYPE_STRING, true, &merges, err)))
        return st;
    uint64_t n = tokens->v.arr.n;
    if (n == 0 || n > MAX_TOKENS)
        return nuri_fail(err, NURI_ERR_FORMAT, "tokenizer.ggml.tokens has %llu entries",
                         (unsigned long long)n);
    if (scores && scores->v.arr.n != n)
        return nuri_fail(err, NURI_ERR_FORMAT,
                         "tokenizer.ggml.scores has %llu entries but tokenizer.ggml.tokens %llu",
                         (unsigned long long)scores->v.arr.n, (unsigned long long)n);
    if (types && types->v.arr.n != n)
        return nuri_fail(
            err, NURI_ERR_FORMAT,
            "tokenizer.ggml.token_type has %llu entries but tokenizer.ggml.tokens %llu",
            (unsigned long long)types->v.arr.n, (unsigned long long)n);

    nuri_vocab *v = vocab_new(kind);
    if (!v) return nuri_fail(err, NURI_ERR_NOMEM, "vocabulary: out of memory");
    v->n_tokens = (int32_t)n;

    uint64_t text_bytes = 0;
    for (uint64_t i = 0; i < n; i++) {
        if (tokens->v.arr.strs[i].len > MAX_TOKEN_BYTES) {
            st = nuri_fail(err, NURI_ERR_FORMAT, "tokenizer.ggml.tokens[%llu] is %llu bytes long",
                           (unsigned long long)i, (unsigned long long)tokens->v.arr.strs[i].len);
            goto fail;
        }
        text_bytes += tokens->v.arr.strs[i].len;
    }
    if ((st = reserve_tokens(v, n, text_bytes, err))) goto fail;
    for (uint64_t i = 0; i < n; i++) {
        uint32_t id;
        gguf_str s = tokens->v.arr.strs[i];
        if ((st = sym_append(v, s.data, (size_t)s.len, &id, err))) goto fail;
        float score = scores ? (float)gguf_arr_float(scores, i) : 0.0f;
        if (isnan(score)) {
            st = nuri_fail(err, NURI_ERR_FORMAT, "tokenizer.ggml.scores[%llu] is NaN",
                           (unsigned long long)i);
            goto fail;
        }
        v->scores[i] = score;
        int64_t ty = types ? gguf_arr_int(types, i) : NURI_TOKEN_TYPE_NORMAL;
        if (ty < NURI_TOKEN_TYPE_UNDEFINED || ty > NURI_TOKEN_TYPE_BYTE) {
            st = nuri_fail(err, NURI_ERR_FORMAT,
                           "tokenizer.ggml.token_type[%llu] = %lld is not a token type",
                           (unsigned long long)i, (long long)ty);
            goto fail;
        }
        v->types[i] = (uint8_t)ty;
    }

    if ((st = read_token_id(f, "tokenizer.ggml.bos_token_id", v->n_tokens, &v->bos, err)) ||
        (st = read_token_id(f, "tokenizer.ggml.eos_token_id", v->n_tokens, &v->eos, err)) ||
        (st = read_token_id(f, "tokenizer.ggml.eot_token_id", v->n_tokens, &v->eot, err)) ||
        (st = read_token_id(f, "tokenizer.ggml.eom_token_id", v->n_tokens, &v->eom, err)) ||
        (st = read_token_id(f, "tokenizer.ggml.unknown_token_id", v->n_tokens, &v->unk, err)) ||
        (st = gguf_get_bool(f, "tokenizer.ggml.add_bos_token", false, &v->add_bos, err)) ||
        (st =
             gguf_get_bool(f, "tokenizer.ggml.add_space_prefix", false, &v->add_space_prefix, err)))
        goto fail;
    if (kind == NURI_VOCAB_BPE) v->add_space_prefix = false;
    /* nuri never emits padding, and converters write odd padding ids (the
     * vocabulary size, for models padded past it): one out of range means
     * "none" rather than a broken file. */
    nuri_error pad_err;
    if (read_token_id(f, "tokenizer.ggml.padding_token_id", v->n_tokens, &v->pad, &pad_err))
        v->pad = -1;
    if ((st = compute_text_flags(v, err))) goto fail;

    if (kind == NURI_VOCAB_BPE) {
        gguf_str pre = {"default", 7};
        if ((st = gguf_get_str(f, "tokenizer.ggml.pre", false, &pre, err))) goto fail;
        int pk = nuri_pretok_kind_from_name(pre.data, (size_t)pre.len);
        if (pk < 0) {
            st = nuri_fail(err, NURI_ERR_UNSUPPORTED,
                           "tokenizer.ggml.pre '%.*s' names a pre-tokenizer nuri does not support",
                           (int)(pre.len > 64 ? 64 : pre.len), pre.data);
            goto fail;
        }
        v->pretok = (nuri_pretok_kind)pk;
        v->ignore_merges = v->pretok == NURI_PRETOK_LLAMA3;
        if ((st = load_byte_symbols(v, err)) || (st = load_merges(v, merges, err))) goto fail;
    }
    if ((st = finish_vocab(v, err))) goto fail;
    *out = v;
    return NURI_OK;
fail:
    nuri_vocab_free(v);
    return st;
}

/* ---- llama2.c tokenizer.bin ---- */

/* Largest tokenizer.bin we read into memory: 128k tokens of a few dozen
 * bytes each are a few MiB; this leaves a wide margin. */
#define MAX_LLAMA2C_FILE (256u << 20)

nuri_status nuri_vocab_from_llama2c(const char *path, int32_t n_vocab, nuri_vocab **out,
                                    nuri_error *err) {
    if (!path || !out)
        return nuri_fail(err, NURI_ERR_INVALID_ARG, "nuri_vocab_from_llama2c: NULL argument");
    *out = NULL;
    if (n_vocab < 3 || n_vocab > MAX_TOKENS)
        return nuri_fail(err, NURI_ERR_INVALID_ARG, "%s: vocabulary size %d out of range", path,
                         n_vocab);
    FILE *fp = fopen(path, "rb");
    if (!fp) return nuri_fail(err, NURI_ERR_IO, "%s: cannot open", path);
    nuri_status st = NURI_OK;
    unsigned char *data = NULL;
    nuri_vocab *v = NULL;
    long size = -1;
    if (fseek(fp, 0, SEEK_END) == 0) size = ftell(fp);
    if (size < 0 || fseek(fp, 0, SEEK_SET) != 0) {
        st = nuri_fail(err, NURI_ERR_IO, "%s: cannot determine its size", path);
        goto done;
    }
    if ((unsigned long)size > MAX_LLAMA2C_FILE) {
        st = nuri_fail(err, NURI_ERR_FORMAT, "%s: %ld bytes is too large for a tokenizer.bin", path,
                       size);
        goto done;
    }
    data = malloc((size_t)size + 1);
    if (!data) {
        st = nuri_fail(err, NURI_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    if (fread(data, 1, (size_t)size, fp) != (size_t)size) {
        st = nuri_fail(err, NURI_ERR_IO, "%s: read failed", path);
        goto done;
    }
    size_t len = (size_t)size, pos = 4;
    if (len < 4) {
        st = nuri_fail(err, NURI_ERR_FORMAT, "%s: truncated header (%zu bytes)", path, len);
        goto done;
    }
    int32_t max_len = (int32_t)nuri_load_u32(data);
    if (max_len < 0 || (uint32_t)max_len > MAX_TOKEN_BYTES) {
        st = nuri_fail(err, NURI_ERR_FORMAT, "%s: max_token_length %d out of range", path, max_len);
        goto done;
    }
    /* Each token needs at least 8 bytes (score and length). */
    if ((uint64_t)n_vocab * 8 > len - 4) {
        st = nuri_fail(err, NURI_ERR_FORMAT, "%s: %zu bytes cannot hold %d tokens (truncated?)",
                       path, len, n_vocab);
        goto done;
    }
    v = vocab_new(NURI_VOCAB_SPM);
    if (!v) {
        st = nuri_fail(err, NURI_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    v->n_tokens = n_vocab;
    /* Pieces may grow when spaces become U+2581 (1 -> 3 bytes). */
    if ((st = reserve_tokens(v, (uint64_t)n_vocab, (uint64_t)len * 3, err))) goto done;
    char *piece = malloc((size_t)max_len * 3 + 1);
    if (!piece) {
        st = nuri_fail(err, NURI_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    for (int32_t i = 0; i < n_vocab; i++) {
        if (len - pos < 8) {
            st = nuri_fail(err, NURI_ERR_FORMAT, "%s: truncated at token %d", path, i);
            break;
        }
        float score = nuri_load_f32(data + pos);
        int32_t n = (int32_t)nuri_load_u32(data + pos + 4);
        pos += 8;
        if (n < 0) {
            st = nuri_fail(err, NURI_ERR_FORMAT, "%s: token %d has negative length %d", path, i, n);
            break;
        }
        if (n > max_len) {
            st = nuri_fail(err, NURI_ERR_FORMAT,
                           "%s: token %d is %d bytes, above max_token_length %d", path, i, n,
                           max_len);
            break;
        }
        if ((size_t)n > len - pos) {
            st = nuri_fail(err, NURI_ERR_FORMAT,
                           "%s: token %d (%d bytes) runs past the end of the file", path, i, n);
            break;
        }
        if (isnan(score)) {
            st = nuri_fail(err, NURI_ERR_FORMAT, "%s: token %d has a NaN score", path, i);
            break;
        }
        /* llama2.c's export wrote SentencePiece's U+2581 as a plain space;
         * restore it so both vocabulary sources tokenize alike. */
        size_t m = 0;
        for (int32_t k = 0; k < n; k++) {
            char c = (char)data[pos + k];
            if (c == ' ') {
                memcpy(piece + m, "\xe2\x96\x81", 3);
                m += 3;
            } else {
                piece[m++] = c;
            }
        }
        pos += (size_t)n;
        uint32_t id;
        if ((st = sym_append(v, piece, m, &id, err))) break;
        v->scores[i] = score;
        v->types[i] = i == 0                            ? NURI_TOKEN_TYPE_UNKNOWN
                      : i <= 2                          ? NURI_TOKEN_TYPE_CONTROL
                      : parse_byte_piece(piece, m) >= 0 ? NURI_TOKEN_TYPE_BYTE
                                                        : NURI_TOKEN_TYPE_NORMAL;
    }
    free(piece);
    if (st) goto done;
    if (pos != len) {
        st = nuri_fail(err, NURI_ERR_FORMAT,
                       "%s: %zu bytes left after %d tokens (wrong vocabulary size?)", path,
                       len - pos, n_vocab);
        goto done;
    }
    v->unk = 0;
    v->bos = 1;
    v->eos = 2;
    if ((st = compute_text_flags(v, err))) goto done;
    st = finish_vocab(v, err);
done:
    fclose(fp);
    free(data);
    if (st) {
        nuri_vocab_free(v);
        return st;
    }
    *out = v;
    return NURI_OK;
}

/* ---- Accessors ---- */

int32_t nuri_vocab_n_tokens(const nuri_vocab *v) { return v ? v->n_tokens : 0; }
nuri_token nuri_vocab_bos(const nuri_vocab *v) { return v ? v->bos : -1; }
nuri_token nuri_vocab_eos(const nuri_vocab *v) { return v ? v->eos : -1; }
bool nuri_vocab_add_bos(const nuri_vocab *v) { return v && v->add_bos && v->bos >= 0; }

bool nuri_vocab_is_eog(const nuri_vocab *v, nuri_token t) {
    return v && t >= 0 && t < v->n_tokens && (v->flags[t] & NURI_TOKEN_FLAG_EOG);
}

const char *nuri_vocab_model_name(const nuri_vocab *v) {
    if (!v) return "";
    return v->kind == NURI_VOCAB_SPM ? "llama" : "gpt2";
}

/* ---- Detokenization ---- */

/* Copies what fits of src into buf and returns n, the full length. */
static size_t put(char *buf, size_t cap, size_t at, const char *src, size_t n) {
    if (at < cap) memcpy(buf + at, src, n < cap - at ? n : cap - at);
    return n;
}

size_t nuri_vocab_token_to_piece(const nuri_vocab *v, nuri_token t, bool render_special, char *buf,
                                 size_t cap) {
    if (!v || t < 0 || t >= v->n_tokens) return 0;
    if (!buf) cap = 0;
    const char *s = sym_text(v, (uint32_t)t);
    size_t n = v->syms[t].len;
    switch (v->types[t]) {
    case NURI_TOKEN_TYPE_CONTROL:
    case NURI_TOKEN_TYPE_UNKNOWN: return render_special ? put(buf, cap, 0, s, n) : 0;
    case NURI_TOKEN_TYPE_USER_DEFINED: return put(buf, cap, 0, s, n);
    case NURI_TOKEN_TYPE_BYTE:
        if (v->kind == NURI_VOCAB_SPM) {
            char byte = (char)parse_byte_piece(s, n); /* checked at load */
            return put(buf, cap, 0, &byte, 1);
        }
        break;
    default: break;
    }
    size_t out = 0;
    if (v->kind == NURI_VOCAB_SPM) {
        for (size_t i = 0; i < n;) {
            if (n - i >= 3 && memcmp(s + i, "\xe2\x96\x81", 3) == 0) {
                out += put(buf, cap, out, " ", 1);
                i += 3;
            } else {
                out += put(buf, cap, out, s + i, 1);
                i++;
            }
        }
        return out;
    }
    /* Byte-level BPE: each character of the text stands for one byte. A
     * character outside the map (only in odd vocabularies) passes through. */
    for (size_t i = 0; i < n;) {
        size_t adv;
        uint32_t cp = nuri_utf8_decode(s + i, n - i, &adv);
        if (cp < 324 && v->cp_to_byte[cp] >= 0) {
            char byte = (char)v->cp_to_byte[cp];
            out += put(buf, cap, out, &byte, 1);
        } else {
            out += put(buf, cap, out, s + i, adv);
        }
        i += adv;
    }
    return out;
}
