"""Export hf_ddlm models as self-contained Hugging Face Hub folders (remote code that needs only
transformers), with a model card; see :func:`export_model` and :func:`push_to_hub`."""

from .atomic import atomic_path, replace_folder, write_file
from .flatten import PACKAGE, FlatFile, FlattenError, flatten
from .hub import (
    AUTO_CLASSES,
    add_remote_code,
    check_exportable,
    export_model,
    push_to_hub,
    remote_code_files,
    upload_folder,
)
from .model_card import CARD_TAGS, METHODS, is_generated_card, method_info, python_string, render_model_card

__all__ = [
    "AUTO_CLASSES",
    "CARD_TAGS",
    "METHODS",
    "PACKAGE",
    "FlatFile",
    "FlattenError",
    "add_remote_code",
    "atomic_path",
    "check_exportable",
    "export_model",
    "flatten",
    "is_generated_card",
    "method_info",
    "push_to_hub",
    "python_string",
    "remote_code_files",
    "render_model_card",
    "replace_folder",
    "upload_folder",
    "write_file",
]
