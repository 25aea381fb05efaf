"""Make strings taken from the outside (container names, journal lines) safe to print.

Pure: control characters (terminal escapes, newlines, NUL, C1 controls, bidi
overrides) become visible `\\xNN` / `\\uNNNN` sequences, and long values are cut.
HTML escaping is the renderer's job; this only removes what a terminal or a
reader would misinterpret.
"""

from __future__ import annotations

import unicodedata

MAX_SHOWN = 200  # characters kept from one outside value


def printable(value: object, limit: int = MAX_SHOWN) -> str:
    """`value` as text with every control or format character made visible."""
    text = value if isinstance(value, str) else str(value)
    out: list[str] = []
    cut = len(text) > limit
    for ch in text[: limit - 1] if cut else text:
        cat = unicodedata.category(ch)
        if cat in ("Cc", "Cf", "Cs", "Zl", "Zp"):
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(ch)
    return "".join(out) + ("…" if cut else "")


def terminal(text: str) -> str:
    """Whole output text with every control or format character made visible, except the
    newline and tab that lay it out. Idempotent, so already-escaped parts pass unchanged."""
    if text.isascii() and text.replace("\n", "").replace("\t", "").isprintable():
        return text  # the common case (tables, JSON) at C speed
    return "\n".join(
        "\t".join(
            part if part.isprintable() else printable(part, limit=len(part) + 1)
            for part in line.split("\t")
        )
        for line in text.split("\n")
    )


def echo(text: str, *, err: bool = False, nl: bool = True) -> None:
    """The one way the CLIs print: every output path goes through `terminal`.
    Plain sys streams, not typer: `--help`, `status` and `targets` never import typer."""
    import sys

    stream = sys.stderr if err else sys.stdout
    stream.write(terminal(text) + ("\n" if nl else ""))
    stream.flush()
