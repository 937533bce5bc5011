/* spm.c — SentencePiece BPE over a vocabulary with scores ("llama").
 *
 * Spaces become U+2581 ("▁"), the text is split into characters, and the
 * adjacent pair whose concatenation is a token with the highest score is
 * merged, ties to the leftmost, until no pair forms a token. A character
 * left that is no token is emitted as its bytes' <0xXX> tokens. Merged
 * symbols are tokens by construction, so only single characters ever need
 * that fallback. */
#include <string.h>

#include "core/util.h"
#include "tokenizer/tokenizer_impl.h"
#include "tokenizer/unicode.h"

#define SPACE_MARK "\xe2\x96\x81" /* U+2581, SentencePiece's visible space */

/* Queues the merge of symbols left and right if their text is a token. */
static nuri_status try_pair(const nuri_vocab *v, const char *text, nuri_tok_scratch *s,
                            int32_t left, int32_t right, nuri_error *err) {
    if (left < 0 || right < 0) return NURI_OK;
    const nuri_merge_sym *l = &s->syms[left], *r = &s->syms[right];
    nuri_token t = nuri_vocab_find_text_token(v, text + l->start, (size_t)l->n + r->n);
    if (t < 0) return NURI_OK;
    nuri_merge_cand c = {
        .prio = -(double)v->scores[t],
        .left = (uint32_t)left,
        .right = (uint32_t)right,
        .size = l->n + r->n,
        .result = (uint32_t)t,
    };
    return nuri_merge_queue_push(&s->queue, c, err);
}

/* Emits one final symbol: its token, or else its bytes' tokens. */
static nuri_status emit(const nuri_vocab *v, const char *text, const nuri_merge_sym *sym,
                        nuri_token_list *out, nuri_error *err) {
    nuri_token t = nuri_vocab_find_text_token(v, text + sym->start, sym->n);
    if (t >= 0) return nuri_token_list_push(out, t, err);
    return nuri_emit_bytes(v, text + sym->start, sym->n, out, err);
}

nuri_status nuri_spm_tokenize(const nuri_vocab *v, const char *raw, size_t len, bool prefix_space,
                              nuri_tok_scratch *s, nuri_token_list *out, nuri_error *err) {
    nuri_status st;
    /* The escaped text: at most 3 bytes per input byte plus the prefix;
     * the caller bounds len so this cannot overflow. */
    size_t cap = 3 + len * 3;
    if ((st = nuri_scratch_buf(s, cap, err))) return st;
    char *text = s->buf;
    size_t n = 0;
    if (prefix_space) {
        memcpy(text, SPACE_MARK, 3);
        n = 3;
    }
    for (size_t i = 0; i < len; i++) {
        if (raw[i] == ' ') {
            memcpy(text + n, SPACE_MARK, 3);
            n += 3;
        } else {
            text[n++] = raw[i];
        }
    }
    if (n == 0) return NURI_OK;

    /* One symbol per character; an invalid byte is a character of its own. */
    if ((st = nuri_scratch_syms(s, n, err))) return st;
    int32_t n_syms = 0;
    for (size_t i = 0; i < n;) {
        size_t adv;
        nuri_utf8_decode(text + i, n - i, &adv);
        nuri_merge_sym *sym = &s->syms[n_syms];
        sym->prev = n_syms - 1;
        sym->next = n_syms + 1;
        sym->start = (uint32_t)i;
        sym->n = (uint32_t)adv;
        sym->symbol = 0;
        n_syms++;
        i += adv;
    }
    s->syms[n_syms - 1].next = -1;

    s->queue.n = 0;
    for (int32_t i = 0; i + 1 < n_syms; i++)
        if ((st = try_pair(v, text, s, i, i + 1, err))) return st;

    nuri_merge_cand c;
    while (nuri_merge_queue_pop(&s->queue, &c)) {
        nuri_merge_sym *l = &s->syms[c.left], *r = &s->syms[c.right];
        if (l->n == 0 || r->n == 0 || l->next != (int32_t)c.right || l->n + r->n != c.size)
            continue; /* stale: one side has merged since */
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) s->syms[r->next].prev = (int32_t)c.left;
        if ((st = try_pair(v, text, s, l->prev, (int32_t)c.left, err)) ||
            (st = try_pair(v, text, s, (int32_t)c.left, s->syms[c.left].next, err)))
            return st;
    }

    for (int32_t i = 0; i >= 0; i = s->syms[i].next)
        if ((st = emit(v, text, &s->syms[i], out, err))) return st;
    return NURI_OK;
}
