"""Credentials: the one lookup, its refusals and what Kaggle answers to a rejected key."""

from __future__ import annotations

import json

import pytest

from builders.kaggle_credentials import KaggleCredentialsError, check_credentials
from builders.kaggle_fetch import fetch_outputs
from builders.kaggle_push import push_notebook
from builders.kaggle_status import kernel_status
from builders.kaggle_transport import KaggleRequestError
from tests.helpers.kaggle import FAST, KEY, REF, USER, clean_env, make_push_folder, snapshot


def test_missing_credentials_clear_message_nothing_written(tmp_path, monkeypatch, runs_dir):
    home = tmp_path / "home"
    home.mkdir()
    clean_env(monkeypatch, home)
    folder = make_push_folder(tmp_path)
    before = snapshot(folder)
    with pytest.raises(KaggleCredentialsError) as info:
        push_notebook(folder, runs_dir=runs_dir, params={}, accelerator="")
    message = str(info.value)
    assert "~/.kaggle/kaggle.json" in message and "KAGGLE_USERNAME" in message and "KAGGLE_KEY" in message
    with pytest.raises(KaggleCredentialsError):
        kernel_status(REF)
    with pytest.raises(KaggleCredentialsError):
        fetch_outputs(REF, runs_dir=runs_dir, version=1)
    assert not runs_dir.exists()
    assert snapshot(folder) == before
    assert list(home.iterdir()) == []


def test_world_readable_kaggle_json_warns(tmp_path, monkeypatch):
    home = tmp_path / "home"
    (home / ".kaggle").mkdir(parents=True)
    clean_env(monkeypatch, home)
    path = home / ".kaggle" / "kaggle.json"
    path.write_text(json.dumps({"username": USER, "key": KEY}))
    path.chmod(0o644)
    warnings = []
    secrets = check_credentials(warn=warnings.append)
    assert secrets == [KEY]
    assert len(warnings) == 1 and "chmod 600" in warnings[0] and KEY not in warnings[0]
    path.chmod(0o600)
    warnings.clear()
    check_credentials(warn=warnings.append)
    assert warnings == []


def test_push_wrong_key_is_credentials_error(fake_kaggle, tmp_path, runs_dir, monkeypatch):
    monkeypatch.setenv("KAGGLE_KEY", "wrong-key-000000")
    folder = make_push_folder(tmp_path)
    with pytest.raises(KaggleCredentialsError, match="rejected the credentials") as info:
        push_notebook(folder, runs_dir=runs_dir, params={}, accelerator="", retry=FAST)
    assert "wrong-key-000000" not in str(info.value)
    assert fake_kaggle.calls("SaveKernel") == [] and not runs_dir.exists()  # refused at the first question


def test_rejected_key_says_so_in_kaggles_words_not_the_clients_guess(fake_kaggle, tmp_path, monkeypatch):
    """kernels_status wraps a 401 in a ValueError about benchmark slugs; the user is told that
    Kaggle refused the key (with Kaggle's message), not that no credentials were found."""
    monkeypatch.setenv("KAGGLE_KEY", "wrong-key-000000")
    fake_kaggle.versions[REF] = 1
    for call in (lambda: kernel_status(REF, echo=lambda _: None, retry=FAST),
                 lambda: push_notebook(make_push_folder(tmp_path), runs_dir=tmp_path / "runs",
                                       params={}, accelerator="", retry=FAST)):
        with pytest.raises(KaggleCredentialsError) as info:
            call()
        message = str(info.value)
        assert "HTTP 401: Unauthenticated" in message and "refused the credentials" in message
        assert "benchmark" not in message and "No Kaggle credentials found" not in message
        assert "wrong-key-000000" not in message


def test_malformed_kaggle_json_names_the_file(tmp_path, monkeypatch):
    home = tmp_path / "home"
    (home / ".kaggle").mkdir(parents=True)
    clean_env(monkeypatch, home)
    path = home / ".kaggle" / "kaggle.json"
    path.write_text('{"username": "alice", "key": ')
    path.chmod(0o600)
    with pytest.raises(KaggleCredentialsError, match=r"kaggle\.json: not valid JSON"):
        check_credentials()
    monkeypatch.setenv("KAGGLE_USERNAME", USER)
    monkeypatch.setenv("KAGGLE_KEY", KEY)
    assert check_credentials() == [KEY]  # the environment is enough


def test_unreadable_access_token_is_a_credentials_error(tmp_path, monkeypatch):
    home = tmp_path / "home"
    (home / ".kaggle").mkdir(parents=True)
    clean_env(monkeypatch, home)
    (home / ".kaggle" / "access_token").write_bytes(b"\xff\xfe not utf-8")
    with pytest.raises(KaggleCredentialsError, match="access_token: cannot read"):
        check_credentials()


def test_user_from_environment_key_from_kaggle_json_as_the_client_merges_them(fake_kaggle, tmp_path, monkeypatch):
    """kaggle 2.2.5 read_config_environment: each KAGGLE_<NAME> overrides kaggle.json's <name>,
    so KAGGLE_USERNAME plus the file's key authenticates; the check must not refuse it."""
    monkeypatch.delenv("KAGGLE_KEY")
    path = tmp_path / "home" / ".kaggle" / "kaggle.json"
    path.write_text(json.dumps({"key": KEY}))
    path.chmod(0o600)
    assert check_credentials() == [KEY]
    fake_kaggle.versions[REF] = 1
    assert kernel_status(REF, echo=lambda _: None, retry=FAST) == "complete"  # the client agrees
    monkeypatch.delenv("KAGGLE_USERNAME")
    with pytest.raises(KaggleCredentialsError):  # a key without a user name is not enough
        check_credentials()


def test_access_token_signs_in_and_a_failed_sign_in_is_retried_then_worded(fake_kaggle, monkeypatch):
    """With an access token the client asks Kaggle whose it is (IntrospectToken) before any
    call, and lets a dropped connection or a 5xx escape as a raw requests exception."""
    fake_kaggle.token = "KGAT_fake_token_0123456789"
    monkeypatch.delenv("KAGGLE_USERNAME")
    monkeypatch.delenv("KAGGLE_KEY")
    monkeypatch.setenv("KAGGLE_API_TOKEN", fake_kaggle.token)
    fake_kaggle.versions[REF] = 1
    fake_kaggle.introspect_plan = ["drop", ("http", 503)]
    assert kernel_status(REF, echo=lambda _: None, retry=FAST) == "complete"
    assert len(fake_kaggle.calls("IntrospectToken")) == 3 and len(fake_kaggle.calls("GetKernelSessionStatus")) == 1
    fake_kaggle.introspect_plan = ["drop"] * 3
    with pytest.raises(KaggleRequestError, match="signing in to Kaggle failed after 3 attempts: connection"):
        kernel_status(REF, echo=lambda _: None, retry=FAST)


def test_access_token_given_as_a_file_path_is_read_as_the_client_reads_it(tmp_path, monkeypatch):
    """kagglesdk get_access_token_from_env: KAGGLE_API_TOKEN may name a file holding the token;
    the secret kept out of pushed files is the token, not the path."""
    home = tmp_path / "home"
    home.mkdir()
    clean_env(monkeypatch, home)
    token_file = tmp_path / "token"
    token_file.write_text("KGAT_0123456789abcdef\n")
    monkeypatch.setenv("KAGGLE_API_TOKEN", str(token_file))
    assert check_credentials() == ["KGAT_0123456789abcdef"]
    token_file.write_text("")  # the client then has no token and looks no further
    (home / ".kaggle").mkdir()
    (home / ".kaggle" / "access_token").write_text("KGAT_other")
    with pytest.raises(KaggleCredentialsError):
        check_credentials()
