/* cmd_template.c — `nuri template`: render a conversation with a chat
 * template and print exactly the text a model would be given. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat/template.h"
#include "cli/cli.h"

static const char *template_usage =
    "usage: nuri template (-m MODEL | --template-file FILE | --chat-template NAME)\n"
    "                     --messages FILE.json [--tools FILE.json] [--add-generation-prompt]\n"
    "                     [--bos-token S] [--eos-token S]\n"
    "\n"
    "Renders a conversation with a chat template and prints exactly the resulting\n"
    "text (no newline added). When the template raises an exception (for example\n"
    "because roles do not alternate), prints its message and exits with status 1.\n"
    "\n"
    "  -m, --model FILE         use the model's template (GGUF tokenizer.chat_template);\n"
    "                           BOS/EOS default to the model's token texts. A model\n"
    "                           without a usable template falls back to a built-in\n"
    "                           format, with a warning\n"
    "      --tokenizer FILE     llama2.c tokenizer.bin (default: beside the model)\n"
    "      --template-file FILE a Jinja template file\n"
    "      --chat-template NAME a built-in format: llama2, llama3, chatml, mistral,\n"
    "                           gemma, phi3 (overrides the model's template)\n"
    "      --messages FILE      a JSON array of {\"role\", \"content\"} messages, or an\n"
    "                           object with \"messages\", optional \"tools\" and any\n"
    "                           other template variables; '-' reads standard input\n"
    "      --tools FILE         a JSON array of tool definitions\n"
    "      --add-generation-prompt  end with the opening of the assistant's turn\n"
    "      --bos-token S        text of bos_token (default: the model's, else empty)\n"
    "      --eos-token S        text of eos_token (default: the model's, else empty)\n"
    "  -h, --help               this help\n";

static json_t *load_json(const char *path, const char *what) {
    json_error_t jerr;
    json_t *j = !strcmp(path, "-") ? json_loadf(stdin, JSON_ALLOW_NUL, &jerr)
                                   : json_load_file(path, JSON_ALLOW_NUL, &jerr);
    if (!j) cli_error("template: %s %s: %s (line %d)", what, path, jerr.text, jerr.line);
    return j;
}

/* Prints the message on one line (templates' messages may hold newlines). */
static int fail_one_line(const char *msg) {
    char line[sizeof ((nuri_error *)0)->message];
    snprintf(line, sizeof line, "%s", msg);
    for (char *c = line; *c; c++)
        if (*c == '\n' || *c == '\r') *c = ' ';
    return cli_error("%s", line);
}

int cmd_template(int argc, char **argv) {
    const char *model_path = NULL, *template_file = NULL, *format = NULL, *messages_path = NULL;
    const char *tools_path = NULL, *bos_opt = NULL, *eos_opt = NULL, *tokenizer_path = NULL;
    bool add_generation_prompt = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool ok = true;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(template_usage, stdout);
            return 0;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) ok = cli_take_str(argc, argv, &i, &model_path);
        else if (!strcmp(a, "--tokenizer")) ok = cli_take_str(argc, argv, &i, &tokenizer_path);
        else if (!strcmp(a, "--template-file")) ok = cli_take_str(argc, argv, &i, &template_file);
        else if (!strcmp(a, "--chat-template")) ok = cli_take_str(argc, argv, &i, &format);
        else if (!strcmp(a, "--messages")) ok = cli_take_str(argc, argv, &i, &messages_path);
        else if (!strcmp(a, "--tools")) ok = cli_take_str(argc, argv, &i, &tools_path);
        else if (!strcmp(a, "--bos-token")) ok = cli_take_str(argc, argv, &i, &bos_opt);
        else if (!strcmp(a, "--eos-token")) ok = cli_take_str(argc, argv, &i, &eos_opt);
        else if (!strcmp(a, "--add-generation-prompt")) add_generation_prompt = true;
        else return cli_error("template: unknown option '%s' (see nuri template --help)", a);
        if (!ok) return 1;
    }
    if (!messages_path) return cli_error("template: no conversation given (--messages FILE.json)");
    if (model_path && template_file) return cli_error("template: give either -m or --template-file, not both");
    if (template_file && format) return cli_error("template: give either --template-file or --chat-template, not both");
    if (!model_path && !template_file && !format)
        return cli_error("template: no template given (-m MODEL, --template-file FILE or --chat-template NAME)");

    int status = 1;
    json_t *doc = NULL, *messages = NULL, *tools = NULL, *extra = NULL;
    char *source = NULL, *model_bos = NULL, *model_eos = NULL, *text = NULL;
    size_t source_len = 0, text_len = 0;
    nuri_chat_template *tpl = NULL;
    nuri_error err;
    char warning[768];
    warning[0] = 0;

    /* The conversation. */
    if (!(doc = load_json(messages_path, "messages file"))) goto done;
    if (json_is_array(doc)) {
        messages = json_incref(doc);
    } else if (json_is_object(doc) && json_is_array(json_object_get(doc, "messages"))) {
        messages = json_incref(json_object_get(doc, "messages"));
        tools = json_incref(json_object_get(doc, "tools"));
        extra = json_deep_copy(doc);
        if (!extra) {
            cli_error("template: out of memory");
            goto done;
        }
        json_object_del(extra, "messages");
        json_object_del(extra, "tools");
    } else {
        cli_error("template: %s must hold an array of messages or an object with \"messages\"", messages_path);
        goto done;
    }
    if (tools_path) {
        json_decref(tools);
        if (!(tools = load_json(tools_path, "tools file"))) goto done;
    }
    if (tools && json_is_null(tools)) {
        json_decref(tools);
        tools = NULL;
    }
    if (tools && !json_is_array(tools)) {
        cli_error("template: tools must be an array");
        goto done;
    }

    /* The template, and the model's special tokens. */
    if (template_file) {
        if (!(source = cli_read_file(template_file, &source_len))) {
            cli_error("template: cannot read %s", template_file);
            goto done;
        }
        if (nuri_chat_template_parse(source, source_len, &tpl, &err) != NURI_OK) {
            cli_error("template: %s: %s", template_file, err.message);
            goto done;
        }
    } else {
        if (model_path) {
            if (cli_is_gguf(model_path)) {
                if (nuri_chat_gguf_info(model_path, &source, &source_len, &model_bos, &model_eos, &err) != NURI_OK) {
                    cli_error("template: %s: %s", model_path, err.message);
                    goto done;
                }
            } else {
                /* A llama2.c checkpoint: no template, but BOS/EOS texts. */
                nuri_model *m = cli_load_model(model_path, tokenizer_path);
                if (!m) goto done;
                model_bos = cli_token_text(m, nuri_token_bos(m));
                model_eos = cli_token_text(m, nuri_token_eos(m));
                nuri_model_free(m);
            }
        }
        if (nuri_chat_template_select(source, source_len, format, &tpl, warning, sizeof warning, &err) != NURI_OK) {
            cli_error("template: %s", err.message);
            goto done;
        }
        if (warning[0]) fprintf(stderr, "nuri: warning: %s\n", warning);
    }

    nuri_chat_params p = {
        .messages = messages,
        .tools = tools,
        .extra = extra,
        .add_generation_prompt = add_generation_prompt,
        .bos_token = bos_opt ? bos_opt : model_bos ? model_bos : "",
        .eos_token = eos_opt ? eos_opt : model_eos ? model_eos : "",
        .warning = warning,
        .warning_cap = sizeof warning,
    };
    if (nuri_chat_template_render(tpl, &p, &text, &text_len, &err) != NURI_OK) {
        fail_one_line(err.message);
        goto done;
    }
    if (warning[0]) fprintf(stderr, "nuri: warning: %s\n", warning);
    if (fwrite(text, 1, text_len, stdout) != text_len || fflush(stdout) != 0) {
        cli_error("template: cannot write the output");
        goto done;
    }
    status = 0;
done:
    free(text);
    nuri_chat_template_free(tpl);
    free(source);
    free(model_bos);
    free(model_eos);
    json_decref(doc);
    json_decref(messages);
    json_decref(tools);
    json_decref(extra);
    return status;
}
