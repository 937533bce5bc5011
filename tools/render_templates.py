#!/usr/bin/env python3
"""Writes the expected outputs of nuri's chat-template tests with Python's jinja2.

Run from the repository root (developers only; CI uses the committed files):
    python3 tools/render_templates.py

jinja2 is set up the way Hugging Face renders chat templates: an immutable
sandbox, trim_blocks and lstrip_blocks on, the loopcontrols extension, a
{% generation %} block that renders its body (Hugging Face marks assistant
text with it), raise_exception(), a tojson filter that keeps non-ASCII text (json.dumps with
ensure_ascii=False) and strftime_now() -- here pinned to FIXED_NOW so that the
outputs do not change with the date.

Writes into tests/data/templates/:
  conversations.json  the message lists and tool lists the cases use
  cases.json          one entry per (template, conversation, tools, generation
                      prompt) with either "expected" (a file under expected/)
                      or "error" ({"type", "message"}: what jinja2 raised)
  expected/NAME/*.txt the rendered text, byte for byte (templates with the
                      same source share one NAME)
  snippets.json       small templates probing one rule each, with their output
                      or error, rendered with the variables in SNIPPET_VARS
"""
import datetime
import json
import os
import shutil
import struct
import sys

import jinja2
from jinja2 import nodes
from jinja2.ext import Extension
from jinja2.sandbox import ImmutableSandboxedEnvironment

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("NURI_SHARED", os.path.join(ROOT, "..", "shared"))
OUT = os.path.join(ROOT, "tests", "data", "templates")

FIXED_NOW = datetime.datetime(2024, 9, 26, 14, 5, 9)
BOS, EOS = "<s>", "</s>"


class TemplateError(Exception):
    pass


class GenerationBlock(Extension):
    """{% generation %}...{% endgeneration %}: renders the body unchanged."""
    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

    def _body(self, caller):
        return caller()


def make_env():
    def raise_exception(message):
        raise TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent,
                          separators=separators, sort_keys=sort_keys)

    def strftime_now(fmt):
        return FIXED_NOW.strftime(fmt)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=["jinja2.ext.loopcontrols", GenerationBlock])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


ENV = make_env()


def render(source, variables):
    """Returns ("output", text) or ("error", {"type", "message"})."""
    try:
        return "output", ENV.from_string(source).render(**variables)
    except TemplateError as e:
        return "error", {"type": "raise", "message": str(e)}
    except jinja2.exceptions.TemplateSyntaxError as e:
        return "error", {"type": "syntax", "message": str(e)}
    except jinja2.exceptions.UndefinedError as e:
        return "error", {"type": "undefined", "message": str(e)}
    except Exception as e:  # TypeError, ZeroDivisionError, SecurityError, ...
        return "error", {"type": type(e).__name__, "message": str(e)}


# ---- Conversations ---------------------------------------------------------

SYSTEM = {"role": "system", "content": "You are a helpful assistant. 당신은 친절한 도우미입니다 🤖"}
BASIC = [
    SYSTEM,
    {"role": "user", "content": "안녕하세요! What's 2+2? 🙂"},
    {"role": "assistant", "content": "2+2 = 4입니다. \"Quotes\" & <tags> stay as they are ✨"},
    {"role": "user", "content": "  고마워요 — tell me a joke 😂\n"},
]

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name, e.g. 서울"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"],
                         "description": "Temperature unit"},
                "days": {"type": "integer", "description": "Forecast days",
                         "minimum": 1, "maximum": 7, "default": 1},
            },
            "required": ["city"],
        },
    },
}
SEARCH_TOOL = {
    "type": "function",
    "function": {
        "name": "search",
        "description": "Search the web",
        "parameters": {
            "type": "object",
            "properties": {
                "query": {"type": "string", "description": "What to look for"},
                "threshold": {"type": "number", "description": "Minimum score",
                              "default": 0.5},
                "tags": {"type": "array", "items": {"type": "string"},
                         "description": "Filter tags"},
            },
            "required": ["query"],
        },
    },
}
TOOLS = [WEATHER_TOOL, SEARCH_TOOL]


def tool_conversation(arguments):
    return [
        SYSTEM,
        {"role": "user", "content": "서울 날씨 어때? ☔"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call12345", "type": "function",
             "function": {"name": "get_weather", "arguments": arguments}}]},
        {"role": "tool", "tool_call_id": "call12345", "name": "get_weather",
         "content": "{\"temperature\": 21.5, \"condition\": \"맑음 ☀️\"}"},
        {"role": "assistant", "content": "서울은 맑고 21.5°C입니다 ☀️"},
        {"role": "user", "content": "고마워!"},
    ]


CONVERSATIONS = {
    "basic": BASIC,
    "nosystem": BASIC[1:],
    # Hugging Face passes tool-call arguments as a dict, OpenAI clients as a
    # JSON string; templates expect one or the other.
    "tools_dict": tool_conversation({"city": "서울", "unit": "celsius"}),
    "tools_string": tool_conversation("{\"city\": \"서울\", \"unit\": \"celsius\"}"),
}
TOOLS_LISTS = {"weather_search": TOOLS}

# Variables some templates read besides the standard ones (firefunction's
# caller passes its function list and date as text).
EXTRA = {
    "fireworks-ai-llama-3-firefunction-v2": {
        "functions": json.dumps(TOOLS, ensure_ascii=False, indent=2),
        "datetime": "2024-09-26",
    },
}


# ---- GGUF metadata (just enough to read tokenizer.chat_template) -----------

def gguf_chat_template(path):
    """Returns tokenizer.chat_template of a GGUF file, or None."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] != b"GGUF":
        return None
    pos = 8
    n_tensors, n_kv = struct.unpack_from("<QQ", data, pos)
    pos += 16
    scalar = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}

    def read_str(p):
        (n,) = struct.unpack_from("<Q", data, p)
        return data[p + 8:p + 8 + n], p + 8 + n

    def skip_value(t, p):
        if t in scalar:
            return p + struct.calcsize("<" + scalar[t])
        if t == 8:
            return read_str(p)[1]
        if t == 9:
            et, n = struct.unpack_from("<IQ", data, p)
            p += 12
            for _ in range(n):
                p = skip_value(et, p)
            return p
        raise ValueError("bad GGUF type %d" % t)

    for _ in range(n_kv):
        key, pos = read_str(pos)
        (t,) = struct.unpack_from("<I", data, pos)
        pos += 4
        if key == b"tokenizer.chat_template" and t == 8:
            return read_str(pos)[0].decode("utf-8")
        pos = skip_value(t, pos)
    return None


# ---- Snippets: one rule each -----------------------------------------------

SNIPPET_VARS = {
    "d": {"a": 1, "b": [1, 2], "items": "x"},
    "s": "héllo wörld",
    "n": None,
    "lst": [3, 1, 2],
    "people": [{"name": "Kim", "age": 30}, {"name": "Lee"}, {"name": "Park", "age": 25}],
    "ko": "  안녕  ",
    "f": 2.5,
}

SNIPPETS = [
    # whitespace control, trim_blocks, lstrip_blocks
    "a\n  {% if true %}\n  b\n  {% endif %}\nc",
    "a  {%- if true -%}  b  {%- endif -%}  c",
    "  {{- 'x' -}}  \n{{ 'y' }}  \n{# c #}\nz",
    "x {% if true %}y{% endif %} z\n  {%+ if true %}k{% endif %}",
    "{% if true +%}\nkeep newline{% endif %}\n",
    "line1\n    {# comment #}\nline2\n",
    "a\r\nb\r\n{% if true %}\r\nc{% endif %}\r\n",
    "trailing newline kept once\n\n",
    "{{ 'a' }}\n{{ 'b' }}\n",
    "\t{% if true %}tab{% endif %}\n  \t{% if true %}\nx{% endif %}",
    "{{ 'a' }}\n  {% if true %}b{% endif %}|{{ 'c' }}  {% if true %}d{% endif %}",
    "{{ {'a': {'b': 1}} }} {{ '}}' }} {{ \"%}\" }}{# '#}' #}",
    "x {#- strip left #} y {# keep #} z\n{# trim #}\nw",
    "{%- raw -%}  {{ x }}  {%- endraw -%}|{% raw %}\n{% if %}{% endraw %}",
    "  {% raw %}\nx  {% endraw %}\n  z",
    "  {% raw %}\n  {% endraw %}\n  z|{% raw %}a\n\t{%+ endraw %}",
    "a {{- ' b ' -}} c {{+ 'd' }}",
    "{% for i in [1, 2] -%}\n  {{ i }}\n{%- endfor %}\n",
    "{% for i in [1, 2] %}\n  {{ i }}\n{% endfor %}\n",
    "{% macro m() -%}\n  body\n{%- endmacro %}\n[{{ m() }}]",
    "{% set x = 1 %}\n{% if x %}\n    yes\n{% else %}\n    no\n{% endif %}\n",
    # literals and printing
    "{{ 1 }} {{ -3 }} {{ 1.0 }} {{ 2.50 }} {{ 1e20 }} {{ 1.5e-7 }} {{ 0.1 + 0.2 }} {{ 1_000 }}",
    "{{ none }} {{ true }} {{ false }} {{ True }} {{ None }} {{ n }}",
    "{{ 1 / 3 }} {{ 0.1 * 3 }} {{ 1e-5 }} {{ 0.0001 }} {{ 123456789012345678.0 }} {{ -0.0 }} {{ 1e16 }} {{ 1e15 }} {{ 5 // 2.0 }} {{ 10 % 3.5 }} {{ 2.0 ** 3 }} {{ 1.5e3 }}",
    "{{ lst.0 }} {{ d.b.1 }} {{ people.1.name }} {{ s.0 }}",
    "{{ '\\x41\\101\\t|' }} {{ \"a\\\"b\" }} {{ 'a\\\nb' }}",
    "{{ [1, 'a', none, true, 2.5] }} {{ {'k': 'v', 'n': [1]} }} {{ d }}",
    "{{ \"it's\" }} {{ ['it\\'s', 'say \"hi\"', 'both \\' \"', 'tab\\tnl\\n', 'é😀', '\\x01'] }}",
    "{{ 'a' 'b' \"c\" }} {{ '\\u00e9\\x41\\n' }} {{ 'back\\\\slash' }} {{ '\\d' }}",
    "{% for x in ('a', 1) %}{{ x }}{% endfor %} {{ () | length }} {{ (1,) | length }} {{ (1) }} {{ (1, 2) | list }}",
    # arithmetic
    "{{ 1 + 2 * 3 }} {{ (1 + 2) * 3 }} {{ 7 / 2 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 2 ** 10 }} {{ 2 ** -1 }}",
    "{{ 4 / 2 }} {{ 7.5 // 2 }} {{ 7.5 % 2 }} {{ true + 1 }} {{ 1 + 2.5 }} {{ 10 - 0.5 }} {{ -f }} {{ +f }}",
    "{{ 'ab' * 3 }}|{{ 2 * 'x' }}|{{ 'x' * 0 }}|{{ [1, 2] * 2 }}|{{ [1] + [2] }}|{{ 'a' ~ 1 ~ none ~ true ~ 2.5 ~ undefined_thing }}",
    "{{ 1 / 0 }}",
    "{{ 1 // 0 }}",
    "{{ 'a' + 1 }}",
    "{{ none + 1 }}",
    "{{ [] + 'a' }}",
    "{{ 'a' - 'b' }}",
    "{{ 9223372036854775807 + 0 }} {{ 3 ** 3 ** 2 }} {{ 2 ** 62 }}",
    # comparisons and logic
    "{{ 1 == 1.0 }} {{ 'a' < 'b' }} {{ [1, 2] < [1, 3] }} {{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }} {{ 'a' != 'a' }} {{ none == none }} {{ true == 1 }}",
    "{{ 'b' in 'abc' }} {{ 2 in [1, 2] }} {{ 'a' in d }} {{ 'z' not in d }} {{ 1 in undefined_thing }} {{ 'x' not in 'abc' }}",
    "{{ 1 and 2 }} {{ 0 or 'x' }} {{ '' or [] }} {{ not 0 }} {{ none and 1 }} {{ undefined_thing or 'default' }}",
    "{{ 'yes' if 1 else 'no' }} {{ 'yes' if 0 else 'no' }} [{{ 'yes' if 0 }}] {{ 1 if 0 else 2 if 0 else 3 }}",
    "{{ not 1 == 2 }} {{ not x is defined }} {{ - 2 ** 2 }} {{ -2 | abs }} {{ 'a' ~ 2 | string }}",
    "{{ 1 + 2 | string }}",
    "{{ 'a' < 1 }}",
    # undefined
    "[{{ undefined_thing }}] [{{ d.zz }}] [{{ d['zz'] }}] [{{ lst[10] }}] [{{ s[100] }}] {{ undefined_thing is defined }} {{ d.zz is undefined }}",
    "{{ undefined_thing.attr }}",
    "{{ d.zz.yy }}",
    "{{ d['zz'] + 'a' }}",
    "{{ lst[10] + 1 }}",
    "{{ n.attr }}",
    "{% for x in undefined_thing %}x{% else %}empty{% endfor %} {{ undefined_thing | length }} {{ undefined_thing | list }} [{{ undefined_thing | join(',') }}] [{{ undefined_thing | trim }}] {{ undefined_thing == undefined_thing }}",
    "{{ undefined_thing | tojson }}",
    # subscripts, attributes, slices
    "{{ d.a }} {{ d['b'][1] }} {{ d.b[-1] }} {{ lst[0] }} {{ s[1] }} {{ s[-1] }} {{ people[1].name }} {{ people[0]['age'] }}",
    "{{ lst[1:] }} {{ lst[:-1] }} {{ lst[::-1] }} {{ lst[::2] }} {{ s[1:4] }} {{ s[::-1] }} {{ s[-3:] }} {{ lst[5:] }} {{ lst[1:2:0] if false else 'ok' }}",
    "{{ d['items'] }} {{ d.get('a') }} {{ d.get('q') }} {{ d.get('q', 3) }} {{ d.keys() | list }} {{ d.values() | list }} {{ d.items() | length }} {{ d.items() | first | first }}",
    "{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}",
    # string methods
    "[{{ ko.strip() }}] [{{ ko.lstrip() }}] [{{ ko.rstrip() }}] [{{ 'xxaxx'.strip('x') }}] {{ s.upper() }} {{ 'ABC'.lower() }} {{ s.title() }} {{ 'hello'.capitalize() }}",
    "{{ ' a  b '.split() }} {{ 'a,b,,c'.split(',') }} {{ 'a,b,c'.split(',', 1) }} {{ 'a b c'.split(none, 1) }} {{ 'a,b,c'.rsplit(',', 1) }} {{ ''.split() }} {{ ''.split(',') }}",
    "{{ s.startswith('hé') }} {{ s.endswith('wörld') }} {{ s.startswith(('x', 'h')) }} {{ 'aaa'.replace('a', 'b', 2) }} {{ s.find('l') }} {{ s.count('l') }} {{ '-'.join(['a', 'b']) }} {{ 'x'.join('abc') }}",
    "{{ 'abc'.isdigit() }} {{ '123'.isdigit() }} {{ 'abc'.isalpha() }} {{ 'a b'.isspace() }} {{ ' '.isspace() }} {{ 'Ab'.islower() }} {{ 'AB'.isupper() }}",
    "{{ 'a\\nb\\r\\nc'.splitlines() }} {{ 'abc'.rfind('c') }} {{ 'abc'.index('b') }} {{ 'ab'.center(6, '*') }}",
    # filters
    "{{ undefined_thing | int }}",
    "{{ undefined_thing | float }}",
    "{{ 'hello wORLD-foo (bar) [baz] <q>x.y_z' | title }} {{ 'héllo wörld' | title }} {{ \"they're o'neil\".title() }}",
    "{{ 3.0 | int }} {{ '1_000' | int }} {{ ' 12 ' | float }} {{ '-7' | int }} {{ '+3' | int }} {{ '3.9' | int }} {{ '1e3' | int }} {{ 'abc' | center(9) }}|{{ 'abc' | center(8) }}|{{ range(3) | join('-') }}",
    "{{ 'x' in none }}",
    "{{ undefined_thing in d }} {{ undefined_thing in lst }} {{ undefined_thing not in d }}",
    "{{ undefined_thing in 'abc' }}",
    "[{{ ko | trim }}] {{ 'x,y' | trim(',x') }} {{ s | length }} {{ lst | length }} {{ d | length }} {{ lst | list }} {{ 'ab' | list }} {{ lst | first }} {{ lst | last }} {{ 'abc' | first }}",
    "{{ lst | join }} {{ lst | join(', ') }} {{ people | join(', ', attribute='name') }} {{ lst | sort }} {{ lst | sort(reverse=true) }} {{ people | sort(attribute='name') | map(attribute='name') | join }} {{ ['b', 'A', 'c'] | sort }} {{ ['b', 'A', 'c'] | sort(case_sensitive=true) }}",
    "{{ people | map(attribute='age') | list }} {{ people | map(attribute='age', default=0) | list }} {{ ['a', 'b'] | map('upper') | list }} {{ lst | map('string') | join('-') }}",
    "{{ people | selectattr('age') | map(attribute='name') | list }} {{ people | rejectattr('age') | map(attribute='name') | list }} {{ people | selectattr('age', 'defined') | list | length }} {{ people | selectattr('name', 'equalto', 'Lee') | list }} {{ lst | select('odd') | list }} {{ lst | reject('odd') | list }} {{ [0, 1, '', 'a', none] | select | list }}",
    "{{ people | selectattr('age', 'defined') | selectattr('age', '>', 26) | map(attribute='name') | list }} {{ lst | select('>', 1) | list }} {{ lst | select('in', [1, 3]) | list }} {{ people | rejectattr('name', 'in', ['Kim']) | map(attribute='name') | join(',') }}",
    "{{ '' | default('x') }} {{ '' | default('x', true) }} {{ none | default('x') }} {{ undefined_thing | default('x') }} {{ undefined_thing | d('y') }} {{ 0 | default(5, boolean=true) }}",
    "{{ '3' | int + 1 }} {{ 'x' | int }} {{ 'x' | int(7) }} {{ 3.7 | int }} {{ '2.5' | float }} {{ 1 | float }} {{ 'x' | float }} {{ true | int }} {{ '0x1A' | int(0, 16) }} {{ ' 42 ' | int }}",
    "{{ 5 | string + 'a' }} {{ none | string }} {{ lst | string }} {{ 'AbC' | lower }} {{ 'AbC' | upper }} {{ 'hello world' | title }} {{ 'hELLO' | capitalize }} {{ 'a-b-a' | replace('a', 'x') }} {{ 'aaa' | replace('a', 'b', 2) }}",
    "{{ lst | reverse | list }} {{ 'abc' | reverse }} {{ lst | sum }} {{ people | selectattr('age', 'defined') | sum(attribute='age') }} {{ -3 | abs }} {{ (-3) | abs }} {{ 2.567 | round(2) }} {{ 2.5 | round }} {{ 3.5 | round }} {{ 2.1 | round(method='ceil') }} {{ 2.9 | round(0, 'floor') }} {{ lst | min }} {{ lst | max }} {{ ['b', 'a'] | min }}",
    "{{ [1, 2, 2, 1, 3] | unique | list }} {{ ['a', 'A', 'b'] | unique | list }} {{ people | map(attribute='name') | unique | list }}",
    "{{ 'a\\nb\\n\\nc' | indent }}|{{ 'a\\nb' | indent(2) }}|{{ 'a\\nb' | indent(2, first=true) }}|{{ 'a\\n\\nb' | indent(2, blank=true) }}|{{ 'a\\nb\\n' | indent(3, true) }}|{{ 'x' | indent('> ') }}",
    "{% for k, v in d | items %}{{ k }}{{ v }}{% endfor %} {% for k, v in {'b': 1, 'a': 2} | dictsort %}{{ k }}{{ v }}{% endfor %} {% for k, v in {'b': 1, 'a': 2} | dictsort(by='value') %}{{ k }}{% endfor %} {% for k, v in {'b': 1, 'A': 2, 'a': 3} | dictsort(true) %}{{ k }}{% endfor %} {% for k, v in {'b': 1, 'A': 2, 'a': 3} | dictsort %}{{ k }}{% endfor %}",
    "{{ d | tojson }} {{ d | tojson(indent=2) }} {{ 'é\"\\n\\u0001\\u001f<>&\\'' | tojson }} {{ [1.0, 0.1, 1e20, 1e-7, 2.5, 100.0, 1e16, 123456789.123] | tojson }} {{ none | tojson }} {{ true | tojson }} {{ {'z': 1, 'a': {'c': [], 'b': {}}} | tojson(sort_keys=true) }} {{ lst | tojson(separators=(',', ':')) }}",
    "{{ people | tojson(indent=4) }}",
    "{{ 'é😀' | tojson(ensure_ascii=true) }}",
    "{{ 'x' | safe }} {{ 'a' | safe + '<b>' }} {{ '<a>' + 'b' | safe }} {{ ('a' | safe) ~ '<' }} {{ ('a ' | safe | trim) + '&' }} {{ 'a' | safe | replace('a', 'b') + '<' }} {{ ('x' | safe).upper() + '\"' }} {{ 'x' | safe | string + \"'\" }}",
    "{{ 'x' | e }} {{ '<&>\"\\'' | escape }} {{ lst | batch(2) | list }} {{ [1, 2, 3] | batch(2, 0) | list }} {{ 'a b c' | wordcount }} {{ 'hello world' | truncate(8, true, '') }}",
    "{{ 12 | length }}",
    "{{ 'yes' if [] | select else 'no' }} {{ lst | select | list | length }} {{ lst | map('string') | join(',') }} {{ lst | reverse | join }} {{ lst | unique | first }}",
    "{{ lst | select | length }}",
    "{{ none | select | list }} {{ none | map('upper') | list }} {{ none | selectattr('a') | list }} {{ 0 | reject | list }} {{ '' | map('upper') | list }}",
    "{{ none | list }}",
    "{{ none | join(',') }}",
    "{{ lst | map('string') | tojson }}",
    "{{ lst | selectattr('x') | tojson }}",
    "{{ lst | select | last }}",
    # tests
    "{{ none is none }} {{ 'a' is string }} {{ 1 is number }} {{ true is number }} {{ true is boolean }} {{ 1.0 is integer }} {{ 1 is float }} {{ d is mapping }} {{ d is iterable }} {{ 's' is iterable }} {{ undefined_thing is iterable }} {{ 1 is iterable }} {{ lst is sequence }} {{ 's' is sequence }}",
    "{{ 3 is odd }} {{ 3 is even }} {{ 4 is divisibleby 2 }} {{ 4 is divisibleby(3) }} {{ 1 is equalto 1 }} {{ 1 is eq 1.0 }} {{ 'a' is lower }} {{ 'A' is upper }} {{ range is callable }} {{ d.get is callable }} {{ 1 is ne 2 }} {{ 2 is gt 1 }} {{ 2 is ge 3 }} {{ 1 is lt 2 }} {{ 1 is le 1 }} {{ 1 is in [1] }} {{ none is sameas none }} {{ true is true }} {{ 0 is false }} {{ 1 is not string }}",
    "{{ x is nonsense_test }}",
    # loops
    "{% for i in range(3) %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.length }}{{ loop.first }}{{ loop.last }}[{{ loop.previtem }}][{{ loop.nextitem }}]{{ loop.cycle('a', 'b') }};{% endfor %}",
    "{% for i in [] %}x{% else %}empty{% endfor %} {% for c in 'hé' %}[{{ c }}]{% endfor %} {% for k in d %}{{ k }}{% endfor %} {% for a, b in [[1, 2], (3, 4)] %}{{ a }}{{ b }}{% endfor %}",
    "{% for i in [1, 2, 3, 4] if i is even %}{{ loop.index }}:{{ i }}/{{ loop.length }} {% endfor %}",
    "{% for i in range(10) %}{% if i == 1 %}{% continue %}{% endif %}{% if i == 4 %}{% break %}{% endif %}{{ i }}{% endfor %}",
    "{% for i in range(2) %}{% for j in range(2) %}{{ loop.index }}{% endfor %}{{ loop.index }}|{% endfor %}",
    "{{ range(5) | list }} {{ range(2, 5) | list }} {{ range(5, 0, -2) | list }} {{ range(0) | list }}",
    "{% for a, b in [[1, 2, 3]] %}{{ a }}{% endfor %}",
    "{% for i in 5 %}{{ i }}{% endfor %}",
    "{% for i in none %}{{ i }}{% endfor %}",
    # scoping
    "{% set x = 1 %}{% for i in [1, 2] %}{{ x }}{% set x = i * 10 %}{{ x }};{% endfor %}{{ x }}",
    "{% for i in [1, 2, 3] %}{% if i == 2 %}[{{ y }}]{% endif %}{% set y = i %}{% endfor %}[{{ y }}]",
    "{% if true %}{% set z = 5 %}{% endif %}{{ z }}",
    "{% set c = 1 %}{% for i in [1, 2, 3] %}{% set c = c + 1 %}{{ c }}{% endfor %}{{ c }}",
    "{% set c = 1 %}{% for i in [1, 2] %}{{ c }}{% if i == 2 %}{% set c = 5 %}{% endif %}{% endfor %}{{ c }}",
    "{% macro m() %}{{ c }}{% set c = 3 %}{{ c }}{% endmacro %}{% set c = 1 %}{{ m() }}{{ c }}",
    "{% for i in [1] %}{% set x = 1 %}{% for j in [1] %}{{ x }}{% set x = 2 %}{{ x }}{% endfor %}{{ x }}{% endfor %}",
    "{% for m in [1, 2] %}{% set m = m * 10 %}{{ m }}{% endfor %}",
    "{% for a in [[1, 2]] %}{{ loop.index }}{% for b in a %}{{ loop.index }}{% endfor %}{{ loop.index }}{% endfor %}",
    "{% set ns = namespace(count=0, items=[]) %}{% for i in range(3) %}{% set ns.count = ns.count + i %}{% set ns.items = ns.items + [i] %}{% endfor %}{{ ns.count }} {{ ns.items }} {{ ns.missing is defined }}",
    "{% set ns = namespace() %}{% set ns.a = 'x' %}{{ ns.a }}{% set ns2 = namespace(d) %}{{ ns2.a }}{{ ns2.items }}",
    "{% set a, b = 1, 2 %}{{ a }}{{ b }}{% set c, e = [3, 4] %}{{ c }}{{ e }}",
    "{% set x %}captured {{ 1 + 1 }}  {% endset %}[{{ x }}]{% set y | upper %}shout{% endset %}{{ y }}",
    "{% filter upper %}hello {{ 'world' }}{% endfilter %}|{% filter trim %}  padded  {% endfilter %}|{% filter replace('a', 'o') | upper %}banana{% endfilter %}",
    "{% set d2 = {'k': 1} %}{{ d2.k }}{% set lst2 = lst + [4] %}{{ lst2 }}{{ lst }}",
    "{% set n.attr = 1 %}",
    # macros
    "{% macro m(a, b=2) %}[{{ a }},{{ b }},{{ varargs | length }},{{ kwargs }}]{% endmacro %}{{ m() }}{{ m(1) }}{{ m(1, 3) }}{{ m(1, 2, 3) }}{{ m(1, c=3) }}{{ m(b=5, a=4) }}",
    "{% macro m(a) %}[{{ a }}]{% endmacro %}{{ m(1, 2) }}",
    "{% macro m(a) %}{{ a }}{% endmacro %}{{ m(a=1, a=2) }}",
    "{% macro fact(n) %}{% if n <= 1 %}1{% else %}{{ n * fact(n - 1) | int }}{% endif %}{% endmacro %}{{ fact(10) }}",
    "{% set g = 'global' %}{% macro show() %}{{ g }}/{{ loop_var is defined }}{% endmacro %}{% for loop_var in [1] %}{{ show() }}{% endfor %}{% set g = 'changed' %}{{ show() }}",
    "{% macro m() %}{% set inner = 1 %}{{ inner }}{% endmacro %}{{ m() }}[{{ inner }}]{{ m | string | length > 0 }}",
    "{% macro outer() %}<{{ caller() }}>{% endmacro %}{% call outer() %}inside {{ 1 + 1 }}{% endcall %}",
    "{% macro list_items(items) %}{% for i in items %}{{ caller(i) }}{% endfor %}{% endmacro %}{% call(x) list_items([1, 2]) %}[{{ x }}]{% endcall %}",
    "{% macro r() %}{{ r() }}{% endmacro %}{{ r() }}",
    "{% macro m(x) %}{{ x }}{% endmacro %}{{ m(1) + 'a' }}{{ m(2) | length }}",
    # globals
    "{{ raise_exception('Custom error: 안녕 ' ~ 42) }}",
    "{{ strftime_now('%d %b %Y') }}|{{ strftime_now('%Y-%m-%d %H:%M:%S') }}|{{ strftime_now('%A %B %j %y %I %p %%') }}|{{ strftime_now('%a %e') }}",
    "{{ namespace(a=1).a }} {{ dict(a=1, b='x') }} {{ range(3) | length }}",
    "{{ undefined_function() }}",
    "{{ 'abc'.nonsense() }}",
    "{{ lst.append(4) }}",
    "[{{ lst.append }}] {{ lst.append is defined }} {{ lst.index(1) }} {{ lst.count(3) }}",
    "{% if 1 if true else 0 %}x{% endif %}",
    "{{ 'x'.__class__ }}",
    "{{ ''.__class__.__mro__ }}",
    "{{ ''.__.__class__ }}|{{ d.__c.__class__ }}",
    "{{ ''.__.__class__.__mro__ }}",
    "{{ ''._n_class__.__mro__ }}",
    "{{ 0x1F }} {{ 0o17 }} {{ 0b101 }} {{ 0X1f }} {{ 1_0 }} {{ 00 }} {{ 1E3 }} {{ 1_0.5_0 }} {{ lst.0 }}{% if true: %} colon{% else: %}no{% endif %}{% for i in [1]: %}{{ i }}{% endfor %}",
    "{{ 07 }}",
    "{{ lst[] }}|{{ d[] }}",
    "{{ d.__c.__class__ }}|{{ d._x }}|{{ (1.5)[1:] }}|{{ lst[1, 2] }}",
    "{% macro m() %}x{% endmacro %}{% call m() %}y{% endcall %}",
    "{{ [1, 2, 3] | batch(0) | list }} {{ [1, 2, 3] | batch(-1, 'z') | list }} {{ [] | batch(2) | list }}",
    "{{ d.__class__ }}",
    "{{ d.update({'a': 2}) }}",
    # generation tag, comments, raw
    "{% generation %}kept{% endgeneration %}",
    "{# a {{ comment }} with {% tags %} #}x{#- stripped -#}  y",
    "{% raw %}{{ not rendered }}{% endraw %}",
    # syntax errors
    "{% if true %}unclosed",
    "{% endif %}",
    "{{ 1 + }}",
    "{% for %}{% endfor %}",
    "{{ 'unterminated }}",
    "{% unknown_tag %}",
    "{{ (1, 2 }}",
    "{% include 'x.html' %}",
    "{{ a.b. }}",
    "{% set = 1 %}",
    "{{ d | nonsense_filter }}",
    "{{ d | nonsense_filter if false else 'guarded' }}{% if false %}{{ x is nonsense_test }}{% endif %}",
    "{{ 'x' is string 1 }}",
    "{{ d | indent(2) }}",
    "{{ people | sort(attribute='age,name') | map(attribute='name') | join }}",
    "{{ people | sort(attribute='nope') | map(attribute='name') | join }} {{ [{'a': 2, 'b': 'x'}, {'a': 1, 'b': 'y'}, {'a': 2, 'b': 'a'}] | sort(attribute='a,b') | map(attribute='b') | join }} {{ [{'a': 2, 'b': 'x'}, {'a': 1, 'b': 'Y'}, {'a': 2, 'b': 'X'}] | sort(attribute='b', reverse=true) | map(attribute='a') | join }}",
]


# ---- Main ------------------------------------------------------------------

def template_sources():
    """(name, jinja source) for every shared template and GGUF chat template."""
    out = []
    tdir = os.path.join(SHARED, "templates")
    for fn in sorted(os.listdir(tdir)):
        if fn.endswith(".jinja"):
            with open(os.path.join(tdir, fn), encoding="utf-8") as f:
                out.append((fn[:-len(".jinja")], "templates/" + fn, f.read()))
    vdir = os.path.join(SHARED, "vocab")
    for fn in sorted(os.listdir(vdir)):
        if fn.endswith(".gguf"):
            src = gguf_chat_template(os.path.join(vdir, fn))
            if src is not None:
                out.append((fn[:-len(".gguf")], "vocab/" + fn, src))
    return out


def main():
    if not os.path.isdir(SHARED):
        sys.exit("shared folder %s not found (set NURI_SHARED)" % SHARED)
    expected_dir = os.path.join(OUT, "expected")
    if os.path.isdir(expected_dir):
        shutil.rmtree(expected_dir)
    os.makedirs(expected_dir)

    cases = []
    first_name_of = {}  # identical templates (Llama 3.1/3.3, ...) share expected files
    for name, rel, source in template_sources():
        name = first_name_of.setdefault(source, name)
        uses_tools = "tools" in source
        variants = [("basic", None), ("nosystem", None)]
        if uses_tools:
            variants += [("tools_dict", "weather_search"), ("tools_string", "weather_search")]
        for conv, tools in variants:
            for agp in (False, True):
                variables = {"messages": CONVERSATIONS[conv], "add_generation_prompt": agp,
                             "bos_token": BOS, "eos_token": EOS}
                extra = EXTRA.get(name, {})
                variables.update(extra)
                if tools:
                    variables["tools"] = TOOLS_LISTS[tools]
                case_id = "%s-%s" % (conv, "gen" if agp else "nogen")
                case = {"template": rel, "conversation": conv, "tools": tools,
                        "add_generation_prompt": agp, "bos_token": BOS, "eos_token": EOS,
                        "extra": extra}
                kind, result = render(source, variables)
                if kind == "output":
                    path = os.path.join(name, case_id + ".txt")
                    os.makedirs(os.path.join(expected_dir, name), exist_ok=True)
                    full = os.path.join(expected_dir, path)
                    if os.path.exists(full):
                        with open(full, encoding="utf-8", newline="") as f:
                            assert f.read() == result, full
                    else:
                        with open(full, "w", encoding="utf-8", newline="") as f:
                            f.write(result)
                    case["expected"] = path
                else:
                    case["error"] = result
                cases.append(case)

    snippets = []
    for src in SNIPPETS:
        kind, result = render(src, SNIPPET_VARS)
        entry = {"template": src}
        entry["output" if kind == "output" else "error"] = result
        snippets.append(entry)

    def dump(obj, fn):
        with open(os.path.join(OUT, fn), "w", encoding="utf-8") as f:
            json.dump(obj, f, ensure_ascii=False, indent=1)
            f.write("\n")

    dump({"conversations": CONVERSATIONS, "tools": TOOLS_LISTS,
          "now": FIXED_NOW.strftime("%Y-%m-%dT%H:%M:%S")}, "conversations.json")
    dump({"jinja2_version": jinja2.__version__, "cases": cases}, "cases.json")
    dump({"jinja2_version": jinja2.__version__, "variables": SNIPPET_VARS,
          "snippets": snippets}, "snippets.json")
    n_err = sum("error" in c for c in cases)
    print("%d template cases (%d errors), %d snippets -> %s" % (len(cases), n_err, len(snippets), OUT))


if __name__ == "__main__":
    main()
