/* template.h — chat templates: turning a conversation into the prompt text a
 * model was trained on.
 *
 * Models carry their format as a Jinja template (GGUF key
 * tokenizer.chat_template). nuri renders it with its own small, sandboxed
 * Jinja interpreter (src/chat/jinja*.c) that matches Python's jinja2 as
 * Hugging Face configures it, byte for byte on the templates of published
 * models. Built-in formats (llama2, llama3, chatml, mistral, gemma, phi3)
 * stand in when a model has no template or its template cannot be used.
 *
 *     nuri_chat_template *t;
 *     char warning[256];
 *     nuri_chat_template_select(src, len, NULL, &t, warning, sizeof warning, &err);
 *     nuri_chat_params p = {.messages = msgs, .add_generation_prompt = true,
 *                           .bos_token = "<s>", .eos_token = "</s>"};
 *     char *text; size_t n;
 *     if (nuri_chat_template_render(t, &p, &text, &n, &err) == NURI_OK) { ...; free(text); }
 *     nuri_chat_template_free(t);
 *
 * A parsed template is immutable: several threads may render it at once.
 * Templates cannot read files or the environment, and their work, output
 * size and recursion are bounded (see jinja.h), so a hostile template can
 * fail but not hang or crash the process. */
#ifndef NURI_CHAT_TEMPLATE_H
#define NURI_CHAT_TEMPLATE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "nuri.h"

typedef struct nuri_chat_template nuri_chat_template;

typedef struct {
    /* The conversation: an array of objects with "role" and "content" (and
     * whatever else templates read: "tool_calls", "tool_call_id", ...). */
    json_t *messages;
    /* Tool definitions (an array), or NULL to leave `tools` undefined. */
    json_t *tools;
    /* More template variables (an object), or NULL. */
    json_t *extra;
    bool add_generation_prompt;
    const char *bos_token; /* NULL: "" */
    const char *eos_token; /* NULL: "" */
    /* The time strftime_now() shows (its fields are wall-clock values);
     * NULL: the current local time. */
    const struct tm *now;
    /* Out, optional: a one-line note (or "") when the model's template
     * failed and the built-in fallback rendered the text instead. */
    char *warning;
    size_t warning_cap;
} nuri_chat_params;

/* Parses a Jinja chat template. Syntax errors fail with NURI_ERR_FORMAT and
 * a message naming the line. */
nuri_status nuri_chat_template_parse(const char *source, size_t len, nuri_chat_template **out,
                                     nuri_error *err);

/* A built-in format by name; unknown names fail with NURI_ERR_INVALID_ARG. */
nuri_status nuri_chat_template_builtin(const char *name, nuri_chat_template **out, nuri_error *err);

/* "llama2, llama3, chatml, mistral, gemma, phi3" */
const char *nuri_chat_builtin_names(void);

/* The built-in format a template's text resembles (by its special tokens:
 * <|start_header_id|> is llama3, <|im_start|> chatml, ...); "chatml" when
 * nothing matches. */
const char *nuri_chat_builtin_guess(const char *source, size_t len);

/* Picks the template to use:
 *   - name (e.g. from --chat-template) when not NULL: that built-in;
 *   - else the model's template source (may be NULL): parsed, with the
 *     guessed built-in kept as a fallback for render failures;
 *   - if it is missing or does not parse: the guessed built-in, with a
 *     one-line warning in `warning` (which is "" when all is well). */
nuri_status nuri_chat_template_select(const char *model_source, size_t len, const char *name,
                                      nuri_chat_template **out, char *warning, size_t warning_cap,
                                      nuri_error *err);

/* Renders the conversation. *out is malloc'ed and NUL-terminated (*out_len
 * excludes the NUL; the text itself may contain NULs). Errors:
 *   NURI_ERR_INVALID_ARG  the template called raise_exception(): err's
 *                         message is exactly the template's message (for
 *                         instance "Conversation roles must alternate
 *                         user/assistant/user/assistant/..."); also bad params;
 *   NURI_ERR_FORMAT       the template failed (undefined value misused,
 *                         wrong types, ...), with jinja2's wording;
 *   NURI_ERR_UNSUPPORTED  a limit was hit or a feature is not supported.
 * A template chosen by nuri_chat_template_select falls back to its built-in
 * on FORMAT and UNSUPPORTED failures (not on raise_exception, which rejects
 * the conversation itself) and says so in params->warning. */
nuri_status nuri_chat_template_render(const nuri_chat_template *t, const nuri_chat_params *params,
                                      char **out, size_t *out_len, nuri_error *err);

/* Which template this is: a built-in's name, "model" (from
 * nuri_chat_template_select) or "custom" (from nuri_chat_template_parse). */
const char *nuri_chat_template_name(const nuri_chat_template *t);

void nuri_chat_template_free(nuri_chat_template *t);

/* Reads what rendering needs from a GGUF file: tokenizer.chat_template
 * (*source NULL when absent) and the texts of the BOS and EOS tokens
 * (*bos / *eos NULL when the file has none). All malloc'ed; any out pointer
 * may be NULL. */
nuri_status nuri_chat_gguf_info(const char *path, char **source, size_t *source_len, char **bos,
                                char **eos, nuri_error *err);

#endif
