"""lightkube's class for PodEviction objects (and their ``.Status`` subresource)."""

from __future__ import annotations

from typing import Any

from lightkube.generic_resource import create_namespaced_resource

from . import crd

PodEviction: Any = create_namespaced_resource(crd.GROUP, crd.VERSION, crd.KIND, crd.PLURAL)
