"""A practitioner's own data: RoleModelClassifier and NetworkClassifier, `rolemodels distill`, label
errors without clean labels, and the student file to ship."""
