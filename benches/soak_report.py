#!/usr/bin/env python3
"""The table and verdicts of a benches/soak.sh run, from its output directory.

    benches/soak_report.py OUTDIR      (prints Markdown; soak.sh also writes OUTDIR/soak.md)

Reads OUTDIR/params.json, rss.log ("epoch_seconds rss_kb" every 10 s), runs/{fanout,private,
churn}-M.json (+ .rc: exit status), metrics/M.txt (/metrics at the start of minute M),
idle-K.json, faults.json and server.rc.
"""
import json
import os
import sys

WARMUP_MIN = 2
RSS_LIMIT_PCT = 10.0


def load_json(path):
    try:
        with open(path) as f:
            text = f.read().strip()
        try:
            return json.loads(text)
        except ValueError:
            return json.loads(text.splitlines()[-1])  # imbench: the JSON line is the last
    except (OSError, ValueError, IndexError):
        return None


def read(path, default=""):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return default


def metrics(path):
    """Sums of each metric name over its label sets; None if the sample is missing."""
    if not os.path.exists(path):
        return None
    out = {}
    for line in read(path).splitlines():
        if not line or line.startswith("#"):
            continue
        parts = line.rsplit(" ", 1)
        if len(parts) != 2:
            continue
        name = parts[0].split("{", 1)[0]
        try:
            out[name] = out.get(name, 0) + float(parts[1])
        except ValueError:
            pass
    return out


def ms(us):
    return "–" if us is None else f"{us / 1000:.1f}"


def main():
    d = sys.argv[1]
    p = load_json(os.path.join(d, "params.json")) or {}
    t0 = float(read(os.path.join(d, "t0"), "0") or 0)
    minutes = int(p.get("minutes", 0))
    duration = float(p.get("duration", minutes * 60))

    rss = []
    for line in read(os.path.join(d, "rss.log")).splitlines():
        try:
            t, kb = line.split()
            rss.append((float(t), int(kb)))
        except ValueError:
            pass

    m_ = [metrics(os.path.join(d, "metrics", f"{m}.txt")) for m in range(minutes + 1)]

    def delta(m, name):
        a, b = m_[m], m_[m + 1]
        if a is None or b is None:
            return None
        return int(b.get(name, 0) - a.get(name, 0))

    rows = []
    tot = dict(missing=0, duplicates=0, out_of_order=0, misdelivered=0, deliveries=0,
               expected=0, failed=[], fanout_p99=[], private_p99=[], churn_p99=[], joins=0)
    for m in range(minutes):
        runs = {k: load_json(os.path.join(d, "runs", f"{k}-{m}.json"))
                for k in ("fanout", "private", "churn")}
        rcs = {k: read(os.path.join(d, "runs", f"{k}-{m}.rc"), "?") for k in runs}
        for k in runs:
            if rcs[k] != "0" or not runs[k] or not runs[k].get("complete"):
                err = (runs[k] or {}).get("error", "no report")
                tot["failed"].append(f"minute {m} {k}: exit {rcs[k]}, {err}")
        for k in ("fanout", "private"):
            r = runs[k]
            if r:
                for key in ("missing", "duplicates", "out_of_order", "misdelivered"):
                    tot[key] += r.get(key, 0)
                tot["deliveries"] += r.get("deliveries", 0)
                tot["expected"] += r.get("expected_deliveries", 0)
                if r.get("p99_us") is not None and r.get("deliveries"):
                    tot[f"{k}_p99"].append(r["p99_us"])
        c = runs["churn"]
        if c:
            tot["joins"] += c.get("joins", 0)
            if c.get("join_p99_us") is not None:
                tot["churn_p99"].append(c["join_p99_us"])
        lo, hi = t0 + 60 * m, t0 + 60 * (m + 1)
        in_min = [kb for t, kb in rss if lo <= t < hi]
        f, pv = runs["fanout"] or {}, runs["private"] or {}

        def md(r):
            return "–" if not r else f"{r.get('missing', '?')} / {r.get('duplicates', '?')}"

        def opt(v):
            return "?" if v is None else str(v)

        rows.append([
            str(m + 1),
            f"{sorted(in_min)[len(in_min) // 2] / 1024:.1f} / {max(in_min) / 1024:.1f}" if in_min else "?",
            str(f.get("deliveries", "–")),
            md(runs["fanout"]),
            ms(f.get("p99_us")),
            str(pv.get("deliveries", "–")),
            md(runs["private"]),
            ms(pv.get("p99_us")),
            str((c or {}).get("joins", "–")),
            opt(delta(m, "imserver_slow_consumer_kicks_total")),
            opt(delta(m, "imserver_flood_throttled_total")),
            opt(delta(m, "imserver_flood_kicks_total")),
            f"{sum(1 for k in runs if rcs[k] == '0')}/3",
        ])

    head = ["min", "server RSS MB (median / max)", "fanout deliveries", "fanout missing / dup",
            "fanout p99 ms", "private deliveries", "private missing / dup", "private p99 ms",
            "churn joins", "slow-consumer kicks", "flood throttled", "flood kicks", "runs ok"]
    out = []
    out.append(f"Soak run: {p.get('users')} users for {duration:.0f} s "
               f"({minutes} minutes after everyone joined), {p.get('started', '')}.")
    out.append("")
    out.append(f"Users: {p.get('idle')} idle in {p.get('idle_procs')} imbench process(es), "
               f"fanout {p.get('fanout_users')} ({p.get('fanout_senders')} senders × "
               f"{p.get('fanout_msgs')} msgs) and private {p.get('private_pairs')} pairs × "
               f"{p.get('private_msgs')} msgs once a minute, churn {p.get('churn_users')} users "
               f"at {p.get('churn_rate')}/s, plus the flooder, the never-reading client and "
               f"~{p.get('reset_rate')} resets/s. Server: `{p.get('server_cmd', '')}`.")
    out.append("")
    out.append("| " + " | ".join(head) + " |")
    out.append("|" + "---|" * len(head))
    for r in rows:
        out.append("| " + " | ".join(r) + " |")
    out.append("")

    after = [kb for t, kb in rss if t0 + 60 * WARMUP_MIN <= t <= t0 + duration]
    if after:
        lo, hi = min(after), max(after)
        pct = (hi / lo - 1) * 100
        first = [kb for t, kb in rss if t0 + 60 * WARMUP_MIN <= t < t0 + 60 * (WARMUP_MIN + 1)]
        last = [kb for t, kb in rss if t0 + duration - 60 <= t <= t0 + duration]
        trend = ""
        if first and last:
            trend = (f"; mean of the first minute after warm-up {sum(first) / len(first) / 1024:.1f} MB, "
                     f"of the last {sum(last) / len(last) / 1024:.1f} MB")
        out.append(f"- **RSS after warm-up** (minutes 1–{WARMUP_MIN} excluded, {len(after)} samples "
                   f"every 10 s): {lo / 1024:.1f}–{hi / 1024:.1f} MB, max/min = {hi / lo:.3f}, "
                   + (f"**flat within {pct:.1f} %** " if pct <= RSS_LIMIT_PCT
                      else f"**NOT flat: spread {pct:.0f} %** ")
                   + f"(limit {RSS_LIMIT_PCT:.0f} %){trend}.")
        meds = []
        for m in range(WARMUP_MIN, minutes):
            xs = sorted(kb for t, kb in rss if t0 + 60 * m <= t < t0 + 60 * (m + 1))
            if xs:
                meds.append(xs[len(xs) // 2])
        if meds:
            out.append(f"- **RSS baseline** (each minute's median sample, minutes {WARMUP_MIN + 1}–{minutes}): "
                       f"{min(meds) / 1024:.1f}–{max(meds) / 1024:.1f} MB (max/min {max(meds) / min(meds):.2f}); "
                       f"first {meds[0] / 1024:.1f} MB, last {meds[-1] / 1024:.1f} MB.")
    else:
        out.append("- **RSS after warm-up**: no samples (run shorter than the warm-up?).")
    out.append(f"- **Well-behaved users' deliveries** (fanout + private, all minutes): "
               f"{tot['deliveries']} of {tot['expected']} expected; **lost {tot['missing']}, "
               f"duplicated {tot['duplicates']}**, out of order {tot['out_of_order']}, "
               f"misdelivered {tot['misdelivered']}"
               f" ({'PASS' if tot['missing'] == 0 and tot['duplicates'] == 0 else 'FAIL'}: must be 0).")

    def rng(xs):
        return f"{min(xs) / 1000:.1f}–{max(xs) / 1000:.1f} ms" if xs else "–"

    out.append(f"- **p99 per minute**: fanout {rng(tot['fanout_p99'])}, private "
               f"{rng(tot['private_p99'])}, churn join {rng(tot['churn_p99'])}.")
    out.append(f"- **Churn**: {tot['joins']} joins.")
    idle = [load_json(os.path.join(d, f"idle-{k}.json")) for k in range(int(p.get("idle_procs", 0)))]
    idle_txt = []
    for k, r in enumerate(idle):
        rc = read(os.path.join(d, f"idle-{k}.rc"), "?")
        if r:
            idle_txt.append(f"process {k}: {r.get('joined')} of {r.get('conns')} joined, held "
                            f"{r.get('hold_s')} s, exit {rc}, complete {r.get('complete')}"
                            + (f" ({r['error']})" if r.get("error") else ""))
        else:
            idle_txt.append(f"process {k}: no report, exit {rc}")
    out.append("- **Idle users**: " + "; ".join(idle_txt) + ".")
    if tot["failed"]:
        out.append(f"- **Runs not complete** ({len(tot['failed'])}): " + "; ".join(tot["failed"]) + ".")
    else:
        out.append("- **Runs**: every fanout, private and churn run complete (exit 0).")
    fa = load_json(os.path.join(d, "faults.json"))
    if fa:
        fl, sk, rs = fa["flooder"], fa["sink"], fa["resetter"]
        cuts = sk.get("cut_after_s") or []
        out.append(
            f"- **Faults**: flooder {fl['connects']} connections, ~{fl.get('lines_sent_approx', 0)} "
            f"lines sent, {fl['kick_notices']} flood-kick notices, {fl['closed_by_server']} closed by "
            f"the server; never-reading client {sk['connects']} connections, {sk['cuts']} cut"
            + (f" (after {min(cuts)}–{max(cuts)} s)" if cuts else "")
            + f", {sk['not_cut_in_120s']} not cut within 120 s; {rs.get('resets_total', 0)} resets "
            f"({', '.join(f'{k} {v}' for k, v in rs['resets'].items())}), "
            f"{rs['connect_errors']} failed connects.")
    last, first = m_[-1] if m_ else None, m_[0] if m_ else None
    if last and first:
        keys = ["imserver_accepted_total", "imserver_refused_total", "imserver_slow_consumer_kicks_total",
                "imserver_output_cut_total", "imserver_flood_throttled_total", "imserver_flood_kicks_total",
                "imserver_refused_per_ip_total", "imserver_refused_rate_total", "imserver_idle_kicks_total"]
        out.append("- **/metrics over the run**: " + ", ".join(
            f"{k.removeprefix('imserver_')} +{int(last.get(k, 0) - first.get(k, 0))}" for k in keys) + ".")
    src = read(os.path.join(d, "server.rc"), "")
    out.append(f"- **Server**: {src or 'still running at the end (then stopped by the script)'}.")
    print("\n".join(out))


if __name__ == "__main__":
    main()
