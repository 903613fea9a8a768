"""experiments/compare.py's tables and figure, made from its results JSON alone (so the docs can
be regenerated without rerunning anything)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from compare_registry import METHODS

from rolemodels.method.metrics import summarize

# The tables' order: the default's data first, the reproduction of the first measurement beside
# it, then the photographs and the table; noises as compare.NOISES lists them.
DATA_ORDER = ("mnist1d", "mnist1d-noaug", "fashion", "fashion-small", "digits")
NOISE_ORDER = ("paper20", "symmetric40", "pairflip30")


def setting_order(setting: tuple[str, str]) -> tuple:
    data, noise = setting
    rank = lambda names, name: names.index(name) if name in names else len(names)  # noqa: E731
    return rank(DATA_ORDER, data), data, rank(NOISE_ORDER, noise), noise


def aggregate(rows: list[dict]) -> dict[tuple[str, str], dict[str, dict]]:
    """(data, noise) -> method -> {"accuracy", "replication", "precision", "recall": summarize(...),
    "fits", "seconds" (means), "seeds"}: the mean and std over seeds, settings in the tables' order."""
    grouped: dict[tuple[str, str], dict[str, list[dict]]] = {}
    for r in rows:
        grouped.setdefault((r["data"], r["noise"]), {}).setdefault(r["method"], []).append(r)
    table = {}
    for setting in sorted(grouped, key=setting_order):
        methods = grouped[setting]
        table[setting] = {}
        for name in [m for m in METHODS if m in methods]:
            rs = methods[name]
            numbers = {key: summarized([r.get(key) for r in rs])
                       for key in ("accuracy", "replication", "precision", "recall", "flagged")}
            table[setting][name] = {**numbers, "fits": float(np.mean([r["fits"] for r in rs])),
                                    "seconds": float(np.mean([r["seconds"] for r in rs])), "seeds": len(rs)}
    return table


def summarized(values: list[float | None]) -> dict | None:
    """summarize() over seeds, a missing value (None: no partner, nothing flagged) as NaN; None when
    no seed has one."""
    if all(v is None for v in values):
        return None
    return summarize([float("nan") if v is None else v for v in values])


def pm(summary: dict | None, scale: float = 100.0, digits: int = 1) -> str:
    if summary is None:
        return "–"
    mean, std = scale * summary["mean"], scale * summary["std"]
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if len(summary["values"]) > 1 else f"{mean:.{digits}f}"


HEADER = ("| method | test accuracy % | noise replication % | fits | seconds | flagged | precision | recall |\n"
          "|---|---|---|---|---|---|---|---|")


def full_table(results: dict) -> str:
    """Every (data, noise): one row per method, accuracy and replication in %, mean ± std over seeds."""
    parts = []
    for (data, noise), methods in aggregate(results["rows"]).items():
        seeds = max(m["seeds"] for m in methods.values())
        parts += [f"#### {data}, {noise} ({seeds} seed{'s' if seeds > 1 else ''})", "", HEADER]
        for name, m in methods.items():
            flagged = f"{m['flagged']['mean']:,.0f}" if m["flagged"] else "–"
            seconds = f"{m['seconds']:.0f}" if m["seconds"] >= 10 else f"{m['seconds']:.1f}"
            parts.append(f"| {METHODS[name].label} | {pm(m['accuracy'])} | {pm(m['replication'])} | "
                         f"{m['fits']:.0f} | {seconds} | {flagged} | {pm(m['precision'], 1, 2)} | "
                         f"{pm(m['recall'], 1, 2)} |")
        parts.append("")
    return "\n".join(parts)


README_METHODS = ("noisy_model", "early_stopping", "gce", "cleanlab", "cleanlab_student", "coteaching", "elr",
                  "dividemix", "dividemix_pool", "ensemble",
                  "ensemble_distill", "random_distill", "cleanlab_distill", "gce_ensemble_distill", "estimator",
                  "clean_train")
README_LEAVES_OUT = ("mnist1d-noaug",)  # the reproduction of the first measurement: docs/compare.md only


def short_table(results: dict) -> str:
    """The README's table: the main methods' test accuracy (%), one column per (data, noise)."""
    table = aggregate(results["rows"])
    settings = [s for s in table if s[0] not in README_LEAVES_OUT]
    lines = ["| method | " + " | ".join(f"{d} {n}" for d, n in settings) + " |",
             "|---|" + "---|" * len(settings)]
    for name in README_METHODS:
        if not any(name in table[s] for s in settings):
            continue
        cells = [pm(table[s][name]["accuracy"]) if name in table[s] else "–" for s in settings]
        lines.append(f"| {METHODS[name].label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


RIVALS = ("baseline", "field")  # what the default is ranked against: a practitioner's one-method alternatives


def best_of(methods: dict[str, dict], kind: str) -> str:
    """The best row of `kind` in one setting's aggregate: "mean ± std name", or "–"."""
    names = [n for n in methods if METHODS[n].kind == kind]
    if not names:
        return "–"
    top = max(names, key=lambda n: methods[n]["accuracy"]["mean"])
    return f"{pm(methods[top]['accuracy'])} {top}"


def rank_of_ours(methods: dict[str, dict]) -> str:
    """The estimator's rank among itself and RIVALS by mean accuracy, with how many of those above it
    are within its standard deviation."""
    rivals = [methods[n]["accuracy"]["mean"] for n in methods if METHODS[n].kind in RIVALS]
    ours = methods["estimator"]["accuracy"]
    above = [a for a in rivals if a > ours["mean"]]
    within = sum(a - ours["mean"] <= ours["std"] for a in above)
    return f"{1 + len(above)} of {len(rivals) + 1}" + (f" ({within} within one std)" if within else "")


def rank_table(results: dict) -> str:
    """Per (data, noise) holding the field's rows: the estimator's default beside the best of the
    baselines and the best of the field's practitioner rows (mean test accuracy, %), its rank among
    all of them, and the best oracle row (a reference, never ranked)."""
    lines = ["| setting | ours (estimator) | best baseline | best of the field | rank of ours | best oracle |",
             "|---|---|---|---|---|---|"]
    for (data, noise), methods in aggregate(results["rows"]).items():
        if "estimator" in methods and any(METHODS[n].kind == "field" for n in methods):
            lines.append(f"| {data} {noise} | {pm(methods['estimator']['accuracy'])} | {best_of(methods, 'baseline')} | "
                         f"{best_of(methods, 'field')} | {rank_of_ours(methods)} | {best_of(methods, 'field-oracle')} |")
    return "\n".join(lines)


COLOURS = {"baseline": "#9e9e9e", "ours": "#1f77b4", "combination": "#2ca02c", "reference": "#d9d9d9",
           "field": "#ff7f0e", "field-oracle": "#ffbb78"}


def draw_figure(results: dict, path: Path) -> None:
    """Accuracy by method (mean ± std over seeds), one panel per (data, noise)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = aggregate(results["rows"])
    columns = min(3, len(table))
    rows = -(-len(table) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(5.2 * columns, 4.2 * rows), squeeze=False)
    for ax, ((data, noise), methods) in zip(axes.flat, table.items()):
        names = list(methods)[::-1]  # top to bottom in the tables' order
        means = [100 * methods[n]["accuracy"]["mean"] for n in names]
        stds = [100 * methods[n]["accuracy"]["std"] for n in names]
        ax.barh(range(len(names)), means, xerr=stds, color=[COLOURS[METHODS[n].kind] for n in names])
        ax.set_yticks(range(len(names)), [METHODS[n].label for n in names], fontsize=7)
        low = min(means) - 5
        ax.set_xlim(max(0, low), 100)
        ax.set_xlabel("clean test accuracy (%)")
        ax.set_title(f"{data}, {noise}", fontsize=10)
    for ax in list(axes.flat)[len(table):]:
        ax.axis("off")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


