"""experiments/compare_practice.py's tables, made from its results JSON alone."""
from __future__ import annotations

import numpy as np
from sota_methods import SOTA_LABELS

from rolemodels.method.metrics import summarize

# The table's columns, in order; the references train on the clean labels and are never "first".
METHOD_LABELS = {
    "ours": "RoleModelClassifier() with its defaults (n_teachers='auto': with a pool 3 mlps, 2 a fold without)",
    "ours-k10": "RoleModelClassifier(n_teachers=10): the cost study (with a pool, the default until 2026-12-06)",
    "ours-k5": "RoleModelClassifier(n_teachers=5): the cost study",
    "ours-k3": "RoleModelClassifier(n_teachers=3): the cost study (with a pool, the default for an mlp; without one, "
               "the default until 2026-12-06)",
    "ours-k2": "RoleModelClassifier(n_teachers=2): the cost study (without a pool, the default)",
    "ours-k1": "RoleModelClassifier(n_teachers=1): the cost study (without a pool, one teacher a fold)",
    "logreg": "StandardScaler + LogisticRegression on the noisy labels",
    "gbm": "HistGradientBoostingClassifier on the noisy labels",
    "cleanlab-logreg": "cleanlab CleanLearning around logreg (5 folds)",
    "cleanlab-gbm": "cleanlab CleanLearning around gbm (5 folds)",
    "gce-mlp": "one mlp on GCE (q 0.8, the first 10% of steps on cross-entropy, 30 epochs, >= 10,000 examples): "
               "ours' teacher",
    "plain-mlp": "one mlp on cross-entropy, NetworkClassifier's defaults: the paper's teacher",
    "clean-mlp": "reference: plain-mlp on the clean labels",
    "clean-logreg": "reference: logreg on the clean labels",
}
METHOD_LABELS.update(SOTA_LABELS)
REFERENCES = ("clean-mlp", "clean-logreg")
# The field's methods (experiments/baselines) have their own table; their practitioner rows count
# for "first", their oracle rows (the paper's values for the true noise) do not.
SOTA = tuple(SOTA_LABELS)
ORACLES = tuple(m for m in SOTA if m.endswith("-oracle"))


def grouped(rows: list[dict]) -> dict[str, dict[str, list[dict]]]:
    """"data/noise" -> method -> its rows (one a seed), settings in the file's order."""
    table: dict[str, dict[str, list[dict]]] = {}
    for r in rows:
        table.setdefault(f"{r['data']}/{r['noise']}", {}).setdefault(r["method"], []).append(r)
    return table


def pm(summary: dict) -> str:
    mean, std = 100 * summary["mean"], 100 * summary["std"]
    return f"{mean:.1f} ± {std:.1f}" if len(summary["values"]) > 1 else f"{mean:.1f}"


def seconds(value: float) -> str:
    return f"{value:.0f}" if value >= 10 else f"{value:.1f}"


def standing(acc: dict[str, dict]) -> tuple[str, str]:
    """(the first method among those on the noisy labels, ours' mark): "" first, "≈" within one
    std (the first's, over seeds) of the first, "✗" further behind."""
    compared = {m: s for m, s in acc.items()
                if m not in REFERENCES + ORACLES and not m.startswith("ours-")}
    first = max(compared, key=lambda m: compared[m]["mean"])
    if "ours" not in acc or first == "ours":
        return first, ""
    gap = compared[first]["mean"] - acc["ours"]["mean"]
    return first, "≈" if gap <= compared[first]["std"] else "✗"


def accuracy_table(results: dict) -> str:
    """One row per setting: each method's clean test accuracy (%, mean ± std over seeds), ours'
    seconds a fit and their ratio to one GCE mlp's, and which method is first."""
    methods = [m for m in METHOD_LABELS if m not in SOTA]
    lines = ["| setting | noise | " + " | ".join(methods) + " | ours s | × gce-mlp | first |",
             "|---|---|" + "---|" * len(methods) + "---|---|---|"]
    for setting, by_method in grouped(results["rows"]).items():
        acc = {m: summarize([r["accuracy"] for r in rs]) for m, rs in by_method.items()}
        first, mark = standing(acc)
        cells = [(pm(acc[m]) + (f" {mark}" if m == "ours" and mark else "")) if m in acc else "–" for m in methods]
        rates = [r["noise_rate"] for rs in by_method.values() for r in rs]
        ours_s = np.mean([r["seconds"] for r in by_method.get("ours", [])]) if "ours" in by_method else None
        gce_s = np.mean([r["seconds"] for r in by_method.get("gce-mlp", [])]) if "gce-mlp" in by_method else None
        ratio = f"{ours_s / gce_s:.0f}×" if ours_s is not None and gce_s else "–"
        lines.append(f"| {setting} | {100 * np.mean(rates):.1f}% | " + " | ".join(cells)
                     + f" | {seconds(ours_s) if ours_s is not None else '–'} | {ratio} | {first} |")
    return "\n".join(lines)


def sota_table(results: dict) -> str:
    """The field's methods beside ours, per setting: accuracy (%, mean ± std), seconds a fit, and
    their flags' precision / recall against the truly flipped labels; the first among every
    method but the references, the cost study and the oracles, and ours' rank among them."""
    lines = ["| setting | ours | " + " | ".join(SOTA) + " | first | ours' rank |",
             "|---|---|" + "---|" * len(SOTA) + "---|---|"]
    for setting, by_method in grouped(results["rows"]).items():
        if not any(m in by_method for m in SOTA):
            continue
        acc = {m: summarize([r["accuracy"] for r in rs]) for m, rs in by_method.items()}
        first, _ = standing(acc)
        counted = [m for m in acc if m not in REFERENCES + ORACLES and not m.startswith("ours-")]
        rank = 1 + sum(acc[m]["mean"] > acc["ours"]["mean"] for m in counted) if "ours" in acc else None
        cells = []
        for m in SOTA:
            rs = by_method.get(m)
            if not rs:
                cells.append("–")
                continue
            flags = [(r.get("flag_precision"), r.get("flag_recall")) for r in rs]
            known = [(p, q) for p, q in flags if p is not None and q is not None]
            flag = (f"; flags {np.mean([p for p, _ in known]):.2f}/{np.mean([q for _, q in known]):.2f}"
                    if known else "")
            cells.append(f"{pm(acc[m])} ({seconds(float(np.mean([r['seconds'] for r in rs])))} s{flag})")
        ours = f"{pm(acc['ours'])} ({seconds(float(np.mean([r['seconds'] for r in by_method['ours']])))} s)" \
            if "ours" in acc else "–"
        lines.append(f"| {setting} | {ours} | " + " | ".join(cells)
                     + f" | {first} | {rank if rank is not None else '–'} of {len(counted)} |")
    return "\n".join(lines)


def cost_cell(rows: list[dict] | None) -> str:
    """"accuracy ± std in seconds" of one method's rows (one a seed), or "–"."""
    if not rows:
        return "–"
    return f"{pm(summarize([r['accuracy'] for r in rows]))} in {seconds(float(np.mean([r['seconds'] for r in rows])))} s"


def cost_table(results: dict) -> str:
    """The cost study: the default's accuracy (%, mean ± std) and seconds a fit with each number of
    teachers measured (a fold's, without a pool), beside one GCE mlp's seconds."""
    counts = [m for m in METHOD_LABELS if m.startswith("ours-k")]
    lines = ["| setting | pool | " + " | ".join(f"K = {m[6:]}" for m in counts) + " | default's K | one GCE mlp |",
             "|---|---|" + "---|" * len(counts) + "---|---|"]
    for setting, by_method in grouped(results["rows"]).items():
        if not any(m in by_method for m in counts):
            continue
        ours = by_method.get("ours", [])
        pool = "yes" if ours and ours[0]["n_pool"] and ours[0].get("pool", "").startswith("given") else "no"
        chosen = sorted({len(r["teacher_accuracy"]) // (1 if pool == "yes" else 5) for r in ours})
        gce = by_method.get("gce-mlp", [])
        gce_s = f"{seconds(float(np.mean([r['seconds'] for r in gce])))} s" if gce else "–"
        lines.append(f"| {setting} | {pool} | " + " | ".join(cost_cell(by_method.get(m)) for m in counts)
                     + f" | {', '.join(map(str, chosen)) or '–'} | {gce_s} |")
    return "\n".join(lines)


def teacher_table(results: dict) -> str:
    """Ours' parts per setting: its teachers' test accuracy (the weakest, the mean), their vote,
    one plain mlp's beside them, and the warnings its fits gave (over seeds)."""
    lines = ["| setting | ours | teachers: weakest | mean | their vote | plain-mlp | weakest ≥ plain-mlp | "
             "combine, pool graph | warnings |", "|---|---|---|---|---|---|---|---|---|"]
    for setting, by_method in grouped(results["rows"]).items():
        rs = by_method.get("ours")
        if not rs:
            continue
        weakest = [min(r["teacher_accuracy"]) for r in rs]
        plain = {r["seed"]: r["accuracy"] for r in by_method.get("plain-mlp", [])}
        held = [w >= plain[r["seed"]] for w, r in zip(weakest, rs) if r["seed"] in plain]
        warned: dict[str, int] = {}
        for r in rs:
            for kind in r["warnings"]:
                warned[kind] = warned.get(kind, 0) + 1
        recipes = sorted({f"{r['combine']}, {r['pool_graph']}" for r in rs})
        held_text = f"{sum(held)} of {len(held)} seeds" if held else "–"
        lines.append(
            f"| {setting} | {pm(summarize([r['accuracy'] for r in rs]))} | {pm(summarize(weakest))} | "
            f"{pm(summarize([float(np.mean(r['teacher_accuracy'])) for r in rs]))} | "
            f"{pm(summarize([r['ensemble_accuracy'] for r in rs]))} | "
            f"{pm(summarize(list(plain.values()))) if plain else '–'} | "
            f"{held_text} | {'; '.join(recipes)} | "
            f"{', '.join(f'{k} ×{n}' for k, n in warned.items()) or 'none'} |")
    return "\n".join(lines)


def markdown(results: dict) -> str:
    seeds = sorted({r["seed"] for r in results["rows"]})
    head = (f"Clean test accuracy, %, mean ± std over seeds {', '.join(map(str, seeds))}; noise: the realised "
            f"rate of the training labels. {results['machine']}, {results['threads']} thread(s), {results['date']}"
            f"{' (--quick: tiny sizes, not a result)' if results.get('quick') else ''}. ours: ≈ within one std of "
            f"the first, ✗ further behind; references (clean-*) and the cost study's rows (ours-k*) are never first.")
    legend = "\n".join(f"- `{name}`: {label}" for name, label in METHOD_LABELS.items())
    parts = [head, accuracy_table(results), "Ours' teachers, beside one plain model:", teacher_table(results),
             "The cost study: the default with K teachers (a fold, without a pool; accuracy %, seconds a fit "
             "beside other runs, so only roughly comparable: K = 3 without a pool ran beside two other jobs; "
             "docs/benchmarks.md has the default's measured alone):", cost_table(results)]
    sota = sota_table(results)
    if sota.count("\n") > 1:
        parts += ["The field's methods beside ours (experiments/baselines; accuracy %, seconds a fit, flags: "
                  "precision/recall of the labels each judged wrong against the truly flipped ones; the oracle "
                  "rows, which need the true noise, never count as first):", sota]
    return "\n\n".join(parts + [legend])
