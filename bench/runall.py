#!/usr/bin/env python3
"""runall.py - the summary of bench/run-all: the chart and the section on top.

    runall.py --output FILE --chart-data TSV --png PNG --runs TSV --command CMD
              --elapsed S --proxy BIN --gateway BIN [--quick]

TSV of chart rows (bench/perfdoc.py append_chart_rows): workload, way,
bytes, seconds. TSV of runs: name, command as shown, seconds, exit status.
Draws PNG with gnuplot (bytes on the measured link and wall time per
workload, one bar per way) and writes the section between
<!-- bench:run-all:start --> and <!-- bench:run-all:end --> of FILE, at the
top when it is not there yet.
"""

import argparse
import datetime
import os
import platform
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import perfdoc  # noqa: E402

START = "<!-- bench:run-all:start -->"
END = "<!-- bench:run-all:end -->"
WAY_TITLES = {
    "plain": "plain IMAP over TLS",
    "compress": "plain IMAP over TLS + COMPRESS",
    "pimap": "through pimap",
    "pimap-nomacros": "through pimap, macros off",
    "pimap-view": "through pimap, a 14-day view",
    "compat-view": "pimap compatibility mode, a 14-day view",
}


def read_chart(path):
    """{workload: {way: (bytes, seconds)}}, workloads in first-seen order."""
    rows, order = {}, []
    if not os.path.exists(path):
        return rows, order
    with open(path) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 4:
                continue
            wl, way, b, s = parts
            if wl not in rows:
                rows[wl] = {}
                order.append(wl)
            rows[wl][way] = (None if b == "-" else int(b), None if s == "-" else float(s))
    return rows, order


def draw(rows, order, png, workdir):
    ways = [w for w in perfdoc.CHART_WAYS if any(w in rows[wl] for wl in order)]
    data = os.path.join(workdir, "chart.dat")
    with open(data, "w") as f:
        for wl in order:
            label = wl.replace('"', "'").replace(", ", "\\n")
            cells = []
            for w in ways:
                b, s = rows[wl].get(w, (None, None))
                cells.append("-" if b is None else "%.1f" % (b / 1000.0))
                cells.append("-" if s is None else "%.4f" % s)
            f.write('"%s" %s\n' % (label, " ".join(cells)))
    colors = ["#9e9e9e", "#4f81bd", "#c0504d", "#f2a65a", "#9bbb59", "#8064a2"]
    plots_b, plots_t = [], []
    for i, w in enumerate(ways):
        src = "'%s'" % data if i == 0 else "''"
        plots_b.append("%s using %d:xtic(1) title '%s' lc rgb '%s'" % (src, 2 + 2 * i, WAY_TITLES[w], colors[i % len(colors)]))
        plots_t.append("%s using %d:xtic(1) title '%s' lc rgb '%s'" % (src, 3 + 2 * i, WAY_TITLES[w], colors[i % len(colors)]))
    height = 1000
    script = """
set terminal pngcairo size 1400,%d font "sans,11"
set output '%s'
set datafile missing '-'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set grid ytics
set key top left
set xtics font "sans,10"
set bmargin 5
set multiplot layout 2,1
set title 'Bytes on the measured link per workload (kB, both directions; fewer is better)'
set ylabel 'kB'
set yrange [0:*]
plot %s
set title 'Wall time per workload (seconds, log scale; less is better)'
set ylabel 's'
set logscale y
set yrange [*:*]
plot %s
unset multiplot
""" % (height, png, ", ".join(plots_b), ", ".join(plots_t))
    with open(os.path.join(workdir, "chart.gp"), "w") as f:
        f.write(script)
    subprocess.run(["gnuplot", os.path.join(workdir, "chart.gp")], check=True)


def machine(proxy, gateway):
    def first(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.splitlines()[0].strip()
        except Exception:
            return "?"
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal:"):
                mem = "%.1f GiB" % (int(line.split()[1]) / 1048576.0)
    except OSError:
        pass
    return ("%d CPUs (%s), %s RAM; Linux %s; Dovecot %s; %s; %s; Python %s; %s"
            % (os.cpu_count() or 0, cpu, mem, platform.release(), first(["dovecot", "--version"]).split()[0],
               first([proxy, "--version"]), first([gateway, "--version"]), platform.python_version(),
               first(["gnuplot", "--version"])))


def fmt_bytes(b):
    return "–" if b is None else format(b, ",")


def fmt_secs(s):
    if s is None:
        return "–"
    return "%.0f ms" % (s * 1000) if s < 1 else "%.2f s" % s


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--output", required=True)
    ap.add_argument("--chart-data", required=True)
    ap.add_argument("--png", required=True)
    ap.add_argument("--runs", required=True)
    ap.add_argument("--command", required=True)
    ap.add_argument("--elapsed", type=int, default=0)
    ap.add_argument("--proxy", required=True)
    ap.add_argument("--gateway", required=True)
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()

    rows, order = read_chart(a.chart_data)
    runs = [line.rstrip("\n").split("\t") for line in open(a.runs) if line.strip()]
    if order:
        draw(rows, order, a.png, os.path.dirname(a.chart_data))

    L = [START, "## This run (bench/run-all)", ""]
    if a.quick:
        L += ["**A quick run (`--quick`): few, small runs to try the scripts. "
              "These numbers are not fit for publication.**", ""]
    L.append("Generated by `%s` on %s, in %d min %d s." % (
        a.command, datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        a.elapsed // 60, a.elapsed % 60))
    L.append("")
    L.append("Machine: %s." % machine(a.proxy, a.gateway))
    L.append("")
    L.append("The benchmarks, each with the exact command it ran (sections below):")
    L.append("")
    for name, shown, secs, rc in runs:
        status = "%s s" % secs if rc == "0" else "**failed (exit %s) after %s s**" % (rc, secs)
        L.append("- `%s` (%s): %s" % (shown, name, status))
    if order:
        L.append("")
        L.append("![Bytes on the measured link and wall time per workload](%s)" % os.path.basename(a.png))
        L.append("")
        L.append("Per workload, the bytes crossing the measured link (both directions; for the "
                 "proxy benchmarks the upstream link, for the link benchmark the link between "
                 "proxy and gateway or client and Dovecot) and the wall time (for the link "
                 "benchmark the active time at its delay, without the push waits); medians from "
                 "the sections below.")
        L.append("")
        ways = [w for w in perfdoc.CHART_WAYS if any(w in rows[wl] for wl in order)]
        L.append("| workload | " + " | ".join(WAY_TITLES[w] for w in ways) + " | pimap / plain |")
        L.append("|---|" + "---:|" * (len(ways) + 1))
        for wl in order:
            cells = []
            for w in ways:
                b, s = rows[wl].get(w, (None, None))
                cells.append("%s B, %s" % (fmt_bytes(b), fmt_secs(s)) if (b, s) != (None, None) else "–")
            pb, ps = rows[wl].get("pimap", (None, None))
            bb, bs = rows[wl].get("plain", (None, None))
            ratio = []
            if pb and bb:
                ratio.append("bytes %.2f×" % (pb / bb))
            if ps and bs:
                ratio.append("time %.2f×" % (ps / bs))
            L.append("| %s | %s | %s |" % (wl, " | ".join(cells), ", ".join(ratio) or "–"))
    L.append(END)
    section = "\n".join(L) + "\n"

    old = open(a.output).read() if os.path.exists(a.output) else ""
    if START in old and END in old:
        perfdoc.write_section(a.output, START, END, section)
    else:
        # First time: on top, after the title and its first paragraph.
        parts = old.split("\n\n", 2)
        if len(parts) == 3 and parts[0].startswith("# "):
            new = parts[0] + "\n\n" + parts[1] + "\n\n" + section + "\n" + parts[2]
        else:
            new = "# pimap performance\n\n" + section + ("\n" + old if old else "")
        with open(a.output + ".tmp", "w") as f:
            f.write(new)
        os.replace(a.output + ".tmp", a.output)
    sys.stdout.write(section)


if __name__ == "__main__":
    main()
