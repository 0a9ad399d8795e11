"""Editing methods, one file per family. Register a new method with one line in `METHODS` below."""

from bench.registry import Registry

METHODS = Registry("method")
METHODS.register("source", "methods.source:SourceBaseline",
                 "unedited source images: the floor every method is compared against")
