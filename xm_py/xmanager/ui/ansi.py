"""Terminal output to HTML: text escaped, ANSI SGR colours and bold/italic/underline as spans.

Stateful, so a colour opened in one chunk of a followed log carries into the next. Other
escape sequences (cursor moves, titles) are dropped.
"""

from __future__ import annotations

import html
import re

# CSI ... final byte, or OSC ... BEL/ST; SGR is CSI with final "m".
_ESCAPE = re.compile(r"\x1b\[([0-9;?]*)([@-~])|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")
_NAMES = ("black", "red", "green", "yellow", "blue", "magenta", "cyan", "white")


class AnsiToHtml:
    """Converts successive chunks of one stream."""

    def __init__(self) -> None:
        self._fg: str | None = None
        self._bg: str | None = None
        self._bold = False
        self._italic = False
        self._underline = False
        self._pending = ""  # an escape sequence cut by the chunk boundary

    def convert(self, text: str) -> str:
        text = self._pending + text
        self._pending = ""
        cut = text.rfind("\x1b")
        if cut != -1 and not _ESCAPE.match(text, cut) and len(text) - cut < 32:
            text, self._pending = text[:cut], text[cut:]
        out: list[str] = []
        position = 0
        for match in _ESCAPE.finditer(text):
            out.append(self._span(text[position : match.start()]))
            if match.group(2) == "m":
                self._apply(match.group(1))
            position = match.end()
        out.append(self._span(text[position:]))
        return "".join(out)

    def _span(self, text: str) -> str:
        if not text:
            return ""
        text = html.escape(text.replace("\r\n", "\n"), quote=False)
        classes = []
        if self._fg:
            classes.append(f"fg-{self._fg}")
        if self._bg:
            classes.append(f"bg-{self._bg}")
        if self._bold:
            classes.append("b")
        if self._italic:
            classes.append("i")
        if self._underline:
            classes.append("u")
        if not classes:
            return text
        return f'<span class="{" ".join(classes)}">{text}</span>'

    def _apply(self, parameters: str) -> None:
        codes = [int(p) if p.isdigit() else 0 for p in parameters.split(";")] if parameters else [0]
        i = 0
        while i < len(codes):
            code = codes[i]
            if code == 0:
                self._fg = self._bg = None
                self._bold = self._italic = self._underline = False
            elif code == 1:
                self._bold = True
            elif code == 3:
                self._italic = True
            elif code == 4:
                self._underline = True
            elif code == 22:
                self._bold = False
            elif code == 23:
                self._italic = False
            elif code == 24:
                self._underline = False
            elif 30 <= code <= 37:
                self._fg = _NAMES[code - 30]
            elif 90 <= code <= 97:
                self._fg = "bright-" + _NAMES[code - 90]
            elif code == 39:
                self._fg = None
            elif 40 <= code <= 47:
                self._bg = _NAMES[code - 40]
            elif 100 <= code <= 107:
                self._bg = "bright-" + _NAMES[code - 100]
            elif code == 49:
                self._bg = None
            elif code in (38, 48) and i + 1 < len(codes):
                # 256-colour and true-colour forms: skip their arguments (not rendered).
                i += 2 if codes[i + 1] == 5 else 4 if codes[i + 1] == 2 else 0
            i += 1
