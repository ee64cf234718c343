"""Export hf_ddlm models as self-contained Hugging Face Hub folders (remote code that needs only
transformers), with a model card; see :func:`export_model` and :func:`push_to_hub`."""

from .flatten import FlattenError, flatten
from .hub import add_remote_code, check_exportable, export_model, push_to_hub, remote_code_files, upload_folder
from .model_card import METHODS, is_generated_card, render_model_card

__all__ = [
    "METHODS",
    "FlattenError",
    "add_remote_code",
    "check_exportable",
    "export_model",
    "flatten",
    "push_to_hub",
    "remote_code_files",
    "is_generated_card",
    "render_model_card",
    "upload_folder",
]
