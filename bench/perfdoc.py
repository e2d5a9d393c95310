"""perfdoc.py - write one benchmark's section of docs/PERFORMANCE.md.

Each benchmark owns the text between its start and end markers; the rest of
the file (prose written by hand, other benchmarks' sections) is kept as is.
"""

import os


def write_section(output, start, end, section):
    """Replace the text from start through end (a line each) with section,
    or append section when the markers are not there yet; atomic rename."""
    old = ""
    if os.path.exists(output):
        with open(output) as f:
            old = f.read()
    if start in old and end in old:
        pre = old[:old.index(start)]
        post = old[old.index(end) + len(end):]
        if post.startswith("\n"):
            post = post[1:]
        new = pre + section + post
    elif old:
        new = old.rstrip("\n") + "\n\n" + section
    else:
        new = "# Performance\n\n" + section
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    tmp = output + ".tmp"
    with open(tmp, "w") as f:
        f.write(new)
    os.replace(tmp, output)
