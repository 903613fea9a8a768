"""results.json (the contract tools read), report.md (Table 1, Figure 2) and the figures."""
from __future__ import annotations

import platform
from pathlib import Path

import numpy as np
import torch

from rolemodels.config import Config, to_dict
from rolemodels.data import Dataset
from rolemodels.method.metrics import summarize
from rolemodels.runtime.files import atomic_write_bytes, atomic_write_json, atomic_write_text
from rolemodels.runtime.provenance import provenance
from rolemodels.seeds import RULE as SEED_RULE

# The paper's CIFAR-10 numbers (ResNet-18, 20% fixed noise, 10 teachers), test accuracy in %.
PAPER_CIFAR10 = {"teacher": "81.3", "ensemble": "87.8", "ensemble_distill": "≈ 90", "random_distill": "≈ 90"}

ROWS = [  # key in results.json, row label in report.md
    ("teacher", "one teacher (mean over teachers)"),
    ("teacher_train_fit", "teacher accuracy on its own noisy labels"),
    ("ensemble", "test-time ensemble (plurality vote)"),
    ("ensemble_mean_prob", "test-time ensemble (mean of softmax)"),
    ("ensemble_sum_logits", "test-time ensemble (summed logits, the authors' code)"),
    ("ensemble_distill", "student: ensemble distillation"),
    ("random_distill", "student: random-teacher distillation"),
    ("clean_train", "reference: same model on clean training labels"),
    ("clean_pool", "reference: student on the pool's true labels"),
]


def summarize_run(cfg: Config, data: Dataset, per_seed: list[dict], seconds: float) -> dict:
    """Aggregate the per-seed numbers into the results.json layout (means, stds, values)."""
    table = {"teacher": summarize([v for s in per_seed for v in s["teacher"]]),
             "teacher_train_fit": summarize([v for s in per_seed for v in s["teacher_train_fit"]])}
    for name in per_seed[0]["accuracy"]:
        table[name] = summarize([s["accuracy"][name] for s in per_seed])
    replication = {"teacher": summarize([v for s in per_seed for v in s["noise_replication"]["teacher"]])}
    for name in per_seed[0]["noise_replication"]:
        if name != "teacher":
            replication[name] = summarize([s["noise_replication"][name] for s in per_seed])
    sweep_k = per_seed[0]["sweep"]["teachers"]
    sweep = {"teachers": sweep_k}
    sweep_std = {}
    for name in ("ensemble", "ensemble_distill", "random_distill"):
        # None (no student trained for that K) becomes NaN for the arithmetic and None again in the JSON.
        columns = np.array([[np.nan if v is None else v for v in s["sweep"][name]] for s in per_seed], dtype=float)
        stds = columns.std(0, ddof=1) if len(per_seed) > 1 else np.zeros(len(sweep_k)) * columns[0]
        sweep[name] = [None if np.isnan(v) else float(v) for v in columns.mean(0)]
        sweep_std[name] = [None if np.isnan(v) else float(v) for v in stds]
    sweep["std"] = sweep_std
    first = per_seed[0]["noise"]
    return {
        "table": table,
        "sweep": sweep,
        "sampler": {
            **{f"{name}_noise_replication": replication[name]["mean"] for name in replication},
            "noise_replication": replication,
            "sampler_distance": {
                "teacher": summarize([v for s in per_seed for v in s["sampler"]["sampler_distance"]["teacher"]]),
                **{name: summarize([s["sampler"]["sampler_distance"][name] for s in per_seed])
                   for name in per_seed[0]["sampler"]["sampler_distance"] if name != "teacher"}},
            "pointwise_sampler_distance": summarize([s["sampler"]["pointwise_sampler_distance"] for s in per_seed]),
            "teacher_agreement": summarize([s["sampler"]["teacher_agreement"] for s in per_seed]),
            "vote_share_histogram": np.sum([s["sampler"]["vote_share_histogram"] for s in per_seed], 0).tolist(),
        },
        "noise": {"rate": float(np.mean([s["noise"]["rate"] for s in per_seed])), "matrix": first["matrix"],
                  "realized_matrix": first["realized_matrix"], "realized_counts": first["realized_counts"],
                  "partner": first["partner"]},
        "confusion": per_seed[0]["confusion"],
        "seconds": {"total": seconds,
                    **{stage: sum(s["seconds"][stage] for s in per_seed) for stage in ("teachers", "labelling", "students")}},
        "seeds": [s["seed"] for s in per_seed],
        "seed_rule": SEED_RULE,
        "dataset": {"name": data.name, "n_train": len(data.y_train), "n_test": len(data.y_test),
                    "n_pool": len(data.x_pool), "num_classes": data.num_classes,
                    "input_shape": list(data.input_shape)},
        "students": students_inputs(cfg, data),
        "config": to_dict(cfg),
        "environment": environment(cfg),
        "provenance": provenance(),  # version, git commit and source hash: the code that made these numbers
        "paper_cifar10": PAPER_CIFAR10,
    }


def processor_name() -> str:
    """The CPU's model name, as lscpu prints it ("" where /proc/cpuinfo is not readable)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor()
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "")


def environment(cfg: Config) -> dict:
    """Where the numbers were made: results differ between processors, because `precision=auto`
    trains in bf16 on CPUs with AMX and in float32 elsewhere."""
    from rolemodels.runtime.device import autocast_dtype, resolve_device

    device = resolve_device(cfg.train.device)
    dtype = autocast_dtype(device, cfg.train.precision)
    return {"torch": torch.__version__, "python": platform.python_version(), "machine": platform.machine(),
            "processor": torch.cuda.get_device_name(device) if device.type == "cuda" else processor_name(),
            "training_dtype": "float32" if dtype is None else str(dtype).removeprefix("torch."),
            "threads": torch.get_num_threads()}


def _pct(summary: dict) -> str:
    if summary["mean"] != summary["mean"]:  # NaN
        return "n/a"
    return f"{100 * summary['mean']:.1f} ± {100 * summary['std']:.1f}"


def table_markdown(results: dict) -> str:
    """Table 1 as Markdown: our accuracy and noise replication beside the paper's CIFAR-10 row."""
    lines = ["| | accuracy (%) | noise replication (%) | sampler distance | paper, CIFAR-10 (%) |",
             "|---|---|---|---|---|"]
    for key, label in ROWS:
        if key not in results["table"]:
            continue
        rep = results["sampler"]["noise_replication"].get(key)
        rep_text = _pct(rep) if rep else ""
        distance = results["sampler"]["sampler_distance"].get(key)
        distance_text = f"{distance['mean']:.3f}" if distance else ""
        lines.append(f"| {label} | {_pct(results['table'][key])} | {rep_text} | {distance_text} | "
                     f"{PAPER_CIFAR10.get(key, '')} |")
    return "\n".join(lines)


def sweep_markdown(results: dict) -> str:
    sweep = results["sweep"]
    lines = ["| teachers K | ensemble (%) | ensemble distillation (%) | random-teacher distillation (%) |",
             "|---|---|---|---|"]
    for i, k in enumerate(sweep["teachers"]):
        cells = [f"{100 * sweep[name][i]:.1f} ± {100 * sweep['std'][name][i]:.1f}" if sweep[name][i] is not None
                 else "(not trained)" for name in ("ensemble", "ensemble_distill", "random_distill")]
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def students_inputs(cfg: Config, data: Dataset) -> dict:
    """What the students learnt from (paper/experiment.py's student_inputs)."""
    n_pool = cfg.students.pool_rows(len(data.x_pool))
    small = cfg.students.trains_as_teacher(n_pool)
    return {"pool_rows": n_pool, "training_inputs": len(data.y_train) if small else 0,
            "recipe": "teachers" if small else "students"}


def small_pool_note(results: dict) -> str:
    s = results["students"]
    if not s["training_inputs"]:
        return ""
    return (f"\nThe pool is small (under 3,125 rows: `students.small_pool`), so the students trained as a teacher does "
            f"(its recipe and steps) on the {s['pool_rows']:,} pool rows and the {s['training_inputs']:,} training "
            f"inputs, all labelled by the teachers.\n")


def write_report(out: Path, cfg: Config, data: Dataset, results: dict, per_seed: list[dict]) -> None:
    """results.json, report.md and figures/ in the run folder."""
    atomic_write_json(out / "results.json", results)
    seconds = results["seconds"]
    text = f"""# rolemodels run: {cfg.name}

Dataset {data.name}: {results['dataset']['n_train']:,} noisy training examples, {results['dataset']['n_test']:,} clean test
examples, a pool of {results['dataset']['n_pool']:,} unlabelled examples. Noise: {cfg.noise.preset} at realised rate
{100 * results['noise']['rate']:.1f}% ({cfg.noise.mode}). {cfg.teachers.count} {cfg.teachers.model} teachers, seeds {results['seeds']}
(mean ± std over seeds; the teacher row over teachers and seeds).
{small_pool_note(results)}
## Table 1

{table_markdown(results)}

Noise replication: how often a model predicts the noisy partner of the true class on the clean test set
(a perfect sampler of this noise: {100 * results['noise']['rate']:.0f}%, the clean classifier: 0%).

Sampler distance: mean over classes of the total variation between a model's test predictions given
the true class and the noise's row for that class (0: a perfect sampler of the noise; {results['noise']['rate']:.2f}
for the clean classifier). Teachers agree on {100 * results['sampler']['teacher_agreement']['mean']:.1f}% of test
points (mean over pairs); pointwise sampler distance of the teachers' vote shares:
{results['sampler']['pointwise_sampler_distance']['mean']:.3f}. Test points by how many of the K teachers vote for the
noise partner of the true class (0..K): {results['sampler']['vote_share_histogram']}.

## Figure 2: accuracy against the number of teachers

{sweep_markdown(results)}

![teachers](figures/teachers.png)

## Figure 1: confusion matrices on the clean test set

![confusion](figures/confusion.png)

Time: {seconds['total']:.0f} s in all (teachers {seconds['teachers']:.0f} s, pool labelling {seconds['labelling']:.0f} s,
students {seconds['students']:.0f} s).
"""
    atomic_write_text(out / "report.md", text)
    figures = out / "figures"
    figures.mkdir(exist_ok=True)
    atomic_write_bytes(figures / "confusion.png", confusion_figure(results, data.class_names))
    atomic_write_bytes(figures / "teachers.png", sweep_figure(results))


def _png(fig) -> bytes:
    import io

    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def confusion_figure(results: dict, class_names: list[str]) -> bytes:
    """Figure 1: row-normalised confusion of one teacher, the ensemble, the random-teacher student."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("noise transition matrix", np.array(results["noise"]["realized_matrix"]))]
    for name, title in (("teacher", "one teacher"), ("ensemble", "ensemble (vote)"),
                        ("random_distill", "random-teacher student")):
        counts = np.array(results["confusion"][name], dtype=float)
        panels.append((title, counts / np.maximum(counts.sum(1, keepdims=True), 1)))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.4))
    ticks = range(len(class_names))
    for ax, (title, matrix) in zip(axes, panels):
        ax.imshow(matrix, vmin=0, vmax=1, cmap="Blues")
        ax.set_title(title)
        ax.set_xticks(ticks, class_names, rotation=90, fontsize=7)
        ax.set_yticks(ticks, class_names, fontsize=7)
        ax.set_xlabel("predicted (noisy label)" if title.startswith("noise") else "predicted")
        for (i, j), value in np.ndenumerate(matrix):
            if value >= 0.05:
                ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=5.5,
                        color="white" if value > 0.5 else "black")
    axes[0].set_ylabel("true class")
    fig.tight_layout()
    return _png(fig)


def sweep_figure(results: dict) -> bytes:
    """Figure 2: test accuracy against the number of teachers, with the teacher and references."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sweep, table = results["sweep"], results["table"]
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, label in (("ensemble", "ensemble (vote)"), ("ensemble_distill", "ensemble distillation"),
                        ("random_distill", "random-teacher distillation")):
        points = [(k, v, e) for k, v, e in zip(sweep["teachers"], sweep[name], sweep["std"][name]) if v is not None]
        ax.errorbar([k for k, _, _ in points], [100 * v for _, v, _ in points],
                    yerr=[100 * e for _, _, e in points], marker="o", capsize=3, label=label)
    ax.axhline(100 * table["teacher"]["mean"], color="gray", linestyle=":", label="one teacher")
    for name, label, style in (("clean_train", "clean-label model", "--"), ("clean_pool", "student on true pool labels", "-.")):
        if name in table and table[name]["mean"] == table[name]["mean"]:
            ax.axhline(100 * table[name]["mean"], color="black", linestyle=style, linewidth=0.8, label=label)
    ax.set_xlabel("number of teachers K")
    ax.set_ylabel("clean test accuracy (%)")
    ax.set_xticks(sweep["teachers"])
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _png(fig)
