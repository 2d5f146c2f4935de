"""A kernel's log, stored or followed, with the REAL kaggle client against a loopback fake server."""

from __future__ import annotations

import json

from builders.kaggle_logs import kernel_logs, log_lines
from tests.helpers.kaggle import FAST, LOG, REF, serve_outputs


def test_logs_of_a_finished_session(fake_kaggle):
    serve_outputs(fake_kaggle, version=2, log=json.dumps([{"stream_name": "stdout", "time": 1.0, "data": line + "\n"}
                                                    for line in LOG]))
    seen = []
    kernel_logs(REF, echo=seen.append, retry=FAST)
    assert seen == LOG
    kernel_logs(REF, version=2, echo=seen.append, retry=FAST)
    assert fake_kaggle.calls("ListKernelSessionOutput")[-1]["versionLabel"] == "v2"


def test_logs_follow_streams_the_running_session(fake_kaggle, capsys):
    fake_kaggle.versions[REF] = 1
    fake_kaggle.status_states = ["running"]
    fake_kaggle.log_events = LOG
    kernel_logs(REF, follow=True, retry=FAST)
    assert capsys.readouterr().out.splitlines() == LOG
    (call,) = [body for name, body in fake_kaggle.requests if name == "LogsStream"]
    assert call == {"ref": REF, "versionLabel": None}
    kernel_logs(REF, version=1, follow=True, retry=FAST)
    assert [body for name, body in fake_kaggle.requests if name == "LogsStream"][-1]["versionLabel"] == "v1"
    assert capsys.readouterr().out.splitlines() == LOG


def test_log_lines_reads_kaggles_event_list_and_plain_text():
    events = json.dumps([{"data": "a\n"}, {"data": "b\nc\n"}, {"stream_name": "stderr"}])
    assert log_lines(events) == ["a", "b", "c"]
    assert log_lines("plain\ntext") == ["plain", "text"]
