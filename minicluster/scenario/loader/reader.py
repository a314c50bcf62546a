"""Reading YAML safely with line numbers: `_Reader` checks each node's kind, size and value and
turns every problem into a ScenarioError that names the file, the path inside it and the line;
`_Map` is a mapping node whose keys it checks (duplicates, merges, unknown keys with a
did-you-mean hint). `_load` composes a document with PyYAML's SafeLoader (no tags that build
objects) and `_read` reads a file no further than its size limit.
"""

from __future__ import annotations

import bisect
import difflib
import re
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import TypeVar

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from minicluster.bounded_read import FileTooLargeError, read_bounded
from minicluster.limits import (
    MAX_FILE_DURATION,
    MAX_NAME_LENGTH,
    TASK_EXECUTOR_ID,
    LimitError,
    check_positive_duration,
)
from minicluster.scenario.durations import describe_value, format_duration, parse_duration
from minicluster.scenario.loader.keys import COUNT_KEYS, EXTENSION_PREFIX, is_extension
from minicluster.scenario.loader.model import (
    _RESERVED_IDS,
    JOB_MASTER_PREFIX,
    Count,
    ScenarioError,
    ScenarioWarning,
)

_T = TypeVar("_T")

_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_NULL_TAG = "tag:yaml.org,2002:null"
_MERGE_TAG = "tag:yaml.org,2002:merge"


# --------------------------------------------------------------------------------------------
# Reading YAML nodes


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


_LINE_BREAK = re.compile(r"\r\n|\r|\n")


class _Lines:
    """Line numbers as editors count them: YAML also breaks lines at U+0085, U+2028 and U+2029,
    which editors, grep and less show inside a line, so marks' own line numbers are not used."""

    def __init__(self, text: str) -> None:
        self.starts = [0, *(m.end() for m in _LINE_BREAK.finditer(text))]

    def at(self, index: int) -> int:
        return bisect.bisect_right(self.starts, index)

    def of(self, node: Node | None) -> int | None:
        if node is None or node.start_mark is None:
            return None
        return self.at(int(node.start_mark.index))


def _kind_of(node: Node) -> str:
    if isinstance(node, MappingNode):
        return "a map"
    if isinstance(node, SequenceNode):
        return "a list"
    return "a value"


def _did_you_mean(word: str, choices: Collection[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _one_line(text: str) -> str:
    return " ".join(text.split())


class _Map:
    """A YAML mapping with text keys, its nodes kept for line numbers."""

    def __init__(self, reader: _Reader, node: MappingNode, path: str) -> None:
        self.reader = reader
        self.node = node
        self.path = path
        self.entries: dict[str, tuple[Node, Node]] = {}

    def at(self, key: str) -> str:
        return _join(self.path, key)

    def has(self, key: str) -> bool:
        return key in self.entries

    def get(self, key: str) -> Node | None:
        entry = self.entries.get(key)
        return entry[1] if entry is not None else None

    def require(self, key: str, hint: str = "") -> Node:
        entry = self.entries.get(key)
        if entry is None:
            raise self.reader.error(self.path, self.node, f"missing required key {key!r}{hint}")
        return entry[1]

    def refuse_unknown(self, known: Collection[str]) -> None:
        """An unknown key is an error: a typo must not quietly run with the default. Keys of
        the extension prefix never get here (`_Reader.mapping` leaves them out)."""
        for key, (key_node, _) in self.entries.items():
            if key not in known:
                hint = _did_you_mean(key, known) or (
                    f"; the keys here are {', '.join(known)}, "
                    f"or any key starting with {EXTENSION_PREFIX!r} for your own use"
                )
                raise self.reader.error(self.at(key), key_node, f"unknown key {key!r}{hint}")


class _Reader:
    def __init__(self, file: str, loader: yaml.SafeLoader, lines: _Lines) -> None:
        self.file = file
        self.loader = loader
        self.lines = lines
        self.warnings: list[ScenarioWarning] = []
        self.maps: dict[int, dict[str, tuple[Node, Node]]] = {}  # by id() of a live node

    def line(self, node: Node | None) -> int | None:
        return self.lines.of(node)

    def error(self, path: str, node: Node | None, message: str) -> ScenarioError:
        return ScenarioError(self.file, path, self.line(node), message)

    def warn(self, path: str, node: Node | None, message: str) -> None:
        self.warnings.append(ScenarioWarning(self.file, path, self.line(node), message))

    # -- structure

    def is_null(self, node: Node | None) -> bool:
        return node is None or (isinstance(node, ScalarNode) and node.tag == _NULL_TAG)

    def mapping(self, node: Node, path: str, expected: str = "a map") -> _Map:
        if not isinstance(node, MappingNode) or node.tag != _MAP_TAG:
            raise self.error(path, node, f"expected {expected}, got {self.show(node, path)}")
        result = _Map(self, node, path)
        known = self.maps.get(id(node))  # an alias of a map read before: merged already
        if known is not None:
            result.entries = known
            return result
        first_seen: dict[str, Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            if not isinstance(key_node, ScalarNode):
                raise self.error(path, key_node, f"keys must be text, got {_kind_of(key_node)}")
            key = str(key_node.value)
            if key in first_seen:
                raise self.error(
                    _join(path, key),
                    key_node,
                    f"duplicate key {key!r} (first given on line {self.line(first_seen[key])})",
                )
            first_seen[key] = key_node
        try:
            self.loader.flatten_mapping(node)  # YAML merge keys (<<: *defaults)
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", None) or str(exc)
            raise self.error(path, node, f"cannot merge keys: {_one_line(problem)}") from None
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                raise self.error(path, key_node, f"keys must be text, got {_kind_of(key_node)}")
            key = str(key_node.value)
            if not is_extension(key):  # the user's own: never read, so never refused
                result.entries[key] = (key_node, value_node)
        self.maps[id(node)] = result.entries
        return result

    def sequence(self, node: Node, path: str, expected: str = "a list") -> list[Node]:
        if not isinstance(node, SequenceNode) or node.tag != _SEQ_TAG:
            raise self.error(path, node, f"expected {expected}, got {self.show(node, path)}")
        return list(node.value)

    def scalar(self, node: Node, path: str, expected: str) -> object:
        if not isinstance(node, ScalarNode):
            raise self.error(path, node, f"expected {expected}, got {_kind_of(node)}")
        try:
            return self.loader.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            problem = _one_line(getattr(exc, "problem", None) or str(exc))
            message = f"cannot read {describe_value(node.value)}: {problem}"
            raise self.error(path, node, message) from None
        except Exception:  # PyYAML's constructors fail in many ways on explicit tags (!!int '')
            tag = str(node.tag).replace("tag:yaml.org,2002:", "!!")
            raise self.error(
                path, node, f"cannot read {describe_value(node.value)} as {tag}"
            ) from None

    def show(self, node: Node, path: str) -> str:
        if isinstance(node, ScalarNode):
            return describe_value(self.scalar(node, path, "a value"))
        return _kind_of(node)

    # -- values

    def text(
        self, node: Node, path: str, expected: str = "text", max_length: int = MAX_NAME_LENGTH
    ) -> str:
        value = self.scalar(node, path, expected)
        if not isinstance(value, str) or not value.strip():
            raise self.error(path, node, f"expected {expected}, got {describe_value(value)}")
        value = value.strip()
        if len(value) > max_length:
            raise self.error(
                path, node, f"expected at most {max_length:,} characters, got {len(value):,}"
            )
        return value

    def sequence_at_most(
        self, node: Node, path: str, expected: str, limit: int, what: str
    ) -> list[Node]:
        """A list of at most ``limit`` items; ``what`` names them in the message."""
        nodes = self.sequence(node, path, expected)
        if len(nodes) > limit:
            raise self.error(path, node, f"at most {limit:,} {what}, got {len(nodes):,}")
        return nodes

    def integer(self, node: Node, path: str, minimum: int = 0, maximum: int | None = None) -> int:
        expected = {0: "a non-negative integer", 1: "a positive integer"}.get(
            minimum, f"an integer of at least {minimum}"
        )
        value = self.scalar(node, path, expected)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.error(path, node, f"expected {expected}, got {describe_value(value)}")
        if maximum is not None and value > maximum:
            raise self.error(
                path, node, f"expected at most {maximum:,}, got {describe_value(value)}"
            )
        return value

    def duration(self, node: Node, path: str, positive: bool = False) -> float:
        value = self.scalar(node, path, "a duration such as 500ms, 3s, 2m or 1h")
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            raise self.error(path, node, str(exc)) from None
        if seconds > MAX_FILE_DURATION:
            raise self.error(
                path,
                node,
                f"expected at most {format_duration(MAX_FILE_DURATION)} (a week of cluster "
                f"time), got {describe_value(value)}",
            )
        if positive:
            try:
                check_positive_duration(seconds, value)
            except LimitError as exc:
                raise self.error(path, node, str(exc)) from None
        return seconds

    def choice(
        self, node: Node, path: str, choices: Sequence[str], what: str, fold_case: bool = False
    ) -> str:
        options = ", ".join(choices)
        value = self.scalar(node, path, f"{what} ({options})")
        if isinstance(value, str):
            candidate = value.strip().upper() if fold_case else value.strip()
            if candidate in choices:
                return candidate
            hint = _did_you_mean(candidate, choices)
        else:
            hint = ""
        raise self.error(
            path, node, f"expected {what} ({options}), got {describe_value(value)}{hint}"
        )

    def count(self, node: Node, path: str) -> Count:
        expected = "a non-negative integer or {min: N, max: M}"
        if isinstance(node, MappingNode):
            m = self.mapping(node, path, expected)
            low = self.integer(n, m.at("min")) if (n := m.get("min")) is not None else None
            high = self.integer(n, m.at("max")) if (n := m.get("max")) is not None else None
            if low is None and high is None:
                raise self.error(path, node, "a range needs min, max or both")
            if low is not None and high is not None and low > high:
                raise self.error(path, node, f"min {low} is larger than max {high}")
            m.refuse_unknown(COUNT_KEYS)
            return Count(low, high)
        value = self.scalar(node, path, expected)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise self.error(path, node, f"expected {expected}, got {describe_value(value)}")
        return Count(value, value)

    def task_executor_id(self, node: Node, path: str) -> str:
        te = self.text(node, path, "a TaskExecutor id (text)")
        if te in _RESERVED_IDS or te.startswith(JOB_MASTER_PREFIX):
            raise self.error(path, node, f"{te!r} names a cluster component, not a TaskExecutor")
        if not TASK_EXECUTOR_ID.fullmatch(te):
            raise self.error(
                path,
                node,
                "a TaskExecutor id holds only letters, digits, '.', '_' and '-', "
                f"got {describe_value(te)}",
            )
        return te


# libyaml's parser, when PyYAML has it: for text this program wrote itself (the simulator's
# generated runs, thousands of them), where PyYAML's pure-Python composer was half the cost of
# a run. Files people write keep the pure-Python loader, whose errors the messages are built on.
_FAST_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _compose(
    text: str, file: str, lines: _Lines, trusted: bool = False
) -> tuple[Node | None, yaml.SafeLoader]:
    try:
        loader = (_FAST_LOADER if trusted else yaml.SafeLoader)(text)  # checks every character
        return loader.get_single_node(), loader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = lines.at(int(mark.index)) if mark is not None else None
        problem = _one_line(exc.problem or exc.context or "cannot be parsed")
        if exc.context and exc.problem:
            context = _one_line(exc.context)
            context_line = lines.at(int(exc.context_mark.index)) if exc.context_mark else None
            if context_line is not None and context_line != line:
                context += f" that starts on line {context_line}"
            problem += f" ({context})"
        raise ScenarioError(file, "", line, f"invalid YAML: {problem}") from None
    except yaml.reader.ReaderError as exc:
        line = lines.at(max(int(exc.position), 0))
        char = exc.character
        shown = f"#x{char:04x}" if isinstance(char, int) else repr(char)
        raise ScenarioError(
            file, "", line, f"invalid YAML: the character {shown} is not allowed"
        ) from None
    except yaml.YAMLError as exc:
        raise ScenarioError(file, "", None, f"invalid YAML: {_one_line(str(exc))}") from None
    except RecursionError:
        raise ScenarioError(file, "", None, "invalid YAML: nested too deeply") from None


def _load(
    text: str,
    file: str,
    what: str,
    parse: Callable[[_Reader, MappingNode], _T],
    trusted: bool = False,
) -> _T:
    lines = _Lines(text)
    root, loader = _compose(text, file, lines, trusted)
    try:
        reader = _Reader(file, loader, lines)
        if root is None or reader.is_null(root):
            raise ScenarioError(file, "", None, f"the file is empty; expected {what}")
        if not isinstance(root, MappingNode) or root.tag != _MAP_TAG:
            raise reader.error(
                "", root, f"the top level must be {what}, got {reader.show(root, '')}"
            )
        return parse(reader, root)
    except RecursionError:
        raise ScenarioError(file, "", None, "the file is nested too deeply") from None
    finally:
        loader.dispose()


def _read(path: str | Path, kind: str) -> str:
    """The text of a file of ``kind`` (a key of limits.FILE_SIZE_LIMITS), read at most to its
    limit: /dev/zero or an endless pipe is refused, not read until memory runs out."""
    try:
        return read_bounded(path, kind).decode("utf-8")
    except FileTooLargeError as exc:
        raise ScenarioError(str(path), "", None, str(exc)) from None
    except UnicodeDecodeError:
        raise ScenarioError(str(path), "", None, "the file is not UTF-8 text") from None
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ScenarioError(str(path), "", None, f"cannot read the file: {reason}") from None
