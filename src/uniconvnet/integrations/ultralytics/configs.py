"""The shipped model YAMLs (package data in ``cfg/``) and the lookup of a YAML name, path or ultralytics name."""
import re
from pathlib import Path
from typing import List, Union

from ultralytics.utils.checks import check_yaml

__all__ = ['MODEL_YAML_DIR', 'list_model_yamls', 'model_yaml']

MODEL_YAML_DIR = Path(__file__).resolve().parent / 'cfg'


def list_model_yamls() -> List[str]:
    """Names of the shipped model YAMLs at their default (n) scale, e.g. ``yolo11n-rfa-neck.yaml``."""
    return sorted(p.name.replace('yolo11-', 'yolo11n-', 1) for p in MODEL_YAML_DIR.glob('yolo11-*.yaml'))


def _unscaled(name: str) -> str:
    """ultralytics' rule: ``yolo11n-x.yaml`` is ``yolo11-x.yaml`` at scale n."""
    return re.sub(r'(\d+)([nslmx])(.+)?$', r'\1\3', name)


def model_yaml(name: Union[str, Path]) -> str:
    """What to give ``YOLO(...)`` for a shipped YAML name (any scale: ``yolo11s-rfa-neck.yaml``), a path, or
    one of ultralytics' own names (``yolo11n.yaml``).

    As with ultralytics' own ``yolo11n.yaml``, the scale letter in the name picks the row of the YAML's
    ``scales`` table, and the file on disk carries no letter (``yolo11-rfa-neck.yaml``).
    """
    path = Path(name)
    if path.is_file():
        return str(path)
    if path.parent != Path('.'):
        if Path(_unscaled(str(path))).is_file():
            return str(path)  # ultralytics resolves the scale letter to the file without it
    elif (MODEL_YAML_DIR / _unscaled(path.name)).is_file():
        return str(MODEL_YAML_DIR / path.name)
    elif path.suffix == '.yaml' and check_yaml(_unscaled(path.name), hard=False):
        return path.name  # one of ultralytics' own, e.g. yolo11n.yaml
    raise FileNotFoundError(f'model YAML {name!r} not found: give a path, one of ultralytics\' own names '
                            f'(yolo11n.yaml...) or one of ours: {", ".join(list_model_yamls())} (any scale letter)')
