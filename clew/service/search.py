"""The run filter language, compiled to SQL.

    metrics.auc > 0.8 and params.model = 'rf' and tags.team = 'risk'
    attributes.status = 'FINISHED' or (run.name like 'train%' and metrics.loss < 0.2)

Identifiers are ``metrics.<key>``, ``params.<key>``, ``tags.<key>`` (keys may be quoted with
backticks or double quotes) and ``attributes.<name>`` / ``run.<name>`` for the run's own
fields. Operators: = != <> < <= > >= like ilike in (...) "not in" (...) "is null" "is not null".
``and`` binds tighter than ``or``; parentheses group.

Types: metrics and ``run.start_time`` / ``run.end_time`` are numbers, and comparing them with
text is refused. Params, tags and the other attributes are text: ``=``, ``!=``, ``in`` and
``like`` compare text (a number is written as text first); ``<`` ``<=`` ``>`` ``>=`` with a
number compare numerically where the value is a decimal numeral and are false where it is not
(``params.lr > 0.05`` never matches ``lr='abc'``); with a string they compare by code point.
``like`` is case-sensitive, ``ilike`` folds ASCII letters; ``\\`` escapes ``%`` and ``_``.
SQLite and PostgreSQL give the same answer (clew/store/typed_sql.py).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Float,
    Row,
    and_,
    false,
    literal,
    not_,
    null,
    or_,
    select,
    true,
)
from sqlalchemy.sql import Select

from clew.errors import FilterSyntaxError, InvalidInputError
from clew.service.search_pages import OrderKey, after_row, decode_token, query_digest
from clew.store import schema
from clew.store.typed_sql import AsciiLower, ByteOrder, NumberOf

ATTRIBUTES = {
    "id": schema.runs.c.id,
    "run_id": schema.runs.c.id,
    "name": schema.runs.c.name,
    "status": schema.runs.c.status,
    "kind": schema.runs.c.kind,
    "user": schema.runs.c.user_name,
    "start_time": schema.runs.c.start_ms,
    "end_time": schema.runs.c.end_ms,
    "parent_id": schema.runs.c.parent_id,
    "experiment": schema.contexts.c.name,
}
NUMERIC_ATTRIBUTES = frozenset({"start_time", "end_time"})
# Bounds a caller cannot exceed: each comparison is a subquery per candidate run, so the
# filter's size is what a search costs the database (docs/runs.md).
MAX_FILTER_LENGTH = 10_000
MAX_CLAUSES = 100
MAX_DEPTH = 20
MAX_LIST_VALUES = 1000
MAX_ORDER_KEYS = 20
ENTITY_TABLES = {
    "metrics": schema.latest_metrics,
    "metric": schema.latest_metrics,
    "params": schema.params,
    "param": schema.params,
    "tags": schema.tags,
    "tag": schema.tags,
}
_ENTITY_NAMES = {entity: entity.rstrip("s") + "s" for entity in ENTITY_TABLES}
_TOKEN = re.compile(
    r"""\s*(?:
        (?P<number>-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|-?\.\d+)
      | (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
      | (?P<ident>[A-Za-z_][A-Za-z0-9_]*\.(?:`[^`]+`|"[^"]+"|[A-Za-z0-9_.\-/:]+))
      | (?P<op><=|>=|!=|<>|=|<|>)
      | (?P<punct>[(),])
      | (?P<word>[A-Za-z]+)
    )""",
    re.VERBOSE,
)


@dataclass(frozen=True)
class Token:
    kind: str
    text: str
    position: int


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    position = 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = _TOKEN.match(text, position)
        if not match or match.end() == position:
            raise FilterSyntaxError(
                f"cannot read the filter at character {position + 1}: {text[position:][:20]!r}; "
                "write clauses like metrics.auc > 0.8 and params.model = 'rf'."
            )
        kind = match.lastgroup or ""
        tokens.append(Token(kind, match.group(kind), match.start(kind)))
        position = match.end()
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.index = 0
        self.keys: list[tuple[str, str]] = []  # (metrics|params|tags, key) the filter names
        self.clauses = 0
        self.depth = 0
        # Comparisons every matching run satisfies (``and``-ed at the top level), by metric key:
        # a metric-ordered search also applies them to the index walk (see _MetricPath).
        self.metric_conjuncts: list[tuple[str, str, Any]] = []
        self.top_level_or = False

    def parse(self) -> ColumnElement[bool]:
        expression = self._or()
        if self.index < len(self.tokens):
            raise self._error(f"unexpected {self.tokens[self.index].text!r}")
        return expression

    def _peek_word(self, *words: str) -> bool:
        token = self._peek()
        return token is not None and token.kind == "word" and token.text.lower() in words

    def _peek(self) -> Token | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def _next(self, what: str) -> Token:
        token = self._peek()
        if token is None:
            raise self._error(f"the filter ends where {what} was expected")
        self.index += 1
        return token

    def _or(self) -> ColumnElement[bool]:
        parts = [self._and()]
        while self._peek_word("or"):
            self.index += 1
            self.top_level_or = self.top_level_or or self.depth == 0
            parts.append(self._and())
        return parts[0] if len(parts) == 1 else or_(*parts)

    def _and(self) -> ColumnElement[bool]:
        parts = [self._term()]
        while self._peek_word("and"):
            self.index += 1
            parts.append(self._term())
        return parts[0] if len(parts) == 1 else and_(*parts)

    def _term(self) -> ColumnElement[bool]:
        token = self._peek()
        if token is not None and token.text == "(":
            self.index += 1
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise FilterSyntaxError(
                    f"the filter nests parentheses more than {MAX_DEPTH} levels deep; "
                    "write it flatter."
                )
            inner = self._or()
            if self._next("')'").text != ")":
                raise self._error("a '(' is not closed")
            self.depth -= 1
            return inner
        return self._clause()

    def _clause(self) -> ColumnElement[bool]:
        self.clauses += 1
        if self.clauses > MAX_CLAUSES:
            raise FilterSyntaxError(
                f"the filter has more than {MAX_CLAUSES} comparisons; search in parts, or "
                "match many values with one 'in (...)'."
            )
        ident = self._next("an identifier such as metrics.auc")
        if ident.kind != "ident":
            raise self._error(
                f"{ident.text!r} is not an identifier like metrics.auc or params.model"
            )
        entity, _, key = ident.text.partition(".")
        key = key.strip('`"')
        operator, value = self._operator_and_value()
        if self.depth == 0 and entity.lower() in ("metrics", "metric"):
            self.metric_conjuncts.append((key, operator, value))
        return _compile_clause(entity.lower(), key, operator, value, self)

    def _operator_and_value(self) -> tuple[str, Any]:
        token = self._next("an operator")
        if token.kind == "op":
            return ("!=" if token.text == "<>" else token.text), self._literal()
        word = token.text.lower()
        if word in ("like", "ilike"):
            return word, self._literal()
        if word == "in":
            return "in", self._list()
        if word == "not" and self._peek_word("in"):
            self.index += 1
            return "not in", self._list()
        if word == "is":
            negate = self._peek_word("not")
            if negate:
                self.index += 1
            if not self._peek_word("null"):
                raise self._error("'is' must be followed by null or not null")
            self.index += 1
            return ("is not null" if negate else "is null"), None
        raise self._error(f"{token.text!r} is not an operator (use = != < <= > >= like in)")

    def _literal(self) -> Any:
        token = self._next("a value")
        if token.kind == "number":
            if not any(c in token.text for c in ".eE"):
                return int(token.text)
            if not math.isfinite(number := float(token.text)):
                raise self._error(f"the number {token.text} is beyond a 64-bit float's range")
            return number
        if token.kind == "string":
            return re.sub(r"\\(.)", r"\1", token.text[1:-1])
        raise self._error(f"{token.text!r} is not a value; quote strings like 'rf'")

    def _list(self) -> list[Any]:
        if self._next("'('").text != "(":
            raise self._error("'in' needs a parenthesised list like ('rf', 'xgb')")
        values = [self._literal()]
        while (token := self._next("',' or ')'")).text == ",":
            values.append(self._literal())
            if len(values) > MAX_LIST_VALUES:
                raise FilterSyntaxError(
                    f"an 'in' list in the filter holds more than {MAX_LIST_VALUES} values; "
                    "search in parts."
                )
        if token.text != ")":
            raise self._error("a list must end with ')'")
        return values

    def _error(self, why: str) -> FilterSyntaxError:
        return FilterSyntaxError(
            f"invalid filter {self.text!r}: {why}; write clauses like "
            "metrics.auc > 0.8 and params.model = 'rf'."
        )


def _compare(column: ColumnElement[Any], operator: str, value: object) -> ColumnElement[bool]:
    match operator:
        case "=":
            return column == value
        case "!=":
            return column != value
        case "<":
            return column < value
        case "<=":
            return column <= value
        case ">":
            return column > value
        case ">=":
            return column >= value
        case "like":
            return column.like(value, escape="\\")
        case "ilike":
            return AsciiLower(column).like(_ascii_lower(value), escape="\\")
        case "in" if isinstance(value, list):
            return column.in_(value)
        case "not in" if isinstance(value, list):
            return column.not_in(value)
    raise FilterSyntaxError(f"operator {operator!r} is not supported.")


def _compile_clause(
    entity: str, key: str, operator: str, value: Any, parser: _Parser
) -> ColumnElement[bool]:
    name = f"{entity}.{key}"
    if entity in ("attributes", "attribute", "run"):
        if key not in ATTRIBUTES:
            raise parser._error(
                f"unknown attribute {key!r}; use one of {', '.join(sorted(ATTRIBUTES))}"
            )
        column = ATTRIBUTES[key]
        if operator in ("is null", "is not null"):
            return column.is_(None) if operator == "is null" else column.is_not(None)
        if key in NUMERIC_ATTRIBUTES:
            return _numeric(column, name, operator, value, parser)
        return _textual(column, operator, value, parser)
    table = ENTITY_TABLES.get(entity)
    if table is None:
        raise parser._error(f"{entity!r} is not metrics, params, tags or attributes")
    parser.keys.append((_ENTITY_NAMES[entity], key))
    present = select(table.c.run_id).where(table.c.key == key)
    if operator == "is null":
        return not_(schema.runs.c.id.in_(present))
    if operator == "is not null":
        return schema.runs.c.id.in_(present)
    if table is schema.latest_metrics:
        condition = _numeric(table.c.value, name, operator, value, parser, as_float=True)
    else:
        condition = _textual(table.c.value, operator, value, parser)
    # A correlated EXISTS lets the database walk runs newest-first and stop at max_results
    # matches; ``id IN (subquery)`` materialises and sorts every match first (100k runs:
    # ~1 ms instead of ~700 ms for a typical filter).
    return (
        select(table.c.run_id)
        .where(table.c.run_id == schema.runs.c.id, table.c.key == key, condition)
        .exists()
    )


def _numeric(
    column: Any, name: str, operator: str, value: Any, parser: _Parser, as_float: bool = False
) -> ColumnElement[bool]:
    """A comparison on a number column; text there is the filter's mistake, not the run's."""
    if operator in ("like", "ilike"):
        raise parser._error(f"{name} is a number; like applies to params, tags and text fields")
    values = value if isinstance(value, list) else [value]
    if any(isinstance(v, str) for v in values):
        text = next(v for v in values if isinstance(v, str))
        raise parser._error(f"{name} is compared with a number, not {text!r}")
    # A float is bound as one: IN lists would otherwise cast it to the column's BIGINT.
    bound = [v if not as_float and _is_int64(v) else literal(float(v), Float()) for v in values]
    return _compare(column, operator, bound if isinstance(value, list) else bound[0])


def _is_int64(value: Any) -> bool:
    """A literal the database binds as a 64-bit integer (others are bound as floats)."""
    return isinstance(value, int) and -(2**63) <= value < 2**63


def _textual(column: Any, operator: str, value: Any, parser: _Parser) -> ColumnElement[bool]:
    """A comparison on a text column: ordered against a number only where the text is one."""
    if operator in ("<", "<=", ">", ">="):
        if isinstance(value, str):
            return _compare(ByteOrder(column), operator, value)
        return _compare(NumberOf(column), operator, float(value))
    if isinstance(value, list):
        return _compare(column, operator, [str(v) for v in value])
    text = str(value)
    if operator in ("like", "ilike") and _ends_in_escape(text):
        raise parser._error(
            f"the like pattern {text!r} ends in the escape character \\; write \\\\\\\\ in "
            "the filter for a literal backslash"
        )
    return _compare(column, operator, text)


def _ends_in_escape(pattern: str) -> bool:
    trailing = len(pattern) - len(pattern.rstrip("\\"))
    return trailing % 2 == 1


def _ascii_lower(text: Any) -> str:
    """Lower-case A-Z only, as SQLite's ``lower()`` does (and ``AsciiLower`` on PostgreSQL)."""
    return str(text).translate(_ASCII_LOWER)


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def check_text(text: str, what: str, error: type[InvalidInputError] = FilterSyntaxError) -> None:
    """Refuse text no database can compare: NUL characters (PostgreSQL text cannot hold them)
    and lone surrogates (not Unicode, so not storable either)."""
    if "\x00" in text:
        raise error(f"the {what} {text!r} contains a NUL character; remove it.")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise error(
            f"the {what} {text!r} is not valid Unicode (a lone surrogate); remove that character."
        ) from None


def compile_filter(text: str | None) -> ColumnElement[bool] | None:
    if text is None or not text.strip():
        return None
    _check_filter(text)
    return _Parser(text).parse()


def metric_conditions(text: str | None, key: str, column: Any) -> list[ColumnElement[bool]]:
    """The filter's conditions on metric ``key`` that every matching run meets, applied to
    ``column`` (the metric's value): each is implied by the filter, so adding them to a
    query changes no result and lets an index skip runs that cannot match."""
    if text is None or not text.strip():
        return []
    parser = _Parser(text)
    parser.parse()
    if parser.top_level_or:
        return []
    return [
        _numeric(column, f"metrics.{key}", operator, value, parser, as_float=True)
        for name, operator, value in parser.metric_conjuncts
        if name == key and operator in ("=", "<", "<=", ">", ">=")
    ]


def _check_filter(text: str) -> None:
    if len(text) > MAX_FILTER_LENGTH:
        raise FilterSyntaxError(
            f"the filter is {len(text)} characters long; the limit is {MAX_FILTER_LENGTH}, so "
            "search in parts."
        )
    check_text(text, "filter")


def referenced_keys(text: str | None) -> list[tuple[str, str]]:
    """The (``metrics`` | ``params`` | ``tags``, key) pairs a filter compares, in order."""
    if text is None or not text.strip():
        return []
    _check_filter(text)
    parser = _Parser(text)
    parser.parse()
    return parser.keys


def order_keys(order_by: Sequence[str] | None) -> list[OrderKey]:
    """``["metrics.auc DESC", "start_time"]`` → the sort keys, NULLs last; newest runs first,
    then run id, so the order is total (page tokens rely on that)."""
    keys: list[OrderKey] = []
    if len(order_by or []) > MAX_ORDER_KEYS:
        raise FilterSyntaxError(f"order_by names more than {MAX_ORDER_KEYS} fields; use fewer.")
    for item in order_by or []:
        check_text(item, "order_by item")
        words = item.strip().split()
        if (
            not words
            or len(words) > 2
            or (len(words) == 2 and words[1].upper() not in ("ASC", "DESC"))
        ):
            raise FilterSyntaxError(
                f"order_by item {item!r} is not '<field> [ASC|DESC]', e.g. 'metrics.auc DESC'."
            )
        descending = len(words) == 2 and words[1].upper() == "DESC"
        column = _order_column(words[0])
        keys.append(OrderKey(column.is_(None), descending=False, is_null_flag=True))
        keys.append(OrderKey(column, descending))
    keys.append(OrderKey(schema.runs.c.start_ms, descending=True))
    keys.append(OrderKey(schema.runs.c.id, descending=True))
    return keys


def _order_column(field: str) -> Any:
    entity, dot, key = field.partition(".")
    if not dot:
        entity, key = "attributes", field
    key = key.strip('`"')
    if entity in ("attributes", "attribute", "run"):
        if key not in ATTRIBUTES:
            raise FilterSyntaxError(
                f"cannot order by {field!r}; use metrics.<key>, params.<key>, tags.<key> or "
                f"one of {', '.join(sorted(ATTRIBUTES))}."
            )
        return ATTRIBUTES[key] if key in NUMERIC_ATTRIBUTES else ByteOrder(ATTRIBUTES[key])
    table = ENTITY_TABLES.get(entity)
    if table is None:
        raise FilterSyntaxError(f"cannot order by {field!r}; use metrics.<key> or params.<key>.")
    value = (
        select(table.c.value)
        .where(table.c.run_id == schema.runs.c.id, table.c.key == key)
        .scalar_subquery()
    )
    return value if table is schema.latest_metrics else ByteOrder(value)


# How many index entries the metric-ordered path reads before it gives up on a filter that
# rejects most runs, as multiples of the page (the generic plan then scans every run once).
PROBES = (10,)


def build_plan(
    filter_text: str | None,
    order_by: Sequence[str] | None,
    experiments: Sequence[str] | None = None,
    page_token: str | None = None,
) -> SearchPlan:
    """How to read the runs in order, each row a run id and its sort-key values (the last
    row's make the next page token), starting after ``page_token``'s row."""
    keys = order_keys(order_by)
    last = None
    if page_token is not None:
        digest = query_digest(filter_text, order_by, experiments)
        last = decode_token(page_token, digest, len(keys))
    base = _filtered(filter_text, experiments)
    generic = _ordered(base, [], keys, last)
    metric = _leading_metric(order_by)
    if metric is None:
        return SearchPlan(generic, None)
    implied = metric_conditions(filter_text, metric, _MetricPath.VALUE)
    return SearchPlan(generic, _MetricPath.build(base, metric, keys, last, implied))


@dataclass(frozen=True)
class SearchPlan:
    """One query over every matching run, and a faster path when a metric orders first."""

    generic: Select[Any]
    metric: _MetricPath | None

    def rows(self, connection: Connection, limit: int) -> list[Row[Any]]:
        found = None if self.metric is None else self.metric.rows(connection, limit)
        if found is None:
            found = list(connection.execute(self.generic.limit(limit)).all())
        return found


@dataclass(frozen=True)
class _MetricPath:
    """Runs ordered by a metric first: the runs that have it, walked in value order along
    ``ix_latest_metrics_key_value`` so the database stops after the page, then the runs
    without it (they sort last). Ordering by a per-run subquery instead makes the database
    look up and sort every matching run (100k runs: ~200 ms instead of ~20 ms).

    A filter that rejects most runs would make that walk read the whole index, so the walk
    is bounded: it reads the first 10× the page's index entries (all entries tied with the
    last one included, so the order stays exact) and, if the filter leaves too few of them,
    hands over to the generic plan, which costs what it did before this path existed. The
    filter's own top-level comparisons on the metric (``metrics.auc > 0.8``) narrow the walk
    first, so they never make it fall back."""

    with_value: Select[Any]
    without_value: Select[Any]
    value: Any
    ordered_values: Select[Any]
    descending: bool
    skip_values: bool

    TABLE = schema.latest_metrics.alias("ordered_metric")
    VALUE = TABLE.c.value

    @classmethod
    def build(
        cls,
        base: Select[Any],
        metric: str,
        keys: list[OrderKey],
        last: list[Any] | None,
        implied: list[ColumnElement[bool]],
    ) -> _MetricPath:
        table = cls.TABLE
        present = and_(table.c.run_id == schema.runs.c.id, table.c.key == metric)
        with_value = base.join(table, present).where(table.c.value.is_not(None), *implied)
        without_value = base.where(
            ~select(table.c.run_id).where(present, table.c.value.is_not(None)).exists()
        )
        descending, rest = keys[1].descending, keys[2:]
        in_missing = last is not None and bool(last[0])
        ordered_values = (
            select(table.c.value)
            .where(table.c.key == metric, table.c.value.is_not(None), *implied)
            .order_by(table.c.value.desc() if descending else table.c.value.asc())
        )
        if last is not None and not in_missing:
            at_or_after = table.c.value <= last[1] if descending else table.c.value >= last[1]
            ordered_values = ordered_values.where(at_or_after)
        by_value = [OrderKey(table.c.value, descending), *rest]
        after_missing = last[2:] if last is not None and in_missing else None
        return cls(
            with_value=_ordered(with_value, [false()], by_value, last and last[1:]),
            without_value=_ordered(without_value, [true(), null()], rest, after_missing),
            value=table.c.value,
            ordered_values=ordered_values,
            descending=descending,
            skip_values=in_missing,
        )

    def rows(self, connection: Connection, limit: int) -> list[Row[Any]] | None:
        found: list[Row[Any]] = []
        if not self.skip_values:
            walked = self._rows_with_value(connection, limit)
            if walked is None:
                return None
            found = walked
        if len(found) < limit:
            found += connection.execute(self.without_value.limit(limit - len(found))).all()
        return found

    def _rows_with_value(self, connection: Connection, limit: int) -> list[Row[Any]] | None:
        for multiple in PROBES:
            nth = self.ordered_values.offset(multiple * limit - 1).limit(1)
            bound = connection.execute(nth).scalar()
            query = self.with_value
            if bound is not None:
                query = query.where(self.value >= bound if self.descending else self.value <= bound)
            found = list(connection.execute(query.limit(limit)).all())
            if bound is None or len(found) == limit:
                return found
        return None


def _filtered(filter_text: str | None, experiments: Sequence[str] | None) -> Select[Any]:
    runs, contexts = schema.runs, schema.contexts
    query = select(runs.c.id).join(contexts, contexts.c.id == runs.c.experiment_id)
    condition = compile_filter(filter_text)
    if condition is not None:
        query = query.where(condition)
    if experiments is not None:
        for name in experiments:
            check_text(name, "experiment name", InvalidInputError)
        query = (
            query.where(contexts.c.name.in_(list(experiments)))
            if experiments
            else query.where(false())
        )
    return query


def _ordered(
    query: Select[Any], fixed: list[Any], keys: list[OrderKey], last: list[Any] | None
) -> Select[Any]:
    """``query`` ordered by ``keys``, after ``last`` (their values) when given; ``fixed``
    are key values every row of this query shares (reported, not sorted on)."""
    # Labelled, so ORDER BY names the selected column and each key subquery runs once per row.
    columns = [key.expression.label(f"key_{i}") for i, key in enumerate(keys)]
    query = query.add_columns(*fixed, *columns)
    if last is not None:
        query = query.where(after_row(keys, last))
    return query.order_by(
        *(
            column.desc() if key.descending else column.asc()
            for key, column in zip(keys, columns, strict=True)
        )
    )


def _leading_metric(order_by: Sequence[str] | None) -> str | None:
    """The metric key the search orders by first, if it orders by a metric first."""
    if not order_by:
        return None
    entity, dot, key = order_by[0].strip().split()[0].partition(".")
    return key.strip('`"') if dot and entity in ("metrics", "metric") else None
