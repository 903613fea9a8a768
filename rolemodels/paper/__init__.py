"""The paper's experiments: `rolemodels run` (Table 1, Figure 2: experiment.py, top-down like the
method section) and `rolemodels theory`, with their measurements and reports."""
