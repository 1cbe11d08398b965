"""Any file or directory as a model: stored as-is, loaded back as a path."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from clew.hookspecs import hookimpl

CONTENT = "content"


class FilesFlavor:
    name = "files"
    library = None
    executes_code_on_load = False

    def can_save(self, model: Any) -> bool:
        return isinstance(model, str | Path) and Path(model).exists()

    def save(self, model: Any, directory: Path, example: Any = None) -> dict[str, Any]:
        source = Path(model)
        if source.is_dir():
            shutil.copytree(source, directory / CONTENT)
            return {"kind": "directory", "original_name": source.name}
        (directory / CONTENT).mkdir()
        shutil.copy2(source, directory / CONTENT / source.name)
        return {"kind": "file", "original_name": source.name}

    def load(self, directory: Path, description: dict[str, Any]) -> Any:
        content = directory / CONTENT
        if description.get("kind") == "file":
            return content / description["original_name"]
        return content


@hookimpl
def clew_flavors() -> list[Any]:
    return [FilesFlavor()]
