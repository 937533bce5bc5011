/* endpoints.c — the small endpoints: /health, /slots, /v1/models,
 * /tokenize, /detokenize, /apply-template. */
#include <stdlib.h>
#include <string.h>

#include "server/server_impl.h"

srv_result srv_handle_health(const srv_request *req) {
    json_t *st = srv_engine_status_json(req->srv->engine);
    json_t *r = json_pack("{s:s, s:O?, s:O?, s:O?}", "status", "ok", "slots_idle",
                          json_object_get(st, "slots_idle"), "slots_processing",
                          json_object_get(st, "slots_processing"), "queued",
                          json_object_get(st, "queued"));
    json_decref(st);
    return srv_reply_json(req, 200, r);
}

srv_result srv_handle_slots(const srv_request *req) {
    return srv_reply_json(req, 200, srv_engine_status_json(req->srv->engine));
}

srv_result srv_handle_models(const srv_request *req) {
    const nuri_server *srv = req->srv;
    const nuri_model *m = srv->cfg.model;
    json_t *meta = json_pack("{s:s, s:i, s:i, s:i, s:i}", "description", nuri_model_desc(m), "n_vocab",
                             (int)nuri_model_n_vocab(m), "n_ctx_train", (int)nuri_model_n_ctx_train(m),
                             "n_ctx_slot", (int)srv_engine_n_ctx(srv->engine), "n_slots",
                             (int)srv_engine_n_slots(srv->engine));
    json_t *model = json_pack("{s:s, s:s, s:I, s:s, s:o?}", "id", srv->model_name, "object", "model",
                              "created", (json_int_t)srv->started, "owned_by", "nuri", "meta", meta);
    return srv_reply_json(req, 200, json_pack("{s:s, s:[o?]}", "object", "list", "data", model));
}

/* Reads an optional boolean field; false (after replying 400) when it has
 * another type. */
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

srv_result srv_handle_tokenize(const srv_request *req) {
    srv_result ret;
    json_t *body = srv_parse_body(req, &ret);
    if (!body) return ret;
    json_t *content = json_object_get(body, "content");
    bool add_special = false, parse_special = true;
    if (!json_is_string(content)) {
        ret = srv_reply_error(req, 400, "content", "'content' must be a string");
    } else if (opt_bool(req, body, "add_special", &add_special, &ret) &&
               opt_bool(req, body, "parse_special", &parse_special, &ret)) {
        nuri_token *toks = NULL;
        size_t n = 0;
        nuri_error err;
        unsigned flags = (add_special ? NURI_TOKENIZE_ADD_BOS : 0) | (parse_special ? NURI_TOKENIZE_PARSE_SPECIAL : 0);
        if (nuri_tokenize(req->srv->cfg.model, json_string_value(content), json_string_length(content), flags,
                          &toks, &n, &err) != NURI_OK) {
            ret = srv_reply_error(req, 400, "content", "cannot tokenize: %s", err.message);
        } else {
            json_t *arr = json_array();
            for (size_t i = 0; i < n; i++) json_array_append_new(arr, json_integer(toks[i]));
            nuri_free(toks);
            ret = srv_reply_json(req, 200, json_pack("{s:o}", "tokens", arr));
        }
    }
    json_decref(body);
    return ret;
}

srv_result srv_handle_detokenize(const srv_request *req) {
    srv_result ret;
    json_t *body = srv_parse_body(req, &ret);
    if (!body) return ret;
    const nuri_model *m = req->srv->cfg.model;
    json_t *tokens = json_object_get(body, "tokens");
    int32_t n_vocab = nuri_model_n_vocab(m);
    if (!json_is_array(tokens)) {
        ret = srv_reply_error(req, 400, "tokens", "'tokens' must be an array of token ids");
        json_decref(body);
        return ret;
    }
    size_t i;
    json_t *t;
    json_array_foreach(tokens, i, t) {
        if (!json_is_integer(t) || json_integer_value(t) < 0 || json_integer_value(t) >= n_vocab) {
            ret = srv_reply_error(req, 400, "tokens", "tokens[%zu] is not a token id from 0 to %d", i,
                                  (int)n_vocab - 1);
            json_decref(body);
            return ret;
        }
    }
    /* The detokenizer only delays bytes, so the text is exactly as long as
     * the pieces together; it also needs room for the bytes it holds back. */
    size_t total = 16, len = 0;
    json_array_foreach(tokens, i, t) total += nuri_token_to_piece(m, (nuri_token)json_integer_value(t), false, NULL, 0);
    char *text = malloc(total);
    nuri_detokenizer detok = {{0}, 0};
    json_array_foreach(tokens, i, t) {
        if (!text) break;
        len += nuri_detokenize_push(m, &detok, (nuri_token)json_integer_value(t), text + len, total - len);
    }
    if (text) len += nuri_detokenize_flush(&detok, text + len, total - len);
    json_decref(body);
    if (!text) return srv_reply_error(req, 500, NULL, "out of memory");
    size_t clean_len;
    char *clean = srv_utf8_clean(text, len, &clean_len);
    free(text);
    if (!clean) return srv_reply_error(req, 500, NULL, "out of memory");
    ret = srv_reply_json(req, 200, json_pack("{s:s%}", "content", clean, clean_len));
    free(clean);
    return ret;
}

srv_result srv_handle_apply_template(const srv_request *req) {
    srv_result ret;
    json_t *body = srv_parse_body(req, &ret);
    if (!body) return ret;
    char *text;
    size_t len;
    if (srv_render_chat(req, body, &text, &len, &ret)) {
        size_t clean_len;
        char *clean = srv_utf8_clean(text, len, &clean_len);
        free(text);
        ret = clean ? srv_reply_json(req, 200, json_pack("{s:s%}", "prompt", clean, clean_len))
                    : srv_reply_error(req, 500, NULL, "out of memory");
        free(clean);
    }
    json_decref(body);
    return ret;
}
