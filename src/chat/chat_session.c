/* chat_session.c — a conversation with a KV cache reused across turns (see
 * chat_session.h). */
#include "chat/chat_session.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "chat/stop.h"
#include "core/util.h"
#include "tokenizer/unicode.h"

struct nuri_chat_session {
    const nuri_model *model;
    nuri_context *ctx;
    int32_t seq;
    const nuri_chat_template *tpl;
    char *bos_text, *eos_text, *system;
    nuri_sampler *sampler;
    int32_t n_predict;
    json_t *messages;

    /* The logits after the session's last evaluation: a copy, so sessions
     * on other sequences of the context may evaluate in between. With
     * ignore_eog the end-of-generation tokens are masked out of it. */
    float *logits;
    bool have_logits;
    nuri_token *eog;
    size_t n_eog;

    nuri_token bos;  /* prepended when the vocabulary adds BOS and the template did not */
    bool add_bos;

    /* The tokens in the cache of sequence seq, in order. */
    nuri_token *cached;
    size_t n_cached, cap_cached;

    char end_of_turn[64];
    nuri_stop *stop;
    char warning[512];

    /* The reply in progress. */
    bool in_reply;
    nuri_chat_end end;
    bool has_pending;      /* `pending` was sampled but is not in the cache yet */
    nuri_token pending;
    nuri_detokenizer detok;
    char *piece;           /* one token's text */
    size_t piece_cap;
    char *reply;           /* the reply's text as shown */
    size_t reply_len, reply_cap;

    nuri_chat_stats stats;
};

/* ---- Small helpers ---------------------------------------------------------- */

static char *dup_or_null(const char *s) {
    if (!s) return NULL;
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

/* A JSON string of text with every byte that is not part of valid UTF-8
 * replaced by U+FFFD (JSON strings must be valid; model output and typed
 * input need not be). NULL when out of memory. */
static json_t *json_text(const char *text, size_t len) {
    uint64_t cap;
    if (!nuri_mul_u64(len, 3, &cap) || !nuri_add_u64(cap, 1, &cap) || cap > SIZE_MAX) return NULL;
    char *clean = malloc((size_t)cap);
    if (!clean) return NULL;
    size_t n = 0;
    for (size_t pos = 0; pos < len;) {
        size_t adv;
        if (nuri_utf8_decode(text + pos, len - pos, &adv) == NURI_UTF8_INVALID) {
            memcpy(clean + n, "\xEF\xBF\xBD", 3);
            n += 3;
            pos += 1;
        } else {
            memcpy(clean + n, text + pos, adv);
            n += adv;
            pos += adv;
        }
    }
    json_t *j = json_stringn(clean, n);
    free(clean);
    return j;
}

static json_t *make_message(const char *role, const char *content, size_t len) {
    json_t *m = json_object();
    json_t *c = json_text(content, len);
    if (!m || !c || json_object_set_new(m, "role", json_string(role)) != 0) {
        json_decref(m);
        json_decref(c);
        return NULL;
    }
    if (json_object_set_new(m, "content", c) != 0) {
        json_decref(m);
        return NULL;
    }
    return m;
}

static bool reserve_tokens(nuri_chat_session *s, size_t n) {
    if (n <= s->cap_cached) return true;
    size_t cap = s->cap_cached ? s->cap_cached : 256;
    while (cap < n) {
        if (cap > SIZE_MAX / 2 / sizeof(nuri_token)) return false;
        cap *= 2;
    }
    nuri_token *t = realloc(s->cached, cap * sizeof *t);
    if (!t) return false;
    s->cached = t;
    s->cap_cached = cap;
    return true;
}

static bool append_reply(nuri_chat_session *s, const char *text, size_t len) {
    if (len > SIZE_MAX - s->reply_len - 1) return false;
    size_t need = s->reply_len + len + 1;
    if (need > s->reply_cap) {
        size_t cap = s->reply_cap ? s->reply_cap : 256;
        while (cap < need) {
            if (cap > SIZE_MAX / 2) return false;
            cap *= 2;
        }
        char *r = realloc(s->reply, cap);
        if (!r) return false;
        s->reply = r;
        s->reply_cap = cap;
    }
    if (len) memcpy(s->reply + s->reply_len, text, len);
    s->reply_len += len;
    s->reply[s->reply_len] = '\0';
    return true;
}

/* Evaluates n tokens at the end of the session's sequence and records them
 * as cached. On failure the cache is cut back to what it held before. */
static nuri_status eval_tokens(nuri_chat_session *s, const nuri_token *tokens, size_t n,
                               nuri_error *err) {
    if (!reserve_tokens(s, s->n_cached + n))
        return nuri_fail(err, NURI_ERR_NOMEM, "chat: out of memory for %zu tokens", s->n_cached + n);
    int32_t *seq_ids = NULL;
    if (s->seq != 0) {
        seq_ids = nuri_malloc_array(n, sizeof *seq_ids);
        if (!seq_ids) return nuri_fail(err, NURI_ERR_NOMEM, "chat: out of memory");
        for (size_t i = 0; i < n; i++) seq_ids[i] = s->seq;
    }
    nuri_batch batch = {.n = n, .tokens = tokens, .seq_ids = seq_ids};
    nuri_status st = nuri_decode(s->ctx, &batch, err);
    free(seq_ids);
    if (st != NURI_OK) {
        nuri_context_seq_truncate(s->ctx, s->seq, (int32_t)s->n_cached);
        s->have_logits = false;
        return st;
    }
    memcpy(s->cached + s->n_cached, tokens, n * sizeof *tokens);
    s->n_cached += n;
    s->stats.total_evaluated += n;
    const float *logits = nuri_logits(s->ctx);
    s->have_logits = logits != NULL;
    if (logits) {
        memcpy(s->logits, logits, (size_t)nuri_model_n_vocab(s->model) * sizeof *logits);
        for (size_t i = 0; i < s->n_eog; i++) s->logits[s->eog[i]] = -INFINITY;
    }
    return NURI_OK;
}

static nuri_status render(nuri_chat_session *s, json_t *messages, bool add_generation_prompt,
                          char **text, size_t *len, char *warning, size_t warning_cap,
                          nuri_error *err) {
    nuri_chat_params p = {
        .messages = messages,
        .add_generation_prompt = add_generation_prompt,
        .bos_token = s->bos_text ? s->bos_text : "",
        .eos_token = s->eos_text ? s->eos_text : "",
        .warning = warning,
        .warning_cap = warning_cap,
    };
    return nuri_chat_template_render(s->tpl, &p, text, len, err);
}

/* Finds the text the template puts after an assistant's message (its first
 * word, e.g. "<|im_end|>" of "<|im_end|>\n"), so a model that writes it as
 * plain text ends its turn there. Leaves "" when the template shows none. */
static void find_end_of_turn(nuri_chat_session *s) {
    static const char mark[] = "NuriReplyMark7";
    s->end_of_turn[0] = '\0';
    json_t *probe = json_array();
    if (!probe) return;
    json_array_append_new(probe, make_message("user", "Hi", 2));
    json_array_append_new(probe, make_message("assistant", mark, sizeof mark - 1));
    char *text = NULL, warning[256];
    size_t len = 0;
    nuri_error err;
    if (json_array_size(probe) == 2 &&
        render(s, probe, false, &text, &len, warning, sizeof warning, &err) == NURI_OK) {
        const char *at = memmem(text, len, mark, sizeof mark - 1);
        if (at) {
            const char *p = at + sizeof mark - 1, *end = text + len;
            while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) p++;
            size_t n = 0;
            while (p + n < end && n + 1 < sizeof s->end_of_turn && p[n] != ' ' && p[n] != '\n' &&
                   p[n] != '\r' && p[n] != '\t' && p[n] != '\0')
                n++;
            memcpy(s->end_of_turn, p, n);
            s->end_of_turn[n] = '\0';
        }
    }
    free(text);
    json_decref(probe);
}

/* ---- Life cycle -------------------------------------------------------------- */

static nuri_status reset_messages(nuri_chat_session *s, nuri_error *err) {
    json_array_clear(s->messages);
    if (s->system) {
        json_t *m = make_message("system", s->system, strlen(s->system));
        if (!m || json_array_append_new(s->messages, m) != 0)
            return nuri_fail(err, NURI_ERR_NOMEM, "chat: out of memory");
    }
    return NURI_OK;
}

nuri_status nuri_chat_session_create(const nuri_chat_session_params *params,
                                     nuri_chat_session **out, nuri_error *err) {
    *out = NULL;
    if (!params || !params->model || !params->ctx || !params->tpl)
        return nuri_fail(err, NURI_ERR_INVALID_ARG, "chat session: model, context and template are required");
    if (params->seq < 0 || params->seq >= nuri_context_n_seq(params->ctx))
        return nuri_fail(err, NURI_ERR_INVALID_ARG, "chat session: sequence %d is not in the context (it has %d)",
                         params->seq, nuri_context_n_seq(params->ctx));
    nuri_chat_session *s = calloc(1, sizeof *s);
    if (!s) return nuri_fail(err, NURI_ERR_NOMEM, "chat session: out of memory");
    s->model = params->model;
    s->ctx = params->ctx;
    s->seq = params->seq;
    s->tpl = params->tpl;
    s->n_predict = params->n_predict;
    s->bos_text = dup_or_null(params->bos_token);
    s->eos_text = dup_or_null(params->eos_token);
    s->system = dup_or_null(params->system);
    s->sampler = nuri_sampler_create(&params->sampling);
    s->messages = json_array();

    /* Room for the longest token's text plus a held-back partial character. */
    int32_t n_vocab = nuri_model_n_vocab(s->model);
    size_t longest = 0;
    for (int32_t t = 0; t < n_vocab; t++) {
        size_t n = nuri_token_to_piece(s->model, t, false, NULL, 0);
        if (n > longest) longest = n;
    }
    s->piece_cap = longest + 64;
    s->piece = malloc(s->piece_cap);
    s->logits = nuri_malloc_array((size_t)n_vocab, sizeof *s->logits);
    bool eog_ok = true;
    if (params->ignore_eog) {
        s->eog = nuri_malloc_array((size_t)n_vocab, sizeof *s->eog);
        eog_ok = s->eog != NULL;
        for (int32_t t = 0; eog_ok && t < n_vocab; t++)
            if (nuri_token_is_eog(s->model, t)) s->eog[s->n_eog++] = t;
    }
    if ((params->bos_token && !s->bos_text) || (params->eos_token && !s->eos_text) ||
        (params->system && !s->system) || !s->sampler || !s->messages || !s->piece || !s->logits || !eog_ok ||
        reset_messages(s, err) != NURI_OK) {
        nuri_chat_session_free(s);
        return nuri_fail(err, NURI_ERR_NOMEM, "chat session: out of memory");
    }

    /* Does the vocabulary add BOS? Ask the tokenizer with an empty text. */
    nuri_token *toks = NULL;
    size_t n_toks = 0;
    s->bos = nuri_token_bos(s->model);
    if (s->bos >= 0 && nuri_tokenize(s->model, "", 0, NURI_TOKENIZE_ADD_BOS, &toks, &n_toks, err) == NURI_OK)
        s->add_bos = n_toks == 1 && toks[0] == s->bos;
    nuri_free(toks);

    find_end_of_turn(s);
    const char *stops[1] = {s->end_of_turn};
    s->stop = nuri_stop_create(stops, NULL, 1);
    if (!s->stop) {
        nuri_chat_session_free(s);
        return nuri_fail(err, NURI_ERR_NOMEM, "chat session: out of memory");
    }
    nuri_context_seq_truncate(s->ctx, s->seq, 0);
    s->stats.n_ctx = nuri_context_n_ctx(s->ctx);
    *out = s;
    return NURI_OK;
}

void nuri_chat_session_free(nuri_chat_session *s) {
    if (!s) return;
    free(s->bos_text);
    free(s->eos_text);
    free(s->system);
    nuri_sampler_free(s->sampler);
    json_decref(s->messages);
    free(s->cached);
    nuri_stop_free(s->stop);
    free(s->piece);
    free(s->reply);
    free(s->eog);
    free(s->logits);
    free(s);
}

nuri_status nuri_chat_session_add_message(nuri_chat_session *s, const char *role,
                                          const char *content, size_t len, nuri_error *err) {
    if (!role || (!content && len))
        return nuri_fail(err, NURI_ERR_INVALID_ARG, "chat session: a message needs a role and content");
    json_t *m = make_message(role, content ? content : "", len);
    if (!m || json_array_append_new(s->messages, m) != 0)
        return nuri_fail(err, NURI_ERR_NOMEM, "chat session: out of memory for a message of %zu bytes", len);
    return NURI_OK;
}

void nuri_chat_session_pop_message(nuri_chat_session *s) {
    size_t n = json_array_size(s->messages);
    if (n > 0) json_array_remove(s->messages, n - 1);
}

size_t nuri_chat_session_n_messages(const nuri_chat_session *s) {
    return json_array_size(s->messages);
}

void nuri_chat_session_clear(nuri_chat_session *s) {
    reset_messages(s, NULL); /* cannot fail: the system message was built once already */
    s->n_cached = 0;
    s->have_logits = false;
    nuri_context_seq_truncate(s->ctx, s->seq, 0);
    nuri_sampler_reset(s->sampler);
    s->in_reply = false;
    s->has_pending = false;
    s->end = NURI_CHAT_GENERATING;
    s->stats.prompt_tokens = s->stats.reused_tokens = s->stats.evaluated_tokens = 0;
    s->stats.reply_tokens = 0;
}

/* ---- A turn ------------------------------------------------------------------ */

nuri_status nuri_chat_session_prepare(nuri_chat_session *s, nuri_error *err) {
    if (s->in_reply) {
        const char *ignored;
        size_t ignored_len;
        nuri_status st = nuri_chat_session_end_reply(s, &ignored, &ignored_len, err);
        if (st != NURI_OK) return st;
    }
    char *text = NULL;
    size_t len = 0;
    s->warning[0] = '\0';
    nuri_status st = render(s, s->messages, true, &text, &len, s->warning, sizeof s->warning, err);
    if (st != NURI_OK) return st;

    nuri_token *toks = NULL;
    size_t n = 0;
    st = nuri_tokenize(s->model, text, len, NURI_TOKENIZE_PARSE_SPECIAL, &toks, &n, err);
    free(text);
    if (st != NURI_OK) return st;
    if (s->add_bos && (n == 0 || toks[0] != s->bos)) {
        nuri_token *with_bos = nuri_malloc_array(n + 1, sizeof *with_bos);
        if (!with_bos) {
            nuri_free(toks);
            return nuri_fail(err, NURI_ERR_NOMEM, "chat: out of memory");
        }
        with_bos[0] = s->bos;
        if (n) memcpy(with_bos + 1, toks, n * sizeof *toks);
        nuri_free(toks);
        toks = (nuri_token *)with_bos;
        n++;
    }
    /* toks is the tokenizer's array or ours; nuri_free releases either. */
    int32_t n_ctx = nuri_context_n_ctx(s->ctx);
    if (n == 0) {
        nuri_free(toks);
        return nuri_fail(err, NURI_ERR_INVALID_ARG, "chat: the conversation renders to no tokens");
    }
    if (n >= (size_t)n_ctx) {
        nuri_free(toks);
        return nuri_fail(err, NURI_ERR_CONTEXT_FULL,
                         "the conversation needs %zu tokens but the context holds %d", n, n_ctx);
    }

    /* Keep the longest common prefix; at least one token must be evaluated
     * to have logits for the reply's first token. */
    size_t keep = 0;
    while (keep < n && keep < s->n_cached && toks[keep] == s->cached[keep]) keep++;
    if (keep == n) keep--;
    s->n_cached = keep;
    nuri_context_seq_truncate(s->ctx, s->seq, (int32_t)keep);
    st = eval_tokens(s, toks + keep, n - keep, err);
    if (st == NURI_OK)
        for (size_t i = keep; i < n; i++) nuri_sampler_accept(s->sampler, toks[i]);
    nuri_free(toks);
    if (st != NURI_OK) return st;

    s->stats.prompt_tokens = n;
    s->stats.reused_tokens = keep;
    s->stats.evaluated_tokens = n - keep;
    s->stats.reply_tokens = 0;
    s->in_reply = true;
    s->end = NURI_CHAT_GENERATING;
    s->has_pending = false;
    s->detok = (nuri_detokenizer){{0}, 0};
    nuri_stop_reset(s->stop);
    s->reply_len = 0;
    return NURI_OK;
}

/* Runs text through the end-of-turn matcher and appends what may be shown to
 * the reply; *shown points at the new part. */
static nuri_status show_text(nuri_chat_session *s, const char *text, size_t len, const char **shown,
                             size_t *shown_len, bool *matched, nuri_error *err) {
    const char *out;
    size_t out_len;
    size_t before = s->reply_len;
    if (!nuri_stop_feed(s->stop, text, len, &out, &out_len, matched) || !append_reply(s, out, out_len))
        return nuri_fail(err, NURI_ERR_NOMEM, "chat: out of memory for the reply");
    *shown = s->reply + before;
    *shown_len = out_len;
    return NURI_OK;
}

nuri_status nuri_chat_session_step(nuri_chat_session *s, const char **text, size_t *text_len,
                                   nuri_chat_end *end, nuri_error *err) {
    *text = "";
    *text_len = 0;
    *end = s->end;
    if (!s->in_reply && s->end == NURI_CHAT_GENERATING)
        return nuri_fail(err, NURI_ERR_INVALID_ARG, "chat: no reply in progress (call prepare first)");
    if (!s->in_reply || s->end != NURI_CHAT_GENERATING) return NURI_OK;

    if (s->has_pending) {
        if (s->n_cached >= (size_t)nuri_context_n_ctx(s->ctx)) {
            *end = s->end = NURI_CHAT_CONTEXT_FULL;
            return NURI_OK;
        }
        nuri_status st = eval_tokens(s, &s->pending, 1, err);
        if (st != NURI_OK) return st;
        s->has_pending = false;
    }
    if (!s->have_logits) return nuri_fail(err, NURI_ERR_INVALID_ARG, "chat: no logits to sample from");
    nuri_token next = nuri_sampler_sample(s->sampler, s->logits, nuri_model_n_vocab(s->model));
    if (next < 0) return nuri_fail(err, NURI_ERR_INVALID_ARG, "chat: no logits to sample from");
    s->stats.reply_tokens++;
    if (nuri_token_is_eog(s->model, next)) {
        *end = s->end = NURI_CHAT_END_OF_TURN;
        return NURI_OK;
    }
    size_t n = nuri_detokenize_push(s->model, &s->detok, next, s->piece, s->piece_cap);
    bool matched = false;
    nuri_status st = show_text(s, s->piece, n, text, text_len, &matched, err);
    if (st != NURI_OK) return st;
    if (matched) {
        *end = s->end = NURI_CHAT_END_OF_TURN;
        return NURI_OK;
    }
    s->pending = next;
    s->has_pending = true;
    if (s->n_predict > 0 && s->stats.reply_tokens >= (size_t)s->n_predict)
        *end = s->end = NURI_CHAT_LENGTH;
    return NURI_OK;
}

nuri_status nuri_chat_session_end_reply(nuri_chat_session *s, const char **text,
                                        size_t *text_len, nuri_error *err) {
    *text = "";
    *text_len = 0;
    if (!s->in_reply) return NURI_OK;
    size_t before = s->reply_len;
    if (nuri_stop_which(s->stop) < 0) {
        size_t n = nuri_detokenize_flush(&s->detok, s->piece, s->piece_cap);
        const char *shown, *held;
        size_t shown_len;
        bool matched;
        nuri_status st = show_text(s, s->piece, n, &shown, &shown_len, &matched, err);
        if (st != NURI_OK) return st;
        size_t n_held = nuri_stop_flush(s->stop, &held);
        if (!append_reply(s, held, n_held))
            return nuri_fail(err, NURI_ERR_NOMEM, "chat: out of memory for the reply");
    }
    nuri_status st = nuri_chat_session_add_message(s, "assistant", s->reply, s->reply_len, err);
    if (st != NURI_OK) return st;
    s->in_reply = false;
    if (s->end == NURI_CHAT_GENERATING) s->end = NURI_CHAT_END_OF_TURN;
    *text = s->reply + before;
    *text_len = s->reply_len - before;
    return NURI_OK;
}

/* ---- Queries ----------------------------------------------------------------- */

const char *nuri_chat_session_end_of_turn(const nuri_chat_session *s) { return s->end_of_turn; }

const char *nuri_chat_session_warning(const nuri_chat_session *s) { return s->warning; }

nuri_chat_stats nuri_chat_session_stats(const nuri_chat_session *s) {
    nuri_chat_stats st = s->stats;
    st.cached_tokens = s->n_cached;
    return st;
}
