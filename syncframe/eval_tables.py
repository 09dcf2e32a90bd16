"""``syncframe eval``'s tables: the config keys that tell runs apart, the grouped means with their
spread, the Markdown table, one plot per metric, and the CSV beside them."""
from __future__ import annotations

import csv
import json
import math
import statistics
from pathlib import Path

# Never a group: they differ between the runs of one setting (a paper's table averages over its prompts).
IGNORED_KEYS = {"out", "seed", "progress", "device", "prompt", "negative_prompt"}


def sweep_keys(root: Path) -> dict[Path, tuple[str, ...]]:
    """Per run folder of a sweep under ``root``, the config keys its overrides set (from the sweep's
    ``multirun.csv``; ``sync=x`` is key ``sync``, ``sync.loss=y`` key ``sync.loss``)."""
    import csv

    found = {}
    for index in root.rglob("multirun.csv"):
        try:
            with index.open(encoding="utf-8", newline="") as handle:
                for row in csv.DictReader(handle):
                    keys = tuple(part.split("=", 1)[0] for part in (row.get("overrides") or "").split() if "=" in part)
                    found[index.parent / (row.get("folder") or "")] = keys
        except (OSError, csv.Error, UnicodeDecodeError):
            continue  # an unreadable index: the keys are found from the configs alone
    return found


def grouping_keys(items: list) -> list[str]:
    """The config keys whose values differ between the items (but seeds, prompts and output paths),
    less those an earlier key already decides (``sync.loss`` when only SyncDiffusion has one). The
    keys a sweep's command line set come first, in its order: after ``-m sync=a,b`` the groups are
    ``sync``, not a key that ``sync`` implied."""
    def value(item, key):
        return json.dumps(item.config.get(key), default=str)

    keys = sorted({k for item in items for k in item.config} - IGNORED_KEYS)
    swept = [k for k in dict.fromkeys(k for item in items for k in item.swept) if k in keys]
    keys = [*swept, *(k for k in keys if k not in swept)]
    chosen: list[str] = []
    for key in (k for k in keys if len({value(item, k) for item in items}) > 1):
        decided: dict[tuple, set] = {}
        for item in items:
            decided.setdefault(tuple(value(item, k) for k in chosen), set()).add(value(item, key))
        if not chosen or any(len(values) > 1 for values in decided.values()):
            chosen.append(key)
    return chosen


def summarise(rows: list[dict], keys: list[str], metrics: list[str]) -> list[dict]:
    """Mean, sd and count per group of ``keys``."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(tuple(row.get(k) for k in keys), []).append(row)
    table = []
    for values, members in groups.items():
        entry = {"group": dict(zip(keys, values)), "n": len(members)}
        for metric in metrics:
            numbers = [m[metric] for m in members if isinstance(m.get(metric), (int, float))]
            entry[metric] = (statistics.mean(numbers), statistics.stdev(numbers) if len(numbers) > 1 else 0.0) \
                if numbers else None
        table.append(entry)
    return table


def markdown(table: list[dict], keys: list[str], metrics: list[str]) -> str:
    head = [*(keys or ["group"]), "n", *metrics]
    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join("---" for _ in head) + " |"]
    for entry in table:
        cells = [str(entry["group"].get(k)) for k in keys] if keys else ["all"]
        cells.append(str(entry["n"]))
        cells += ["" if entry[m] is None else f"{entry[m][0]:.4f}" if m == "fid" else
                  f"{entry[m][0]:.4f} ± {entry[m][1]:.4f}" for m in metrics]  # one FID per group: no sd
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(table: list[dict], keys: list[str], metric: str, path: Path) -> None:
    """One bar per group, its mean with the sd as an error bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [e for e in table if e[metric] is not None]
    labels = [", ".join(f"{k}={e['group'].get(k)}" for k in keys) or "all" for e in shown]
    fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(shown) + 2), 3.2))
    ax.bar(range(len(shown)), [e[metric][0] for e in shown], yerr=[e[metric][1] for e in shown], capsize=4,
           color="#4c72b0")
    ax.set_xticks(range(len(shown)), labels, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel(metric)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_tables(out: Path, items: list, rows: list[dict], keys: list[str], names: list[str],
                 per_group: dict, problems: list[str]) -> dict:
    """The CSV, the Markdown table beside it and one plot per metric; what was written."""
    columns = [n for n in names if not (n in ("fid", "kid"))]
    columns = [n for n in columns if any(isinstance(r.get(n), (int, float)) for r in rows)] or columns
    columns += sorted({k for item in items for k in item.recorded} - set(names))
    table = summarise(rows, keys, columns)
    set_columns = [n for n in ("fid", "kid") if n in names]
    for entry in table:
        values = tuple(entry["group"].get(k) for k in keys)
        for metric in set_columns:
            entry[metric] = per_group.get(values, {}).get(metric)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, ["image", *keys, *columns], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    shown = [*columns, *set_columns]
    report = markdown(table, keys, shown)
    if problems:
        report += "\nNot measured:\n" + "".join(f"- {p}\n" for p in problems)
    out.with_suffix(".md").write_text(report)
    plots = []
    for metric in shown:
        if any(e[metric] is not None and math.isfinite(e[metric][0]) for e in table):
            path = out.with_name(f"{out.stem}_{metric}.png")
            plot(table, keys, metric, path)
            plots.append(path)
    return {"csv": out, "markdown": out.with_suffix(".md"), "plots": plots, "rows": rows, "table": table,
            "keys": keys, "problems": problems}
