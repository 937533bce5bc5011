/* jinja.h — the pieces of nuri's Jinja interpreter, shared by its files:
 *
 *   jinja_lex.c      template text -> tokens (whitespace control, trim_blocks,
 *                    lstrip_blocks, comments, raw blocks)
 *   jinja_parse.c    tokens -> a tree of statements and expressions
 *   jinja_value.c    values: printing like Python's str()/repr(), equality,
 *                    ordering, truthiness, UTF-8 string helpers, tojson
 *   jinja_eval.c     runs the tree: scopes, loops, macros, limits
 *   jinja_builtins.c filters, tests, string/dict methods, global functions
 *
 * Semantics follow jinja2 as Hugging Face configures it for chat templates
 * (sandboxed, trim_blocks, lstrip_blocks, loop controls). Nothing here can
 * reach files, the environment or the host: names resolve only to template
 * variables, the caller's data and the built-ins listed in jinja_builtins.c.
 *
 * Data values are jansson json_t (null, bool, integer, real, string, array,
 * object); the few values that are not data (undefined, namespaces, macros,
 * bound methods, the loop object) are wrapped in jv. */
#ifndef NURI_JINJA_H
#define NURI_JINJA_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "nuri.h"

/* ---- Limits ------------------------------------------------------------- */

#define JINJA_MAX_OUTPUT (16u << 20)       /* bytes of any one rendered text */
#define JINJA_MAX_LOOP_STEPS 1000000u      /* for-loop iterations per render */
#define JINJA_MAX_STEPS 10000000u          /* statements, expressions and data walked per render
                                              (real templates take a few thousand) */
#define JINJA_MAX_ALLOC_BYTES (256u << 20) /* bytes of strings/lists built per render */
#define JINJA_ELEM_COST 32                 /* bytes charged per list element copied */
#define JINJA_MAX_CALL_DEPTH 200           /* nested macro calls */
#define JINJA_MAX_EVAL_DEPTH 500           /* nested expressions + statements, all calls together
                                              (keeps the C stack under 512 KiB, even with ASan) */
#define JINJA_MAX_NESTING 200              /* parser nesting (blocks, parentheses) */
#define JINJA_MAX_DEPTH 256                /* nesting of lists and dicts a template builds */
#define JINJA_MAX_WALK_DEPTH 1024         /* nesting any recursive walk of data accepts */
#define JINJA_MAX_SOURCE (64u << 20)       /* template source bytes */

/* ---- Arena: every allocation of a parsed template, freed at once -------- */

typedef struct jarena_chunk jarena_chunk;
typedef struct {
    jarena_chunk *head;
} jarena;

void *jarena_alloc(jarena *a, size_t n); /* zeroed; NULL when out of memory */
char *jarena_strndup(jarena *a, const char *s, size_t n);
void jarena_free(jarena *a);

/* ---- Tokens ------------------------------------------------------------- */

typedef enum {
    TK_EOF,
    TK_TEXT,        /* template data between tags (s, n), whitespace control applied */
    TK_VAR_BEGIN,   /* {{ */
    TK_VAR_END,     /* }} */
    TK_BLOCK_BEGIN, /* {% */
    TK_BLOCK_END,   /* %} */
    TK_NAME,        /* s, n */
    TK_STRING,      /* decoded bytes s, n (arena) */
    TK_INT,         /* ival */
    TK_FLOAT,       /* fval */
    TK_OP,          /* op */
} jtoken_kind;

typedef enum {
    OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_FLOORDIV, OP_MOD, OP_POW, OP_TILDE,
    OP_EQ, OP_NE, OP_LT, OP_LE, OP_GT, OP_GE, OP_ASSIGN,
    OP_LPAREN, OP_RPAREN, OP_LBRACKET, OP_RBRACKET, OP_LBRACE, OP_RBRACE,
    OP_COMMA, OP_DOT, OP_COLON, OP_PIPE,
    /* only in expression trees: */
    OP_IN, OP_NOTIN,
} jop;

typedef struct {
    jtoken_kind kind;
    int line;
    jop op;
    const char *s;
    size_t n;
    int64_t ival;
    double fval;
} jtoken;

/* Splits a template into tokens. The source must be valid UTF-8 (checked
 * here). Token texts live in the arena, as does the token array. */
nuri_status jinja_lex(const char *src, size_t len, jarena *a, jtoken **out, size_t *n_out,
                      nuri_error *err);

/* ---- Syntax tree -------------------------------------------------------- */

typedef enum {
    EX_LITERAL,     /* lit */
    EX_NAME,        /* name, sym */
    EX_LIST,        /* items */
    EX_TUPLE,       /* items */
    EX_DICT,        /* items: key, value, key, value, ... */
    EX_ATTR,        /* a.name */
    EX_ITEM,        /* a[b] */
    EX_SLICE,       /* a[b:c:d], each of b c d may be NULL */
    EX_CALL,        /* a(args) */
    EX_FILTER,      /* a | fn(args); a is NULL for the body of a filter block */
    EX_TEST,        /* a is [not] fn(args) */
    EX_NOT,         /* not a */
    EX_NEG,         /* -a */
    EX_POS,         /* +a */
    EX_BINARY,      /* a op b (arithmetic and ~) */
    EX_AND,         /* a and b */
    EX_OR,          /* a or b */
    EX_COMPARE,     /* a op0 items[0] op1 items[1] ... (chained) */
    EX_COND,        /* b if a else c (c may be NULL) */
    EX_PLACEHOLDER, /* the captured body of a filter block or a `set x | f` block */
} jexpr_kind;

typedef struct jexpr jexpr;

typedef struct {
    jexpr **pos;
    size_t n_pos;
    const char **kw_names; /* NUL-terminated, in the arena */
    jexpr **kw_vals;
    size_t n_kw;
} jargs;

struct jexpr {
    jexpr_kind kind;
    int line;
    jop op;             /* EX_BINARY */
    bool negated;       /* EX_TEST */
    int fn;             /* EX_FILTER / EX_TEST: index into the built-in table */
    int sym;            /* EX_NAME */
    const char *name;   /* EX_NAME, EX_ATTR (NUL-terminated) */
    json_t *lit;        /* EX_LITERAL (owned by the template) */
    jexpr *a, *b, *c, *d;
    jexpr **items;      /* EX_LIST / EX_TUPLE / EX_DICT / EX_COMPARE */
    jop *ops;           /* EX_COMPARE */
    size_t n_items;
    jargs args;         /* EX_CALL / EX_FILTER / EX_TEST */
};

typedef enum {
    ST_TEXT,         /* text, text_len */
    ST_OUTPUT,       /* {{ expr }} */
    ST_IF,           /* expr, body, else_body */
    ST_FOR,          /* target, expr (iterable), cond (filter), body, else_body */
    ST_SET,          /* target = expr */
    ST_SET_BLOCK,    /* target = captured body, passed through expr (filters) when set */
    ST_MACRO,        /* macro */
    ST_CALL_BLOCK,   /* expr (the call), macro (the caller) */
    ST_FILTER_BLOCK, /* expr: filters over EX_PLACEHOLDER; body */
    ST_SCOPE,        /* body in its own scope ({% generation %}) */
    ST_BREAK,
    ST_CONTINUE,
} jstmt_kind;

typedef struct jstmt jstmt;
typedef struct {
    jstmt **v;
    size_t n;
} jbody;

/* Assignment target: one name, several names (tuple unpacking), or the
 * attribute of a namespace (`ns.attr`, then n_syms == 1 and attr set). */
typedef struct {
    int *syms;
    const char **names;
    size_t n_syms;
    bool tuple;
    const char *attr;
} jtarget;

typedef struct {
    const char *name;
    int sym;
    const char **param_names;
    int *param_syms;
    jexpr **defaults; /* NULL entries: no default */
    size_t n_params;
    jbody body;
    bool uses_varargs, uses_kwargs, uses_caller;
} jmacro;

struct jstmt {
    jstmt_kind kind;
    int line;
    const char *text;
    size_t text_len;
    jexpr *expr, *cond;
    jtarget target;
    jbody body, else_body;
    jmacro *macro;
};

/* Interned names: every distinct name in a template gets a small id. */
typedef struct {
    const char **names;
    size_t n, cap;
} jsymtab;

int jsym_find(const jsymtab *t, const char *name); /* -1 when absent */

typedef struct {
    jarena arena;
    char *source; /* normalized copy; TK_TEXT slices point into it */
    jbody body;
    jsymtab syms;
    json_t **literals; /* decref'ed on free */
    size_t n_literals, cap_literals;
} jtemplate;

/* Parses a template; on failure *out is NULL and err says where and why. */
nuri_status jinja_parse(const char *src, size_t len, jtemplate **out, nuri_error *err);
void jinja_template_free(jtemplate *t);

/* ---- Values ------------------------------------------------------------- */

typedef enum {
    JV_UNDEF,  /* j: a string with the error message to raise on misuse, or NULL
                  with p the undefined variable's name */
    JV_DATA,   /* j */
    JV_NS,     /* j: the namespace's attributes (an object shared by reference) */
    JV_MACRO,  /* p: jmacro, q: the scope it was defined in */
    JV_FUNC,   /* id: global function */
    JV_METHOD, /* j: receiver, id: method */
    JV_LOOP,   /* p: the loop state */
} jv_kind;

enum {
    JV_SAFE = 1 << 0, /* a Markup string (|safe): `+` HTML-escapes the other side */
    JV_GEN = 1 << 1,  /* a one-pass generator (map/select/...): no len, no tojson */
    JV_UNSAFE = 1 << 2, /* an undefined standing for a hidden special attribute */
};

typedef struct {
    uint8_t kind;
    uint8_t flags;
    uint16_t id;
    json_t *j;
    const void *p;
    void *q;
} jv;

typedef struct jstate jstate;

/* Growable byte buffer with the render's size limit. */
typedef struct {
    char *data;
    size_t len, cap;
} jbuf;

bool jbuf_put(jstate *st, jbuf *b, const char *s, size_t n);
bool jbuf_puts(jstate *st, jbuf *b, const char *s);
void jbuf_free(jbuf *b);

/* Render state; defined in jinja_eval.c, with these helpers for the others. */
bool jinja_fail(jstate *st, nuri_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4))); /* returns false */
bool jinja_charge(jstate *st, uint64_t bytes); /* counts allocation; false past the limit */
json_t *jinja_undef_marker(jstate *st);        /* stands for undefined inside arrays */
/* Every list or dict the template builds goes through here: it records the
 * container's nesting depth and fails past JINJA_MAX_DEPTH, so that no value
 * is nested deeply enough to exhaust the stack of the recursive code that
 * prints, compares or frees it (jansson's included). Takes a reference to
 * nothing; container stays owned by the caller. */
bool jinja_track(jstate *st, json_t *container);
const struct tm *jinja_now(jstate *st);
void jinja_mark_raised(jstate *st); /* raise_exception() was called */
bool jinja_steps(jstate *st, uint64_t n);  /* counts work; false past the limit */
/* obj.name and obj[key] with jinja2's sandboxed lookup rules. */
bool jinja_getattr(jstate *st, const jv *obj, const char *name, size_t name_len, jv *out);
bool jinja_getitem(jstate *st, const jv *obj, const jv *key, jv *out);
/* Calls a callable value (macro, global function, bound method). */
bool jinja_call(jstate *st, const jv *fn, const jv *args, size_t n_args, const char *const *kw_names,
                const jv *kw_vals, size_t n_kw, jv *out);

static inline jv jv_undef(void) { jv v = {JV_UNDEF, 0, 0, NULL, NULL, NULL}; return v; }
static inline jv jv_data(json_t *owned) { jv v = {JV_DATA, 0, 0, owned, NULL, NULL}; return v; }
void jv_drop(jv *v);
jv jv_dup(const jv *v);

/* Constructors that count the bytes they allocate; they fail (and set the
 * error) on allocation failure or limits. */
bool jv_make_str(jstate *st, const char *s, size_t n, jv *out);
bool jv_make_int(jstate *st, int64_t i, jv *out);
bool jv_make_real(jstate *st, double d, jv *out);
jv jv_bool(bool b);
jv jv_none(void);
/* An undefined value whose misuse raises msg. */
bool jv_undef_msg(jstate *st, jv *out, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* The message an undefined value raises when misused. */
void jv_undef_message(const jv *v, char *buf, size_t cap);

bool jv_is_str(const jv *v);
bool jv_is_int(const jv *v); /* integer or bool, like Python's int */
bool jv_is_num(const jv *v);
bool jv_is_list(const jv *v);
bool jv_is_dict(const jv *v);
double jv_num(const jv *v);
int64_t jv_int(const jv *v);
const char *jv_str(const jv *v); /* NULL unless a string */
size_t jv_strlen(const jv *v);

bool jv_truthy(const jv *v);
/* Python's type name: 'str', 'int', 'NoneType', 'list', 'dict', ... */
const char *jv_type_name(const jv *v);
const char *json_type_name(const json_t *j);
/* Python's ==; charges st's step budget for large values. */
bool jv_equal(jstate *st, const jv *a, const jv *b);
bool json_py_equal(jstate *st, const json_t *a, const json_t *b);
/* Python's ordering for <, <=, >, >=: sets *cmp to -1, 0 or 1; fails with
 * a TypeError-like message for unorderable types. */
bool jv_compare(jstate *st, const jv *a, const jv *b, const char *op, int *cmp);
bool json_py_compare(jstate *st, const json_t *a, const json_t *b, const char *op, int *cmp);

/* str(v) and repr(v) appended to out. */
bool jv_print(jstate *st, const jv *v, jbuf *out);
bool jv_repr(jstate *st, const jv *v, jbuf *out);
/* str(v) as a new string value (strings are shared, not copied). */
bool jv_to_str(jstate *st, const jv *v, jv *out);
/* Python's repr(float). buf needs 32 bytes; returns the length. */
size_t py_float_repr(double d, char *buf);

/* A json_t for storing v inside a list or dict (new reference): data as is,
 * undefined as the marker; other kinds fail with an error. */
json_t *jv_to_json(jstate *st, const jv *v);
/* An element read out of a list or dict (borrowed j): the marker becomes
 * undefined again. */
jv jv_from_elem(jstate *st, json_t *j);

/* Hugging Face's tojson: json.dumps(x, ensure_ascii, indent, separators,
 * sort_keys) with Python's spelling of numbers and escapes. */
bool jinja_tojson(jstate *st, const jv *v, int indent, bool ensure_ascii, bool compact,
                  bool sort_keys, jbuf *out);

/* ---- UTF-8 strings (templates and data are valid UTF-8) ----------------- */

size_t utf8_count(const char *s, size_t n);                /* code points */
size_t utf8_offset(const char *s, size_t n, size_t index); /* byte offset of code point index */
uint32_t utf8_next(const char *s, size_t n, size_t *pos);  /* decode at *pos, advance */
bool py_isspace(uint32_t cp);
uint32_t py_upper(uint32_t cp);
uint32_t py_lower(uint32_t cp);
bool py_isprintable(uint32_t cp);

/* ---- Built-ins ---------------------------------------------------------- */

/* Looks up a filter or test by name: its index, or -1. */
int jinja_filter_find(const char *name, size_t n);
int jinja_test_find(const char *name, size_t n);
/* Global functions (range, namespace, raise_exception, strftime_now, dict,
 * ...): id + 1, or 0 when name is not a global. */
int jinja_global_find(const char *name);
const char *jinja_global_name(int id);
/* A method of a str or dict receiver by attribute name: id + 1, or 0. Sets
 * *unsafe for methods that would modify the receiver (which the sandbox
 * refuses, as jinja2's immutable sandbox does). */
int jinja_method_find(const json_t *receiver, const char *name, bool *unsafe);
const char *jinja_method_name(int id);

/* Apply filter / test fn to v with evaluated arguments. */
bool jinja_apply_filter(jstate *st, int fn, const jv *v, const jv *args, size_t n_args,
                        const char *const *kw_names, const jv *kw_vals, size_t n_kw, jv *out);
bool jinja_apply_test(jstate *st, int fn, const jv *v, const jv *args, size_t n_args, bool *out);
bool jinja_call_global(jstate *st, int id, const jv *args, size_t n_args,
                       const char *const *kw_names, const jv *kw_vals, size_t n_kw, jv *out);
bool jinja_call_method(jstate *st, int id, json_t *receiver, uint8_t flags, const jv *args,
                       size_t n_args, const char *const *kw_names, const jv *kw_vals, size_t n_kw,
                       jv *out);

/* Materializes an iterable as an array (new reference): lists as they are,
 * dicts as their keys, strings as their characters, undefined as empty. */
bool jinja_iterate(jstate *st, const jv *v, json_t **out);

/* ---- Rendering ---------------------------------------------------------- */

typedef struct {
    json_t *vars;         /* object: name -> value (borrowed) */
    const struct tm *now; /* strftime_now's time (NULL: the current local time) */
    uint64_t max_steps;   /* 0: JINJA_MAX_STEPS (tests lower it) */
} jrender_params;

/* Renders t; *out is malloc'ed (NUL-terminated, *out_len without the NUL).
 * raise_exception() fails with NURI_ERR_INVALID_ARG and the template's own
 * message; *raised (may be NULL) says whether that happened. */
nuri_status jinja_render(const jtemplate *t, const jrender_params *p, char **out, size_t *out_len,
                         bool *raised, nuri_error *err);

#endif
