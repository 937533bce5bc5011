/* completions.c — POST /v1/completions and /v1/chat/completions: request
 * validation, prompt building, and the replies (one JSON object, or
 * server-sent events in OpenAI's chunk format).
 *
 * Every field a request may carry is checked for its type and range before
 * anything is queued, so a bad request gets a 400 naming the field and the
 * engine only ever sees jobs that fit in a slot. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "core/util.h"
#include "server/server_impl.h"

/* OpenAI allows 4 stop strings; a few more cost nothing. */
#define MAX_STOPS 16
/* Connections waiting on the engine check their client this often. */
#define WAIT_MS 100

typedef enum { KIND_COMPLETION, KIND_CHAT } req_kind;

/* ---- Chat prompts ----------------------------------------------------------- */

static const char *const known_roles[] = {"system", "user", "assistant", "tool", "developer"};

/* A message's content as plain text (string, or an array of text parts);
 * NULL after replying 400. *present is false for a null or missing content. */
static char *message_text(const srv_request *req, json_t *content, size_t idx, bool *present,
                          size_t *len, srv_result *ret) {
    *present = content && !json_is_null(content);
    *len = 0;
    if (!*present) return strdup("");
    if (json_is_string(content)) {
        char *s = malloc(json_string_length(content) + 1);
        if (s) {
            memcpy(s, json_string_value(content), json_string_length(content) + 1);
            *len = json_string_length(content);
        }
        return s;
    }
    if (!json_is_array(content)) {
        *ret = srv_reply_error(req, 400, "messages", "messages[%zu].content must be a string or an array of "
                               "text parts", idx);
        return NULL;
    }
    size_t total = 1, k;
    json_t *part;
    json_array_foreach(content, k, part) {
        json_t *type = json_object_get(part, "type"), *text = json_object_get(part, "text");
        if (!json_is_object(part) || !json_is_string(type) || strcmp(json_string_value(type), "text") ||
            !json_is_string(text)) {
            *ret = srv_reply_error(req, 400, "messages", "messages[%zu].content[%zu] is not a text part "
                                   "({\"type\": \"text\", \"text\": \"...\"}); only text is supported", idx, k);
            return NULL;
        }
        total += json_string_length(text);
    }
    char *s = malloc(total);
    if (!s) return NULL;
    json_array_foreach(content, k, part) {
        json_t *text = json_object_get(part, "text");
        memcpy(s + *len, json_string_value(text), json_string_length(text));
        *len += json_string_length(text);
    }
    s[*len] = 0;
    return s;
}

bool srv_render_chat(const srv_request *req, json_t *body, char **text, size_t *len, srv_result *ret) {
    const nuri_server *srv = req->srv;
    json_t *msgs = json_object_get(body, "messages");
    if (!msgs) {
        *ret = srv_reply_error(req, 400, "messages", "'messages' is required");
        return false;
    }
    if (!json_is_array(msgs)) {
        *ret = srv_reply_error(req, 400, "messages", "'messages' must be an array of {\"role\", \"content\"} objects");
        return false;
    }
    if (json_array_size(msgs) == 0) {
        *ret = srv_reply_error(req, 400, "messages", "'messages' must not be empty");
        return false;
    }
    bool add_generation_prompt = true;
    json_t *agp = json_object_get(body, "add_generation_prompt");
    if (agp && !json_is_null(agp)) {
        if (!json_is_boolean(agp)) {
            *ret = srv_reply_error(req, 400, "add_generation_prompt", "'add_generation_prompt' must be true or false");
            return false;
        }
        add_generation_prompt = json_is_true(agp);
    }

    /* A copy the template sees: content flattened to a string, "developer"
     * (OpenAI's newer name) shown as "system", which templates know. */
    json_t *conv = json_array();
    size_t i;
    json_t *m;
    json_array_foreach(msgs, i, m) {
        if (!json_is_object(m)) {
            *ret = srv_reply_error(req, 400, "messages", "messages[%zu] must be an object", i);
            json_decref(conv);
            return false;
        }
        json_t *role = json_object_get(m, "role");
        if (!json_is_string(role)) {
            *ret = srv_reply_error(req, 400, "messages", "messages[%zu].role must be a string", i);
            json_decref(conv);
            return false;
        }
        const char *r = json_string_value(role);
        bool known = false;
        for (size_t k = 0; k < sizeof known_roles / sizeof known_roles[0]; k++) known |= !strcmp(r, known_roles[k]);
        if (!known) {
            char shown[64];
            size_t n = json_string_length(role) < 40 ? json_string_length(role) : 40, clean_len;
            char *clean = srv_utf8_clean(r, n, &clean_len);
            snprintf(shown, sizeof shown, "%s%s", clean ? clean : "?", n < json_string_length(role) ? "..." : "");
            free(clean);
            *ret = srv_reply_error(req, 400, "messages", "messages[%zu].role '%s' is unknown: expected system, "
                                   "user, assistant, tool or developer", i, shown);
            json_decref(conv);
            return false;
        }
        bool present;
        size_t content_len;
        char *content = message_text(req, json_object_get(m, "content"), i, &present, &content_len, ret);
        if (!content) {
            json_decref(conv);
            return false;
        }
        bool tool_calls = json_is_array(json_object_get(m, "tool_calls")) &&
                          json_array_size(json_object_get(m, "tool_calls")) > 0;
        if (!tool_calls && (!present || content_len == 0)) {
            *ret = srv_reply_error(req, 400, "messages", "messages[%zu].content is %s", i,
                                   present ? "empty" : "missing");
            free(content);
            json_decref(conv);
            return false;
        }
        json_t *copy = json_copy(m);
        json_object_set_new(copy, "content", json_stringn(content, content_len));
        if (!strcmp(r, "developer")) json_object_set_new(copy, "role", json_string("system"));
        free(content);
        json_array_append_new(conv, copy);
    }

    if (!srv->cfg.chat_template) {
        json_decref(conv);
        *ret = srv_reply_error(req, 500, NULL, "the server has no chat template");
        return false;
    }
    char warning[512] = "";
    nuri_chat_params p = {
        .messages = conv,
        .add_generation_prompt = add_generation_prompt,
        .bos_token = srv->bos_text,
        .eos_token = srv->eos_text,
        .warning = warning,
        .warning_cap = sizeof warning,
    };
    nuri_error err;
    nuri_status st = nuri_chat_template_render(srv->cfg.chat_template, &p, text, len, &err);
    json_decref(conv);
    if (st == NURI_ERR_INVALID_ARG) {
        /* raise_exception(): the template rejects this conversation. */
        *ret = srv_reply_error(req, 400, "messages", "%s", err.message);
        return false;
    }
    if (st != NURI_OK) {
        /* The template works for ordinary conversations (it was parsed at
         * start, with a built-in fallback): a failure comes from this
         * request's content (shape, size). */
        *ret = srv_reply_error(req, st == NURI_ERR_NOMEM ? 500 : 400, "messages",
                               "the chat template cannot render this conversation: %s", err.message);
        return false;
    }
    if (warning[0] && srv->cfg.log_requests) fprintf(stderr, "nuri serve: warning: %s\n", warning);
    return true;
}

/* ---- Request fields ---------------------------------------------------------- */

typedef struct {
    bool stream, include_usage, ignore_eos;
    bool max_tokens_given;
    json_int_t max_tokens;
    nuri_sampler_params sampling;
    const char *stops[MAX_STOPS];
    size_t stop_lens[MAX_STOPS], n_stops;
} gen_params;

/* Optional number in [lo, hi] (null counts as absent). False after a 400. */
static bool opt_number(const srv_request *req, json_t *body, const char *key, double lo, double hi,
                       float *value, srv_result *ret) {
    json_t *v = json_object_get(body, key);
    if (!v || json_is_null(v)) return true;
    if (!json_is_number(v) || !(json_number_value(v) >= lo && json_number_value(v) <= hi)) {
        *ret = srv_reply_error(req, 400, key, "'%s' must be a number from %g to %g", key, lo, hi);
        return false;
    }
    *value = (float)json_number_value(v);
    return true;
}

static bool opt_bool(const srv_request *req, json_t *body, const char *key, bool *value, srv_result *ret) {
    json_t *v = json_object_get(body, key);
    if (!v || json_is_null(v)) return true;
    if (!json_is_boolean(v)) {
        *ret = srv_reply_error(req, 400, key, "'%s' must be true or false", key);
        return false;
    }
    *value = json_is_true(v);
    return true;
}

/* Reads and checks every generation field of the request. */
static bool parse_params(const srv_request *req, json_t *body, gen_params *p, srv_result *ret) {
    const nuri_server *srv = req->srv;
    p->sampling = srv->cfg.sampling;
    if (!opt_bool(req, body, "stream", &p->stream, ret) || !opt_bool(req, body, "ignore_eos", &p->ignore_eos, ret))
        return false;
    json_t *so = json_object_get(body, "stream_options");
    if (so && !json_is_null(so)) {
        if (!json_is_object(so)) {
            *ret = srv_reply_error(req, 400, "stream_options", "'stream_options' must be an object");
            return false;
        }
        if (!opt_bool(req, so, "include_usage", &p->include_usage, ret)) return false;
    }

    /* max_tokens (max_completion_tokens is its newer chat name; n_predict is llama.cpp's). */
    const char *keys[] = {"max_completion_tokens", "max_tokens", "n_predict"};
    for (size_t k = 0; k < 3 && !p->max_tokens_given; k++) {
        json_t *v = json_object_get(body, keys[k]);
        if (!v || json_is_null(v)) continue;
        if (!json_is_integer(v)) {
            *ret = srv_reply_error(req, 400, keys[k], "'%s' must be an integer", keys[k]);
            return false;
        }
        if (json_integer_value(v) <= 0) {
            *ret = srv_reply_error(req, 400, keys[k], "'%s' must be at least 1, got %lld", keys[k],
                                   (long long)json_integer_value(v));
            return false;
        }
        p->max_tokens = json_integer_value(v);
        p->max_tokens_given = true;
    }

    if (!opt_number(req, body, "temperature", 0, 2, &p->sampling.temperature, ret) ||
        !opt_number(req, body, "top_p", 0, 1, &p->sampling.top_p, ret) ||
        !opt_number(req, body, "min_p", 0, 1, &p->sampling.min_p, ret) ||
        !opt_number(req, body, "presence_penalty", -2, 2, &p->sampling.presence_penalty, ret) ||
        !opt_number(req, body, "frequency_penalty", -2, 2, &p->sampling.frequency_penalty, ret) ||
        !opt_number(req, body, "repeat_penalty", 0.01, 100, &p->sampling.repeat_penalty, ret))
        return false;
    json_t *v = json_object_get(body, "top_k");
    if (v && !json_is_null(v)) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 1000000) {
            *ret = srv_reply_error(req, 400, "top_k", "'top_k' must be an integer from 0 (off) to 1000000");
            return false;
        }
        p->sampling.top_k = (int32_t)json_integer_value(v);
    }
    v = json_object_get(body, "seed");
    if (v && !json_is_null(v)) {
        if (!json_is_integer(v)) {
            *ret = srv_reply_error(req, 400, "seed", "'seed' must be an integer");
            return false;
        }
        p->sampling.seed = (uint64_t)json_integer_value(v);
    } else if (srv->cfg.seed >= 0) {
        p->sampling.seed = (uint64_t)srv->cfg.seed;
    } else {
        uint64_t seed = 0;
        if (getrandom(&seed, sizeof seed, GRND_NONBLOCK) != (ssize_t)sizeof seed)
            seed = (uint64_t)time(NULL) ^ ((uint64_t)(nuri_time_sec() * 1e9) << 20);
        p->sampling.seed = seed;
    }
    v = json_object_get(body, "n");
    if (v && !json_is_null(v) && (!json_is_integer(v) || json_integer_value(v) != 1)) {
        *ret = srv_reply_error(req, 400, "n", "only 'n': 1 is supported");
        return false;
    }
    v = json_object_get(body, "model");
    if (v && !json_is_null(v) && !json_is_string(v)) {
        *ret = srv_reply_error(req, 400, "model", "'model' must be a string");
        return false;
    }
    v = json_object_get(body, "logprobs");
    if (v && !json_is_null(v) && !json_is_false(v) && !(json_is_integer(v) && json_integer_value(v) == 0)) {
        *ret = srv_reply_error(req, 400, "logprobs", "'logprobs' is not supported");
        return false;
    }

    json_t *stop = json_object_get(body, "stop");
    if (json_is_string(stop)) {
        p->stops[0] = json_string_value(stop);
        p->stop_lens[0] = json_string_length(stop);
        p->n_stops = 1;
    } else if (json_is_array(stop)) {
        if (json_array_size(stop) > MAX_STOPS) {
            *ret = srv_reply_error(req, 400, "stop", "'stop' may hold at most %d strings", MAX_STOPS);
            return false;
        }
        size_t i;
        json_t *s;
        json_array_foreach(stop, i, s) {
            if (!json_is_string(s)) {
                *ret = srv_reply_error(req, 400, "stop", "stop[%zu] must be a string", i);
                return false;
            }
            p->stops[i] = json_string_value(s);
            p->stop_lens[i] = json_string_length(s);
        }
        p->n_stops = json_array_size(stop);
    } else if (stop && !json_is_null(stop)) {
        *ret = srv_reply_error(req, 400, "stop", "'stop' must be a string or an array of strings");
        return false;
    }
    return true;
}

/* ---- Prompts ------------------------------------------------------------------- */

/* Token ids from a JSON array; false after a 400 when one is not a valid id. */
static bool token_array(const srv_request *req, json_t *arr, nuri_token **out, size_t *n, srv_result *ret) {
    int32_t n_vocab = nuri_model_n_vocab(req->srv->cfg.model);
    size_t count = json_array_size(arr), i;
    json_t *t;
    *out = malloc((count ? count : 1) * sizeof **out);
    if (!*out) {
        *ret = srv_reply_error(req, 500, NULL, "out of memory");
        return false;
    }
    json_array_foreach(arr, i, t) {
        if (!json_is_integer(t) || json_integer_value(t) < 0 || json_integer_value(t) >= n_vocab) {
            free(*out);
            *out = NULL;
            *ret = srv_reply_error(req, 400, "prompt", "prompt token %zu is not a token id from 0 to %d", i,
                                   (int)n_vocab - 1);
            return false;
        }
        (*out)[i] = (nuri_token)json_integer_value(t);
    }
    *n = count;
    return true;
}

/* Moves tokens from nuri_tokenize into malloc'ed memory (NULL when out of
 * memory), so every prompt array here is released with free(). */
static nuri_token *from_nuri_memory(nuri_token *toks, size_t n) {
    nuri_token *copy = malloc((n ? n : 1) * sizeof *copy);
    if (copy && n) memcpy(copy, toks, n * sizeof *copy);
    nuri_free(toks);
    return copy;
}

/* The completion request's prompt as tokens. */
static bool completion_prompt(const srv_request *req, json_t *body, nuri_token **toks, size_t *n, srv_result *ret) {
    json_t *prompt = json_object_get(body, "prompt");
    if (!prompt || json_is_null(prompt)) {
        *ret = srv_reply_error(req, 400, "prompt", "'prompt' is required");
        return false;
    }
    if (json_is_array(prompt) && json_array_size(prompt) > 0 &&
        (json_is_string(json_array_get(prompt, 0)) || json_is_array(json_array_get(prompt, 0)))) {
        if (json_array_size(prompt) > 1) {
            *ret = srv_reply_error(req, 400, "prompt", "only one prompt per request is supported");
            return false;
        }
        prompt = json_array_get(prompt, 0);
    }
    if (json_is_array(prompt)) {
        return token_array(req, prompt, toks, n, ret);
    }
    if (!json_is_string(prompt)) {
        *ret = srv_reply_error(req, 400, "prompt", "'prompt' must be a string, an array of token ids, or an "
                               "array holding one of those");
        return false;
    }
    nuri_error err;
    nuri_token *raw;
    if (nuri_tokenize(req->srv->cfg.model, json_string_value(prompt), json_string_length(prompt),
                      NURI_TOKENIZE_ADD_BOS | NURI_TOKENIZE_PARSE_SPECIAL, &raw, n, &err) != NURI_OK) {
        *ret = srv_reply_error(req, 400, "prompt", "cannot tokenize the prompt: %s", err.message);
        return false;
    }
    if (!(*toks = from_nuri_memory(raw, *n))) {
        *ret = srv_reply_error(req, 500, NULL, "out of memory");
        return false;
    }
    return true;
}

/* The chat request's prompt: the rendered conversation, special tokens
 * parsed, BOS added only when the template did not write it already. */
static bool chat_prompt(const srv_request *req, json_t *body, nuri_token **toks, size_t *n, srv_result *ret) {
    char *text;
    size_t len;
    if (!srv_render_chat(req, body, &text, &len, ret)) return false;
    const nuri_model *m = req->srv->cfg.model;
    nuri_error err;
    nuri_token *raw = NULL, *bos = NULL;
    size_t n_raw = 0, n_bos = 0;
    nuri_status st = nuri_tokenize(m, text, len, NURI_TOKENIZE_PARSE_SPECIAL, &raw, &n_raw, &err);
    free(text);
    if (st == NURI_OK) st = nuri_tokenize(m, "", 0, NURI_TOKENIZE_ADD_BOS, &bos, &n_bos, &err);
    if (st != NURI_OK) {
        nuri_free(raw);
        nuri_free(bos);
        *ret = srv_reply_error(req, 400, "messages", "cannot tokenize the conversation: %s", err.message);
        return false;
    }
    bool add = n_bos == 1 && (n_raw == 0 || raw[0] != bos[0]);
    nuri_token *all = malloc((n_raw + 1) * sizeof *all);
    if (all) {
        if (add) all[0] = bos[0];
        if (n_raw) memcpy(all + add, raw, n_raw * sizeof *raw);
    }
    nuri_free(raw);
    nuri_free(bos);
    *toks = all;
    *n = n_raw + add;
    if (!*toks) {
        *ret = srv_reply_error(req, 500, NULL, "out of memory");
        return false;
    }
    return true;
}

/* ---- Reply objects --------------------------------------------------------------- */

static const char *finish_name(srv_finish f) { return f == SRV_FINISH_LENGTH ? "length" : "stop"; }

static json_t *usage_json(const srv_job_update *u) {
    return json_pack("{s:i, s:i, s:i, s:{s:i}}", "prompt_tokens", (int)u->n_prompt, "completion_tokens",
                     (int)u->n_gen, "total_tokens", (int)(u->n_prompt + u->n_gen), "prompt_tokens_details",
                     "cached_tokens", (int)u->n_cached);
}

/* A JSON string from generated bytes (invalid UTF-8 shown as U+FFFD). */
static json_t *text_json(const char *text, size_t len) {
    size_t n;
    char *clean = srv_utf8_clean(text ? text : "", len, &n);
    json_t *j = clean ? json_stringn(clean, n) : NULL;
    free(clean);
    return j;
}

/* One streamed chunk: text (may be NULL), role chunk, or the final one. */
static json_t *chunk_json(const nuri_server *srv, req_kind kind, const char *id, time_t created,
                          json_t *text, bool role, const char *finish) {
    json_t *choice;
    if (kind == KIND_CHAT) {
        json_t *delta = json_object();
        if (role) {
            json_object_set_new(delta, "role", json_string("assistant"));
            json_object_set_new(delta, "content", json_string(""));
        }
        if (text) json_object_set_new(delta, "content", text);
        choice = json_pack("{s:i, s:o, s:n, s:s?}", "index", 0, "delta", delta, "logprobs", "finish_reason", finish);
    } else {
        choice = json_pack("{s:o, s:i, s:n, s:s?}", "text", text ? text : json_string(""), "index", 0,
                           "logprobs", "finish_reason", finish);
    }
    if (choice && !finish) json_object_set_new(choice, "finish_reason", json_null());
    return json_pack("{s:s, s:s, s:I, s:s, s:s, s:[o]}", "id", id, "object",
                     kind == KIND_CHAT ? "chat.completion.chunk" : "text_completion", "created",
                     (json_int_t)created, "model", srv->model_name, "system_fingerprint", "nuri", "choices",
                     choice);
}

/* ---- Streaming replies ------------------------------------------------------------ */

typedef struct {
    nuri_server *srv;
    srv_job *job;
    struct MHD_Connection *conn;
    req_kind kind;
    bool include_usage, finished, job_done;
    char id[64];
    time_t created;
    char *buf; /* events not yet handed to MHD */
    size_t len, off, cap;
    double t_start;
    int32_t n_gen;
} sse_stream;

/* Appends "data: JSON\n\n" (takes the reference); false when out of memory. */
static bool sse_append(sse_stream *st, json_t *event) {
    char *text = event ? json_dumps(event, JSON_COMPACT) : NULL;
    json_decref(event);
    if (!text) return false;
    size_t n = strlen(text), need = st->len + n + 8;
    if (need > st->cap) {
        size_t cap = st->cap ? st->cap : 1024;
        while (cap < need) cap *= 2;
        char *nb = realloc(st->buf, cap);
        if (!nb) {
            free(text);
            return false;
        }
        st->buf = nb;
        st->cap = cap;
    }
    memcpy(st->buf + st->len, "data: ", 6);
    memcpy(st->buf + st->len + 6, text, n);
    memcpy(st->buf + st->len + 6 + n, "\n\n", 2);
    st->len += n + 8;
    free(text);
    return true;
}

static bool sse_append_raw(sse_stream *st, const char *s) {
    size_t n = strlen(s);
    if (st->len + n > st->cap) {
        size_t cap = st->cap ? st->cap : 1024;
        while (cap < st->len + n) cap *= 2;
        char *nb = realloc(st->buf, cap);
        if (!nb) return false;
        st->buf = nb;
        st->cap = cap;
    }
    memcpy(st->buf + st->len, s, n);
    st->len += n;
    return true;
}

/* Turns one update from the engine into events. */
static bool sse_events(sse_stream *st, srv_job_update *u) {
    bool ok = true;
    if (u->text && u->text_len) {
        json_t *t = text_json(u->text, u->text_len);
        ok = t && sse_append(st, chunk_json(st->srv, st->kind, st->id, st->created, t, false, NULL));
    }
    if (ok && u->done) {
        st->job_done = true;
        st->n_gen = u->n_gen;
        if (u->error_status) {
            /* OpenAI's clients raise an error on an event with "error". */
            ok = sse_append(st, srv_error_json((unsigned)u->error_status, NULL, u->error));
        } else {
            ok = sse_append(st, chunk_json(st->srv, st->kind, st->id, st->created, NULL, false,
                                           finish_name(u->finish)));
            if (ok && st->include_usage) {
                json_t *usage = json_pack("{s:s, s:s, s:I, s:s, s:s, s:[], s:o}", "id", st->id, "object",
                                          st->kind == KIND_CHAT ? "chat.completion.chunk" : "text_completion",
                                          "created", (json_int_t)st->created, "model", st->srv->model_name,
                                          "system_fingerprint", "nuri", "choices", "usage", usage_json(u));
                ok = sse_append(st, usage);
            }
            if (ok) ok = sse_append_raw(st, "data: [DONE]\n\n");
        }
        st->finished = true;
    }
    return ok;
}

/* MHD's content reader: hands out pending events, waiting for the engine
 * when there are none. */
static ssize_t sse_read(void *cls, uint64_t pos, char *out, size_t max) {
    sse_stream *st = cls;
    (void)pos;
    while (st->off == st->len) {
        st->off = st->len = 0;
        if (st->finished) return MHD_CONTENT_READER_END_OF_STREAM;
        srv_job_update u;
        bool got = srv_job_wait(st->job, WAIT_MS, &u);
        if (got) {
            bool ok = sse_events(st, &u);
            free(u.text);
            if (!ok) return MHD_CONTENT_READER_END_WITH_ERROR;
        } else if (srv_client_gone(st->conn)) {
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
    }
    size_t n = st->len - st->off < max ? st->len - st->off : max;
    memcpy(out, st->buf + st->off, n);
    st->off += n;
    return (ssize_t)n;
}

/* The response is gone (stream complete, or the client left): a job still
 * running is cancelled so its slot frees at once. */
static void sse_free(void *cls) {
    sse_stream *st = cls;
    if (!st->job_done) srv_engine_cancel(st->srv->engine, st->job);
    if (st->srv->cfg.log_requests)
        fprintf(stderr, "nuri serve: POST %s stream %s %.3fs generated=%d\n",
                st->kind == KIND_CHAT ? "/v1/chat/completions" : "/v1/completions",
                st->job_done ? "done" : "cancelled", nuri_time_sec() - st->t_start, (int)st->n_gen);
    srv_job_release(st->job);
    free(st->buf);
    free(st);
}

static srv_result reply_stream(const srv_request *req, req_kind kind, bool include_usage, srv_job *job) {
    sse_stream *st = calloc(1, sizeof *st);
    if (!st) {
        srv_engine_cancel(req->srv->engine, job);
        srv_job_release(job);
        return srv_reply_error(req, 500, NULL, "out of memory");
    }
    st->srv = req->srv;
    st->job = job;
    st->conn = req->conn;
    st->kind = kind;
    st->include_usage = include_usage;
    st->created = time(NULL);
    st->t_start = req->t_start;
    srv_new_id(req->srv, kind == KIND_CHAT ? "chatcmpl-" : "cmpl-", st->id, sizeof st->id);
    /* The role chunk goes out at once, so the client sees the stream open
     * even while the request waits for a slot. */
    if (kind == KIND_CHAT)
        sse_append(st, chunk_json(req->srv, kind, st->id, st->created, NULL, true, NULL));
    struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, sse_read, st, sse_free);
    if (!r) {
        sse_free(st);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    MHD_add_response_header(r, "X-Accel-Buffering", "no");
    srv_result ret = MHD_queue_response(req->conn, 200, r);
    MHD_destroy_response(r);
    return ret;
}

/* ---- Non-streaming replies ----------------------------------------------------------- */

static srv_result reply_whole(const srv_request *req, req_kind kind, srv_job *job) {
    char *text = NULL;
    size_t len = 0, cap = 0;
    srv_job_update u;
    double last_check = nuri_time_sec();
    for (;;) {
        bool got = srv_job_wait(job, WAIT_MS, &u);
        if (u.text) {
            if (len + u.text_len > cap) {
                size_t nc = cap ? cap : 1024;
                while (nc < len + u.text_len) nc *= 2;
                char *nt = realloc(text, nc);
                if (!nt) {
                    free(u.text);
                    free(text);
                    srv_engine_cancel(req->srv->engine, job);
                    srv_job_release(job);
                    return srv_reply_error(req, 500, NULL, "out of memory");
                }
                text = nt;
                cap = nc;
            }
            memcpy(text + len, u.text, u.text_len);
            len += u.text_len;
            free(u.text);
        }
        if (u.done) break;
        double now = nuri_time_sec();
        if (!got || now - last_check >= WAIT_MS / 1000.0) {
            last_check = now;
            if (srv_client_gone(req->conn)) {
                srv_engine_cancel(req->srv->engine, job);
                srv_job_release(job);
                free(text);
                return MHD_NO; /* closes the connection */
            }
        }
    }
    srv_job_release(job);
    if (u.error_status) {
        free(text);
        return srv_reply_error(req, (unsigned)u.error_status, NULL, "%s", u.error);
    }
    char id[64];
    srv_new_id(req->srv, kind == KIND_CHAT ? "chatcmpl-" : "cmpl-", id, sizeof id);
    json_t *content = text_json(text, len);
    free(text);
    json_t *choice = kind == KIND_CHAT
                         ? json_pack("{s:i, s:{s:s, s:o}, s:n, s:s}", "index", 0, "message", "role", "assistant",
                                     "content", content, "logprobs", "finish_reason", finish_name(u.finish))
                         : json_pack("{s:o, s:i, s:n, s:s}", "text", content, "index", 0, "logprobs",
                                     "finish_reason", finish_name(u.finish));
    json_t *r = json_pack("{s:s, s:s, s:I, s:s, s:s, s:[o], s:o}", "id", id, "object",
                          kind == KIND_CHAT ? "chat.completion" : "text_completion", "created",
                          (json_int_t)time(NULL), "model", req->srv->model_name, "system_fingerprint", "nuri",
                          "choices", choice, "usage", usage_json(&u));
    return srv_reply_json(req, 200, r);
}

/* ---- The endpoints ---------------------------------------------------------------------- */

static srv_result handle_generation(const srv_request *req, req_kind kind) {
    srv_result ret;
    json_t *body = srv_parse_body(req, &ret);
    if (!body) return ret;
    gen_params p;
    memset(&p, 0, sizeof p);
    nuri_token *toks = NULL;
    size_t n = 0;
    if (!parse_params(req, body, &p, &ret) ||
        !(kind == KIND_CHAT ? chat_prompt(req, body, &toks, &n, &ret) : completion_prompt(req, body, &toks, &n, &ret))) {
        json_decref(body);
        return ret;
    }
    const char *what = kind == KIND_CHAT ? "messages" : "prompt";
    int32_t n_ctx = srv_engine_n_ctx(req->srv->engine);
    if (n == 0) {
        ret = srv_reply_error(req, 400, what, "the prompt is empty");
    } else if (n >= (size_t)n_ctx) {
        ret = srv_reply_error(req, 400, what, "the prompt is %zu tokens long, but a slot's context holds %d "
                              "tokens, including the reply (start the server with a larger -c)", n, (int)n_ctx);
    } else if (p.max_tokens_given && p.max_tokens > (json_int_t)((size_t)n_ctx - n)) {
        ret = srv_reply_error(req, 400, "max_tokens", "the context of a slot holds %d tokens, but %lld were "
                              "requested (%zu in the prompt, %lld for the reply); lower max_tokens to at most %zu",
                              (int)n_ctx, (long long)(p.max_tokens + (json_int_t)n), n, (long long)p.max_tokens,
                              (size_t)n_ctx - n);
    } else {
        srv_job_spec spec = {
            .prompt = toks,
            .n_prompt = n,
            .max_tokens = p.max_tokens_given ? (int32_t)p.max_tokens : (int32_t)((size_t)n_ctx - n),
            .ignore_eos = p.ignore_eos,
            .sampling = p.sampling,
            .stops = p.stops,
            .stop_lens = p.stop_lens,
            .n_stops = p.n_stops,
        };
        srv_job *job = srv_job_create(&spec);
        free(toks);
        json_decref(body); /* the job copied the prompt and the stop strings */
        if (!job) return srv_reply_error(req, 500, NULL, "out of memory");
        srv_submit_result sr = srv_engine_submit(req->srv->engine, job);
        if (sr != SRV_SUBMIT_OK) {
            srv_job_release(job);
            if (sr == SRV_SUBMIT_STOPPING) return srv_reply_error(req, 503, NULL, "the server is shutting down");
            return srv_reply_error(req, 503, NULL, "the server is busy: all %d slots are working and %d requests "
                                   "are waiting; retry later", (int)srv_engine_n_slots(req->srv->engine),
                                   (int)req->srv->cfg.queue_max);
        }
        return p.stream ? reply_stream(req, kind, p.include_usage, job) : reply_whole(req, kind, job);
    }
    free(toks);
    json_decref(body);
    return ret;
}

srv_result srv_handle_completions(const srv_request *req) { return handle_generation(req, KIND_COMPLETION); }

srv_result srv_handle_chat_completions(const srv_request *req) { return handle_generation(req, KIND_CHAT); }
