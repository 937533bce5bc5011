/* bpe.c — byte-level BPE ("gpt2"): the pre-tokenizer splits the text into
 * words; within a word every byte starts as its own symbol (its GPT-2
 * character), and the adjacent pair with the lowest merge rank is merged,
 * ties to the leftmost, until no pair has a merge. A final symbol that is
 * not a token falls back to one token per byte. */
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "tokenizer/tokenizer_impl.h"

/* Queues the merge of symbols left and right if the merge list has it. */
static nuri_status try_pair(const nuri_vocab *v, nuri_tok_scratch *s, int32_t left, int32_t right,
                            nuri_error *err) {
    if (left < 0 || right < 0) return NURI_OK;
    const nuri_merge_sym *l = &s->syms[left], *r = &s->syms[right];
    uint32_t rank, result;
    if (!nuri_vocab_find_merge(v, l->symbol, r->symbol, &rank, &result)) return NURI_OK;
    nuri_merge_cand c = {
        .prio = (double)rank,
        .left = (uint32_t)left,
        .right = (uint32_t)right,
        .size = l->n + r->n,
        .result = result,
    };
    return nuri_merge_queue_push(&s->queue, c, err);
}

/* Emits one final symbol covering word[start..start+n). */
static nuri_status emit(const nuri_vocab *v, const unsigned char *word, const nuri_merge_sym *sym,
                        nuri_token_list *out, nuri_error *err) {
    if (sym->symbol < (uint32_t)v->n_tokens && (v->flags[sym->symbol] & NURI_TOKEN_FLAG_TEXT))
        return nuri_token_list_push(out, (nuri_token)sym->symbol, err);
    return nuri_emit_bytes(v, (const char *)word + sym->start, sym->n, out, err);
}

/* The word in GPT-2 characters, written to the scratch buffer. */
static nuri_status map_word(const nuri_vocab *v, const unsigned char *word, size_t n,
                            nuri_tok_scratch *s, size_t *mapped_len, nuri_error *err) {
    nuri_status st = nuri_scratch_buf(s, n * 2, err); /* each character is 1-2 bytes */
    if (st) return st;
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        size_t cl;
        const char *c = nuri_vocab_symbol_text(v, v->byte_symbol[word[i]], &cl);
        memcpy(s->buf + m, c, cl);
        m += cl;
    }
    *mapped_len = m;
    return NURI_OK;
}

static nuri_status bpe_word(const nuri_vocab *v, const unsigned char *word, size_t n,
                            nuri_tok_scratch *s, nuri_token_list *out, nuri_error *err) {
    nuri_status st;
    if (v->ignore_merges) {
        /* Llama 3's tokenizer takes a word that is itself a token whole,
         * even where the merges would split it differently. */
        size_t m;
        if ((st = map_word(v, word, n, s, &m, err))) return st;
        nuri_token t = nuri_vocab_find_text_token(v, s->buf, m);
        if (t >= 0) return nuri_token_list_push(out, t, err);
    }
    if ((st = nuri_scratch_syms(s, n, err))) return st;
    int32_t n_syms = (int32_t)n;
    for (int32_t i = 0; i < n_syms; i++) {
        nuri_merge_sym *sym = &s->syms[i];
        sym->prev = i - 1;
        sym->next = i + 1 < n_syms ? i + 1 : -1;
        sym->start = (uint32_t)i;
        sym->n = 1;
        sym->symbol = v->byte_symbol[word[i]];
    }
    s->queue.n = 0;
    for (int32_t i = 0; i + 1 < n_syms; i++)
        if ((st = try_pair(v, s, i, i + 1, err))) return st;

    nuri_merge_cand c;
    while (nuri_merge_queue_pop(&s->queue, &c)) {
        nuri_merge_sym *l = &s->syms[c.left], *r = &s->syms[c.right];
        if (l->n == 0 || r->n == 0 || l->next != (int32_t)c.right || l->n + r->n != c.size)
            continue; /* stale: one side has merged since */
        l->symbol = c.result;
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) s->syms[r->next].prev = (int32_t)c.left;
        if ((st = try_pair(v, s, l->prev, (int32_t)c.left, err)) ||
            (st = try_pair(v, s, (int32_t)c.left, s->syms[c.left].next, err)))
            return st;
    }
    for (int32_t i = 0; i >= 0; i = s->syms[i].next)
        if ((st = emit(v, word, &s->syms[i], out, err))) return st;
    return NURI_OK;
}

nuri_status nuri_bpe_tokenize(const nuri_vocab *v, const char *text, size_t len,
                              nuri_tok_scratch *s, nuri_token_list *out, nuri_error *err) {
    size_t *ends = NULL, n_words = 0;
    nuri_status st = nuri_pretokenize(v->pretok, text, len, &ends, &n_words, err);
    if (st) return st;
    size_t start = 0;
    for (size_t w = 0; w < n_words; w++) {
        /* Trust but verify: words must tile the text in order. */
        if (ends[w] <= start || ends[w] > len) {
            st = nuri_fail(err, NURI_ERR_FORMAT, "pre-tokenizer returned a bad word boundary %zu",
                           ends[w]);
            break;
        }
        if ((st = bpe_word(v, (const unsigned char *)text + start, ends[w] - start, s, out, err)))
            break;
        start = ends[w];
    }
    if (!st && start != len)
        st = nuri_fail(err, NURI_ERR_FORMAT, "pre-tokenizer left %zu bytes uncovered", len - start);
    free(ends);
    return st;
}
