"""metrics.json, typed: how a model's weights were made and how they score.

Three writers make one: the trainer (a sweep and its selection), the CIFAR-10 backbone's fixed recipe,
and the import of the paper authors' checkpoints. They share a core that every reader relies on
(`model_id`, `task`, `metric`, `higher_is_better`, and the shipped run's figures with their spread over
seeds); what belongs to one writer (the sweep's runs, the recipe's log) is kept as written. A Record
is read-only and reads like the JSON mapping it came from, so code that needs a writer's own field
indexes it by name.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from .. import provenance
from ..errors import HanzooError

# The core fields and their JSON types; a record may lack them (a folder that was never trained), but
# never holds them with another type.
CORE: dict[str, type | tuple[type, ...]] = {
    "model_id": str,
    "task": str,
    "metric": str,
    "higher_is_better": bool,
    "selected": dict,
    "seeds_at_selected": dict,
    "selection_rule": str,
    "wall_seconds": (int, float),
}


class Record(Mapping[str, Any]):
    def __init__(self, data: Mapping[str, Any] | None = None, where: str = "metrics.json") -> None:
        if data is not None and not isinstance(data, Mapping):
            raise HanzooError(f"{where} must hold a JSON object, got {type(data).__name__}")
        self._data = dict(data or {})
        for key, kind in CORE.items():
            value = self._data.get(key)
            if value is not None and not _fits(value, kind):
                raise HanzooError(f"{where}: {key} must be {_type_name(kind)}, got {type(value).__name__}")
        for part in ("train", "test"):
            figures = self.scores.get(part)
            if figures is not None and (
                not isinstance(figures, dict) or not all(_is_number(v) for v in figures.values())
            ):
                raise HanzooError(f"{where}: the {part} figures must map metric names to numbers")

    @classmethod
    def build(
        cls,
        *,
        model_id: str,
        task: str,
        metric: str,
        higher_is_better: bool,
        selected: dict,
        seeds_at_selected: dict,
        selection_rule: str,
        wall_seconds: float,
        **details: Any,
    ) -> Record:
        """A new record, with what it was made with (package versions, git commit, machine) appended."""
        core = {
            "model_id": model_id,
            "task": task,
            "metric": metric,
            "higher_is_better": higher_is_better,
            "selected": selected,
            "seeds_at_selected": seeds_at_selected,
            "selection_rule": selection_rule,
            "wall_seconds": wall_seconds,
        }
        made_with = {
            "versions": provenance.versions(),
            "git_commit": provenance.git_commit(),
            "machine": provenance.machine_line(),
        }
        return cls(core | details | made_with, where=f"the record of {model_id}")

    # the Mapping protocol: a Record reads like the JSON it came from
    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"Record({self.get('model_id')!r}, {self.get('metric')!r})"

    def to_json(self) -> str:
        return json.dumps(self._data, indent=2) + "\n"

    @property
    def metric(self) -> str:
        return self._data["metric"]

    @property
    def trained(self) -> bool:
        """Whether hanzoo trained these weights and recorded the selected run (an imported checkpoint
        has an evaluation instead; a reference config's folder has nothing)."""
        return bool(self._data.get("selected"))

    @property
    def scores(self) -> dict:
        """The shipped weights' figures per part (train, test, ...): the selected run's, or an imported
        checkpoint's evaluation."""
        return self._data.get("selected") or self._data.get("evaluation") or {}

    def value(self, part: str = "test", metric: str | None = None) -> float:
        """The shipped weights' headline metric (or `metric`) on a part of the data."""
        return float(self.scores[part][metric or self.metric])

    def spread(self, part: str = "test") -> dict:
        """The headline metric over the seeds the shipped run was picked from: values, mean, std."""
        return self._data["seeds_at_selected"][part]


def read(path: Path) -> Record:
    """The record in a metrics.json file; an empty one if there is no such file."""
    path = Path(path)
    if not path.is_file():
        return Record()
    try:
        return Record(json.loads(path.read_text()), where=str(path))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise HanzooError(f"{path} is not valid JSON: {e}") from None
    except OSError as e:
        raise HanzooError(f"cannot read {path}: {e.strerror}") from None


def _fits(value: Any, kind: type | tuple[type, ...]) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    return isinstance(value, kind) and not isinstance(value, bool)  # JSON's true is not a number


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _type_name(kind: type | tuple[type, ...]) -> str:
    if isinstance(kind, tuple):
        return "a number"
    return {str: "a string", bool: "true or false"}.get(kind, "an object")
