#!/usr/bin/env python3
"""compare.py — nuri vs llama.cpp on the same GGUF files, same threads, one run.

    NURI=build/nuri LLAMA_BENCH=/path/to/llama-bench [BANDWIDTH=build/bandwidth] \\
        bench/compare.py [-t 2] [-p 512] [-n 128] [-r 5] [--rounds 3] \\
                         [--quiet CORES] [--settle CORES] [--raw FILE] MODEL.gguf...
    bench/compare.py --summarize FILE [--quiet CORES]

For each model the two engines run alternately (nuri, llama.cpp, nuri,
llama.cpp, ... for --rounds rounds), each invocation measuring ppP and tgN
with -r REPS repetitions, so slow drifts of the machine hit both alike.
Per test the table shows, for each engine, the mean ± sample standard
deviation of the pooled samples (n of them), the ratio of the means
(nuri / llama.cpp), and the most CPU other processes used during any
counted run (in cores, from /proc/stat less the benchmark's own CPU time).

On a shared machine other processes disturb the figures (on 2 cores, more
than ~0.1 core of other load shows). --settle CORES waits before each run
until other processes use less than CORES (at most --settle-timeout s);
--quiet CORES counts only runs during which they used at most CORES, and
keeps adding rounds (up to --max-rounds) until each engine has --rounds
counted runs per model.

With BANDWIDTH=build/bandwidth the probe runs at the same thread count
before every round (or --bandwidth GBS gives a fixed figure), and the tg
rows add the roofline, bandwidth / bytes read per token (every weight,
less the embedding table when the model has a separate output matrix: only
one row of it is read; nuri reports this as weight_bytes_per_token), and
each engine's share of it.

--raw FILE saves every run as JSON; --summarize FILE prints the table from
such a file again (e.g. with another --quiet) without running anything.

LLAMA_BENCH is a llama.cpp build you made yourself; this script never
builds or downloads llama.cpp. It needs only Python 3's standard library.
"""
import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time

# ---- Measuring other processes' CPU use -------------------------------------


def cpu_busy_seconds():
    """CPU seconds all processes have spent busy since boot (Linux), or None."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields) - idle) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds():
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def other_load(seconds):
    """Cores' worth of CPU that other processes use over the next `seconds`."""
    busy0 = cpu_busy_seconds()
    time.sleep(seconds)
    busy1 = cpu_busy_seconds()
    return None if busy0 is None or busy1 is None else (busy1 - busy0) / seconds


def settle(limit, timeout):
    """Waits until other processes use less than `limit` cores (2-s windows)."""
    start = time.monotonic()
    while True:
        load = other_load(2.0)
        if load is None or load < limit:
            return
        if time.monotonic() - start > timeout:
            print("  (still %.2f cores busy after %.0f s; running anyway)" % (load, timeout), file=sys.stderr)
            return


def run(cmd):
    """Runs cmd; returns its standard output and the cores' worth of CPU other
    processes used meanwhile (None where unknown). Exits on failure."""
    print("+ " + " ".join(cmd), file=sys.stderr, flush=True)
    busy0, own0, t0 = cpu_busy_seconds(), children_cpu_seconds(), time.monotonic()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    busy1, own1, t1 = cpu_busy_seconds(), children_cpu_seconds(), time.monotonic()
    if proc.returncode != 0:
        sys.exit("compare: %s failed (exit %d):\n%s" % (cmd[0], proc.returncode, proc.stderr[-2000:]))
    other = None
    if busy0 is not None and busy1 is not None and t1 > t0:
        other = max(0.0, ((busy1 - busy0) - (own1 - own0)) / (t1 - t0))
    return proc.stdout, other


# ---- Running the engines ------------------------------------------------------


def test_name(result):
    if result.get("n_prompt", 0) > 0 and result.get("n_gen", 0) == 0:
        return "pp%d" % result["n_prompt"]
    if result.get("n_gen", 0) > 0 and result.get("n_prompt", 0) == 0:
        return "tg%d" % result["n_gen"]
    return "pp%d+tg%d" % (result.get("n_prompt", 0), result.get("n_gen", 0))


def bench_once(engine, exe, model, common, kv_type, rnd):
    """One invocation of an engine; returns its records."""
    if engine == "nuri":
        out, other = run([exe, "bench", "-m", model, "--json", "--kv-type", kv_type] + common)
    else:
        out, other = run([exe, "-m", model, "-o", "json", "-ctk", kv_type, "-ctv", kv_type] + common)
    try:
        results = json.loads(out)
    except json.JSONDecodeError as e:
        sys.exit("compare: %s printed no valid JSON (%s)" % (exe, e))
    records = []
    for res in results:
        rec = {"kind": "test", "model": model, "engine": engine, "round": rnd, "test": test_name(res),
               "samples_ts": res.get("samples_ts") or [res["avg_ts"]], "other_cpu_cores": other,
               "model_size": res.get("model_size")}
        if "weight_bytes_per_token" in res:
            rec["bytes_per_token"] = res["weight_bytes_per_token"]
        records.append(rec)
        print("  round %d %-9s %-6s %s   (other processes: %s cores)" % (
            rnd, engine, rec["test"], " ".join("%.2f" % x for x in rec["samples_ts"]),
            "?" if other is None else "%.2f" % other), file=sys.stderr, flush=True)
    return records


def probe_bandwidth(probe, threads, model, rnd):
    out, other = run([probe, "-t", str(threads)])
    words = out.split()
    if "best" not in words:
        sys.exit("compare: %s printed no figure: %s" % (probe, out))
    gbs = float(words[words.index("best") + 1])
    print("  bandwidth %.2f GB/s   (other processes: %s cores)" % (
        gbs, "?" if other is None else "%.2f" % other), file=sys.stderr, flush=True)
    return {"kind": "bandwidth", "model": model, "round": rnd, "gbs": gbs, "other_cpu_cores": other}


def counted(rec, quiet):
    other = rec.get("other_cpu_cores")
    return quiet is None or (other is not None and other <= quiet)


# ---- The table -------------------------------------------------------------------


def mean_sd(xs):
    m = sum(xs) / len(xs)
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else 0.0
    return m, sd


def summarize(records, quiet, fixed_bandwidth):
    tests = [r for r in records if r["kind"] == "test"]
    probes = [r for r in records if r["kind"] == "bandwidth"]
    quiet_probes = [r for r in probes if counted(r, quiet)]
    bandwidth = fixed_bandwidth
    if not bandwidth and probes:
        gbs = [r["gbs"] for r in (quiet_probes or probes)]
        bandwidth = sum(gbs) / len(gbs)
        print("bandwidth: %.2f GB/s, the mean of %d %sprobes (min %.2f, max %.2f)" % (
            bandwidth, len(gbs), "" if quiet_probes or quiet is None else "(all disturbed) ",
            min(gbs), max(gbs)))
    if quiet is not None:
        n_all, n_quiet = len(tests), sum(1 for r in tests if counted(r, quiet))
        print("counted: %d of %d runs, those during which other processes used <= %.2f cores" % (
            n_quiet, n_all, quiet))
    print()

    head = "| model | test | nuri t/s | llama.cpp t/s | nuri / llama.cpp | other CPU load |"
    rule = "| --- | --- | ---: | ---: | ---: | ---: |"
    if bandwidth:
        head += " roofline t/s | nuri % of roof | llama.cpp % of roof |"
        rule += " ---: | ---: | ---: |"
    print(head)
    print(rule)
    keys = []
    for r in tests:
        if (r["model"], r["test"]) not in keys:
            keys.append((r["model"], r["test"]))
    for model, name in keys:
        runs = {e: [r for r in tests if r["model"] == model and r["test"] == name and r["engine"] == e
                    and counted(r, quiet)] for e in ("nuri", "llama.cpp")}
        cells, means = [], {}
        for e in ("nuri", "llama.cpp"):
            xs = [x for r in runs[e] for x in r["samples_ts"]]
            if xs:
                m, sd = mean_sd(xs)
                means[e] = m
                cells.append("%.2f ± %.2f (n=%d)" % (m, sd, len(xs)))
            else:
                cells.append("no counted run")
        loads = [r["other_cpu_cores"] for e in runs for r in runs[e] if r["other_cpu_cores"] is not None]
        ratio = means["nuri"] / means["llama.cpp"] if len(means) == 2 and means["llama.cpp"] > 0 else None
        row = "| %s | %s | %s | %s | %s | %s |" % (
            os.path.basename(model), name, cells[0], cells[1], "-" if ratio is None else "%.2f" % ratio,
            "%.2f cores" % max(loads) if loads else "?")
        if bandwidth:
            sizes = [r.get("bytes_per_token") for r in tests if r["model"] == model and r.get("bytes_per_token")]
            sizes = sizes or [r.get("model_size") for r in tests if r["model"] == model and r.get("model_size")]
            if name.startswith("tg") and sizes:
                roof = bandwidth * 1e9 / sizes[0]
                row += " %.1f | %s | %s |" % (roof, *("%.0f %%" % (100 * means[e] / roof) if e in means else "-"
                                                       for e in ("nuri", "llama.cpp")))
            else:
                row += " | | |"
        print(row, flush=True)


# ---- Command ----------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="*", metavar="MODEL")
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("-p", "--n-prompt", type=int, default=512)
    ap.add_argument("-n", "--n-gen", type=int, default=128)
    ap.add_argument("-r", "--reps", type=int, default=5, help="repetitions per invocation")
    ap.add_argument("--kv-type", default="f16", choices=["f16", "f32"],
                    help="KV cache type for both engines (default f16, llama-bench's default)")
    ap.add_argument("--rounds", type=int, default=3, help="(counted) runs of each engine per model")
    ap.add_argument("--max-rounds", type=int, default=0, help="with --quiet: the most rounds per model "
                    "(default 3 x --rounds)")
    ap.add_argument("--quiet", type=float, default=None, metavar="CORES",
                    help="count only runs during which other processes used <= CORES")
    ap.add_argument("--settle", type=float, default=0.0, metavar="CORES",
                    help="before each run, wait until other processes use less than CORES")
    ap.add_argument("--settle-timeout", type=float, default=300.0, metavar="SECONDS",
                    help="the longest --settle waits before running anyway (default 300)")
    ap.add_argument("--bandwidth", type=float, default=0.0, metavar="GBS",
                    help="read bandwidth for the tg roofline (default: BANDWIDTH's probes)")
    ap.add_argument("--raw", metavar="FILE", help="save every run as JSON to FILE")
    ap.add_argument("--summarize", metavar="FILE", help="print the table from a --raw FILE; run nothing")
    args = ap.parse_args()

    if args.summarize:
        with open(args.summarize) as f:
            summarize(json.load(f), args.quiet, args.bandwidth)
        return
    if not args.models:
        ap.error("no model files given")
    exes = {"nuri": os.environ.get("NURI"), "llama.cpp": os.environ.get("LLAMA_BENCH")}
    probe = os.environ.get("BANDWIDTH")
    if not exes["nuri"] or not exes["llama.cpp"]:
        sys.exit("compare: set NURI=path/to/nuri and LLAMA_BENCH=path/to/llama-bench")
    for path in list(exes.values()) + ([probe] if probe else []) + args.models:
        if not os.path.exists(path):
            sys.exit("compare: %s does not exist" % path)
    max_rounds = args.max_rounds or 3 * args.rounds if args.quiet is not None else args.rounds

    common = ["-p", str(args.n_prompt), "-n", str(args.n_gen), "-t", str(args.threads), "-r", str(args.reps)]
    records = []
    for model in args.models:
        done = {"nuri": 0, "llama.cpp": 0}
        rnd = 0
        while min(done.values()) < args.rounds and rnd < max_rounds:
            rnd += 1
            if probe:
                if args.settle > 0:
                    settle(args.settle, args.settle_timeout)
                records.append(probe_bandwidth(probe, args.threads, model, rnd))
            for engine in ("nuri", "llama.cpp"):
                if args.settle > 0:
                    settle(args.settle, args.settle_timeout)
                recs = bench_once(engine, exes[engine], model, common, args.kv_type, rnd)
                records.extend(recs)
                if recs and all(counted(r, args.quiet) for r in recs):
                    done[engine] += 1
            if args.raw:  # after every round, so an interrupted run keeps its data
                with open(args.raw, "w") as f:
                    json.dump(records, f, indent=1)
    summarize(records, args.quiet, args.bandwidth)


if __name__ == "__main__":
    main()
