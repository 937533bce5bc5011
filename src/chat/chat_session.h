/* chat_session.h — one conversation with a model: messages, the prompt the
 * chat template makes of them, and a KV cache reused from turn to turn.
 *
 * Each turn renders the whole conversation, tokenizes it, and compares the
 * tokens with those already in the cache: the common prefix is kept, the
 * cache is cut back to it (nuri_context_seq_truncate) and only the rest is
 * evaluated. A reply is generated one token at a time, so the caller can
 * stream it and stop it at any token:
 *
 *     nuri_chat_session *s;
 *     nuri_chat_session_create(&params, &s, &err);
 *     nuri_chat_session_add_message(s, "user", text, len, &err);
 *     if (nuri_chat_session_prepare(s, &err) != NURI_OK) ...  // CONTEXT_FULL: offer to clear
 *     nuri_chat_end end = NURI_CHAT_GENERATING;
 *     while (end == NURI_CHAT_GENERATING && !interrupted) {
 *         nuri_chat_session_step(s, &text, &n, &end, &err);
 *         show(text, n);
 *     }
 *     nuri_chat_session_end_reply(s, &text, &n, &err);  // the reply joins the conversation
 *     show(text, n);
 *
 * The reply stops at an end-of-generation token, at the template's
 * end-of-turn text when the model writes it as plain text (never shown), at
 * n_predict tokens, or when the context is full. A session is not
 * thread-safe. Sessions on different sequences of one context may take
 * turns, even token by token (each keeps its own copy of its logits), but
 * must not evaluate at the same time. */
#ifndef NURI_CHAT_SESSION_H
#define NURI_CHAT_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "chat/template.h"
#include "nuri.h"

typedef struct nuri_chat_session nuri_chat_session;

typedef struct {
    const nuri_model *model;        /* borrowed */
    nuri_context *ctx;              /* borrowed; the session manages sequence `seq` in it */
    int32_t seq;                    /* the context sequence this conversation uses */
    const nuri_chat_template *tpl;  /* borrowed */
    const char *bos_token;          /* the template's bos_token / eos_token texts; NULL: "" */
    const char *eos_token;
    const char *system;             /* system message, kept across clears; NULL: none */
    nuri_sampler_params sampling;
    int32_t n_predict;              /* most tokens per reply; <= 0: until the context is full */
    bool ignore_eog;                /* never sample end-of-generation tokens (benchmarks,
                                     * tests); the end-of-turn text still ends a reply */
} nuri_chat_session_params;

/* Why a reply ended. */
typedef enum {
    NURI_CHAT_GENERATING = 0,  /* not ended: call step again */
    NURI_CHAT_END_OF_TURN,     /* an end-of-generation token or the end-of-turn text */
    NURI_CHAT_LENGTH,          /* n_predict tokens */
    NURI_CHAT_CONTEXT_FULL,    /* the context has no room for another token */
} nuri_chat_end;

/* Token counts, for diagnostics and tests. */
typedef struct {
    size_t prompt_tokens;      /* tokens of the conversation at the last prepare */
    size_t reused_tokens;      /* of those, how many the cache already held */
    size_t evaluated_tokens;   /* how many prepare evaluated: prompt - reused */
    size_t reply_tokens;       /* tokens generated for the current or last reply */
    uint64_t total_evaluated;  /* every token the session has evaluated */
    size_t cached_tokens;      /* tokens in the session's cache now */
    int32_t n_ctx;             /* the context's room per sequence */
} nuri_chat_stats;

/* Creates a session with an empty conversation (plus the system message)
 * and clears sequence seq of the context. Fails with NURI_ERR_INVALID_ARG on
 * bad params, NURI_ERR_NOMEM when out of memory. */
nuri_status nuri_chat_session_create(const nuri_chat_session_params *params,
                                     nuri_chat_session **out, nuri_error *err);
void nuri_chat_session_free(nuri_chat_session *s);

/* Appends a message ("user", "assistant", "system", ...) to the
 * conversation. The content is copied; it need not be NUL-terminated. */
nuri_status nuri_chat_session_add_message(nuri_chat_session *s, const char *role,
                                          const char *content, size_t len, nuri_error *err);

/* Removes the last message (e.g. a user message whose prompt did not fit). */
void nuri_chat_session_pop_message(nuri_chat_session *s);

/* Number of messages, the system message included. */
size_t nuri_chat_session_n_messages(const nuri_chat_session *s);

/* Forgets the conversation (except the system message) and the cache. */
void nuri_chat_session_clear(nuri_chat_session *s);

/* Renders the conversation with the generation prompt, evaluates the tokens
 * the cache does not hold yet, and starts a reply. Errors:
 *   NURI_ERR_CONTEXT_FULL  the prompt does not fit in the context (nothing
 *                          is truncated silently; the message gives both
 *                          sizes); the cache keeps what it had;
 *   NURI_ERR_INVALID_ARG   the template rejected the conversation
 *                          (raise_exception: its message);
 *   others from rendering, tokenizing or evaluating. */
nuri_status nuri_chat_session_prepare(nuri_chat_session *s, nuri_error *err);

/* Generates one token of the reply. *text / *text_len (pointing into the
 * session, valid until its next call) is the text to show now, possibly
 * empty (bytes of an unfinished UTF-8 character or of a possible end-of-turn
 * text are held back). *end says whether the reply ended. Calling step
 * after the reply ended returns no text and the same end. */
nuri_status nuri_chat_session_step(nuri_chat_session *s, const char **text, size_t *text_len,
                                   nuri_chat_end *end, nuri_error *err);

/* Ends the reply, whether it ended by itself or the caller stops it (e.g. on
 * Ctrl-C): returns the held-back text still to show and adds the whole
 * reply as the assistant's message. Does nothing (no text) when no reply is
 * in progress. */
nuri_status nuri_chat_session_end_reply(nuri_chat_session *s, const char **text,
                                        size_t *text_len, nuri_error *err);

/* The end-of-turn text found in the template ("<|im_end|>", "</s>", ...),
 * "" when the template shows none. */
const char *nuri_chat_session_end_of_turn(const nuri_chat_session *s);

/* The template's last fallback warning ("" when none), e.g. when the
 * model's template failed and a built-in format rendered the prompt. */
const char *nuri_chat_session_warning(const nuri_chat_session *s);

nuri_chat_stats nuri_chat_session_stats(const nuri_chat_session *s);

#endif
