"""Option defaults and limits: the one place the plugin, the CLI, the sandbox and the import
child read them from. Standard library only, so declaring the options of a run that selects
no bench imports nothing else of the harness."""

from __future__ import annotations

# where things are, relative to the rootdir (the plugin's ini defaults, the CLI's, the fence's)
STATE_DIR = ".codegenie/eval"
BENCH_ROOT = "bench"
TIERS = "docs/trust-tiers.yaml"

# SUT limits (--codegenie-sut-max-*): memory of all its processes together (MiB), processes,
# largest file (MiB), workspace and scratch space (MiB), files in them
SUT_MEMORY_MB = 8192
SUT_MAX_PROCS = 512
SUT_MAX_FILE_MB = 1024
SUT_MAX_WORKSPACE_MB = 1024
SUT_MAX_FILES = 200_000

# the host user a root harness starts every sandbox as (--codegenie-sandbox-user)
JAIL_USER = "nobody"

# seconds a task class's registration.py and breakdown_keys.py may take to import
IMPORT_TIMEOUT_S = 60.0

# how rubrics are isolated (--codegenie-rubric-sandbox)
RUBRIC_SANDBOXES = ("auto", "bwrap", "namespaces", "none")

# the model gateway (--codegenie-model-gateway, --codegenie-upstream)
GATEWAY_MODES: tuple[str, ...] = ("off", "live", "record", "replay")
UPSTREAM_HELP = (
    "NAME=URL: an upstream the gateway forwards /NAME/... to (repeatable); a NAME starting "
    "with 'anthropic' speaks Anthropic Messages, any other an OpenAI-compatible API; "
    "openai and anthropic are there by default"
)
