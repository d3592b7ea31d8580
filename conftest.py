"""Repository-level conftest: the shipped benches live in bench/ (see pyproject's ini)."""
