from poselib.progress import progress_disabled


def test_progress_bars_follow_the_argument_and_the_environment(monkeypatch):
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    assert progress_disabled(False) and not progress_disabled(True)
    monkeypatch.setenv("TQDM_DISABLE", "1")
    assert progress_disabled(True)
    monkeypatch.setenv("TQDM_DISABLE", "0")
    assert not progress_disabled(True)
