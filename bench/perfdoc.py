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


# --- chart rows (bench/run-all) -------------------------------------------------
#
# A benchmark that measures bytes and time for a workload, side by side with
# plain IMAP, appends one row per way to the file bench/run-all names in the
# environment variable PIMAP_BENCH_CHART (when it is set):
#     workload<TAB>way<TAB>bytes<TAB>seconds
# way is one of CHART_WAYS (the bars of bench/run-all's chart); bytes are
# both directions on the measured link, seconds the wall (or active) time
# of the workload; "-" where a figure is not measured.
CHART_WAYS = ("plain", "compress", "pimap", "pimap-nomacros", "pimap-view", "compat-view")


def append_chart_rows(path, workload, rows):
    """rows: [(way, bytes or None, seconds or None)]; way in CHART_WAYS."""
    if not path:
        return
    with open(path, "a") as f:
        for way, nbytes, secs in rows:
            if way not in CHART_WAYS:
                raise ValueError("chart way %r is not one of %s" % (way, CHART_WAYS))
            f.write("%s\t%s\t%s\t%s\n" % (workload.replace("\t", " "), way,
                                            "-" if nbytes is None else "%d" % nbytes,
                                            "-" if secs is None else "%.6f" % secs))
