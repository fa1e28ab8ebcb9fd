"""Adapters that hand UniConvNet to other frameworks, one package per framework, each in the same shape:
``models`` (builders), ``task`` (training and evaluation on :mod:`uniconvnet.engine`, what its subcommand calls),
and more modules where the framework needs them. Each imports its framework lazily or says which extra brings it.
docs/layout.md ("Adding a framework") has the template.
"""
