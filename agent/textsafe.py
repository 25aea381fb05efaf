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
