"""Describing lineage things that are not files: data sources and feature groups."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class DataSource:
    """Raw data recorded by reference (a table, a bucket prefix, a CSV on S3).

    ``resolve``: ask the object store for the size and ETag (a network call) so they join the
    digest; off by default, so describing a source never waits on the network."""

    uri: str
    name: str | None = None
    properties: dict[str, Any] = field(default_factory=dict)
    resolve: bool = False


@dataclass(frozen=True)
class FeatureGroup:
    """A named set of features in a feature store; its digest covers name and features."""

    name: str
    features: Sequence[str]
    description: str = ""
    properties: dict[str, Any] = field(default_factory=dict)


def data_source(
    uri: str, name: str | None = None, *, resolve: bool = False, **properties: Any
) -> DataSource:
    return DataSource(uri, name, properties, resolve)


def feature_group(
    name: str, features: Sequence[str], description: str = "", **properties: Any
) -> FeatureGroup:
    return FeatureGroup(name, tuple(features), description, properties)
