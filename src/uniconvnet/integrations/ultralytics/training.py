"""Moved to :mod:`uniconvnet.integrations.ultralytics.task` (training and evaluation, the integration's task)."""
from ..._deprecation import moved_module

moved_module(__name__, 'uniconvnet.integrations.ultralytics.task')
