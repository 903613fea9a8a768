"""The seeds of one experiment seed: every random choice of a run, by name.

Experiment seed s fixes the noise (s), teacher k (1000 s + k), the teachers' training subsets
(1000 s + 900), the random-teacher draws for the first K teachers (1000 s + 500 + K) and the
students (1000 s + 700 + their index below). The data (data.seed) is the same for every s.
These are the values run folders were made with: changing one changes every result.
"""
from __future__ import annotations

from dataclasses import dataclass

RULE = ("experiment seed s: noise s, teacher k 1000s+k, teacher subsets 1000s+900, random-teacher "
        "draws for K teachers 1000s+500+K, students 1000s+700+i; data: data.seed")

# Student indices i: the students of Figure 2's i-th teacher count K are 2i (ensemble
# distillation) and 2i + 1 (random-teacher distillation); the two references come last.
CLEAN_TRAIN_INDEX = 98
CLEAN_POOL_INDEX = 99


@dataclass(frozen=True)
class Seeds:
    experiment: int

    @property
    def noise(self) -> int:
        return self.experiment

    def teacher(self, k: int) -> int:
        return 1000 * self.experiment + k

    @property
    def subsets(self) -> int:
        return 1000 * self.experiment + 900

    def draws(self, num_teachers: int) -> int:
        """The random-teacher draws of the students that learn from the first `num_teachers` teachers."""
        return 1000 * self.experiment + 500 + num_teachers

    def student(self, index: int) -> int:
        return 1000 * self.experiment + 700 + index

    def ensemble_student(self, sweep_position: int) -> int:
        return self.student(2 * sweep_position)

    def random_student(self, sweep_position: int) -> int:
        return self.student(2 * sweep_position + 1)

    @property
    def clean_train(self) -> int:
        return self.student(CLEAN_TRAIN_INDEX)

    @property
    def clean_pool(self) -> int:
        return self.student(CLEAN_POOL_INDEX)
