#!/usr/bin/env python3
"""Builds prose-1mb.txt, the English prose used by `quarrel tokenize --bench`.

The text is the King James Bible (public domain) as Debian's bible-kjv
package prints it, with verse numbers removed and each chapter joined into a
paragraph. Every third chapter is taken, in order, until the file holds
1,000,000 bytes (cut at a space).

    apt-get install bible-kjv
    bible "gen1:1-rev22:21" | python3 bench/data/make_prose.py > bench/data/prose-1mb.txt
"""
import re
import sys

SIZE = 1_000_000


def chapters(lines):
    title, verses = None, []
    for line in lines:
        line = line.rstrip("\n")
        if not line.strip():
            continue
        m = re.match(r"^\s+(\d+) (.*)$", line)
        if m:
            verses.append(m.group(2))
        elif line.startswith(" ") or not re.match(r"^.+ \d+$", line):
            verses[-1] += " " + line.strip()  # continuation of a wrapped verse
        else:
            if title is not None:
                yield title, verses
            title, verses = line.strip(), []
    if title is not None:
        yield title, verses


def main():
    out = []
    size = 0
    for i, (title, verses) in enumerate(chapters(sys.stdin)):
        if i % 3:
            continue
        para = title + "\n\n" + " ".join(v.strip() for v in verses) + "\n\n"
        out.append(para)
        size += len(para.encode())
        if size >= SIZE:
            break
    text = "".join(out).encode()[:SIZE]
    text = text[: text.rfind(b" ")] + b"\n"
    sys.stdout.buffer.write(text)


if __name__ == "__main__":
    main()
