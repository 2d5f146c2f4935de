"""Where the official kaggle client finds credentials, read the same way by every part of the toolkit.

One lookup, used by the builder CLI (the owner of a kernel, ``kaggle_username``) and by the Kaggle
operations (``check_credentials`` before any request), so credentials that the client accepts pass
both. The rules mirror kaggle 2.2.5 / kagglesdk 0.1.38:

- ``KaggleApi.config_dir`` (kaggle/api/kaggle_api_extended.py, class body near line 1155):
  ``KAGGLE_CONFIG_DIR``; else ``~/.kaggle``; on Linux, when ``~/.kaggle`` does not exist,
  ``$XDG_CONFIG_HOME/kaggle`` (default ``~/.config/kaggle``). The file is ``kaggle.json``.
- ``KaggleApi.read_config_environment``: every ``KAGGLE_<NAME>`` variable overrides the file's
  ``<name>`` (so ``KAGGLE_USERNAME`` wins over kaggle.json's ``username``).
- ``kagglesdk.kaggle_env.get_access_token_from_env``: ``KAGGLE_API_TOKEN`` (the token, or the
  path of a file holding it), else ``~/.kaggle/access_token`` (or ``access_token.txt``); the
  client asks Kaggle for the user name.

Nothing here imports the client (its import prints a banner and creates the config folder), and
secret values are returned only to be kept out of files, never printed.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Callable, Mapping

PLACEHOLDER_USER = "your-kaggle-username"
CREDENTIALS_HELP = (
    "No Kaggle credentials found. Put your API token in ~/.kaggle/kaggle.json "
    '({"username": "...", "key": "..."}, chmod 600; from kaggle.com > Settings > API > '
    "Create New Token; on Linux ~/.config/kaggle/kaggle.json is read when ~/.kaggle does not "
    "exist), or set KAGGLE_USERNAME and KAGGLE_KEY in the environment "
    "(KAGGLE_CONFIG_DIR moves the kaggle.json folder)."
)

#: After Kaggle answered 401: credentials were found, and refused.
REJECTED_HELP = (
    "Kaggle refused the credentials the client found (a revoked or mistyped key or token, or a "
    "user name that does not go with the key): create a new one at kaggle.com > Settings > API "
    "and replace the old one in kaggle.json, KAGGLE_KEY or KAGGLE_API_TOKEN."
)


class KaggleCredentialsError(RuntimeError):
    """No usable Kaggle credentials (builder CLI exit code 2). The message is fit to print."""


def kaggle_config_dir(env: Mapping[str, str] | None = None, home: Path | None = None) -> Path:
    """The folder the client reads ``kaggle.json`` from (``KaggleApi.config_dir``'s rule)."""
    env = os.environ if env is None else env
    if env.get("KAGGLE_CONFIG_DIR"):
        return Path(env["KAGGLE_CONFIG_DIR"])
    home = Path(os.path.expanduser("~")) if home is None else Path(home)
    legacy = home / ".kaggle"
    if sys.platform.startswith("linux") and not legacy.exists():
        xdg = env.get("XDG_CONFIG_HOME") or str(home / ".config")
        return Path(xdg) / "kaggle"
    return legacy


def kaggle_json_path(env: Mapping[str, str] | None = None, home: Path | None = None) -> Path:
    return kaggle_config_dir(env, home) / "kaggle.json"


def kaggle_username(env: Mapping[str, str] | None = None, home: Path | None = None) -> str:
    """The Kaggle owner: ``KAGGLE_USERNAME``, else kaggle.json's ``username``, else the placeholder
    (which every action that talks to Kaggle refuses). The key is never looked at."""
    env = os.environ if env is None else env
    if env.get("KAGGLE_USERNAME"):
        return env["KAGGLE_USERNAME"]
    try:
        data = json.loads(kaggle_json_path(env, home).read_text(encoding="utf-8"))
        username = data.get("username")
    except (OSError, ValueError, AttributeError):
        return PLACEHOLDER_USER
    return username if isinstance(username, str) and username else PLACEHOLDER_USER


def _token_from_env(home: Path) -> str | None:
    """The access token the client would use (kagglesdk
    ``get_access_token_from_env``): ``KAGGLE_API_TOKEN`` (a token, or the path of a file holding
    one), else ``~/.kaggle/access_token`` or ``access_token.txt``."""
    token = os.environ.get("KAGGLE_API_TOKEN")
    if token:
        if not Path(token).exists():
            return token
        files = [Path(token)]  # the client reads this file and looks no further
    else:
        files = [home / ".kaggle" / "access_token", home / ".kaggle" / "access_token.txt"]
    for token_file in files:
        if not token_file.is_file():
            continue
        try:
            file_token = token_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise KaggleCredentialsError(f"{token_file}: cannot read ({exc}). {CREDENTIALS_HELP}") from exc
        if file_token:
            return file_token
    return None


def check_credentials(warn: Callable[[str], None] | None = None) -> list[str]:
    """Make sure the client will find credentials; return the secret strings (never printed).

    Sources, as the client reads them: an access token (KAGGLE_API_TOKEN, ~/.kaggle/access_token),
    or a user name and key from kaggle.json (see :func:`kaggle_config_dir`) with each
    ``KAGGLE_<NAME>`` variable overriding the file's ``<name>`` (``read_config_environment``: so
    KAGGLE_USERNAME with the key from the file is enough). Warns when kaggle.json is readable by
    other users. Raises ``KaggleCredentialsError`` otherwise.
    """
    warn = warn or (lambda message: print(message, file=sys.stderr))
    secrets: list[str] = []
    config: dict = {}
    file_error: Exception | None = None
    path = kaggle_json_path()
    if path.is_file():
        mode = path.stat().st_mode
        if os.name != "nt" and mode & 0o077:
            warn(f"warning: {path} is readable by other users (mode {mode & 0o777:o}); "
                 f"run: chmod 600 {path}")
        try:
            data = json.loads(path.read_text(encoding="utf-8") or "{}")
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            file_error = exc
        else:
            if isinstance(data, dict):
                config.update(data)
                if data.get("key"):
                    secrets.append(str(data["key"]))
    for name, value in os.environ.items():
        if name.startswith("KAGGLE_"):
            config[name.replace("KAGGLE_", "", 1).lower()] = value
    if os.environ.get("KAGGLE_KEY"):
        secrets.append(os.environ["KAGGLE_KEY"])
    found = bool(config.get("username") and config.get("key"))
    token = _token_from_env(Path(os.path.expanduser("~")))
    if token:
        secrets.append(token)
        found = True
    if not found:
        if file_error is not None:
            raise KaggleCredentialsError(f"{path}: not valid JSON ({file_error}). {CREDENTIALS_HELP}") from file_error
        raise KaggleCredentialsError(CREDENTIALS_HELP)
    return [s for s in secrets if s]
