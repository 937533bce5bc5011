/* jinja_lex.c — splits a Jinja template into tokens.
 *
 * Whitespace handling is jinja2's with trim_blocks and lstrip_blocks on:
 *   - "{%-", "{{-", "{#-" strip all whitespace before the tag; "-%}", "-}}",
 *     "-#}" strip all whitespace after it;
 *   - trim_blocks: the first newline after a block or comment tag goes;
 *     "+%}" keeps it;
 *   - lstrip_blocks: spaces and tabs from the start of a line up to a block
 *     or comment tag go; "{%+" keeps them;
 *   - newlines are normalized to "\n" and one trailing newline of the
 *     template is dropped (keep_trailing_newline off). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat/jinja.h"
#include "core/util.h"
#include "tokenizer/unicode.h"

/* ---- Arena -------------------------------------------------------------- */

struct jarena_chunk {
    jarena_chunk *next;
    size_t used, cap;
    _Alignas(16) unsigned char data[];
};

void *jarena_alloc(jarena *a, size_t n) {
    n = (n + 15) & ~(size_t)15;
    if (n == 0) n = 16;
    if (!a->head || a->head->cap - a->head->used < n) {
        size_t cap = n > 60000 ? n : 60000;
        jarena_chunk *c = malloc(sizeof *c + cap);
        if (!c) return NULL;
        c->next = a->head;
        c->used = 0;
        c->cap = cap;
        a->head = c;
    }
    void *p = a->head->data + a->head->used;
    a->head->used += n;
    memset(p, 0, n);
    return p;
}

char *jarena_strndup(jarena *a, const char *s, size_t n) {
    if (n == SIZE_MAX) return NULL;
    char *p = jarena_alloc(a, n + 1);
    if (!p) return NULL;
    if (n) memcpy(p, s, n);
    p[n] = 0;
    return p;
}

void jarena_free(jarena *a) {
    jarena_chunk *c = a->head;
    while (c) {
        jarena_chunk *next = c->next;
        free(c);
        c = next;
    }
    a->head = NULL;
}

/* ---- Token list --------------------------------------------------------- */

typedef struct {
    const char *src; /* normalized source */
    size_t len, pos;
    int line;
    jarena *arena;
    jtoken *toks;
    size_t n, cap;
    nuri_error *err;
    int prev_op_dot; /* the previous token was '.', so digits are an integer index */
} lexer;

static nuri_status lex_fail(lexer *lx, const char *fmt, const char *detail) {
    char msg[200];
    snprintf(msg, sizeof msg, fmt, detail);
    return nuri_fail(lx->err, NURI_ERR_FORMAT, "template syntax error at line %d: %s", lx->line, msg);
}

static jtoken *push(lexer *lx, jtoken_kind kind) {
    if (lx->n == lx->cap) {
        size_t cap = lx->cap ? lx->cap * 2 : 256;
        jtoken *nt = realloc(lx->toks, cap * sizeof *nt);
        if (!nt) return NULL;
        lx->toks = nt;
        lx->cap = cap;
    }
    jtoken *t = &lx->toks[lx->n++];
    memset(t, 0, sizeof *t);
    t->kind = kind;
    t->line = lx->line;
    return t;
}

/* ---- Whitespace ---------------------------------------------------------- */

/* Length of s[0..n) without trailing whitespace (Python's str.rstrip()). */
static size_t rstrip_len(const char *s, size_t n) {
    while (n > 0) {
        size_t start = n - 1;
        while (start > 0 && ((unsigned char)s[start] & 0xC0) == 0x80) start--;
        size_t pos = start;
        uint32_t cp = utf8_next(s, n, &pos);
        if (!py_isspace(cp)) break;
        n = start;
    }
    return n;
}

/* Skips whitespace from lx->pos (Python's \s*), counting lines. */
static void skip_space_all(lexer *lx) {
    while (lx->pos < lx->len) {
        size_t p = lx->pos;
        uint32_t cp = utf8_next(lx->src, lx->len, &p);
        if (!py_isspace(cp)) break;
        if (cp == '\n') lx->line++;
        lx->pos = p;
    }
}

static int count_lines(const char *s, size_t n) {
    int k = 0;
    for (size_t i = 0; i < n; i++) k += s[i] == '\n';
    return k;
}

static nuri_status emit_text(lexer *lx, const char *s, size_t n) {
    if (n == 0) return NURI_OK;
    jtoken *t = push(lx, TK_TEXT);
    if (!t) return nuri_fail(lx->err, NURI_ERR_NOMEM, "out of memory lexing a template");
    t->s = s;
    t->n = n;
    return NURI_OK;
}

/* ---- Expression tokens ---------------------------------------------------- */

static bool is_name_start(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}
static bool is_digit(char c) { return c >= '0' && c <= '9'; }
static bool is_name_char(char c) { return is_name_start(c) || is_digit(c); }

static int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Decodes a Python string literal body (escapes as Python's). */
static nuri_status lex_string(lexer *lx) {
    char quote = lx->src[lx->pos];
    size_t start = lx->pos + 1, i = start;
    while (i < lx->len && lx->src[i] != quote) {
        if (lx->src[i] == '\\' && i + 1 < lx->len) i++;
        i++;
    }
    if (i >= lx->len) return lex_fail(lx, "%s", "unterminated string literal");
    size_t raw_len = i - start;
    char *buf = jarena_alloc(lx->arena, raw_len + 1);
    if (!buf) return nuri_fail(lx->err, NURI_ERR_NOMEM, "out of memory lexing a template");
    size_t n = 0;
    const char *s = lx->src + start;
    for (size_t k = 0; k < raw_len; k++) {
        char c = s[k];
        if (c == '\n') lx->line++;
        if (c != '\\' || k + 1 >= raw_len) {
            buf[n++] = c;
            continue;
        }
        char e = s[++k];
        uint32_t cp = 0;
        int digits = 0;
        switch (e) {
        case '\n': lx->line++; continue; /* line continuation */
        case '\\': buf[n++] = '\\'; continue;
        case '\'': buf[n++] = '\''; continue;
        case '"': buf[n++] = '"'; continue;
        case 'a': buf[n++] = '\a'; continue;
        case 'b': buf[n++] = '\b'; continue;
        case 'f': buf[n++] = '\f'; continue;
        case 'n': buf[n++] = '\n'; continue;
        case 'r': buf[n++] = '\r'; continue;
        case 't': buf[n++] = '\t'; continue;
        case 'v': buf[n++] = '\v'; continue;
        case 'x': digits = 2; break;
        case 'u': digits = 4; break;
        case 'U': digits = 8; break;
        default:
            if (e >= '0' && e <= '7') {
                cp = (uint32_t)(e - '0');
                for (int d = 0; d < 2 && k + 1 < raw_len && s[k + 1] >= '0' && s[k + 1] <= '7'; d++)
                    cp = cp * 8 + (uint32_t)(s[++k] - '0');
                digits = -1;
                break;
            }
            /* Unknown escapes stay as written, as in Python. */
            buf[n++] = '\\';
            buf[n++] = e;
            continue;
        }
        if (digits > 0) {
            for (int d = 0; d < digits; d++) {
                int h = k + 1 < raw_len ? hex_value(s[k + 1]) : -1;
                if (h < 0) return lex_fail(lx, "%s", "truncated \\x, \\u or \\U escape");
                cp = cp * 16 + (uint32_t)h;
                k++;
            }
        }
        char enc[4];
        size_t el = nuri_utf8_encode(cp, enc);
        if (el == 0) return lex_fail(lx, "%s", "escape is not a valid Unicode character");
        /* An encoded escape is at most 4 bytes, its spelling at least 4
         * (\ooo is 4, \xhh 4): the buffer cannot overflow. */
        memcpy(buf + n, enc, el);
        n += el;
    }
    jtoken *t = push(lx, TK_STRING);
    if (!t) return nuri_fail(lx->err, NURI_ERR_NOMEM, "out of memory lexing a template");
    t->s = buf;
    t->n = n;
    lx->pos = i + 1;
    return NURI_OK;
}

/* Digits with single '_' between them ((\d+_)*\d+); returns the end. */
static size_t scan_digits(const char *s, size_t i, size_t n, int base) {
    size_t start = i;
    while (i < n) {
        int d = hex_value(s[i]);
        if (d >= 0 && d < base) {
            i++;
        } else if (s[i] == '_' && i > start && i + 1 < n && hex_value(s[i + 1]) >= 0 &&
                   hex_value(s[i + 1]) < base) {
            i++;
        } else {
            break;
        }
    }
    return i;
}

/* Numbers as jinja2 reads them: floats (1.5, 1e3, 1_000.5), then integers
 * (0b101, 0o17, 0x1F, 1_000; a decimal integer does not start with 0, so
 * "07" is two tokens). After a '.', only an integer (x.0 is an index). */
static nuri_status lex_number(lexer *lx) {
    const char *s = lx->src;
    size_t n = lx->len, i = lx->pos;
    char buf[80];
    size_t nb = 0;
    if (!lx->prev_op_dot) {
        size_t j = scan_digits(s, i, n, 10), k = j;
        bool is_float = false;
        if (j > i && k + 1 < n && s[k] == '.' && is_digit(s[k + 1])) {
            k = scan_digits(s, k + 1, n, 10);
            is_float = true;
        }
        if (j > i && k < n && (s[k] == 'e' || s[k] == 'E')) {
            size_t e = k + 1;
            if (e < n && (s[e] == '+' || s[e] == '-')) e++;
            if (e < n && is_digit(s[e])) {
                k = scan_digits(s, e, n, 10);
                is_float = true;
            }
        }
        if (is_float) {
            if (k - i >= sizeof buf) return lex_fail(lx, "%s", "number literal too long");
            for (size_t q = i; q < k; q++)
                if (s[q] != '_') buf[nb++] = s[q];
            buf[nb] = 0;
            jtoken *t = push(lx, TK_FLOAT);
            if (!t) return nuri_fail(lx->err, NURI_ERR_NOMEM, "out of memory lexing a template");
            t->fval = strtod(buf, NULL);
            lx->pos = k;
            return NURI_OK;
        }
    }
    int base = 10;
    size_t start = i, end;
    if (s[i] == '0' && i + 2 < n && strchr("bBoOxX", s[i + 1]) && s[i + 1]) {
        char p = (char)(s[i + 1] | 0x20);
        base = p == 'b' ? 2 : p == 'o' ? 8 : 16;
        start = i + 2;
        if (start < n && s[start] == '_') start++;
        end = scan_digits(s, start, n, base);
        if (end == start) return lex_fail(lx, "%s", "malformed number literal");
    } else if (s[i] == '0') {
        end = i + 1;
        while (end < n && (s[end] == '0' || (s[end] == '_' && end + 1 < n && s[end + 1] == '0'))) end++;
    } else {
        end = scan_digits(s, i, n, 10);
    }
    uint64_t v = 0;
    for (size_t q = start; q < end; q++) {
        if (s[q] == '_') continue;
        uint64_t d = (uint64_t)hex_value(s[q]);
        if (v > ((uint64_t)INT64_MAX - d) / (uint64_t)base) return lex_fail(lx, "%s", "integer literal too large");
        v = v * (uint64_t)base + d;
    }
    jtoken *t = push(lx, TK_INT);
    if (!t) return nuri_fail(lx->err, NURI_ERR_NOMEM, "out of memory lexing a template");
    t->ival = (int64_t)v;
    lx->pos = end;
    return NURI_OK;
}

static const struct {
    const char *s;
    jop op;
} op_table[] = {
    {"//", OP_FLOORDIV}, {"**", OP_POW}, {"==", OP_EQ}, {"!=", OP_NE}, {"<=", OP_LE},
    {">=", OP_GE},       {"+", OP_ADD},  {"-", OP_SUB}, {"*", OP_MUL}, {"/", OP_DIV},
    {"%", OP_MOD},       {"~", OP_TILDE}, {"<", OP_LT}, {">", OP_GT},  {"=", OP_ASSIGN},
    {"(", OP_LPAREN},    {")", OP_RPAREN}, {"[", OP_LBRACKET}, {"]", OP_RBRACKET},
    {"{", OP_LBRACE},    {"}", OP_RBRACE}, {",", OP_COMMA}, {".", OP_DOT}, {":", OP_COLON},
    {"|", OP_PIPE},
};

/* Tokenizes the inside of a {{ }} or {% %} tag up to its end marker.
 * is_block selects "%}" over "}}". Brackets must balance before the end
 * marker counts, so "{{ {'a': {'b': 1}} }}" works. */
static nuri_status lex_tag(lexer *lx, bool is_block) {
    int depth = 0;
    for (;;) {
        skip_space_all(lx);
        if (lx->pos >= lx->len)
            return lex_fail(lx, "%s", is_block ? "missing '%}'" : "missing '}}'");
        const char *s = lx->src + lx->pos;
        size_t left = lx->len - lx->pos;
        if (depth == 0) {
            char close0 = is_block ? '%' : '}';
            size_t ctl = (s[0] == '-' || s[0] == '+') ? 1 : 0;
            if (left >= ctl + 2 && s[ctl] == close0 && s[ctl + 1] == '}' &&
                !(s[0] == '+' && !is_block)) {
                jtoken *t = push(lx, is_block ? TK_BLOCK_END : TK_VAR_END);
                if (!t) return nuri_fail(lx->err, NURI_ERR_NOMEM, "out of memory lexing a template");
                lx->pos += ctl + 2;
                if (s[0] == '-') {
                    skip_space_all(lx);
                } else if (is_block && s[0] != '+' && lx->pos < lx->len && lx->src[lx->pos] == '\n') {
                    lx->pos++; /* trim_blocks */
                    lx->line++;
                }
                return NURI_OK;
            }
        }
        char c = s[0];
        nuri_status st;
        if (c == '\'' || c == '"') {
            st = lex_string(lx);
            lx->prev_op_dot = 0;
        } else if (is_digit(c)) {
            st = lex_number(lx);
            lx->prev_op_dot = 0;
        } else if (is_name_start(c)) {
            size_t i = 0;
            while (i < left && is_name_char(s[i])) i++;
            jtoken *t = push(lx, TK_NAME);
            if (!t) return nuri_fail(lx->err, NURI_ERR_NOMEM, "out of memory lexing a template");
            t->s = jarena_strndup(lx->arena, s, i);
            if (!t->s) return nuri_fail(lx->err, NURI_ERR_NOMEM, "out of memory lexing a template");
            t->n = i;
            lx->pos += i;
            lx->prev_op_dot = 0;
            st = NURI_OK;
        } else {
            size_t k;
            for (k = 0; k < sizeof op_table / sizeof op_table[0]; k++) {
                size_t ol = strlen(op_table[k].s);
                if (ol <= left && !memcmp(s, op_table[k].s, ol)) break;
            }
            if (k == sizeof op_table / sizeof op_table[0]) {
                char what[8];
                size_t cl = nuri_utf8_char_len((unsigned char)c);
                if (cl == 0 || cl > left) cl = 1;
                memcpy(what, s, cl);
                what[cl] = 0;
                return lex_fail(lx, "unexpected character '%s' in a tag", what);
            }
            jop op = op_table[k].op;
            if (op == OP_LPAREN || op == OP_LBRACKET || op == OP_LBRACE) {
                if (++depth > JINJA_MAX_NESTING) return lex_fail(lx, "%s", "brackets nested too deeply");
            } else if (op == OP_RPAREN || op == OP_RBRACKET || op == OP_RBRACE) {
                if (depth == 0) return lex_fail(lx, "unexpected '%s'", op_table[k].s);
                depth--;
            }
            jtoken *t = push(lx, TK_OP);
            if (!t) return nuri_fail(lx->err, NURI_ERR_NOMEM, "out of memory lexing a template");
            t->op = op;
            lx->pos += strlen(op_table[k].s);
            lx->prev_op_dot = op == OP_DOT;
            st = NURI_OK;
        }
        if (st != NURI_OK) return st;
    }
}

/* ---- Raw blocks ----------------------------------------------------------- */

/* If s (just after "{%" and its optional -/+) reads "raw %}" (with optional
 * whitespace and '-'), returns the bytes it spans, else 0. */
static size_t match_simple_tag(const char *s, size_t left, const char *word, bool *strip_after) {
    size_t i = 0;
    while (i < left && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n')) i++;
    size_t wl = strlen(word);
    if (left - i < wl || memcmp(s + i, word, wl)) return 0;
    i += wl;
    if (i < left && is_name_char(s[i])) return 0;
    while (i < left && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n')) i++;
    *strip_after = false;
    if (i < left && (s[i] == '-' || s[i] == '+')) {
        *strip_after = s[i] == '-';
        i++;
    }
    if (left - i < 2 || s[i] != '%' || s[i + 1] != '}') return 0;
    return i + 2;
}

/* ---- Driver --------------------------------------------------------------- */

/* Newlines to "\n", one trailing newline dropped. Returns a malloc'ed copy. */
static char *normalize_source(const char *src, size_t len, size_t *out_len) {
    char *buf = malloc(len + 1);
    if (!buf) return NULL;
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (src[i] == '\r') {
            buf[n++] = '\n';
            if (i + 1 < len && src[i + 1] == '\n') i++;
        } else {
            buf[n++] = src[i];
        }
    }
    if (n > 0 && buf[n - 1] == '\n') n--;
    buf[n] = 0;
    *out_len = n;
    return buf;
}

static bool valid_utf8(const char *s, size_t n, size_t *bad) {
    size_t pos = 0;
    while (pos < n) {
        size_t adv;
        if (nuri_utf8_decode(s + pos, n - pos, &adv) == NURI_UTF8_INVALID) {
            *bad = pos;
            return false;
        }
        pos += adv;
    }
    return true;
}

nuri_status jinja_lex(const char *src, size_t len, jarena *a, jtoken **out, size_t *n_out,
                      nuri_error *err) {
    *out = NULL;
    *n_out = 0;
    size_t bad;
    if (!valid_utf8(src, len, &bad))
        return nuri_fail(err, NURI_ERR_FORMAT, "template is not valid UTF-8 (byte %zu)", bad);
    size_t nlen;
    char *norm = normalize_source(src, len, &nlen);
    if (!norm) return nuri_fail(err, NURI_ERR_NOMEM, "out of memory lexing a template");
    /* The normalized text must outlive the tokens: keep it in the arena. */
    char *text = jarena_strndup(a, norm, nlen);
    free(norm);
    if (!text) return nuri_fail(err, NURI_ERR_NOMEM, "out of memory lexing a template");

    lexer lx = {text, nlen, 0, 1, a, NULL, 0, 0, err, 0};
    bool line_starting = true;
    nuri_status st = NURI_OK;
    while (st == NURI_OK && lx.pos < lx.len) {
        /* Find the next tag opener. */
        size_t start = lx.pos, open = SIZE_MAX;
        for (size_t i = start; i + 1 < lx.len; i++) {
            if (text[i] == '{' && (text[i + 1] == '{' || text[i + 1] == '%' || text[i + 1] == '#')) {
                open = i;
                break;
            }
        }
        if (open == SIZE_MAX) {
            st = emit_text(&lx, text + start, lx.len - start);
            lx.line += count_lines(text + start, lx.len - start);
            lx.pos = lx.len;
            break;
        }
        char kind = text[open + 1];
        char ctl = open + 2 < lx.len ? text[open + 2] : 0;
        if (ctl != '-' && ctl != '+') ctl = 0;
        size_t text_len = open - start;
        if (ctl == '-') {
            text_len = rstrip_len(text + start, text_len);
        } else if (ctl != '+' && kind != '{') {
            /* lstrip_blocks: only spaces/tabs between the line start and the tag. */
            size_t l_pos = 0;
            for (size_t i = text_len; i > 0; i--) {
                if (text[start + i - 1] == '\n') {
                    l_pos = i;
                    break;
                }
            }
            if (l_pos > 0 || line_starting) {
                bool blank = true;
                for (size_t i = l_pos; i < text_len; i++)
                    if (text[start + i] != ' ' && text[start + i] != '\t') blank = false;
                if (blank) text_len = l_pos;
            }
        }
        st = emit_text(&lx, text + start, text_len);
        if (st != NURI_OK) break;
        lx.line += count_lines(text + start, open - start);
        lx.pos = open + 2 + (ctl ? 1 : 0);

        if (kind == '#') {
            size_t close = SIZE_MAX;
            for (size_t i = lx.pos; i + 1 < lx.len; i++) {
                if (text[i] == '#' && text[i + 1] == '}') {
                    close = i;
                    break;
                }
            }
            if (close == SIZE_MAX) {
                st = lex_fail(&lx, "%s", "unterminated comment");
                break;
            }
            lx.line += count_lines(text + lx.pos, close - lx.pos);
            bool strip = close > lx.pos && text[close - 1] == '-';
            bool keep = close > lx.pos && text[close - 1] == '+';
            lx.pos = close + 2;
            if (strip) skip_space_all(&lx);
            else if (!keep && lx.pos < lx.len && text[lx.pos] == '\n') {
                lx.pos++;
                lx.line++;
            }
        } else if (kind == '%') {
            bool strip_after;
            size_t raw = match_simple_tag(text + lx.pos, lx.len - lx.pos, "raw", &strip_after);
            if (raw) {
                /* Everything up to {% endraw %} is text. */
                size_t body = lx.pos + raw, end_open = SIZE_MAX, end_len = 0;
                bool end_strip_before = false, end_strip_after = false;
                for (size_t i = body; i + 1 < lx.len; i++) {
                    if (text[i] != '{' || text[i + 1] != '%') continue;
                    size_t j = i + 2;
                    bool sb = j < lx.len && text[j] == '-';
                    if (j < lx.len && (text[j] == '-' || text[j] == '+')) j++;
                    size_t m = match_simple_tag(text + j, lx.len - j, "endraw", &end_strip_after);
                    if (m) {
                        end_open = i;
                        end_len = j + m - i;
                        end_strip_before = sb;
                        break;
                    }
                }
                if (end_open == SIZE_MAX) {
                    st = lex_fail(&lx, "%s", "missing {% endraw %}");
                    break;
                }
                /* jinja2 keeps the newline after {% raw %} (no trim_blocks there). */
                if (strip_after)
                    while (body < end_open && py_isspace((unsigned char)text[body])) body++;
                size_t body_len = end_open - body;
                if (end_strip_before) {
                    body_len = rstrip_len(text + body, body_len);
                } else if (end_open + 2 < lx.len && text[end_open + 2] != '+') {
                    /* lstrip_blocks applies to {% endraw %} on a line of its own. */
                    size_t l_pos = 0;
                    for (size_t i = body_len; i > 0; i--) {
                        if (text[body + i - 1] == '\n') {
                            l_pos = i;
                            break;
                        }
                    }
                    bool blank = l_pos > 0;
                    for (size_t i = l_pos; blank && i < body_len; i++)
                        blank = text[body + i] == ' ' || text[body + i] == '\t';
                    if (blank) body_len = l_pos;
                }
                st = emit_text(&lx, text + body, body_len);
                lx.line += count_lines(text + lx.pos, end_open + end_len - lx.pos);
                lx.pos = end_open + end_len;
                if (end_strip_after) skip_space_all(&lx);
                else if (lx.pos < lx.len && text[lx.pos] == '\n') {
                    lx.pos++;
                    lx.line++;
                }
            } else {
                jtoken *t = push(&lx, TK_BLOCK_BEGIN);
                if (!t) {
                    st = nuri_fail(err, NURI_ERR_NOMEM, "out of memory lexing a template");
                    break;
                }
                lx.prev_op_dot = 0;
                st = lex_tag(&lx, true);
            }
        } else {
            jtoken *t = push(&lx, TK_VAR_BEGIN);
            if (!t) {
                st = nuri_fail(err, NURI_ERR_NOMEM, "out of memory lexing a template");
                break;
            }
            lx.prev_op_dot = 0;
            st = lex_tag(&lx, false);
        }
        line_starting = lx.pos > 0 && text[lx.pos - 1] == '\n';
    }
    if (st == NURI_OK && !push(&lx, TK_EOF))
        st = nuri_fail(err, NURI_ERR_NOMEM, "out of memory lexing a template");
    if (st != NURI_OK) {
        free(lx.toks);
        return st;
    }
    /* Move the token array into the arena so that the template owns it. */
    jtoken *toks = jarena_alloc(a, lx.n * sizeof *toks);
    if (!toks) {
        free(lx.toks);
        return nuri_fail(err, NURI_ERR_NOMEM, "out of memory lexing a template");
    }
    memcpy(toks, lx.toks, lx.n * sizeof *toks);
    free(lx.toks);
    *out = toks;
    *n_out = lx.n;
    return NURI_OK;
}
