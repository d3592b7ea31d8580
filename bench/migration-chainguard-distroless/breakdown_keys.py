"""The only breakdown keys the ``migration-chainguard-distroless`` rubric may emit.

Every key is an observable property of the migrated ``Dockerfile`` (and, for BUILD_PASSES,
of the workspace it is built from); none is a self-assessment of the agent.
"""

from __future__ import annotations

from enum import StrEnum


class BreakdownKey(StrEnum):
    """Breakdown keys of the rubric; each value is in [0, 1] (see README.md for weights)."""

    BASE_IMAGE_SWAPPED = "BASE_IMAGE_SWAPPED"
    """Final stage and every external ``FROM`` are ``cgr.dev/<org>/*`` images."""

    SHELL_FREE = "SHELL_FREE"
    """Final image: no ``RUN``, no package manager, not a ``-dev``/toolchain image."""

    EXEC_FORM = "EXEC_FORM"
    """Effective ``ENTRYPOINT``/``CMD`` (and ``HEALTHCHECK CMD``) are JSON exec form."""

    NON_ROOT = "NON_ROOT"
    """The final image does not switch to ``USER root``/``USER 0``."""

    MULTI_STAGE = "MULTI_STAGE"
    """Build outputs come from an earlier build stage via ``COPY --from=<stage>``."""

    BUILD_PASSES = "BUILD_PASSES"
    """The Dockerfile builds (real engine build, or the static buildability check)."""

    APP_PRESERVED = "APP_PRESERVED"
    """Every build-context file the input Dockerfile copied is still copied."""
