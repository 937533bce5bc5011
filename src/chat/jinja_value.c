/* jinja_value.c — what values mean: Python's str() and repr() spellings,
 * ==, ordering, truthiness, type names, UTF-8 string helpers and tojson.
 *
 * Chat templates print numbers, None, True/False and sometimes whole lists
 * or dicts, so each spelling follows CPython: floats in their shortest
 * round-trip form ("0.1", "1e+20", "1.0"), strings in repr() quoted with
 * '...' unless they hold a ' and no ", non-printable characters escaped. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat/jinja.h"
#include "tokenizer/unicode.h"

/* ---- Buffers ---------------------------------------------------------------- */

bool jbuf_put(jstate *st, jbuf *b, const char *s, size_t n) {
    if (n == 0) return true;
    if (n > JINJA_MAX_OUTPUT || b->len + n > JINJA_MAX_OUTPUT)
        return jinja_fail(st, NURI_ERR_UNSUPPORTED, "template output exceeds %u bytes",
                          JINJA_MAX_OUTPUT);
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *nd = realloc(b->data, cap);
        if (!nd) return jinja_fail(st, NURI_ERR_NOMEM, "out of memory rendering a template");
        b->data = nd;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = 0;
    return true;
}

bool jbuf_puts(jstate *st, jbuf *b, const char *s) { return jbuf_put(st, b, s, strlen(s)); }

void jbuf_free(jbuf *b) {
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

/* ---- UTF-8 and character classes -------------------------------------------- */

uint32_t utf8_next(const char *s, size_t n, size_t *pos) {
    size_t adv;
    uint32_t cp = nuri_utf8_decode(s + *pos, n - *pos, &adv);
    *pos += adv ? adv : 1;
    return cp;
}

size_t utf8_count(const char *s, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += ((unsigned char)s[i] & 0xC0) != 0x80;
    return k;
}

size_t utf8_offset(const char *s, size_t n, size_t index) {
    size_t i = 0, k = 0;
    while (i < n) {
        if (((unsigned char)s[i] & 0xC0) != 0x80) {
            if (k == index) return i;
            k++;
        }
        i++;
    }
    return n;
}

bool py_isspace(uint32_t cp) {
    return (cp >= 0x1C && cp <= 0x1F) || nuri_unicode_is_white_space(cp);
}

bool py_isprintable(uint32_t cp) {
    if (cp == ' ') return true;
    unsigned f = nuri_unicode_flags(cp);
    return f != 0 && !(f & (NURI_UCAT_OTHER | NURI_UCAT_SEPARATOR));
}

/* Simple case mappings for the scripts chat templates meet: ASCII, Latin-1,
 * Latin Extended-A, Greek, Cyrillic, fullwidth Latin. Other characters are
 * left as they are (CPython maps every cased script; see the report). */
uint32_t py_upper(uint32_t c) {
    if (c < 0x80) return (c >= 'a' && c <= 'z') ? c - 32 : c;
    if (c >= 0xE0 && c <= 0xFE && c != 0xF7) return c - 32;
    if (c == 0xFF) return 0x178;
    if (c == 0xB5) return 0x39C;
    if (c >= 0x100 && c <= 0x137) return c & ~1u;
    if (c >= 0x139 && c <= 0x148) return (c & 1) ? c : c - 1;
    if (c >= 0x14A && c <= 0x177) return c & ~1u;
    if (c >= 0x179 && c <= 0x17E) return (c & 1) ? c : c - 1;
    if (c == 0x17F) return 'S';
    if (c == 0x131) return 'I';
    if (c >= 0x3B1 && c <= 0x3C9) return c == 0x3C2 ? 0x3A3 : c - 32;
    if (c == 0x3AC) return 0x386;
    if (c >= 0x3AD && c <= 0x3AF) return c - 37;
    if (c == 0x3CC) return 0x38C;
    if (c == 0x3CD || c == 0x3CE) return c - 63;
    if (c >= 0x430 && c <= 0x44F) return c - 32;
    if (c >= 0x450 && c <= 0x45F) return c - 80;
    if ((c >= 0x460 && c <= 0x481) || (c >= 0x48A && c <= 0x4BF)) return c & ~1u;
    if (c >= 0xFF41 && c <= 0xFF5A) return c - 32;
    return c;
}

uint32_t py_lower(uint32_t c) {
    if (c < 0x80) return (c >= 'A' && c <= 'Z') ? c + 32 : c;
    if (c >= 0xC0 && c <= 0xDE && c != 0xD7) return c + 32;
    if (c == 0x178) return 0xFF;
    if (c >= 0x100 && c <= 0x137 && c != 0x130) return c | 1u;
    if (c >= 0x139 && c <= 0x148) return (c & 1) ? c + 1 : c;
    if (c >= 0x14A && c <= 0x177) return c | 1u;
    if (c >= 0x179 && c <= 0x17E) return (c & 1) ? c + 1 : c;
    if (c >= 0x391 && c <= 0x3A9 && c != 0x3A2) return c + 32;
    if (c == 0x386) return 0x3AC;
    if (c >= 0x388 && c <= 0x38A) return c + 37;
    if (c == 0x38C) return 0x3CC;
    if (c == 0x38E || c == 0x38F) return c + 63;
    if (c >= 0x410 && c <= 0x42F) return c + 32;
    if (c >= 0x400 && c <= 0x40F) return c + 80;
    if ((c >= 0x460 && c <= 0x481) || (c >= 0x48A && c <= 0x4BF)) return c | 1u;
    if (c >= 0xFF21 && c <= 0xFF3A) return c + 32;
    return c;
}

/* ---- Construction -------------------------------------------------------------- */

void jv_drop(jv *v) {
    if (v->j) json_decref(v->j);
    *v = jv_undef();
}

jv jv_dup(const jv *v) {
    jv r = *v;
    if (r.j) json_incref(r.j);
    return r;
}

bool jv_make_str(jstate *st, const char *s, size_t n, jv *out) {
    *out = jv_undef();
    if (n > JINJA_MAX_OUTPUT)
        return jinja_fail(st, NURI_ERR_UNSUPPORTED, "string longer than %u bytes", JINJA_MAX_OUTPUT);
    if (!jinja_charge(st, n + 16)) return false;
    json_t *j = json_stringn_nocheck(s ? s : "", n);
    if (!j) return jinja_fail(st, NURI_ERR_NOMEM, "out of memory rendering a template");
    *out = jv_data(j);
    return true;
}

bool jv_make_int(jstate *st, int64_t i, jv *out) {
    json_t *j = json_integer(i);
    if (!j) return jinja_fail(st, NURI_ERR_NOMEM, "out of memory rendering a template");
    *out = jv_data(j);
    return true;
}

bool jv_make_real(jstate *st, double d, jv *out) {
    *out = jv_undef();
    if (!isfinite(d))
        return jinja_fail(st, NURI_ERR_FORMAT, "float result is not finite (%s)", isnan(d) ? "nan" : "inf");
    json_t *j = json_real(d);
    if (!j) return jinja_fail(st, NURI_ERR_NOMEM, "out of memory rendering a template");
    *out = jv_data(j);
    return true;
}

jv jv_bool(bool b) { return jv_data(json_boolean(b)); }
jv jv_none(void) { return jv_data(json_null()); }

bool jv_undef_msg(jstate *st, jv *out, const char *fmt, ...) {
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    *out = jv_undef();
    /* Messages are built from valid UTF-8 pieces but vsnprintf may cut one;
     * json_string validates and refuses such a cut. */
    json_t *j = json_string(msg);
    if (!j) j = json_string("undefined value");
    if (!j) return jinja_fail(st, NURI_ERR_NOMEM, "out of memory rendering a template");
    out->j = j;
    return true;
}

void jv_undef_message(const jv *v, char *buf, size_t cap) {
    if (v->j && json_is_string(v->j)) snprintf(buf, cap, "%s", json_string_value(v->j));
    else if (v->p) snprintf(buf, cap, "'%s' is undefined", (const char *)v->p);
    else snprintf(buf, cap, "undefined value");
}

/* ---- Classification ------------------------------------------------------------- */

bool jv_is_str(const jv *v) { return v->kind == JV_DATA && json_is_string(v->j); }
bool jv_is_int(const jv *v) { return v->kind == JV_DATA && (json_is_integer(v->j) || json_is_boolean(v->j)); }
bool jv_is_num(const jv *v) { return v->kind == JV_DATA && (json_is_number(v->j) || json_is_boolean(v->j)); }
bool jv_is_list(const jv *v) { return v->kind == JV_DATA && json_is_array(v->j); }
bool jv_is_dict(const jv *v) { return v->kind == JV_DATA && json_is_object(v->j); }

double jv_num(const jv *v) {
    if (json_is_boolean(v->j)) return json_is_true(v->j) ? 1.0 : 0.0;
    return json_number_value(v->j);
}

int64_t jv_int(const jv *v) {
    if (json_is_boolean(v->j)) return json_is_true(v->j) ? 1 : 0;
    return (int64_t)json_integer_value(v->j);
}

const char *jv_str(const jv *v) { return jv_is_str(v) ? json_string_value(v->j) : NULL; }
size_t jv_strlen(const jv *v) { return jv_is_str(v) ? json_string_length(v->j) : 0; }

const char *json_type_name(const json_t *j) {
    switch (json_typeof(j)) {
    case JSON_OBJECT: return "dict";
    case JSON_ARRAY: return "list";
    case JSON_STRING: return "str";
    case JSON_INTEGER: return "int";
    case JSON_REAL: return "float";
    case JSON_TRUE: case JSON_FALSE: return "bool";
    case JSON_NULL: return "NoneType";
    }
    return "object";
}

const char *jv_type_name(const jv *v) {
    switch ((jv_kind)v->kind) {
    case JV_UNDEF: return "Undefined";
    case JV_DATA: return (v->flags & JV_GEN) ? "generator" : json_type_name(v->j);
    case JV_NS: return "Namespace";
    case JV_MACRO: return "Macro";
    case JV_FUNC: return "function";
    case JV_METHOD: return "builtin_function_or_method";
    case JV_LOOP: return "LoopContext";
    }
    return "object";
}

bool jv_truthy(const jv *v) {
    if (v->kind == JV_UNDEF) return false;
    if (v->kind != JV_DATA) return true;
    if (v->flags & JV_GEN) return true; /* a generator object is always true */
    const json_t *j = v->j;
    switch (json_typeof(j)) {
    case JSON_NULL: case JSON_FALSE: return false;
    case JSON_TRUE: return true;
    case JSON_INTEGER: return json_integer_value(j) != 0;
    case JSON_REAL: return json_real_value(j) != 0.0;
    case JSON_STRING: return json_string_length(j) > 0;
    case JSON_ARRAY: return json_array_size(j) > 0;
    case JSON_OBJECT: return json_object_size(j) > 0;
    }
    return true;
}

/* ---- Equality and ordering ---------------------------------------------------- */

static bool is_numberish(const json_t *j) { return json_is_number(j) || json_is_boolean(j); }
static double numval(const json_t *j) {
    if (json_is_boolean(j)) return json_is_true(j) ? 1.0 : 0.0;
    return json_number_value(j);
}
static bool both_ints(const json_t *a, const json_t *b) {
    return (json_is_integer(a) || json_is_boolean(a)) && (json_is_integer(b) || json_is_boolean(b));
}
static int64_t intval(const json_t *j) {
    if (json_is_boolean(j)) return json_is_true(j) ? 1 : 0;
    return (int64_t)json_integer_value(j);
}

/* work counts nodes and string bytes compared, so that callers can charge
 * the render's step budget for large comparisons. */
static bool py_equal_depth(const json_t *a, const json_t *b, int depth, uint64_t *work) {
    ++*work;
    if (a == b) return true;
    if (depth > JINJA_MAX_WALK_DEPTH) return false;
    if (is_numberish(a) && is_numberish(b)) {
        if (both_ints(a, b)) return intval(a) == intval(b);
        return numval(a) == numval(b);
    }
    if (json_typeof(a) != json_typeof(b)) return false;
    switch (json_typeof(a)) {
    case JSON_NULL: return true;
    case JSON_STRING:
        *work += json_string_length(a) / 32;
        return json_string_length(a) == json_string_length(b) &&
               !memcmp(json_string_value(a), json_string_value(b), json_string_length(a));
    case JSON_ARRAY: {
        size_t n = json_array_size(a);
        if (n != json_array_size(b)) return false;
        for (size_t i = 0; i < n; i++)
            if (!py_equal_depth(json_array_get(a, i), json_array_get(b, i), depth + 1, work)) return false;
        return true;
    }
    case JSON_OBJECT: {
        if (json_object_size(a) != json_object_size(b)) return false;
        const char *k;
        json_t *va;
        json_object_foreach((json_t *)a, k, va) {
            json_t *vb = json_object_get(b, k);
            if (!vb || !py_equal_depth(va, vb, depth + 1, work)) return false;
        }
        return true;
    }
    default: return false;
    }
}

bool json_py_equal(jstate *st, const json_t *a, const json_t *b) {
    uint64_t work = 0;
    bool eq = py_equal_depth(a, b, 0, &work);
    jinja_steps(st, work); /* past the budget, the render fails at its next step */
    return eq;
}

bool jv_equal(jstate *st, const jv *a, const jv *b) {
    if (a->kind != b->kind) return false;
    switch ((jv_kind)a->kind) {
    case JV_UNDEF: return true;
    case JV_DATA:
        if ((a->flags | b->flags) & JV_GEN) return a->j == b->j;
        return json_py_equal(st, a->j, b->j);
    case JV_NS: return a->j == b->j;
    case JV_MACRO: return a->p == b->p && a->q == b->q;
    case JV_FUNC: return a->id == b->id;
    case JV_METHOD: return a->id == b->id && a->j == b->j;
    case JV_LOOP: return a->p == b->p;
    }
    return false;
}

static bool py_compare_depth(jstate *st, const json_t *a, const json_t *b, const char *op, int *cmp,
                             int depth) {
    if (!jinja_steps(st, 1)) return false;
    if (depth > JINJA_MAX_WALK_DEPTH)
        return jinja_fail(st, NURI_ERR_UNSUPPORTED, "values nested too deeply to compare");
    if (is_numberish(a) && is_numberish(b)) {
        if (both_ints(a, b)) {
            int64_t x = intval(a), y = intval(b);
            *cmp = x < y ? -1 : x > y;
        } else {
            double x = numval(a), y = numval(b);
            *cmp = x < y ? -1 : x > y;
        }
        return true;
    }
    if (json_is_string(a) && json_is_string(b)) {
        /* UTF-8 byte order is code point order. */
        size_t la = json_string_length(a), lb = json_string_length(b);
        if (!jinja_steps(st, (la < lb ? la : lb) / 32)) return false;
        int c = memcmp(json_string_value(a), json_string_value(b), la < lb ? la : lb);
        *cmp = c < 0 ? -1 : c > 0 ? 1 : la < lb ? -1 : la > lb;
        return true;
    }
    if (json_is_array(a) && json_is_array(b)) {
        size_t na = json_array_size(a), nb = json_array_size(b);
        for (size_t i = 0; i < na && i < nb; i++) {
            json_t *x = json_array_get(a, i), *y = json_array_get(b, i);
            if (json_py_equal(st, x, y)) continue;
            return py_compare_depth(st, x, y, op, cmp, depth + 1);
        }
        *cmp = na < nb ? -1 : na > nb;
        return true;
    }
    return jinja_fail(st, NURI_ERR_FORMAT, "'%s' not supported between instances of '%s' and '%s'", op,
                      json_type_name(a), json_type_name(b));
}

bool json_py_compare(jstate *st, const json_t *a, const json_t *b, const char *op, int *cmp) {
    return py_compare_depth(st, a, b, op, cmp, 0);
}

bool jv_compare(jstate *st, const jv *a, const jv *b, const char *op, int *cmp) {
    if (a->kind == JV_DATA && b->kind == JV_DATA && !((a->flags | b->flags) & JV_GEN))
        return json_py_compare(st, a->j, b->j, op, cmp);
    if (a->kind == JV_UNDEF || b->kind == JV_UNDEF) {
        char msg[300];
        jv_undef_message(a->kind == JV_UNDEF ? a : b, msg, sizeof msg);
        return jinja_fail(st, NURI_ERR_FORMAT, "%s", msg);
    }
    return jinja_fail(st, NURI_ERR_FORMAT, "'%s' not supported between instances of '%s' and '%s'", op,
                      jv_type_name(a), jv_type_name(b));
}

/* ---- Printing ------------------------------------------------------------------ */

size_t py_float_repr(double d, char *buf) {
    if (isnan(d)) return (size_t)snprintf(buf, 32, "nan");
    if (isinf(d)) return (size_t)snprintf(buf, 32, d < 0 ? "-inf" : "inf");
    /* Shortest digits that read back as d. */
    char tmp[40];
    int prec;
    for (prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*e", prec - 1, d);
        if (strtod(tmp, NULL) == d) break;
    }
    /* tmp: [-]d[.ddd]e[+-]xx */
    char digits[24];
    size_t nd = 0;
    const char *s = tmp;
    bool neg = *s == '-';
    if (neg) s++;
    while (*s && *s != 'e') {
        if (*s != '.') digits[nd++] = *s;
        s++;
    }
    int exp10 = atoi(s + 1);
    while (nd > 1 && digits[nd - 1] == '0') nd--; /* %.Ne pads with zeros */
    char *o = buf;
    if (neg) *o++ = '-';
    if (exp10 >= -4 && exp10 < 16) {
        if (exp10 >= 0) {
            for (int i = 0; i <= exp10; i++) *o++ = (size_t)i < nd ? digits[i] : '0';
            *o++ = '.';
            if ((size_t)exp10 + 1 < nd) {
                for (size_t i = (size_t)exp10 + 1; i < nd; i++) *o++ = digits[i];
            } else {
                *o++ = '0';
            }
        } else {
            *o++ = '0';
            *o++ = '.';
            for (int i = 0; i < -exp10 - 1; i++) *o++ = '0';
            for (size_t i = 0; i < nd; i++) *o++ = digits[i];
        }
        *o = 0;
    } else {
        *o++ = digits[0];
        if (nd > 1) {
            *o++ = '.';
            for (size_t i = 1; i < nd; i++) *o++ = digits[i];
        }
        o += sprintf(o, "e%c%02d", exp10 < 0 ? '-' : '+', exp10 < 0 ? -exp10 : exp10);
    }
    return (size_t)(o - buf);
}

static bool repr_string(jstate *st, const char *s, size_t n, jbuf *out) {
    bool has_single = memchr(s, '\'', n) != NULL, has_double = memchr(s, '"', n) != NULL;
    char quote = (has_single && !has_double) ? '"' : '\'';
    if (!jbuf_put(st, out, &quote, 1)) return false;
    size_t pos = 0, run = 0;
    while (pos < n) {
        size_t start = pos;
        uint32_t cp = utf8_next(s, n, &pos);
        char esc[16];
        const char *rep = NULL;
        if (cp == '\\') rep = "\\\\";
        else if (cp == (uint32_t)quote) rep = quote == '\'' ? "\\'" : "\\\"";
        else if (cp == '\n') rep = "\\n";
        else if (cp == '\r') rep = "\\r";
        else if (cp == '\t') rep = "\\t";
        else if (!py_isprintable(cp)) {
            if (cp < 0x100) snprintf(esc, sizeof esc, "\\x%02x", cp);
            else if (cp < 0x10000) snprintf(esc, sizeof esc, "\\u%04x", cp);
            else snprintf(esc, sizeof esc, "\\U%08x", cp);
            rep = esc;
        }
        if (!rep) {
            run += pos - start;
            continue;
        }
        if (!jbuf_put(st, out, s + start - run, run) || !jbuf_puts(st, out, rep)) return false;
        run = 0;
    }
    return jbuf_put(st, out, s + n - run, run) && jbuf_put(st, out, &quote, 1);
}

static bool print_json(jstate *st, const json_t *j, bool repr, jbuf *out, int depth);

static bool print_container(jstate *st, const json_t *j, jbuf *out, int depth) {
    if (depth > JINJA_MAX_WALK_DEPTH)
        return jinja_fail(st, NURI_ERR_UNSUPPORTED, "value nested too deeply to print");
    if (json_is_array(j)) {
        if (!jbuf_put(st, out, "[", 1)) return false;
        for (size_t i = 0; i < json_array_size(j); i++) {
            if (i && !jbuf_put(st, out, ", ", 2)) return false;
            if (!print_json(st, json_array_get(j, i), true, out, depth + 1)) return false;
        }
        return jbuf_put(st, out, "]", 1);
    }
    if (!jbuf_put(st, out, "{", 1)) return false;
    const char *k;
    size_t klen;
    json_t *v;
    bool first = true;
    json_object_keylen_foreach((json_t *)j, k, klen, v) {
        if (!first && !jbuf_put(st, out, ", ", 2)) return false;
        first = false;
        if (!repr_string(st, k, klen, out) || !jbuf_put(st, out, ": ", 2) ||
            !print_json(st, v, true, out, depth + 1))
            return false;
    }
    return jbuf_put(st, out, "}", 1);
}

static bool print_json(jstate *st, const json_t *j, bool repr, jbuf *out, int depth) {
    char buf[40];
    if (j == jinja_undef_marker(st)) return jbuf_puts(st, out, "Undefined");
    switch (json_typeof(j)) {
    case JSON_NULL: return jbuf_puts(st, out, "None");
    case JSON_TRUE: return jbuf_puts(st, out, "True");
    case JSON_FALSE: return jbuf_puts(st, out, "False");
    case JSON_INTEGER:
        snprintf(buf, sizeof buf, "%" JSON_INTEGER_FORMAT, json_integer_value(j));
        return jbuf_puts(st, out, buf);
    case JSON_REAL: return jbuf_put(st, out, buf, py_float_repr(json_real_value(j), buf));
    case JSON_STRING:
        if (repr) return repr_string(st, json_string_value(j), json_string_length(j), out);
        return jbuf_put(st, out, json_string_value(j), json_string_length(j));
    case JSON_ARRAY:
    case JSON_OBJECT: return print_container(st, j, out, depth);
    }
    return true;
}

static bool print_other(jstate *st, const jv *v, jbuf *out) {
    char buf[200];
    switch ((jv_kind)v->kind) {
    case JV_NS:
        return jbuf_puts(st, out, "<Namespace ") && print_container(st, v->j, out, 0) &&
               jbuf_puts(st, out, ">");
    case JV_MACRO:
        snprintf(buf, sizeof buf, "<Macro '%s'>", ((const jmacro *)v->p)->name);
        return jbuf_puts(st, out, buf);
    case JV_FUNC:
        snprintf(buf, sizeof buf, "<function %s>", jinja_global_name(v->id));
        return jbuf_puts(st, out, buf);
    case JV_METHOD:
        snprintf(buf, sizeof buf, "<built-in method %s of %s object>", jinja_method_name(v->id),
                 json_type_name(v->j));
        return jbuf_puts(st, out, buf);
    case JV_LOOP: return jbuf_puts(st, out, "<LoopContext>");
    default: return true;
    }
}

bool jv_print(jstate *st, const jv *v, jbuf *out) {
    if (v->kind == JV_UNDEF) return true;
    if (v->kind != JV_DATA) return print_other(st, v, out);
    if (v->flags & JV_GEN) return jbuf_puts(st, out, "<generator object>");
    return print_json(st, v->j, false, out, 0);
}

bool jv_repr(jstate *st, const jv *v, jbuf *out) {
    if (v->kind == JV_UNDEF) return jbuf_puts(st, out, "Undefined");
    if (v->kind != JV_DATA) return print_other(st, v, out);
    if (v->flags & JV_GEN) return jbuf_puts(st, out, "<generator object>");
    return print_json(st, v->j, true, out, 0);
}

bool jv_to_str(jstate *st, const jv *v, jv *out) {
    if (jv_is_str(v)) {
        *out = jv_dup(v);
        out->flags &= JV_SAFE;
        return true;
    }
    jbuf b = {0};
    bool ok = jv_print(st, v, &b) && jv_make_str(st, b.data, b.len, out);
    jbuf_free(&b);
    return ok;
}

/* ---- Containers ------------------------------------------------------------------ */

json_t *jv_to_json(jstate *st, const jv *v) {
    if (v->kind == JV_UNDEF) return json_incref(jinja_undef_marker(st));
    if (v->kind == JV_DATA) return json_incref(v->j);
    jinja_fail(st, NURI_ERR_UNSUPPORTED, "a %s cannot be stored in a list, dict or namespace",
               jv_type_name(v));
    return NULL;
}

jv jv_from_elem(jstate *st, json_t *j) {
    if (!j || j == jinja_undef_marker(st)) return jv_undef();
    return jv_data(json_incref(j));
}

/* ---- tojson ---------------------------------------------------------------------- */

static bool check_serializable(jstate *st, const json_t *j, int depth) {
    if (j == jinja_undef_marker(st))
        return jinja_fail(st, NURI_ERR_FORMAT, "Object of type Undefined is not JSON serializable");
    if (depth > JINJA_MAX_WALK_DEPTH)
        return jinja_fail(st, NURI_ERR_UNSUPPORTED, "value nested too deeply for tojson");
    if (json_is_array(j)) {
        for (size_t i = 0; i < json_array_size(j); i++)
            if (!check_serializable(st, json_array_get(j, i), depth + 1)) return false;
    } else if (json_is_object(j)) {
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)j, k, v)
            if (!check_serializable(st, v, depth + 1)) return false;
    }
    return true;
}

/* Rewrites jansson's output in Python's spelling: lower-case hex in \u
 * escapes, and floats in repr() form (jansson prints 17 significant
 * digits: 0.10000000000000001 where Python prints 0.1). Outside strings
 * jansson writes no backslashes, so the scan below cannot misread. */
static bool respell(jstate *st, const char *s, jbuf *out) {
    size_t i = 0, n = strlen(s);
    bool in_str = false;
    while (i < n) {
        char c = s[i];
        if (in_str) {
            if (c == '\\') {
                if (i + 1 < n && s[i + 1] == 'u' && i + 5 < n) {
                    char esc[6] = {'\\', 'u', 0, 0, 0, 0};
                    for (int k = 0; k < 4; k++) {
                        char h = s[i + 2 + k];
                        esc[2 + k] = (h >= 'A' && h <= 'F') ? (char)(h + 32) : h;
                    }
                    if (!jbuf_put(st, out, esc, 6)) return false;
                    i += 6;
                } else {
                    if (!jbuf_put(st, out, s + i, i + 1 < n ? 2 : 1)) return false;
                    i += 2;
                }
                continue;
            }
            if (c == '"') in_str = false;
            if (!jbuf_put(st, out, &c, 1)) return false;
            i++;
            continue;
        }
        if (c == '"') {
            in_str = true;
            if (!jbuf_put(st, out, &c, 1)) return false;
            i++;
            continue;
        }
        if (c == '-' || (c >= '0' && c <= '9')) {
            size_t j = i;
            bool is_real = false;
            while (j < n && (s[j] == '-' || s[j] == '+' || s[j] == '.' || s[j] == 'e' || s[j] == 'E' ||
                             (s[j] >= '0' && s[j] <= '9'))) {
                if (s[j] == '.' || s[j] == 'e' || s[j] == 'E') is_real = true;
                j++;
            }
            if (is_real) {
                char num[64], buf[40];
                size_t len = j - i < sizeof num - 1 ? j - i : sizeof num - 1;
                memcpy(num, s + i, len);
                num[len] = 0;
                if (!jbuf_put(st, out, buf, py_float_repr(strtod(num, NULL), buf))) return false;
            } else if (!jbuf_put(st, out, s + i, j - i)) {
                return false;
            }
            i = j;
            continue;
        }
        if (!jbuf_put(st, out, &c, 1)) return false;
        i++;
    }
    return true;
}

bool jinja_tojson(jstate *st, const jv *v, int indent, bool ensure_ascii, bool compact,
                  bool sort_keys, jbuf *out) {
    if (v->kind != JV_DATA || (v->flags & JV_GEN))
        return jinja_fail(st, NURI_ERR_FORMAT, "Object of type %s is not JSON serializable",
                          jv_type_name(v));
    if (!check_serializable(st, v->j, 0)) return false;
    if (indent == 0 || indent > 31)
        return jinja_fail(st, NURI_ERR_UNSUPPORTED, "tojson supports indent from 1 to 31, got %d", indent);
    size_t flags = JSON_ENCODE_ANY | JSON_REAL_PRECISION(17);
    if (indent > 0) flags |= JSON_INDENT(indent);
    if (compact) flags |= JSON_COMPACT;
    if (sort_keys) flags |= JSON_SORT_KEYS;
    if (ensure_ascii) flags |= JSON_ENSURE_ASCII;
    char *s = json_dumps(v->j, flags);
    if (!s) return jinja_fail(st, NURI_ERR_NOMEM, "out of memory in tojson");
    bool ok = jinja_charge(st, strlen(s)) && respell(st, s, out);
    free(s);
    return ok;
}
