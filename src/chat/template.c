/* template.c — the public chat-template API over the Jinja interpreter:
 * parsing, choosing between a model's template and the built-ins, rendering
 * with fallback, and reading templates and special tokens from GGUF files. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat/chat_formats.h"
#include "chat/jinja.h"
#include "chat/template.h"
#include "core/util.h"
#include "gguf/gguf.h"

struct nuri_chat_template {
    jtemplate *tpl;
    char name[16];
    /* The built-in that renders instead when tpl fails (not when it raises). */
    nuri_chat_template *fallback;
};

static void set_warning(char *buf, size_t cap, const char *fmt, const char *a, const char *b) {
    if (buf && cap) snprintf(buf, cap, fmt, a, b);
}

static nuri_status wrap(jtemplate *tpl, const char *name, nuri_chat_template **out, nuri_error *err) {
    nuri_chat_template *t = calloc(1, sizeof *t);
    if (!t) {
        jinja_template_free(tpl);
        return nuri_fail(err, NURI_ERR_NOMEM, "out of memory creating a chat template");
    }
    t->tpl = tpl;
    snprintf(t->name, sizeof t->name, "%s", name);
    *out = t;
    return NURI_OK;
}

nuri_status nuri_chat_template_parse(const char *source, size_t len, nuri_chat_template **out,
                                     nuri_error *err) {
    if (!out) return nuri_fail(err, NURI_ERR_INVALID_ARG, "nuri_chat_template_parse: out is NULL");
    *out = NULL;
    jtemplate *tpl;
    nuri_status st = jinja_parse(source, len, &tpl, err);
    if (st != NURI_OK) return st;
    return wrap(tpl, "custom", out, err);
}

nuri_status nuri_chat_template_builtin(const char *name, nuri_chat_template **out, nuri_error *err) {
    if (!out) return nuri_fail(err, NURI_ERR_INVALID_ARG, "nuri_chat_template_builtin: out is NULL");
    *out = NULL;
    const chat_format *f = chat_format_find(name);
    if (!f)
        return nuri_fail(err, NURI_ERR_INVALID_ARG, "unknown chat template '%s' (built-in: %s)",
                         name ? name : "(null)", nuri_chat_builtin_names());
    jtemplate *tpl;
    nuri_status st = jinja_parse(f->source, strlen(f->source), &tpl, err);
    if (st != NURI_OK) return st;
    return wrap(tpl, f->name, out, err);
}

nuri_status nuri_chat_template_select(const char *model_source, size_t len, const char *name,
                                      nuri_chat_template **out, char *warning, size_t warning_cap,
                                      nuri_error *err) {
    if (warning && warning_cap) warning[0] = 0;
    if (!out) return nuri_fail(err, NURI_ERR_INVALID_ARG, "nuri_chat_template_select: out is NULL");
    *out = NULL;
    if (name) return nuri_chat_template_builtin(name, out, err);
    const char *guess = nuri_chat_builtin_guess(model_source, model_source ? len : 0);
    if (!model_source || len == 0) {
        set_warning(warning, warning_cap, "the model has no chat template; using the built-in '%s'%s", guess, "");
        return nuri_chat_template_builtin(guess, out, err);
    }
    nuri_error perr;
    jtemplate *tpl;
    nuri_status st = jinja_parse(model_source, len, &tpl, &perr);
    if (st == NURI_ERR_NOMEM) {
        if (err) *err = perr;
        return st;
    }
    if (st != NURI_OK) {
        set_warning(warning, warning_cap, "the model's chat template cannot be used (%s); using the built-in '%s'",
                    perr.message, guess);
        return nuri_chat_template_builtin(guess, out, err);
    }
    nuri_chat_template *t = NULL;
    st = wrap(tpl, "model", &t, err);
    if (st != NURI_OK) return st;
    st = nuri_chat_template_builtin(guess, &t->fallback, err);
    if (st != NURI_OK) {
        nuri_chat_template_free(t);
        return st;
    }
    *out = t;
    return NURI_OK;
}

/* The template variables: extra first, then the standard ones on top. */
static json_t *build_vars(const nuri_chat_params *p, nuri_error *err) {
    json_t *vars = p->extra ? json_copy(p->extra) : json_object();
    if (!vars) {
        nuri_fail(err, NURI_ERR_NOMEM, "out of memory building template variables");
        return NULL;
    }
    const char *bos = p->bos_token ? p->bos_token : "", *eos = p->eos_token ? p->eos_token : "";
    json_t *bos_j = json_string(bos), *eos_j = json_string(eos);
    if (!bos_j || !eos_j) {
        json_decref(bos_j);
        json_decref(eos_j);
        json_decref(vars);
        nuri_fail(err, NURI_ERR_INVALID_ARG, "bos_token and eos_token must be valid UTF-8");
        return NULL;
    }
    int rc = json_object_set(vars, "messages", p->messages) |
             json_object_set_new(vars, "add_generation_prompt", json_boolean(p->add_generation_prompt)) |
             json_object_set_new(vars, "bos_token", bos_j) | json_object_set_new(vars, "eos_token", eos_j);
    if (p->tools) rc |= json_object_set(vars, "tools", p->tools);
    if (rc) {
        json_decref(vars);
        nuri_fail(err, NURI_ERR_NOMEM, "out of memory building template variables");
        return NULL;
    }
    return vars;
}

nuri_status nuri_chat_template_render(const nuri_chat_template *t, const nuri_chat_params *p,
                                      char **out, size_t *out_len, nuri_error *err) {
    if (out) *out = NULL;
    if (out_len) *out_len = 0;
    if (p && p->warning && p->warning_cap) p->warning[0] = 0;
    if (!t || !p || !out) return nuri_fail(err, NURI_ERR_INVALID_ARG, "nuri_chat_template_render: NULL argument");
    if (!json_is_array(p->messages))
        return nuri_fail(err, NURI_ERR_INVALID_ARG, "messages must be an array");
    if (p->tools && !json_is_array(p->tools)) return nuri_fail(err, NURI_ERR_INVALID_ARG, "tools must be an array");
    if (p->extra && !json_is_object(p->extra))
        return nuri_fail(err, NURI_ERR_INVALID_ARG, "extra template variables must be an object");
    json_t *vars = build_vars(p, err);
    if (!vars) return err ? err->status : NURI_ERR_NOMEM;
    jrender_params rp = {vars, p->now, 0};
    nuri_error rerr;
    bool raised = false;
    nuri_status st = jinja_render(t->tpl, &rp, out, out_len, &raised, &rerr);
    json_decref(vars);
    if (st == NURI_OK) return NURI_OK;
    if (t->fallback && !raised && (st == NURI_ERR_FORMAT || st == NURI_ERR_UNSUPPORTED)) {
        if (p->warning && p->warning_cap)
            snprintf(p->warning, p->warning_cap, "the model's chat template failed (%s); used the built-in '%s'",
                     rerr.message, t->fallback->name);
        return nuri_chat_template_render(t->fallback, &(nuri_chat_params){
                                             .messages = p->messages, .tools = p->tools, .extra = p->extra,
                                             .add_generation_prompt = p->add_generation_prompt,
                                             .bos_token = p->bos_token, .eos_token = p->eos_token, .now = p->now},
                                         out, out_len, err);
    }
    if (err) *err = rerr;
    return st;
}

const char *nuri_chat_template_name(const nuri_chat_template *t) { return t ? t->name : ""; }

void nuri_chat_template_free(nuri_chat_template *t) {
    if (!t) return;
    nuri_chat_template_free(t->fallback);
    jinja_template_free(t->tpl);
    free(t);
}

/* ---- GGUF ----------------------------------------------------------------- */

static char *dup_str(gguf_str s) {
    if (s.len > SIZE_MAX - 1) return NULL;
    char *p = malloc((size_t)s.len + 1);
    if (!p) return NULL;
    memcpy(p, s.data, (size_t)s.len);
    p[s.len] = 0;
    return p;
}

/* The text of token id (from tokenizer.ggml.tokens), or NULL. */
static nuri_status token_text(const gguf_file *f, const char *id_key, char **out, nuri_error *err) {
    *out = NULL;
    uint32_t id = UINT32_MAX;
    nuri_status st = gguf_get_u32(f, id_key, false, &id, err);
    if (st != NURI_OK || id == UINT32_MAX) return st;
    const gguf_value *tokens;
    st = gguf_get_arr(f, "tokenizer.ggml.tokens", GGUF_TYPE_STRING, false, &tokens, err);
    if (st != NURI_OK || !tokens || id >= tokens->v.arr.n) return st;
    *out = dup_str(tokens->v.arr.strs[id]);
    return *out ? NURI_OK : nuri_fail(err, NURI_ERR_NOMEM, "out of memory reading %s", id_key);
}

nuri_status nuri_chat_gguf_info(const char *path, char **source, size_t *source_len, char **bos,
                                char **eos, nuri_error *err) {
    if (source) *source = NULL;
    if (source_len) *source_len = 0;
    if (bos) *bos = NULL;
    if (eos) *eos = NULL;
    gguf_file *f;
    nuri_status st = gguf_open(path, &f, err);
    if (st != NURI_OK) return st;
    gguf_str tpl = {NULL, 0};
    bool have_tpl = false;
    const gguf_value *v = gguf_get(f, "tokenizer.chat_template");
    if (v && v->type == GGUF_TYPE_STRING) {
        tpl = v->v.str;
        have_tpl = true;
    }
    if (source && have_tpl) {
        *source = dup_str(tpl);
        if (!*source) st = nuri_fail(err, NURI_ERR_NOMEM, "out of memory reading the chat template");
        else if (source_len) *source_len = (size_t)tpl.len;
    }
    if (st == NURI_OK && bos) st = token_text(f, "tokenizer.ggml.bos_token_id", bos, err);
    if (st == NURI_OK && eos) st = token_text(f, "tokenizer.ggml.eos_token_id", eos, err);
    gguf_close(f);
    if (st != NURI_OK) {
        if (source) {
            free(*source);
            *source = NULL;
        }
        if (bos) {
            free(*bos);
            *bos = NULL;
        }
        if (eos) {
            free(*eos);
            *eos = NULL;
        }
    }
    return st;
}
