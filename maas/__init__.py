"""Entrypoints: the `maas` CLI, the embedded broker and the embedded stack."""
