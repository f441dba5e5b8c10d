"""The Hugging Face Hub: load a model folder by its Hub id, push a saved folder to the Hub.

Nothing here runs unless asked: a name that is an existing local path is always the local folder, and
newstagger never downloads anything by itself. A Hub id (``owner/name``) is fetched with
``huggingface_hub.snapshot_download``, and only the files a newstagger folder is made of (safetensors
weights, JSON configs, tokenizer files, the card, the ONNX export): never a pickle, never code. With
``HF_HUB_OFFLINE=1`` only a copy already in the local Hub cache is used; without one the error says so.
"""

from __future__ import annotations

import re
from pathlib import Path

from .model_folder import read_model_folder

# the files of a newstagger model folder (newstagger.training.save_model), nothing else
FOLDER_FILES = ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                "special_tokens_map.json", "vocab.txt", "README.md", "eval_report.json", "training_config.json",
                "onnx/*.onnx", "onnx/*.json", "onnx/*.data"]
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class HubError(ValueError):
    """A Hub id that cannot be fetched, or a push that cannot be made; the message says why and what to do."""


def is_hub_id(name: str | Path) -> bool:
    """``owner/name`` that is not an existing local path."""
    text = str(name)
    return not Path(text).exists() and bool(_HUB_ID.match(text)) and ".." not in text


def _reason(e: Exception) -> str:
    """huggingface_hub's error in one line: its type and the first line of its message."""
    first = str(e).splitlines()[0] if str(e) else ""
    return f"{type(e).__name__}: {first}"


def _hub():
    try:
        import huggingface_hub
        import huggingface_hub.constants  # noqa: F401 (a submodule, not a lazy attribute)
    except ImportError:
        raise HubError("the Hugging Face Hub needs huggingface_hub: pip install huggingface_hub") from None
    return huggingface_hub


def resolve_model(name_or_path: str | Path, revision: str | None = None) -> Path:
    """The local folder of a model: ``name_or_path`` itself when it exists (or is not a Hub id), else the
    Hub snapshot of ``owner/name`` at ``revision``. Raises HubError when the Hub id cannot be fetched
    (offline with no cached copy, no such repository, no network)."""
    if not is_hub_id(name_or_path):
        return Path(name_or_path)
    hub = _hub()
    repo_id = str(name_or_path)
    offline = hub.constants.HF_HUB_OFFLINE
    try:
        return Path(hub.snapshot_download(repo_id, revision=revision, allow_patterns=FOLDER_FILES,
                                          local_files_only=offline))
    except Exception as e:  # huggingface_hub's own errors: offline miss, 401/404, connection
        if offline:
            # Most often a mistyped local path (runs/nope reads as a Hub id too): say that first.
            raise HubError(f"{repo_id}: no such model folder; read as a Hugging Face Hub id, HF_HUB_OFFLINE=1 "
                           "forbids fetching it from the Hub (no copy in the local Hub cache): unset "
                           f"HF_HUB_OFFLINE, or fetch it where the Hub is reachable (hf download {repo_id} "
                           "--local-dir DIR)") from None
        raise HubError(f"{repo_id}: no such model folder, and the Hugging Face Hub did not give it ({_reason(e)})"
                       ) from None


def push_to_hub(folder: str | Path, repo_id: str, *, private: bool = False, revision: str | None = None,
                commit_message: str | None = None) -> str:
    """Upload a saved model folder (checked first, like any folder newstagger loads) to the Hub repository
    ``repo_id``, created when missing. Uses huggingface_hub's token (``hf auth login`` or ``HF_TOKEN``).
    Returns the commit URL. Raises ModelFolderError for a folder that cannot be used, HubError when the Hub
    cannot be reached or refuses (HF_HUB_OFFLINE=1 is refused before anything is sent)."""
    folder = Path(folder)
    read_model_folder(folder)
    if not _HUB_ID.match(repo_id):
        raise HubError(f"--push-to-hub {repo_id!r}: expected a Hub repository id, owner/name")
    hub = _hub()
    if hub.constants.HF_HUB_OFFLINE:
        raise HubError(f"--push-to-hub {repo_id}: HF_HUB_OFFLINE=1 forbids reaching the Hugging Face Hub; "
                       "unset it to push")
    api = hub.HfApi()
    try:
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        info = api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="model", revision=revision,
                                 allow_patterns=FOLDER_FILES,
                                 commit_message=commit_message or f"Upload newstagger model from {folder.name}")
    except Exception as e:
        raise HubError(f"--push-to-hub {repo_id}: the Hugging Face Hub refused or could not be reached "
                       f"({_reason(e)})") from None
    return str(getattr(info, "commit_url", info))


__all__ = ["FOLDER_FILES", "HubError", "is_hub_id", "push_to_hub", "resolve_model"]
