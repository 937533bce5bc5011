/* chat_formats.h — the built-in chat formats (Jinja sources) behind
 * nuri_chat_template_builtin. */
#ifndef NURI_CHAT_FORMATS_H
#define NURI_CHAT_FORMATS_H

#include "chat/template.h"

typedef struct {
    const char *name;
    const char *source;
} chat_format;

/* The built-in format called name, or NULL. */
const chat_format *chat_format_find(const char *name);

#endif
