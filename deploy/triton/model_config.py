"""config.pbtxt: written as protobuf text format, checked against the part of Triton's schema dctq uses.

Triton reads each model's `config.pbtxt` as the text form of `inference.ModelConfig`
(triton-inference-server/common, protobuf/model_config.proto). `render_pbtxt` writes a nested dict in
that text format; `parse_config` reads it back through message classes built here from a descriptor
of the fields dctq writes (names, numbers and types as in model_config.proto; no generated code, no
protoc, only the protobuf runtime that `onnx` already depends on). Parsing is strict: an unknown field,
a misspelt enum value or a value of the wrong type raises ExportError, as Triton would refuse to load
the model.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from typing import Any

from ...common.errors import BackendUnavailable, ExportError

_PACKAGE = "inference"
_FILE = "dctq_triton_model_config.proto"  # a private file name in a private pool: no clash with tritonclient

DATA_TYPES = (
    "TYPE_INVALID TYPE_BOOL TYPE_UINT8 TYPE_UINT16 TYPE_UINT32 TYPE_UINT64 TYPE_INT8 TYPE_INT16 "
    "TYPE_INT32 TYPE_INT64 TYPE_FP16 TYPE_FP32 TYPE_FP64 TYPE_STRING TYPE_BF16"
).split()
"""inference.DataType, in enum order (TYPE_INVALID = 0 ... TYPE_BF16 = 14)."""

NUMPY_TO_TRITON = {
    "float32": "TYPE_FP32",
    "float16": "TYPE_FP16",
    "int64": "TYPE_INT64",
    "bytes": "TYPE_STRING",
}
"""dctq's dtype names (TensorSpec.dtype) -> Triton data types."""

# message -> [(field, number, type, repeated)]; a type is a scalar name, ".Message", "enum:Enum" or
# "map:<value type>" (map<string, value>). Only what dctq writes, and the fields Triton users most often
# add by hand (instance counts, GPUs, preferred batch sizes), so that an edited file still checks.
_ENUMS: dict[str, Sequence[str]] = {
    "DataType": DATA_TYPES,
    "ModelInput.Format": ("FORMAT_NONE", "FORMAT_NHWC", "FORMAT_NCHW"),
    "ModelInstanceGroup.Kind": ("KIND_AUTO", "KIND_GPU", "KIND_CPU", "KIND_MODEL"),
}
_MESSAGES: dict[str, Sequence[tuple[str, int, str, bool]]] = {
    "ModelTensorReshape": [("shape", 1, "int64", True)],
    "ModelInput": [
        ("name", 1, "string", False),
        ("data_type", 2, "enum:DataType", False),
        ("format", 3, "enum:ModelInput.Format", False),
        ("dims", 4, "int64", True),
        ("reshape", 5, ".ModelTensorReshape", False),
        ("is_shape_tensor", 6, "bool", False),
        ("allow_ragged_batch", 7, "bool", False),
        ("optional", 8, "bool", False),
    ],
    "ModelOutput": [
        ("name", 1, "string", False),
        ("data_type", 2, "enum:DataType", False),
        ("dims", 3, "int64", True),
        ("label_filename", 4, "string", False),
        ("reshape", 5, ".ModelTensorReshape", False),
        ("is_shape_tensor", 6, "bool", False),
    ],
    "ModelInstanceGroup": [
        ("name", 1, "string", False),
        ("count", 2, "int32", False),
        ("gpus", 3, "int32", True),
        ("kind", 4, "enum:ModelInstanceGroup.Kind", False),
        ("profile", 5, "string", True),
    ],
    "ModelDynamicBatching": [
        ("preferred_batch_size", 1, "int32", True),
        ("max_queue_delay_microseconds", 2, "uint64", False),
        ("preserve_ordering", 3, "bool", False),
    ],
    "ModelEnsembling.Step": [
        ("model_name", 1, "string", False),
        ("model_version", 2, "int64", False),
        ("input_map", 3, "map:string", True),
        ("output_map", 4, "map:string", True),
    ],
    "ModelEnsembling": [("step", 1, ".ModelEnsembling.Step", True)],
    "ModelParameter": [("string_value", 1, "string", False)],
    "ModelConfig": [
        ("name", 1, "string", False),
        ("platform", 2, "string", False),
        ("max_batch_size", 4, "int32", False),
        ("input", 5, ".ModelInput", True),
        ("output", 6, ".ModelOutput", True),
        ("instance_group", 7, ".ModelInstanceGroup", True),
        ("default_model_filename", 8, "string", False),
        ("dynamic_batching", 11, ".ModelDynamicBatching", False),  # oneof scheduling_choice
        ("parameters", 14, "map:.ModelParameter", True),
        ("ensemble_scheduling", 15, ".ModelEnsembling", False),  # oneof scheduling_choice
        ("backend", 17, "string", False),
    ],
}
_SCHEDULING = ("dynamic_batching", "ensemble_scheduling")


def _protobuf() -> Any:
    try:
        from google.protobuf import descriptor_pb2, descriptor_pool, json_format, text_format
    except ImportError:
        raise BackendUnavailable(
            "checking Triton configs needs protobuf: pip install protobuf (or pip install 'dctq[onnx]')"
        ) from None
    return descriptor_pb2, descriptor_pool, json_format, text_format


def _add_message(file: Any, descriptor_pb2: Any, name: str) -> Any:
    """The DescriptorProto for `name` ("A" or "A.B"), created inside its parent when nested."""
    parent, _, leaf = name.rpartition(".")
    holder = _add_message(file, descriptor_pb2, parent).nested_type if parent else file.message_type
    for msg in holder:
        if msg.name == leaf:
            return msg
    msg = holder.add()
    msg.name = leaf
    return msg


@functools.cache
def _classes() -> dict[str, Any]:
    descriptor_pb2, descriptor_pool, _, _ = _protobuf()
    F = descriptor_pb2.FieldDescriptorProto
    scalars = {
        "string": F.TYPE_STRING,
        "bool": F.TYPE_BOOL,
        "int32": F.TYPE_INT32,
        "int64": F.TYPE_INT64,
        "uint64": F.TYPE_UINT64,
    }
    file = descriptor_pb2.FileDescriptorProto(name=_FILE, package=_PACKAGE, syntax="proto3")
    for name in _MESSAGES:
        _add_message(file, descriptor_pb2, name)
    for enum_name, values in _ENUMS.items():
        parent, _, leaf = enum_name.rpartition(".")
        holder = _add_message(file, descriptor_pb2, parent).enum_type if parent else file.enum_type
        enum = holder.add(name=leaf)
        for number, value in enumerate(values):
            enum.value.add(name=value, number=number)

    def set_type(field: Any, kind: str) -> None:
        if kind in scalars:
            field.type = scalars[kind]
        elif kind.startswith("enum:"):
            field.type, field.type_name = F.TYPE_ENUM, f".{_PACKAGE}.{kind[5:]}"
        else:
            field.type, field.type_name = F.TYPE_MESSAGE, f".{_PACKAGE}{kind}"

    for name, fields in _MESSAGES.items():
        msg = _add_message(file, descriptor_pb2, name)
        if name == "ModelConfig":
            msg.oneof_decl.add(name="scheduling_choice")
        for field_name, number, kind, repeated in fields:
            field = msg.field.add(name=field_name, number=number)
            field.label = F.LABEL_REPEATED if repeated else F.LABEL_OPTIONAL
            if kind.startswith("map:"):  # map<string, V>: a nested XxxEntry message with map_entry set
                entry = msg.nested_type.add(name="".join(p.title() for p in field_name.split("_")) + "Entry")
                entry.options.map_entry = True
                entry.field.add(name="key", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
                set_type(entry.field.add(name="value", number=2, label=F.LABEL_OPTIONAL), kind[4:])
                field.type, field.type_name = F.TYPE_MESSAGE, f".{_PACKAGE}.{name}.{entry.name}"
            else:
                set_type(field, kind)
            if name == "ModelConfig" and field_name in _SCHEDULING:
                field.oneof_index = 0
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    try:
        from google.protobuf.message_factory import GetMessageClass
    except ImportError:  # protobuf < 4.21
        from google.protobuf.message_factory import MessageFactory

        factory = MessageFactory(pool)

        def GetMessageClass(descriptor: Any) -> Any:
            return factory.GetPrototype(descriptor)

    return {n: GetMessageClass(pool.FindMessageTypeByName(f"{_PACKAGE}.{n}")) for n in _MESSAGES}


def parse_config(text: str, source: str = "config.pbtxt") -> Any:
    """`text` parsed as an `inference.ModelConfig` message (strict). Raises ExportError naming `source`."""
    _, _, _, text_format = _protobuf()
    message = _classes()["ModelConfig"]()
    try:
        text_format.Parse(text, message)
    except text_format.ParseError as exc:
        raise ExportError(f"{source} is not a valid Triton model configuration: {exc}") from None
    return message


def config_json(message: Any) -> str:
    """The JSON string Triton hands a Python-backend model as `args["model_config"]` (proto field
    names; int64 values as strings, as protobuf's JSON mapping writes them)."""
    _, _, json_format, _ = _protobuf()
    return json_format.MessageToJson(message, preserving_proto_field_name=True)


def config_dict(message: Any) -> dict[str, Any]:
    """`config_json` as a dict."""
    return json.loads(config_json(message))


class Ident(str):
    """An enum value, written bare in the text format (TYPE_FP32, KIND_CPU)."""

    __slots__ = ()


def _scalar(value: Any) -> str:
    if isinstance(value, Ident):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    raise ExportError(f"cannot write {value!r} ({type(value).__name__}) in a Triton config")


def _lines(fields: Mapping[str, Any], indent: int) -> list[str]:
    pad = "  " * indent
    out: list[str] = []
    for key, value in fields.items():
        if value is None:
            continue
        if isinstance(value, Mapping):
            out += [f"{pad}{key} {{", *_lines(value, indent + 1), f"{pad}}}"]
        elif isinstance(value, list | tuple) and value and isinstance(value[0], Mapping):
            for item in value:  # repeated messages (and map entries) as one block each
                out += [f"{pad}{key} {{", *_lines(item, indent + 1), f"{pad}}}"]
        elif isinstance(value, list | tuple):
            out.append(f"{pad}{key}: [ {', '.join(_scalar(v) for v in value)} ]")
        else:
            out.append(f"{pad}{key}: {_scalar(value)}")
    return out


def render_pbtxt(config: Mapping[str, Any]) -> str:
    """A nested dict as protobuf text: dicts are messages, lists of dicts repeated messages (or map
    entries written as {"key": k, "value": v}), lists of scalars `[a, b]`, Ident values bare enums,
    None values left out. Keys are written in the dict's order."""
    return "\n".join(_lines(config, 0)) + "\n"
