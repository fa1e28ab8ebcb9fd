"""What a model costs and how it compares: parameters and MACs, latency in every runtime, training time and memory,
and the accuracy-latency frontier of UniConvNet against timm peers of published top-1.

* :mod:`.complexity`: parameters and MACs, counted on the meta device (``uniconvnet models``);
* :mod:`.spec`, :mod:`.memory`: what is measured (a model and how it runs) and memory (the one peak-RSS helper);
* :mod:`.benchmark`: models side by side, interleaved (``uniconvnet bench``);
* :mod:`.runtimes`: eager fp32 and bf16, onnxruntime, OpenVINO default and f32, and how each model gets there;
* :mod:`.peers`: published ImageNet-1k top-1 of the variants and of timm peers, each with its source;
* :mod:`.frontier`: each variant against the fastest peer at least as accurate (``uniconvnet bench --frontier``);
* :mod:`.plots`: the frontier's figures (matplotlib, imported when drawing).

The ``benchmarks/`` folder of the repository holds the scripts that run these tools with the README's settings.
"""
from .benchmark import format_benchmark, format_profile, profile_inference, run_benchmark, save_report
from .complexity import (ModelComplexity, count_parameters, format_variants_table, measure_complexity,
                         variants_table)
from .memory import peak_rss_mb, reset_peak_rss, rss_mb, train_peak_memory_mb
from .frontier import format_frontier, frontier_rows, load_frontier, run_frontier
from .peers import DEFAULT_PEERS, DEFAULT_VARIANTS, PEERS, UNICONVNET, Published, resolve_peers, resolve_variants
from .plots import plot_frontier
from .runtimes import RUNTIMES
from .spec import ModelSpec

__all__ = ['DEFAULT_PEERS', 'DEFAULT_VARIANTS', 'ModelComplexity', 'ModelSpec', 'PEERS', 'Published', 'RUNTIMES',
           'UNICONVNET', 'count_parameters', 'format_benchmark', 'format_frontier', 'format_profile',
           'format_variants_table', 'frontier_rows', 'load_frontier', 'measure_complexity', 'peak_rss_mb',
           'plot_frontier', 'profile_inference', 'reset_peak_rss', 'resolve_peers', 'resolve_variants', 'rss_mb',
           'run_benchmark', 'run_frontier', 'save_report', 'train_peak_memory_mb', 'variants_table']
