"""Rules of the task-class contract that the loader and the fence must apply alike.

The loader raises the first problem it meets and the fence collects them all, but both
read YAML through :func:`strict_yaml`, so a file one of them refuses the other refuses
too. (File names and the path layout are in :mod:`.layout`.)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import yaml


def duplicate_keys(node: yaml.Node, where: str = "") -> Iterator[str]:
    """Every repeated key of every mapping in the node graph, as a message naming the
    dotted key and both lines (PyYAML would silently keep only the last)."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                line = key.start_mark.line + 1
                label = f"{where}.{key.value}" if where else str(key.value)
                if key.value in seen:
                    yield (
                        f"duplicate key {label!r} on line {line} (first on line "
                        f"{seen[key.value]}); YAML keeps only the last"
                    )
                else:
                    seen[key.value] = line
                yield from duplicate_keys(value, label)
            else:
                yield from duplicate_keys(value, where)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            yield from duplicate_keys(item, where)


def strict_yaml(text: str) -> tuple[Any, list[str]]:
    """The value of a YAML document (safe constructors only) and its duplicate keys.

    Raises :class:`yaml.YAMLError` when the text is not YAML. The document is parsed once:
    the value is constructed from the same node graph the duplicates are read from.
    """
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    if root is None:
        return None, []
    duplicates = list(duplicate_keys(root))
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_document(root), duplicates
    finally:
        loader.dispose()
