"""The commit recorded in environment.json, including a tree copy where git finds none (a remote GPU machine)."""

from __future__ import annotations

import subprocess

from spectune.training.run_folder import git_commit


def test_commit_of_this_checkout_matches_git(monkeypatch):
    monkeypatch.setenv("SPECTUNE_GIT_COMMIT", "0" * 40)  # ignored: git knows the commit here
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert git_commit()["commit"] == head


def test_copy_without_history_records_the_launchers_commit(tmp_path, monkeypatch):
    (tmp_path / ".git").write_text("gitdir: /nowhere\n")  # what a copied worktree looks like
    monkeypatch.delenv("SPECTUNE_GIT_COMMIT", raising=False)
    assert git_commit(tmp_path)["commit"] is None
    monkeypatch.setenv("SPECTUNE_GIT_COMMIT", "abc123")
    assert git_commit(tmp_path) == {"commit": "abc123", "dirty": None, "source": "SPECTUNE_GIT_COMMIT"}
