"""Registration of the ``migration-chainguard-distroless`` task class."""

from __future__ import annotations

from pytest_codegenie_eval import register_task_class


@register_task_class("migration-chainguard-distroless", min_cases_for_promotion={"bronze": 10})
class MigrationChainguardDistroless:
    """Rewrite a Dockerfile onto Chainguard images with a shell-free, non-root runtime stage.

    The agent receives a workspace holding a conventional Dockerfile (Docker Hub base image,
    package manager and shell in the runtime image) plus the minimal application files it
    copies, and must migrate it to the documented Chainguard multi-stage shape: a build
    stage on a ``-dev``/toolchain image, a final stage on a distroless runtime image, build
    outputs copied with ``COPY --from=<stage>`` and an exec-form ``ENTRYPOINT``/``CMD``.
    The rubric judges the resulting ``Dockerfile`` statically (see README.md).
    """

    baseline_sut = "baseline_sut.py"
