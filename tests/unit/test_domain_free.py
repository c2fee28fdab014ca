"""The platform knows no domain: ``shared/`` names no event, field or service of the reference
order system in its code.

Read with ``ast``: names, attribute names, arguments, and string constants (log messages,
option help, SQL) are checked; docstrings and comments are not, so an example there
("``OrderCreated`` -> ``order-created``") is allowed. An identifier is split into its words
(snake_case and CamelCase), so ``payment_url`` and ``OrderScoped`` are both caught. In text,
"order" is also English ("in order", ``ORDER BY``): there only "order id" counts, besides the
event names, the fields and the services' words.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

from services.events import CATALOGUE

ROOT = Path(__file__).resolve().parents[2]

EVENT_NAMES = frozenset(
    {cls.type_name() for cls in CATALOGUE} | {"OrderEvent", "LineItem", "PricedLineItem"}
)
FIELDS = frozenset({"order_id", "order_ids", "sku", "skus", "customer_id", "customer_ids"})
"""The reference events' fields, named as a whole."""
SERVICE_WORDS = frozenset({"payment", "payments", "inventory", "shipping", "sku", "skus"})
"""Words of the reference system's services, in an identifier or in text."""
WORDS = SERVICE_WORDS | {"order", "orders"}
"""Words of the reference system, its entity included, inside any identifier."""
NOT_THE_DOMAIN = frozenset({"order_by"})
"""Identifiers of libraries that happen to hold a word of the domain (SQLAlchemy's)."""
ORDER_ID_TEXT = re.compile(r"\border ids?\b", re.IGNORECASE)


def words(identifier: str) -> set[str]:
    """``OrderScoped`` -> {order, scoped}; ``payment_url`` -> {payment, url}."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", identifier)
    return {word.lower() for word in spaced.split("_") if word}


def domain_words(identifier: str) -> set[str]:
    """What in ``identifier`` names the reference system."""
    if identifier in NOT_THE_DOMAIN:
        return set()
    found = {identifier} & (EVENT_NAMES | FIELDS)
    return found | (words(identifier) & WORDS)


def domain_text(text: str) -> set[str]:
    """What in ``text`` (a string constant) names the reference system."""
    found = set(ORDER_ID_TEXT.findall(text))
    for token in re.findall(r"[A-Za-z][A-Za-z0-9_]*", text):
        found |= {token} & (EVENT_NAMES | FIELDS)
        found |= words(token) & SERVICE_WORDS
    return found


def _docstrings(tree: ast.AST) -> set[int]:
    """The ids of string constants that are statements alone: docstrings, attribute docs."""
    return {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    }


def findings(path: Path) -> Iterator[str]:
    tree = ast.parse(path.read_text(), str(path))
    docs = _docstrings(tree)
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            if found := domain_text(node.value):
                yield f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r} ({_sorted(found)})"
        elif isinstance(node, ast.Name):
            names = [node.id]
        elif isinstance(node, ast.Attribute):
            names = [node.attr]
        elif isinstance(node, ast.arg) or (isinstance(node, ast.keyword) and node.arg):
            names = [node.arg]
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names = [node.name]
        elif isinstance(node, ast.alias):
            names = [node.asname or node.name.rsplit(".", 1)[-1]]
        for name in names:
            if found := domain_words(name):
                line = getattr(node, "lineno", 0)
                yield f"{path.relative_to(ROOT)}:{line}: {name} ({_sorted(found)})"


def _sorted(found: set[str]) -> str:
    return ", ".join(sorted(found))


def test_the_platform_names_no_event_field_or_service_of_the_reference_system() -> None:
    found = [item for path in sorted((ROOT / "shared").rglob("*.py")) for item in findings(path)]
    assert not found, "shared/ names the reference system:\n" + "\n".join(found)


def test_the_check_finds_what_it_looks_for(tmp_path: Path) -> None:
    # The detector itself: a name, an attribute, an argument and a string of the domain are
    # caught; a docstring and a comment are not.
    sample = tmp_path / "sample.py"
    sample.write_text(
        '"""OrderCreated -> order-created, keyed by order_id."""\n'
        "# order_id in a comment\n"
        "def f(order_id: str, event: object) -> str:\n"
        '    """Reads ``event.order_id``."""\n'
        "    print(event.sku)\n"
        "    print('in order', 'ORDER BY n', 'the order ID')\n"
        "    return 'charging the payment of %s'\n"
        "class OrderScoped: ...\n"
    )
    global ROOT
    saved, ROOT = ROOT, tmp_path
    try:
        found = list(findings(sample))
    finally:
        ROOT = saved
    assert sorted(item.split(": ", 1)[1] for item in found) == [
        "'charging the payment of %s' (payment)",
        "'the order ID' (order ID)",
        "OrderScoped (order)",
        "order_id (order, order_id)",
        "sku (sku)",
    ], found
