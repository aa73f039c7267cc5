"""Reading a ``torch.distributed.checkpoint`` folder without running code from it.

DCP unpickles its ``.metadata`` with plain ``pickle`` and its non-tensor items with
``torch.load(weights_only=False)``: a crafted folder could run code on every rank. Here the
metadata unpickler accepts only DCP's own record classes, torch sizes, dtypes and paths, and the
non-tensor items load with ``weights_only=True`` (numbers, strings, lists, dicts, tensors), as
``checkpoint.pt`` does. Tensors were already read with ``weights_only=True`` by DCP itself.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

import torch
from torch.distributed.checkpoint import DefaultLoadPlanner, FileSystemReader
from torch.distributed.checkpoint._traverse import set_element
from torch.distributed.checkpoint.metadata import Metadata, StorageMeta
from torch.distributed.checkpoint.planner import ReadItem

from .errors import LaunchError

# What a DCP .metadata may name (torch 2.13 writes these): its records, torch's sizes, paths.
ALLOWED = {
    "torch.distributed.checkpoint.metadata": frozenset({
        "Metadata", "TensorStorageMetadata", "TensorProperties", "ChunkStorageMetadata", "BytesStorageMetadata",
        "MetadataIndex", "StorageMeta", "_MEM_FORMAT_ENCODING"}),
    "torch.distributed.checkpoint.filesystem": frozenset({"_StorageInfo"}),
    "torch.serialization": frozenset({"_get_layout"}),
    "torch": frozenset({"Size"}),
    "pathlib": frozenset({"Path", "PosixPath", "PurePosixPath", "WindowsPath", "PureWindowsPath"}),
    "collections": frozenset({"OrderedDict"}),
}


class _MetadataUnpickler(pickle.Unpickler):
    """Finds only the classes a DCP .metadata holds; anything else is refused, unrun."""

    def find_class(self, module: str, name: str) -> Any:
        if name in ALLOWED.get(module, ()) or (module == "torch" and isinstance(getattr(torch, name, None), torch.dtype)):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not part of a checkpoint's metadata")


class SafeReader(FileSystemReader):
    """A FileSystemReader whose metadata unpickler runs no code."""

    def read_metadata(self, *args: Any, **kwargs: Any) -> Metadata:
        """DCP's metadata, through the restricted unpickler; a refused one is a LaunchError with a hint."""
        path = self._get_metadata_path(kwargs.get("rank"))
        try:
            with self.fs.create_stream(path, "rb") as stream:
                metadata = _MetadataUnpickler(stream).load()
        except (pickle.UnpicklingError, EOFError, AttributeError, ValueError) as exc:
            raise LaunchError(f"checkpoint metadata {path} cannot be loaded safely: {exc}\n  hint: it is corrupt "
                              "or holds more than checkpoint records (nothing in it was run); move its folder away "
                              "to resume from the save before it") from None
        if not isinstance(metadata, Metadata):
            raise LaunchError(f"checkpoint metadata {path} holds a {type(metadata).__name__}, not DCP's Metadata")
        if getattr(metadata, "storage_meta", None) is None:
            metadata.storage_meta = StorageMeta()
        metadata.storage_meta.load_id = self.load_id
        return metadata


class SafeLoadPlanner(DefaultLoadPlanner):
    """DCP's default load planner, with non-tensor items read as plain data (``weights_only=True``)."""

    def load_bytes(self, read_item: ReadItem, value: io.BytesIO) -> None:
        """Read a non-tensor item (a learning rate, a step count) as data only; DCP's default unpickles anything."""
        loaded = torch.load(value, weights_only=True)
        if self.flatten_state_dict:
            set_element(self.original_state_dict, self.mappings[read_item.dest_index.fqn], loaded)
        else:
            self.state_dict[read_item.dest_index.fqn] = loaded
