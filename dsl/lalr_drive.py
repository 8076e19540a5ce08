"""One loop that lexes and parses a whole .mdsl text with Lark's own tables, for the
success path: Lark's contextual lexer (each parser state's terminal set, its
unless-callbacks that tell a keyword from a NAME, its ignored terminals) and its
LALR action table, driven without Lark's per-token generator, line counter and
parser-state calls, which cost more than the matching itself.

Tokens carry exactly what Lark's lexer gives them (type, value, start_pos, line,
column, end_line, end_column, end_pos), reductions call the callbacks with the
same children, so results are Lark's own. On anything unexpected (no terminal
matches, no action for a token, a Lark version laid out differently) the loop
stops with Stuck and the caller runs Lark's parser on the text, which raises the
exact error Lark reports: this loop never makes an error of its own.
"""
from __future__ import annotations

from typing import Any

from lark import Lark, Token
from lark.parsers.lalr_analysis import Shift


# A Token is a str with these slots, which its constructor fills; when a Lark release
# lays it out so, the loop fills them itself, skipping the constructor's keyword
# handling (a fifth of the loop's time); otherwise it calls the constructor.
_TOKEN_SLOTS = frozenset({"type", "start_pos", "value", "line", "column", "end_line", "end_column", "end_pos"})
_str_new = str.__new__


def pass_child(s: list) -> Any:
    """The callback of a rule whose value is its one child's (a `?rule` alternative):
    the loop then leaves the value on the stack and only changes the state."""
    return s[0]


class Stuck(Exception):
    """The fast loop cannot go on; Lark's parser decides."""


class Tables:
    """What the loop needs from a built Lark LALR parser, read once: per state, each
    token type's action as an int (n >= 0: shift to state n; n < 0: reduce rule
    ~n), and per state the lexer of its terminal set."""

    def __init__(self, p: Lark, start: str = "start"):
        if p.options.postlex is not None or p.options.lexer_callbacks:
            raise Stuck("a post-lexer or lexer callbacks")
        table = p.parser.parser._parse_table
        self.rules = list(p.rules)
        number = {r: i for i, r in enumerate(self.rules)}
        self.actions = {
            state: {str(t): (arg if action is Shift else ~number[arg]) for t, (action, arg) in acts.items()}
            for state, acts in table.states.items()}
        self.shapes = [(len(r.expansion), str(r.origin.name)) for r in self.rules]
        self.own_tokens = frozenset(getattr(Token, "__slots__", ())) == _TOKEN_SLOTS
        self.start_state = table.start_states[start]
        self.end_state = table.end_states[start]
        self.lexers = {}
        by_lexer: dict[int, tuple] = {}
        for state, lx in p.parser.lexer.lexers.items():
            key = id(lx)
            if key not in by_lexer:
                mres = tuple(lx.scanner._mres)          # builds lx.callback too
                by_lexer[key] = (mres, lx.ignore_types, lx.newline_types, dict(lx.callback))
            self.lexers[state] = by_lexer[key]


def drive(t: Tables, text: str, callbacks: dict) -> Any:
    """The start rule's value for `text`; Stuck where Lark would raise or differ."""
    actions, lexers, end_state = t.actions, t.lexers, t.end_state
    reduce = [(size, origin, None if callbacks[r] is pass_child and size == 1 else callbacks[r])
              for r, (size, origin) in zip(t.rules, t.shapes)]
    state_stack = [t.start_state]
    value_stack: list = []
    push_state, push_value = state_stack.append, value_stack.append
    pos, line, line_start, end = 0, 1, 0, len(text)
    tok = None
    at_end = False
    own_tokens = t.own_tokens
    while True:
        if pos < end:
            mres, ignore, newline_types, unless = lexers[state_stack[-1]]
            for mre in mres:
                m = mre.match(text, pos)
                if m:
                    break
            else:
                raise Stuck("no terminal matches")
            value = m.group(0)
            type_ = m.lastgroup
            start, start_line, column = pos, line, pos - line_start + 1
            pos += len(value)
            if type_ in newline_types:
                n = value.count("\n")
                if n:
                    line += n
                    line_start = start + value.rindex("\n") + 1
            if type_ in ignore and type_ not in unless:
                continue
            if own_tokens:
                tok = _str_new(Token, value)
                tok.type = type_
                tok.value = value
                tok.start_pos = start
                tok.line = start_line
                tok.column = column
                tok.end_line = line
                tok.end_column = pos - line_start + 1
                tok.end_pos = pos
            else:
                tok = Token(type_, value, start, start_line, column, line, pos - line_start + 1, pos)
            if type_ in unless:
                tok = unless[type_](tok)
                if type_ in ignore:
                    continue
                type_ = tok.type
        else:
            tok = Token.new_borrow_pos("$END", "", tok) if tok is not None else Token("$END", "", 0, 1, 1)
            type_ = "$END"
            at_end = True
        while True:
            try:
                act = actions[state_stack[-1]][type_]
            except KeyError:
                raise Stuck("no action") from None
            if act >= 0:
                if at_end:
                    raise Stuck("shift at the end")
                push_state(act)
                push_value(tok)
                break
            size, origin, cb = reduce[~act]
            if cb is None:
                del state_stack[-1]
                push_state(actions[state_stack[-1]][origin])
                if at_end and state_stack[-1] == end_state:
                    return value_stack[-1]
                continue
            if size:
                s = value_stack[-size:]
                del state_stack[-size:]
                del value_stack[-size:]
            else:
                s = []
            push_value(cb(s))
            push_state(actions[state_stack[-1]][origin])
            if at_end and state_stack[-1] == end_state:
                return value_stack[-1]
