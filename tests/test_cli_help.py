"""`host COMMAND --help` tells a newcomer what the command is for and what each option does when left out:
a description, and every option's default value (an option whose default is None says in words what
leaving it out does; a flag's bool and an empty list show none)."""

import argparse
import contextlib
import io

import pytest

from host.cli import COMMANDS, build_parser

OTHERS = ()  # commands whose help another change is still writing: xfail here until it lands


def shown_help(parser, argv):
    """What `host ARGV --help` prints (argparse exits 0 after it)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exit_:
        parser.parse_args([*argv, "--help"])
    assert exit_.value.code == 0
    return " ".join(out.getvalue().split())  # argparse wraps to the terminal: compare words, not lines


def commands(parser):
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action, action.choices


def shows_a_value(default):
    return not (default is None or default is argparse.SUPPRESS or isinstance(default, bool) or default == [])


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.xfail(reason="help written by another change"))
                                  if n in OTHERS else n for n in COMMANDS])
def test_help_has_a_description_and_every_default(name):
    parser = build_parser()
    text = shown_help(parser, [name])  # first: a command may take some defaults only when it is used
    action, choices = commands(parser)
    sub = choices[name]
    line = next(a.help for a in action._choices_actions if a.dest == name)
    assert line and "\n" not in line, f"{name}: no one-line help in `host --help`"
    assert sub.description, f"{name}: no description"
    assert " ".join(sub.description.split()) in text
    formatter = sub._get_formatter()
    for option in sub._actions:
        if not option.option_strings or not shows_a_value(option.default):
            continue
        words = formatter._expand_help(option)
        values = {str(option.default)} | ({f"{option.default:g}"} if isinstance(option.default, float) else set())
        assert "default" in words and any(v in words for v in values), \
            f"{name} {option.option_strings[-1]}: its default {option.default!r} is not shown ({words!r})"
        assert " ".join(words.split()) in text


def test_top_level_help_lists_every_command():
    text = shown_help(build_parser(), [])
    for name in COMMANDS:
        assert f" {name} " in text, name
