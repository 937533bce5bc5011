/* tokenizer.c — the tokenize entry point: finds special tokens in the text,
 * hands the plain-text fragments between them to the SentencePiece or
 * byte-level BPE tokenizer, and holds the pieces both share (the output
 * list, the merge queue, scratch buffers). */
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "tokenizer/tokenizer_impl.h"

/* ---- Growable arrays ---- */

/* Makes room for want items of elem bytes in *(void **)arr_ptr, doubling. */
static nuri_status reserve(void *arr_ptr, size_t *cap, size_t want, size_t elem, nuri_error *err) {
    if (want <= *cap) return NURI_OK;
    size_t n = *cap ? *cap : 64;
    while (n < want) {
        if (n > SIZE_MAX / 4) return nuri_fail(err, NURI_ERR_NOMEM, "tokenizer: size overflow");
        n *= 2;
    }
    size_t bytes;
    if (__builtin_mul_overflow(n, elem, &bytes))
        return nuri_fail(err, NURI_ERR_NOMEM, "tokenizer: size overflow");
    void *old;
    memcpy(&old, arr_ptr, sizeof old);
    void *p = realloc(old, bytes);
    if (!p) return nuri_fail(err, NURI_ERR_NOMEM, "tokenizer: out of memory");
    memcpy(arr_ptr, &p, sizeof p);
    *cap = n;
    return NURI_OK;
}

nuri_status nuri_token_list_push(nuri_token_list *list, nuri_token t, nuri_error *err) {
    if (list->n == list->cap) {
        nuri_status st = reserve(&list->ids, &list->cap, list->n + 1, sizeof *list->ids, err);
        if (st) return st;
    }
    list->ids[list->n++] = t;
    return NURI_OK;
}

nuri_status nuri_emit_bytes(const nuri_vocab *v, const char *bytes, size_t n, nuri_token_list *out,
                            nuri_error *err) {
    nuri_status st;
    for (size_t i = 0; i < n; i++)
        if (v->byte_token[(unsigned char)bytes[i]] < 0)
            return v->unk >= 0 ? nuri_token_list_push(out, v->unk, err) : NURI_OK;
    for (size_t i = 0; i < n; i++)
        if ((st = nuri_token_list_push(out, v->byte_token[(unsigned char)bytes[i]], err)))
            return st;
    return NURI_OK;
}

nuri_status nuri_scratch_syms(nuri_tok_scratch *s, size_t n, nuri_error *err) {
    return reserve(&s->syms, &s->cap_syms, n, sizeof *s->syms, err);
}

nuri_status nuri_scratch_buf(nuri_tok_scratch *s, size_t n, nuri_error *err) {
    return reserve(&s->buf, &s->cap_buf, n, 1, err);
}

/* ---- Merge queue ---- */

static inline bool cand_before(const nuri_merge_cand *a, const nuri_merge_cand *b) {
    return a->prio < b->prio || (a->prio == b->prio && a->left < b->left);
}

nuri_status nuri_merge_queue_push(nuri_merge_queue *q, nuri_merge_cand c, nuri_error *err) {
    if (q->n == q->cap) {
        nuri_status st = reserve(&q->items, &q->cap, q->n + 1, sizeof *q->items, err);
        if (st) return st;
    }
    size_t i = q->n++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!cand_before(&c, &q->items[parent])) break;
        q->items[i] = q->items[parent];
        i = parent;
    }
    q->items[i] = c;
    return NURI_OK;
}

bool nuri_merge_queue_pop(nuri_merge_queue *q, nuri_merge_cand *out) {
    if (q->n == 0) return false;
    *out = q->items[0];
    nuri_merge_cand last = q->items[--q->n];
    size_t i = 0, n = q->n;
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= n) break;
        if (child + 1 < n && cand_before(&q->items[child + 1], &q->items[child])) child++;
        if (!cand_before(&q->items[child], &last)) break;
        q->items[i] = q->items[child];
        i = child;
    }
    if (n) q->items[i] = last;
    return true;
}

/* ---- Special tokens in the text ---- */

/* The longest special token that text[0..len) starts with, or -1; *match_len
 * receives its length. USER_DEFINED tokens always count; CONTROL and
 * UNKNOWN ones only when parse_special (so untrusted text cannot forge
 * them). Scanning left to right and taking the longest match at each
 * position is the leftmost-longest rule Hugging Face's added-token
 * matcher follows. */
static nuri_token match_special(const nuri_vocab *v, const unsigned char *text, size_t len,
                                bool parse_special, size_t *match_len) {
    nuri_token best = -1;
    int32_t node = 0;
    for (size_t i = 0; i < len; i++) {
        int32_t child = v->trie[node].first_child;
        while (child >= 0 && v->trie[child].byte != text[i]) child = v->trie[child].next_sibling;
        if (child < 0) break;
        node = child;
        nuri_token t = v->trie[node].token;
        if (t >= 0 && (parse_special || v->types[t] == NURI_TOKEN_TYPE_USER_DEFINED)) {
            best = t;
            *match_len = i + 1;
        }
    }
    return best;
}

/* ---- Entry point ---- */

/* Tokenizes a run of plain text. Every such run starts the text or follows a
 * special token, and SentencePiece gives each one its dummy-prefix space,
 * as if it began a text of its own ("<s>Hello" -> <s> "▁Hello"). */
static nuri_status tokenize_fragment(const nuri_vocab *v, const char *text, size_t len,
                                     nuri_tok_scratch *scratch, nuri_token_list *out,
                                     nuri_error *err) {
    if (v->kind == NURI_VOCAB_SPM)
        return nuri_spm_tokenize(v, text, len, v->add_space_prefix, scratch, out, err);
    return nuri_bpe_tokenize(v, text, len, scratch, out, err);
}

nuri_status nuri_vocab_tokenize(const nuri_vocab *v, const char *text, size_t len, bool add_bos,
                                bool parse_special, nuri_token **out, size_t *n_out,
                                nuri_error *err) {
    if (!v || !out || !n_out || (!text && len))
        return nuri_fail(err, NURI_ERR_INVALID_ARG, "nuri_vocab_tokenize: NULL argument");
    *out = NULL;
    *n_out = 0;
    /* Positions inside the tokenizers are 32-bit. */
    if (len > (size_t)INT32_MAX / 4)
        return nuri_fail(err, NURI_ERR_INVALID_ARG,
                         "nuri_vocab_tokenize: text of %zu bytes is too long", len);

    nuri_token_list list = {0};
    nuri_tok_scratch scratch = {0};
    nuri_status st = NURI_OK;
    if (add_bos && nuri_vocab_add_bos(v) && (st = nuri_token_list_push(&list, v->bos, err)))
        goto done;

    const unsigned char *bytes = (const unsigned char *)text;
    size_t frag_start = 0;
    for (size_t pos = 0; pos < len;) {
        size_t match_len = 0;
        nuri_token special = -1;
        if (v->special_first[bytes[pos]])
            special = match_special(v, bytes + pos, len - pos, parse_special, &match_len);
        if (special < 0) {
            pos++;
            continue;
        }
        if (frag_start < pos) {
            if ((st = tokenize_fragment(v, text + frag_start, pos - frag_start, &scratch, &list,
                                        err)))
                goto done;
        }
        if ((st = nuri_token_list_push(&list, special, err))) goto done;
        pos += match_len;
        frag_start = pos;
    }
    if (frag_start < len)
        st = tokenize_fragment(v, text + frag_start, len - frag_start, &scratch, &list, err);
done:
    free(scratch.syms);
    free(scratch.buf);
    free(scratch.queue.items);
    if (st) {
        free(list.ids);
        return st;
    }
    if (!list.ids) list.ids = malloc(sizeof *list.ids); /* callers may free what they get */
    if (!list.ids) return nuri_fail(err, NURI_ERR_NOMEM, "tokenizer: out of memory");
    *out = list.ids;
    *n_out = list.n;
    return NURI_OK;
}
