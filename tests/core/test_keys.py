"""Every Redis key name is made by `core.redis.Keys`, and no two of its names can collide.

The source scan reads each module's string literals (docstrings and comments aside): a literal
that spells part of a key family (`:content:`, `{v:`, `:decisions:`, ...) or an f-string built on
a key prefix (`f"{keys.prefix}:..."`) means a module is naming keys itself.
"""

from __future__ import annotations

import ast
import inspect
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.redis import Keys, anonymous_visitor, user_visitor

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ["app.py", "cli.py", "assembly", "bench", "core", "integration", "segment_sync"]
SOURCES += ["webhooks"]
OWNER = Path("core/redis.py")
FAMILY = re.compile(
    r"\{v:|:(?:content|decisions|webhooks|events|model)(?::|$)"
    r"|^(?:content|decisions|webhooks|events|model):"
)
PREFIXES = {"prefix", "key_prefix"}
HOLE = "\x00"  # stands for a key's argument: no key text contains it


def modules() -> list[Path]:
    found = []
    for name in SOURCES:
        path = ROOT / name
        found += [path] if path.is_file() else sorted(path.rglob("*.py"))
    return [p for p in found if p.relative_to(ROOT) != OWNER]


def _docstrings(tree: ast.AST) -> set[int]:
    kinds = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, kinds) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def _is_prefix(node: ast.AST) -> bool:
    return isinstance(node, ast.Attribute) and node.attr in PREFIXES


def _builds_a_key(node: ast.AST, skip: set[int]) -> bool:
    if isinstance(node, ast.JoinedStr):
        text = "".join(str(v.value) if isinstance(v, ast.Constant) else "{}" for v in node.values)
        holes = [v.value for v in node.values if isinstance(v, ast.FormattedValue)]
        return bool(FAMILY.search(text)) or text == "u:{}" or any(_is_prefix(h) for h in holes)
    if isinstance(node, ast.BinOp):
        return _is_prefix(node.left) or _is_prefix(node.right)
    if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
        return bool(FAMILY.search(node.value))
    return False


def key_literals(source: str) -> Iterator[tuple[int, str]]:
    """(line, text) of every literal in `source` that builds a key name."""
    tree = ast.parse(source)
    skip = _docstrings(tree)  # and the literal parts of f-strings, judged with their f-string
    skip |= {id(v) for n in ast.walk(tree) if isinstance(n, ast.JoinedStr) for v in n.values}
    for node in ast.walk(tree):
        if _builds_a_key(node, skip):
            yield getattr(node, "lineno", 0), ast.unparse(node)


class TestTheScan:
    @pytest.mark.parametrize(
        "source",
        [
            'name = f"{keys.prefix}:decisions:tests"',
            'name = f"{self._keys.prefix}:webhooks:segment:seen:{digest}"',
            'name = keys.prefix + ":anything"',
            'pattern = "mb:content:staged:*"',
            'name = f"mb:{{v:{visitor}}}:profile"',
            'visitor = f"u:{user_id}"',
        ],
    )
    def test_a_key_built_outside_keys_is_found(self, source: str) -> None:
        assert list(key_literals(source)) != []

    @pytest.mark.parametrize(
        "source",
        [
            'def f():\n    """Writes `<p>:decisions:test:<test>`."""\n',
            'name = keys.test_counts(test)  # "<p>:decisions:test:<test>"',
            'field = f"a:{test}"',
            'log.info("assembly.decisions.flushed", content="content")',
            "keys = Keys(settings.store.key_prefix)",
        ],
    )
    def test_docs_fields_and_events_are_not_keys(self, source: str) -> None:
        assert list(key_literals(source)) == []


def test_no_module_names_redis_keys_itself() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{line}: {text!r}"
        for path in modules()
        for line, text in key_literals(path.read_text(encoding="utf-8"))
    ]
    assert found == [], "name these keys in core/redis.py Keys:\n" + "\n".join(found)


def templates(keys: Keys) -> dict[str, str]:
    """Every key `keys` names, by member; an argument shows as `HOLE`."""
    found = {}
    for name, member in inspect.getmembers(type(keys)):
        if name.startswith("_") or name == "prefix":
            continue
        if isinstance(member, property):
            found[name] = getattr(keys, name)
        elif inspect.isfunction(member):
            found[name] = getattr(keys, name)(HOLE)
    return found


def _matches(template: str, key: str) -> bool:
    pattern = ".+".join(re.escape(part) for part in template.split(HOLE))
    return re.fullmatch(pattern, key) is not None


class TestKeys:
    def test_every_name_is_under_the_prefix(self) -> None:
        names = templates(Keys("px"))
        assert names, "Keys names nothing"
        assert [n for n, key in names.items() if not key.startswith("px:")] == []

    def test_no_two_members_name_the_same_key(self) -> None:
        names = templates(Keys("px"))
        assert len(set(names.values())) == len(names)

    def test_no_fixed_name_falls_inside_a_family_of_another_member(self) -> None:
        names = templates(Keys("px"))
        fixed = {n: k for n, k in names.items() if HOLE not in k}
        families = {n: k for n, k in names.items() if HOLE in k and n != "visitor_pattern"}
        clashes = [
            (family, name)
            for family, template in families.items()
            for name, key in fixed.items()
            if _matches(template, key)
        ]
        assert clashes == []

    def test_visitor_keys_share_the_visitors_hash_tag(self) -> None:
        keys = Keys("px")
        vid = user_visitor("ann")
        names = [keys.profile(vid), keys.profile_seen(vid), keys.profile_erased(vid)]
        names += [keys.profile_pull(vid), keys.decisions(vid), keys.decision_log_visitor(vid)]
        assert {name.split("}", 1)[0] for name in names} == {"px:{v:u:ann"}

    def test_the_pattern_of_a_visitor_finds_only_that_visitors_keys(self) -> None:
        keys = Keys("px")
        pattern = keys.visitor_pattern(anonymous_visitor("a*[b]"))
        assert pattern == "px:{v:a:a\\*\\[b\\]}:*"

    def test_names_are_unchanged(self) -> None:
        """Stored data is read by these names: changing one loses it."""
        keys = Keys("mb")
        assert [
            keys.entities,
            keys.revisions,
            keys.staged_entities("g1"),
            keys.retired_entities("g1"),
            keys.no_dedupe,
            keys.contentful_seen("d"),
            keys.segment_seen("d"),
            keys.profile("u:ann"),
            keys.profile_pull("u:ann"),
            keys.events_stream,
            keys.events_dead,
            keys.decisions("a:x"),
            keys.test_counts("t"),
            keys.tests_index,
            keys.kill_switches,
            keys.kill_switch_audit,
            keys.kill_switch_channel,
            keys.kill_switch_marker,
            keys.bandit_history("t"),
            keys.model_artifact(3),
            keys.decision_log_ids,
            keys.decision_log_visitor("u:ann"),
        ] == [
            "mb:content:entities",
            "mb:content:revisions",
            "mb:content:staged:g1:entities",
            "mb:content:retired:g1",
            "mb:content:no-dedupe",
            "mb:webhooks:contentful:seen:d",
            "mb:webhooks:segment:seen:d",
            "mb:{v:u:ann}:profile",
            "mb:{v:u:ann}:profile_pull",
            "mb:events",
            "mb:events:dead",
            "mb:{v:a:x}:decisions",
            "mb:decisions:test:t",
            "mb:decisions:tests",
            "mb:decisions:kill_switches",
            "mb:decisions:audit",
            "mb:decisions:changed",
            "mb:decisions:kill_switches:kept",
            "mb:decisions:bandit:history:t",
            "mb:model:v:3",
            "mb:decisions:log:ids",
            "mb:{v:u:ann}:decision_log",
        ]
