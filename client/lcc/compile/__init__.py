"""The compile pipeline: a bundle becomes a BPF object (see :mod:`.pipeline`)."""

from .pipeline import BACKENDS, Artifact, artifact_key, build, choose_backend

__all__ = ["BACKENDS", "Artifact", "artifact_key", "build", "choose_backend"]
