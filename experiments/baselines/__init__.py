"""The noisy-label methods the field reports on, written from their papers for the comparison
(experiments/compare.py, experiments/compare_practice.py): co-teaching, ELR and DivideMix, each a
scikit-learn classifier on rolemodels' networks. Not part of the library's API."""
