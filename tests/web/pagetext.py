"""Read the status pages back as data: header fields, block tables, facts, links."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser


@dataclass
class Table:
    head: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    titles: list[list[str | None]] = field(default_factory=list)
    facts: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def column(self, name: str) -> list[str]:
        i = self.head.index(name)
        return [r[i] for r in self.rows]

    def row(self, col: str, value: str) -> dict[str, str]:
        i = self.head.index(col)
        (found,) = [r for r in self.rows if r[i] == value]
        return dict(zip(self.head, found, strict=True))


class Page(HTMLParser):
    """Parse a page. Cell text keeps <br> as a line feed; entities decoded."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.header: dict[str, str] = {}
        self.blocks: dict[str, Table] = {}
        self.links: list[str] = []
        self.tags: list[str] = []
        self.attrs_seen: list[tuple[str, str, str]] = []
        self.text_parts: list[str] = []
        self.title = ""
        self._block: str | None = None
        self._depth = 0
        self._cell: list[str] | None = None
        self._cell_title: str | None = None
        self._in_head_row = False
        self._row: list[str] = []
        self._row_titles: list[str | None] = []
        self._header_key: str | None = None
        self._header_tag = ""
        self._label: str | None = None
        self._para: list[str] | None = None
        self._in_title = False
        self.feed(html)
        self.close()

    @property
    def text(self) -> str:
        return "".join(self.text_parts)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.tags.append(tag)
        for k, v in a.items():
            self.attrs_seen.append((tag, k, v))
        if tag == "a" and "href" in a:
            self.links.append(a["href"])
        if tag == "title":
            self._in_title = True
        if a.get("id", "").startswith("h-"):
            self._header_key, self._header_tag = a["id"][2:], tag
            self.header[self._header_key] = ""
        if tag == "div":
            if self._block is not None:
                self._depth += 1
            elif a.get("id", "").startswith("b-"):
                self._block = a["id"][2:]
                self._depth = 0
                self.blocks[self._block] = Table()
        if self._block is None:
            return
        if tag == "tr":
            self._row, self._row_titles = [], []
            self._in_head_row = False
        elif tag in ("td", "th", "dd"):
            self._cell = []
            self._cell_title = a.get("title")
            if tag == "th":
                self._in_head_row = True
        elif tag == "br" and self._cell is not None:
            self._cell.append("\n")
        elif tag == "dt":
            self._label = ""
        elif tag == "p":
            self._para = []

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        if tag == self._header_tag and self._header_key is not None:
            self._header_key = None
        if self._block is None:
            return
        table = self.blocks[self._block]
        if tag == "div":
            if self._depth == 0:
                self._block = None
            else:
                self._depth -= 1
        elif tag in ("td", "th") and self._cell is not None:
            self._row.append("".join(self._cell))
            self._row_titles.append(self._cell_title)
            self._cell = None
        elif tag == "tr":
            if self._in_head_row:
                table.head = self._row
            else:
                table.rows.append(self._row)
                table.titles.append(self._row_titles)
        elif tag == "dd" and self._cell is not None and self._label is not None:
            table.facts[self._label] = "".join(self._cell)
            self._cell = None
            self._label = None
        elif tag == "p" and self._para is not None:
            table.notes.append("".join(self._para))
            self._para = None

    def handle_data(self, data: str) -> None:
        self.text_parts.append(data)
        if self._in_title:
            self.title += data
        if self._header_key is not None:
            self.header[self._header_key] += data
        if self._cell is not None:
            self._cell.append(data)
        elif self._label is not None:
            self._label += data
        elif self._para is not None:
            self._para.append(data)
