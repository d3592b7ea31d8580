"""pytest hooks of pytest-codegenie-eval (work in progress)."""

from __future__ import annotations
