"""A small renderer for the part of Helm's template language the keygate
chart uses, for checking the chart where `helm` cannot be installed:
`{{ }}` actions with `-` trimming, `if`/`else if`/`else`/`with`/`define`/
`end`, pipelines with `|` and parentheses, `.`/`$` field paths, string and
number literals, and the functions listed in FUNCS (Go template built-ins
and the sprig/Helm ones the chart calls). Anything else is an error, never
a silent guess: a template that needs more must be checked with helm."""

import hashlib
import json
import re

import yaml

ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.S)
TOKEN = re.compile(r'\s*(?:("(?:[^"\\]|\\.)*")|(\d+)|(\|)|(\()|(\))|(\$?[A-Za-z0-9_.]*[A-Za-z0-9_$.]))')


class TemplateError(Exception):
    pass


def lex(text):
    """Text pieces and actions, with `{{-`/`-}}` whitespace trimming done."""
    items, pos = [], 0
    for m in ACTION.finditer(text):
        items.append(["text", text[pos : m.start()]])
        if m.group(1) and items[-1][0] == "text":
            items[-1][1] = items[-1][1].rstrip()
        items.append(["action", m.group(2).strip(), bool(m.group(3))])
        pos = m.end()
    items.append(["text", text[pos:]])
    out = []
    trim_next = False
    for item in items:
        if item[0] == "text":
            out.append(("text", item[1].lstrip() if trim_next else item[1]))
            trim_next = False
        else:
            out.append(("action", item[1]))
            trim_next = item[2]
    return out


def parse(items, i=0, stop=("end",)):
    """A list of nodes up to one of `stop`; returns (nodes, index, the stop action)."""
    nodes = []
    while i < len(items):
        kind, body = items[i]
        i += 1
        if kind == "text":
            if body:
                nodes.append(("text", body))
            continue
        word = body.split(None, 1)[0] if body else ""
        if word in stop or (word == "else" and "else" in stop):
            return nodes, i, body
        if word in ("if", "with"):
            node, i = parse_branches(items, i, word, body[len(word) :].strip())
            nodes.append(node)
        elif word == "define":
            name = json.loads(body[len("define") :].strip())
            inner, i, _ = parse(items, i, ("end",))
            nodes.append(("define", name, inner))
        elif word in ("range", "template", "block", "else", "end") or body.startswith("/*") or ":=" in body:
            raise TemplateError(f"unsupported action: {{{{ {body} }}}}")
        else:
            nodes.append(("expr", body))
    if stop:
        raise TemplateError(f"missing {{{{ end }}}} (looking for {stop})")
    return nodes, i, None


def parse_branches(items, i, word, cond):
    """The body of an `if`/`with` after its action, through its `end`; an
    `else if` chain shares that one `end`."""
    then, i, ended = parse(items, i, ("end", "else"))
    otherwise = []
    if ended.startswith("else if "):
        node, i = parse_branches(items, i, "if", ended[len("else if ") :].strip())
        otherwise = [node]
    elif ended == "else":
        otherwise, i, _ = parse(items, i, ("end",))
    return (word, cond, then, otherwise), i


def tokens(expr):
    out, pos = [], 0
    while pos < len(expr):
        if expr[pos:].strip() == "":
            break
        m = TOKEN.match(expr, pos)
        if not m or m.end() == pos:
            raise TemplateError(f"cannot read {expr[pos:]!r} in {expr!r}")
        string, number, pipe, opening, closing, word = m.groups()
        if string is not None:
            out.append(("lit", json.loads(string)))
        elif number is not None:
            out.append(("lit", int(number)))
        elif pipe:
            out.append(("|", None))
        elif opening:
            out.append(("(", None))
        elif closing:
            out.append((")", None))
        elif word in ("true", "false"):
            out.append(("lit", word == "true"))
        elif word == "nil":
            out.append(("lit", None))
        elif word.startswith(".") or word.startswith("$"):
            out.append(("field", word))
        else:
            out.append(("func", word))
        pos = m.end()
    return out


def truthy(v):
    return not (v is None or v is False or v == 0 and not isinstance(v, bool) or v in ("", [], {}))


def to_string(v):
    if v is None:
        return ""
    if v is True or v is False:
        return "true" if v else "false"
    if isinstance(v, (dict, list)):
        raise TemplateError(f"printing a map or list directly: {v!r} (use toYaml)")
    return str(v)


def go_indent(n, s):
    pad = " " * n
    return pad + to_string(s).replace("\n", "\n" + pad)


def printf(fmt, *args):
    args = list(args)

    def one(m):
        if m.group(0) == "%%":
            return "%"
        if not args:
            raise TemplateError(f"printf {fmt!r}: too few arguments")
        return to_string(args.pop(0))

    return re.sub(r"%[sdv%]", one, fmt)


def required(message, v):
    if not truthy(v):
        raise TemplateError(f"required: {message}")
    return v


def to_yaml(v):
    if v is None:
        return "null"
    return yaml.safe_dump(v, default_flow_style=False, sort_keys=True, width=10**6).rstrip("\n")


FUNCS = {
    "quote": lambda *vs: " ".join(json.dumps(to_string(v)) for v in vs),
    "default": lambda d, v=None: v if truthy(v) else d,
    "trunc": lambda n, s: to_string(s)[:n],
    "trimSuffix": lambda suffix, s: to_string(s)[: -len(suffix)] if suffix and to_string(s).endswith(suffix) else s,
    "contains": lambda sub, s: to_string(sub) in to_string(s),
    "printf": printf,
    "sha256sum": lambda s: hashlib.sha256(to_string(s).encode()).hexdigest(),
    "toYaml": to_yaml,
    "indent": go_indent,
    "nindent": lambda n, s: "\n" + go_indent(n, s),
    "not": lambda v: not truthy(v),
    "eq": lambda a, b: a == b,
    "and": lambda *vs: next((v for v in vs if not truthy(v)), vs[-1]),
    "or": lambda *vs: next((v for v in vs if truthy(v)), vs[-1]),
    "required": required,
    "toString": to_string,
}


class Chart:
    """Templates of one chart folder, rendered against `values`."""

    def __init__(self, templates):
        self.defines = {}
        self.files = {}
        for name, text in templates.items():
            nodes, _, _ = parse(lex(text), 0, ())
            self.files[name] = nodes
            self._collect(nodes)

    def _collect(self, nodes):
        for node in nodes:
            if node[0] == "define":
                self.defines[node[1]] = node[2]

    def render(self, name, data):
        return self._run(self.files[name], data, data)

    def _run(self, nodes, dot, root):
        out = []
        for node in nodes:
            kind = node[0]
            if kind == "text":
                out.append(node[1])
            elif kind == "expr":
                out.append(to_string(self._pipeline(tokens(node[1]), dot, root)))
            elif kind == "if":
                branch = node[2] if truthy(self._pipeline(tokens(node[1]), dot, root)) else node[3]
                out.append(self._run(branch, dot, root))
            elif kind == "with":
                value = self._pipeline(tokens(node[1]), dot, root)
                out.append(self._run(node[2], value, root) if truthy(value) else self._run(node[3], dot, root))
        return "".join(out)

    def _field(self, path, dot, root):
        if path == ".":
            return dot
        if path == "$":
            return root
        base, rest = (root, path[1:]) if path.startswith("$") else (dot, path)
        value = base
        for part in rest.strip(".").split("."):
            if not isinstance(value, dict):
                raise TemplateError(f"{path}: {part} of a {type(value).__name__}")
            value = value.get(part)
        return value

    def _pipeline(self, toks, dot, root):
        value, rest = self._command(toks, dot, root, None)
        while rest:
            if rest[0][0] != "|":
                raise TemplateError(f"unexpected {rest[0]}")
            value, rest = self._command(rest[1:], dot, root, [value])
        return value

    def _command(self, toks, dot, root, piped):
        args, i = [], 0
        while i < len(toks) and toks[i][0] not in ("|", ")"):
            kind, val = toks[i]
            if kind == "(":
                depth, j = 1, i + 1
                while depth:
                    depth += {"(": 1, ")": -1}.get(toks[j][0], 0)
                    j += 1
                args.append(("value", self._pipeline(toks[i + 1 : j - 1], dot, root)))
                i = j
                continue
            args.append((kind, val))
            i += 1
        if not args:
            raise TemplateError("empty command")
        head = args[0]
        values = [self._arg(a, dot, root) for a in args[1:]] + (piped or [])
        if head[0] == "func":
            if head[1] == "include":
                name, ctx = values
                if name not in self.defines:
                    raise TemplateError(f"include: no template {name!r}")
                return self._run(self.defines[name], ctx, ctx), toks[i:]
            if head[1] not in FUNCS:
                raise TemplateError(f"unsupported function {head[1]}")
            return FUNCS[head[1]](*values), toks[i:]
        if len(args) > 1 or piped:
            raise TemplateError(f"cannot call a value: {args}")
        return self._arg(head, dot, root), toks[i:]

    def _arg(self, arg, dot, root):
        kind, val = arg
        if kind == "lit" or kind == "value":
            return val
        if kind == "field":
            return self._field(val, dot, root)
        raise TemplateError(f"a function ({val}) as an argument needs parentheses")
