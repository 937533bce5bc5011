/* chat_formats.c — the built-in chat formats, written as Jinja templates for
 * nuri's own interpreter (so they share its tested rendering path), and the
 * guess of which one a model's template resembles.
 *
 * They are deliberately forgiving: no role-alternation checks, content may
 * be a string, null, or a list of {"type": "text", "text": ...} parts. */
#include <string.h>

#include "chat/chat_formats.h"

/* text(c): a message's content as text. */
#define TEXT_MACRO                                                                                 \
    "{%- macro text(c) -%}"                                                                        \
    "{%- if c is string -%}{{ c }}"                                                                \
    "{%- elif c is iterable and c is not mapping -%}"                                              \
    "{%- for p in c -%}{%- if p is mapping and p.text is string -%}{{ p.text }}{%- endif -%}{%- endfor -%}" \
    "{%- endif -%}"                                                                                \
    "{%- endmacro -%}"

/* The system message is folded into the first user turn by the formats
 * that have no system role. */
#define SYSTEM_NS "{%- set ns = namespace(sys='') -%}"

static const chat_format formats[] = {
    {"llama2",
     /* <s>[INST] <<SYS>>\nsystem\n<</SYS>>\n\nuser [/INST] answer </s><s>[INST] ... */
     TEXT_MACRO SYSTEM_NS
     "{%- for m in messages -%}"
     "{%- if m.role == 'system' -%}{%- set ns.sys = text(m.content) | trim -%}"
     "{%- elif m.role == 'assistant' -%}{{ ' ' ~ text(m.content) | trim ~ ' ' ~ eos_token }}"
     "{%- else -%}"
     "{%- set body = text(m.content) | trim -%}"
     "{%- if ns.sys -%}{%- set body = '<<SYS>>\\n' ~ ns.sys ~ '\\n<</SYS>>\\n\\n' ~ body -%}"
     "{%- set ns.sys = '' -%}{%- endif -%}"
     "{{ bos_token ~ '[INST] ' ~ body ~ ' [/INST]' }}"
     "{%- endif -%}"
     "{%- endfor -%}"},
    {"llama3",
     TEXT_MACRO
     "{{ bos_token }}"
     "{%- for m in messages -%}"
     "{{ '<|start_header_id|>' ~ m.role ~ '<|end_header_id|>\\n\\n' ~ text(m.content) | trim ~ '<|eot_id|>' }}"
     "{%- endfor -%}"
     "{%- if add_generation_prompt -%}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif -%}"},
    {"chatml",
     TEXT_MACRO
     "{%- for m in messages -%}"
     "{{ '<|im_start|>' ~ m.role ~ '\\n' ~ text(m.content) ~ '<|im_end|>\\n' }}"
     "{%- endfor -%}"
     "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}"},
    {"mistral",
     /* <s>[INST] user [/INST]answer</s>[INST] ... */
     TEXT_MACRO SYSTEM_NS
     "{{ bos_token }}"
     "{%- for m in messages -%}"
     "{%- if m.role == 'system' -%}{%- set ns.sys = text(m.content) | trim -%}"
     "{%- elif m.role == 'assistant' -%}{{ text(m.content) | trim ~ eos_token }}"
     "{%- else -%}"
     "{%- set body = text(m.content) | trim -%}"
     "{%- if ns.sys -%}{%- set body = ns.sys ~ '\\n\\n' ~ body -%}{%- set ns.sys = '' -%}{%- endif -%}"
     "{{ '[INST] ' ~ body ~ ' [/INST]' }}"
     "{%- endif -%}"
     "{%- endfor -%}"},
    {"gemma",
     TEXT_MACRO SYSTEM_NS
     "{{ bos_token }}"
     "{%- for m in messages -%}"
     "{%- if m.role == 'system' -%}{%- set ns.sys = text(m.content) | trim -%}"
     "{%- elif m.role == 'assistant' -%}{{ '<start_of_turn>model\\n' ~ text(m.content) | trim ~ '<end_of_turn>\\n' }}"
     "{%- else -%}"
     "{%- set body = text(m.content) | trim -%}"
     "{%- if ns.sys -%}{%- set body = ns.sys ~ '\\n\\n' ~ body -%}{%- set ns.sys = '' -%}{%- endif -%}"
     "{{ '<start_of_turn>user\\n' ~ body ~ '<end_of_turn>\\n' }}"
     "{%- endif -%}"
     "{%- endfor -%}"
     "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\\n' }}{%- endif -%}"},
    {"phi3",
     TEXT_MACRO
     "{%- for m in messages -%}"
     "{{ '<|' ~ m.role ~ '|>\\n' ~ text(m.content) ~ '<|end|>\\n' }}"
     "{%- endfor -%}"
     "{%- if add_generation_prompt -%}{{ '<|assistant|>\\n' }}{%- else -%}{{ eos_token }}{%- endif -%}"},
};

const chat_format *chat_format_find(const char *name) {
    if (!name) return NULL;
    for (size_t i = 0; i < sizeof formats / sizeof formats[0]; i++)
        if (!strcmp(formats[i].name, name)) return &formats[i];
    return NULL;
}

const char *nuri_chat_builtin_names(void) { return "llama2, llama3, chatml, mistral, gemma, phi3"; }

static bool mentions(const char *s, size_t n, const char *needle) {
    size_t k = strlen(needle);
    for (size_t i = 0; s && i + k <= n; i++)
        if (!memcmp(s + i, needle, k)) return true;
    return false;
}

const char *nuri_chat_builtin_guess(const char *source, size_t len) {
    if (mentions(source, len, "<|start_header_id|>")) return "llama3";
    if (mentions(source, len, "<|im_start|>")) return "chatml";
    if (mentions(source, len, "<start_of_turn>")) return "gemma";
    if (mentions(source, len, "<|assistant|>") || mentions(source, len, "<|user|>")) return "phi3";
    if (mentions(source, len, "[INST]")) return mentions(source, len, "<<SYS>>") ? "llama2" : "mistral";
    return "chatml";
}
