"""The YAML reader of config files: PyYAML's safe loader with three refusals.

* **Duplicate keys.** Plain YAML keeps the last of two equal keys, so
  ``policies: {duplicates: error, duplicates: drop}`` silently means ``drop``. Refused, naming both
  lines. (Keys brought in by a merge key ``<<: *defaults`` may still be overridden: that is what merging
  is for.)
* **Alias bombs.** An alias is a reference, so a 1 kB file can describe a billion values ("billion
  laughs"); PyYAML builds it cheaply, but validating or logging the config then walks every value
  (minutes of CPU, gigabytes of memory). The document's size *with every alias expanded* is counted
  before anything is built; above :data:`MAX_NODES` values it is refused. A config has a few hundred.
* **Deep nesting.** Above :data:`MAX_DEPTH` levels (also counted through aliases) the document is
  refused before PyYAML's recursive composer would hit Python's recursion limit. A config needs 5.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

#: most values (scalars, lists and mappings) a config may hold once aliases are expanded
MAX_NODES = 100_000
#: most levels of nesting a config may have
MAX_DEPTH = 100

_MERGE = "tag:yaml.org,2002:merge"


class ConfigYAMLError(yaml.YAMLError):
    """The text is YAML, but not one clvml accepts as a config (the message says why and where)."""


def _line(node: Node) -> int:
    return node.start_mark.line + 1


class ConfigLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` refusing duplicate keys, alias bombs and deep nesting."""

    def __init__(self, stream: Any):
        super().__init__(stream)
        self._depth = 0

    # -- nesting: counted while composing (PyYAML's composer recurses once per level)
    def compose_node(self, parent: Node | None, index: Any) -> Node:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise ConfigYAMLError(
                    f"line {self.peek_event().start_mark.line + 1}: nested more than {MAX_DEPTH} levels "
                    "deep; a clvml config needs a handful of levels")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    # -- size with aliases expanded: checked on the whole document before anything is constructed
    def compose_document(self) -> Node:
        node = super().compose_document()
        if node is not None:
            _check_expanded(node)
        return node

    # -- duplicate keys
    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == _MERGE:
                continue
            key = self.construct_object(key_node, deep=True) if isinstance(key_node, ScalarNode) else None
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: PyYAML reports it below
                continue
            if first is not None:
                where = "earlier on the same line" if first == _line(key_node) else f"at line {first}"
                raise ConfigYAMLError(
                    f"line {_line(key_node)}: duplicate key {key!r} (already set {where}); each key may "
                    "appear once in a mapping — YAML would silently keep the last one. Remove one of them")
            if key is not None or isinstance(key_node, ScalarNode):
                seen[key] = _line(key_node)
        return super().construct_mapping(node, deep=deep)


def _check_expanded(root: Node) -> None:
    """Refuse a document whose alias-expanded size exceeds :data:`MAX_NODES` or depth :data:`MAX_DEPTH`.

    Shared nodes (anchors) are measured once and counted as often as they are referenced, so the walk
    costs the size of the file, not of its expansion."""
    size: dict[int, int] = {}
    height: dict[int, int] = {}
    on_path: set[int] = set()

    def walk(node: Node, depth: int) -> None:
        key = id(node)
        if depth + height.get(key, 1) - 1 > MAX_DEPTH:
            raise ConfigYAMLError(
                f"line {_line(node)}: nested more than {MAX_DEPTH} levels deep once aliases are expanded; a "
                "clvml config needs a handful of levels")
        if key in size:
            return
        if key in on_path:
            raise ConfigYAMLError(f"line {_line(node)}: an alias refers to the collection that contains it "
                                  "(an endless value)")
        if isinstance(node, ScalarNode):
            size[key], height[key] = 1, 1
            return
        on_path.add(key)
        children: list[Node] = []
        if isinstance(node, SequenceNode):
            children = list(node.value)
        elif isinstance(node, MappingNode):
            for k, v in node.value:
                children += [k, v]
        total, tallest = 1, 0
        for child in children:
            walk(child, depth + 1)
            total += size[id(child)]
            tallest = max(tallest, height[id(child)])
            if total > MAX_NODES:
                raise ConfigYAMLError(
                    f"line {_line(node)}: this value holds more than {MAX_NODES:,} values once its aliases "
                    "(*name) are expanded; a clvml config has a few hundred — aliases that repeat "
                    "collections many times over (a 'billion laughs' document) are refused")
        on_path.discard(key)
        size[key], height[key] = total, tallest + 1

    walk(root, 1)


def load_yaml(text: str) -> Any:
    """Parse one YAML document with :class:`ConfigLoader`."""
    return yaml.load(text, Loader=ConfigLoader)  # noqa: S506 - a SafeLoader subclass
