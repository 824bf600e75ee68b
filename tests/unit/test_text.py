"""engine.text.printable: what every face applies to text before it reaches a terminal."""

from __future__ import annotations

from engine.spec.limits import nesting
from engine.text import printable, printable_data


def test_every_control_character_becomes_a_visible_escape() -> None:
    hostile = "a\x1b[2J\x1b]0;PWNED\x07b\x9b31mc\x7fd\x00e\u2028f\u2029g\rh\ti\nj"
    assert printable(hostile) == "a\\x1b[2J\\x1b]0;PWNED\\x07b\\x9b31mc\\x7fd\\x00e\\u2028f\\u2029g\\rh\\ti\\nj"
    assert printable(hostile, newlines=True, tabs=True).endswith("\\rh\ti\nj")
    for code in [*range(0x20), *range(0x7F, 0xA0)]:
        assert printable(chr(code)).startswith("\\") and printable(chr(code)).isprintable()
    assert printable(printable(hostile)) == printable(hostile)  # idempotent: escapes are plain text
    assert printable("Ünïcode, emoji 🙂 and [brackets] stay") == "Ünïcode, emoji 🙂 and [brackets] stay"


def test_printable_data_reaches_every_string_of_a_row() -> None:
    row = {"name\x1b": ["x\x9b", ("y\x07", 1.5)], "n": None}
    assert printable_data(row) == {"name\\x1b": ["x\\x9b", ("y\\x07", 1.5)], "n": None}


def test_nesting_skips_strings_and_comments_and_names_the_line() -> None:
    assert nesting('a = "[[[[" # [[[[\nb = [[1], {c = [2]}]\n') == (3, 2)
    assert nesting("x = '''\n[[[\n'''\ny = [\n[\n[1]]]") == (3, 6)
    assert nesting('s = "\\"[" \nt = [1]') == (1, 2)
