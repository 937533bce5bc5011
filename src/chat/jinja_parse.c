/* jinja_parse.c — tokens to a syntax tree.
 *
 * The expression grammar and operator precedence are jinja2's, from the
 * loosest binding to the tightest:
 *   x if c else y  >  or  >  and  >  not  >  comparisons (==, <, in, not in)
 *   >  + -  >  ~  >  * / // %  >  **  >  unary - +  >  primary with
 *   postfixes (.attr, [key], [a:b], (args)), then | filters and `is` tests.
 * So `a + b | trim` trims b only, and `not x is defined` is not (x is defined).
 *
 * Statements: if/elif/else, for (tuple targets, `if` filter, else), set
 * (names, tuples, namespace attributes, blocks), macro, call, filter, break,
 * continue, generation. Unknown filters and tests are syntax errors, as in
 * jinja2. Nesting is bounded so hostile templates cannot exhaust the stack. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat/jinja.h"
#include "core/util.h"

typedef struct {
    jtemplate *t;
    jtoken *toks;
    size_t n, pos;
    int depth;
    int loop_depth;   /* break/continue are allowed only inside a loop */
    bool soft;        /* inside an if or a conditional expression: unknown
                         filters and tests fail only if they run (jinja2) */
    size_t n_hard;    /* unknown filters/tests seen outside those */
    const char *hard_kind, *hard_name;
    jmacro *macro;    /* the macro whose body is being parsed (varargs detection) */
    nuri_error *err;
    bool failed;
    nuri_status status;
} parser;

/* ---- Helpers ---------------------------------------------------------------- */

static const jtoken *cur(parser *p) { return &p->toks[p->pos]; }
static const jtoken *peek(parser *p, size_t k) {
    size_t i = p->pos + k;
    return i < p->n ? &p->toks[i] : &p->toks[p->n - 1];
}
static void advance(parser *p) {
    if (p->pos + 1 < p->n) p->pos++;
}

static bool fail(parser *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool fail(parser *p, const char *fmt, ...) {
    if (p->failed) return false;
    p->failed = true;
    p->status = NURI_ERR_FORMAT;
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    nuri_fail(p->err, NURI_ERR_FORMAT, "template syntax error at line %d: %s", cur(p)->line, msg);
    return false;
}

static bool nomem(parser *p) {
    if (!p->failed) {
        p->failed = true;
        p->status = NURI_ERR_NOMEM;
        nuri_fail(p->err, NURI_ERR_NOMEM, "out of memory parsing a template");
    }
    return false;
}

static void *alloc(parser *p, size_t n) {
    void *m = jarena_alloc(&p->t->arena, n);
    if (!m) nomem(p);
    return m;
}

static bool is_op(parser *p, jop op) { return cur(p)->kind == TK_OP && cur(p)->op == op; }
static bool is_name(parser *p, const char *name) {
    return cur(p)->kind == TK_NAME && !strcmp(cur(p)->s, name);
}
static bool accept_op(parser *p, jop op) {
    if (!is_op(p, op)) return false;
    advance(p);
    return true;
}
static bool accept_name(parser *p, const char *name) {
    if (!is_name(p, name)) return false;
    advance(p);
    return true;
}

static const char *token_desc(const jtoken *t, char *buf, size_t cap) {
    switch (t->kind) {
    case TK_EOF: return "end of template";
    case TK_TEXT: return "template text";
    case TK_VAR_BEGIN: return "'{{'";
    case TK_VAR_END: return "end of print statement";
    case TK_BLOCK_BEGIN: return "'{%'";
    case TK_BLOCK_END: return "end of statement block";
    case TK_NAME: snprintf(buf, cap, "'%.60s'", t->s); return buf;
    case TK_STRING: return "string";
    case TK_INT: case TK_FLOAT: return "number";
    case TK_OP: return "operator";
    }
    return "token";
}

static bool expect_op(parser *p, jop op, const char *what) {
    if (accept_op(p, op)) return true;
    char buf[80];
    return fail(p, "expected '%s', got %s", what, token_desc(cur(p), buf, sizeof buf));
}

static bool expect_block_end(parser *p) {
    if (cur(p)->kind == TK_BLOCK_END) {
        advance(p);
        return true;
    }
    char buf[80];
    return fail(p, "expected end of statement block, got %s", token_desc(cur(p), buf, sizeof buf));
}

static int intern(parser *p, const char *name) {
    jsymtab *t = &p->t->syms;
    int found = jsym_find(t, name);
    if (found >= 0) return found;
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 32;
        const char **nn = realloc(t->names, cap * sizeof *nn);
        if (!nn) {
            nomem(p);
            return -1;
        }
        t->names = nn;
        t->cap = cap;
    }
    t->names[t->n] = name;
    return (int)t->n++;
}

int jsym_find(const jsymtab *t, const char *name) {
    /* Templates have few distinct names; the parse is linear in them. */
    for (size_t i = 0; i < t->n; i++)
        if (!strcmp(t->names[i], name)) return (int)i;
    return -1;
}

static bool keep_literal(parser *p, json_t *j) {
    jtemplate *t = p->t;
    if (!j) return nomem(p);
    if (t->n_literals == t->cap_literals) {
        size_t cap = t->cap_literals ? t->cap_literals * 2 : 64;
        json_t **nl = realloc(t->literals, cap * sizeof *nl);
        if (!nl) {
            json_decref(j);
            return nomem(p);
        }
        t->literals = nl;
        t->cap_literals = cap;
    }
    t->literals[t->n_literals++] = j;
    return true;
}

static jexpr *new_expr(parser *p, jexpr_kind kind) {
    jexpr *e = alloc(p, sizeof *e);
    if (!e) return NULL;
    e->kind = kind;
    e->line = cur(p)->line;
    return e;
}

static jexpr *literal(parser *p, json_t *j) {
    if (!keep_literal(p, j)) return NULL;
    jexpr *e = new_expr(p, EX_LITERAL);
    if (e) e->lit = j;
    return e;
}

/* A growable array of pointers during parsing (copied into the arena). */
typedef struct {
    void **v;
    size_t n, cap;
} ptrvec;

static bool vec_push(parser *p, ptrvec *v, void *x) {
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 8;
        void **nv = realloc(v->v, cap * sizeof *nv);
        if (!nv) return nomem(p);
        v->v = nv;
        v->cap = cap;
    }
    v->v[v->n++] = x;
    return true;
}

static void **vec_finish(parser *p, ptrvec *v) {
    void **out = NULL;
    if (v->n) {
        out = alloc(p, v->n * sizeof *out);
        if (out) memcpy(out, v->v, v->n * sizeof *out);
    }
    free(v->v);
    v->v = NULL;
    v->cap = 0;
    return out;
}

static bool enter(parser *p) {
    if (++p->depth > JINJA_MAX_NESTING) return fail(p, "template nested too deeply");
    return true;
}

/* ---- Expressions -------------------------------------------------------- */

static jexpr *parse_expression(parser *p, bool with_condexpr);
static jexpr *parse_or(parser *p);
static jexpr *parse_unary(parser *p, bool with_filter);
static jexpr *parse_primary(parser *p);
static jexpr *parse_postfix(parser *p, jexpr *e);
static jexpr *parse_filter_expr(parser *p, jexpr *e);

/* Comma-separated expressions; a tuple if there is a comma, else the single
 * expression. explicit_parens: inside ( ), where "()" is the empty tuple. */
static jexpr *parse_tuple(parser *p, bool with_condexpr, bool explicit_parens) {
    ptrvec items = {0};
    bool is_tuple = false;
    int line = cur(p)->line;
    for (;;) {
        if (items.n > 0) {
            if (!accept_op(p, OP_COMMA)) break;
            is_tuple = true;
        }
        /* Stop at anything that cannot start an expression. */
        const jtoken *t = cur(p);
        bool ends = t->kind == TK_VAR_END || t->kind == TK_BLOCK_END || t->kind == TK_EOF ||
                    (t->kind == TK_OP && (t->op == OP_RPAREN || t->op == OP_ASSIGN || t->op == OP_RBRACKET || t->op == OP_COLON)) ||
                    (t->kind == TK_NAME && (!strcmp(t->s, "if") || !strcmp(t->s, "recursive")) && !with_condexpr);
        if (ends) {
            if (items.n == 0 && !explicit_parens) {
                free(items.v);
                char buf[80];
                fail(p, "expected an expression, got %s", token_desc(t, buf, sizeof buf));
                return NULL;
            }
            break;
        }
        jexpr *e = parse_expression(p, with_condexpr);
        if (!e || !vec_push(p, &items, e)) {
            free(items.v);
            return NULL;
        }
    }
    if (!is_tuple && items.n == 1) {
        jexpr *only = items.v[0];
        free(items.v);
        return only;
    }
    jexpr *e = new_expr(p, EX_TUPLE);
    if (!e) {
        free(items.v);
        return NULL;
    }
    e->line = line;
    e->n_items = items.n;
    e->items = (jexpr **)vec_finish(p, &items);
    if (e->n_items && !e->items) return NULL;
    return e;
}

static jexpr *parse_expression(parser *p, bool with_condexpr) {
    if (!enter(p)) return NULL;
    size_t hard_before = p->n_hard;
    jexpr *e = parse_or(p);
    while (e && with_condexpr && is_name(p, "if")) {
        advance(p);
        p->n_hard = hard_before;
        /* The branch before `if` was parsed before we knew it was one. */
        bool saved_soft = p->soft;
        p->soft = true;
        jexpr *cond = parse_or(p);
        if (!cond) return NULL;
        jexpr *other = NULL;
        if (accept_name(p, "else")) {
            other = parse_expression(p, true);
            if (!other) return NULL;
        }
        p->soft = saved_soft;
        jexpr *c = new_expr(p, EX_COND);
        if (!c) return NULL;
        c->a = cond;
        c->b = e;
        c->c = other;
        e = c;
    }
    p->depth--;
    return e;
}

static jexpr *binary(parser *p, jexpr_kind kind, jop op, jexpr *a, jexpr *b) {
    if (!a || !b) return NULL;
    jexpr *e = new_expr(p, kind);
    if (!e) return NULL;
    e->op = op;
    e->a = a;
    e->b = b;
    return e;
}

static jexpr *parse_and(parser *p);
static jexpr *parse_not(parser *p);
static jexpr *parse_compare(parser *p);
static jexpr *parse_math1(parser *p);
static jexpr *parse_concat(parser *p);
static jexpr *parse_math2(parser *p);
static jexpr *parse_pow(parser *p);

static jexpr *parse_or(parser *p) {
    jexpr *e = parse_and(p);
    while (e && accept_name(p, "or")) e = binary(p, EX_OR, 0, e, parse_and(p));
    return e;
}

static jexpr *parse_and(parser *p) {
    jexpr *e = parse_not(p);
    while (e && accept_name(p, "and")) e = binary(p, EX_AND, 0, e, parse_not(p));
    return e;
}

static jexpr *parse_not(parser *p) {
    if (is_name(p, "not")) {
        advance(p);
        if (!enter(p)) return NULL;
        jexpr *inner = parse_not(p);
        p->depth--;
        if (!inner) return NULL;
        jexpr *e = new_expr(p, EX_NOT);
        if (e) e->a = inner;
        return e;
    }
    return parse_compare(p);
}

static jexpr *parse_compare(parser *p) {
    jexpr *first = parse_math1(p);
    if (!first) return NULL;
    ptrvec operands = {0};
    jop ops[64];
    size_t n_ops = 0;
    for (;;) {
        jop op;
        const jtoken *t = cur(p);
        if (t->kind == TK_OP && (t->op == OP_EQ || t->op == OP_NE || t->op == OP_LT ||
                                 t->op == OP_LE || t->op == OP_GT || t->op == OP_GE)) {
            op = t->op;
            advance(p);
        } else if (is_name(p, "in")) {
            op = OP_IN;
            advance(p);
        } else if (is_name(p, "not") && peek(p, 1)->kind == TK_NAME && !strcmp(peek(p, 1)->s, "in")) {
            op = OP_NOTIN;
            advance(p);
            advance(p);
        } else {
            break;
        }
        if (n_ops == sizeof ops / sizeof ops[0]) {
            free(operands.v);
            fail(p, "too many chained comparisons");
            return NULL;
        }
        jexpr *rhs = parse_math1(p);
        if (!rhs || !vec_push(p, &operands, rhs)) {
            free(operands.v);
            return NULL;
        }
        ops[n_ops++] = op;
    }
    if (n_ops == 0) return first;
    jexpr *e = new_expr(p, EX_COMPARE);
    if (!e) {
        free(operands.v);
        return NULL;
    }
    e->a = first;
    e->n_items = operands.n;
    e->items = (jexpr **)vec_finish(p, &operands);
    e->ops = alloc(p, n_ops * sizeof *e->ops);
    if (!e->items || !e->ops) return NULL;
    memcpy(e->ops, ops, n_ops * sizeof *ops);
    return e;
}

static jexpr *parse_math1(parser *p) {
    jexpr *e = parse_concat(p);
    while (e && (is_op(p, OP_ADD) || is_op(p, OP_SUB))) {
        jop op = cur(p)->op;
        advance(p);
        e = binary(p, EX_BINARY, op, e, parse_concat(p));
    }
    return e;
}

static jexpr *parse_concat(parser *p) {
    jexpr *e = parse_math2(p);
    while (e && accept_op(p, OP_TILDE)) e = binary(p, EX_BINARY, OP_TILDE, e, parse_math2(p));
    return e;
}

static jexpr *parse_math2(parser *p) {
    jexpr *e = parse_pow(p);
    while (e && (is_op(p, OP_MUL) || is_op(p, OP_DIV) || is_op(p, OP_FLOORDIV) || is_op(p, OP_MOD))) {
        jop op = cur(p)->op;
        advance(p);
        e = binary(p, EX_BINARY, op, e, parse_pow(p));
    }
    return e;
}

static jexpr *parse_pow(parser *p) {
    jexpr *e = parse_unary(p, true);
    while (e && accept_op(p, OP_POW)) e = binary(p, EX_BINARY, OP_POW, e, parse_unary(p, true));
    return e;
}

static jexpr *parse_unary(parser *p, bool with_filter) {
    if (!enter(p)) return NULL;
    jexpr *e;
    if (is_op(p, OP_SUB) || is_op(p, OP_ADD)) {
        jexpr_kind kind = is_op(p, OP_SUB) ? EX_NEG : EX_POS;
        advance(p);
        jexpr *inner = parse_unary(p, false);
        e = inner ? new_expr(p, kind) : NULL;
        if (e) e->a = inner;
    } else {
        e = parse_primary(p);
        if (e) e = parse_postfix(p, e);
    }
    if (e && with_filter) e = parse_filter_expr(p, e);
    p->depth--;
    return e;
}

static jexpr *parse_primary(parser *p) {
    const jtoken *t = cur(p);
    char buf[80];
    switch (t->kind) {
    case TK_NAME: {
        const char *s = t->s;
        json_t *lit = NULL;
        if (!strcmp(s, "true") || !strcmp(s, "True")) lit = json_true();
        else if (!strcmp(s, "false") || !strcmp(s, "False")) lit = json_false();
        else if (!strcmp(s, "none") || !strcmp(s, "None")) lit = json_null();
        advance(p);
        if (lit) return literal(p, lit);
        jexpr *e = new_expr(p, EX_NAME);
        if (!e) return NULL;
        e->name = s;
        e->sym = intern(p, s);
        if (e->sym < 0) return NULL;
        if (p->macro) {
            if (!strcmp(s, "varargs")) p->macro->uses_varargs = true;
            if (!strcmp(s, "kwargs")) p->macro->uses_kwargs = true;
            if (!strcmp(s, "caller")) p->macro->uses_caller = true;
        }
        return e;
    }
    case TK_STRING: {
        /* Adjacent string literals concatenate, as in Python. */
        size_t total = 0, k = 0;
        while (peek(p, k)->kind == TK_STRING) total += peek(p, k++)->n;
        char *s = alloc(p, total + 1);
        if (!s) return NULL;
        size_t off = 0;
        for (size_t i = 0; i < k; i++) {
            memcpy(s + off, cur(p)->s, cur(p)->n);
            off += cur(p)->n;
            advance(p);
        }
        return literal(p, json_stringn_nocheck(s, total));
    }
    case TK_INT: {
        int64_t v = t->ival;
        advance(p);
        return literal(p, json_integer(v));
    }
    case TK_FLOAT: {
        double v = t->fval;
        advance(p);
        if (!(v - v == 0)) {
            fail(p, "float literal out of range");
            return NULL;
        }
        return literal(p, json_real(v));
    }
    case TK_OP:
        if (t->op == OP_LPAREN) {
            advance(p);
            jexpr *e = parse_tuple(p, true, true);
            if (!e || !expect_op(p, OP_RPAREN, ")")) return NULL;
            return e;
        }
        if (t->op == OP_LBRACKET || t->op == OP_LBRACE) {
            bool is_dict = t->op == OP_LBRACE;
            jop close = is_dict ? OP_RBRACE : OP_RBRACKET;
            advance(p);
            ptrvec items = {0};
            while (!is_op(p, close)) {
                if (items.n > 0 && !expect_op(p, OP_COMMA, ",")) goto list_fail;
                if (is_op(p, close)) break; /* trailing comma */
                jexpr *item = parse_expression(p, true);
                if (!item || !vec_push(p, &items, item)) goto list_fail;
                if (is_dict) {
                    if (!expect_op(p, OP_COLON, ":")) goto list_fail;
                    jexpr *val = parse_expression(p, true);
                    if (!val || !vec_push(p, &items, val)) goto list_fail;
                }
            }
            advance(p);
            jexpr *e = new_expr(p, is_dict ? EX_DICT : EX_LIST);
            if (!e) goto list_fail;
            e->n_items = items.n;
            e->items = (jexpr **)vec_finish(p, &items);
            if (e->n_items && !e->items) return NULL;
            return e;
        list_fail:
            free(items.v);
            return NULL;
        }
        break;
    default:
        break;
    }
    fail(p, "expected an expression, got %s", token_desc(t, buf, sizeof buf));
    return NULL;
}

/* ( args ) — positional arguments, then name=value keyword arguments. */
static bool parse_args(parser *p, jargs *args) {
    if (!expect_op(p, OP_LPAREN, "(")) return false;
    ptrvec pos = {0}, kw_names = {0}, kw_vals = {0};
    while (!is_op(p, OP_RPAREN)) {
        if (pos.n + kw_names.n > 0 && !expect_op(p, OP_COMMA, ",")) goto fail;
        if (is_op(p, OP_RPAREN)) break;
        if (is_op(p, OP_MUL) || is_op(p, OP_POW)) {
            fail(p, "*args and **kwargs in calls are not supported");
            goto fail;
        }
        if (cur(p)->kind == TK_NAME && peek(p, 1)->kind == TK_OP && peek(p, 1)->op == OP_ASSIGN) {
            const char *name = cur(p)->s;
            for (size_t i = 0; i < kw_names.n; i++) {
                if (!strcmp(kw_names.v[i], name)) {
                    fail(p, "keyword argument repeated: %s", name);
                    goto fail;
                }
            }
            advance(p);
            advance(p);
            jexpr *v = parse_expression(p, true);
            if (!v || !vec_push(p, &kw_names, (void *)name) || !vec_push(p, &kw_vals, v)) goto fail;
        } else {
            if (kw_names.n > 0) {
                fail(p, "positional argument after a keyword argument");
                goto fail;
            }
            jexpr *v = parse_expression(p, true);
            if (!v || !vec_push(p, &pos, v)) goto fail;
        }
    }
    advance(p);
    args->n_pos = pos.n;
    args->pos = (jexpr **)vec_finish(p, &pos);
    args->n_kw = kw_names.n;
    args->kw_names = (const char **)vec_finish(p, &kw_names);
    args->kw_vals = (jexpr **)vec_finish(p, &kw_vals);
    return !p->failed;
fail:
    free(pos.v);
    free(kw_names.v);
    free(kw_vals.v);
    return false;
}

static jexpr *parse_subscript(parser *p, jexpr *obj) {
    /* after '[' */
    jexpr *parts[3] = {NULL, NULL, NULL};
    int n_colons = 0;
    for (;;) {
        if (is_op(p, OP_COLON)) {
            if (++n_colons > 2) {
                fail(p, "too many ':' in a slice");
                return NULL;
            }
            advance(p);
            continue;
        }
        if (is_op(p, OP_RBRACKET)) break;
        if (parts[n_colons]) {
            fail(p, "expected ']'");
            return NULL;
        }
        if (n_colons == 0) {
            /* x[a, b] subscripts with the tuple (a, b) */
            parts[0] = parse_tuple(p, true, false);
        } else {
            parts[n_colons] = parse_expression(p, true);
        }
        if (!parts[n_colons]) return NULL;
    }
    advance(p);
    jexpr *e;
    if (n_colons == 0) {
        if (!parts[0]) {
            /* x[] subscripts with the empty tuple, as in jinja2 */
            parts[0] = new_expr(p, EX_TUPLE);
            if (!parts[0]) return NULL;
        }
        e = new_expr(p, EX_ITEM);
        if (!e) return NULL;
        e->a = obj;
        e->b = parts[0];
    } else {
        e = new_expr(p, EX_SLICE);
        if (!e) return NULL;
        e->a = obj;
        e->b = parts[0];
        e->c = parts[1];
        e->d = parts[2];
    }
    return e;
}

static jexpr *parse_postfix(parser *p, jexpr *e) {
    while (e) {
        if (accept_op(p, OP_DOT)) {
            const jtoken *t = cur(p);
            if (t->kind == TK_NAME) {
                jexpr *a = new_expr(p, EX_ATTR);
                if (!a) return NULL;
                a->a = e;
                a->name = t->s;
                advance(p);
                e = a;
            } else if (t->kind == TK_INT) {
                jexpr *idx = literal(p, json_integer(t->ival));
                advance(p);
                jexpr *a = idx ? new_expr(p, EX_ITEM) : NULL;
                if (!a) return NULL;
                a->a = e;
                a->b = idx;
                e = a;
            } else {
                fail(p, "expected a name or number after '.'");
                return NULL;
            }
        } else if (accept_op(p, OP_LBRACKET)) {
            e = parse_subscript(p, e);
        } else if (is_op(p, OP_LPAREN)) {
            jexpr *c = new_expr(p, EX_CALL);
            if (!c) return NULL;
            c->a = e;
            if (!parse_args(p, &c->args)) return NULL;
            e = c;
        } else {
            break;
        }
    }
    return e;
}

/* One filter application after '|' (operand may be NULL for filter blocks). */
/* A filter or test name, possibly dotted ("a.b"), as jinja2 reads them. */
static const char *parse_dotted_name(parser *p) {
    const char *name = cur(p)->s;
    advance(p);
    while (is_op(p, OP_DOT) && peek(p, 1)->kind == TK_NAME) {
        advance(p);
        size_t a = strlen(name), b = strlen(cur(p)->s);
        char *joined = alloc(p, a + b + 2);
        if (!joined) return NULL;
        memcpy(joined, name, a);
        joined[a] = '.';
        memcpy(joined + a + 1, cur(p)->s, b + 1);
        name = joined;
        advance(p);
    }
    return name;
}

/* jinja2 refuses unknown filters and tests when it compiles, except inside
 * if blocks and conditional expressions, where they fail only if they run. */
static bool known_or_soft(parser *p, int fn, const char *kind, const char *name) {
    /* Counted, not refused yet: an enclosing `x if c else y` still to come
     * makes them soft (parse_expression forgives them). */
    if (fn >= 0 || p->soft) return true;
    if (p->n_hard++ == 0) {
        p->hard_kind = kind;
        p->hard_name = name;
    }
    return true;
}

static jexpr *parse_filter(parser *p, jexpr *operand) {
    if (cur(p)->kind != TK_NAME) {
        fail(p, "expected a filter name after '|'");
        return NULL;
    }
    const char *name = parse_dotted_name(p);
    if (!name) return NULL;
    int fn = jinja_filter_find(name, strlen(name));
    if (!known_or_soft(p, fn, "filter", name)) return NULL;
    jexpr *f = new_expr(p, EX_FILTER);
    if (!f) return NULL;
    f->a = operand;
    f->fn = fn;
    f->name = name;
    if (is_op(p, OP_LPAREN) && !parse_args(p, &f->args)) return NULL;
    return f;
}

static jexpr *parse_test(parser *p, jexpr *operand) {
    bool negated = accept_name(p, "not");
    if (cur(p)->kind != TK_NAME) {
        fail(p, "expected a test name after 'is'");
        return NULL;
    }
    const char *name = parse_dotted_name(p);
    if (!name) return NULL;
    int fn = jinja_test_find(name, strlen(name));
    if (!known_or_soft(p, fn, "test", name)) return NULL;
    jexpr *e = new_expr(p, EX_TEST);
    if (!e) return NULL;
    e->a = operand;
    e->fn = fn;
    e->name = name;
    e->negated = negated;
    const jtoken *t = cur(p);
    if (is_op(p, OP_LPAREN)) {
        if (!parse_args(p, &e->args)) return NULL;
    } else if ((t->kind == TK_NAME && strcmp(t->s, "else") && strcmp(t->s, "or") &&
                strcmp(t->s, "and") && strcmp(t->s, "if") && strcmp(t->s, "is") &&
                strcmp(t->s, "not") && strcmp(t->s, "in")) ||
               t->kind == TK_STRING || t->kind == TK_INT || t->kind == TK_FLOAT ||
               (t->kind == TK_OP && (t->op == OP_LBRACKET || t->op == OP_LBRACE))) {
        /* `x is divisibleby 3`, `x is sameas none`: one bare argument. */
        jexpr *arg = parse_primary(p);
        if (arg) arg = parse_postfix(p, arg);
        if (!arg) return NULL;
        jexpr **pos = alloc(p, sizeof *pos);
        if (!pos) return NULL;
        pos[0] = arg;
        e->args.pos = pos;
        e->args.n_pos = 1;
    }
    return e;
}

static jexpr *parse_filter_expr(parser *p, jexpr *e) {
    while (e) {
        if (accept_op(p, OP_PIPE)) e = parse_filter(p, e);
        else if (accept_name(p, "is")) e = parse_test(p, e);
        else if (is_op(p, OP_LPAREN)) e = parse_postfix(p, e);
        else break;
    }
    return e;
}

/* ---- Statements ------------------------------------------------------------ */

/* Parses statements until a block tag named in `ends` (NULL-terminated);
 * leaves the parser on that tag's name and returns it (NULL at the end of the
 * template, which is an error unless ends is empty). */
static const char *parse_body(parser *p, jbody *body, const char *const *ends);

static bool parse_target(parser *p, jtarget *tg, bool allow_attr) {
    ptrvec syms = {0}, names = {0};
    for (;;) {
        if (cur(p)->kind != TK_NAME) {
            char buf[80];
            free(syms.v);
            free(names.v);
            return fail(p, "expected a variable name, got %s", token_desc(cur(p), buf, sizeof buf));
        }
        const char *name = cur(p)->s;
        if (!strcmp(name, "true") || !strcmp(name, "false") || !strcmp(name, "none") ||
            !strcmp(name, "True") || !strcmp(name, "False") || !strcmp(name, "None")) {
            free(syms.v);
            free(names.v);
            return fail(p, "cannot assign to '%s'", name);
        }
        int sym = intern(p, name);
        advance(p);
        if (sym < 0 || !vec_push(p, &syms, (void *)(intptr_t)sym) || !vec_push(p, &names, (void *)name)) {
            free(syms.v);
            free(names.v);
            return false;
        }
        if (allow_attr && syms.n == 1 && is_op(p, OP_DOT)) {
            advance(p);
            if (cur(p)->kind != TK_NAME) {
                free(syms.v);
                free(names.v);
                return fail(p, "expected an attribute name after '.'");
            }
            tg->attr = cur(p)->s;
            advance(p);
            break;
        }
        if (!is_op(p, OP_COMMA)) break;
        advance(p);
        tg->tuple = true;
    }
    tg->n_syms = syms.n;
    tg->syms = alloc(p, syms.n * sizeof *tg->syms);
    tg->names = alloc(p, names.n * sizeof *tg->names);
    if (tg->syms && tg->names) {
        for (size_t i = 0; i < syms.n; i++) {
            tg->syms[i] = (int)(intptr_t)syms.v[i];
            tg->names[i] = names.v[i];
        }
    }
    free(syms.v);
    free(names.v);
    if (tg->attr && tg->tuple) return fail(p, "cannot mix tuples and attributes in an assignment");
    return !p->failed;
}

static jstmt *new_stmt(parser *p, jstmt_kind kind) {
    jstmt *s = alloc(p, sizeof *s);
    if (s) {
        s->kind = kind;
        s->line = cur(p)->line;
    }
    return s;
}

/* Consumes "{% name %}" where the parser sits on name. */
static bool finish_end_tag(parser *p) {
    advance(p);
    return expect_block_end(p);
}

/* The end of a tag that opens a body; jinja2 accepts a Python-style ':'. */
static bool expect_body_start(parser *p) {
    accept_op(p, OP_COLON);
    return expect_block_end(p);
}

/* {% else %} (or {% else: %}) where the parser sits on "else". */
static bool finish_else_tag(parser *p) {
    advance(p);
    return expect_body_start(p);
}

static jstmt *parse_if_inner(parser *p);

static jstmt *parse_if(parser *p) {
    bool saved = p->soft;
    p->soft = true;
    jstmt *s = parse_if_inner(p);
    p->soft = saved;
    return s;
}

static jstmt *parse_if_inner(parser *p) {
    jstmt *s = new_stmt(p, ST_IF);
    if (!s) return NULL;
    s->expr = parse_tuple(p, false, false); /* jinja2: no `x if c else y` here */
    if (!s->expr || !expect_body_start(p)) return NULL;
    static const char *const ends[] = {"elif", "else", "endif", NULL};
    const char *end = parse_body(p, &s->body, ends);
    if (!end) return NULL;
    if (!strcmp(end, "elif")) {
        advance(p);
        jstmt *inner = parse_if(p);
        if (!inner) return NULL;
        s->else_body.v = alloc(p, sizeof *s->else_body.v);
        if (!s->else_body.v) return NULL;
        s->else_body.v[0] = inner;
        s->else_body.n = 1;
        return s;
    }
    if (!strcmp(end, "else")) {
        if (!finish_else_tag(p)) return NULL;
        static const char *const ends2[] = {"endif", NULL};
        if (!parse_body(p, &s->else_body, ends2)) return NULL;
    }
    return finish_end_tag(p) ? s : NULL;
}

static jstmt *parse_for(parser *p) {
    jstmt *s = new_stmt(p, ST_FOR);
    if (!s || !parse_target(p, &s->target, false)) return NULL;
    if (!accept_name(p, "in")) {
        fail(p, "expected 'in' in a for loop");
        return NULL;
    }
    s->expr = parse_tuple(p, false, false);
    if (!s->expr) return NULL;
    if (accept_name(p, "if")) {
        s->cond = parse_expression(p, true);
        if (!s->cond) return NULL;
    }
    if (is_name(p, "recursive")) {
        fail(p, "recursive loops are not supported");
        return NULL;
    }
    if (!expect_body_start(p)) return NULL;
    p->loop_depth++;
    bool saved_soft = p->soft;
    p->soft = false; /* a loop body is a new frame in jinja2 */
    static const char *const ends[] = {"else", "endfor", NULL};
    const char *end = parse_body(p, &s->body, ends);
    p->soft = saved_soft;
    p->loop_depth--;
    if (!end) return NULL;
    if (!strcmp(end, "else")) {
        if (!finish_else_tag(p)) return NULL;
        static const char *const ends2[] = {"endfor", NULL};
        if (!parse_body(p, &s->else_body, ends2)) return NULL;
    }
    return finish_end_tag(p) ? s : NULL;
}

/* Filters after '|' over a placeholder operand: for {% filter %} and
 * {% set x | f %}. */
static jexpr *parse_filter_chain(parser *p) {
    jexpr *e = new_expr(p, EX_PLACEHOLDER);
    if (!e) return NULL;
    do {
        e = parse_filter(p, e);
    } while (e && accept_op(p, OP_PIPE));
    return e;
}

static jstmt *parse_set(parser *p) {
    jstmt *s = new_stmt(p, ST_SET);
    if (!s || !parse_target(p, &s->target, true)) return NULL;
    if (accept_op(p, OP_ASSIGN)) {
        s->expr = parse_tuple(p, true, false);
        if (!s->expr || !expect_block_end(p)) return NULL;
        return s;
    }
    /* Block assignment: {% set x %}...{% endset %}, maybe with filters. */
    if (s->target.tuple || s->target.attr) {
        fail(p, "a block assignment needs a single name");
        return NULL;
    }
    s->kind = ST_SET_BLOCK;
    if (accept_op(p, OP_PIPE)) {
        s->expr = parse_filter_chain(p);
        if (!s->expr) return NULL;
    }
    if (!expect_body_start(p)) return NULL;
    static const char *const ends[] = {"endset", NULL};
    int saved = p->loop_depth;
    p->loop_depth = 0;
    const char *end = parse_body(p, &s->body, ends);
    p->loop_depth = saved;
    if (!end) return NULL;
    return finish_end_tag(p) ? s : NULL;
}

/* Macro parameters "(a, b=default)"; also used for call-block parameters. */
static bool parse_params(parser *p, jmacro *m) {
    ptrvec names = {0}, defaults = {0};
    if (accept_op(p, OP_LPAREN)) {
        while (!is_op(p, OP_RPAREN)) {
            if (names.n > 0 && !expect_op(p, OP_COMMA, ",")) goto fail;
            if (is_op(p, OP_RPAREN)) break;
            if (cur(p)->kind != TK_NAME) {
                fail(p, "expected a parameter name");
                goto fail;
            }
            const char *name = cur(p)->s;
            for (size_t i = 0; i < names.n; i++) {
                if (!strcmp(names.v[i], name)) {
                    fail(p, "duplicate parameter '%s'", name);
                    goto fail;
                }
            }
            advance(p);
            jexpr *def = NULL;
            if (accept_op(p, OP_ASSIGN)) {
                def = parse_expression(p, true);
                if (!def) goto fail;
            } else if (defaults.n > 0 && defaults.v[defaults.n - 1]) {
                fail(p, "parameter without a default follows one with a default");
                goto fail;
            }
            if (!vec_push(p, &names, (void *)name) || !vec_push(p, &defaults, def)) goto fail;
        }
        advance(p);
    }
    m->n_params = names.n;
    m->param_syms = alloc(p, (names.n ? names.n : 1) * sizeof *m->param_syms);
    if (!m->param_syms) goto fail;
    for (size_t i = 0; i < names.n; i++) {
        m->param_syms[i] = intern(p, names.v[i]);
        if (m->param_syms[i] < 0) goto fail;
    }
    m->param_names = (const char **)vec_finish(p, &names);
    m->defaults = (jexpr **)vec_finish(p, &defaults);
    return !p->failed;
fail:
    free(names.v);
    free(defaults.v);
    return false;
}

static bool parse_macro_body(parser *p, jmacro *m, const char *end_name) {
    jmacro *saved_macro = p->macro;
    int saved_loops = p->loop_depth;
    bool saved_soft = p->soft;
    p->macro = m;
    p->loop_depth = 0;
    p->soft = false;
    const char *const ends[] = {end_name, NULL};
    const char *end = parse_body(p, &m->body, ends);
    p->macro = saved_macro;
    p->loop_depth = saved_loops;
    p->soft = saved_soft;
    return end && finish_end_tag(p);
}

static jstmt *parse_macro(parser *p) {
    jstmt *s = new_stmt(p, ST_MACRO);
    jmacro *m = alloc(p, sizeof *m);
    if (!s || !m) return NULL;
    s->macro = m;
    if (cur(p)->kind != TK_NAME) {
        fail(p, "expected a macro name");
        return NULL;
    }
    m->name = cur(p)->s;
    m->sym = intern(p, m->name);
    advance(p);
    if (m->sym < 0 || !is_op(p, OP_LPAREN)) {
        if (!p->failed) fail(p, "expected '(' after the macro name");
        return NULL;
    }
    if (!parse_params(p, m) || !expect_body_start(p)) return NULL;
    return parse_macro_body(p, m, "endmacro") ? s : NULL;
}

static jstmt *parse_call_block(parser *p) {
    jstmt *s = new_stmt(p, ST_CALL_BLOCK);
    jmacro *m = alloc(p, sizeof *m);
    if (!s || !m) return NULL;
    s->macro = m;
    m->name = "caller";
    /* {% call(params) macro(args) %}: parse_params reads the optional
     * parenthesized list and records zero parameters without one. */
    if (!parse_params(p, m)) return NULL;
    s->expr = parse_expression(p, true);
    if (!s->expr) return NULL;
    if (s->expr->kind != EX_CALL) {
        fail(p, "expected a call after 'call'");
        return NULL;
    }
    if (!expect_body_start(p)) return NULL;
    return parse_macro_body(p, m, "endcall") ? s : NULL;
}

static jstmt *parse_filter_block(parser *p) {
    jstmt *s = new_stmt(p, ST_FILTER_BLOCK);
    if (!s) return NULL;
    s->expr = parse_filter_chain(p);
    if (!s->expr || !expect_body_start(p)) return NULL;
    static const char *const ends[] = {"endfilter", NULL};
    if (!parse_body(p, &s->body, ends)) return NULL;
    return finish_end_tag(p) ? s : NULL;
}

static jstmt *parse_scope_block(parser *p, const char *end_name) {
    jstmt *s = new_stmt(p, ST_SCOPE);
    if (!s || !expect_body_start(p)) return NULL;
    const char *const ends[] = {end_name, NULL};
    if (!parse_body(p, &s->body, ends)) return NULL;
    return finish_end_tag(p) ? s : NULL;
}

static jstmt *parse_statement(parser *p) {
    if (cur(p)->kind != TK_NAME) {
        fail(p, "expected a tag name after '{%%'");
        return NULL;
    }
    const char *name = cur(p)->s;
    advance(p);
    if (!strcmp(name, "if")) return parse_if(p);
    if (!strcmp(name, "for")) return parse_for(p);
    if (!strcmp(name, "set")) return parse_set(p);
    if (!strcmp(name, "macro")) return parse_macro(p);
    if (!strcmp(name, "call")) return parse_call_block(p);
    if (!strcmp(name, "filter")) return parse_filter_block(p);
    if (!strcmp(name, "generation")) return parse_scope_block(p, "endgeneration");
    if (!strcmp(name, "break") || !strcmp(name, "continue")) {
        if (p->loop_depth == 0) {
            fail(p, "'%s' outside a loop", name);
            return NULL;
        }
        jstmt *s = new_stmt(p, name[0] == 'b' ? ST_BREAK : ST_CONTINUE);
        return s && expect_block_end(p) ? s : NULL;
    }
    if (!strcmp(name, "include") || !strcmp(name, "import") || !strcmp(name, "from") ||
        !strcmp(name, "extends") || !strcmp(name, "block")) {
        fail(p, "'%s' is not supported: templates cannot load other templates", name);
        return NULL;
    }
    fail(p, "unknown tag '%.60s'", name);
    return NULL;
}

static const char *parse_body(parser *p, jbody *body, const char *const *ends) {
    if (!enter(p)) return NULL;
    ptrvec stmts = {0};
    const char *found = NULL;
    for (;;) {
        const jtoken *t = cur(p);
        jstmt *s = NULL;
        if (t->kind == TK_EOF) {
            if (ends[0]) {
                fail(p, "unexpected end of template: missing {%% %s %%}", ends[0]);
                goto fail;
            }
            break;
        } else if (t->kind == TK_TEXT) {
            s = new_stmt(p, ST_TEXT);
            if (s) {
                s->text = t->s;
                s->text_len = t->n;
            }
            advance(p);
        } else if (t->kind == TK_VAR_BEGIN) {
            advance(p);
            s = new_stmt(p, ST_OUTPUT);
            if (s) s->expr = parse_tuple(p, true, false);
            if (s && s->expr && cur(p)->kind != TK_VAR_END) {
                char buf[80];
                fail(p, "expected end of print statement, got %s", token_desc(cur(p), buf, sizeof buf));
                goto fail;
            }
            advance(p);
            if (s && !s->expr) goto fail;
        } else if (t->kind == TK_BLOCK_BEGIN) {
            const jtoken *name = peek(p, 1);
            if (name->kind == TK_NAME) {
                for (size_t i = 0; ends[i]; i++) {
                    if (!strcmp(name->s, ends[i])) {
                        advance(p); /* onto the name */
                        found = ends[i];
                        break;
                    }
                }
                if (found) break;
            }
            advance(p);
            s = parse_statement(p);
        } else {
            char buf[80];
            fail(p, "unexpected %s", token_desc(t, buf, sizeof buf));
            goto fail;
        }
        if (!s || !vec_push(p, &stmts, s)) goto fail;
        if (p->n_hard) {
            fail(p, "no %s named '%.60s'", p->hard_kind, p->hard_name);
            goto fail;
        }
    }
    body->n = stmts.n;
    body->v = (jstmt **)vec_finish(p, &stmts);
    p->depth--;
    if (p->failed) return NULL;
    return found ? found : "";
fail:
    free(stmts.v);
    if (!p->failed) nomem(p);
    return NULL;
}

/* ---- Entry points ------------------------------------------------------------ */

void jinja_template_free(jtemplate *t) {
    if (!t) return;
    for (size_t i = 0; i < t->n_literals; i++) json_decref(t->literals[i]);
    free(t->literals);
    free(t->syms.names);
    jarena_free(&t->arena);
    free(t);
}

nuri_status jinja_parse(const char *src, size_t len, jtemplate **out, nuri_error *err) {
    *out = NULL;
    if (!src && len) return nuri_fail(err, NURI_ERR_INVALID_ARG, "template source is NULL");
    if (len > JINJA_MAX_SOURCE)
        return nuri_fail(err, NURI_ERR_UNSUPPORTED, "template is too large (%zu bytes)", len);
    jtemplate *t = calloc(1, sizeof *t);
    if (!t) return nuri_fail(err, NURI_ERR_NOMEM, "out of memory parsing a template");
    jtoken *toks;
    size_t n;
    nuri_status st = jinja_lex(src ? src : "", len, &t->arena, &toks, &n, err);
    if (st != NURI_OK) {
        jinja_template_free(t);
        return st;
    }
    parser p = {t, toks, n, 0, 0, 0, false, 0, NULL, NULL, NULL, err, false, NURI_OK};
    static const char *const no_ends[] = {NULL};
    const char *end = parse_body(&p, &t->body, no_ends);
    if (!end || p.failed) {
        jinja_template_free(t);
        return p.status != NURI_OK ? p.status : NURI_ERR_FORMAT;
    }
    *out = t;
    return NURI_OK;
}
