"""theory.json and the figures of `rolemodels theory` (every file written atomically)."""
from __future__ import annotations

import io
import json
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from rolemodels.runtime.files import atomic_write_bytes, atomic_write_text

FIGURES = {
    "sampling_vs_learning": "theory_sampling_vs_learning.png",
    "ensemble": "theory_ensemble.png",
    "distillation": "theory_distillation.png",
}


def png_bytes(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


def write_json(results: dict, path: Path) -> None:
    """theory.json, written atomically."""
    atomic_write_text(path, json.dumps(results, indent=1, allow_nan=False) + "\n")


def write_outputs(results: dict, out: Path) -> list[Path]:
    """theory.json and the three figures in folder out; returns their paths."""
    paths = [out / "theory.json"]
    write_json(results, paths[0])
    draw = {"sampling_vs_learning": plot_sampling_vs_learning, "ensemble": plot_ensemble,
            "distillation": plot_distillation}
    for name, filename in FIGURES.items():
        figure = Figure(figsize=(11, 4.2) if name == "sampling_vs_learning" else (6, 4.2))
        FigureCanvasAgg(figure)
        draw[name](figure, results)
        figure.tight_layout()
        path = out / filename
        atomic_write_bytes(path, png_bytes(figure))
        paths.append(path)
    return paths


# --------------------------------------------------------------------------- Figures

def draw_bayes(axes: Axes, results: dict) -> None:
    """The Bayes-optimal accuracy as a dashed horizontal line."""
    axes.axhline(results["bayes_accuracy"], color="black", linestyle="--", linewidth=1,
                 label=f"Bayes-optimal ({results['bayes_accuracy']:.2f})")


def plot_sampling_vs_learning(figure: Figure, results: dict) -> None:
    """Left: sampler distance of 1-NN and excess error of k-NN vs n. Right: their accuracies."""
    left, right = figure.subplots(1, 2)
    for key, style in [("sampling_vs_learning", "-"), ("sampling_vs_learning_high_noise", ":")]:
        curve = results[key]
        noise = curve.get("noise_rate", results["noise_rate"])
        left.errorbar(curve["n"], curve["sampler_distance"], curve["sampler_distance_std"], fmt="o" + style,
                      color="tab:blue", capsize=2, label=f"1-NN sampler distance, noise {noise}")
        left.errorbar(curve["n"], curve["learner_excess_error"], curve["learner_excess_error_std"],
                      fmt="s" + style, color="tab:red", capsize=2,
                      label=f"k-NN (k~sqrt n) excess error, noise {noise}")
        bayes = results["bayes_accuracy"]
        right.plot(curve["n"], [bayes - e for e in curve["sampler_excess_error"]], "o" + style,
                   color="tab:blue", label=f"1-NN (sampler), noise {noise}")
        right.plot(curve["n"], [bayes - e for e in curve["learner_excess_error"]], "s" + style,
                   color="tab:red", label=f"k-NN (learner), noise {noise}")
    floor = results["sampling_vs_learning"]["sampler_distance_floor"]
    left.axhline(floor, color="gray", linewidth=1, label="exact sampler on this test set")
    left.set(xscale="log", yscale="log", xlabel="training set size n", ylabel="distance / excess error",
             title="Sampler distance (1-NN) vs excess error (k-NN)")
    draw_bayes(right, results)
    right.set(xscale="log", xlabel="training set size n", ylabel="accuracy (clean test labels)",
              title="Accuracy", ylim=(0, 1.05))
    left.legend(fontsize=7)
    right.legend(fontsize=7)


def plot_ensemble(figure: Figure, results: dict) -> None:
    """Measured ensemble accuracy (mean +- 2 s.e.) against the plurality prediction, vs K."""
    axes = figure.subplots()
    ensemble = results["ensemble"]
    band = [2 * s for s in ensemble["measured_se"]]
    axes.errorbar(ensemble["k"], ensemble["measured"], band, fmt="o", capsize=2, color="tab:blue",
                  label="measured (mean +- 2 s.e.)")
    axes.plot(ensemble["k"], ensemble["predicted"], "-", color="tab:orange",
              label="predicted: plurality of K independent samplers")
    draw_bayes(axes, results)
    axes.set(xlabel="K teachers (1-NN on disjoint splits of %d)" % ensemble["split_size"],
             ylabel="accuracy (clean test labels)", title="Independent samplers vote to Bayes")
    axes.legend(fontsize=8)


def plot_distillation(figure: Figure, results: dict) -> None:
    """Student accuracy vs pool size for ensemble and random-teacher labels (+- 1 std)."""
    axes = figure.subplots()
    distill = results["distillation"]
    for key, label, style in [
        ("ensemble_distill", "k-NN student, ensemble labels", "o-"),
        ("random_distill", "k-NN student, random-teacher labels", "s-"),
        ("sampler_student_ensemble", "1-NN student, ensemble labels", "o:"),
        ("sampler_student_random", "1-NN student, random-teacher labels", "s:"),
    ]:
        axes.errorbar(distill["pool"], distill[key], distill[key + "_std"], fmt=style, capsize=2,
                      label=label, color="tab:blue" if "ensemble" in key else "tab:red")
    axes.axhline(distill["teacher_ensemble_accuracy"], color="tab:blue", linewidth=1, alpha=0.5,
                 label=f"the teachers' plurality ({distill['teacher_ensemble_accuracy']:.3f})")
    axes.axhline(distill["teacher_accuracy"], color="tab:red", linewidth=1, alpha=0.5,
                 label=f"one teacher ({distill['teacher_accuracy']:.3f})")
    draw_bayes(axes, results)
    axes.set(xscale="log", xlabel="pool size", ylabel="student accuracy (clean test labels)",
             title=f"Distillation from {distill['teachers']} samplers")
    axes.legend(fontsize=8)
