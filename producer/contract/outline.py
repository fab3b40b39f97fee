"""The members of a JSON object's top level, found without parsing what they hold.

For records that a decoder refuses as a whole (a field nested too deeply, another of
the wrong type): each top-level member can then be decoded on its own. Brackets are
counted outside strings, with no recursion, so any depth is fine.
"""

from __future__ import annotations

import re

# A JSON string token, or one structural character; anything else (numbers, literals,
# white space) lies between the matches.
_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|[{}\[\],:]')


def _outline(raw: bytes) -> list[re.Match[bytes]] | None:
    """The tokens directly inside the top-level object of ``raw``, its closing brace
    last, found by counting brackets outside strings: no recursion, so any depth. None
    unless ``raw`` is one object whose brackets balance."""
    if not raw.lstrip().startswith(b"{"):
        return None
    depth, outline = 0, list[re.Match[bytes]]()
    for match in _TOKEN.finditer(raw):
        token = match.group()
        if token in (b"{", b"["):
            depth += 1
        elif token in (b"}", b"]"):
            depth -= 1
            if depth == 0:
                closed = token == b"}" and not raw[match.end() :].strip()
                return [*outline, match] if closed else None
        elif depth == 1:
            outline.append(match)
    return None


def top_level_members(raw: bytes) -> dict[bytes, bytes] | None:
    """The raw JSON text of each member of the top-level object, by quoted name."""
    outline = _outline(raw)
    if outline is None:
        return None
    members: dict[bytes, bytes] = {}
    name, start = b"", 0
    for match in outline:
        token = match.group()
        if token == b":":
            start = match.end()
        elif token in (b",", b"}"):
            if name:
                members[name] = raw[start : match.start()]
            name = b""
        elif not name:
            name = token
    return members
