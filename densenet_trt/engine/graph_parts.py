"""The parts of a network ``compare`` reads (stem, dense blocks, transitions, logits), found in
an ONNX graph: the tensor each part's module writes last, which a runtime that exposes
intermediate outputs (``Runtime.exposed``) adds as an output of its graph."""

from __future__ import annotations

import ast

LOGITS = "logits"


def exposing(backend: str, stages: list[tuple[str, str]]) -> str:
    """``compare``'s progress line as a runtime starts exposing the outputs of ``stages``' parts."""
    return f"exposing the outputs of {len(stages) - 1} parts of the {backend} graph"


def _scope(node) -> str:
    """The module a node of an ONNX graph came from: the dynamo exporter's name_scopes
    metadata, else the TorchScript exporter's node name (/features/denseblock1/Concat)."""
    for prop in node.metadata_props:
        if prop.key == "pkg.torch.onnx.name_scopes":
            scopes = ast.literal_eval(prop.value)
            return scopes[-2] if len(scopes) > 1 else ""
    return ".".join(node.name.strip("/").split("/")[:-1])


def stage_tensors(proto, names: list[tuple[str, str]]) -> dict[str, str]:
    """Per stage, the ONNX tensor its module's last node writes; a stage not found is left out."""
    tensors = {}
    for stage, module in names:
        if module:
            last = [n for n in proto.graph.node if _scope(n) == module or _scope(n).startswith(module + ".")]
            if last and last[-1].output:
                tensors[stage] = last[-1].output[0]
    return tensors
