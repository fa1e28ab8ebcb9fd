"""Thin adapters that hand UniConvNet to other frameworks. Each module imports its framework lazily."""
